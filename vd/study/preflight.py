"""What a notebook checks before its first training step, so that a run that cannot finish stops at once
and not after a training run on a GPU: the judge can run here (its key, its endpoint or model), every
local data and probe file the params name exists, and the stages it will train (with PPO's reward model)
and the scoring of their checkpoints fit this GPU by vd.models.memory's estimate."""

from __future__ import annotations

from pathlib import Path

from vd import world
from vd.core.config import Config
from vd.data.files import is_local
from vd.data.synthetic import check_writer
from vd.judge import check_available
from vd.models.memory import check_gpu_fits
from vd.train.data import DataError


def preflight(cfg: Config, stages=(), synthetic: bool = False) -> None:
    """Raise a ConfigError (one line: the key and what is wrong) for anything training `stages` (and, with
    `synthetic`, building the synthetic value-gap pairs) will need and lack."""
    check_available(cfg.judge, tiny_world=world.uses_world(cfg))
    for kind in ("sft", "preference"):
        for name, ds in getattr(cfg.data, kind).items():
            if ds.id != world.TINY and is_local(ds.id) and not Path(ds.id).exists():
                raise DataError(f"{cfg.source}: data.{kind}.{name}.id: {ds.id} does not exist (a local file in "
                                "the hub dataset's format, or a hub id)")
    for key, path in (("probes.file", cfg.probes.file), ("data.synthetic.prompts_file", cfg.data.synthetic.prompts_file)):
        if path and path != world.TINY and not Path(path).is_file():
            raise DataError(f"{cfg.source}: {key}: {path} does not exist")
    if synthetic:
        check_writer(cfg)
    trained = [part for stage in stages for part in (("reward", stage) if stage == "ppo" else (stage,))]
    for stage in dict.fromkeys(trained + (["generate"] if trained else [])):  # every trained run is scored
        check_gpu_fits(cfg, world.model_path(cfg), stage)  # on CPU or without 4-bit: returns at once
