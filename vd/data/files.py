"""Reading a dataset's raw records: from the hub (`datasets.load_dataset`) or from a local file in the
hub dataset's own format (.json, .jsonl, .jsonl.gz, .parquet). The loaders (vd.data.loaders) turn the
records into the study's schema.

A record that cannot be read (a JSON line that does not parse, a line that is not UTF-8) becomes an
`Unreadable` that the loader counts under its reason, as it counts malformed rows; a file that cannot
be read at all (a truncated or mislabelled gzip file, a damaged parquet file) raises ValueError naming it.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOCAL_SUFFIXES = (".json", ".jsonl", ".jsonl.gz", ".parquet")
_NOT_UTF8 = re.compile("[\udc80-\udcff]")  # the bytes `surrogateescape` kept from text that is not UTF-8


@dataclass(frozen=True)
class Unreadable:
    """A record that could not be read; the loader counts it under `reason` (``invalid_json``, ``invalid_utf8``)."""

    reason: str


def is_local(source: str) -> bool:
    s = str(source)
    return Path(s).is_file() or s.lower().endswith(LOCAL_SUFFIXES)


def read_local(path: Path) -> list[Any]:
    """Raw records of a local file in the hub's format; unreadable records are `Unreadable`."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    name = path.name.lower()
    if name.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except (pa.ArrowException, OSError) as e:
            raise ValueError(f"{path}: not a readable parquet file ({e})") from None
    if name.endswith((".jsonl.gz", ".json.gz")):
        return _json_lines(_gunzip(path))
    if name.endswith(".jsonl"):
        return _json_lines(path.read_bytes())
    if name.endswith(".json"):
        data = path.read_bytes()
        text = data.removeprefix(b"\xef\xbb\xbf").decode("utf-8", errors="surrogateescape")
        try:
            records = json.loads(text)
        except json.JSONDecodeError:
            return _json_lines(data)  # some hub ".json" files are JSON lines
        if isinstance(records, dict):  # a single object is one row
            records = [records]
        if not isinstance(records, list):
            raise ValueError(f"{path}: expected a JSON list of records, got {type(records).__name__}")
        if _NOT_UTF8.search(text):  # rare: only then is every record searched
            records = [Unreadable("invalid_utf8") if _has_bytes_not_utf8(r) else r for r in records]
        return records
    raise ValueError(f"{path}: unsupported file type; expected one of {', '.join(LOCAL_SUFFIXES)}")


def _gunzip(path: Path) -> bytes:
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except gzip.BadGzipFile:
        raise ValueError(f"{path}: not a gzip file, though its name ends in .gz; expected gzip-compressed "
                         "JSON lines (or rename it to .jsonl)") from None
    except EOFError:
        raise ValueError(f"{path}: the gzip file is truncated (it ends before its end-of-stream marker); "
                         "download or copy it again") from None
    except zlib.error as e:
        raise ValueError(f"{path}: the gzip file is damaged ({e}); download or copy it again") from None


def _json_lines(data: bytes) -> list[Any]:
    """One record per non-blank line; split on b"\\n" only (JSON text may hold U+2028, which splitlines splits on)."""
    out: list[Any] = []
    for line in data.removeprefix(b"\xef\xbb\xbf").split(b"\n"):
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            out.append(Unreadable("invalid_utf8"))
            continue
        try:
            out.append(json.loads(text))
        except json.JSONDecodeError:
            out.append(Unreadable("invalid_json"))
    return out


def _has_bytes_not_utf8(value: Any) -> bool:
    if isinstance(value, str):
        return bool(_NOT_UTF8.search(value))
    if isinstance(value, dict):
        return any(_has_bytes_not_utf8(k) or _has_bytes_not_utf8(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_bytes_not_utf8(v) for v in value)
    return False


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
