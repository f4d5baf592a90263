"""vd.core.io, vd.core.cache: atomic writes, checkpoint fingerprints, and the SQLite cache of generations and
judgments."""

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
from vd.core.cache import CacheError, Store, checkpoint_fingerprint
from vd.core.io import atomic_write_csv, atomic_write_json, atomic_write_text, read_csv, text_hash

SAMPLING = {"temperature": 0.7, "max_new_tokens": 256, "n": 5, "top_p": 1.0}


# ----------------------------------------------------------------------------- atomic writes
def test_atomic_writes_round_trip_and_leave_no_temp_files(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "héllo\n")
    df = pd.DataFrame({"topic": ["immigration", "abortion"], "M": [0.38, -0.02]})
    atomic_write_csv(df, tmp_path / "sub" / "t.csv")  # parent folders are created
    atomic_write_json({"M": np.float64(0.5), "n": np.int64(3), "v": np.arange(2), "p": tmp_path}, tmp_path / "m.json")
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo\n"
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "sub" / "t.csv"), df)  # plain CSV to other readers
    pd.testing.assert_frame_equal(read_csv(tmp_path / "sub" / "t.csv"), df)
    assert json.loads((tmp_path / "m.json").read_text()) == {"M": 0.5, "n": 3, "v": [0, 1], "p": str(tmp_path)}
    atomic_write_text(tmp_path / "a.txt", "second")  # overwrite
    assert (tmp_path / "a.txt").read_text() == "second"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.txt", "m.json", "sub", "t.csv"]
    assert oct((tmp_path / "a.txt").stat().st_mode & 0o777) == oct(0o644)


def _exploding_csv(df):
    """Half a table, then a failure, as a crash in the middle of writing one would."""
    raise RuntimeError("disk on fire")


def test_failed_write_keeps_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "table.csv"
    target.write_text("topic,M\nold,1\n")
    monkeypatch.setattr(store_mod, "csv_text", _exploding_csv)
    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write_csv(pd.DataFrame({"topic": ["x"]}), target)
    assert target.read_text() == "topic,M\nold,1\n"  # never a partial file
    assert os.listdir(tmp_path) == ["table.csv"]  # no temp file left behind
    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write_csv(pd.DataFrame({"topic": ["x"]}), tmp_path / "new.csv")
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
    assert text_hash("Should we close the gates?") == hashlib.sha256(b"Should we close the gates?").hexdigest()
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
        assert st.put_generations("fp1", {("p1", "h1", 0): ("Yes, I support this.", 6),
                                          ("p1", "h1", 1): ("No.", 2)}) == 2
        assert st.put_generations("fp1", [(7, "h7", 0, "int id", 3), {"prompt_id": "p2", "prompt_hash": "h2",
                                                                       "sample_index": 0, "text": "It depends.",
                                                                       "n_new_tokens": 4}]) == 2
        # a rerun writes nothing and never overwrites
        assert st.put_generations("fp1", {("p1", "h1", 0): ("different text", 9)}) == 0
        assert st.count("generations") == 4
        got = st.get_generations("fp1", [("p1", "h1", 0), ("p1", "h1", 1), (7, "h7", 0), ("p2", "h2", 0),
                                         ("missing", "h1", 0)])
        assert got == {("p1", "h1", 0): ("Yes, I support this.", 6), ("p1", "h1", 1): ("No.", 2),
                       (7, "h7", 0): ("int id", 3), ("p2", "h2", 0): ("It depends.", 4)}
        assert st.get_generations("fp2", [("p1", "h1", 0)]) == {}  # another checkpoint
        assert st.get_generations("fp1", [("p1", "other prompt", 0)]) == {}  # the same id, asked otherwise
        assert st.get_generations("fp1", []) == {}
        with pytest.raises(ValueError, match="prompt_hash"):
            st.put_generations("fp1", [("p3", "", 0, "text", 1)])
    assert path.exists()
    with Store(path) as st:  # persisted
        assert st.count("generations") == 4
        con = sqlite3.connect(path)
        assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "2"
        con.close()


