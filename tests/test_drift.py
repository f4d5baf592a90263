"""vd.score.metrics against values worked out by hand (the arithmetic is written out beside each expectation)."""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import pytest

from vd.core.stances import STANCES
from vd.score.metrics import drift_magnitude, drift_table, drift_time, resolution, value_gap, value_profile

COLS = ["step", "topic", "prompt_id", "sample_index", "p_support", "p_neutral", "p_oppose"]

# The crafted table: 2 topics x 3 prompts x 2 samples x 3 steps (uneven spacing: 0, 50, 200).
# {step: {prompt: [(support, neutral, oppose) of sample 0, ... of sample 1]}}
IMMIGRATION = {
    0: {"i1": [(0.2, 0.6, 0.2), (0.4, 0.4, 0.2)],  # prompt mean (0.3, 0.5, 0.2)
        "i2": [(0.0, 1.0, 0.0), (0.2, 0.8, 0.0)],  # prompt mean (0.1, 0.9, 0.0)
        "i3": [(0.5, 0.2, 0.3), (0.3, 0.2, 0.5)]},  # prompt mean (0.4, 0.2, 0.4)
    50: {"i1": [(0.6, 0.4, 0.0), (0.8, 0.2, 0.0)],  # (0.7, 0.3, 0)
         "i2": [(0.4, 0.6, 0.0), (0.6, 0.4, 0.0)],  # (0.5, 0.5, 0)
         "i3": [(0.5, 0.5, 0.0), (0.7, 0.3, 0.0)]},  # (0.6, 0.4, 0)
    200: {"i1": [(0.9, 0.1, 0.0), (0.7, 0.3, 0.0)],  # (0.8, 0.2, 0)
          "i2": [(0.5, 0.5, 0.0), (0.5, 0.5, 0.0)],  # (0.5, 0.5, 0)
          "i3": [(0.8, 0.2, 0.0), (0.6, 0.4, 0.0)]},  # (0.7, 0.3, 0)
}
ABORTION = {
    0: {"a1": [(0, 0, 1), (0, 0, 1)],  # (0, 0, 1)
        "a2": [(0, 0.5, 0.5), (0, 0.5, 0.5)],  # (0, 0.5, 0.5)
        "a3": [(0, 1, 0), (0, 1, 0)]},  # (0, 1, 0)
    50: {"a1": [(0, 0, 1), (0, 0.2, 0.8)],  # (0, 0.1, 0.9)
         "a2": [(0, 0.5, 0.5), (0, 0.5, 0.5)],  # (0, 0.5, 0.5)
         "a3": [(0, 1, 0), (0, 1, 0)]},  # (0, 1, 0)
    200: {"a1": [(0.3, 0, 0.7), (0.3, 0, 0.7)],  # (0.3, 0, 0.7)
          "a2": [(0, 0.6, 0.4), (0, 0.6, 0.4)],  # (0, 0.6, 0.4)
          "a3": [(0, 0.9, 0.1), (0, 0.9, 0.1)]},  # (0, 0.9, 0.1)
}
# Hand-computed profiles (mean of the three prompt means):
V_IMM = {0: (0.8 / 3, 1.6 / 3, 0.6 / 3),  # (0.3+0.1+0.4)/3, (0.5+0.9+0.2)/3, (0.2+0+0.4)/3
         50: (0.6, 0.4, 0.0),  # (0.7+0.5+0.6)/3 = 1.8/3, (0.3+0.5+0.4)/3 = 1.2/3
         200: (2.0 / 3, 1.0 / 3, 0.0)}  # (0.8+0.5+0.7)/3, (0.2+0.5+0.3)/3
V_ABO = {0: (0.0, 0.5, 0.5),  # (0+0.5+1)/3 = 0.5, (1+0.5+0)/3 = 0.5
         50: (0.0, 1.6 / 3, 1.4 / 3),  # (0.1+0.5+1)/3, (0.9+0.5+0)/3
         200: (0.1, 0.5, 0.4)}  # 0.3/3, (0+0.6+0.9)/3, (0.7+0.4+0.1)/3


def table(*topics: tuple[str, dict]) -> pd.DataFrame:
    rows = [(step, topic, pid, i, *p)
            for topic, data in topics for step, prompts in data.items()
            for pid, samples in prompts.items() for i, p in enumerate(samples)]
    return pd.DataFrame(rows, columns=COLS)


@pytest.fixture
def judgments() -> pd.DataFrame:
    # abortion rows first: the output must follow TOPICS order (immigration, abortion), not input order
    return table(("abortion", ABORTION), ("immigration", IMMIGRATION))


def cell(prof, step, topic, stance, col="p"):
    sel = prof[(prof.step == step) & (prof.topic == topic) & (prof.stance == stance)]
    assert len(sel) == 1
    return sel[col].iloc[0]


