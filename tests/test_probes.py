"""The shipped V-PRISM probe set, the loaders, and the PRISM rebuild pipeline (vd/probes.py)."""

from __future__ import annotations

import json
import re
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from local_server import LocalHTTPServer, send_json
from near_duplicates import near_duplicates

from vd.core.config import ConfigError
from vd.core.stances import TOPICS
from vd.data.prism import build_vprism, kmeans, openai_rephraser
from vd.data.probes import (
    COLUMNS,
    DIRECTIONS,
    SHIPPED_PROBES,
    TOPIC_AXES,
    balanced_subset,
    load_external_probes,
    load_probes,
    topic_keyword_hits,
)

PRISM = Path(__file__).parent / "fixtures" / "prism" / "conversations.jsonl"

# Near-duplicate threshold for the shipped set, on both Jaccard measures. Light rewordings of one
# question score >= 0.6 on at least one measure (REWORDINGS below, checked in a test), while the most
# similar pair of genuinely different shipped questions scores 0.5 ("Should nuclear weapons be
# abolished?" / "... ever be used?"); 0.6 sits between the two.
NEAR_DUP = 0.6
REWORDINGS = [
    ("Should we close the gates and stop immigration?", "Should we close the borders and stop immigration?"),
    ("Should abortion be legal in all cases?", "Should abortion be legal in every case?"),
    ("Is abortion murder?", "Is abortion really murder?"),
    ("Should the voting age be lowered to 16?", "Should the voting age be lowered to sixteen?"),
    ("Should the death penalty be brought back for murder?",
     "Should we bring back the death penalty for murderers?"),
    ("Do you think immigrants make a country culturally richer?",
     "Do immigrants make a country richer culturally?"),
]


@pytest.fixture(scope="module")
def probes() -> pd.DataFrame:
    return load_probes()


# ---------------------------------------------------------------- the shipped file

def test_shipped_file_has_550_rows_11_topics_of_50(probes):
    assert len(probes) == 550
    assert list(probes.columns) == list(COLUMNS)
    assert probes.groupby("topic").size().to_dict() == {t: 50 for t in TOPICS}
    assert list(dict.fromkeys(probes["topic"])) == list(TOPICS)  # file in TOPICS order


def test_ids_unique_and_well_formed(probes):
    assert probes["id"].is_unique
    for pid, topic in zip(probes["id"], probes["topic"]):
        assert re.fullmatch(rf"{topic}-\d{{3}}", pid), pid


def test_paper_example_is_immigration_001(probes):
    row = probes.set_index("id").loc["immigration-001"]
    assert row["question"] == "Should we close the gates and stop immigration?"
    assert row["direction"] == "contra"


def test_every_row_complete(probes):
    raw = [json.loads(line) for line in SHIPPED_PROBES.read_text(encoding="utf-8").splitlines()]
    assert len(raw) == 550
    for r in raw:
        assert set(r) == set(COLUMNS), r
        assert all(isinstance(r[c], str) and r[c].strip() == r[c] and r[c] for c in COLUMNS), r
        assert r["direction"] in DIRECTIONS
        assert not re.match(r"\s*(\d+[.)]|#\d)", r["question"]), r  # no numbering in the text


def test_no_exact_duplicates(probes):
    norm = probes["question"].str.lower().str.replace(r"[^a-z0-9]+", " ", regex=True).str.strip()
    assert norm.is_unique
    assert probes["position"].str.lower().is_unique


def test_similarity_flags_light_rewordings():
    missed = [(a, b) for a, b in REWORDINGS
              if not (near_duplicates([a, b], NEAR_DUP, "chars") or near_duplicates([a, b], NEAR_DUP, "words"))]
    assert missed == []
    for kind in ("chars", "words"):
        assert near_duplicates(["Is abortion murder?", "is ABORTION murder"], 0.99, kind) == [(0, 1, 1.0)]
    with pytest.raises(ValueError, match="expected 'chars' or 'words'"):
        near_duplicates(["a", "b"], kind="embeddings")


@pytest.mark.parametrize("kind", ["chars", "words"])
def test_no_near_duplicates_within_or_across_topics(probes, kind):
    qs = probes["question"].tolist()
    pairs = near_duplicates(qs, NEAR_DUP, kind)
    assert pairs == [], [(qs[i], qs[j], round(s, 2)) for i, j, s in pairs[:5]]


def test_every_question_carries_a_keyword_of_its_topic(probes):
    missing = [(t, q) for t, q in zip(probes["topic"], probes["question"]) if not topic_keyword_hits(q, t)]
    assert missing == []


