"""Which drifts a probe budget resolves (docs/method.md §6), and η shown only for those: the tables,
figures and the paper comparison of vd.study draw and print η through `eta_where_resolved`."""

from __future__ import annotations

import numpy as np


def resolved(m, lo, hi):
    """Whether a drift is resolved: M's 95% CI excludes 0 (docs/method.md §6); without a CI (n_boot=0),
    M != 0. Elementwise on arrays or Series."""
    m, lo, hi = (np.asarray(x, dtype=float) for x in (m, lo, hi))
    with np.errstate(invalid="ignore"):
        return np.where(np.isnan(lo) | np.isnan(hi), np.nan_to_num(m) != 0, (lo > 0) | (hi < 0))


def eta_where_resolved(eta, m, lo, hi):
    """η where the drift is resolved (`resolved`), else NaN: the fraction of steps to an extremum that
    resampling cannot tell from no drift times noise, not a drift (ours; docs/method.md §4)."""
    return np.where(resolved(m, lo, hi), np.asarray(eta, dtype=float), np.nan)
