"""What every drift table and figure states beside M (docs/method.md §6): its 95% CI, the smallest |M| the
probe budget resolves (overall and per topic), and why an η is missing, on hand-made drift tables."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from vd.core.config import load_config
from vd.core.run import RunRecord
from vd.study import analysis, figures
from vd.study import notebook as study

STANCES = ("support", "neutral", "oppose")


def drift_rows(resolution: dict, ci95_status: str = "ok") -> pd.DataFrame:
    """A drift table (drift_table's columns) for the topics of `resolution`: M = +0.2 (support), -0.05
    (neutral), -0.15 (oppose), each CI ±`resolution[topic]` around M; eta 0.5 (extremum95), and under
    ci95 NaN with `ci95_status` for support."""
    rows = []
    for topic, r in resolution.items():
        for s, m in zip(STANCES, (0.2, -0.05, -0.15)):
            for reading in ("extremum95", "ci95"):
                bad = reading == "ci95" and s == "support" and ci95_status != "ok"
                rows.append({"topic": topic, "stance": s, "M": m, "M_ci_low": m - r, "M_ci_high": m + r,
                             "resolution": r, "eta": math.nan if bad else 0.5, "eta_reading": reading,
                             "eta_status": ci95_status if bad else "ok"})
    return pd.DataFrame(rows)


def run_result(tmp_path, name: str, resolution: dict, **kw) -> study.RunResult:
    profile = pd.DataFrame([{"step": step, "fraction": step / 10, "topic": t, "stance": s, "p": 1 / 3,
                             "ci_low": 0.2, "ci_high": 0.5}
                            for step in (0, 5, 10) for t in resolution for s in STANCES])
    record = RunRecord(root=tmp_path / name, stage="sft", data="x", size="tiny", total_steps=10, complete=True)
    return study.RunResult(tmp_path / name, record, profile, drift_rows(resolution, **kw), load_config("tiny"))


def test_resolution_note_states_overall_and_the_range_over_topics(tmp_path):
    a = run_result(tmp_path, "a", {"immigration": 0.25, "abortion": 0.2, "overall": 0.1})
    b = run_result(tmp_path, "b", {"immigration": 0.3, "abortion": 0.15, "overall": 0.1})
    # half-widths (M_ci_high - M_ci_low) / 2 = r for every stance, so each topic's max is r
    assert a.resolution().set_index("topic")["resolution"].to_dict() == pytest.approx(
        {"immigration": 0.25, "abortion": 0.2, "overall": 0.1})
    head = "smallest |M| this budget resolves (95% CI half-width of M, max over stances): "
    assert study.resolution_note(a) == head + "overall 0.10, per topic 0.20–0.25"
    # two runs: the ranges span both (overall 0.10 in each; topics 0.15 to 0.30)
    assert study.resolution_note(a, b) == head + "overall 0.10, per topic 0.15–0.30"
    assert study.resolution_note() == ""
    s = study.setup("tiny", notebook="x")
    assert s.title("Drift", a).splitlines() == [f"Drift — size tiny ({study.world_label(s.cfg)})",
                                                f"{s.budget_note}; 3 checkpoints",
                                                head + "overall 0.10, per topic 0.20–0.25"]
    assert len(s.title("Probes").splitlines()) == 2  # no runs, nothing measured: no resolution line


def test_drift_tables_carry_the_ci_the_resolution_and_why_eta_is_missing(tmp_path):
    run = run_result(tmp_path, "a", {"immigration": 0.25, "overall": 0.1}, ci95_status="not_significant")
    num, fmt = analysis.drift_tables(run)
    assert list(num.columns) == ["topic", "resolution"] + [c.format(s) for s in STANCES
                                                           for c in analysis.PER_STANCE.values()]
    assert list(num["resolution"]) == [0.25, 0.1]
    row = num.iloc[0]  # immigration support: M 0.2, CI 0.2 ± 0.25
    assert (row["M_support"], row["M_support_ci_low"], row["M_support_ci_high"]) == pytest.approx((0.2, -0.05, 0.45))
    assert list(fmt.columns[:3]) == ["topic", "resolvable |M|", "M support [95% CI]"]
    assert fmt.iloc[0]["resolvable |M|"] == "±0.25" and fmt.iloc[0]["M support [95% CI]"] == "+0.20 [-0.05, +0.45]"
    # eta only where the drift is resolved: immigration support's CI covers 0, overall support's does not
    assert fmt.iloc[0]["eta support"] == "--" and math.isnan(num.iloc[0]["eta_support"])
    assert fmt.iloc[1]["eta support"] == "0.50" and num.iloc[1]["eta_support"] == 0.5
    assert fmt.iloc[1]["eta neutral"] == "--"  # overall neutral -0.05 [-0.15, 0.05]: no drift to time
    num, fmt = analysis.drift_tables(run, reading="ci95")
    assert math.isnan(num.iloc[0]["eta_support"]) and num.iloc[0]["eta_support_status"] == "not_significant"
    assert fmt.iloc[0]["eta support"] == "n.s."  # not "--": the drift is within the extremum's noise
    rec = analysis.drift_record(run)
    assert rec["resolution"] == pytest.approx({"immigration": 0.25, "overall": 0.1}) and rec["complete"] is True
    assert rec["M_ci_low"]["immigration"]["oppose"] == pytest.approx(-0.4)  # -0.15 - 0.25


def test_drift_figures_state_each_topics_resolution(tmp_path):
    drift = drift_rows({"immigration": 0.25, "overall": 0.1})
    fig = figures.drift_heatmap(drift, "t")
    ax_m = fig.axes[0]
    assert [t.get_text() for t in ax_m.get_yticklabels()] == ["Immigration ±0.25", "Overall ±0.10"]
    # immigration: support 0.2 [-0.05, 0.45] and neutral -0.05 [-0.3, 0.2] cover 0 -> in parentheses;
    # overall oppose -0.15 [-0.25, -0.05] and support 0.2 [0.1, 0.3] do not
    texts = [t.get_text() for t in ax_m.texts]
    assert texts == ["(0.20)", "(-0.05)", "(-0.15)", "0.20", "(-0.05)", "-0.15"]
    # eta is drawn only where M is: the cells in parentheses have no eta (every eta here is 0.5)
    assert [t.get_text() for t in fig.axes[1].texts] == ["0.50", "0.50"]  # overall support and oppose
    profile = run_result(tmp_path, "a", {"immigration": 0.25, "overall": 0.1}).profile
    fig = figures.trajectories(profile, "t", drift=drift)
    assert [ax.get_title() for ax in fig.axes if ax.get_visible()][:2] == ["Immigration ±0.25", "Overall ±0.10"]
    fig = figures.trajectories(profile, "t")  # without the drift table: the plain topic names
    assert fig.axes[0].get_title() == "Immigration"


def test_outputs_key_follows_the_bootstrap_code(tmp_path, monkeypatch):
    # The bootstrap lives in vd.score.resampling: a change to it must recompute a run's CSVs.
    from vd.score import resampling, scoring

    j = pd.DataFrame({"step": [0], "topic": ["t"], "prompt_id": ["p"], "sample_index": [0],
                      "p_support": [1.0], "p_neutral": [0.0], "p_oppose": [0.0]})
    key = scoring.outputs_key(j, 10, 1000, 0)
    changed = tmp_path / "resampling.py"
    changed.write_text(open(resampling.__file__).read().replace("_BOOT_CELLS = 4_000_000", "_BOOT_CELLS = 8"))
    monkeypatch.setattr(resampling, "__file__", str(changed))
    assert scoring.outputs_key(j, 10, 1000, 0) != key
    assert scoring.outputs_key(j, 10, 1000, 0, complete=False) != scoring.outputs_key(j, 10, 1000, 0)


def test_a_prior_within_the_sft_runs_resolution_is_tied_not_high_or_low(tmp_path):
    """"High vs low prior" decided on a difference of 0.006 was noise: within the SFT run's resolution the
    two stances are tied, and the figure says so."""
    from vd.study import value_gaps

    ends = {"immigration": (0.403, 0.397), "abortion": (0.6, 0.2), "overall": (0.45, 0.35)}  # support, oppose
    sft = run_result(tmp_path, "sft", {"immigration": 0.05, "abortion": 0.05, "overall": 0.02})
    last = sft.profile["step"] == sft.profile["step"].max()
    for topic, (sup, opp) in ends.items():
        for stance, p in (("support", sup), ("oppose", opp), ("neutral", 1 - sup - opp)):
            sft.profile.loc[last & (sft.profile.topic == topic) & (sft.profile.stance == stance), "p"] = p
    runs = {s: run_result(tmp_path, s, {"immigration": 0.25, "abortion": 0.25, "overall": 0.1})
            for s in ("support", "oppose")}
    split = value_gaps.prior_split(sft, runs).set_index(["setting", "topic"])
    assert split.loc[("support", "immigration"), "prior"] == "tied"  # 0.006 apart, resolution 0.05
    assert split.loc[("oppose", "immigration"), "prior"] == "tied"
    assert split.loc[("support", "abortion"), "prior"] == "high" and split.loc[("oppose", "abortion"), "prior"] == "low"
    assert split.loc[("support", "overall"), "prior"] == "high"  # 0.10 apart, resolution 0.02
    assert split.loc[("support", "immigration"), "prior_resolution"] == pytest.approx(0.05)
    # eta of the chosen stance only where its drift is resolved: support +0.2 ± 0.25 (immigration) is not
    assert math.isnan(split.loc[("support", "immigration"), "eta_chosen"])
    assert split.loc[("support", "overall"), "eta_chosen"] == 0.5  # +0.2 ± 0.1
    summary = value_gaps.prior_summary(split.reset_index())
    assert set(summary["prior"]) == {"high", "low", "tied"}
    fig = figures.prior_split_figure(split.reset_index(), "t")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "chosen = support, tied prior (one point per topic)" in labels


def test_labels_of_coincident_points_are_merged_not_drawn_over_each_other():
    import matplotlib.pyplot as plt

    split = pd.DataFrame([{"setting": s, "topic": "overall", "prior": p, "prior_chosen": 0.4, "M_chosen": 0.1}
                          for s, p in (("support", "tied"), ("oppose", "tied"))])
    fig = figures.prior_split_figure(split, "t")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["overall (support, tied prior)\noverall (oppose, tied prior)"]
    apart = split.assign(prior_chosen=[0.2, 0.7], prior=["high", "low"])
    texts = [t.get_text() for t in figures.prior_split_figure(apart, "t").axes[0].texts]
    assert texts == ["overall (support, high prior)", "overall (oppose, low prior)"]
    _, ax = plt.subplots()
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    notes = figures.annotate_points(ax, [(0.5, 0.5, "a"), (0.51, 0.49, "b"), (0.9, 0.1, "c")])
    assert [n.get_text() for n in notes] == ["a\nb", "c"]
    plt.close("all")


def test_a_missing_resolution_reads_unknown_and_hides_eta(tmp_path):
    """No CI (n_boot 0, or a topic with one prompt): η is hidden and the resolution says "unknown", in the
    note, the tables and the figures, never dropped or shown as certain (docs/method.md §6)."""
    a = run_result(tmp_path, "a", {"immigration": math.nan, "abortion": 0.15, "overall": math.nan})
    head = "smallest |M| this budget resolves (95% CI half-width of M, max over stances): "
    assert study.resolution_note(a) == head + "overall unknown, per topic 0.15 (1 unknown)"
    num, fmt = analysis.drift_tables(a)
    assert list(fmt["resolvable |M|"]) == ["unknown", "±0.15", "unknown"]
    assert math.isnan(num.iloc[0]["eta_support"]) and fmt.iloc[0]["eta support"] == "--"  # M +0.2, no CI
    assert fmt.iloc[0]["M support [95% CI]"] == "+0.20 (no CI)"
    assert num.iloc[1]["eta_support"] == 0.5  # abortion's CI excludes 0: resolved
    fig = figures.drift_heatmap(a.drift, "t")
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()][0].endswith("(resolution unknown)")
    fig = figures.trajectories(a.profile, "t", drift=a.drift)
    assert fig.axes[0].get_title().endswith("(resolution unknown)")


def test_a_prior_difference_without_a_resolution_is_unknown_not_high_or_low():
    from vd.study.value_gaps import prior_rank

    assert prior_rank(0.3, math.nan) == "unknown" and prior_rank(-0.3, math.nan) == "unknown"
    assert prior_rank(0.0, math.nan) == "tied" and prior_rank(0.3, 0.1) == "high" and prior_rank(0.05, 0.1) == "tied"


def test_a_figure_title_names_the_judge_that_scored_its_runs(tmp_path):
    a = run_result(tmp_path, "a", {"overall": 0.1})
    s = study.setup("tiny", notebook="x")
    a.judge = "lexicon:phrases-1a2b:smoothing=1"
    assert s.title("Drift", a).splitlines()[1] == f"{s.budget_note}; 3 checkpoints; judge: lexicon phrases-1a2b"
    b = run_result(tmp_path, "b", {"overall": 0.1})
    b.judge = "openai:gpt-4o:v3"
    assert s.title("Drift", a, b, note="pairs").splitlines()[1] == "pairs; judge: lexicon phrases-1a2b, openai gpt-4o"