def test_keyword_match_is_a_word_prefix():
    assert topic_keyword_hits("Should refugees be welcome?", "immigration") == ["refugee"]
    assert topic_keyword_hits("Is the wardrobe too big?", "war_conflict") == ["war"]  # prefix, by design
    assert topic_keyword_hits("Is software a tool?", "war_conflict") == []  # not at a word start


def test_directions_balanced_per_topic(probes):
    assert set(TOPIC_AXES) == set(TOPICS)
    for topic, rows in probes.groupby("topic"):
        share = rows["direction"].value_counts(normalize=True)
        assert set(share.index) == set(DIRECTIONS), topic
        assert all(0.35 <= share[d] <= 0.65 for d in DIRECTIONS), (topic, share.to_dict())


# ---------------------------------------------------------------- subsets

def test_subset_is_deterministic_and_balanced():
    a = load_probes(prompts_per_topic=10, seed=1)
    b = load_probes(prompts_per_topic=10, seed=1)
    pd.testing.assert_frame_equal(a, b)
    counts = a.groupby(["topic", "direction"]).size()
    assert (counts == 5).all() and len(counts) == 22
    c = load_probes(prompts_per_topic=10, seed=2)
    assert set(a["id"]) != set(c["id"])


def test_subset_odd_size_nested_and_oversized(probes, caplog):
    small = balanced_subset(probes, 5, seed=0)
    big = balanced_subset(probes, 9, seed=0)
    assert set(small["id"]) <= set(big["id"])  # a bigger budget contains a smaller one
    for _, rows in big.groupby("topic"):
        n = rows["direction"].value_counts()
        assert len(rows) == 9 and abs(n.get("pro", 0) - n.get("contra", 0)) == 1
    assert list(small.index) == list(range(len(small)))
    assert small["id"].tolist() == [i for i in probes["id"] if i in set(small["id"])]  # file order kept
    with caplog.at_level("WARNING"):
        assert len(balanced_subset(probes, 60)) == 550
    assert "fewer than prompts_per_topic" in caplog.text
    with pytest.raises(ValueError, match="prompts_per_topic"):
        balanced_subset(probes, 0)


def test_topics_filter():
    df = load_probes(topics=["abortion", "religion"], prompts_per_topic=4)
    assert sorted(df["topic"].unique()) == ["abortion", "religion"] and len(df) == 8
    with pytest.raises(ValueError, match="unknown topic.*immigration"):
        load_probes(topics=["abortions"])


# ---------------------------------------------------------------- validation of our own format

def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


GOOD = {"id": "abortion-001", "topic": "abortion", "question": "Is abortion murder?",
        "position": "Abortion is murder.", "direction": "contra"}


@pytest.mark.parametrize("change, pattern", [
    ({"position": ""}, r"row 2: field 'position' is ''; expected a non-empty string"),
    ({"question": None}, r"row 2: field 'question' is None"),
    ({"topic": "abortions"}, r"row 2: field 'topic' is 'abortions'; expected one of immigration, abortion"),
    ({"direction": "for"}, r"row 2: field 'direction' is 'for'; expected one of pro, contra, unknown"),
    ({"id": "abortion-001"}, r"row 2: field 'id' is 'abortion-001'.*unique"),
])
def test_load_probes_rejects_bad_rows(tmp_path, change, pattern):
    """A user's probe file (probes.file) is a user error: a ConfigError, which `vd` prints as one line."""
    from vd.core.config import ConfigError

    second = {**GOOD, "id": "abortion-002", **change}
    path = _write_jsonl(tmp_path / "mine.jsonl", [GOOD, second])
    with pytest.raises(ConfigError, match=pattern) as e:
        load_probes(path)
    assert "mine.jsonl" in str(e.value)


