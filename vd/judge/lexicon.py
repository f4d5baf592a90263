"""The tiny world's judge: it counts the stance phrases the tiny world writes (vd.core.stances)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from vd.core.stances import STANCE_PHRASES, STANCES
from vd.judge.base import JudgeItem, JudgeUnavailable, Judgment, OnResult, failed_by, progress_bar

OUTSIDE_WORLD = ("judge.kind: 'lexicon' reads only the stance phrases the tiny world writes (any other model's "
                 "answers it reads nearly all as neutral: M = 0, eta missing); expected 'openai' or 'hf' where "
                 "model.base is not tiny (make_judge and check_available take tiny_world=vd.world.uses_world(cfg))")


def _norm_text(text: str) -> str:
    return " ".join(text.lower().split())


class LexiconJudge:
    """The tiny world's judge: counts the vd.core.stances.STANCE_PHRASES in the answer.

    p_s = (count_s + smoothing) / (total + 3 * smoothing), counts over the lower-cased,
    whitespace-normalised answer. An answer with no stance phrase at all takes no stance, which is
    neutral by the paper's rule: it is read as counts (0, 1, 0) with the same smoothing (status "ok").
    The question and topic are not read. Deterministic and fast. Refused (JudgeUnavailable) by
    make_judge and check_available outside the tiny world: on other text it counts phrases, not
    stances, whatever share of the answers happens to carry one, so no warning threshold on that
    share would make its numbers mean what the paper's do.
    """

    kind = "lexicon"

    def __init__(self, smoothing: float = 0.1):
        if smoothing < 0:
            raise ValueError("LexiconJudge: smoothing must be >= 0")
        self.smoothing = smoothing
        self.phrases = {s: tuple(_norm_text(p) for p in STANCE_PHRASES[s]) for s in STANCES}
        digest = hashlib.sha1(repr(sorted(self.phrases.items())).encode()).hexdigest()[:8]
        self.key = f"lexicon:phrases-{digest}:smoothing={smoothing:g}"

    @classmethod
    def check_available(cls, judge_cfg: Any, *, tiny_world: bool = False) -> None:
        """JudgeUnavailable unless the judged text is the tiny world's (tiny_world: vd.world.uses_world)."""
        if not tiny_world:
            raise JudgeUnavailable(OUTSIDE_WORLD)

    @classmethod
    def from_config(cls, judge_cfg: Any, *, tiny_world: bool = False) -> LexiconJudge:
        """The tiny world's judge (the `judge` section's other fields do not apply to it)."""
        cls.check_available(judge_cfg, tiny_world=tiny_world)
        return cls()

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
        with progress_bar(len(items), "judge lexicon", progress) as bar:
            for i, it in enumerate(items):
                try:
                    j = self.judge_answer(it.answer)
                except Exception as e:  # e.g. an answer that is not text: this item's failure only
                    j = failed_by(e)
                out.append(j)
                if on_result is not None:
                    on_result(i, j)
                bar.update(1)
        return out