def test_many_keys_in_few_queries(tmp_path):
    with Store(tmp_path / "c.sqlite") as st:
        rows = [(f"p{i}", f"h{i}", s, f"answer {i}-{s}", 10) for i in range(1000) for s in range(5)]
        st.put_generations("fp", rows)
        statements = []
        st._connect().set_trace_callback(statements.append)
        got = st.get_generations("fp", [(f"p{i}", f"h{i}", s) for i in range(1000) for s in range(5)])
        st._connect().set_trace_callback(None)
        assert len(got) == 5000 and got[("p999", "h999", 4)] == ("answer 999-4", 10)
        selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
        assert len(selects) == 1  # one join, not one query per key


V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE generations (fingerprint TEXT NOT NULL, prompt_id TEXT NOT NULL, sample_index INTEGER NOT NULL,
    text TEXT NOT NULL, n_new_tokens INTEGER, created TEXT NOT NULL,
    PRIMARY KEY (fingerprint, prompt_id, sample_index));
CREATE TABLE judgments (judge_key TEXT NOT NULL, question_hash TEXT NOT NULL, answer_hash TEXT NOT NULL,
    topic TEXT NOT NULL, p_support REAL, p_neutral REAL, p_oppose REAL, status TEXT NOT NULL, error TEXT,
    created TEXT NOT NULL, PRIMARY KEY (judge_key, question_hash, answer_hash, topic));
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO generations VALUES ('fp', 'immigration-007', 0, 'an answer about immigration', 5, 'then');
INSERT INTO judgments VALUES ('j', 'q', 'a', 'immigration', 0.2, 0.5, 0.3, 'ok', NULL, 'then');
"""


def test_a_version_1_cache_keeps_its_judgments_and_drops_its_generations(tmp_path, caplog):
    """Version 1 keyed answers by probe id alone: an edited question reused them. They cannot be told
    apart from right ones, so they go (made again when scored); judgments are keyed by text and stay."""
    path = tmp_path / "cache.sqlite"
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")  # as version 1 wrote it
    con.executescript(V1_SCHEMA)
    con.close()
    with caplog.at_level("WARNING", logger="vd.core.cache"), Store(path) as st:
        assert st.count("generations") == 0 and st.count("judgments") == 1
        assert st.get_judgments("j", [("q", "a", "immigration")])[("q", "a", "immigration")]["p_neutral"] == 0.5
        st.put_generations("fp", [("immigration-007", "h", 0, "new", 1)])
    assert "cache schema 1 -> 2: its 1 generations were keyed by probe id" in caplog.text
    con = sqlite3.connect(path)
    assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "2"
    assert con.execute("PRAGMA journal_mode").fetchone()[0] != "wal"  # converted: a rollback journal now
    con.close()


def test_the_cache_uses_a_rollback_journal_that_network_mounts_support(tmp_path):
    """WAL needs shared memory mapped beside the database, which network and FUSE mounts (Google Drive)
    lack; the cache uses a rollback journal, and two stores on one file still see each other's rows."""
    path = tmp_path / "c.sqlite"
    with Store(path) as a, Store(path) as b:
        a.put_generations("fp", [("p", "h", 0, "hello", 1)])
        assert b.get_generations("fp", [("p", "h", 0)]) == {("p", "h", 0): ("hello", 1)}
        b.put_judgments("j", [_judgment()])
        assert a.count("judgments") == 1
        assert a._connect().execute("PRAGMA journal_mode").fetchone()[0] == "truncate"
        assert not any(tmp_path.glob("c.sqlite-wal")) and not any(tmp_path.glob("c.sqlite-shm"))


def _writer(path, tag, n):
    with Store(path) as st:
        for i in range(n):
            st.put_judgments("j", [_judgment(key=(f"q{tag}", f"a{i}", "religion"))])
            st.put_generations("fp", [(f"p{tag}", "h", i, f"text {i}", 1)])


