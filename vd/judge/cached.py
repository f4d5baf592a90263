"""A judge whose judgments go through the SQLite cache, as lm-eval's CachingLM does for a model.

    judge = CachedJudge(make_judge(cfg.judge), store)
    judgments = judge.judge(items)          # cached ones reused, the rest judged and stored one by one

Scoring (vd.score.scoring.judge_answers) and the value-gap analysis (vd.study.value_gaps.judge_pairs)
both judge through it, so a judgment made for one is reused by the other.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from vd.core.cache import Store
from vd.core.io import text_hash
from vd.judge.base import Judge, JudgeItem, Judgment, OnResult, failed
from vd.judge.redaction import redact_known

REPORT_EVERY = 256  # judgments between two progress lines


def cache_key(item: JudgeItem) -> tuple[str, str, str]:
    """What a judgment is a function of besides the judge (docs/method.md §10): question, answer, topic."""
    return text_hash(item.question), text_hash(item.answer), item.topic


class CachedJudge:
    """`judge` behind the cache `store` (vd.core.cache.Store), keyed by judge.key and cache_key(item).

    Stored judgments (ok, text_fallback) are reused; the rest are judged (each distinct item once) and
    each is stored as it arrives, failures too, with their error (redacted again here, whatever judge
    made it: vd.judge.redaction.redact_known), so an interruption loses at most
    the judgments in flight, and a failed item is tried again on the next call (an exception from
    the judge itself propagates, after what arrived before it is stored). `counts` holds the
    last call's items, cached, judged and failed (of the judged). With progress, a line
    "judged k of n answers, f failed" is printed every REPORT_EVERY judgments and at the end.
    """

    def __init__(self, judge: Judge, store: Store):
        self.inner, self.store, self.key = judge, store, judge.key
        self.counts = {"items": 0, "cached": 0, "judged": 0, "failed": 0}

    def __repr__(self) -> str:
        return f"CachedJudge({self.inner!r}, {self.store!r})"

    def judge(self, items: Sequence[JudgeItem], progress: bool = False,
              on_result: OnResult | None = None) -> list[Judgment]:
        keys = [cache_key(it) for it in items]
        where: dict[tuple, list[int]] = {}
        for i, k in enumerate(keys):
            where.setdefault(k, []).append(i)
        results: list[Judgment | None] = [None] * len(items)

        def deliver(k: tuple, j: Judgment) -> None:
            for i in where[k]:
                results[i] = j
                if on_result is not None:
                    on_result(i, j)

        known = self.store.get_judgments(self.key, list(where))
        for k, row in known.items():
            deliver(k, Judgment((row["p_support"], row["p_neutral"], row["p_oppose"]), row["status"]))
        todo = [k for k in where if k not in known]
        self.counts = {"items": len(items), "cached": len(items) - sum(len(where[k]) for k in todo),
                       "judged": 0, "failed": 0}
        if todo:
            if progress:
                print(f"  {len(items)} judgments needed: {self.counts['cached']} from the cache, "
                      f"{len(todo)} distinct answers to judge", flush=True)
            self._judge_missing(todo, [items[where[k][0]] for k in todo], deliver, progress)
        return results  # type: ignore[return-value]

    def _judge_missing(self, todo: list[tuple], items: list[JudgeItem], deliver, progress: bool) -> None:
        counts = self.counts

        def arrived(n: int, j: Judgment) -> None:
            k, j = todo[n], _checked(_redacted(j))
            self.store.put_judgments(self.key, [_row(k, j)])  # stored before anything else sees it
            counts["judged"] += 1
            counts["failed"] += j.status == "failed"
            deliver(k, j)
            if progress and (counts["judged"] % REPORT_EVERY == 0 or counts["judged"] == len(todo)):
                print(f"  judged {counts['judged'] - counts['failed']} of {len(todo)} answers, "
                      f"{counts['failed']} failed", flush=True)

        reported: set[int] = set()
        returned = self.inner.judge(items, on_result=lambda n, j: (reported.add(n), arrived(n, j)))
        if len(returned) != len(items):
            raise RuntimeError(f"{self.key}: the judge returned {len(returned)} judgments for {len(items)} items")
        for n, j in enumerate(returned):  # a judge that does not call on_result: stored now
            if n not in reported:
                arrived(n, j)


def _redacted(j: Judgment) -> Judgment:
    """`j` with the secrets this process knows hidden from its error, before it is stored or passed on."""
    return j if not isinstance(j.error, str) else Judgment(j.p, j.status, redact_known(j.error))


def _checked(j: Judgment) -> Judgment:
    """`j`, or its failure where it claims success without a distribution (the cache refuses those)."""
    if j.status == "failed":
        return j if j.error else Judgment(j.p, "failed", "failed without an error message")
    if j.status not in ("ok", "text_fallback"):
        return failed(f"the judge returned an unknown status {j.status!r}")
    p = tuple(float(x) for x in j.p)
    if len(p) != 3 or not all(math.isfinite(x) and 0.0 <= x <= 1.0 for x in p) or abs(sum(p) - 1.0) > 1e-6:
        return failed(f"the judge returned status {j.status!r} with p = {j.p}, not a distribution")
    return j


def _row(key: tuple, j: Judgment) -> dict:
    return {"question_hash": key[0], "answer_hash": key[1], "topic": key[2], "p_support": j.p[0],
            "p_neutral": j.p[1], "p_oppose": j.p[2], "status": j.status, "error": j.error}
