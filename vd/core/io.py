"""Files that survive a crash, tables that round-trip, and hashes.

Every file a run writes (CSV tables, JSON manifests, text) goes to a temporary file in the target's
folder, is fsynced, then ``os.replace``d over the target, so a crash never leaves a partial file and
never a stray temp file. CSV tables are written by :func:`atomic_write_csv` and read back by
:func:`read_csv`, a pair under which any string (control characters included) and any float round-trip
exactly. :func:`code_hash` names what a cached computation's code is (see its docstring).
"""

from __future__ import annotations

import ast
import contextlib
import fcntl
import hashlib
import json
import math
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd


# ----------------------------------------------------------------------------- atomic writes
def _atomic_write(path, write) -> Path:
    """Call `write` on a UTF-8 temp file beside `path`, fsync it, and os.replace it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename is None and e.errno is not None:  # name the target it failed on
            e.filename = str(path)
        raise
    sync_folder(path.parent)  # make the rename itself durable
    return path


def sync_folder(folder: Path) -> None:
    """fsync a folder, so that a rename or unlink in it survives a crash (POSIX; not possible everywhere)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_text(path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically: temp file in the same folder, fsync, os.replace."""
    return _atomic_write(path, lambda fh: fh.write(text))


def atomic_write_csv(df: pd.DataFrame, path) -> Path:
    """Write a DataFrame as CSV atomically, in the form :func:`read_csv` reads back exactly.

    Every string is quoted (so a lone carriage return, a newline, NUL, quotes, tabs and commas stay inside
    their field, and "" is an empty string), a missing value is an empty unquoted field, a float is written
    as its shortest round-trip repr, an int or bool as itself. Other CSV readers read it as ordinary CSV.
    """
    return _atomic_write(path, lambda fh: fh.write(csv_text(df)))


def _csv_cell(v) -> str:
    if isinstance(v, str):
        return '"' + v.replace('"', '""') + '"'
    if v is None or v is pd.NA or v is pd.NaT:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "True" if v else "False"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return "" if math.isnan(v) else repr(float(v))
    return _csv_cell(str(v))


def _csv_header(name: str) -> str:
    """A column name bare where it is a plain name (`step,loss,...` as every CSV tool expects), else quoted."""
    return name if _CSV_NAME.fullmatch(name) else _csv_cell(name)


def csv_text(df: pd.DataFrame) -> str:
    """`df` (without its index) as the CSV text atomic_write_csv writes."""
    columns = [[_csv_header(str(c))] + [_csv_cell(v) for v in df[c].tolist()] for c in df.columns]
    return "".join(",".join(row) + "\n" for row in zip(*columns))


# Our own reader: pandas' C parser cuts a field at NUL, and the csv module cannot tell a quoted field from a
# bare one before Python 3.12 (QUOTE_NOTNULL), which is how a missing value differs from "" and 1 from "1".
# A field: quoted (group 1 is the quote, group 2 its text, "" for a quote inside) or bare (group 3), then
# what ends it (group 4).
_CSV_FIELD = re.compile(r'(?:(")([^"]*(?:""[^"]*)*)"|([^,"\n]*))(,|\n|\Z)')  # linear: no nested repeats
_CSV_NAME = re.compile(r"[A-Za-z_][\w./-]*")
_CSV_INT = re.compile(r"[+-]?\d+\Z")


def _bare_value(token: str):
    """A bare (unquoted) field: missing, a bool, an int, a float, else the text itself (a file written
    by another CSV writer)."""
    if token == "":
        return None
    if token in ("True", "False"):
        return token == "True"
    if _CSV_INT.match(token):
        return int(token)
    try:
        return float(token)
    except ValueError:
        return token


def _column(fields: list[tuple]) -> np.ndarray:
    """One column's values from its (quote, quoted text, bare text, end) fields."""
    if all(q for q, _, _, _ in fields):  # text throughout (the common case for a text column)
        return np.array([t.replace('""', '"') for _, t, _, _ in fields], dtype=object)
    if not any(q for q, _, _, _ in fields):  # numbers throughout: parsed by numpy (exactly, as float())
        bare = [b for _, _, b, _ in fields]
        if all(_CSV_INT.match(b) for b in bare):
            with contextlib.suppress(OverflowError):
                return np.array(bare, dtype=np.int64)
        with contextlib.suppress(ValueError):
            if "True" not in bare and "False" not in bare:
                return np.array([b or "nan" for b in bare], dtype=np.float64)
    values = [t.replace('""', '"') if q else _bare_value(b) for q, t, b, _ in fields]
    present = [v for v in values if v is not None]
    kinds = {type(v) for v in present}
    if kinds == {bool} and len(present) == len(values):
        return np.array(values, dtype=bool)
    if kinds == {int} and len(present) == len(values):
        return np.array(values, dtype=np.int64)
    if kinds and kinds <= {int, float}:
        return np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)
    if not kinds:  # nothing but missing values
        return np.full(len(values), math.nan)
    return np.array([math.nan if v is None else v for v in values], dtype=object)


