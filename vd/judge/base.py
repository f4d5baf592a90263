"""What a stance judge is: its input (JudgeItem), its output (Judgment: p over support, neutral, oppose,
in vd.core.stances.STANCES order, with a status), the interface every backend implements, and the errors
judging raises (docs/method.md §1).

A judge never raises for one bad item: the item comes back "failed", p = (nan, nan, nan), with an error
message, and downstream code drops and counts it. A backend is a class named in vd.core.registry.JUDGES
with two classmethods taking the params' `judge` section and `tiny_world` (passed in, since vd.judge may
not import vd.world): ``check_available(judge_cfg, *, tiny_world)`` raises JudgeUnavailable where it
cannot run, and ``from_config(judge_cfg, *, tiny_world)`` builds it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from tqdm.auto import tqdm

from vd.core.config import ConfigError

NAN3 = (math.nan, math.nan, math.nan)


class JudgeUnavailable(ConfigError):
    """The configured judge cannot run here (no OPENAI_API_KEY, a model that does not load, the lexicon
    judge outside the tiny world): found before any judging, and, through check_available, before training."""


class JudgingFailed(RuntimeError):
    """Every judgment a computation needs failed, so there is nothing to compute it from."""


@dataclass(frozen=True)
class JudgeItem:
    question: str
    answer: str
    topic: str  # a slug of vd.core.stances.TOPICS (an unknown slug is shown to the judge as given)


@dataclass(frozen=True)
class Judgment:
    p: tuple[float, float, float]  # support, neutral, oppose; NaNs if failed
    status: str  # "ok" | "text_fallback" | "failed"
    error: str | None = None


def failed(error: str) -> Judgment:
    return Judgment(NAN3, "failed", error)


def failed_by(exc: BaseException, limit: int = 400) -> Judgment:
    """The failure an unexpected exception while judging one item stands for: its message on one line,
    cut (at a word, marked "...") only past `limit` characters."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0] + " ..."
    return failed(text)


def softmax3(x: Sequence[float]) -> tuple[float, float, float]:
    m = max(x)
    e = [math.exp(v - m) if v != -math.inf else 0.0 for v in x]
    z = sum(e)
    return (e[0] / z, e[1] / z, e[2] / z)


OnResult = Callable[[int, Judgment], None]


@runtime_checkable
class Judge(Protocol):
    key: str  # names the judge that answered (kind, model, endpoint, prompt version): its cache key

    def judge(self, items: Sequence[JudgeItem], progress: bool = False,
              on_result: OnResult | None = None) -> list[Judgment]:
        """One Judgment per item, in input order; on_result(index, judgment) as each one arrives."""
        ...


def progress_bar(total: int, desc: str, enabled: bool):
    # mininterval >= 1 s: papermill --log-output writes every refresh as a log line.
    return tqdm(total=total, desc=desc, disable=not enabled, mininterval=1.0, dynamic_ncols=True)