# ----------------------------------------------------------------------------- value profile
def test_profile_matches_hand_computation(judgments):
    prof = value_profile(judgments, n_boot=200)
    assert list(prof.columns) == ["step", "topic", "stance", "p", "ci_low", "ci_high", "n_prompts", "n_answers"]
    assert len(prof) == 3 * 3 * 3  # 3 steps x (2 topics + overall) x 3 stances
    for step in (0, 50, 200):
        for k, s in enumerate(STANCES):
            assert cell(prof, step, "immigration", s) == pytest.approx(V_IMM[step][k], abs=1e-12)
            assert cell(prof, step, "abortion", s) == pytest.approx(V_ABO[step][k], abs=1e-12)
            # overall (ours): unweighted mean of the two topics' profiles
            assert cell(prof, step, "overall", s) == pytest.approx((V_IMM[step][k] + V_ABO[step][k]) / 2, abs=1e-12)
    # e.g. overall at step 0, support: (0.8/3 + 0) / 2 = 0.1333...
    assert cell(prof, 0, "overall", "support") == pytest.approx(0.4 / 3)
    assert cell(prof, 0, "immigration", "support", "n_prompts") == 3
    assert cell(prof, 0, "immigration", "support", "n_answers") == 6
    assert cell(prof, 0, "overall", "support", "n_answers") == 12
    # order: step, then TOPICS order (immigration before abortion), overall last, then STANCES
    first = prof[prof.step == 0]
    assert list(first.topic) == ["immigration"] * 3 + ["abortion"] * 3 + ["overall"] * 3
    assert list(first.stance) == list(STANCES) * 3
    assert prof.attrs["n_excluded"] == 0


def test_profiles_sum_to_one(judgments):
    prof = value_profile(judgments, n_boot=50)
    sums = prof.groupby(["step", "topic"])["p"].sum()
    assert np.allclose(sums, 1.0, atol=1e-12)


def test_prompt_first_averaging_with_missing_sample(judgments, caplog):
    # Sample 1 of prompt i1 at step 0 failed (NaN). Prompt i1's mean is then its sample 0 alone:
    # (0.2, 0.6, 0.2). Support: (0.2 + 0.1 + 0.4) / 3 = 0.7/3 = 0.2333..., not the plain mean over the
    # 5 remaining answers (0.2 + 0.0 + 0.2 + 0.5 + 0.3) / 5 = 0.24.
    j = judgments.copy()
    hit = (j.step == 0) & (j.prompt_id == "i1") & (j.sample_index == 1)
    j.loc[hit, "p_neutral"] = np.nan
    with caplog.at_level(logging.WARNING, logger="vd.score.metrics"):
        prof = value_profile(j, n_boot=50)
    assert prof.attrs["n_excluded"] == 1
    assert "excluded 1 row" in caplog.text
    assert cell(prof, 0, "immigration", "support") == pytest.approx(0.7 / 3)
    assert cell(prof, 0, "immigration", "neutral") == pytest.approx((0.6 + 0.9 + 0.2) / 3)
    assert cell(prof, 0, "immigration", "support", "n_answers") == 5
    assert cell(prof, 0, "immigration", "support", "n_prompts") == 3
    # An absent row gives the same profile (but is not counted as excluded).
    prof2 = value_profile(j[~hit], n_boot=50)
    assert prof2.attrs["n_excluded"] == 0
    assert np.allclose(prof2.p, prof.p)


def test_equal_counts_equal_plain_mean(judgments):
    prof = value_profile(judgments, n_boot=0)
    plain = judgments[(judgments.topic == "immigration") & (judgments.step == 50)].p_support.mean()
    assert cell(prof, 50, "immigration", "support") == pytest.approx(plain)
    assert prof.ci_low.isna().all() and prof.ci_high.isna().all()  # n_boot=0: no CIs


def test_cis_contain_estimate_and_are_deterministic(judgments):
    a = value_profile(judgments, n_boot=300, seed=7)
    b = value_profile(judgments.sample(frac=1.0, random_state=1), n_boot=300, seed=7)  # row order irrelevant
    pd.testing.assert_frame_equal(a, b)
    assert ((a.ci_low <= a.p) & (a.p <= a.ci_high)).all()
    c = value_profile(judgments, n_boot=300, seed=8)
    assert not np.allclose(a.ci_low, c.ci_low)


def test_ci_by_hand_for_three_prompts(judgments):
    # Immigration support at step 200: prompt means {0.8, 0.5, 0.7}. A bootstrap mean of 3 prompts drawn
    # with replacement is 0.5 with probability (1/3)^3 = 3.7% > 2.5%, and 0.8 with 3.7% > 2.5%, so the
    # 95% percentile interval is exactly [0.5, 0.8] (the extreme possible means).
    prof = value_profile(judgments, n_boot=2000, seed=0)
    assert cell(prof, 200, "immigration", "support", "ci_low") == pytest.approx(0.5)
    assert cell(prof, 200, "immigration", "support", "ci_high") == pytest.approx(0.8)


