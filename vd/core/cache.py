"""The SQLite cache of generations and judgments, and the fingerprint that keys a checkpoint's generations.

* :func:`checkpoint_fingerprint` names a (base model, adapter weights, sampling settings) triple, so
  cached generations are reused only for exactly the same checkpoint and sampling.
* :func:`prompt_hash` names a prompt by its token ids as the chat template renders it: generations are
  keyed by (fingerprint, prompt hash, probe id, sample index), so an edited question or template is asked again.
* :class:`Store`: one SQLite file caching generations per fingerprint and stance judgments per judge
  key, so scoring can be interrupted and resumed. Nothing in the API takes a secret, so no API key can
  end up in the cache.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import hashlib
import json
import logging
import math
import os
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pandas as pd

from vd.core.errors import ConfigError
from vd.core.io import _json_default

log = logging.getLogger(__name__)
SCHEMA_VERSION = 2  # 2: generations keyed by the prompt's token ids too, not by the probe id alone
ADAPTER_WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")
STATUSES = ("ok", "text_fallback", "failed")
TABLES = ("generations", "judgments")
_CHUNK = 1 << 20  # bytes per read when hashing files
_P = ("p_support", "p_neutral", "p_oppose")


def checkpoint_fingerprint(base_model_id: str, adapter_dir: str | os.PathLike | None, sampling: dict) -> str:
    """sha256 naming what a generation depends on: base model id, adapter weights, sampling settings.

    ``adapter_dir=None`` (or "") means the base model itself. Otherwise the folder must hold
    ``adapter_model.safetensors`` (preferred) or ``adapter_model.bin``, whose bytes are hashed in chunks;
    a folder that does not exist or holds neither is an error (a typo must not alias the base model).
    Only the weight file is hashed, not ``adapter_config.json`` (it holds machine-specific paths).
    ``sampling`` is hashed as JSON with sorted keys, so key order does not matter.
    """
    if not isinstance(base_model_id, str) or not base_model_id:
        raise ValueError(f"base_model_id must be a non-empty string, got {base_model_id!r}")
    if not isinstance(sampling, Mapping):
        raise TypeError(f"sampling must be a dict, got {type(sampling).__name__}")
    h = hashlib.sha256()

    def field(tag: str, data: bytes) -> None:  # length-prefixed, so fields cannot run into each other
        h.update(f"{tag}:{len(data)}:".encode())
        h.update(data)

    field("vd-checkpoint", b"v1")
    field("base", base_model_id.encode("utf-8"))
    if adapter_dir is None or str(adapter_dir) == "":
        field("adapter", b"none")
    else:
        folder = Path(adapter_dir)
        if not folder.is_dir():
            raise FileNotFoundError(f"adapter_dir {str(folder)!r} is not a folder")
        weights = next((folder / n for n in ADAPTER_WEIGHT_FILES if (folder / n).is_file()), None)
        if weights is None:
            raise FileNotFoundError(f"adapter_dir {str(folder)!r} holds none of {ADAPTER_WEIGHT_FILES}")
        h.update(f"adapter:{weights.name}:{weights.stat().st_size}:".encode())
        with open(weights, "rb") as fh:
            for chunk in iter(lambda: fh.read(_CHUNK), b""):
                h.update(chunk)
    field("sampling", json.dumps(dict(sampling), sort_keys=True, separators=(",", ":"),
                                 default=_json_default).encode("utf-8"))
    return h.hexdigest()


def prompt_hash(token_ids: Sequence[int]) -> str:
    """sha256 naming a prompt by the token ids the model is given (chat template, BOS and all)."""
    return hashlib.sha256(("vd-prompt:" + ",".join(str(int(t)) for t in token_ids)).encode()).hexdigest()


class CacheError(ConfigError):
    """The cache file is damaged or of another version; the message names it and what to do."""


# ----------------------------------------------------------------------------- the cache
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS generations (
    fingerprint TEXT NOT NULL, prompt_hash TEXT NOT NULL, prompt_id TEXT NOT NULL, sample_index INTEGER NOT NULL,
    text TEXT NOT NULL, n_new_tokens INTEGER, created TEXT NOT NULL,
    PRIMARY KEY (fingerprint, prompt_hash, prompt_id, sample_index));
CREATE TABLE IF NOT EXISTS judgments (
    judge_key TEXT NOT NULL, question_hash TEXT NOT NULL, answer_hash TEXT NOT NULL, topic TEXT NOT NULL,
    p_support REAL, p_neutral REAL, p_oppose REAL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'text_fallback', 'failed')), error TEXT, created TEXT NOT NULL,
    PRIMARY KEY (judge_key, question_hash, answer_hash, topic));
"""