@pytest.mark.slow
def test_two_processes_write_one_cache_at_once(tmp_path):
    import multiprocessing

    path = tmp_path / "c.sqlite"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, t, 100)) for t in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    with Store(path) as st:
        assert st.count("judgments") == 200 and st.count("generations") == 200


def test_a_damaged_cache_is_one_line_naming_it(tmp_path):
    garbage = tmp_path / "garbage" / "cache.sqlite"
    garbage.parent.mkdir()
    garbage.write_bytes(os.urandom(8192))
    with pytest.raises(CacheError) as e:
        Store(garbage).count("judgments")
    assert str(e.value).startswith(f"{garbage}: the cache is damaged (file is not a database)")
    assert "move it aside" in str(e.value) and "\n" not in str(e.value)
    malformed = tmp_path / "malformed" / "cache.sqlite"
    with Store(malformed) as st:
        st.put_generations("fp", [(f"p{i}", "h" * 64, s, "answer " * 40, 9) for i in range(300) for s in range(5)])
    data = bytearray(malformed.read_bytes())
    page = 4096
    data[2 * page:len(data) - page] = os.urandom(len(data) - 3 * page)  # the pages, not the header
    malformed.write_bytes(bytes(data))
    with pytest.raises(CacheError,
                       match=r"the cache is damaged \((database disk image is malformed|file is not a database)\)"):
        Store(malformed).get_generations("fp", [(f"p{i}", "h" * 64, 0) for i in range(300)])


