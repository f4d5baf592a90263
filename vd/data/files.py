"""Reading a dataset's raw records: from the hub (`datasets.load_dataset`) or from a local file in the
hub dataset's own format (.json, .jsonl, .jsonl.gz, .parquet). The loaders (vd.data.loaders) turn the
records into the study's schema."""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

LOCAL_SUFFIXES = (".json", ".jsonl", ".jsonl.gz", ".parquet")


def is_local(source: str) -> bool:
    s = str(source)
    return Path(s).is_file() or s.lower().endswith(LOCAL_SUFFIXES)


def read_local(path: Path) -> list[Any]:
    """Raw records of a local file in the hub's format. A JSON line that does not parse becomes
    ``None`` (counted as ``invalid_json`` by the loader) instead of failing the whole file."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    name = path.name.lower()
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    if name.endswith(".jsonl.gz") or name.endswith(".json.gz"):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return _parse_json_lines(f.read())
    if name.endswith(".jsonl"):
        return _parse_json_lines(path.read_text(encoding="utf-8"))
    if name.endswith(".json"):
        text = path.read_text(encoding="utf-8")
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            return _parse_json_lines(text)  # some hub ".json" files are JSON lines
        if isinstance(data, dict):  # a single object is one row
            data = [data]
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
        return data
    raise ValueError(f"{path}: unsupported file type; expected one of {', '.join(LOCAL_SUFFIXES)}")


def _parse_json_lines(text: str) -> list[Any]:
    out: list[Any] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            out.append(None)
    return out


def read_source(source: str, split: str, data_dir: str | None = None,
                 columns: Sequence[str] | None = None) -> Sequence:
    """Raw records: a list of dicts for a local file, a ``datasets.Dataset`` for a hub id (indexable
    the same way). ``columns`` keeps only the hub columns a loader reads (WildChat's moderation
    columns are large)."""
    if is_local(source):
        return read_local(Path(source))
    import datasets  # hub path: not exercised offline

    kw = {"data_dir": data_dir} if data_dir else {}
    ds = datasets.load_dataset(source, split=split, **kw)
    if columns:
        ds = ds.select_columns([c for c in columns if c in ds.column_names])
    return ds