_UPSERT_JUDGMENT = """
INSERT INTO judgments (judge_key, question_hash, answer_hash, topic, p_support, p_neutral, p_oppose,
                       status, error, created)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (judge_key, question_hash, answer_hash, topic) DO UPDATE SET
    p_support = excluded.p_support, p_neutral = excluded.p_neutral, p_oppose = excluded.p_oppose,
    status = excluded.status, error = excluded.error, created = excluded.created
WHERE judgments.status = 'failed'
"""


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _nan(x):
    return float("nan") if x is None else x


class Store:
    """SQLite cache of generations and judgments, created on first use.

    One connection per Store, shared by threads (``check_same_thread=False``) behind a lock, so a
    thread pool of judge calls can write through one Store. Each ``put_*`` is one transaction.
    A rollback journal (TRUNCATE), not WAL (ours): WAL needs shared memory mapped beside the file, which
    network and FUSE mounts (Google Drive on Colab) do not provide; a commit costs about a millisecond
    more, and concurrent processes still work (writers wait up to 60 s for one another; scoring holds a
    lock per run). A damaged or foreign file is a CacheError naming it.

    * generations(fingerprint, prompt_hash, prompt_id, sample_index) -> (text, n_new_tokens): written once
      (INSERT OR IGNORE), so a rerun never writes duplicates. Prompt ids are stored as text; the prompt
      hash (:func:`prompt_hash`) ties an answer to what was asked, the id to the seed it was sampled with.
    * judgments(judge_key, question_hash, answer_hash, topic) -> p_support, p_neutral, p_oppose,
      status ("ok", "text_fallback" or "failed"), error. A failed row keeps NULL probabilities (read
      back as NaN) and its error text; a later attempt replaces it (a later failure refreshes the
      error), but a successful row is never overwritten, neither by a failure nor by another success.
    """

    def __init__(self, path):
        self.path = Path(path)
        self._lock = threading.RLock()
        self._con: sqlite3.Connection | None = None
        self._closed = False

    # -- connection ---------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        if self._closed:
            raise RuntimeError(f"Store({str(self.path)!r}) is closed")
        if self._con is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=60)
            try:
                con.execute("PRAGMA journal_mode=TRUNCATE")  # converts a cache written in WAL mode
                con.execute("PRAGMA synchronous=FULL")
                con.execute("PRAGMA temp_store=MEMORY")
                with _transaction(con):
                    self._migrate(con)
                    for stmt in filter(str.strip, _SCHEMA.split(";")):
                        con.execute(stmt)
                    con.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                    version = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
            except BaseException:
                con.close()
                raise
            if int(version) != SCHEMA_VERSION:
                con.close()
                raise CacheError(f"{self.path}: cache schema version {version}, this vd reads version "
                                 f"{SCHEMA_VERSION} (a newer vd wrote it): update vd, or move the file aside")
            self._con = con
        return self._con

    def _migrate(self, con: sqlite3.Connection) -> None:
        """Version 1 keyed generations by probe id alone, so an edited question reused old answers: its
        generations are dropped (made again on the next scoring), its judgments kept (they are keyed by
        the question's and answer's text)."""
        if not con.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone():
            return
        row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None or row[0] != "1":
            return
        dropped = con.execute("SELECT COUNT(*) FROM generations").fetchone()[0]
        con.execute("DROP TABLE generations")
        con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
        log.warning("%s: cache schema 1 -> %d: its %d generations were keyed by probe id, not by the prompt "
                    "asked, so they are dropped and made again when scored; its judgments are kept",
                    self.path, SCHEMA_VERSION, dropped)

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None
            self._closed = True

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    # -- helpers ------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _use(self):
        """The connection, under the lock; a damaged file is one CacheError naming it and what to do."""
        with self._lock:
            try:
                yield self._connect()
            except sqlite3.OperationalError as e:  # a full disk or a read-only file: the OSError the CLI names
                for words, code in (("disk is full", errno.ENOSPC), ("readonly database", errno.EROFS)):
                    if words in str(e):
                        raise OSError(code, str(e), str(self.path)) from None
                raise
            except sqlite3.DatabaseError as e:
                if type(e) is not sqlite3.DatabaseError:  # locked, I/O, constraint: not damage to the file
                    raise
                raise CacheError(f"{self.path}: the cache is damaged ({e}); move it aside (what it held is then "
                                 "generated and judged again) or restore it from a copy") from None

    def _lookup(self, types: str, keys: list[tuple], select: str, args: tuple) -> list[tuple]:
        """Rows of `select` joined to a temp table `_keys` holding `keys`: one query however many keys."""
        with self._use() as con:
            with _transaction(con, immediate=False):
                con.execute(f"CREATE TEMP TABLE _keys ({types})")
                try:
                    con.executemany(f"INSERT INTO _keys VALUES ({', '.join('?' * len(keys[0]))})", keys)
                    return con.execute(select, args).fetchall()
                finally:
                    con.execute("DROP TABLE temp._keys")

    # -- generations --------------------------------------------------------------------------------
    def get_generations(self, fingerprint: str, keys: Iterable[tuple]) -> dict[tuple, tuple[str, int]]:
        """Cached generations for ``keys`` = (prompt_id, prompt_hash, sample_index) triples:
        {key: (text, n_new_tokens)}. Keys not in the cache are absent; returned keys are the caller's own."""
        wanted = {(str(p), str(h), int(i)): (p, h, i) for p, h, i in keys}
        if not wanted:
            return {}
        rows = self._lookup(
            "prompt_id TEXT, prompt_hash TEXT, sample_index INTEGER", list(wanted),
            "SELECT g.prompt_id, g.prompt_hash, g.sample_index, g.text, g.n_new_tokens FROM generations g "
            "JOIN _keys k ON g.prompt_id = k.prompt_id AND g.prompt_hash = k.prompt_hash "
            "AND g.sample_index = k.sample_index WHERE g.fingerprint = ?", (fingerprint,))
        return {wanted[(p, h, i)]: (t, n) for p, h, i, t, n in rows}

    def put_generations(self, fingerprint: str, rows) -> int:
        """Cache generations (one transaction; existing keys are left alone). Returns rows written.

        ``rows``: a mapping {(prompt_id, prompt_hash, sample_index): (text, n_new_tokens)} or an iterable
        of (prompt_id, prompt_hash, sample_index, text, n_new_tokens) tuples or dicts with those keys
        (the text as ``text``).
        """
        if isinstance(rows, Mapping):
            rows = [(*k, *v) for k, v in rows.items()]
        now, params = _now(), []
        for r in rows:
            if isinstance(r, Mapping):
                r = (r["prompt_id"], r["prompt_hash"], r["sample_index"], r["text"], r.get("n_new_tokens"))
            p, h, i, text, n = r
            if not isinstance(text, str):
                raise TypeError(f"generation ({p!r}, {i!r}): text must be a string, got {type(text).__name__}")
            if not isinstance(h, str) or not h:
                raise ValueError(f"generation ({p!r}, {i!r}): prompt_hash must be a non-empty string, got {h!r}")
            params.append((fingerprint, h, str(p), int(i), text, None if n is None else int(n), now))
        with self._use() as con:
            with _transaction(con):
                before = con.total_changes
                con.executemany("INSERT OR IGNORE INTO generations VALUES (?, ?, ?, ?, ?, ?, ?)", params)
                return con.total_changes - before

    # -- judgments ----------------------------------------------------------------------------------
    def get_judgments(self, judge_key: str, keys: Iterable[tuple], include_failed: bool = False) -> dict[tuple, dict]:
        """Cached judgments for ``keys`` = (question_hash, answer_hash, topic) triples.

        Returns {key: {"p_support", "p_neutral", "p_oppose", "status", "error", "created"}}; by default only
        rows to reuse (status ok or text_fallback), so failed ones are retried. NULL p reads as NaN.
        """
        wanted = {tuple(str(x) for x in k): tuple(k) for k in keys}
        if not wanted:
            return {}
        where = "" if include_failed else " AND j.status != 'failed'"
        rows = self._lookup(
            "question_hash TEXT, answer_hash TEXT, topic TEXT", list(wanted),
            "SELECT j.question_hash, j.answer_hash, j.topic, j.p_support, j.p_neutral, j.p_oppose, "
            "j.status, j.error, j.created FROM judgments j JOIN _keys k ON j.question_hash = "
            "k.question_hash AND j.answer_hash = k.answer_hash AND j.topic = k.topic "
            f"WHERE j.judge_key = ?{where}", (judge_key,))
        return {wanted[(q, a, t)]: {"p_support": _nan(ps), "p_neutral": _nan(pn), "p_oppose": _nan(po),
                                    "status": st, "error": err, "created": cr}
                for q, a, t, ps, pn, po, st, err, cr in rows}

    def put_judgments(self, judge_key: str, rows) -> int:
        """Cache judgments (one transaction). Returns rows inserted or replaced.

        ``rows``: dicts with question_hash, answer_hash, topic, p_support, p_neutral, p_oppose, status and
        (for failures) error; or a mapping {(question_hash, answer_hash, topic): dict-without-the-key}.
        A successful row (ok / text_fallback) must hold a distribution (each p in [0, 1], sum 1 within
        1e-6); a failed row is stored with NULL probabilities. Successes replace failures only.
        """
        if isinstance(rows, Mapping):
            rows = [{"question_hash": k[0], "answer_hash": k[1], "topic": k[2], **v} for k, v in rows.items()]
        now, params = _now(), []
        for r in rows:
            key = (str(r["question_hash"]), str(r["answer_hash"]), str(r["topic"]))
            status = r.get("status", "ok")
            if status not in STATUSES:
                raise ValueError(f"judgment {key}: status {status!r} is not one of {STATUSES}")
            if status == "failed":
                p = (None, None, None)
            else:
                try:
                    p = tuple(math.nan if r.get(c) is None else float(r[c]) for c in _P)
                except (TypeError, ValueError):
                    p = tuple(r.get(c) for c in _P)
                if not all(isinstance(x, float) and math.isfinite(x) and 0.0 <= x <= 1.0 for x in p) \
                        or abs(sum(p) - 1.0) > 1e-6:
                    raise ValueError(f"judgment {key}: status {status!r} needs probabilities in [0, 1] "
                                     f"summing to 1, got {dict(zip(_P, p))}")
            err = r.get("error")
            params.append((judge_key, *key, *p, status, None if err is None else str(err), now))
        with self._use() as con:
            with _transaction(con):
                before = con.total_changes
                con.executemany(_UPSERT_JUDGMENT, params)
                return con.total_changes - before

    # -- inspection ---------------------------------------------------------------------------------
    def count(self, table: str) -> int:
        """Number of rows in ``table`` ("generations" or "judgments")."""
        if table not in TABLES:
            raise ValueError(f"table must be one of {TABLES}, got {table!r}")
        with self._use() as con:
            return con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]

    def failures(self, judge_key: str | None = None) -> pd.DataFrame:
        """Failed judgments (all judges, or one): judge_key, question_hash, answer_hash, topic, error, created."""
        sql = ("SELECT judge_key, question_hash, answer_hash, topic, error, created FROM judgments "
               "WHERE status = 'failed'")
        args: tuple = ()
        if judge_key is not None:
            sql, args = sql + " AND judge_key = ?", (judge_key,)
        with self._use() as con:
            cur = con.execute(sql + " ORDER BY created, question_hash, answer_hash, topic", args)
            return pd.DataFrame(cur.fetchall(), columns=[d[0] for d in cur.description])


@contextlib.contextmanager
def _transaction(con: sqlite3.Connection, immediate: bool = True):
    """One transaction; writers take the write lock up front (IMMEDIATE) so they never deadlock.

    A Ctrl-C can land between BEGIN and COMMIT (a notebook interrupted while judging, say) and leave the
    connection inside a transaction that nothing will finish; the next one rolls it back first, so the
    Store stays usable in that kernel and loses at most what that interrupted transaction held."""
    if con.in_transaction:
        con.execute("ROLLBACK")
    con.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
    try:
        yield
    except BaseException:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")
