"""The judge check (vd.judge.sanity, docs/method.md §1): a judge that cannot tell stances apart is
refused before scoring, a weak one is warned about, the tiny world's lexicon judge passes."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest

from vd.core.cache import Store
from vd.core.config import ConfigError, load_config
from vd.core.stances import STANCE_PHRASES, STANCES
from vd.judge import (
    LABELLED_EXAMPLES,
    JudgeCannotTell,
    JudgeCheckWarning,
    Judgment,
    LexiconJudge,
    check_judge,
    require_sighted,
    sighted_judge,
)
from vd.judge.sanity import REFUSE_ACCURACY, REFUSE_SPREAD, WARN_ACCURACY, WARN_SPREAD

VPRISM = Path(__file__).resolve().parent.parent / "vd" / "data" / "vprism.jsonl"


class ScriptedJudge:
    """Answers each labelled example with p(label) = `right` (the rest split evenly), or a fixed p."""

    def __init__(self, key: str, right: float | None = None, fixed=None, fail: bool = False):
        self.key, self.right, self.fixed, self.fail, self.calls = key, right, fixed, fail, 0
        self.labels = {e.answer: e.stance for e in LABELLED_EXAMPLES}

    def judge(self, items, progress=False, on_result=None):
        out = []
        for i, item in enumerate(items):
            self.calls += 1
            if self.fail:
                j = Judgment((math.nan,) * 3, "failed", "HTTP 503: overloaded")
            elif self.fixed is not None:
                j = Judgment(tuple(self.fixed), "ok")
            else:
                rest = (1 - self.right) / 2
                j = Judgment(tuple(self.right if s == self.labels[item.answer] else rest for s in STANCES), "ok")
            out.append(j)
            if on_result is not None:
                on_result(i, j)
        return out


def test_the_lexicon_judge_passes_comfortably():
    result = require_sighted(check_judge(LexiconJudge()))
    assert result.verdict == "sighted" and result.n == len(LABELLED_EXAMPLES) == 34 and result.n_failed == 0
    assert result.accuracy == 1.0 and result.spread == pytest.approx(0.51, abs=0.01)
    assert result.spread > 2 * WARN_SPREAD


def test_a_judge_that_says_one_third_everywhere_is_refused():
    # a base model as the hf judge: p about 1/3 everywhere, and notebook 06 still said "agrees"
    for fixed in ((1 / 3, 1 / 3, 1 / 3), (0.3334, 0.3333, 0.3333)):
        result = check_judge(ScriptedJudge("flat", fixed=fixed))
        assert result.verdict == "cannot_tell" and result.spread < 0.001
        with pytest.raises(JudgeCannotTell) as e:
            require_sighted(result)
        assert isinstance(e.value, ConfigError) and "\n" not in str(e.value)
        assert str(e.value).startswith("judge flat: accuracy") and "cannot tell stances apart" in str(e.value)
    # confident, but always the same label: refused on accuracy
    always = check_judge(ScriptedJudge("always-neutral", fixed=(0.0, 1.0, 0.0)))
    assert always.accuracy == pytest.approx(12 / 34) and always.verdict == "cannot_tell"


def test_a_weak_judge_is_warned_about_and_one_that_does_not_answer_goes_unchecked():
    weak = check_judge(ScriptedJudge("weak", right=0.5))  # always right, but p(label) only 0.5
    assert weak.accuracy == 1.0 and weak.spread == pytest.approx(0.5 - 1 / 3) and weak.verdict == "weak"
    with pytest.warns(JudgeCheckWarning, match="tells stances apart poorly"):
        assert require_sighted(weak) is weak
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        require_sighted(check_judge(ScriptedJudge("sure", right=0.9)))  # sighted: nothing said
    # a judge that does not answer cannot be checked: said, and scoring records its failures as before
    down = check_judge(ScriptedJudge("down", fail=True))
    assert down.verdict == "unchecked" and down.n_failed == 34 and math.isnan(down.accuracy)
    with pytest.warns(JudgeCheckWarning, match=r"^judge down: 34 of 34 labelled answers failed, so the judge check "
                                                r"could not run; first error: HTTP 503: overloaded$"):
        require_sighted(down)
    # a few failures count against neither number
    flaky = ScriptedJudge("flaky", right=0.9)
    judged = flaky.judge
    flaky.judge = lambda items, **k: [Judgment((math.nan,) * 3, "failed", "timeout") if i % 4 == 0 else j
                                      for i, j in enumerate(judged(items))]
    some = check_judge(flaky)
    assert (some.n_failed, some.accuracy, some.verdict) == (9, 1.0, "sighted")


def test_the_floors_are_ordered_and_documented():
    assert 1 / 3 < REFUSE_ACCURACY < WARN_ACCURACY <= 1 and 0 < REFUSE_SPREAD < WARN_SPREAD < 2 / 3
    method = (Path(__file__).resolve().parent.parent / "docs" / "method.md").read_text()
    for floor in (REFUSE_ACCURACY, REFUSE_SPREAD, WARN_ACCURACY, WARN_SPREAD):
        assert f"{floor}" in method


def test_the_check_goes_through_the_cache(tmp_path):
    with Store(tmp_path / "cache.sqlite") as store:
        first = ScriptedJudge("sure", right=0.9)
        sighted_judge(first, store)
        again = ScriptedJudge("sure", right=0.9)
        assert sighted_judge(again, store) is again and (first.calls, again.calls) == (34, 0)


def test_the_examples_are_notebook_00s_on_the_shipped_probes():
    from vd.study.analysis import JUDGE_EXAMPLES

    probes = {r["id"]: r for r in map(json.loads, VPRISM.read_text().splitlines())}
    for e in LABELLED_EXAMPLES:
        assert probes[e.probe_id]["question"] == e.question and probes[e.probe_id]["topic"] == e.topic
        # each opens with a phrase of its own stance and holds none of another's: the lexicon can read it
        text = " ".join(e.answer.lower().split())
        assert any(text.startswith(p) for p in STANCE_PHRASES[e.stance]), e.answer
        assert not any(p in text for s in STANCES if s != e.stance for p in STANCE_PHRASES[s]), e.answer
    assert {(e.probe_id, e.stance, e.answer) for e in LABELLED_EXAMPLES} >= set(JUDGE_EXAMPLES)
    assert {e.topic for e in LABELLED_EXAMPLES} == {p["topic"] for p in probes.values()}


def test_scoring_refuses_a_judge_that_cannot_tell(tiny_world, tmp_path, monkeypatch):
    from vd.score import scoring

    run = tmp_path / "runs" / "tiny" / "sft-check"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({
        "stage": "sft", "data": "test", "size": "tiny", "total_steps": 10, "base_model": str(tiny_world.model_dir),
        "checkpoints": [{"step": 0, "adapter": None}], "complete": True}))
    flat = ScriptedJudge("flat", fixed=(1 / 3, 1 / 3, 1 / 3))
    monkeypatch.setattr(scoring, "make_judge", lambda *a, **k: flat)
    cfg = load_config("tiny", ["probes.prompts_per_topic=2", "probes.samples_per_prompt=1", "probes.max_new_tokens=8"])
    with pytest.raises(JudgeCannotTell):
        scoring.score_run(run, cfg, progress=False)
    assert flat.calls == len(LABELLED_EXAMPLES)  # the examples only: no answer was judged
    assert not list(run.rglob("*.csv"))  # no score table written