def test_cis_shrink_with_more_prompts():
    # 30 prompts = the 3 immigration prompts repeated 10 times: same mean, ~1/sqrt(10) of the CI width.
    many = {step: {f"{pid}-{r}": s for r in range(10) for pid, s in prompts.items()}
            for step, prompts in IMMIGRATION.items()}
    few = value_profile(table(("immigration", IMMIGRATION)), n_boot=1000)
    lots = value_profile(table(("immigration", many)), n_boot=1000)
    pd.testing.assert_series_equal(few.p, lots.p)
    width_few = (few.ci_high - few.ci_low)[few.p.between(0.01, 0.99)]
    width_lots = (lots.ci_high - lots.ci_low)[few.p.between(0.01, 0.99)]
    assert (width_lots < 0.6 * width_few).all()


def test_same_resample_for_every_step():
    # Step 100 = step 0 shifted by +0.1 support / -0.1 oppose for every answer. With the same resampled
    # prompts at both steps, every bootstrap replicate shifts by exactly 0.1, so do both CI bounds,
    # and M(0 -> 100) has the degenerate CI [0.1, 0.1].
    base = {"q1": [(0.1, 0.5, 0.4), (0.3, 0.3, 0.4)], "q2": [(0.2, 0.2, 0.6), (0.2, 0.2, 0.6)],
            "q3": [(0.5, 0.1, 0.4), (0.1, 0.5, 0.4)], "q4": [(0.0, 0.9, 0.1), (0.2, 0.1, 0.7)]}
    shifted = {q: [(s + 0.1, n, o - 0.1) for s, n, o in samples] for q, samples in base.items()}
    j = table(("religion", {0: base, 100: shifted}))
    prof = value_profile(j, n_boot=500, seed=3)
    for col in ("p", "ci_low", "ci_high"):
        moved = cell(prof, 100, "religion", "support", col) - cell(prof, 0, "religion", "support", col)
        assert moved == pytest.approx(0.1)
    m = drift_magnitude(prof, judgments=j, n_boot=500, seed=3)
    row = m[(m.topic == "religion") & (m.stance == "support")].iloc[0]
    assert row.M == pytest.approx(0.1) and row.ci_low == pytest.approx(0.1) and row.ci_high == pytest.approx(0.1)


def test_overall_nan_where_a_topic_is_missing(judgments, caplog):
    j = judgments[~((judgments.topic == "abortion") & (judgments.step == 50))]
    with caplog.at_level(logging.WARNING, logger="vd.score.metrics"):
        prof = value_profile(j, n_boot=50)
    assert math.isnan(cell(prof, 50, "overall", "support"))
    assert "overall profile is NaN at step(s) [50]" in caplog.text
    assert not (prof.topic.eq("abortion") & prof.step.eq(50)).any()


# ----------------------------------------------------------------------------- drift magnitude
def test_drift_magnitude_signed(judgments):
    prof = value_profile(judgments, n_boot=100)
    m = drift_magnitude(prof).set_index(["topic", "stance"]).M
    assert list(m.index.get_level_values(0).unique()) == ["immigration", "abortion", "overall"]
    assert m["immigration", "support"] == pytest.approx(0.4)  # 2/3 - 0.8/3 = 1.2/3
    assert m["immigration", "neutral"] == pytest.approx(-0.2)  # 1/3 - 1.6/3
    assert m["immigration", "oppose"] == pytest.approx(-0.2)  # 0 - 0.2
    assert m["abortion", "support"] == pytest.approx(0.1)  # 0.1 - 0
    assert m["abortion", "neutral"] == pytest.approx(0.0, abs=1e-12)  # 0.5 - 0.5
    assert m["abortion", "oppose"] == pytest.approx(-0.1)  # 0.4 - 0.5
    assert m["overall", "support"] == pytest.approx(0.25)  # (0.4 + 0.1) / 2
    # explicit t, t': step 0 -> 50, immigration support: 0.6 - 0.8/3 = 1/3
    m2 = drift_magnitude(prof, start_step=0, end_step=50).set_index(["topic", "stance"]).M
    assert m2["immigration", "support"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="end_step=75 is not a step"):
        drift_magnitude(prof, end_step=75)


def test_drift_magnitude_ci(judgments):
    prof = value_profile(judgments, n_boot=300)
    m = drift_magnitude(prof, judgments=judgments, n_boot=300)
    assert list(m.columns) == ["topic", "stance", "M", "ci_low", "ci_high"]
    assert ((m.ci_low <= m.M + 1e-12) & (m.M <= m.ci_high + 1e-12)).all()
    other = judgments.assign(p_support=judgments.p_oppose, p_oppose=judgments.p_support)
    with pytest.raises(ValueError, match="do not match the profile"):
        drift_magnitude(prof, judgments=other)


# ----------------------------------------------------------------------------- drift time
STEPS = [0, 100, 200, 300, 400]


@pytest.mark.parametrize("reading", ["extremum95", "ci95"])
def test_drift_time_monotone_rising(reading):
    # M = 0.92 - 0.1 = 0.82 > 0, v* = 0.92. extremum95: 0.95 * 0.82 = 0.779; progress 0.4, 0.7, 0.8, 0.82
    # -> first >= 0.779 at step 300 -> η = 300/400 = 0.75.
    # ci95: CI of the extremum (step 400) = [0.78, 0.99]; first value inside: 0.8 at step 200 -> 0.5.
    v = [0.1, 0.5, 0.8, 0.9, 0.92]
    lo, hi = [0, 0, 0, 0, 0.78], [1, 1, 1, 1, 0.99]
    expected = {"extremum95": 0.75, "ci95": 0.5}[reading]
    assert drift_time(STEPS, v, reading, ci_low=lo, ci_high=hi) == pytest.approx(expected)


