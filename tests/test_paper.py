"""vd.study.paper: the drift-timing reading and the verdicts beside the paper's numbers, on hand-made tables."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from vd.study.paper import early_share, paper_comparison


def test_early_share_reads_the_first_checkpoint_at_or_after_ten_percent():
    # support: 0.2 -> 0.5 at step 2 of 20 (10%) -> 0.6 at the end: 0.3 of M = 0.4 reached, 75%
    profile = pd.DataFrame({"step": [0, 2, 10, 20], "topic": "t", "stance": "support",
                            "p": [0.2, 0.5, 0.55, 0.6]})
    assert early_share(profile, "t", "support") == pytest.approx(0.75)
    # the first checkpoint at or after 10% is step 4 of 20 when there is none at 2
    later = profile.assign(step=[0, 4, 10, 20])
    assert early_share(later, "t", "support") == pytest.approx(0.75)
    assert math.isnan(early_share(profile.assign(p=0.3), "t", "support"))  # no drift: undefined


def _sft(m_by_stance: dict, share: float, data: str = "wildchat") -> list[dict]:
    return [{"stage": "sft", "data": data, "topic": "overall", "stance": s, "M": m, "eta": 0.1, "eta_ci95": 0.1,
             "share_by_10pct": share, "run": f"sft-{data}"} for s, m in m_by_stance.items()]


def test_verdicts_follow_the_numbers():
    sft = pd.DataFrame(_sft({"support": -0.2, "neutral": 0.35, "oppose": -0.15}, share=0.8)
                       + _sft({"support": -0.1, "neutral": 0.2, "oppose": -0.1}, share=0.2, data="alpaca")
                       + [{"stage": "sft", "data": "wildchat", "topic": "immigration", "stance": "neutral",
                           "M": 0.45, "eta": 0.1, "eta_ci95": 0.1, "share_by_10pct": 0.9, "run": "sft-wildchat"}])
    syn = pd.DataFrame([{"algo": a, "setting": s, "topic": "overall", "prior": p, "M_chosen": m}
                        for a, s, p, m in [("ppo", "support", "high", 0.01), ("ppo", "oppose", "low", -0.02),
                                           ("dpo", "support", "high", 0.5), ("dpo", "oppose", "low", 0.4),
                                           ("simpo", "support", "high", 0.2), ("simpo", "oppose", "low", 0.1)]])
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
    flipped = syn.assign(M_chosen=[0.01, -0.02, 0.4, 0.5, 0.2, 0.1])
    comp = paper_comparison({"sft": sft, "preference": pd.DataFrame(), "synthetic": flipped}).set_index("claim")
    assert comp.loc["synthetic value gap: DPO moves a high-prior stance more than a low-prior one", "verdict"] == "differs"
