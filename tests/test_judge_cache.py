"""vd.judge.CachedJudge: the one way scoring and the value-gap analysis reach the judgment cache."""

from __future__ import annotations

import math

import pytest

from vd.core.cache import Store
from vd.judge import CachedJudge, JudgeItem, Judgment, cache_key


class ScriptedJudge:
    """Answers from a dict answer -> Judgment (default neutral); records what it was asked."""

    key = "scripted:v1"

    def __init__(self, answers=None, report=True):
        self.answers, self.report, self.asked = answers or {}, report, []

    def judge(self, items, progress=False, on_result=None):
        out = []
        for i, it in enumerate(items):
            self.asked.append(it.answer)
            out.append(self.answers.get(it.answer, Judgment((0.1, 0.8, 0.1), "ok")))
            if self.report and on_result is not None:
                on_result(i, out[-1])
        return out


def items(*answers):
    return [JudgeItem("Should we stop immigration?", a, "immigration") for a in answers]


def test_reuses_the_cache_judges_each_distinct_item_once_and_keeps_input_order(tmp_path):
    yes = Judgment((0.7, 0.2, 0.1), "ok")
    with Store(tmp_path / "c.sqlite") as store:
        first = ScriptedJudge({"yes": yes})
        got = CachedJudge(first, store).judge(items("yes", "meh", "yes"))
        assert got == [yes, Judgment((0.1, 0.8, 0.1), "ok"), yes] and first.asked == ["yes", "meh"]
        second, seen = ScriptedJudge(), []
        cached = CachedJudge(second, store)
        again = cached.judge(items("meh", "new", "yes"), on_result=lambda i, j: seen.append(i))
        assert second.asked == ["new"] and again[2] == yes and sorted(seen) == [0, 1, 2]
        assert cached.counts == {"items": 3, "cached": 2, "judged": 1, "failed": 0}
        # keyed by the judge too: another judge's judgments are not this one's
        other = ScriptedJudge()
        other.key = "scripted:v2"
        CachedJudge(other, store).judge(items("yes"))
        assert other.asked == ["yes"]


def test_each_judgment_is_stored_as_it_arrives(tmp_path):
    class Interrupted(ScriptedJudge):
        def judge(self, items, progress=False, on_result=None):
            for i, _ in enumerate(items[:2]):
                on_result(i, Judgment((0.2, 0.6, 0.2), "ok"))
            raise KeyboardInterrupt

    with Store(tmp_path / "c.sqlite") as store:
        wanted = items("a", "b", "c")
        with pytest.raises(KeyboardInterrupt):
            CachedJudge(Interrupted(), store).judge(wanted)
        assert set(store.get_judgments("scripted:v1", [cache_key(it) for it in wanted])) == \
            {cache_key(wanted[0]), cache_key(wanted[1])}


def test_a_judge_that_does_not_report_is_stored_on_return(tmp_path):
    with Store(tmp_path / "c.sqlite") as store:
        CachedJudge(ScriptedJudge(report=False), store).judge(items("a", "b"))
        assert store.count("judgments") == 2


def test_failures_are_stored_with_their_error_then_retried(tmp_path):
    broken = {"x": Judgment((math.nan,) * 3, "failed", "HTTP 500: down"),
              "odd": Judgment((0.9, 0.9, 0.9), "ok"),  # claims success without a distribution
              "silent": Judgment((math.nan,) * 3, "failed"),
              "odd status": Judgment((0.2, 0.6, 0.2), "maybe")}
    with Store(tmp_path / "c.sqlite") as store:
        cached = CachedJudge(ScriptedJudge(broken), store)
        x, odd, silent, status = cached.judge(items("x", "odd", "silent", "odd status"))
        assert x.error == "HTTP 500: down" and odd.status == "failed" and "not a distribution" in odd.error
        assert silent.error == "failed without an error message" and "unknown status 'maybe'" in status.error
        assert cached.counts["failed"] == 4
        assert sorted(store.failures("scripted:v1")["error"]) == sorted(j.error for j in (x, odd, silent, status))
        retry = ScriptedJudge()
        CachedJudge(retry, store).judge(items("x", "odd", "silent", "odd status"))
        assert retry.asked == ["x", "odd", "silent", "odd status"] and store.failures().empty


def test_progress_lines_say_what_was_judged_and_what_failed(tmp_path, capsys):
    with Store(tmp_path / "c.sqlite") as store:
        CachedJudge(ScriptedJudge(), store).judge(items("a"))
        capsys.readouterr()
        fail = {"b": Judgment((math.nan,) * 3, "failed", "no")}
        CachedJudge(ScriptedJudge(fail), store).judge(items("a", "b", "c"), progress=True)
    out = capsys.readouterr().out.splitlines()
    assert out == ["  3 judgments needed: 1 from the cache, 2 distinct answers to judge",
                   "  judged 1 of 2 answers, 1 failed"]
