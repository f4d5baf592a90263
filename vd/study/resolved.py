"""Which drifts a probe budget resolves (docs/method.md §6), and η shown only for those: the tables,
figures and the paper comparison of vd.study draw and print η through `eta_where_resolved`."""

from __future__ import annotations

import numpy as np


def resolved(m, lo, hi):
    """Whether a drift is resolved: M's 95% CI excludes 0 (docs/method.md §6). Without a CI (n_boot=0, one
    prompt) it is not: resampling could not tell it from none. Elementwise on arrays or Series."""
    m, lo, hi = (np.asarray(x, dtype=float) for x in (m, lo, hi))
    with np.errstate(invalid="ignore"):
        return ~(np.isnan(m) | np.isnan(lo) | np.isnan(hi)) & ((lo > 0) | (hi < 0))


def eta_where_resolved(eta, m, lo, hi):
    """η where the drift is resolved (`resolved`), else NaN: the fraction of steps to an extremum that
    resampling cannot tell from no drift times noise, not a drift (ours; docs/method.md §4)."""
    return np.where(resolved(m, lo, hi), np.asarray(eta, dtype=float), np.nan)


def resolution_text(r: float) -> str:
    """A topic's resolution as tables and figures state it: "±0.12", or "unknown" where M has no CI."""
    return "unknown" if r is None or np.isnan(r) else f"±{r:.2f}"
