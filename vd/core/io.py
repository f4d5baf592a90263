"""Files that survive a crash, and hashes.

Every file a run writes (CSV tables, JSON manifests, text) goes to a temporary file in the target's
folder, is fsynced, then ``os.replace``d over the target, so a crash never leaves a partial file and
never a stray temp file. :func:`code_hash` names what a cached computation's code is (see its docstring).
"""

from __future__ import annotations

import ast
import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd


# ----------------------------------------------------------------------------- atomic writes
def _atomic_write(path, write, binary: bool) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8", "newline": ""})) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename is None:  # a failed write names no file: name the target
            e.filename = str(path)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable (POSIX; not possible everywhere)
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    return path


def atomic_write_text(path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically: temp file in the same folder, fsync, os.replace."""
    return _atomic_write(path, lambda fh: fh.write(text), binary=False)


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return _atomic_write(path, lambda fh: fh.write(data), binary=True)


def atomic_write_csv(df: pd.DataFrame, path, **to_csv_kwargs) -> Path:
    """Write a DataFrame as CSV atomically (``index=False`` unless given)."""
    to_csv_kwargs.setdefault("index", False)
    return _atomic_write(path, lambda fh: df.to_csv(fh, **to_csv_kwargs), binary=False)


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
