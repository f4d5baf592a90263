"""What scoring checks before it generates anything, each a one-line error naming the file and what to do:
the config is the run's size, the run's start model is still the one it was trained from, every adapter
it will load is whole and finite, and every probe fits the model's context.

    check_size(run, cfg); identity = start_identity(run, cfg); check_adapter(folder)
"""

from __future__ import annotations

import json
from pathlib import Path

from vd.core.cache import ADAPTER_WEIGHT_FILES
from vd.core.config import Config, ConfigError
from vd.core.run import RunError, RunRecord
from vd.data.probes import SHIPPED_PROBES, ProbeError
from vd.models.loading import base_model_path, model_identity


def check_size(run: RunRecord, cfg: Config) -> None:
    """A run is scored under a config of its own size: another size's model, probes and cache are not its."""
    if cfg.size != run.size:
        raise ConfigError(f"{cfg.source or 'the config'}: size {cfg.size!r}, but run {run.root} was trained at "
                          f"size {run.size!r} (its run.json): score it under its own config (no --size) or a "
                          f"params file of size {run.size!r}")


def run_cache_path(run: RunRecord) -> Path:
    """The cache a run's generations and judgments go to: `<runs>/<size>/cache.sqlite`, beside its runs.
    A run folder outside such a `<size>/` folder is refused (its cache would be one nobody else finds)."""
    if run.root.resolve().parent.name != run.size:
        raise RunError(f"{run.root}: a run of size {run.size!r} (run.json) belongs in a folder named {run.size!r} "
                       f"(<runs>/{run.size}/{run.name}), where its cache <runs>/{run.size}/cache.sqlite is; move it "
                       "there to score it")
    return run.root.resolve().parent / "cache.sqlite"


def start_identity(run: RunRecord, cfg: Config) -> str:
    """The identity (vd.models.loading.model_identity) of the model a run's step 0 is now, which must be
    the one it was trained from: a preference run's SFT run retrained since (`--overwrite`) is refused, as
    `vd train` refuses it, since its adapters were trained on the old model (ours: refuse rather than
    score the new model with the old adapters under a new key; those answers would be no trained model's).
    The SFT run's identity is the one its run.json records for merged/, as `vd train` compares it."""
    where = run.root / "run.json"
    source = run.from_run_dir()
    if source is None:
        current = model_identity(base_model_path(cfg), cfg.model.revision)
    else:
        record = RunRecord.find(source)
        merged = source / "merged"
        if record is None or not (merged / "config.json").is_file():
            raise RunError(f"{where}: it starts from {run.start_model or merged}, which is gone (a retraining "
                           f"stopped, or the folder moved): restore {source} or retrain this run")
        current = record.merged_identity()
    if run.start_identity and current != run.start_identity:
        raise RunError(f"{where}: run {run.name} was trained from {run.start_model} ({run.start_identity}), which "
                       f"is now another model ({current}; retrained?): retrain this run (vd train ... --overwrite) "
                       "or restore the model it started from")
    return run.start_identity or current


def check_adapter(folder: Path) -> None:
    """An adapter about to be loaded: its config readable, its weights whole and finite."""
    import torch

    fix = "retrain the run (vd train ... --overwrite) or restore the checkpoint from a copy"
    config = folder / "adapter_config.json"
    try:
        json.loads(config.read_text())
    except (OSError, ValueError) as e:
        raise RunError(f"{config}: unreadable ({type(e).__name__}: {str(e).splitlines()[0]}): {fix}") from None
    weights = next((folder / n for n in ADAPTER_WEIGHT_FILES if (folder / n).is_file()),
                   folder / ADAPTER_WEIGHT_FILES[0])
    try:
        if weights.suffix == ".safetensors":
            from safetensors.torch import load_file

            tensors = load_file(str(weights))
        else:
            tensors = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as e:  # safetensors, pickle and OS errors alike mean a damaged file here
        raise RunError(f"{weights}: damaged or truncated ({type(e).__name__}: {str(e).splitlines()[0][:160]}): "
                       f"{fix}") from None
    bad = [name for name, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise RunError(f"{weights}: {len(bad)} of {len(tensors)} adapter tensors hold NaN or infinite weights "
                       f"(e.g. {bad[0]}), so this checkpoint cannot be scored: {fix}")


def check_prompt_lengths(prompt_ids: dict[str, list[int]], context: int | None, cfg: Config) -> None:
    """Every probe, as the chat template renders it, leaves the model room for probes.max_new_tokens."""
    if context is None or not prompt_ids:
        return
    room = context - cfg.probes.max_new_tokens
    if room <= 0:
        raise ConfigError(f"{cfg.source}: probes.max_new_tokens: {cfg.probes.max_new_tokens} leaves no room for a "
                          f"question in the model's context of {context} tokens; expected fewer")
    probe, n = max(prompt_ids.items(), key=lambda item: len(item[1]))
    if len(n) > room:
        raise ProbeError(f"{cfg.probes.file or SHIPPED_PROBES}: probe {probe}: its question is {len(n):,} tokens as "
                         f"the chat template renders it, more than the {room:,} the model takes (its context of "
                         f"{context:,} tokens less probes.max_new_tokens {cfg.probes.max_new_tokens}); shorten it or "
                         "leave it out")
