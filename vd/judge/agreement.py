"""Agreement of two judges (or a judge and a human) on the same items: accuracy and Cohen's kappa."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from vd.core.stances import STANCES
from vd.judge.base import Judgment


def argmax_label(p: Sequence[float]) -> str | None:
    """The stance with the highest probability (ties go to the first in STANCES order); None if p has NaNs."""
    if len(p) != 3 or any(math.isnan(x) for x in p):
        return None
    return STANCES[max(range(3), key=lambda i: (p[i], -i))]


def _as_label(x: Any) -> str | None:
    if isinstance(x, Judgment):
        return argmax_label(x.p)
    if isinstance(x, str):
        if x not in STANCES:
            raise ValueError(f"unknown stance label {x!r}; expected one of {STANCES}")
        return x
    if x is None:
        return None
    return argmax_label(tuple(float(v) for v in x))


def agreement(labels_a: Sequence[Any], labels_b: Sequence[Any]) -> dict[str, float]:
    """Agreement of two judges (or a judge and a human) on the same items.

    Each element is a stance string, a probability vector or a Judgment (read by argmax_label).
    Pairs where either side has no label (a failed judgment) are dropped; n counts the pairs used.
    Cohen's kappa = (p_o - p_e) / (1 - p_e); NaN where undefined (no pairs, or p_e = 1: both raters
    used one and the same label throughout).
    """
    if len(labels_a) != len(labels_b):
        raise ValueError(f"agreement: {len(labels_a)} labels vs {len(labels_b)}")
    pairs = [(a, b) for a, b in ((_as_label(x), _as_label(y)) for x, y in zip(labels_a, labels_b))
             if a is not None and b is not None]
    n = len(pairs)
    if n == 0:
        return {"accuracy": math.nan, "cohen_kappa": math.nan, "n": 0}
    po = sum(a == b for a, b in pairs) / n
    pe = sum((sum(a == s for a, _ in pairs) / n) * (sum(b == s for _, b in pairs) / n) for s in STANCES)
    kappa = (po - pe) / (1 - pe) if pe < 1 else math.nan
    return {"accuracy": po, "cohen_kappa": kappa, "n": n}
