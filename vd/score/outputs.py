"""A run's score tables, one folder per judge, written as a set that no reader sees mixed.

    <run>/scores/<judge slug>/judgments.csv, profile.csv, drift.csv, .scores-key   (RunRecord.scores_dir)
    tables = read_scores(record, judge_key)          # {"judgments": ..., "profile": ..., "drift": ...}

The stamp `.scores-key` holds what the tables are a function of (vd.score.scoring.outputs_key) and the
sha256 of each table. A writer removes it first, writes the tables, then writes it; a reader checks every
table it reads against it. So a set cut short by a kill reads as missing (ScoresMissing: score the run),
never as one scoring's judgments beside another's profile; the next scoring rewrites the set and removes
the temporary files a kill left.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd

from vd.core.io import atomic_write_json, atomic_write_text, csv_text, parse_csv, sync_folder
from vd.core.run import RunError, RunRecord, judge_label

TABLES = ("judgments", "profile", "drift")
STAMP = ".scores-key"


class ScoresMissing(RunError):
    """A run has no complete, current set of score tables by a judge."""


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _stamp(folder: Path) -> dict | None:
    try:
        stamp = json.loads((folder / STAMP).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) and isinstance(stamp.get("files"), dict) else None


def remove_temporary(folder: Path) -> None:
    """Temporary files a killed write left in `folder` (vd.core.io writes `.<name>.<random>.tmp`)."""
    for tmp in folder.glob(".*.tmp") if folder.is_dir() else ():
        tmp.unlink(missing_ok=True)


def write_scores(folder: Path, key: str, tables: dict[str, pd.DataFrame]) -> None:
    """Write `tables` ({name: frame}, TABLES) into `folder` as one set vouched for by `key` (see above).
    The caller holds the run's scoring lock, so no other writer is mid-write here."""
    folder.mkdir(parents=True, exist_ok=True)
    remove_temporary(folder)
    (folder / STAMP).unlink(missing_ok=True)  # first: from here on the folder reads as missing
    sync_folder(folder)  # the old stamp's unlink durable before the tables change
    files = {}
    for name in TABLES:
        text = csv_text(tables[name])
        atomic_write_text(folder / f"{name}.csv", text)
        files[f"{name}.csv"] = _sha(text.encode("utf-8"))
    atomic_write_json({"key": key, "files": files}, folder / STAMP)  # last: it vouches for the tables


def remove_scores(folder: Path) -> None:
    """Remove a set of score tables, the stamp that vouches for them first."""
    (folder / STAMP).unlink(missing_ok=True)
    for name in TABLES:
        (folder / f"{name}.csv").unlink(missing_ok=True)
    remove_temporary(folder)


def scores_key(folder: Path) -> str | None:
    """The key the folder's set was written under, if the set is whole (every table matches the stamp)."""
    stamp = _stamp(folder)
    if stamp is None:
        return None
    for name in TABLES:
        path = folder / f"{name}.csv"
        if not path.is_file() or _sha(path.read_bytes()) != stamp["files"].get(path.name):
            return None
    return stamp.get("key")


def read_scores(record: RunRecord, judge_key: str, names=TABLES) -> dict[str, pd.DataFrame]:
    """The run's score tables `names` by the judge `judge_key`, each checked against the set's stamp;
    ScoresMissing (one line) where the run has no whole set by that judge."""
    folder = record.scores_dir(judge_key)
    stamp = _stamp(folder)
    out = {}
    for name in names:
        path = folder / f"{name}.csv"
        data = path.read_bytes() if stamp is not None and path.is_file() else None
        if data is None or _sha(data) != stamp["files"].get(path.name):
            raise ScoresMissing(f"{folder}: no complete scores of run {record.name} by judge "
                                f"{judge_label(judge_key)} (never scored, or a scoring was interrupted): "
                                f"score it (vd score --run {record.root})")
        out[name] = parse_csv(data.decode("utf-8"), path)
    return out