def test_a_full_disk_under_the_cache_is_the_oserror_the_cli_names(tmp_path, capsys, monkeypatch):
    """SQLite's own "database or disk is full" (here: its page limit reached) becomes OSError(ENOSPC) naming
    the file, which every vd command prints as one line (vd.cli.disk_error)."""
    import errno

    from vd import cli

    path = tmp_path / "cache.sqlite"
    with Store(path) as st:
        st.put_generations("fp", [("p0", "h" * 64, 0, "answer", 1)])
        con = st._connect()
        con.execute(f"PRAGMA max_page_count = {con.execute('PRAGMA page_count').fetchone()[0]}")
        with pytest.raises(OSError) as e:
            st.put_generations("fp", [(f"p{i}", "h" * 64, 0, "answer " * 400, 9) for i in range(200)])
        assert e.value.errno == errno.ENOSPC and e.value.filename == str(path)
        assert st.count("generations") == 1  # the transaction rolled back whole

    def score(args):
        with Store(path) as st:
            con = st._connect()
            con.execute(f"PRAGMA max_page_count = {con.execute('PRAGMA page_count').fetchone()[0]}")
            st.put_generations("fp", [(f"p{i}", "h" * 64, 0, "answer " * 400, 9) for i in range(200)])

    monkeypatch.setattr(cli, "cmd_score", score)
    assert cli.main(["score", "--run", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and str(path) in err and "Traceback" not in err


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
        assert n == 1
        assert st.get_judgments("j", [("q", "a", "abortion")])[("q", "a", "abortion")]["status"] == "text_fallback"
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


@pytest.mark.slow
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
            st.put_generations("fp", [(f"q{t}", "h", i, f"text {t} {i}", i)])
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
        a.put_generations("fp", [("p", "h", 0, "hello", 1)])
        assert b.get_generations("fp", [("p", "h", 0)]) == {("p", "h", 0): ("hello", 1)}
    con = sqlite3.connect(path)
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    with pytest.raises(CacheError, match="schema version 99"):
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
        store.put_generations("fp", {("p1", "h", 0): ("first", 3)})
        con = store._connect()
        con.execute("BEGIN IMMEDIATE")  # what an interrupted put_* or get_* leaves behind
        con.execute("INSERT OR IGNORE INTO generations VALUES ('fp', 'h', 'p2', 0, 'half-written', 1, 'now')")
        assert con.in_transaction
        assert store.get_generations("fp", [("p1", "h", 0), ("p2", "h", 0)]) == {("p1", "h", 0): ("first", 3)}
        assert store.put_generations("fp", {("p3", "h", 0): ("third", 2)}) == 1
        assert not con.in_transaction and store.count("generations") == 2


# ----------------------------------------------------------------------------- CSV tables that round-trip
STRANGE = ["a\rb", "c\nd", "nul\x00cut?", 'a "quoted" word', "tab\there", "", "  spaces  ", "x,y", "\r\n",
           "NaN", "NA", "null", "5", "1.5", "True", "é ü 中", '"', '""', ",", "\n"]


def test_any_string_and_float_round_trips_through_a_csv_table(tmp_path):
    """A lone \\r made pandas add a row, NUL cut an answer, an empty answer read back as NaN, and a
    float came back a last bit off: the pair atomic_write_csv / read_csv gives back what it was given."""
    rng = np.random.default_rng(0)
    floats = np.concatenate([rng.random(len(STRANGE) - 4), [1e-300, 5e-324, 0.1 + 0.2, 1 / 3]])
    floats *= np.exp(rng.normal(0, 30, len(STRANGE)))
    df = pd.DataFrame({"answer": STRANGE, "p": floats, "n": np.arange(len(STRANGE)) - 3,
                       "ok": [i % 2 == 0 for i in range(len(STRANGE))],
                       "error": [None] * (len(STRANGE) - 1) + ["HTTP 500"],
                       "half": [np.nan, 0.5] * (len(STRANGE) // 2)})
    atomic_write_csv(df, tmp_path / "t.csv")
    back = read_csv(tmp_path / "t.csv")
    assert back["answer"].tolist() == STRANGE  # every string exactly, in order: no extra or cut rows
    assert back["p"].to_numpy().tobytes() == df["p"].to_numpy().tobytes()  # bit for bit
    assert back.dtypes.to_dict() == {"answer": object, "p": np.float64, "n": np.int64, "ok": bool, "error": object,
                                     "half": np.float64}
    assert back["error"].isna().sum() == len(STRANGE) - 1 and back["error"].iloc[-1] == "HTTP 500"
    assert np.array_equal(back["half"].to_numpy(), df["half"].to_numpy(), equal_nan=True)
    assert back["n"].tolist() == df["n"].tolist() and back["ok"].tolist() == df["ok"].tolist()
    other = pd.read_csv(tmp_path / "t.csv", keep_default_na=False, engine="python")  # plain CSV to others
    assert len(other) == len(STRANGE) and other["answer"].tolist()[:2] == STRANGE[:2]
    empty = pd.DataFrame({"a": pd.Series([], dtype=object)})
    atomic_write_csv(empty, tmp_path / "e.csv")
    assert list(read_csv(tmp_path / "e.csv").columns) == ["a"] and read_csv(tmp_path / "e.csv").empty


def test_read_csv_reads_a_table_pandas_wrote_and_names_a_malformed_one(tmp_path):
    df = pd.DataFrame({"topic": ["immigration", "religion, faith"], "chosen_p_support": [0.25, 1 / 3]})
    df.to_csv(tmp_path / "old.csv", index=False)  # as earlier versions wrote synthetic_judged.csv
    pd.testing.assert_frame_equal(read_csv(tmp_path / "old.csv"), df)
    (tmp_path / "bad.csv").write_text('"a","b"\n"unterminated,1\n')
    with pytest.raises(ValueError, match="bad.csv: not a CSV table"):
        read_csv(tmp_path / "bad.csv")
    (tmp_path / "ragged.csv").write_text('"a","b"\n1\n')
    with pytest.raises(ValueError, match="ragged.csv: its rows do not all have the header's 2 fields"):
        read_csv(tmp_path / "ragged.csv")