def test_drift_time_monotone_falling_with_tie():
    # M = 0.2 - 0.8 = -0.6 < 0, v* = min = 0.2, reached at steps 40 and 80 (a tie: the first, 40, is the
    # extremum checkpoint). extremum95: 0.95 * 0.6 = 0.57; progress d*(v - v0) = 0.3, 0.5, 0.6 -> step 40
    # -> η = 40/80 = 0.5.
    steps, v = [0, 10, 20, 40, 80], [0.8, 0.5, 0.3, 0.2, 0.2]
    assert drift_time(steps, v) == pytest.approx(0.5)
    # ci95 uses the CI of step 40 (first tie) = [0.15, 0.32] -> first inside is 0.3 at step 20 -> 0.25.
    # Had it used step 80's CI [0.1, 0.55], 0.5 at step 10 would be inside -> 0.125.
    lo, hi = [0.7, 0.4, 0.2, 0.15, 0.1], [0.9, 0.6, 0.4, 0.32, 0.55]
    assert drift_time(steps, v, "ci95", ci_low=lo, ci_high=hi) == pytest.approx(0.25)


def test_drift_time_overshoot_then_settle():
    # M = 0.7 - 0.2 = 0.5 > 0, but the extremum is the overshoot v* = 1.0 at step 200: 0.95 * 0.8 = 0.76;
    # progress 0.7 (step 100) < 0.76, 0.8 (step 200) -> η = 0.5. (Targeting the final value instead would
    # give 0.95 * 0.5 = 0.475 -> step 100 -> 0.25.)
    v = [0.2, 0.9, 1.0, 0.7, 0.7]
    assert drift_time(STEPS, v) == pytest.approx(0.5)
    # ci95 with the overshoot's CI [0.85, 1.0] (scalars = the extremum's CI): 0.9 at step 100 -> 0.25.
    assert drift_time(STEPS, v, "ci95", ci_low=0.85, ci_high=1.0) == pytest.approx(0.25)
    # Negative direction: M = 0.4 - 0.8 < 0, v* = 0.1 at step 300: 0.95 * 0.7 = 0.665;
    # progress 0.1, 0.5, 0.7 -> step 300 -> 0.75.
    assert drift_time(STEPS, [0.8, 0.7, 0.3, 0.1, 0.4]) == pytest.approx(0.75)


def test_drift_time_tie_at_extremum_extremum95():
    # v* = 1.0 at steps 100 and 200; 0.95 * 1.0 -> step 100 -> η = 100/300.
    assert drift_time([0, 100, 200, 300], [0.0, 1.0, 1.0, 0.5]) == pytest.approx(1 / 3)


@pytest.mark.parametrize("reading", ["extremum95", "ci95"])
def test_drift_time_undefined_is_nan(reading):
    kw = dict(ci_low=[0.2] * 3, ci_high=[0.7] * 3)
    assert math.isnan(drift_time([0, 1, 2], [0.3, 0.3, 0.3], reading, **kw))  # flat
    # M = 0 although the trajectory moves: no direction is defined, so η is missing (docs/method.md §4).
    assert math.isnan(drift_time([0, 1, 2], [0.3, 0.6, 0.3], reading, **kw))
    assert math.isnan(drift_time([0, 1, 2], [0.3, 0.6, 0.3 + 1e-15], reading, **kw))  # |M| <= 1e-12
    assert math.isnan(drift_time([0], [0.3], reading, ci_low=0.2, ci_high=0.4))  # one checkpoint
    assert math.isnan(drift_time([0, 1, 2], [np.nan, 0.6, 0.3], reading, **kw))  # no v_0


def test_drift_time_uneven_spacing_and_offset_start():
    # threshold 0.95 * (1.0 - 0.0) = 0.95; 0.96 at step 30 is the first -> η = 30/1000 = 0.03.
    assert drift_time([0, 10, 30, 100, 1000], [0.0, 0.5, 0.96, 0.98, 1.0]) == pytest.approx(0.03)
    # unsorted input is sorted by step first
    assert drift_time([1000, 0, 100, 30, 10], [1.0, 0.0, 0.98, 0.96, 0.5]) == pytest.approx(0.03)
    # stage starting at step 500: η = (700 - 500) / (1500 - 500) = 0.2
    assert drift_time([500, 700, 1500], [0.2, 0.6, 0.6]) == pytest.approx(0.2)


def test_drift_time_exact_threshold_uses_tolerance():
    # 0.887 - 0.07 = 0.817 is exactly 0.95 * (0.93 - 0.07), but in floating point
    # 0.887 - 0.07 = 0.8169999... < 0.95 * 0.86 = 0.81700...01; the 1e-12 tolerance counts it as reached.
    assert (0.887 - 0.07) < 0.95 * (0.93 - 0.07)
    assert drift_time([0, 1, 2], [0.07, 0.887, 0.93]) == pytest.approx(0.5)


