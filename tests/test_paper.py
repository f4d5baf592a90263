"""vd.study.paper: the drift-timing reading and the verdicts beside the paper's numbers, on hand-made tables."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pandas as pd
import pytest

from vd.study.paper import (
    NOT_RESOLVED,
    _with_chosen_ci,
    comparison_markdown,
    early_share,
    paper_comparison,
    wide,
    wide_formatted,
)


def test_early_share_reads_the_first_checkpoint_at_or_after_ten_percent():
    # support: 0.2 -> 0.5 at step 2 of 20 (10%) -> 0.6 at the end: 0.3 of M = 0.4 reached, 75%
    profile = pd.DataFrame({"step": [0, 2, 10, 20], "topic": "t", "stance": "support",
                            "p": [0.2, 0.5, 0.55, 0.6]})
    assert early_share(profile, "t", "support") == pytest.approx(0.75)
    # the first checkpoint at or after 10% is step 4 of 20 when there is none at 2
    later = profile.assign(step=[0, 4, 10, 20])
    assert early_share(later, "t", "support") == pytest.approx(0.75)
    assert math.isnan(early_share(profile.assign(p=0.3), "t", "support"))  # no drift: undefined


def _sft(m_by_stance: dict, share: float, data: str = "wildchat", half: float = 0.02) -> list[dict]:
    """Overall rows of the SFT table, each M with the CI M ± half (narrow by default: resolved)."""
    return [{"stage": "sft", "data": data, "topic": "overall", "stance": s, "M": m, "M_ci_low": m - half,
             "M_ci_high": m + half, "resolution": half, "eta": 0.1, "eta_ci95": 0.1, "share_by_10pct": share,
             "run": f"sft-{data}"} for s, m in m_by_stance.items()]


def _immigration_neutral(m: float, lo: float, hi: float) -> dict:
    return {"stage": "sft", "data": "wildchat", "topic": "immigration", "stance": "neutral", "M": m, "M_ci_low": lo,
            "M_ci_high": hi, "resolution": (hi - lo) / 2, "eta": 0.1, "eta_ci95": 0.1, "share_by_10pct": 0.9,
            "run": "sft-wildchat"}


def _syn(rows, half: float = 0.02) -> pd.DataFrame:
    return pd.DataFrame([{"algo": a, "setting": s, "topic": "overall", "prior": p, "M_chosen": m,
                          "M_chosen_ci_low": m - half, "M_chosen_ci_high": m + half} for a, s, p, m in rows])


SYN = [("ppo", "support", "high", 0.01), ("ppo", "oppose", "low", -0.02), ("dpo", "support", "high", 0.5),
       ("dpo", "oppose", "low", 0.4), ("simpo", "support", "high", 0.2), ("simpo", "oppose", "low", 0.1)]


def test_verdicts_follow_the_numbers():
    # Every CI is M ± 0.02: none covers both the paper's value and 0, so the point rules decide.
    sft = pd.DataFrame(_sft({"support": -0.2, "neutral": 0.35, "oppose": -0.15}, share=0.8)
                       + _sft({"support": -0.1, "neutral": 0.2, "oppose": -0.1}, share=0.2, data="alpaca")
                       + [_immigration_neutral(0.45, 0.43, 0.47)])
    syn = _syn(SYN)
    comp = paper_comparison({"sft": sft, "preference": pd.DataFrame(), "synthetic": syn}).set_index("claim")
    verdict = comp["verdict"]
    assert verdict["SFT on wildchat raises neutral the most"] == "agrees"
    assert verdict["SFT drift on wildchat is early (neutral, overall)"] == "agrees"  # 80% by 10%
    assert verdict["SFT on alpaca raises support the most"] == "differs"  # alpaca raised neutral here
    assert verdict["SFT drift on alpaca is early (support, overall)"] == "differs"  # 20% by 10%
    assert verdict["WildChat SFT, immigration, neutral: M and eta"] == "agrees"  # 0.45 within 0.10 of 0.38
    assert verdict["synthetic value gap: PPO barely moves (M of the chosen stance)"] == "agrees"
    assert verdict["synthetic value gap: DPO moves the chosen stance strongly"] == "agrees"
    assert verdict["synthetic value gap: DPO moves a high-prior stance more than a low-prior one"] == "agrees"
    assert verdict["synthetic value gap: SimPO moves moderately"] == "agrees"  # mean 0.15
    assert verdict["synthetic value gap: the algorithms order PPO < SimPO < DPO"] == "agrees"
    # swap DPO's priors: the high-prior claim must flip, and DPO's mean is unchanged
    flipped = _syn([(a, st, p, m) for (a, st, p, _), m in zip(SYN, [0.01, -0.02, 0.4, 0.5, 0.2, 0.1])])
    comp = paper_comparison({"sft": sft, "preference": pd.DataFrame(), "synthetic": flipped}).set_index("claim")
    claim = "synthetic value gap: DPO moves a high-prior stance more than a low-prior one"
    assert comp.loc[claim, "verdict"] == "differs"


def _verdicts(sft_rows=(), syn=None, pref=None, ablation=None) -> pd.Series:
    tables = {"sft": pd.DataFrame(list(sft_rows), columns=list(_immigration_neutral(0, 0, 0))),
              "preference": pref if pref is not None else pd.DataFrame(),
              "synthetic": syn if syn is not None else _syn([])}
    return paper_comparison(tables, ablation=ablation).set_index("claim")


def test_a_ci_covering_the_papers_value_and_zero_is_not_resolved():
    claim = "WildChat SFT, immigration, neutral: M and eta"  # the paper's M: 0.38
    comp = _verdicts([_immigration_neutral(0.30, -0.05, 0.65)])  # covers 0.38 and 0
    assert comp.at[claim, "verdict"] == NOT_RESOLVED and "+0.30 [-0.05, +0.65]" in comp.at[claim, "ours"]
    # where the CI resolves, the point rule stands: |0.30 - 0.38| = 0.08 <= 0.10
    assert _verdicts([_immigration_neutral(0.30, 0.25, 0.35)]).at[claim, "verdict"] == "agrees"
    # covers 0 but not 0.38: the paper's drift is excluded, |0.05 - 0.38| = 0.33 > 0.10
    assert _verdicts([_immigration_neutral(0.05, -0.10, 0.20)]).at[claim, "verdict"] == "differs"
    # a claimed direction: Alpaca raises support the most, +0.10 but CI [-0.05, +0.25] covers 0
    alpaca = _sft({"support": 0.10, "neutral": 0.05, "oppose": -0.15}, share=0.9, data="alpaca", half=0.15)
    comp = _verdicts(alpaca)
    assert comp.at["SFT on alpaca raises support the most", "verdict"] == NOT_RESOLVED
    assert comp.at["SFT drift on alpaca is early (support, overall)", "verdict"] == NOT_RESOLVED
    assert _verdicts(_sft({"support": 0.10, "neutral": 0.05, "oppose": -0.15}, 0.9, "alpaca")).at[
        "SFT on alpaca raises support the most", "verdict"] == "agrees"  # ± 0.02: resolved


def test_claims_of_no_drift_and_orderings_against_their_cis():
    ppo = "synthetic value gap: PPO barely moves (M of the chosen stance)"
    order = "synthetic value gap: DPO moves a high-prior stance more than a low-prior one"
    assert _verdicts(syn=_syn(SYN)).at[ppo, "verdict"] == "agrees"  # [-0.01, 0.03], [-0.04, 0.0] within ±0.05
    comp = _verdicts(syn=pd.concat([_syn(SYN[:1], half=0.11), _syn(SYN[1:])]))
    assert comp.at[ppo, "verdict"] == NOT_RESOLVED  # support-aligned [-0.10, 0.12] straddles ±0.05
    assert comp.at[ppo, "ours"] == "support-aligned +0.01 [-0.10, +0.12], oppose-aligned -0.02 [-0.04, +0.00]"
    moved = _syn([("ppo", "support", "high", 0.2)] + SYN[1:], half=0.1)
    assert _verdicts(syn=moved).at[ppo, "verdict"] == "differs"  # [0.1, 0.3] wholly beyond 0.05
    # DPO high 0.5 vs low 0.4: with ± 0.02 the CIs are apart (agrees); with ± 0.2 they overlap
    assert _verdicts(syn=_syn(SYN)).at[order, "verdict"] == "agrees"
    assert _verdicts(syn=_syn(SYN, half=0.2)).at[order, "verdict"] == NOT_RESOLVED
    # standard data "barely move" (|M| <= 0.27): CIs [0.05, 0.15], [0.15, 0.25] inside -> agrees (0.2 < SFT's 0.35);
    # [0.1, 0.3] straddles 0.27 -> not resolved
    sft = _sft({"support": -0.2, "neutral": 0.35, "oppose": -0.15}, share=0.8)

    def pref(half):
        return pd.DataFrame([{"stage": "dpo", "data": "hh-rlhf", "topic": "overall", "stance": s, "M": m,
                              "M_ci_low": m - h, "M_ci_high": m + h, "eta": 0.5}
                             for s, m, h in (("support", 0.1, 0.05), ("neutral", 0.2, half), ("oppose", 0.0, 0.01))])
    std = "standard preference data barely move values (|M|, overall, every algorithm x dataset)"
    assert _verdicts(sft, pref=pref(0.05)).at[std, "verdict"] == "agrees"
    assert _verdicts(sft, pref=pref(0.10)).at[std, "verdict"] == NOT_RESOLVED


def test_gamma_ablation_needs_a_resolution_finer_than_its_tolerance():
    def ablation(half):
        return pd.DataFrame([{"algo": "simpo", "value": g, "chosen": "support", "M_support": m,
                              "M_support_ci_low": m - half, "M_support_ci_high": m + half}
                             for g, m in ((0.0, 0.30), (1.0, 0.32), (2.0, 0.35))])
    claim = "SimPO's gamma changes little"
    assert _verdicts(ablation=ablation(0.05)).at[claim, "verdict"] == "agrees"  # spread 0.05, resolution 0.05
    # resolution ±0.15 > 0.10: a spread of 0.05 says nothing about differences up to 0.10
    comp = _verdicts(ablation=ablation(0.15))
    assert comp.at[claim, "verdict"] == NOT_RESOLVED and "resolution ±0.15" in comp.at[claim, "note"]
    text = comparison_markdown(comp.reset_index())
    assert "◌ not resolved at this budget" in text and text.endswith(
        "**0 of 1 checked claims agree, 0 differ, 1 are not resolved at this budget.**")


def _long_rows():
    return pd.DataFrame([{"stage": "sft", "data": "wildchat", "topic": t, "stance": s, "M": m, "M_ci_low": m - r,
                          "M_ci_high": m + r, "resolution": r, "eta": e, "eta_ci95": e}
                         for t, r in (("immigration", 0.25), ("overall", 0.1))
                         for s, m, e in (("support", 0.2, 0.5), ("neutral", -0.05, math.nan), ("oppose", -0.15, 1.0))])


def test_wide_tables_carry_the_ci_and_the_resolution():
    w = wide(_long_rows())
    assert list(w.columns) == ["stage", "data", "topic", "resolution"] + [
        c.format(s) for s in ("support", "neutral", "oppose")
        for c in ("M {}", "M {} ci_low", "M {} ci_high", "eta {}")]
    assert list(w["topic"]) == ["immigration", "overall"] and list(w["resolution"]) == [0.25, 0.1]
    assert (w.at[0, "M support"], w.at[0, "M support ci_low"], w.at[0, "M support ci_high"]) == (0.2, -0.05, 0.45)
    f = wide_formatted(_long_rows())
    assert f.at[0, "resolvable |M|"] == "±0.25" and f.at[0, "M support [95% CI]"] == "+0.20 [-0.05, +0.45]"
    assert f.at[0, "eta neutral"] == "--" and f.at[1, "M oppose [95% CI]"] == "-0.15 [-0.25, -0.05]"
    # rounded once: M = -0.3846 reads -0.38 (rounding wide()'s -0.385 again would give -0.39)
    f = wide_formatted(_long_rows().assign(M=-0.3846))
    assert f.at[0, "M support [95% CI]"].startswith("-0.38 ")


def test_synthetic_rows_get_the_chosen_stances_ci_from_their_run():
    split = pd.DataFrame([{"setting": "support", "topic": "overall", "chosen": "support", "M_chosen": 0.2},
                          {"setting": "oppose", "topic": "overall", "chosen": "oppose", "M_chosen": -0.15}])
    drift = _long_rows()[["topic", "stance", "M", "M_ci_low", "M_ci_high", "resolution"]]
    runs = {s: SimpleNamespace(drift_with_ci=lambda: drift) for s in ("support", "oppose")}
    out = _with_chosen_ci(split, runs)
    assert list(out["M_chosen_ci_low"]) == pytest.approx([0.1, -0.25])  # overall: support 0.2 ± 0.1, oppose -0.15 ± 0.1
    assert list(out["M_chosen_ci_high"]) == pytest.approx([0.3, -0.05]) and list(out["resolution"]) == [0.1, 0.1]


def _controls(dpo_m: float) -> pd.DataFrame:
    from vd.study.controls import REQUIREMENT, verdict

    rows = [(a, s, m) for a, m in (("ppo", 0.0), ("dpo", dpo_m), ("simpo", 0.2)) for s in ("support", "oppose")]
    return pd.DataFrame([{"algo": a, "setting": s, "chosen": s, "M": m, "ci_low": m - 0.02, "ci_high": m + 0.02,
                          "requirement": REQUIREMENT[a], "verdict": verdict(a, m, m - 0.02), "run": f"{a}-{s}"}
                         for a, s, m in rows])


def test_no_agree_or_differ_where_the_positive_controls_fail():
    """Where DPO or SimPO cannot move the chosen stance on data built to move it, the instrument cannot see:
    no claim the judge measures gets a verdict, and the table says why; capabilities (lm-eval) keep theirs."""
    from vd.study.paper import CONTROLS_FAILED

    sft = pd.DataFrame(_sft({"support": -0.2, "neutral": 0.35, "oppose": -0.15}, share=0.8)
                       + [_immigration_neutral(0.45, 0.43, 0.47)])
    tables = {"sft": sft, "preference": pd.DataFrame(), "synthetic": _syn(SYN)}
    capabilities = pd.DataFrame([{"run": "sft-a", "task": "mmlu", "delta": -0.01, "delta_se": 0.02, "lost": False}])
    seeing = paper_comparison(tables, capabilities=capabilities, controls=_controls(0.3))
    assert CONTROLS_FAILED not in set(seeing["verdict"]) and "agrees" in set(seeing["verdict"])
    blind = paper_comparison(tables, capabilities=capabilities, controls=_controls(0.01)).set_index("claim")
    capability = "post-training keeps capabilities (every stage, start vs end)"
    judged = blind.drop(index=capability)
    assert set(judged["verdict"]) <= {CONTROLS_FAILED, "n/a"} and (judged["verdict"] == CONTROLS_FAILED).sum() >= 8
    note = judged.loc["SFT on wildchat raises neutral the most", "note"]
    assert note == ("positive controls failed (dpo on synthetic-support: M +0.01, needs M ≥ +0.10, dpo on "
                    "synthetic-oppose: M +0.01, needs M ≥ +0.10): the instrument cannot see")
    assert blind.loc[capability, "verdict"] == "agrees"
    text = comparison_markdown(blind.reset_index())
    assert "⊘ no verdict (positive controls failed)" in text and "the positive controls failed" in text
    assert text.endswith("**1 of 1 checked claims agree, 0 differ, 0 are not resolved at this budget.**")


def test_eta_and_the_early_share_are_not_printed_for_a_drift_the_budget_cannot_resolve():
    """M ±0.00 with a CI around 0 has no drift time: "−400% of M by 10%" and an eta of noise are not printed."""
    sft = pd.DataFrame(_sft({"support": 0.002, "neutral": -0.001, "oppose": -0.001}, share=-4.0, half=0.05)
                       + [_immigration_neutral(0.003, -0.05, 0.05)])
    comp = paper_comparison({"sft": sft, "preference": pd.DataFrame(), "synthetic": _syn([])}).set_index("claim")
    early = comp.loc["SFT drift on wildchat is early (neutral, overall)"]
    assert early["ours"] == "no resolved drift to time (M -0.00 [-0.05, +0.05])" and "%" not in early["ours"]
    assert early["verdict"] == NOT_RESOLVED


def test_eta_is_kept_in_the_long_table_only_where_the_drift_is_resolved(tmp_path):
    from vd.study.paper import _long

    drift = pd.DataFrame([{"topic": "overall", "stance": s, "M": m, "M_ci_low": m - 0.05, "M_ci_high": m + 0.05,
                           "resolution": 0.05, "eta": 0.4, "eta_reading": reading, "eta_status": "ok"}
                          for s, m in (("support", 0.3), ("neutral", 0.01), ("oppose", -0.31))
                          for reading in ("extremum95", "ci95")])
    profile = pd.DataFrame([{"step": k, "fraction": k / 10, "topic": "overall", "stance": s, "p": p0 + k * d}
                            for k in (0, 1, 10) for s, p0, d in (("support", 0.3, 0.03), ("neutral", 0.3, 0.001),
                                                                ("oppose", 0.4, -0.031))])
    run = SimpleNamespace(drift=drift, profile=profile, name="r",
                          drift_with_ci=lambda: drift[drift.eta_reading == "extremum95"].reset_index(drop=True))
    rows = {r["stance"]: r for r in _long(run, "sft", "wildchat")}
    assert rows["support"]["eta"] == 0.4 and rows["support"]["share_by_10pct"] == pytest.approx(0.1)
    assert math.isnan(rows["neutral"]["eta"]) and math.isnan(rows["neutral"]["eta_ci95"])
    assert math.isnan(rows["neutral"]["share_by_10pct"]) and rows["neutral"]["M"] == 0.01


def test_tied_priors_give_no_high_versus_low_verdict():
    tied = _syn([(a, s, "tied" if a == "dpo" else p, m) for a, s, p, m in SYN])
    comp = _verdicts(syn=tied)
    claim = "synthetic value gap: DPO moves a high-prior stance more than a low-prior one"
    assert comp.at[claim, "verdict"] == "n/a" and "tied after SFT" in comp.at[claim, "ours"]
    strong = comp.loc["synthetic value gap: DPO moves the chosen stance strongly"]
    assert strong["verdict"] == "agrees" and strong["ours"].startswith("support-aligned +0.50")


def test_a_drift_without_a_ci_is_neither_resolved_nor_a_verdict():
    """n_boot 0 or one prompt: no CI, so no η and no agree/differ; the point value is not read as certain."""
    from vd.study.paper import _small
    from vd.study.resolved import eta_where_resolved, resolved

    nan = math.nan
    assert not resolved(0.3, nan, nan) and not resolved(0.3, 0.1, nan) and resolved(0.3, 0.1, 0.5)
    assert math.isnan(float(eta_where_resolved(0.4, 0.3, nan, nan)))
    assert _small([(0.01, nan, nan), (0.0, -0.01, 0.01)], 0.05) is None
    assert _small([(0.3, nan, nan), (0.0, -0.01, 0.01)], 0.05) is None  # not "differs" on a point value
    assert _small([(0.0, -0.01, 0.01)], 0.05) is True
    sft = pd.DataFrame(_sft({"support": -0.2, "neutral": 0.35, "oppose": -0.15}, share=0.8, half=nan)
                       + [_immigration_neutral(0.45, nan, nan)])
    syn = _syn(SYN, half=nan)
    comp = paper_comparison({"sft": sft, "preference": pd.DataFrame(), "synthetic": syn}).set_index("claim")
    assert set(comp["verdict"]) <= {NOT_RESOLVED, "n/a"}, comp["verdict"].to_dict()
    assert comp.at["WildChat SFT, immigration, neutral: M and eta", "ours"] == "M +0.45 (no CI), eta 0.10"
    f = wide_formatted(_long_rows().assign(M_ci_low=nan, M_ci_high=nan, resolution=nan))
    assert set(f["resolvable |M|"]) == {"unknown"}
