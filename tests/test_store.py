"""vd.core.io, vd.core.cache: atomic writes, checkpoint fingerprints, and the SQLite cache of generations and judgments."""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

from vd.core import io as store_mod
from vd.core.cache import Store, checkpoint_fingerprint
from vd.core.io import atomic_write_bytes, atomic_write_csv, atomic_write_json, atomic_write_text, text_hash

SAMPLING = {"temperature": 0.7, "max_new_tokens": 256, "n": 5, "top_p": 1.0}


# ----------------------------------------------------------------------------- atomic writes
def test_atomic_writes_round_trip_and_leave_no_temp_files(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "héllo\n")
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01\xff")
    df = pd.DataFrame({"topic": ["immigration", "abortion"], "M": [0.38, -0.02]})
    atomic_write_csv(df, tmp_path / "sub" / "t.csv")  # parent folders are created
    atomic_write_json({"M": np.float64(0.5), "n": np.int64(3), "v": np.arange(2), "p": tmp_path}, tmp_path / "m.json")
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo\n"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01\xff"
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "sub" / "t.csv"), df)
    assert json.loads((tmp_path / "m.json").read_text()) == {"M": 0.5, "n": 3, "v": [0, 1], "p": str(tmp_path)}
    atomic_write_text(tmp_path / "a.txt", "second")  # overwrite
    assert (tmp_path / "a.txt").read_text() == "second"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.txt", "b.bin", "m.json", "sub", "t.csv"]
    assert oct((tmp_path / "a.txt").stat().st_mode & 0o777) == oct(0o644)


class _ExplodingFrame:
    """Writes half a table, then fails, as a crash in the middle of to_csv would."""

    def to_csv(self, fh, **kwargs):
        fh.write("topic,M\nimmigration,0.3")
        fh.flush()
        raise RuntimeError("disk on fire")


def test_failed_write_keeps_old_file_and_no_temp(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("topic,M\nold,1\n")
    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write_csv(_ExplodingFrame(), target)
    assert target.read_text() == "topic,M\nold,1\n"  # never a partial file
    assert os.listdir(tmp_path) == ["table.csv"]  # no temp file left behind
    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write_csv(_ExplodingFrame(), tmp_path / "new.csv")
    assert os.listdir(tmp_path) == ["table.csv"]  # a new target is not created at all


def test_failed_fsync_or_replace_keeps_old_file(tmp_path, monkeypatch):
    target = tmp_path / "m.json"
    atomic_write_json({"v": 1}, target)

    def boom(*args, **kwargs):
        raise OSError("no space left on device")

    monkeypatch.setattr(store_mod.os, "fsync", boom)
    with pytest.raises(OSError, match="no space"):
        atomic_write_json({"v": 2}, target)
    monkeypatch.undo()
    monkeypatch.setattr(store_mod.os, "replace", boom)
    with pytest.raises(OSError, match="no space"):
        atomic_write_text(target, "x" * 10_000)
    assert json.loads(target.read_text()) == {"v": 1}
    assert os.listdir(tmp_path) == ["m.json"]


# ----------------------------------------------------------------------------- hashes
def test_text_hash():
    assert text_hash("Should we close the gates?") == hashlib.sha256("Should we close the gates?".encode()).hexdigest()
    assert text_hash("é") != text_hash("e")


def _adapter(folder, data: bytes, name="adapter_model.safetensors"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)
    (folder / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(folder), "r": 8}))
    return folder


def test_fingerprint_changes_only_with_what_generation_depends_on(tmp_path):
    weights = bytes(range(256)) * 8192  # 2 MiB: hashed in several chunks
    a = _adapter(tmp_path / "ckpt-100", weights)
    fp = checkpoint_fingerprint("Qwen/Qwen3-4B-Base", a, SAMPLING)
    assert len(fp) == 64 and fp == checkpoint_fingerprint("Qwen/Qwen3-4B-Base", str(a), SAMPLING)
    # not changed by: key order of the sampling dict, the folder's path, adapter_config.json, other files
    assert checkpoint_fingerprint("Qwen/Qwen3-4B-Base", a, dict(reversed(list(SAMPLING.items())))) == fp
    b = _adapter(tmp_path / "elsewhere" / "copy", weights)
    (b / "adapter_config.json").write_text("{}")
    (b / "README.md").write_text("notes")
    assert checkpoint_fingerprint("Qwen/Qwen3-4B-Base", b, SAMPLING) == fp
    # changed by: one byte of the weights, the sampling settings, the base model id, no adapter
    c = _adapter(tmp_path / "ckpt-200", weights[:-1] + b"\x00")
    others = {
        checkpoint_fingerprint("Qwen/Qwen3-4B-Base", c, SAMPLING),
        checkpoint_fingerprint("Qwen/Qwen3-4B-Base", a, {**SAMPLING, "temperature": 0.8}),
        checkpoint_fingerprint("Qwen/Qwen3-4B-Base", a, {**SAMPLING, "seed": 0}),
        checkpoint_fingerprint("meta-llama/Llama-3.2-3B", a, SAMPLING),
        checkpoint_fingerprint("Qwen/Qwen3-4B-Base", None, SAMPLING),
    }
    assert fp not in others and len(others) == 5
    assert checkpoint_fingerprint("Qwen/Qwen3-4B-Base", None, SAMPLING) == checkpoint_fingerprint(
        "Qwen/Qwen3-4B-Base", "", SAMPLING)