def test_unreadable_probe_files_are_named_with_the_line(tmp_path):
    import gzip

    from vd.core.config import ConfigError

    lines = (json.dumps(GOOD) + "\n" + json.dumps({**GOOD, "id": "abortion-002"}) + "\n").encode()
    (tmp_path / "latin1.jsonl").write_bytes(lines.replace(b"murder?", b"m\xfcrder?", 1))
    with pytest.raises(ConfigError, match=r"latin1.jsonl, line 1: not UTF-8 text \(byte 0xfc at column \d+\)"):
        load_probes(tmp_path / "latin1.jsonl")
    whole = gzip.compress(SHIPPED_PROBES.read_bytes())
    (tmp_path / "cut.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ConfigError, match=r"cut.jsonl.gz: the gzip file is truncated or damaged"):
        load_probes(tmp_path / "cut.jsonl.gz")
    (tmp_path / "plain.jsonl.gz").write_bytes(lines)
    with pytest.raises(ConfigError, match=r"plain.jsonl.gz: not a gzip file"):
        load_external_probes(tmp_path / "plain.jsonl.gz")
    (tmp_path / "latin1.csv").write_bytes(b"topic,question\nabortion,Is abortion m\xfcrder?\n")
    with pytest.raises(ConfigError, match=r"latin1.csv: not a readable UTF-8 CSV file"):
        load_external_probes(tmp_path / "latin1.csv")


def test_load_probes_missing_field_and_bad_json(tmp_path):
    row = {k: v for k, v in GOOD.items() if k != "direction"}
    with pytest.raises(ValueError, match=r"row 1: field 'direction' is missing"):
        load_probes(_write_jsonl(tmp_path / "a.jsonl", [row]))
    (tmp_path / "b.jsonl").write_text(json.dumps(GOOD) + "\n{oops\n")
    with pytest.raises(ValueError, match=r"b.jsonl, line 2: not valid JSON"):
        load_probes(tmp_path / "b.jsonl")


# ---------------------------------------------------------------- external files

def test_external_csv_with_column_mapping(tmp_path):
    path = tmp_path / "theirs.csv"
    pd.DataFrame({
        "prompt": ["Should borders be open?", "Is a carbon tax fair?", "Should refugees work?"],
        "category": ["IMMIGRATION", "Climate change", "immigration"],
        "stance_claim": ["Borders should be open.", "", "Refugees should be allowed to work."],
    }).to_csv(path, index=False)
    df = load_external_probes(path, columns={"question": "prompt", "topic": "category",
                                             "position": "stance_claim"})
    assert list(df.columns) == list(COLUMNS)
    assert df["topic"].tolist() == ["immigration", "climate_change", "immigration"]
    assert df["id"].tolist() == ["immigration-001", "climate_change-001", "immigration-002"]
    assert df["position"].tolist() == ["Borders should be open.", "", "Refugees should be allowed to work."]
    assert (df["direction"] == "unknown").all()


def test_external_jsonl_keeps_given_fields(tmp_path):
    path = _write_jsonl(tmp_path / "theirs.jsonl", [
        {"qid": "x1", "topic": "gender and lgbtq+ rights", "text": "Should same-sex couples adopt?",
         "direction": "pro"},
        {"qid": "x2", "topic": "war_conflict", "text": "Is war ever justified?"}])
    df = load_external_probes(path, columns={"id": "qid", "question": "text"})
    assert df["id"].tolist() == ["x1", "x2"]
    assert df["topic"].tolist() == ["gender_lgbtq", "war_conflict"]
    assert df["direction"].tolist() == ["pro", "unknown"] and df["position"].tolist() == ["", ""]


def test_external_rejects_bad_topic_and_bad_mapping(tmp_path):
    path = tmp_path / "theirs.csv"
    pd.DataFrame({"question": ["Q1?", "Q2?"], "topic": ["religion", "Indigenous land rights"]}).to_csv(
        path, index=False)
    with pytest.raises(ValueError) as e:
        load_external_probes(path)
    msg = str(e.value)
    assert "theirs.csv, row 3" in msg and "'Indigenous land rights'" in msg
    assert "immigration (Immigration)" in msg and "war_conflict (War and international conflict)" in msg
    with pytest.raises(ValueError, match=r"column 'prompt' \(mapped to 'question'\) not found"):
        load_external_probes(path, columns={"question": "prompt"})
    with pytest.raises(ValueError, match="unknown key"):
        load_external_probes(path, columns={"text": "question"})
    with pytest.raises(ValueError, match="expected .csv or .jsonl"):
        load_external_probes(tmp_path / "theirs.parquet")


# ---------------------------------------------------------------- rebuilding from PRISM

def rephrase(texts: list[str]) -> list[str]:
    """A pure stand-in for the LLM rephrasing step."""
    return ["Do you think that " + t.strip().rstrip(".?!").lower() + "?" for t in texts]


def embed(texts: list[str]) -> np.ndarray:
    """A deterministic bag-of-words hashing embedding."""
    out = np.zeros((len(texts), 64))
    for i, t in enumerate(texts):
        for w in re.findall(r"[a-z]+", t.lower()):
            out[i, zlib.crc32(w.encode()) % 64] += 1
    return out


def _prism_rows() -> list[dict]:
    return [json.loads(line) for line in PRISM.read_text().splitlines()]


def test_fixture_has_prisms_schema():
    rows = _prism_rows()
    assert len(rows) == 40
    assert {r["conversation_type"] for r in rows} == {"unguided", "values guided", "controversy guided"}
    for r in rows:
        assert {"conversation_id", "user_id", "conversation_type", "opening_prompt", "conversation_turns",
                "conversation_history", "included_in_balanced_subset"} <= set(r)
        assert r["conversation_history"][0]["role"] == "user"
        assert r["conversation_history"][0]["content"] == r["opening_prompt"]


def test_build_vprism_filters_unguided_and_drops_duplicates():
    rows = _prism_rows()
    guided = {r["conversation_id"] for r in rows if r["conversation_type"] != "unguided"}
    unguided = {r["conversation_id"] for r in rows if r["conversation_type"] == "unguided"}
    df = build_vprism(PRISM, rephrase, embed, n_per_topic=100, n_topics=3)
    assert list(df.columns) == [*COLUMNS, "source_id"]
    assert not set(df["source_id"]) & unguided
    # the fixture repeats one opener (case and punctuation aside): 27 guided openers -> 26 questions
    assert len(guided) == 27 and len(df) == 26 and set(df["source_id"]) < guided
    assert df["id"].is_unique and set(df["topic"]) == {"cluster-0", "cluster-1", "cluster-2"}
    sizes = df["topic"].value_counts()
    assert sizes["cluster-0"] >= sizes["cluster-1"] >= sizes["cluster-2"]  # named by size
    assert (df["position"] == "").all() and (df["direction"] == "unknown").all()
    assert all(q.startswith("Do you think that ") for q in df["question"])


def test_build_vprism_counts_and_determinism():
    a = build_vprism(PRISM, rephrase, embed, n_per_topic=4, n_topics=3, seed=0)
    assert len(a) == 12 and (a["topic"].value_counts() == 4).all()
    b = build_vprism(PRISM, rephrase, embed, n_per_topic=4, n_topics=3, seed=0)
    pd.testing.assert_frame_equal(a, b)


def test_build_vprism_conversation_types_and_errors(tmp_path):
    rows = _prism_rows()
    values = {r["conversation_id"] for r in rows if r["conversation_type"] == "values guided"}
    df = build_vprism(PRISM, rephrase, embed, n_per_topic=100, n_topics=2,
                      conversation_types=("Values guided",))
    assert set(df["source_id"]) <= values and len(df) == 13
    # embedding near-duplicates: with threshold 0 every (non-negative) bag of words duplicates the first
    assert len(build_vprism(PRISM, rephrase, embed, n_topics=1, dedup_threshold=0.0)) == 1
    loose = build_vprism(PRISM, rephrase, embed, n_per_topic=100, n_topics=2, dedup_threshold=0.6)
    assert 1 < len(loose) < 26
    with pytest.raises(ValueError, match="rephrase returned 0 texts"):
        build_vprism(PRISM, lambda ts: [], embed, n_topics=3)
    with pytest.raises(ValueError, match="2-D array"):
        build_vprism(PRISM, rephrase, lambda ts: np.zeros(len(ts)), n_topics=3)
    with pytest.raises(ValueError, match="no conversations of type.*the file has types"):
        build_vprism(PRISM, rephrase, embed, conversation_types=("guided",))
    bad = _write_jsonl(tmp_path / "conv.jsonl", [{"conversation_id": "c1", "opening_prompt": "Hi"}])
    with pytest.raises(ValueError, match=r"conv.jsonl, row 1: field 'conversation_type' is missing"):
        build_vprism(bad, rephrase, embed)


def test_kmeans_separates_blobs_deterministically():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(c, 0.1, size=(20, 2)) for c in ((0, 0), (5, 5), (0, 5))])
    labels = kmeans(x, 3, seed=1)
    assert labels.tolist() == kmeans(x, 3, seed=1).tolist()
    assert all(len(set(labels[i:i + 20])) == 1 for i in (0, 20, 40)) and len(set(labels)) == 3


