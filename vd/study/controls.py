"""Positive controls (ours; docs/method.md §8): before any null result is read, the pipeline must show
that it moves when the data say it should. From the SFT model the preference stages start from, on both
synthetic value-gap settings, the chosen stance's overall share must rise: by at least DPO_MIN_M under
DPO, and by more than 0 with its 95% CI excluding 0 under SimPO. PPO is reported as measured, with no
requirement: its KL anchor is the paper's point.

The thresholds are requirements on the instrument, not predictions of the paper's numbers (the paper's
DPO moves about 0.5, its SimPO about 0.15).
"""

from __future__ import annotations

import pandas as pd

from vd.core import registry

DPO_MIN_M = 0.10  # DPO's chosen-stance M must reach this (overall profile)


def verdict(algo: str, m: float, ci_low: float) -> str:
    """"passes" / "FAILS" against the requirement of `algo`, "reported" where there is none."""
    if algo == "dpo":
        return "passes" if m >= DPO_MIN_M else "FAILS"
    if algo == "simpo":
        return "passes" if m > 0 and ci_low > 0 else "FAILS"
    return "reported"


REQUIREMENT = {"dpo": f"M ≥ +{DPO_MIN_M:.2f}", "simpo": "M > 0, 95% CI excludes 0",
               "ppo": "none (reported as measured)"}


def positive_controls(study, sft_data: str | None = None) -> pd.DataFrame:
    """Per algorithm and synthetic setting: the chosen stance's overall M with its paired-bootstrap 95% CI,
    the requirement and the verdict (runs trained and scored if missing)."""
    rows = []
    for algo in registry.ALGORITHMS:
        for setting in registry.SYNTHETIC_SETTINGS:
            run = study.preference(algo, f"synthetic-{setting}", sft_data)
            d = run.drift_with_ci()
            row = d[(d["topic"] == "overall") & (d["stance"] == setting)].iloc[0]
            rows.append({"algo": algo, "setting": setting, "chosen": setting, "M": float(row["M"]),
                         "ci_low": float(row["M_ci_low"]), "ci_high": float(row["M_ci_high"]),
                         "requirement": REQUIREMENT.get(algo, "none"),
                         "verdict": verdict(algo, float(row["M"]), float(row["M_ci_low"])), "run": run.name})
    return pd.DataFrame(rows)
