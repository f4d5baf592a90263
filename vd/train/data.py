"""The rows a stage trains on: a configured dataset read by its hub loader (the tiny world's through the
same loaders), or the synthetic value-gap pairs, built once per setting and shared by every run on it
(vd.data.synthetic_set: `<runs_dir>/<size>/synthetic/`).

Every row left out is counted with its reason (the loader's skips, then the trainer's length limits)
in the run's `run.json` (`data_report`) and in one printed line, so nothing is dropped silently.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections import Counter
from pathlib import Path

from vd import world
from vd.core import registry
from vd.core.config import Config, ConfigError
from vd.data.loaders import LoadResult
from vd.data.synthetic import build_from_config
from vd.data.synthetic_set import PairSet, ensure_pairs
from vd.train.common import is_main, process_state

LABEL_COLUMNS = ("topic", "stance", "chosen_stance", "rejected_stance")  # tiny-world labels, not trained on


class DataError(ConfigError):
    """A stage's data cannot be read or leave nothing to train on (caught by the CLI like a config error)."""


def is_synthetic(data: str) -> bool:
    return data in registry.SYNTHETIC_DATA


def load_dataset(cfg: Config, kind: str, name: str) -> LoadResult:
    """The configured dataset `name` of `kind` ("sft" or "preference") through its hub loader."""
    table = cfg.data.sft if kind == "sft" else cfg.data.preference
    if name not in table:
        raise DataError(f"{cfg.source}: data.{kind}.{name}: not configured for size {cfg.size!r}")
    ds = table[name]
    loader = registry.resolve((registry.SFT_DATA if kind == "sft" else registry.PREFERENCE_DATA)[name])
    fields = {**dataclasses.asdict(ds), "source": world.data_source(cfg, ds.id, name), "seed": cfg.seed}
    kwargs = {k: v for k, v in fields.items() if k in inspect.signature(loader).parameters}
    try:
        return loader(**kwargs)
    except (ValueError, OSError, EOFError) as e:  # a file that is wholly wrong, missing or unreadable
        where = f"data.{kind}.{name}"
        raise DataError(f"{where}: {e}" if ds.id in str(e) else f"{where} ({ds.id}): {e}") from None


def stage_rows(cfg: Config, stage: str, data: str, pairs: PairSet | None = None) -> tuple[list[dict], dict]:
    """The training rows of a stage (SFT `messages` rows or preference `prompt/chosen/rejected` rows) and
    an account of what was read and left out: {"source", "read", "kept", "skipped": {reason: n}}.

    Synthetic data: the stored `pairs` (shared_pairs); without them, pairs built here and not stored."""
    if is_synthetic(data) and pairs is not None:
        rows, report = pairs.rows(), pairs.report()
    elif is_synthetic(data):
        res, _ = build_from_config(cfg, data.split("-", 1)[1])
        rows, report = res.rows, {"source": data, "read": res.n_read, "kept": len(res.rows),
                                  "skipped": dict(res.skipped)}
    else:
        kind = "sft" if registry.STAGES[stage].kind == "sft" else "preference"
        res = load_dataset(cfg, kind, data)
        rows = res.rows
        configured = (cfg.data.sft if kind == "sft" else cfg.data.preference)[data].id
        report = {"source": f"{data} ({configured})", "read": res.n_read, "kept": len(res.rows),
                  "skipped": dict(res.skipped)}
    rows = [{k: v for k, v in r.items() if k not in LABEL_COLUMNS} for r in rows]
    if not rows:
        why = ", ".join(f"{k}: {v}" for k, v in report["skipped"].items()) or "no rows"
        raise DataError(f"{data}: no training rows: read {report['read']}, kept 0 ({why})")
    return rows, report


def count_dropped(report: dict, reason: str, n: int) -> dict:
    """Add `n` rows left out for `reason` (a trainer's limit) to a stage_rows report."""
    if n:
        skipped = Counter(report["skipped"])
        skipped[reason] += n
        report.update(kept=report["kept"] - n, skipped=dict(skipped))
    return report


def describe(report: dict) -> str:
    skipped = ", ".join(f"{k}: {v}" for k, v in sorted(report["skipped"].items(), key=lambda kv: -kv[1]))
    return (f"data {report['source']}: read {report['read']}, trained on {report['kept']}"
            + (f", left out {sum(report['skipped'].values())} ({skipped})" if skipped else ""))


def shared_pairs(cfg: Config, data: str, size_dir: str | Path) -> PairSet | None:
    """The stored synthetic pairs of `data` under `size_dir` (`<runs_dir>/<size>`), built once (by the main
    process of a launch) and checked against their manifest; None for a dataset that is not synthetic."""
    if not is_synthetic(data):
        return None
    with process_state().main_process_first():
        pairs = ensure_pairs(cfg, data.split("-", 1)[1], size_dir, say=_say if is_main() else None)
    return pairs.check()


def _say(line: str) -> None:
    print(line, flush=True)