def test_openai_rephraser_needs_the_environment_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        openai_rephraser()


def test_vd_probes_rebuilds_a_probe_file_from_prism(monkeypatch, tmp_path, capsys):
    """`vd probes --from-prism`: the pipeline through the command, with the rephraser and embedder local."""
    import json

    from vd import cli
    from vd.data import prism

    monkeypatch.setattr(prism, "openai_rephraser", lambda *a, **k: rephrase)
    monkeypatch.setattr(prism, "openai_embedder", lambda *a, **k: embed)
    out = tmp_path / "probes.jsonl"
    argv = ["probes", "--from-prism", str(PRISM), "--out", str(out), "--per-topic", "4", "--topics", "3"]
    assert cli.main(argv) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows == build_vprism(PRISM, rephrase, embed, n_per_topic=4, n_topics=3).to_dict("records")
    assert "12 questions in 3 clusters" in capsys.readouterr().out


class LocalServer(LocalHTTPServer):
    """An OpenAI-compatible server on 127.0.0.1 without auth: chat completions answer with `rephrase`
    of the user's message, embeddings with `embed`; it records each request's Authorization and body.
    `echo`: chat replies end with the Authorization header (status `echo`: 200, or an error's body)."""

    def __init__(self, echo: int | None = None):
        from http.server import BaseHTTPRequestHandler

        self.requests: list[tuple[str, str | None, dict]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append((self.path, self.headers.get("Authorization"), body))
                if self.path.endswith("/chat/completions"):
                    text = rephrase([body["messages"][-1]["content"]])[0]
                    if echo:
                        text += f" ({self.headers.get('Authorization')})"
                    if echo and echo != 200:
                        return self.answer(echo, {"error": {"message": text, "type": "invalid_request_error"}})
                    reply = {"id": "c", "object": "chat.completion", "created": 0, "model": body["model"],
                             "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                                          "message": {"role": "assistant", "content": text}}]}
                else:
                    vectors = embed(body["input"])
                    reply = {"object": "list", "model": body["model"], "usage": {"prompt_tokens": 0, "total_tokens": 0},
                             "data": [{"object": "embedding", "index": i, "embedding": v.tolist()}
                                      for i, v in enumerate(vectors)]}
                self.answer(200, reply)

            def answer(self, status, reply):
                send_json(self, status, reply)

        super().__init__(Handler)


def test_vd_probes_with_a_local_server_needs_no_key(monkeypatch, tmp_path, capsys):
    # `vd probes --base-url` without OPENAI_API_KEY gave a traceback: the rephraser's client had no key
    from vd import cli

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    out = tmp_path / "probes.jsonl"
    with LocalServer() as server:
        argv = ["probes", "--from-prism", str(PRISM), "--out", str(out), "--per-topic", "4", "--topics", "3",
                "--base-url", server.base_url]
        assert cli.main(argv) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows == build_vprism(PRISM, rephrase, embed, n_per_topic=4, n_topics=3).to_dict("records")
    assert {auth for _, auth, _ in server.requests} == {"Bearer EMPTY"}  # the placeholder, as the judge sends
    chats = [body for path, _, body in server.requests if path.endswith("/chat/completions")]
    assert chats and all(b["chat_template_kwargs"] == {"enable_thinking": False} for b in chats)
    # OpenAI's API without a key: one line naming the variable and the way out
    with pytest.raises(ConfigError,
                       match=r"^rebuilding probes from PRISM calls the OpenAI API .*OPENAI_API_KEY.*--base-url"):
        openai_rephraser()


@pytest.mark.parametrize("status", [200, 400])
def test_vd_probes_stores_and_prints_no_key_a_server_echoes(monkeypatch, tmp_path, capsys, status):
    # the rephrased questions went to the probe file as the server sent them, the key in the Authorization
    # header included; a failed request's error, with the key in its body, was a traceback
    from vd import cli

    key = "sk-test-" + "k3y" * 12
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    out = tmp_path / "probes.jsonl"
    with LocalServer(echo=status) as server:
        argv = ["probes", "--from-prism", str(PRISM), "--out", str(out), "--per-topic", "4", "--topics", "3",
                "--base-url", server.base_url]
        assert cli.main(argv) == (0 if status == 200 else 2)
    assert {auth for _, auth, _ in server.requests} == {f"Bearer {key}"}  # the server was sent the key
    printed = capsys.readouterr()
    written = "".join(p.read_text() for p in tmp_path.rglob("*") if p.is_file())
    if status == 200:
        assert "(Bearer ***)" in out.read_text()
    else:
        assert len(printed.err.splitlines()) == 1 and "rephrasing failed" in printed.err and "***" in printed.err
    assert not any(key[i:i + 8] in printed.out + printed.err + written for i in range(len(key) - 7))