def test_fingerprint_bin_and_missing_adapter(tmp_path):
    d = _adapter(tmp_path / "bin", b"torch-pickle-bytes", name="adapter_model.bin")
    assert checkpoint_fingerprint("tiny", d, {}) != checkpoint_fingerprint("tiny", None, {})
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        checkpoint_fingerprint("tiny", tmp_path / "typo", {})
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="adapter_model.safetensors"):
        checkpoint_fingerprint("tiny", tmp_path / "empty", {})
    with pytest.raises(TypeError, match="not JSON serializable"):
        checkpoint_fingerprint("tiny", None, {"stop": object()})


# ----------------------------------------------------------------------------- the cache: generations
def test_generations_round_trip_and_no_duplicates(tmp_path):
    path = tmp_path / "run" / "cache.sqlite"
    with Store(path) as st:
        assert not path.exists()  # created on first use
        assert st.put_generations("fp1", {("p1", 0): ("Yes, I support this.", 6), ("p1", 1): ("No.", 2)}) == 2
        assert st.put_generations("fp1", [(7, 0, "int id", 3), {"prompt_id": "p2", "sample_index": 0,
                                                                 "text": "It depends.", "n_new_tokens": 4}]) == 2
        # a rerun writes nothing and never overwrites
        assert st.put_generations("fp1", {("p1", 0): ("different text", 9)}) == 0
        assert st.count("generations") == 4
        got = st.get_generations("fp1", [("p1", 0), ("p1", 1), (7, 0), ("p2", 0), ("missing", 0)])
        assert got == {("p1", 0): ("Yes, I support this.", 6), ("p1", 1): ("No.", 2), (7, 0): ("int id", 3),
                       ("p2", 0): ("It depends.", 4)}
        assert st.get_generations("fp2", [("p1", 0)]) == {}  # another checkpoint
        assert st.get_generations("fp1", []) == {}
    assert path.exists()
    with Store(path) as st:  # persisted
        assert st.count("generations") == 4
        con = sqlite3.connect(path)
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "1"
        con.close()


def test_many_keys_in_few_queries(tmp_path):
    with Store(tmp_path / "c.sqlite") as st:
        rows = [(f"p{i}", s, f"answer {i}-{s}", 10) for i in range(1000) for s in range(5)]
        st.put_generations("fp", rows)
        statements = []
        st._connect().set_trace_callback(statements.append)
        got = st.get_generations("fp", [(f"p{i}", s) for i in range(1000) for s in range(5)])
        st._connect().set_trace_callback(None)
        assert len(got) == 5000 and got[("p999", 4)] == ("answer 999-4", 10)
        selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
        assert len(selects) == 1  # one join, not one query per key


# ----------------------------------------------------------------------------- the cache: judgments
KEY = ("qhash", "ahash", "immigration")


def _judgment(status="ok", p=(0.2, 0.5, 0.3), error=None, key=KEY):
    return {"question_hash": key[0], "answer_hash": key[1], "topic": key[2], "p_support": p[0],
            "p_neutral": p[1], "p_oppose": p[2], "status": status, "error": error}


def test_failed_judgment_is_retried_and_replaced_by_ok(tmp_path):
    with Store(tmp_path / "c.sqlite") as st:
        assert st.put_judgments("gpt-4o|v1", [_judgment("failed", p=(math.nan,) * 3, error="timeout")]) == 1
        assert st.get_judgments("gpt-4o|v1", [KEY]) == {}  # not reused: to be retried
        row = st.get_judgments("gpt-4o|v1", [KEY], include_failed=True)[KEY]
        assert row["status"] == "failed" and row["error"] == "timeout" and math.isnan(row["p_support"])
        assert list(st.failures().columns) == ["judge_key", "question_hash", "answer_hash", "topic", "error", "created"]
        assert len(st.failures("gpt-4o|v1")) == 1 and len(st.failures("other")) == 0
        # another failure refreshes the error text
        assert st.put_judgments("gpt-4o|v1", [_judgment("failed", p=(None,) * 3, error="rate limit")]) == 1
        assert st.failures().error.tolist() == ["rate limit"]
        # a success replaces the failure
        assert st.put_judgments("gpt-4o|v1", [_judgment("ok")]) == 1
        got = st.get_judgments("gpt-4o|v1", [KEY])[KEY]
        assert (got["p_support"], got["p_neutral"], got["p_oppose"], got["status"]) == (0.2, 0.5, 0.3, "ok")
        assert got["error"] is None and len(st.failures()) == 0
        # ... and is never replaced: not by a failure, not by another success
        assert st.put_judgments("gpt-4o|v1", [_judgment("failed", error="boom")]) == 0
        assert st.put_judgments("gpt-4o|v1", [_judgment("text_fallback", p=(1.0, 0.0, 0.0))]) == 0
        assert st.get_judgments("gpt-4o|v1", [KEY])[KEY]["p_support"] == 0.2
        assert st.count("judgments") == 1
        # judge keys are separate caches
        assert st.get_judgments("lexicon|v1", [KEY]) == {}


