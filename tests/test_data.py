"""vd.data.loaders: the four hub loaders on small fixtures in each dataset's own schema (tests/fixtures/hub/,
hand-written, malformed rows included on purpose), the dispatchers, and the synthetic value-gap builder."""

from __future__ import annotations

import gzip
import json
import logging
import math
import sys
import types
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from vd.core.config import ConfigError
from vd.data import loaders as vdd
from vd.data import synthetic
from vd.data.loaders import LoadResult, load_alpaca, load_hh_rlhf, load_ultrafeedback, load_wildchat
from vd.data.synthetic import build_synthetic_pairs

HUB = Path(__file__).parent / "fixtures" / "hub"
ALPACA = HUB / "alpaca_data.json"
WILDCHAT = HUB / "wildchat.jsonl"
ULTRA = HUB / "ultrafeedback_binarized.jsonl"
HH = HUB / "hh-rlhf_harmless-base.jsonl"


def _is_message(m) -> bool:
    return (set(m) == {"role", "content"} and m["role"] in ("system", "user", "assistant")
            and isinstance(m["content"], str) and m["content"].strip())


def assert_sft_schema(res: LoadResult) -> None:
    for row in res.rows:
        assert set(row) == {"messages"}
        msgs = row["messages"]
        assert all(_is_message(m) for m in msgs)
        assert [m["role"] for m in msgs] == ["user", "assistant"] * (len(msgs) // 2)
    assert len(res.rows) + sum(res.skipped.values()) == res.n_read


def assert_pref_schema(res: LoadResult, extra: frozenset = frozenset()) -> None:
    for row in res.rows:
        assert set(row) == {"prompt", "chosen", "rejected"} | extra
        assert row["prompt"] and all(_is_message(m) for m in row["prompt"])
        assert row["prompt"][-1]["role"] == "user"
        for side in ("chosen", "rejected"):
            assert len(row[side]) == 1 and _is_message(row[side][0]) and row[side][0]["role"] == "assistant"
        assert row["chosen"][0]["content"] != row["rejected"][0]["content"]
    assert len(res.rows) + sum(res.skipped.values()) == res.n_read


# --- Alpaca ------------------------------------------------------------------------------------


def test_alpaca_counts_and_schema():
    res = load_alpaca(str(ALPACA))
    assert (res.n_read, len(res.rows)) == (16, 11)
    assert res.skipped == Counter({"empty_text": 2, "missing_field:output": 2, "bad_type:input": 1})
    assert res.source == str(ALPACA)
    assert_sft_schema(res)
    assert all(len(r["messages"]) == 2 for r in res.rows)


def test_alpaca_input_handling():
    by_instruction = {r["messages"][0]["content"].split("\n\n")[0]: r for r in load_alpaca(str(ALPACA)).rows}
    # non-empty input: instruction, blank line, input
    row = by_instruction["Translate the sentence into French."]
    assert row["messages"] == [
        {"role": "user", "content": "Translate the sentence into French.\n\nThe library opens at nine."},
        {"role": "assistant", "content": "La bibliothèque ouvre à neuf heures."},
    ]
    # empty and whitespace-only input: the instruction alone
    canada = "What is the capital of Canada?"
    assert by_instruction[canada]["messages"][0]["content"] == canada
    assert by_instruction["Name a primary color."]["messages"][0]["content"] == "Name a primary color."


def test_alpaca_hub_parquet_schema(tmp_path):
    """tatsu-lab/alpaca on the hub is parquet with an extra `text` column; it loads the same."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    raw = [r for r in json.loads(ALPACA.read_text()) if isinstance(r.get("input"), str) and r.get("output") is not None]
    rows = [dict(r, text=f"### Instruction:\n{r['instruction']}\n\n### Response:\n{r['output']}") for r in raw]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "train-00000-of-00001.parquet")
    res = load_alpaca(str(tmp_path / "train-00000-of-00001.parquet"))
    assert (res.n_read, len(res.rows)) == (13, 11)
    assert res.skipped == Counter({"empty_text": 2})
    assert res.rows == load_alpaca(str(ALPACA)).rows


# --- WildChat ----------------------------------------------------------------------------------


def test_wildchat_first_turn_with_default_filters():
    res = load_wildchat(str(WILDCHAT))
    assert (res.n_read, len(res.rows)) == (16, 7)
    assert res.skipped == Counter({
        "wrong_language": 2, "toxic": 2, "redacted": 1, "empty_text": 1,
        "missing_field:conversation": 1, "roles_not_alternating": 1, "no_assistant_reply": 1,
    })
    assert_sft_schema(res)
    assert all(len(r["messages"]) == 2 for r in res.rows)
    assert res.rows[1]["messages"] == [
        {"role": "user", "content": "Help me write an email asking for a day off."},
        {"role": "assistant",
         "content": "Subject: Day off request\n\nHi Sam, could I take Friday off? My tasks are covered. Thanks!"},
    ]


def test_wildchat_all_turns():
    res = load_wildchat(str(WILDCHAT), turns="all")
    assert len(res.rows) == 6
    # conversation 13's empty second answer now counts; conversation 15 has no reply at all
    assert res.skipped == Counter({
        "wrong_language": 2, "toxic": 2, "redacted": 1, "empty_text": 2,
        "missing_field:conversation": 1, "roles_not_alternating": 1, "not_ending_in_assistant": 1,
    })
    assert_sft_schema(res)
    assert [len(r["messages"]) for r in res.rows] == [2, 4, 6, 2, 2, 4]
    with pytest.raises(ValueError, match="turns"):
        load_wildchat(str(WILDCHAT), turns="last")


def test_wildchat_filter_switches():
    any_language = load_wildchat(str(WILDCHAT), language=None)
    assert len(any_language.rows) == 9 and "wrong_language" not in any_language.skipped
    assert len(load_wildchat(str(WILDCHAT), language="french").rows) == 1  # case-insensitive
    keep_all = load_wildchat(str(WILDCHAT), drop_toxic=False, drop_redacted=False)
    assert len(keep_all.rows) == 10 and not {"toxic", "redacted"} & set(keep_all.skipped)
    only_toxic = load_wildchat(str(WILDCHAT), drop_redacted=False)
    assert only_toxic.skipped["toxic"] == 2 and len(only_toxic.rows) == 8  # the redacted-only row comes back


# --- UltraFeedback -----------------------------------------------------------------------------


def test_ultrafeedback_prefix_split():
    res = load_ultrafeedback(str(ULTRA))
    assert (res.n_read, len(res.rows)) == (13, 7)
    assert res.skipped == Counter({
        "chosen_equals_rejected": 1, "empty_text": 1, "prefix_mismatch": 1,
        "missing_field:chosen": 1, "not_ending_in_assistant": 1, "bad_message": 1,
    })
    assert_pref_schema(res)
    assert res.rows[0] == {
        "prompt": [{"role": "user", "content": "How do I boil an egg?"}],
        "chosen": [{"role": "assistant",
                    "content": "Place the egg in boiling water for 9 minutes, then cool it in cold water."}],
        "rejected": [{"role": "assistant", "content": "Put egg in water."}],
    }
    multi = res.rows[6]
    assert [m["role"] for m in multi["prompt"]] == ["user", "assistant", "user"]
    assert multi["prompt"][-1]["content"] == "Something shorter?"
    assert multi["rejected"][0]["content"] == "War and Peace."


def test_ultrafeedback_parquet_matches_jsonl(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rows = [json.loads(line) for line in ULTRA.read_text().splitlines()]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "train_prefs-00000-of-00001.parquet")
    res = load_ultrafeedback(str(tmp_path / "train_prefs-00000-of-00001.parquet"))
    assert res.rows == load_ultrafeedback(str(ULTRA)).rows
    assert res.skipped == load_ultrafeedback(str(ULTRA)).skipped


# --- HH-RLHF -----------------------------------------------------------------------------------


def test_hh_rlhf_counts_and_schema():
    res = load_hh_rlhf(str(HH))
    assert (res.n_read, len(res.rows)) == (18, 9)
    assert res.skipped == Counter({
        "no_turns": 1, "not_ending_in_assistant": 1, "prefix_mismatch": 1, "chosen_equals_rejected": 1,
        "empty_text": 1, "roles_not_alternating": 1, "invalid_json": 1, "missing_field:rejected": 1,
        "text_before_first_turn": 1,
    })
    assert_pref_schema(res)
    assert res.rows[0] == {
        "prompt": [{"role": "user", "content": "How do I pick a lock?"}],
        "chosen": [{"role": "assistant", "content": "I can't help with getting into places you don't own. "
                                                    "If you're locked out, a licensed locksmith can help."}],
        "rejected": [{"role": "assistant", "content": "Insert a tension wrench and rake the pins until they set."}],
    }


def test_hh_rlhf_multi_turn_prompt():
    rows = load_hh_rlhf(str(HH)).rows
    two_turn = rows[6]
    assert two_turn["prompt"] == [
        {"role": "user", "content": "I want to get back at my coworker."},
        {"role": "assistant", "content": "What happened?"},
        {"role": "user", "content": "She took credit for my work."},
    ]
    assert two_turn["chosen"][0]["content"].startswith("That's frustrating.")
    assert two_turn["rejected"] == [{"role": "assistant", "content": "Delete her files."}]
    assert [m["role"] for m in rows[8]["prompt"]] == ["user", "assistant"] * 2 + ["user"]


def test_hh_rlhf_gzip_like_the_hub(tmp_path):
    gz = tmp_path / "test.jsonl.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as f:
        f.write(HH.read_text(encoding="utf-8"))
    res = load_hh_rlhf(str(gz))
    plain = load_hh_rlhf(str(HH))
    assert res.rows == plain.rows and res.skipped == plain.skipped


def test_parse_hh_transcript():
    msgs = vdd.parse_hh_transcript("\n\nHuman: hi there \n\nAssistant: hello\n\nHuman: bye\n\nAssistant:  see you ")
    assert msgs == [
        {"role": "user", "content": "hi there"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "bye"},
        {"role": "assistant", "content": "see you"},
    ]
    # a transcript without the leading blank line still parses
    assert vdd.parse_hh_transcript("Human: a\n\nAssistant: b")[1] == {"role": "assistant", "content": "b"}


# --- sampling, logging, errors -----------------------------------------------------------------


def test_sampling_is_seeded_and_takes_valid_rows():
    full = load_alpaca(str(ALPACA))
    a = load_alpaca(str(ALPACA), max_samples=5, seed=1)
    b = load_alpaca(str(ALPACA), max_samples=5, seed=1)
    c = load_alpaca(str(ALPACA), max_samples=5, seed=2)
    assert a.rows == b.rows and a.skipped == b.skipped and a.n_read == b.n_read
    assert len(a.rows) == 5 and a.rows != c.rows
    assert all(r in full.rows for r in a.rows)
    assert 5 <= a.n_read <= 16 and len(a.rows) + sum(a.skipped.values()) == a.n_read
    everything = load_alpaca(str(ALPACA), max_samples=100, seed=3)  # more than exist: all valid rows
    assert sorted(map(str, everything.rows)) == sorted(map(str, full.rows)) and everything.n_read == 16
    assert load_alpaca(str(ALPACA), max_samples=0).rows == []
    with pytest.raises(ValueError, match="max_samples"):
        load_alpaca(str(ALPACA), max_samples=-1)


def test_summary_is_logged_and_names_reasons(caplog):
    with caplog.at_level(logging.INFO, logger="vd.data.loaders"):
        res = load_alpaca(str(ALPACA))
    s = res.summary()
    assert "read 16" in s and "kept 11" in s and "skipped 5" in s and "missing_field:output: 2" in s
    assert s in caplog.text


def test_to_dataset():
    pytest.importorskip("datasets")
    ds = load_hh_rlhf(str(HH)).to_dataset()
    assert len(ds) == 9 and set(ds.column_names) == {"prompt", "chosen", "rejected"}
    assert ds[6]["prompt"][2] == {"role": "user", "content": "She took credit for my work."}


def test_wrong_file_raises_clear_error():
    with pytest.raises(ValueError) as e:
        load_alpaca(str(HH))
    msg = str(e.value)
    assert str(HH) in msg and "instruction" in msg and "output" in msg
    with pytest.raises(ValueError, match="chosen"):  # HH needs transcripts, UltraFeedback has message lists
        load_hh_rlhf(str(ULTRA))
    with pytest.raises(ValueError, match="conversation"):
        load_wildchat(str(ALPACA))


def test_local_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_alpaca(str(tmp_path / "nope.json"))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match="no rows"):
        load_alpaca(str(empty))
    jsonl = tmp_path / "alpaca.jsonl"  # the same records as JSON lines load the same
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in json.loads(ALPACA.read_text())))
    assert load_alpaca(str(jsonl)).rows == load_alpaca(str(ALPACA)).rows


def _alpaca_lines() -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in json.loads(ALPACA.read_text()))


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_a_byte_that_is_not_utf8_skips_its_row_only(tmp_path, suffix):
    """One byte that is not UTF-8 is one counted skip of its row, not a failure of the whole file."""
    data = ALPACA.read_bytes() if suffix == ".json" else _alpaca_lines()
    at = data.index(b"Give three")  # inside the instruction of a row that is kept otherwise
    path = tmp_path / f"alpaca{suffix}"
    path.write_bytes(data[:at] + b"\xff" + data[at:])
    res = load_alpaca(str(path))
    assert (res.n_read, len(res.rows)) == (16, 10)
    assert res.skipped == Counter({"empty_text": 2, "missing_field:output": 2, "bad_type:input": 1, "invalid_utf8": 1})
    assert not any("Give three" in r["messages"][0]["content"] for r in res.rows)


def test_json_lines_split_at_newlines_only(tmp_path):
    """U+2028 is valid inside a JSON string; str.splitlines split such a row in two invalid halves."""
    row = {"instruction": "Say a line\u2028and another.", "input": "", "output": "Done\u2029twice."}
    (tmp_path / "a.jsonl").write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    res = load_alpaca(str(tmp_path / "a.jsonl"))
    assert (res.n_read, len(res.rows), dict(res.skipped)) == (1, 1, {})


def test_damaged_gzip_and_parquet_files_are_named(tmp_path):
    whole = gzip.compress(HH.read_bytes())
    (tmp_path / "truncated.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match=r"truncated.jsonl.gz: the gzip file is truncated"):
        load_hh_rlhf(str(tmp_path / "truncated.jsonl.gz"))
    (tmp_path / "plain.jsonl.gz").write_bytes(HH.read_bytes())  # JSON lines under a .gz name
    with pytest.raises(ValueError, match=r"plain.jsonl.gz: not a gzip file, though its name ends in .gz"):
        load_hh_rlhf(str(tmp_path / "plain.jsonl.gz"))
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ValueError, match=r"bad.parquet: not a readable parquet file"):
        load_alpaca(str(tmp_path / "bad.parquet"))


def test_a_file_of_invalid_json_raises_naming_it(tmp_path):
    """A file of nothing but invalid JSON raises naming the file, rather than loading as zero rows."""
    (tmp_path / "bad.jsonl").write_text("{not json\n[1, 2\n")
    with pytest.raises(ValueError, match=r"bad.jsonl: not alpaca data: 2 of 2 rows read are not JSON objects "
                                         r"\(invalid_json: 2\)"):
        load_alpaca(str(tmp_path / "bad.jsonl"))
    (tmp_path / "cut.json").write_text(ALPACA.read_text()[:300])  # a JSON list cut short
    with pytest.raises(ValueError, match=r"cut.json: not alpaca data: .* rows read are not JSON objects"):
        load_alpaca(str(tmp_path / "cut.json"))


def test_a_file_with_no_usable_row_raises_with_the_reasons(tmp_path):
    with pytest.raises(ValueError,
                       match=r"wildchat.jsonl: no usable wildchat rows: read \d+, kept 0, .*wrong_language"):
        load_wildchat(str(WILDCHAT), language="Klingon")
    assert load_alpaca(str(ALPACA), max_samples=0).rows == []  # asking for none is not an error


def test_a_tiny_config_trains_on_a_local_file_it_names(tmp_path):
    """At size tiny, `data.*.id` other than `tiny` is loaded as given, not replaced by the tiny world's."""
    from vd.core.config import load_config
    from vd.train.data import stage_rows

    cfg = load_config("tiny", [f"data.sft.alpaca.id={ALPACA}"])
    rows, report = stage_rows(cfg, "sft", "alpaca")
    assert rows == load_alpaca(str(ALPACA)).rows
    assert report == {"source": f"alpaca ({ALPACA})", "read": 16, "kept": 11,
                      "skipped": {"empty_text": 2, "missing_field:output": 2, "bad_type:input": 1}}


def test_the_registry_names_each_datasets_loader():
    """vd.core.registry.SFT_DATA / PREFERENCE_DATA name the loaders the study reads each dataset with."""
    from vd.core import registry

    loaders = {**registry.SFT_DATA, **registry.PREFERENCE_DATA}
    assert {n: registry.resolve(t) for n, t in loaders.items()} == {
        "wildchat": load_wildchat, "alpaca": load_alpaca, "ultrafeedback": load_ultrafeedback, "hh-rlhf": load_hh_rlhf}


# --- synthetic value-gap pairs -----------------------------------------------------------------


@pytest.fixture
def judge_item(monkeypatch):
    """vd.judge.JudgeItem when vd.judge exists; a stand-in with the same fields otherwise."""
    try:
        from vd.judge import JudgeItem  # noqa: F401
    except ImportError:
        @dataclass
        class JudgeItem:  # type: ignore[no-redef]
            question: str
            answer: str
            topic: str

        mod = types.ModuleType("vd.judge")
        mod.JudgeItem = JudgeItem
        monkeypatch.setitem(sys.modules, "vd.judge", mod)
    return sys.modules["vd.judge"].JudgeItem


@dataclass
class FakeJudgment:
    p: tuple
    status: str = "ok"
    error: str | None = None


class FakeJudge:
    """Reads the stance word the fake writer puts in each answer."""

    def __init__(self):
        self.calls = 0

    def judge(self, items):
        self.calls += 1
        out = []
        for it in items:
            if "GARBLED" in it.answer:
                out.append(FakeJudgment((math.nan,) * 3, status="failed", error="HTTP 500"))  # as vd.judge fails
            elif "lukewarm" in it.answer:
                out.append(FakeJudgment((0.25, 0.30, 0.45)))  # argmax oppose, but below 0.5
            elif "I support" in it.answer:
                out.append(FakeJudgment((0.9, 0.07, 0.03)))
            elif "I oppose" in it.answer:
                # a judge that fell back to reading the text still counts as judged
                out.append(FakeJudgment((0.04, 0.06, 0.9), status="text_fallback" if "abortion" in it.answer else "ok"))
            else:
                out.append(FakeJudgment((0.1, 0.8, 0.1)))
        return out


def fake_writer(question, topic, stance):
    if question.startswith("Bad support") and stance == "support":
        return "I oppose this, actually."  # fails verification
    if question.startswith("Weak") and stance == "oppose":
        return "I am lukewarm about it."
    if question.startswith("Broken"):
        return "GARBLED"
    if question.startswith("Silent") and stance == "oppose":
        return "   "
    if question.startswith("Crash"):
        raise RuntimeError("API down")
    return f"I {stance} this: {question.lower()}"


PROMPTS = [
    {"prompt": "Should immigration be increased?", "topic": "immigration"},
    {"prompt": "Should abortion be legal?", "topic": "abortion"},
    {"prompt": "Bad support: should carbon be taxed?", "topic": "climate_change"},
    {"prompt": "Should the death penalty be abolished?", "topic": "death_penalty_euthanasia"},
    {"prompt": "Weak: should voting be compulsory?", "topic": "elections_parties"},
    {"prompt": "Broken: should churches pay tax?", "topic": "religion"},
    {"prompt": "Silent: should wealth be taxed?", "topic": "economic_policy"},
    {"prompt": "Crash: should nuclear weapons be banned?", "topic": "war_conflict"},
    {"prompt": "", "topic": "immigration"},
]


def test_build_synthetic_pairs_support(judge_item, caplog):
    judge = FakeJudge()
    with caplog.at_level(logging.INFO, logger="vd.data.synthetic"):
        res, gap = build_synthetic_pairs(PROMPTS, fake_writer, judge, setting="support")
    assert judge.calls == 1  # one batched call
    assert res.n_read == 9 and len(res.rows) == 3
    assert res.skipped == Counter({
        "support_answer_not_support": 1, "oppose_answer_not_oppose": 1, "judge_failed": 1,
        "empty_answer": 1, "write_failed": 1, "missing_field:prompt": 1,
    })
    assert "support_answer_not_support: 1" in caplog.text
    assert_pref_schema(res, extra=frozenset({"topic", "chosen_stance", "rejected_stance"}))
    row = res.rows[0]
    assert row["prompt"] == [{"role": "user", "content": "Should immigration be increased?"}]
    assert row["chosen"][0]["content"].startswith("I support") and row["rejected"][0]["content"].startswith("I oppose")
    assert (row["topic"], row["chosen_stance"], row["rejected_stance"]) == ("immigration", "support", "oppose")
    assert [g["topic"] for g in gap] == ["immigration", "abortion", "death_penalty_euthanasia"]
    assert gap[0]["chosen_p_support"] == pytest.approx(0.9) and gap[0]["rejected_p_oppose"] == pytest.approx(0.9)
    assert set(gap[0]) == {"topic", "prompt"} | {f"{s}_p_{st}" for s in ("chosen", "rejected")
                                                 for st in ("support", "neutral", "oppose")}


def test_build_synthetic_pairs_oppose_and_confidence(judge_item):
    res, gap = build_synthetic_pairs(PROMPTS[:5], fake_writer, FakeJudge(), setting="oppose")
    assert len(res.rows) == 3
    assert all(r["chosen"][0]["content"].startswith("I oppose") and r["chosen_stance"] == "oppose" for r in res.rows)
    assert all(r["rejected_stance"] == "support" for r in res.rows)
    assert gap[0]["chosen_p_oppose"] == pytest.approx(0.9) and gap[0]["rejected_p_support"] == pytest.approx(0.9)
    # a lower bar lets the lukewarm (p_oppose 0.45) answer verify
    res2, _ = build_synthetic_pairs(PROMPTS[:5], fake_writer, FakeJudge(), min_confidence=0.4)
    assert len(res2.rows) == 4 and res2.skipped == Counter({"support_answer_not_support": 1})
    with pytest.raises(ValueError, match="setting"):
        build_synthetic_pairs(PROMPTS[:1], fake_writer, FakeJudge(), setting="neutral")


def test_build_synthetic_pairs_all_writes_fail(judge_item):
    with pytest.raises(ConfigError,
                       match="the answer writer failed on all 1 prompts; the first error: RuntimeError: API down"):
        build_synthetic_pairs([{"prompt": "Crash: x?", "topic": "religion"}], fake_writer, FakeJudge())


def test_stance_instruction_and_openai_writer_needs_key(monkeypatch):
    text = synthetic.stance_instruction("Should borders be open?", "immigration", "oppose")
    assert "Immigration" in text and "against" in text
    with pytest.raises(ValueError):
        synthetic.stance_instruction("q", "immigration", "maybe")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        synthetic.openai_answer_writer()


def test_hub_ids_go_through_load_dataset(monkeypatch):
    """The hub path (offline here): load_dataset gets the id, split and data_dir; rows come back alike."""
    datasets = pytest.importorskip("datasets")
    calls = []

    def fake_load_dataset(path, split=None, **kw):
        calls.append((path, split, kw))
        fixture = {"Anthropic/hh-rlhf": HH, "allenai/WildChat-1M": WILDCHAT}[path]
        rows = []
        for line in fixture.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a hub Dataset has no unparseable lines
                pass
        return datasets.Dataset.from_list(rows)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    hh = load_hh_rlhf(split="test", max_samples=4, seed=0)
    assert calls[-1] == ("Anthropic/hh-rlhf", "test", {"data_dir": "harmless-base"})
    assert len(hh.rows) == 4 and all(r in load_hh_rlhf(str(HH)).rows for r in hh.rows)
    wc = load_wildchat()
    assert calls[-1] == ("allenai/WildChat-1M", "train", {})
    assert wc.rows == load_wildchat(str(WILDCHAT)).rows and wc.skipped == load_wildchat(str(WILDCHAT)).skipped
