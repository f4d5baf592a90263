"""What `vd train` checks before it writes anything, each a one-line error (a ConfigError) naming the key:
the judge and the synthetic pairs' writer (synthetic data), a local data file (other data), the LoRA
target modules against the model's own layers (its config, instantiated on the meta device: no weights
read), and, for PPO, that its models fit the GPU."""

from __future__ import annotations

import re
from pathlib import Path

from vd import world
from vd.core import registry
from vd.core.config import Config, ConfigError
from vd.data.files import is_local
from vd.data.synthetic import check_writer
from vd.judge import check_available
from vd.models.memory import check_gpu_fits
from vd.train.data import DataError, is_synthetic


def check_stage(cfg: Config, stage: str, data: str, start_path: str) -> None:
    """Raise a ConfigError for anything training `stage` on `data` from `start_path` needs and lacks."""
    if is_synthetic(data):
        check_available(cfg.judge, tiny_world=world.uses_world(cfg))
        check_writer(cfg)
    else:
        kind = "sft" if registry.STAGES[stage].kind == "sft" else "preference"
        ds = getattr(cfg.data, kind)[data]
        if ds.id != world.TINY and is_local(ds.id) and not Path(ds.id).exists():
            raise DataError(f"{cfg.source}: data.{kind}.{data}.id: {ds.id} does not exist (a local file in the hub "
                            "dataset's format, or a hub id)")
    check_target_modules(cfg, start_path)
    check_gpu_fits(cfg, start_path, stage)  # on CPU or without 4-bit: returns at once


def adaptable_layers(model_path: str, revision: str | None = None) -> list[str]:
    """The dotted names of the layers LoRA can adapt (linear, embedding, convolution) in the model at
    `model_path`, from its config alone: the model is built on the meta device, so no weight is read."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.pytorch_utils import Conv1D

    config = AutoConfig.from_pretrained(model_path, revision=revision)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    kinds = (torch.nn.Linear, torch.nn.Embedding, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, Conv1D)
    return [name for name, m in model.named_modules() if name and isinstance(m, kinds)]


def check_target_modules(cfg: Config, start_path: str) -> None:
    """ConfigError unless every entry of lora.target_modules names a layer of the model, as PEFT matches them
    (a list: a name equal to, or ending in `.`+, the entry; a string: a regular expression on the whole name)."""
    targets = cfg.lora.target_modules
    if targets == "all-linear":
        return
    try:
        names = adaptable_layers(start_path, cfg.model.revision if start_path == cfg.model.base else None)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{cfg.source}: model.base: cannot read the config of {start_path} to check "
                          f"lora.target_modules: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    short = sorted({n.rsplit(".", 1)[-1] for n in names})
    if isinstance(targets, str):
        try:
            pattern = re.compile(targets)
        except re.error as e:
            raise ConfigError(f"{cfg.source}: lora.target_modules: {targets!r} is not a regular expression "
                              f"({e})") from None
        if not any(pattern.fullmatch(n) for n in names):
            raise ConfigError(f"{cfg.source}: lora.target_modules: {targets!r} matches no layer name of "
                              f"{start_path} (its layers: {', '.join(short)}; or all-linear)")
        return
    for entry in targets:
        if not any(n == entry or n.endswith("." + entry) for n in names):
            raise ConfigError(f"{cfg.source}: lora.target_modules: {entry!r} names no layer of {start_path} that "
                              f"LoRA can adapt (its layers: {', '.join(short)}; or all-linear)")
