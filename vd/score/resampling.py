"""What the metrics (vd.score.metrics) share: validating judgment tables, the order of topics, the
percentile bootstrap that resamples prompts, and the resolution its intervals give (ours: the paper
reports no confidence intervals; docs/method.md §6)."""

from __future__ import annotations

import logging
import warnings
import zlib

import numpy as np
import pandas as pd

from vd.core.stances import STANCES, TOPICS

log = logging.getLogger("vd.score.metrics")  # warnings about excluded rows read as the metrics' own

P_COLS: tuple[str, ...] = tuple(f"p_{s}" for s in STANCES)
JUDGMENT_KEYS: tuple[str, ...] = ("step", "topic", "prompt_id", "sample_index")
OVERALL = "overall"
TOL = 1e-12  # comparisons of stance probabilities (so a 0.95 threshold hits an exactly-equal value)
SUM_TOL = 1e-6  # a judgment's three probabilities must sum to 1 within this
# Fewest units (prompts, pairs) a bootstrap CI is stated for: resampling one unit gives an interval of
# width 0 whatever the noise, so with fewer the CI and the resolution are NaN, unknown (ours; §6).
MIN_UNITS = 2
_BOOT_CELLS = 4_000_000  # resampling counts held in memory at once (bootstrap runs in chunks of replicates)


# ----------------------------------------------------------------------------- validation helpers
def _require_columns(df, cols, what: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{what} must be a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{what} is missing column(s) {missing}; it has {list(df.columns)}")


def _prob_matrix(df: pd.DataFrame, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3) probabilities and the mask of failed rows (any p NaN); the other rows must be distributions."""
    try:
        vals = df[list(P_COLS)].to_numpy(dtype=float)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what}: columns {list(P_COLS)} must be numeric ({e})") from None
    failed = np.isnan(vals).any(axis=1)
    bad = ~failed[:, None] & ((vals < 0) | (vals > 1))  # inf is caught here too
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValueError(f"{what}: {P_COLS[j]} = {float(vals[i, j])!r} at row {df.index[i]!r} is outside [0, 1]")
    sums = vals.sum(axis=1)
    off = ~failed & (np.abs(sums - 1.0) > SUM_TOL)
    if off.any():
        i = int(np.flatnonzero(off)[0])
        raise ValueError(f"{what}: {' + '.join(P_COLS)} = {float(sums[i])!r} at row {df.index[i]!r}; "
                         f"each row must sum to 1 within {SUM_TOL:g}")
    return vals, failed


def _check_boot_args(n_boot, ci) -> None:
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 0:
        raise ValueError(f"n_boot must be an integer >= 0 (0 = no confidence intervals), got {n_boot!r}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must lie strictly between 0 and 1, got {ci!r}")


def _order_topics(topics) -> list:
    """TOPICS order for known topics, then the others sorted, then `overall`."""
    present = list(dict.fromkeys(topics))
    known = [t for t in TOPICS if t in present]
    other = sorted((t for t in present if t not in TOPICS and t != OVERALL), key=str)
    return known + other + ([OVERALL] if OVERALL in present else [])


def _note_excluded(n: int, what: str) -> None:
    if n:
        log.warning("%s: excluded %d row(s) whose judgment failed (NaN probabilities)", what, n)


# ----------------------------------------------------------------------------- bootstrap helpers
def _rng(seed: int, topic) -> np.random.Generator:
    """One generator per (seed, topic): a topic's CI does not depend on which other topics are present."""
    return np.random.default_rng([int(seed), zlib.crc32(str(topic).encode("utf-8"))])


def _bootstrap(rng: np.random.Generator, num: np.ndarray, den: np.ndarray, n_boot: int):
    """Resample the n units (rows of num/den) with replacement n_boot times; return counts @ num, counts @ den.

    A replicate of a ratio-of-sums statistic is then (counts @ num) / (counts @ den). Vectorised with
    numpy; replicates are drawn in chunks so memory stays bounded for large n.
    """
    n = num.shape[0]
    chunk = max(1, _BOOT_CELLS // max(n, 1))
    nums, dens = [], []
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(b, n)) + n * np.arange(b)[:, None]
        counts = np.bincount(idx.ravel(), minlength=b * n).reshape(b, n).astype(float)
        nums.append(counts @ num)
        dens.append(counts @ den)
    return np.concatenate(nums), np.concatenate(dens)


def _interval(boot: np.ndarray | None, point: np.ndarray, ci: float):
    """Percentile interval over axis 0 of boot (NaN replicates ignored; NaN where there is no bootstrap).

    Only floating-point noise (<= 1e-12) that would put the estimate outside a degenerate interval is
    corrected; otherwise the interval is the plain percentile interval.
    """
    if boot is None or boot.shape[0] == 0:
        return np.full(point.shape, np.nan), np.full(point.shape, np.nan)
    alpha = (1.0 - ci) / 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices -> NaN
        lo, hi = np.nanquantile(boot, [alpha, 1.0 - alpha], axis=0)
    lo = np.where((lo > point) & (lo - point <= TOL), point, lo)
    hi = np.where((hi < point) & (point - hi <= TOL), point, hi)
    return lo, hi


# ----------------------------------------------------------------------------- resolution
def resolution(drift: pd.DataFrame) -> pd.DataFrame:
    """The smallest |M| a probe budget can tell from 0, per topic and ``overall`` (docs/method.md §6).

    A stance's resolution is the half-width ``(ci_high − ci_low) / 2`` of its M's 95% paired-bootstrap
    CI. A topic's is the **max** over its stances (ours): a drift larger than that is resolved whichever
    stance moved; a median would claim, for one stance in three, a resolution the budget lacks.
    ``overall`` is the ``overall`` topic's own (its M averages the topics, so it resolves smaller drifts).

    ``drift``: :func:`vd.score.metrics.drift_magnitude` output with ``judgments`` (``ci_low, ci_high``)
    or a drift table (``M_ci_low, M_ci_high``; rows repeated per η reading do not change a max).
    Returns ``topic, resolution`` in the drift's topic order; NaN, unknown, where M has no CI (``n_boot=0``,
    or fewer than two prompts of the topic at the start or end).
    """
    lo, hi = ("M_ci_low", "M_ci_high") if "M_ci_low" in getattr(drift, "columns", ()) else ("ci_low", "ci_high")
    _require_columns(drift, ("topic", lo, hi), "drift")
    half = (drift[hi] - drift[lo]) / 2.0
    if (half < -TOL).any():
        raise ValueError(f"drift: {lo} > {hi} for topic {drift.loc[half < -TOL, 'topic'].iloc[0]!r}")
    per_topic = half.groupby(drift["topic"], sort=False).max()  # NaN only where every stance lacks a CI
    topics = _order_topics(per_topic.index)
    return pd.DataFrame({"topic": topics, "resolution": per_topic.reindex(topics).to_numpy(dtype=float)})
