"""The key numbers each notebook records (`figures/<size>/<notebook>.json`, via Study.record): what
`vd reproduce`, notebook 06 and the tests read back. Kept here so that the notebooks end with one line of
bookkeeping instead of a dictionary."""

from __future__ import annotations

import pandas as pd

import vd.study.capabilities
from vd.judge import agreement
from vd.study.analysis import drift_record


def probes(counts: pd.DataFrame, judged: pd.DataFrame | None, note: str) -> dict:
    """00: the probe set's counts, and the judge's accuracy on the hand-written examples."""
    agree = None if judged is None else agreement(judged["intended"].tolist(), judged["judged"].tolist())
    return {"n_probes": int(counts["in_set"].sum()), "n_used": int(counts["used"].sum()),
            "per_topic": counts.groupby("topic")[["in_set", "used"]].sum().to_dict("index"),
            "per_direction": counts.groupby("direction")[["in_set", "used"]].sum().to_dict("index"),
            "judge": note, "judge_accuracy_on_examples": agree and agree["accuracy"],
            "judge_kappa_on_examples": agree and agree["cohen_kappa"]}


def sft(runs: dict, shown) -> dict:
    """01: the shown SFT run's drift, and every SFT model's final profile beside the base model's."""
    first = next(iter(runs.values()))
    return {"sft": drift_record(shown), "final_profiles": {d: r.at("last") for d, r in runs.items()},
            "base_profile": first.at("first")}


def preference(run) -> dict:
    """02: the preference run's drift."""
    return {"run": drift_record(run)}


def value_gap(run, split: pd.DataFrame, summary: pd.DataFrame, gaps: pd.DataFrame) -> dict:
    """03: the run's drift, the chosen stance's M and prior per setting, the synthetic pairs' gaps."""
    overall = split[split.topic == "overall"].set_index("setting")
    return {"run": drift_record(run), "chosen_M_overall": overall["M_chosen"].to_dict(),
            "prior_overall": overall["prior"].to_dict(),
            "prior_summary": summary.set_index("prior").to_dict("index"),
            "gap_overall": gaps[gaps.topic == "overall"].pivot(index="dataset", columns="stance",
                                                               values="gap").to_dict("index")}


def dataset_gaps(gaps: pd.DataFrame, dist: pd.DataFrame, fit: pd.DataFrame | None = None) -> dict:
    """04: every dataset's overall gap, pair count, chosen/rejected stance shares, and policy fit."""
    overall = gaps[gaps.topic == "overall"]
    out = {"gap_overall": overall.pivot(index="dataset", columns="stance", values="gap").to_dict("index"),
           "n_pairs": overall.groupby("dataset")["n_pairs"].first().to_dict(),
           "distributions": dist.pivot_table(index=["dataset", "side"], columns="stance",
                                             values="p").reset_index().to_dict("records")}
    if fit is not None:
        out["policy_fit"] = fit.to_dict("records")
    return out


def ablations(table: pd.DataFrame) -> dict:
    """05: every ablation run's M (overall) with CIs, and eta."""
    return {"ablations": table.to_dict("records")}


def paper(comparison: pd.DataFrame, controls: pd.DataFrame, tables: dict[str, pd.DataFrame]) -> dict:
    """06: the positive controls, every claim's verdict, and the runs gathered."""
    return {"controls": controls.to_dict("records"), "comparison": comparison.to_dict("records"),
            "verdicts": comparison["verdict"].value_counts().to_dict(),
            "runs": sorted({r for t in tables.values() for r in t.get("run", [])})}


def capabilities(study, runs: dict, table: pd.DataFrame, summary: pd.DataFrame) -> dict:
    """07: every stage's start and end scores per task, the paired changes and the verdict."""
    return {"runs": list(runs), "tasks": list(study.cfg.capabilities.tasks),
            "budget": vd.study.capabilities.budget_note(study.cfg, study.smoke),
            **vd.study.capabilities.record(table, summary)}
