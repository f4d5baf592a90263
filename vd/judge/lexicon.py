"""The tiny world's judge: it counts the stance phrases the tiny world writes (vd.core.stances)."""

from __future__ import annotations

import hashlib
from typing import Sequence

from tqdm.auto import tqdm

from vd.core.stances import STANCE_PHRASES, STANCES
from vd.judge.base import Judgment, JudgeItem, OnResult


def _norm_text(text: str) -> str:
    return " ".join(text.lower().split())


class LexiconJudge:
    """The tiny world's judge: counts the vd.core.stances.STANCE_PHRASES in the answer.

    p_s = (count_s + smoothing) / (total + 3 * smoothing), counts over the lower-cased,
    whitespace-normalised answer. An answer with no stance phrase at all takes no stance, which is
    neutral by the paper's rule: it is read as counts (0, 1, 0) with the same smoothing (status "ok").
    The question and topic are not read. Deterministic and fast.
    """

    kind = "lexicon"

    def __init__(self, smoothing: float = 0.1):
        if smoothing < 0:
            raise ValueError("LexiconJudge: smoothing must be >= 0")
        self.smoothing = smoothing
        self.phrases = {s: tuple(_norm_text(p) for p in STANCE_PHRASES[s]) for s in STANCES}
        digest = hashlib.sha1(repr(sorted(self.phrases.items())).encode()).hexdigest()[:8]
        self.key = f"lexicon:phrases-{digest}:smoothing={smoothing:g}"

    def __repr__(self) -> str:
        return f"LexiconJudge(smoothing={self.smoothing})"

    def counts(self, answer: str) -> tuple[int, int, int]:
        text = _norm_text(answer)
        return tuple(sum(text.count(p) for p in self.phrases[s]) for s in STANCES)  # type: ignore[return-value]

    def judge_answer(self, answer: str) -> Judgment:
        c = self.counts(answer)
        if sum(c) == 0:
            c = (0, 1, 0)
        a = self.smoothing
        z = sum(c) + 3 * a
        return Judgment(tuple((n + a) / z for n in c), "ok")  # type: ignore[arg-type]

    def judge(self, items: Sequence[JudgeItem], progress: bool = False,
              on_result: OnResult | None = None) -> list[Judgment]:
        out = []
        for i, it in enumerate(tqdm(items, desc="judge lexicon", disable=not progress, mininterval=1.0)):
            j = self.judge_answer(it.answer)
            out.append(j)
            if on_result is not None:
                on_result(i, j)
        return out