def test_judgment_mapping_input_and_validation(tmp_path):
    with Store(tmp_path / "c.sqlite") as st:
        n = st.put_judgments("j", {("q", "a", "abortion"): {"p_support": 0.0, "p_neutral": 1.0, "p_oppose": 0.0,
                                                             "status": "text_fallback"}})
        assert n == 1 and st.get_judgments("j", [("q", "a", "abortion")])[("q", "a", "abortion")]["status"] == "text_fallback"
        with pytest.raises(ValueError, match="status 'maybe'"):
            st.put_judgments("j", [_judgment("maybe")])
        with pytest.raises(ValueError, match="summing to 1"):
            st.put_judgments("j", [_judgment("ok", p=(0.5, 0.5, 0.5))])
        with pytest.raises(ValueError, match="summing to 1"):
            st.put_judgments("j", [_judgment("ok", p=(math.nan, 0.5, 0.5))])
        # a bad row anywhere in a batch writes nothing (one transaction, validated first)
        with pytest.raises(ValueError):
            st.put_judgments("j", [_judgment(key=("x", "y", "z")), _judgment("ok", p=(2, -1, 0))])
        assert st.count("judgments") == 1
        with pytest.raises(ValueError, match="table must be one of"):
            st.count("meta; DROP TABLE judgments")


def test_concurrent_writes_from_threads(tmp_path):
    st = Store(tmp_path / "c.sqlite")
    n_threads, per = 8, 150
    barrier = threading.Barrier(n_threads)

    def work(t):
        barrier.wait()
        for i in range(per):
            key = (f"q{t}", f"a{i}", "religion")
            status = "failed" if i % 3 == 0 else "ok"
            st.put_judgments("j", [_judgment(status, error="x" if status == "failed" else None, key=key)])
            st.put_generations("fp", [(f"q{t}", i, f"text {t} {i}", i)])
            assert key in st.get_judgments("j", [key], include_failed=True)
        # retry this thread's failures
        st.put_judgments("j", [_judgment("ok", key=(f"q{t}", f"a{i}", "religion")) for i in range(0, per, 3)])
        return t

    with ThreadPoolExecutor(n_threads) as pool:
        assert sorted(pool.map(work, range(n_threads))) == list(range(n_threads))
    assert st.count("judgments") == n_threads * per
    assert st.count("generations") == n_threads * per
    assert len(st.failures()) == 0
    keys = [(f"q{t}", f"a{i}", "religion") for t in range(n_threads) for i in range(per)]
    assert len(st.get_judgments("j", keys)) == n_threads * per
    st.close()
    st.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        st.count("judgments")


def test_two_stores_share_one_file_and_schema_is_checked(tmp_path):
    path = tmp_path / "c.sqlite"
    with Store(path) as a, Store(path) as b:
        a.put_generations("fp", [("p", 0, "hello", 1)])
        assert b.get_generations("fp", [("p", 0)]) == {("p", 0): ("hello", 1)}
    con = sqlite3.connect(path)
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    with pytest.raises(RuntimeError, match="schema version 99"):
        Store(path).count("generations")


def test_code_hash_ignores_comments_and_docstrings_but_not_code(tmp_path, monkeypatch):
    """Cache keys follow what code computes (vd.core.io.code_hash): a comment or docstring edit keeps
    them, a change to the code itself changes them."""
    import importlib
    import sys

    from vd.core.io import code_hash

    monkeypatch.syspath_prepend(str(tmp_path))

    def version(source):
        (tmp_path / "vd_probe_mod.py").write_text(source)
        sys.modules.pop("vd_probe_mod", None)
        return code_hash(importlib.import_module("vd_probe_mod"))

    base = version('"""Doc."""\ndef f(x):\n    """What f does."""\n    return x + 1  # one\n')
    assert version('"""Other doc."""\n\n\ndef f(x):\n    """Another text."""\n    return x + 1  # two\n') == base
    assert version('"""Doc."""\ndef f(x):\n    """What f does."""\n    return x + 2  # one\n') != base


def test_a_transaction_an_interruption_left_open_does_not_break_the_store(tmp_path):
    """A KeyboardInterrupt between BEGIN and COMMIT leaves the connection in a transaction; the Store's
    next call rolls it back and works (before: "cannot start a transaction within a transaction")."""
    with Store(tmp_path / "cache.sqlite") as store:
        store.put_generations("fp", {("p1", 0): ("first", 3)})
        con = store._connect()
        con.execute("BEGIN IMMEDIATE")  # what an interrupted put_* or get_* leaves behind
        con.execute("INSERT OR IGNORE INTO generations VALUES ('fp', 'p2', 0, 'half-written', 1, 'now')")
        assert con.in_transaction
        assert store.get_generations("fp", [("p1", 0), ("p2", 0)]) == {("p1", 0): ("first", 3)}
        assert store.put_generations("fp", {("p3", 0): ("third", 2)}) == 1
        assert not con.in_transaction and store.count("generations") == 2