def read_csv(path) -> pd.DataFrame:
    """A table written by :func:`atomic_write_csv`, exactly: quoted fields are strings (byte for byte),
    bare ones missing values, bools, ints or floats (parsed exactly, as Python parses a float's repr).
    A malformed file raises ValueError naming it."""
    return parse_csv(Path(path).read_bytes().decode("utf-8"), path)


def parse_csv(text: str, path="CSV text") -> pd.DataFrame:
    """The table in `text` (see read_csv); `path` names it in errors."""
    fields = _CSV_FIELD.findall(text)
    if text.endswith("\n") and fields and fields[-1] == ("", "", "", ""):
        fields.pop()  # the empty match after the last line's end
    covered = sum(len(t) + 2 if q else len(b) for q, t, b, _ in fields) + sum(len(e) for *_, e in fields)
    if not fields or covered != len(text):  # findall skips what no field matches: a malformed file
        raise ValueError(f"{path}: not a CSV table as vd writes it (an unterminated quote, or a quote "
                         "inside a bare field)")
    ends = [i for i, f in enumerate(fields) if f[3] != ","]
    width = ends[0] + 1
    if any(b - a != width for a, b in zip([-1, *ends], ends)) or ends[-1] != len(fields) - 1:
        raise ValueError(f"{path}: its rows do not all have the header's {width} fields")
    header = [t.replace('""', '"') if q else b for q, t, b, _ in fields[:width]]
    body = fields[width:]
    data = {c: _column(body[k::width]) for k, c in enumerate(header)}
    return pd.DataFrame(data, columns=header) if body else pd.DataFrame(columns=header)


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"object of type {type(o).__name__} is not JSON serializable")


def atomic_write_json(obj, path, indent: int = 2) -> Path:
    """Write ``obj`` as JSON atomically (numpy scalars/arrays and paths are converted)."""
    text = json.dumps(obj, indent=indent, ensure_ascii=False, default=_json_default) + "\n"
    return atomic_write_text(path, text)


# ----------------------------------------------------------------------------- hashes
def text_hash(s: str) -> str:
    """sha256 hex digest of the UTF-8 bytes of ``s``."""
    return hashlib.sha256(s.encode("utf-8")).hexdigest()


def code_hash(*modules) -> str:
    """sha256 of what `modules` compute: their syntax trees with docstrings dropped.

    Cache and recompute keys (the tiny world's recipe hash, a run's score tables) use this rather than
    the source text or hand-bumped version numbers (our choice): a comment, docstring or formatting
    edit recomputes nothing, while any change to the code itself does, without anyone having to
    remember to bump a version.
    """
    h = hashlib.sha256()
    for module in modules:
        tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                    and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                node.body = body[1:] or [ast.Pass()]
        h.update(module.__name__.encode() + b"\0" + ast.dump(tree).encode() + b"\0")
    return h.hexdigest()


@contextlib.contextmanager
def file_lock(path, blocking: bool = True, on_wait=None):
    """Hold an exclusive lock on `path` (created if missing) for the block; POSIX advisory locks are
    released by the kernel when a process dies, so a kill never leaves a lock held.

    blocking=False: yield False at once, without the lock, if another process holds it (else True).
    on_wait: called once if the lock is busy, before waiting for it (e.g. to say so)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not blocking:
                yield False
                return
            if on_wait is not None:
                on_wait()
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