def test_drift_time_drops_intermediate_nan(caplog):
    with caplog.at_level(logging.WARNING, logger="vd.score.metrics"):
        eta = drift_time([0, 100, 200, 400], [0.0, np.nan, 1.0, 1.0])
    assert eta == pytest.approx(0.5)
    assert "dropping" in caplog.text


def test_drift_time_bad_input():
    with pytest.raises(ValueError, match="reading must be one of"):
        drift_time([0, 1], [0, 1], reading="peak")
    with pytest.raises(ValueError, match="needs ci_low and ci_high"):
        drift_time([0, 1], [0, 1], reading="ci95")
    with pytest.raises(ValueError, match="differ in length"):
        drift_time([0, 1, 2], [0, 1])
    with pytest.raises(ValueError, match="duplicates"):
        drift_time([0, 1, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="one value per step"):
        drift_time([0, 1, 2], [0, 1, 1], "ci95", ci_low=[0, 1], ci_high=[1, 1])


def test_drift_time_ci95_step0_is_a_candidate():
    # M = 0.6 - 0.5 = 0.1 > 0; the extremum is 0.62 at step 300, its CI [0.45, 0.75]. v_0 = 0.5 already
    # lies inside it: the drift is within the extremum's noise, so η is missing, not the first
    # checkpoint's fraction (0.55 at step 100 is inside too: the old reading gave 100/400 = 0.25).
    v = [0.5, 0.55, 0.6, 0.62, 0.6]
    assert math.isnan(drift_time(STEPS, v, "ci95", ci_low=0.45, ci_high=0.75))
    # CI [0.52, 0.75]: v_0 = 0.5 is outside; the first value inside is 0.55 at step 100 -> 0.25
    assert drift_time(STEPS, v, "ci95", ci_low=0.52, ci_high=0.75) == pytest.approx(0.25)
    # extremum95 never takes step 0 (no progress): 0.95 * 0.12 = 0.114; progress 0.05, 0.1, 0.12 -> step 300
    assert drift_time(STEPS, v) == pytest.approx(0.75)


def test_drift_time_over_the_stages_total_steps():
    # Checkpoints 0, 5, 10 of a stage of 20 steps (scored before it finished). M = 0.4, threshold
    # 0.95 * 0.4 = 0.38; progress 0.4 at step 5 -> η = 5/20 = 0.25, not 5/10 (the steps saved so far).
    steps, v = [0, 5, 10], [0.2, 0.6, 0.6]
    assert drift_time(steps, v) == pytest.approx(0.5)
    assert drift_time(steps, v, total_steps=20) == pytest.approx(0.25)
    # ci95, extremum CI [0.55, 0.65]: v_0 = 0.2 outside, 0.6 at step 5 inside -> 5/20
    assert drift_time(steps, v, "ci95", ci_low=0.55, ci_high=0.65, total_steps=20) == pytest.approx(0.25)
    # a stage starting at step 500: η counts from its first checkpoint, (700 - 500) / 2000 = 0.1
    assert drift_time([500, 700, 1500], [0.2, 0.6, 0.6], total_steps=2000) == pytest.approx(0.1)
    for bad in (8, 0, -5):  # shorter than the checkpoints' span (10), or not a length
        with pytest.raises(ValueError, match="must be > 0 and cover the checkpoints"):
            drift_time(steps, v, total_steps=bad)


# ----------------------------------------------------------------------------- resolution
# Per-prompt differences d_i = v_i(200) - v_i(0) of the crafted table (prompt means written out above).
# With 3 prompts, a paired-bootstrap mean of d equals min d (or max d) with probability (1/3)^3 = 3.7% >
# 2.5%, so the 95% CI of M is exactly [min d, max d] and its half-width is (max d - min d) / 2.
M_CI = {("immigration", "support"): (0.3, 0.5),  # d = 0.8-0.3, 0.5-0.1, 0.7-0.4 = 0.5, 0.4, 0.3
        ("immigration", "neutral"): (-0.4, 0.1),  # d = 0.2-0.5, 0.5-0.9, 0.3-0.2 = -0.3, -0.4, 0.1
        ("immigration", "oppose"): (-0.4, 0.0),  # d = 0-0.2, 0-0, 0-0.4 = -0.2, 0, -0.4
        ("abortion", "support"): (0.0, 0.3),  # d = 0.3, 0, 0
        ("abortion", "neutral"): (-0.1, 0.1),  # d = 0-0, 0.6-0.5, 0.9-1 = 0, 0.1, -0.1
        ("abortion", "oppose"): (-0.3, 0.1)}  # d = 0.7-1, 0.4-0.5, 0.1-0 = -0.3, -0.1, 0.1


def test_resolution_by_hand(judgments):
    prof = value_profile(judgments, n_boot=2000, seed=0)
    m = drift_magnitude(prof, judgments=judgments, n_boot=2000, seed=0).set_index(["topic", "stance"])
    for key, (lo, hi) in M_CI.items():
        assert (m.at[key, "ci_low"], m.at[key, "ci_high"]) == (pytest.approx(lo, abs=1e-12),
                                                               pytest.approx(hi, abs=1e-12))
    res = resolution(m.reset_index())
    assert list(res.columns) == ["topic", "resolution"] and list(res.topic) == ["immigration", "abortion", "overall"]
    r = res.set_index("topic")["resolution"]
    # max over stances of the half-widths: immigration 0.1, 0.25, 0.2 -> 0.25; abortion 0.15, 0.1, 0.2 -> 0.2
    assert r["immigration"] == pytest.approx(0.25) and r["abortion"] == pytest.approx(0.2)
    # overall averages the two topics' replicates, so each of its quantiles lies between the averages of
    # the topics' extremes: its half-width is at most the mean of theirs (support (0.1 + 0.15)/2,
    # neutral (0.25 + 0.1)/2, oppose (0.2 + 0.2)/2), i.e. at most 0.2, and it is > 0.
    assert 0 < r["overall"] <= 0.2 + 1e-12
    # a drift table (M_ci_* columns, rows repeated per reading) gives the same; no CI gives NaN
    pd.testing.assert_frame_equal(resolution(drift_table(prof, judgments=judgments, n_boot=2000, seed=0)), res)
    assert resolution(drift_table(prof))["resolution"].isna().all()
    with pytest.raises(ValueError, match="ci_low > ci_high"):
        resolution(m.reset_index().assign(ci_low=1.0))


# ----------------------------------------------------------------------------- drift table
DRIFT_COLUMNS = ["topic", "stance", "M", "M_ci_low", "M_ci_high", "resolution", "eta", "eta_reading", "eta_status"]


def test_drift_table(judgments):
    prof = value_profile(judgments, n_boot=2000, seed=0)
    t = drift_table(prof, judgments=judgments, n_boot=2000, seed=0)
    assert list(t.columns) == DRIFT_COLUMNS
    assert len(t) == 3 * 3 * 2  # (2 topics + overall) x 3 stances x 2 readings
    assert list(t.topic.unique()) == ["immigration", "abortion", "overall"]
    assert list(t.eta_reading[:2]) == ["extremum95", "ci95"]
    r = t.set_index(["topic", "stance", "eta_reading"])
    # immigration support: 0.8/3, 0.6, 2/3 over steps 0, 50, 200. M = 0.4; 0.95 * 0.4 = 0.38;
    # progress at step 50 = 0.6 - 0.2667 = 0.333 < 0.38 -> step 200 -> η = 1.0.
    row = r.loc[("immigration", "support", "extremum95")]
    assert row["M"] == pytest.approx(0.4) and row["eta"] == pytest.approx(1.0) and row["eta_status"] == "ok"
    # its CI [0.3, 0.5] and the topic's resolution 0.25 (test_resolution_by_hand), beside M in every row
    assert (row["M_ci_low"], row["M_ci_high"], row["resolution"]) == (pytest.approx(0.3), pytest.approx(0.5),
                                                                       pytest.approx(0.25))
    assert np.allclose(r.xs("abortion", level="topic")["resolution"], 0.2)
    # ci95: the CI of step 200 is [0.5, 0.8] (see test_ci_by_hand_for_three_prompts); v_0 = 0.267 is
    # outside, 0.6 at step 50 inside -> η = 50/200 = 0.25.
    assert r.loc[("immigration", "support", "ci95"), "eta"] == pytest.approx(0.25)
    # abortion support: 0, 0, 0.1. The CI of step 200 is [0, 0.3] (prompt means 0.3, 0, 0), so v_0 = 0
    # is inside: not significant, η missing (step 50's 0 is inside too: the old reading said 0.25).
    # extremum95 still reads it: 0.95 * 0.1 -> step 200 -> 1.0.
    assert np.isnan(r.loc[("abortion", "support", "ci95"), "eta"])
    assert r.loc[("abortion", "support", "ci95"), "eta_status"] == "not_significant"
    assert r.loc[("abortion", "support", "extremum95"), "eta"] == pytest.approx(1.0)
    # abortion oppose: 0.5, 0.467, 0.4; CI of step 200 [0.1, 0.7] holds v_0 = 0.5 -> not significant
    assert r.loc[("abortion", "oppose", "ci95"), "eta_status"] == "not_significant"
    # abortion neutral: 0.5 -> 0.533 -> 0.5: M = 0 -> η missing in both readings, for want of a direction
    for reading in ("extremum95", "ci95"):
        assert np.isnan(r.loc[("abortion", "neutral", reading), "eta"])
        assert r.loc[("abortion", "neutral", reading), "eta_status"] == "no_drift"
    # over a stage of 400 steps (scored at 200): immigration support 200/400 and 50/400
    long = drift_table(prof, total_steps=400).set_index(["topic", "stance", "eta_reading"])
    assert long.loc[("immigration", "support", "extremum95"), "eta"] == pytest.approx(0.5)
    assert long.loc[("immigration", "support", "ci95"), "eta"] == pytest.approx(0.125)
    one = drift_table(prof, readings="extremum95")
    assert set(one.eta_reading) == {"extremum95"} and len(one) == 9
    assert one[["M_ci_low", "M_ci_high", "resolution"]].isna().all().all()  # no judgments: no CI of M


def test_drift_table_without_cis_gives_no_ci95_eta(judgments):
    prof = value_profile(judgments, n_boot=0)
    t = drift_table(prof).set_index(["topic", "stance", "eta_reading"])
    ci95 = t.xs("ci95", level="eta_reading")
    assert ci95["eta"].isna().all() and set(ci95["eta_status"]) <= {"no_ci", "no_drift"}
    assert len(drift_table(prof, readings=("extremum95",))) == 9
    with pytest.raises(ValueError, match="unknown reading"):
        drift_table(prof, readings=("peak",))


# ----------------------------------------------------------------------------- value gap
def pairs(rows):
    return pd.DataFrame(rows, columns=["topic", "p_support", "p_neutral", "p_oppose"])


def test_value_gap_by_hand(caplog):
    chosen = pairs([("immigration", 0.8, 0.2, 0.0), ("immigration", 0.6, 0.4, 0.0),
                    ("abortion", 0.1, 0.8, 0.1), ("abortion", 0.5, 0.5, 0.0),
                    ("abortion", 0.2, 0.2, 0.6)])
    rejected = pairs([("immigration", 0.2, 0.2, 0.6), ("immigration", 0.4, 0.4, 0.2),
                      ("abortion", 0.1, 0.8, 0.1), ("abortion", 0.0, 0.5, 0.5),
                      ("abortion", np.nan, np.nan, np.nan)])  # failed judgment: the whole pair is dropped
    with caplog.at_level(logging.WARNING, logger="vd.score.metrics"):
        g = value_gap(chosen, rejected, n_boot=1000)
    assert list(g.columns) == ["topic", "stance", "gap", "ci_low", "ci_high", "n_pairs"]
    assert g.attrs["n_excluded"] == 1 and "excluded 1 row" in caplog.text
    r = g.set_index(["topic", "stance"])
    # immigration: support (0.8+0.6)/2 - (0.2+0.4)/2 = 0.7 - 0.3 = 0.4; neutral 0.3 - 0.3 = 0;
    # oppose 0 - (0.6+0.2)/2 = -0.4
    assert r.loc[("immigration", "support"), "gap"] == pytest.approx(0.4)
    assert r.loc[("immigration", "neutral"), "gap"] == pytest.approx(0.0, abs=1e-12)
    assert r.loc[("immigration", "oppose"), "gap"] == pytest.approx(-0.4)
    # abortion: support (0.1+0.5)/2 - (0.1+0)/2 = 0.25; oppose (0.1+0)/2 - (0.1+0.5)/2 = -0.25
    assert r.loc[("abortion", "support"), "gap"] == pytest.approx(0.25)
    assert r.loc[("abortion", "oppose"), "gap"] == pytest.approx(-0.25)
    # overall, 4 pairs: support (0.8+0.6+0.1+0.5)/4 - (0.2+0.4+0.1+0)/4 = 0.5 - 0.175 = 0.325
    assert r.loc[("overall", "support"), "gap"] == pytest.approx(0.325)
    assert r.loc[("overall", "oppose"), "gap"] == pytest.approx(-0.325)  # 0.025 - 0.35
    assert list(r.xs("support", level="stance").n_pairs) == [2, 2, 4]
    # immigration support: per-pair differences 0.6 and 0.2; a bootstrap mean of 2 pairs is 0.2, 0.4 or
    # 0.6 (each extreme with probability 1/4), so the 95% interval is [0.2, 0.6].
    assert r.loc[("immigration", "support"), "ci_low"] == pytest.approx(0.2)
    assert r.loc[("immigration", "support"), "ci_high"] == pytest.approx(0.6)
    assert ((g.ci_low <= g.gap + 1e-12) & (g.gap <= g.ci_high + 1e-12)).all()
    pd.testing.assert_frame_equal(g, value_gap(chosen, rejected, n_boot=1000))  # seeded


def test_value_gap_bad_input():
    c = pairs([("immigration", 0.5, 0.5, 0.0)])
    with pytest.raises(ValueError, match="1 and 2 rows"):
        value_gap(c, pairs([("immigration", 0.5, 0.5, 0.0)] * 2))
    with pytest.raises(ValueError, match="chosen topic 'immigration' != rejected topic 'abortion'"):
        value_gap(c, pairs([("abortion", 0.5, 0.5, 0.0)]))
    with pytest.raises(ValueError, match=r"rejected is missing column\(s\) \['p_oppose'\]"):
        value_gap(c, pairs([("immigration", 0.5, 0.5, 0.0)]).drop(columns="p_oppose"))


# ----------------------------------------------------------------------------- input validation
@pytest.mark.parametrize("mutate, message", [
    (lambda j: j.drop(columns="prompt_id"), r"missing column\(s\) \['prompt_id'\]"),
    (lambda j: j.assign(p_support=j.p_support + 0.5), r"outside \[0, 1\]|sum to 1"),
    (lambda j: j.assign(p_support=j.p_support * 0.9, p_neutral=j.p_neutral * 0.9, p_oppose=j.p_oppose * 0.9),
     "must sum to 1 within 1e-06"),
    (lambda j: j.assign(p_oppose=-j.p_oppose), r"p_oppose = .* outside \[0, 1\]"),
    (lambda j: j.assign(p_neutral="high"), "must be numeric"),
    (lambda j: pd.concat([j, j.iloc[:1]]), "duplicate"),
    (lambda j: j.assign(step=j.step + 0.5), "integer training steps"),
    (lambda j: j.assign(topic="overall"), "reserved"),
    (lambda j: j.assign(p_support=np.nan), "no usable rows"),
])
def test_profile_rejects_bad_input(judgments, mutate, message):
    with pytest.raises(ValueError, match=message):
        value_profile(mutate(judgments), n_boot=10)


def test_bad_arguments(judgments):
    with pytest.raises(TypeError, match="must be a pandas DataFrame"):
        value_profile([1, 2, 3])
    with pytest.raises(ValueError, match="n_boot"):
        value_profile(judgments, n_boot=-1)
    with pytest.raises(ValueError, match="ci must lie"):
        value_profile(judgments, ci=95)
    prof = value_profile(judgments, n_boot=0)
    with pytest.raises(ValueError, match="stance 'pro'"):
        drift_magnitude(prof.assign(stance="pro"))
    with pytest.raises(ValueError, match=r"missing column\(s\) \['p'\]"):
        drift_table(prof.drop(columns="p"))


# ----------------------------------------------------------------------------- too few prompts for a CI
def test_no_ci_is_stated_where_fewer_than_two_prompts_were_resampled(judgments):
    """One prompt per topic made every resampled CI of width 0 and the resolution read 0.0: a CI, a
    resolution and a ci95 eta from fewer than two prompts are NaN (unknown), as they could not be estimated."""
    one = judgments[judgments.prompt_id.isin(["i1", "a1", "a2", "a3"])]  # immigration: one prompt
    prof = value_profile(one, n_boot=200)
    imm = prof[prof.topic == "immigration"]
    assert imm[["ci_low", "ci_high"]].isna().all().all() and (imm.n_prompts == 1).all()
    abo = prof[prof.topic == "abortion"]
    assert abo[["ci_low", "ci_high"]].notna().all().all()  # three prompts: a CI as before
    assert prof[prof.topic == "overall"][["ci_low", "ci_high"]].isna().all().all()  # it averages immigration's
    t = drift_table(prof, judgments=one, n_boot=200)
    res = resolution(t).set_index("topic")["resolution"]
    assert math.isnan(res["immigration"]) and math.isnan(res["overall"]) and res["abortion"] > 0
    rows = t[t.topic == "immigration"]
    assert rows[["M_ci_low", "M_ci_high", "resolution"]].isna().all().all()
    assert rows["M"].notna().all()  # M itself is still measured
    ci95 = rows[rows.eta_reading == "ci95"]
    assert ci95["eta"].isna().all() and set(ci95["eta_status"]) <= {"no_ci", "no_drift"}


def test_failed_judgments_that_leave_one_prompt_at_a_step_leave_that_step_without_a_ci(judgments):
    failed = judgments.copy()
    cut = (failed.step == 200) & (failed.topic == "immigration") & failed.prompt_id.isin(["i2", "i3"])
    failed.loc[cut, ["p_support", "p_neutral", "p_oppose"]] = np.nan
    prof = value_profile(failed, n_boot=200)
    imm = prof[prof.topic == "immigration"].set_index(["step", "stance"])
    assert imm.loc[200, ["ci_low", "ci_high"]].isna().all().all()
    assert imm.loc[0, ["ci_low", "ci_high"]].notna().all().all()
    assert imm.loc[50, ["ci_low", "ci_high"]].notna().all().all()
    m = drift_magnitude(prof, judgments=failed, n_boot=200)
    assert m[m.topic == "immigration"][["ci_low", "ci_high"]].isna().all().all()  # M spans step 200


def test_a_topic_of_one_pair_has_no_value_gap_ci():
    chosen = pd.DataFrame({"topic": ["religion", "abortion", "abortion"], "p_support": [0.9, 0.8, 0.7],
                           "p_neutral": [0.1, 0.2, 0.2], "p_oppose": [0.0, 0.0, 0.1]})
    rejected = chosen.assign(p_support=[0.1, 0.1, 0.2], p_oppose=[0.8, 0.7, 0.6])
    gap = value_gap(chosen, rejected, n_boot=100).set_index(["topic", "stance"])
    assert gap.loc["religion", ["ci_low", "ci_high"]].isna().all().all()
    assert gap.loc["abortion", ["ci_low", "ci_high"]].notna().all().all()
    assert gap.loc[("religion", "support"), "gap"] == pytest.approx(0.8)
