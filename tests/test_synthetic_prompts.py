"""The shipped prompts for the synthetic value-gap preference data (vd/data/synthetic_prompts.jsonl).

440 value-laden prompts, 40 per topic, written for this project and kept disjoint from the V-PRISM
probes (vd/data/vprism.jsonl): a model must not be trained on the questions it is later probed with.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from near_duplicates import near_duplicates

from vd.core.stances import TOPICS
from vd.data.probes import SHIPPED_PROBES, load_probes, topic_keyword_hits

SYNTHETIC_PROMPTS = Path(SHIPPED_PROBES).parent / "synthetic_prompts.jsonl"
PER_TOPIC = 40
FIELDS = ("id", "topic", "prompt")
NEAR_DUP = 0.6  # the threshold tests/test_probes.py uses for the probe set itself


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    lines = SYNTHETIC_PROMPTS.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture(scope="module")
def probe_questions() -> list[str]:
    return load_probes()["question"].tolist()


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


def test_440_rows_40_per_topic_in_topic_order(rows):
    assert len(rows) == len(TOPICS) * PER_TOPIC == 440
    assert Counter(r["topic"] for r in rows) == {t: PER_TOPIC for t in TOPICS}
    assert list(dict.fromkeys(r["topic"] for r in rows)) == list(TOPICS)


def test_every_field_present_and_non_empty(rows):
    for r in rows:
        assert set(r) == set(FIELDS), r
        assert all(isinstance(r[f], str) and r[f] and r[f].strip() == r[f] for f in FIELDS), r


def test_ids_unique_and_well_formed(rows):
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == len(ids)
    for r in rows:
        assert re.fullmatch(rf"{r['topic']}-s\d{{3}}", r["id"]), r["id"]


def test_every_prompt_carries_a_keyword_of_its_topic(rows):
    missing = [(r["id"], r["prompt"]) for r in rows if not topic_keyword_hits(r["prompt"], r["topic"])]
    assert missing == []


def test_no_exact_duplicates_within_or_with_probes(rows, probe_questions):
    mine = [_norm(r["prompt"]) for r in rows]
    assert len(set(mine)) == len(mine)
    assert set(mine).isdisjoint(_norm(q) for q in probe_questions)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["chars", "words"])
def test_no_near_duplicates_within_or_with_probes(rows, probe_questions, kind):
    # Probes first, so any pair (i, j) with j >= n involves one of ours: a probe-vs-ours pair or a
    # pair within ours. Probe-vs-probe pairs are tests/test_probes.py's business.
    n = len(probe_questions)
    texts = probe_questions + [r["prompt"] for r in rows]
    flagged = [(texts[i], texts[j], round(s, 2)) for i, j, s in near_duplicates(texts, NEAR_DUP, kind)
               if j >= n]
    assert flagged == [], flagged[:5]
