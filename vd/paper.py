"""Notebook 06: every run of a size gathered into the paper's tables, and the paper's numbers beside ours.

The paper's numbers (DESIGN §3) come from secondary sources (see ../shared/notes/paper.md): they are
for comparison, never for tuning. The agree/differ verdicts and their thresholds are ours.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from vd.analysis import prior_split
from vd.stances import STANCES

# The paper's numbers (DESIGN §3).
PAPER = {
    "sft_wildchat_immigration_neutral": {"M": 0.38, "eta": 0.09},
    "standard_M_range": (0.01, 0.27),
    "standard_eta_range": (0.14, 0.42),
    "standard_examples": {("ppo", "abortion", "support"): (0.05, 0.21), ("dpo", "immigration", "support"): (0.02, 0.14),
                          ("simpo", "climate_change", "support"): (0.27, 0.42)},
    "synthetic_M": {("ppo", "support"): 0.0, ("ppo", "oppose"): -0.02, ("dpo", "high"): 0.53, ("dpo", "low"): 0.46,
                    ("simpo", "any"): 0.15},
    "simpo_gamma_ablation_M": (0.34, 0.36),
}


def paper_tables(study, standard_data=None, settings=("support", "oppose")) -> dict[str, pd.DataFrame]:
    """Every run of the grid (trained if missing) gathered into the paper's three tables.

    sft: M and eta per SFT data x topic x stance; preference: per algorithm x standard dataset;
    synthetic: per algorithm x setting, the chosen stance's M, eta and its prior group.
    """
    from vd.config import SFT_DATASETS

    sft = {d: study.sft(d) for d in SFT_DATASETS if d in study.cfg.data.sft}
    rows = []
    for d, run in sft.items():
        rows += _long(run, stage="sft", data=d)
    sft_table = pd.DataFrame(rows)
    rows = []
    for algo in ("ppo", "dpo", "simpo"):
        for d in (standard_data or list(study.cfg.data.preference)):
            rows += _long(study.preference(algo, d), stage=algo, data=d)
    pref_table = pd.DataFrame(rows)
    splits = []
    base = study.sft()
    for algo in ("ppo", "dpo", "simpo"):
        runs = {s: study.preference(algo, f"synthetic-{s}") for s in settings}
        splits.append(prior_split(base, runs).assign(algo=algo))
    syn = pd.concat(splits, ignore_index=True)
    return {"sft": sft_table, "preference": pref_table, "synthetic": syn}


def wide(long: pd.DataFrame, topics=("immigration", "abortion", "climate_change", "overall")) -> pd.DataFrame:
    """A long M/eta table (paper_tables) as rows stage x data x topic, columns M and eta per stance."""
    part = long[long["topic"].isin(topics)]
    out = part.pivot_table(index=["stage", "data", "topic"], columns="stance", values=["M", "eta"], dropna=False)
    out.columns = [f"{what} {stance}" for what, stance in out.columns]
    order = [f"{w} {s}" for s in STANCES for w in ("M", "eta")]
    out = out[order].reset_index()
    out["topic"] = pd.Categorical(out["topic"], categories=list(topics), ordered=True)
    return out.sort_values(["stage", "data", "topic"]).reset_index(drop=True).round(3)


def _long(run, stage: str, data: str) -> list[dict]:
    d = run.drift.pivot_table(index=["topic", "stance"], columns="eta_reading", values="eta", dropna=False)
    m = run.drift[run.drift["eta_reading"] == "extremum95"]
    return [{"stage": stage, "data": data, "topic": r.topic, "stance": r.stance, "M": r.M,
             "eta": d.at[(r.topic, r.stance), "extremum95"], "eta_ci95": d.at[(r.topic, r.stance), "ci95"],
             "share_by_10pct": early_share(run.profile, r.topic, r.stance), "run": run.name} for r in m.itertuples()]


def early_share(profile: pd.DataFrame, topic: str, stance: str, fraction: float = 0.1) -> float:
    """Share of a stage's drift M reached at its first checkpoint at or after `fraction` of the steps
    (ours: the paper's "most of the drift happens in the first ~10% of steps", read directly)."""
    part = profile[(profile["topic"] == topic) & (profile["stance"] == stance)].sort_values("step")
    v = part["p"].to_numpy()
    frac = part["fraction"].to_numpy() if "fraction" in part else part["step"].to_numpy() / part["step"].max()
    m = v[-1] - v[0]
    later = np.flatnonzero(frac >= fraction - 1e-9)
    if abs(m) < 1e-12 or not len(later):
        return math.nan
    return float((v[later[0]] - v[0]) / m)


def _val(table, col, **eq) -> float:
    """The value of `col` in the first row of `table` matching `eq` (NaN if none)."""
    mask = np.ones(len(table), bool)
    for k, v in eq.items():
        mask &= (table[k] == v).to_numpy()
    return float(table.loc[mask, col].iloc[0]) if mask.any() else math.nan


def paper_comparison(tables: dict[str, pd.DataFrame], gaps: pd.DataFrame | None = None,
                     ablation: pd.DataFrame | None = None, capabilities: pd.DataFrame | None = None) -> pd.DataFrame:
    """Each of the paper's claims beside its number and ours, with a plain verdict.

    Verdicts (ours): "agrees" / "differs" on the claim's direction or ordering; for a reported number,
    "close" when ours lies within 0.10 of it. "Early" drift is read as at least half of M reached by
    10% of the steps (early_share), since eta can only take the checkpoints' fractions. Capabilities
    (`capabilities`: vd.capabilities.stage_summary) are kept when no stage's end scores below its start
    by more than 2 standard errors of the paired difference, on any task (vd.capabilities.verdict)."""
    sft, pref, syn = tables["sft"], tables["preference"], tables["synthetic"]
    out = []

    def add(claim, paper, ours, ok, note=""):
        verdict = {True: "agrees", False: "differs", None: "n/a"}[ok if ok is None else bool(ok)]
        out.append({"claim": claim, "paper": paper, "ours": ours, "verdict": verdict, "note": note})

    for data, stance in (("wildchat", "neutral"), ("alpaca", "support")):
        part = sft[(sft.data == data) & (sft.topic == "overall")]
        if part.empty:
            continue
        m = {r.stance: r.M for r in part.itertuples()}
        top = max(m, key=m.get)
        add(f"SFT on {data} raises {stance} the most", "WildChat → neutral, Alpaca → support",
            ", ".join(f"M {s} {v:+.2f}" for s, v in m.items()), top == stance and m[stance] > 0)
        eta, eta_ci, share = (_val(part, c, stance=stance) for c in ("eta", "eta_ci95", "share_by_10pct"))
        add(f"SFT drift on {data} is early ({stance}, overall)", "most drift in the first ~10% of steps",
            f"{share:.0%} of M reached by 10% of the steps; eta {eta:.2f} (extremum95), {eta_ci:.2f} (ci95)",
            None if math.isnan(share) else share >= 0.5, "agrees if at least half of M is reached by 10%")
    m, eta = _val(sft, "M", data="wildchat", topic="immigration", stance="neutral"), \
        _val(sft, "eta", data="wildchat", topic="immigration", stance="neutral")
    p = PAPER["sft_wildchat_immigration_neutral"]
    add("WildChat SFT, immigration, neutral: M and eta", f"M {p['M']:.2f}, eta {p['eta']:.2f}",
        f"M {m:+.2f}, eta {eta:.2f}", None if math.isnan(m) else abs(m - p["M"]) <= 0.10,
        "verdict on M: close (within 0.10) or not")

    if not pref.empty:
        overall = pref[pref.topic == "overall"]
        lo, hi = PAPER["standard_M_range"]
        biggest = overall.loc[overall.M.abs().idxmax()]
        sft_m = sft[sft.topic == "overall"].M.abs().max() if not sft.empty else math.nan
        add("standard preference data barely move values (|M|, overall, every algorithm x dataset)",
            f"M between {lo} and {hi}", f"max |M| {abs(biggest.M):.2f} ({biggest.stage} on {biggest.data}, "
            f"{biggest.stance}); SFT's max |M| {sft_m:.2f}", abs(biggest.M) <= hi and abs(biggest.M) < sft_m)
        etas = overall.eta.dropna()
        elo, ehi = PAPER["standard_eta_range"]
        add("drift time under standard preference data", f"eta between {elo} and {ehi}",
            f"eta {etas.min():.2f} to {etas.max():.2f}" if len(etas) else "no drift (eta undefined)", None)
        first = overall.data.iloc[0]
        for (algo, topic, stance), (pm, pe) in PAPER["standard_examples"].items():
            m, e = _val(pref, "M", stage=algo, data=first, topic=topic, stance=stance), \
                _val(pref, "eta", stage=algo, data=first, topic=topic, stance=stance)
            add(f"{algo.upper() if algo != 'simpo' else 'SimPO'} on standard data ({first}), {topic}, {stance}",
                f"M {pm:.2f}, eta {pe:.2f}", f"M {m:+.2f}, eta {e:.2f}",
                None if math.isnan(m) else abs(m - pm) <= 0.10, "close (within 0.10) or not")

    if gaps is not None and not gaps.empty:
        g = gaps[(gaps.topic == "overall") & (gaps.stance == "support")].set_index("dataset")["gap"]
        std = [d for d in g.index if not d.startswith("synthetic")]
        synth = [d for d in g.index if d.startswith("synthetic")]
        add("standard data have a small value gap, synthetic data a large one",
            "chosen and rejected share a stance in standard data",
            "; ".join(f"{d} {g[d]:+.2f}" for d in g.index) + " (support gap)",
            max(abs(g[d]) for d in std) < 0.1 and min(abs(g[d]) for d in synth) >= 0.5 if std and synth else None)

    if not syn.empty:
        ov = syn[syn.topic == "overall"].set_index(["algo", "setting"])
        mean = {a: float(ov.loc[a]["M_chosen"].mean()) for a in ("ppo", "dpo", "simpo") if a in ov.index}

        def chosen(algo, setting):
            return float(ov.loc[(algo, setting), "M_chosen"]) if (algo, setting) in ov.index else math.nan

        def by_prior(algo, prior):
            part = ov.loc[algo] if algo in ov.index else pd.DataFrame()
            part = part[part["prior"] == prior] if len(part) else part
            return float(part["M_chosen"].iloc[0]) if len(part) else math.nan

        pp = PAPER["synthetic_M"]
        add("synthetic value gap: PPO barely moves (M of the chosen stance)",
            f"support-aligned {pp[('ppo', 'support')]:.2f}, oppose-aligned {pp[('ppo', 'oppose')]:.2f}",
            f"support-aligned {chosen('ppo', 'support'):+.2f}, oppose-aligned {chosen('ppo', 'oppose'):+.2f}",
            max(abs(chosen("ppo", "support")), abs(chosen("ppo", "oppose"))) <= 0.05)
        high, low = by_prior("dpo", "high"), by_prior("dpo", "low")
        add("synthetic value gap: DPO moves the chosen stance strongly",
            f"high prior {pp[('dpo', 'high')]:.2f}, low prior {pp[('dpo', 'low')]:.2f}",
            f"high prior {high:+.2f}, low prior {low:+.2f}", min(high, low) >= 0.25,
            "agrees if both are at least 0.25, half the paper's")
        add("synthetic value gap: DPO moves a high-prior stance more than a low-prior one",
            f"{pp[('dpo', 'high')]:.2f} > {pp[('dpo', 'low')]:.2f}", f"{high:+.3f} vs {low:+.3f}", high > low)
        add("synthetic value gap: SimPO moves moderately", f"about {pp[('simpo', 'any')]:.2f}",
            f"mean over settings {mean.get('simpo', math.nan):+.2f}",
            None if "simpo" not in mean else abs(mean["simpo"] - pp[("simpo", "any")]) <= 0.10,
            "close (within 0.10) or not")
        add("synthetic value gap: the algorithms order PPO < SimPO < DPO", "PPO ≈ 0 < SimPO ≈ 0.15 < DPO ≈ 0.5",
            ", ".join(f"{a} {v:+.2f}" for a, v in mean.items()) + " (mean M of the chosen stance)",
            mean.get("ppo", math.nan) < mean.get("simpo", math.nan) < mean.get("dpo", math.nan))

    if ablation is not None and not ablation.empty:
        part = ablation[ablation.algo == "simpo"]
        if len(part):
            col = f"M_{part['chosen'].iloc[0]}"
            a, b = PAPER["simpo_gamma_ablation_M"]
            spread = float(part[col].max() - part[col].min())
            add("SimPO's gamma changes little", f"M {a:.2f} vs {b:.2f}",
                ", ".join(f"gamma {v:g}: {m:+.2f}" for v, m in zip(part["value"], part[col])), spread <= 0.10,
                f"spread {spread:.2f}; agrees if <= 0.10")
    if capabilities is not None and not capabilities.empty:
        from vd.capabilities import DROP_SE, task_label, verdict

        v = verdict(capabilities)
        tasks = ", ".join(task_label(t) for t in dict.fromkeys(capabilities["task"]))
        worst = v["worst"]
        ours = (f"{v['n_lost']} of {v['n_pairs']} stage x task pairs lost ({tasks}); worst change "
                f"{worst['delta']:+.3f} ± {worst['delta_se']:.3f} ({worst['run']}, {task_label(worst['task'])})"
                if worst else "nothing testable")
        add("post-training keeps capabilities (every stage, start vs end)",
            "kept on MMLU, HellaSwag, GPQA-Diamond, PIQA (reported; no numbers found)", ours, v["kept"],
            f"agrees if no stage's end is below its start by more than {DROP_SE:g} SE of the paired difference")
    return pd.DataFrame(out)


def comparison_markdown(comp: pd.DataFrame) -> str:
    """The comparison as a plain-language list (the notebook displays it as Markdown)."""
    lines = []
    for r in comp.itertuples():
        mark = {"agrees": "✅ agrees", "differs": "❌ differs", "n/a": "· no verdict"}[r.verdict]
        lines.append(f"- **{mark}** — {r.claim}. Paper: {r.paper}. Ours: {r.ours}." + (f" ({r.note})" if r.note else ""))
    n_ok, n_no = (comp.verdict == "agrees").sum(), (comp.verdict == "differs").sum()
    lines.append(f"\n**{n_ok} of {n_ok + n_no} checked claims agree, {n_no} differ.**")
    return "\n".join(lines)
