"""Notebook 06: every run of a size gathered into the paper's tables, and the paper's numbers beside ours.

The paper's numbers below come from secondary sources (summaries and reviews of the paper; see the
preamble of docs/method.md): they are for comparison, never for tuning. The agree/differ verdicts,
their thresholds and the "not resolved at this budget" rule (docs/method.md §6) are ours.

    tables = paper_tables(study)               # long tables: M with its CI, the topic's resolution, eta
    paper.wide(tables["sft"])                  # rows stage x data x topic, numeric (for display and CSV)
    paper.wide_formatted(tables["sft"])        # the same as "M [95% CI]" strings (for LaTeX)
    paper_comparison(tables, gaps, ablation)   # claim, paper, ours (with CIs), verdict, note
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

import vd.study.capabilities
from vd.core import registry
from vd.core.stances import STANCES
from vd.study import schedule
from vd.study.resolved import resolution_text, resolved
from vd.study.value_gaps import prior_split

# The paper's numbers (from secondary sources; docs/method.md, preamble).
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
NOT_RESOLVED = "not resolved at this budget"
CONTROLS_FAILED = "no verdict: positive controls failed"
CLOSE = 0.10  # ours: a reported number and ours "agree" within this


def paper_tables(study, standard_data=None, settings=("support", "oppose")) -> dict[str, pd.DataFrame]:
    """Every run of the grid (trained if missing) gathered into the paper's three tables.

    sft: M (with its 95% CI, ``M_ci_low, M_ci_high``), the topic's ``resolution`` (smallest resolvable
    |M|, docs/method.md §6) and eta per SFT data x topic x stance; preference: the same per algorithm x
    standard dataset; synthetic: per algorithm x setting, the chosen stance's M (with its CI and the
    topic's resolution), eta and its prior group.
    """
    sft = {d: study.sft(d) for d in schedule.sft_datasets(study.cfg)}
    rows = []
    for d, run in sft.items():
        rows += _long(run, stage="sft", data=d)
    sft_table = pd.DataFrame(rows)
    rows = []
    for algo in registry.ALGORITHMS:
        for d in (standard_data or schedule.standard_datasets(study.cfg)):
            rows += _long(study.preference(algo, d), stage=algo, data=d)
    pref_table = pd.DataFrame(rows)
    splits = []
    base = study.sft()
    for algo in registry.ALGORITHMS:
        runs = {s: study.preference(algo, f"synthetic-{s}") for s in settings}
        splits.append(_with_chosen_ci(prior_split(base, runs), runs).assign(algo=algo))
    syn = pd.concat(splits, ignore_index=True)
    return {"sft": sft_table, "preference": pref_table, "synthetic": syn}


def _with_chosen_ci(split: pd.DataFrame, runs: dict) -> pd.DataFrame:
    """prior_split's rows with the chosen stance's M CI and the topic's resolution, from each run's drift."""
    drift = {s: run.drift_with_ci().set_index(["topic", "stance"]) for s, run in runs.items()}
    cols = {"M_chosen_ci_low": "M_ci_low", "M_chosen_ci_high": "M_ci_high", "resolution": "resolution"}
    return split.assign(**{new: [float(drift[r.setting].at[(r.topic, r.chosen), old]) for r in split.itertuples()]
                           for new, old in cols.items()})


def wide(long: pd.DataFrame, topics=("immigration", "abortion", "climate_change", "overall"),
         decimals: int | None = 3) -> pd.DataFrame:
    """A long M/eta table (paper_tables) as rows stage x data x topic: the topic's resolution, then per
    stance M, its 95% CI and eta (columns ``M <stance>``, ``M <stance> ci_low``, ``... ci_high``, ``eta <stance>``),
    rounded to `decimals` (None: not rounded)."""
    part = long[long["topic"].isin(topics)]
    index = ["stage", "data", "topic"]
    out = part.pivot_table(index=index, columns="stance", values=["M", "M_ci_low", "M_ci_high", "eta"], dropna=False)
    names = {"M": "M {}", "M_ci_low": "M {} ci_low", "M_ci_high": "M {} ci_high", "eta": "eta {}"}
    out.columns = [names[what].format(stance) for what, stance in out.columns]
    order = [c for s in STANCES for c in (f"M {s}", f"M {s} ci_low", f"M {s} ci_high", f"eta {s}")]
    out = out[order]
    out.insert(0, "resolution", part.groupby(index)["resolution"].max().reindex(out.index))
    out = out.reset_index()
    out["topic"] = pd.Categorical(out["topic"], categories=list(topics), ordered=True)
    out = out.sort_values(index).reset_index(drop=True)
    return out if decimals is None else out.round(decimals)


def wide_formatted(long: pd.DataFrame, topics=("immigration", "abortion", "climate_change", "overall")) -> pd.DataFrame:
    """wide() as text for LaTeX: ``M <stance> [95% CI]`` as "+0.21 [-0.05, +0.43]", ``eta <stance>`` ("--"
    where undefined), and ``resolvable |M|`` as "±0.12" ("unknown" without a CI)."""
    w = wide(long, topics, decimals=None)  # rounded once, here: -0.3846 must read -0.38, not -0.385 -> -0.39
    out = w[["stage", "data", "topic"]].astype(str)
    out["resolvable |M|"] = [resolution_text(r) for r in w["resolution"]]
    for s in STANCES:
        out[f"M {s} [95% CI]"] = [_fmt(*v) for v in zip(w[f"M {s}"], w[f"M {s} ci_low"], w[f"M {s} ci_high"])]
        out[f"eta {s}"] = ["--" if math.isnan(e) else f"{e:.2f}" for e in w[f"eta {s}"]]
    return out


def _long(run, stage: str, data: str) -> list[dict]:
    """One row per topic x stance; eta (both readings) and the early share only where the drift is
    resolved (vd.study.resolved): of a drift its CI cannot tell from none they time noise."""
    d = run.drift.pivot_table(index=["topic", "stance"], columns="eta_reading", values="eta", dropna=False)
    status = run.drift[run.drift["eta_reading"] == "ci95"].set_index(["topic", "stance"])["eta_status"]
    rows = []
    for r in run.drift_with_ci().itertuples():
        seen = bool(resolved(r.M, r.M_ci_low, r.M_ci_high))
        timed = {"eta": d.at[(r.topic, r.stance), "extremum95"], "eta_ci95": d.at[(r.topic, r.stance), "ci95"],
                 "share_by_10pct": early_share(run.profile, r.topic, r.stance)}
        rows.append({"stage": stage, "data": data, "topic": r.topic, "stance": r.stance, "M": r.M,
                     "M_ci_low": r.M_ci_low, "M_ci_high": r.M_ci_high, "resolution": r.resolution,
                     **{k: v if seen else math.nan for k, v in timed.items()},
                     "eta_ci95_status": status.get((r.topic, r.stance), ""), "run": run.name})
    return rows


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


# ----------------------------------------------------------------------------- verdicts against CIs
def _eta(e: float) -> str:
    return "--" if math.isnan(e) else f"{e:.2f}"


def _fmt(m: float, lo: float, hi: float) -> str:
    """M beside its 95% CI: "+0.21 [-0.05, +0.43]"."""
    if math.isnan(m):
        return "--"
    return f"{m:+.2f} (no CI)" if math.isnan(lo) or math.isnan(hi) else f"{m:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def _covers(lo: float, hi: float, x: float) -> bool:
    return bool(lo - 1e-12 <= x <= hi + 1e-12)  # False for a missing CI


def _no_ci(lo: float, hi: float) -> bool:
    return math.isnan(lo) or math.isnan(hi)


def _unresolved(lo: float, hi: float, paper: float = 0.0) -> bool:
    """M's CI covers both the paper's value and 0, or is missing: this budget cannot tell the paper's
    drift from none (no CI: resampling could not estimate one)."""
    return _no_ci(lo, hi) or (_covers(lo, hi, 0.0) and _covers(lo, hi, paper))


def _overlap(a: tuple, b: tuple) -> bool:
    """Two (lo, hi) CIs overlap, or one is missing: their order is not resolved (ours; conservative)."""
    return _no_ci(*a) or _no_ci(*b) or bool(a[0] <= b[1] + 1e-12 and b[0] <= a[1] + 1e-12)


def _small(triples, bound: float) -> bool | None:
    """A claim that every |M| ≤ bound, against the CIs (m, lo, hi): True where every CI lies inside
    ±bound, False where one lies wholly outside, None (not resolved) otherwise, and wherever a CI is
    missing. (Ours: for a claim of ~no drift, "covers 0" is what agreeing means, so the interval is
    held against the claim's bound instead.)"""
    cis = [(lo, hi) for _, lo, hi in triples]
    if any(_no_ci(lo, hi) for lo, hi in cis):
        return None
    if any(lo > bound + 1e-12 or hi < -bound - 1e-12 for lo, hi in cis):
        return False
    return True if all(-bound - 1e-12 <= lo and hi <= bound + 1e-12 for lo, hi in cis) else None


def _val(table, col, **eq) -> float:
    """The value of `col` in the first row of `table` matching `eq` (NaN if none)."""
    mask = np.ones(len(table), bool)
    for k, v in eq.items():
        mask &= (table[k] == v).to_numpy()
    return float(table.loc[mask, col].iloc[0]) if mask.any() else math.nan


def paper_comparison(tables: dict[str, pd.DataFrame], gaps: pd.DataFrame | None = None,
                     ablation: pd.DataFrame | None = None, capabilities: pd.DataFrame | None = None,
                     controls: pd.DataFrame | None = None) -> pd.DataFrame:
    """Each of the paper's claims beside its number and ours (M with its 95% CI), with a plain verdict.

    Verdicts (ours): "agrees" / "differs" on the claim's direction or ordering; for a reported number,
    "agrees" when ours lies within 0.10 of it. "Early" drift is read as at least half of M reached by
    10% of the steps (early_share), since eta can only take the checkpoints' fractions.
    "not resolved at this budget" (docs/method.md §6) replaces them where the CI cannot decide:
    where M's CI covers both the paper's value and 0 (for a claimed direction: covers 0); for an
    ordering, where the two CIs overlap; for a claim of ~no drift (|M| within a bound), where a CI
    straddles the bound; for SimPO's gamma (a spread within 0.10), also where a run's resolution
    exceeds 0.10. A mean over two runs gets the mean of their bounds as its CI (conservative: wider
    than that of two independent estimates). A missing CI (n_boot=0, one prompt) gives no verdict but
    "not resolved at this budget": resampling could not estimate one.
    Where a positive control fails (`controls`, vd.study.controls), every claim the stance judge
    measures gets CONTROLS_FAILED instead of a verdict, and its note says which control failed: an
    instrument that cannot see a drift its data build in cannot confirm or refute one (ours).
    """
    sft, pref, syn = tables["sft"], tables["preference"], tables["synthetic"]
    out = []

    failed = _failed_controls(controls)

    def add(claim, paper, ours, ok, note="", resolved=True, judged=True):
        verdict = "n/a" if ok is None else ("agrees" if ok else "differs") if resolved else NOT_RESOLVED
        if failed and judged and verdict != "n/a":
            verdict, note = CONTROLS_FAILED, f"positive controls failed ({failed}): the instrument cannot see"
        out.append({"claim": claim, "paper": paper, "ours": ours, "verdict": verdict, "note": note})

    def ci(table, **eq):
        return tuple(_val(table, c, **eq) for c in ("M", "M_ci_low", "M_ci_high"))

    for data, stance in (("wildchat", "neutral"), ("alpaca", "support")):
        part = sft[(sft.data == data) & (sft.topic == "overall")]
        if part.empty:
            continue
        m = {r.stance: ci(part, stance=r.stance) for r in part.itertuples()}
        top = max(m, key=lambda s: m[s][0])
        sign_known = not (_no_ci(*m[stance][1:]) or _covers(m[stance][1], m[stance][2], 0.0))
        add(f"SFT on {data} raises {stance} the most", "WildChat → neutral, Alpaca → support",
            ", ".join(f"M {s} {_fmt(*v)}" for s, v in m.items()), top == stance and m[stance][0] > 0,
            resolved=sign_known)
        eta, eta_ci, share = (_val(part, c, stance=stance) for c in ("eta", "eta_ci95", "share_by_10pct"))
        add(f"SFT drift on {data} is early ({stance}, overall)", "most drift in the first ~10% of steps",
            f"{share:.0%} of M reached by 10% of the steps; eta {_eta(eta)} (extremum95), {_eta(eta_ci)} (ci95)"
            if sign_known else f"no resolved drift to time (M {_fmt(*m[stance])})",
            None if math.isnan(share) else share >= 0.5, "agrees if at least half of M is reached by 10%",
            resolved=sign_known)
    m = ci(sft, data="wildchat", topic="immigration", stance="neutral")
    eta = _val(sft, "eta", data="wildchat", topic="immigration", stance="neutral")
    p = PAPER["sft_wildchat_immigration_neutral"]
    add("WildChat SFT, immigration, neutral: M and eta", f"M {p['M']:.2f}, eta {p['eta']:.2f}",
        f"M {_fmt(*m)}, eta {_eta(eta)}", None if math.isnan(m[0]) else abs(m[0] - p["M"]) <= CLOSE,
        "verdict on M: close (within 0.10) or not", resolved=not _unresolved(m[1], m[2], p["M"]))

    if not pref.empty:
        overall = pref[pref.topic == "overall"]
        lo, hi = PAPER["standard_M_range"]
        biggest = overall.loc[overall.M.abs().idxmax()]
        sft_m = sft[sft.topic == "overall"].M.abs().max() if not sft.empty else math.nan
        small = _small(overall[["M", "M_ci_low", "M_ci_high"]].itertuples(index=False), hi)
        add("standard preference data barely move values (|M|, overall, every algorithm x dataset)",
            f"M between {lo} and {hi}", f"max |M| {abs(biggest.M):.2f} ({biggest.stage} on {biggest.data}, "
            f"{biggest.stance}; M {_fmt(biggest.M, biggest.M_ci_low, biggest.M_ci_high)}); SFT's max |M| {sft_m:.2f}",
            bool(small) and abs(biggest.M) < sft_m, f"every CI within ±{hi}", resolved=small is not None)
        etas = overall.eta.dropna()
        elo, ehi = PAPER["standard_eta_range"]
        add("drift time under standard preference data", f"eta between {elo} and {ehi}",
            f"eta {etas.min():.2f} to {etas.max():.2f} (where the drift is resolved)" if len(etas)
            else "no resolved drift (eta undefined)", None)
        first = overall.data.iloc[0]
        for (algo, topic, stance), (pm, pe) in PAPER["standard_examples"].items():
            m = ci(pref, stage=algo, data=first, topic=topic, stance=stance)
            e = _val(pref, "eta", stage=algo, data=first, topic=topic, stance=stance)
            add(f"{algo.upper() if algo != 'simpo' else 'SimPO'} on standard data ({first}), {topic}, {stance}",
                f"M {pm:.2f}, eta {pe:.2f}", f"M {_fmt(*m)}, eta {_eta(e)}",
                None if math.isnan(m[0]) else abs(m[0] - pm) <= CLOSE, "close (within 0.10) or not",
                resolved=not _unresolved(m[1], m[2], pm))

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
        nan3 = (math.nan,) * 3

        def chosen(algo, setting):
            if (algo, setting) not in ov.index:
                return nan3
            return tuple(float(ov.at[(algo, setting), c]) for c in ("M_chosen", "M_chosen_ci_low", "M_chosen_ci_high"))

        def by_prior(algo, prior):
            part = ov.loc[algo] if algo in ov.index else pd.DataFrame()
            part = part[part["prior"] == prior] if len(part) else part
            return chosen(algo, part.index[0]) if len(part) else nan3

        def mean(algo):  # over the settings; the CI: the mean of the bounds
            rows = [chosen(algo, s) for s in ov.loc[algo].index] if algo in ov.index else []
            return tuple(float(np.mean([r[k] for r in rows])) for k in range(3)) if rows else nan3

        pp = PAPER["synthetic_M"]
        sup, opp = chosen("ppo", "support"), chosen("ppo", "oppose")
        small = _small([sup, opp], 0.05)
        add("synthetic value gap: PPO barely moves (M of the chosen stance)",
            f"support-aligned {pp[('ppo', 'support')]:.2f}, oppose-aligned {pp[('ppo', 'oppose')]:.2f}",
            f"support-aligned {_fmt(*sup)}, oppose-aligned {_fmt(*opp)}", bool(small),
            "agrees if both CIs lie within ±0.05", resolved=small is not None)
        high, low = by_prior("dpo", "high"), by_prior("dpo", "low")
        split = not (math.isnan(high[0]) or math.isnan(low[0]))
        # priors tied after SFT (vd.study.value_gaps.prior_split): the settings stand in for high and low
        first, second = (high, low) if split else (chosen("dpo", "support"), chosen("dpo", "oppose"))
        names = ("high prior", "low prior") if split else ("support-aligned", "oppose-aligned")
        add("synthetic value gap: DPO moves the chosen stance strongly",
            f"high prior {pp[('dpo', 'high')]:.2f}, low prior {pp[('dpo', 'low')]:.2f}",
            f"{names[0]} {_fmt(*first)}, {names[1]} {_fmt(*second)}",
            None if math.isnan(first[0]) or math.isnan(second[0]) else min(first[0], second[0]) >= 0.25,
            "agrees if both are at least 0.25, half the paper's", resolved=not (
                _unresolved(*first[1:], pp[("dpo", "high")]) or _unresolved(*second[1:], pp[("dpo", "low")])))
        add("synthetic value gap: DPO moves a high-prior stance more than a low-prior one",
            f"{pp[('dpo', 'high')]:.2f} > {pp[('dpo', 'low')]:.2f}", f"{_fmt(*high)} vs {_fmt(*low)}"
            if split else "no high and low prior: support and oppose are tied after SFT (within the resolution, "
            "or it is unknown)",
            high[0] > low[0] if split else None, "resolved where the two CIs do not overlap",
            resolved=not _overlap(high[1:], low[1:]))
        means = {a: mean(a) for a in ("ppo", "simpo", "dpo") if a in ov.index}
        simpo = means.get("simpo", nan3)
        add("synthetic value gap: SimPO moves moderately", f"about {pp[('simpo', 'any')]:.2f}",
            f"mean over settings {_fmt(*simpo)}",
            None if math.isnan(simpo[0]) else abs(simpo[0] - pp[("simpo", "any")]) <= CLOSE,
            "close (within 0.10) or not", resolved=not _unresolved(*simpo[1:], pp[("simpo", "any")]))
        ppo, dpo = means.get("ppo", nan3), means.get("dpo", nan3)
        add("synthetic value gap: the algorithms order PPO < SimPO < DPO", "PPO ≈ 0 < SimPO ≈ 0.15 < DPO ≈ 0.5",
            ", ".join(f"{a} {_fmt(*v)}" for a, v in means.items()) + " (mean M of the chosen stance)",
            ppo[0] < simpo[0] < dpo[0], "resolved where neighbours' CIs do not overlap",
            resolved=not (_overlap(ppo[1:], simpo[1:]) or _overlap(simpo[1:], dpo[1:])))

    if ablation is not None and not ablation.empty:
        part = ablation[ablation.algo == "simpo"]
        if len(part):
            col = f"M_{part['chosen'].iloc[0]}"
            a, b = PAPER["simpo_gamma_ablation_M"]
            runs = list(zip(part[col], part[f"{col}_ci_low"], part[f"{col}_ci_high"]))
            spread = float(part[col].max() - part[col].min())
            widest = float(np.max([(hi - lo) / 2 for _, lo, hi in runs]))  # NaN (unknown) if a CI is missing
            add("SimPO's gamma changes little", f"M {a:.2f} vs {b:.2f}",
                ", ".join(f"gamma {v:g}: {_fmt(*r)}" for v, r in zip(part["value"], runs)), spread <= CLOSE,
                f"spread {spread:.2f}; agrees if <= 0.10; resolution {resolution_text(widest)}",
                resolved=not (widest > CLOSE or any(_unresolved(lo, hi, a) or _unresolved(lo, hi, b)
                                                     for _, lo, hi in runs)))
    if capabilities is not None and not capabilities.empty:
        task_label = vd.study.capabilities.task_label
        v = vd.study.capabilities.verdict(capabilities)
        tasks = ", ".join(task_label(t) for t in dict.fromkeys(capabilities["task"]))
        worst = v["worst"]
        ours = (f"{v['n_lost']} of {v['n_pairs']} stage x task pairs lost ({tasks}); worst change "
                f"{worst['delta']:+.3f} ± {worst['delta_se']:.3f} ({worst['run']}, {task_label(worst['task'])})"
                if worst else "nothing testable")
        add("post-training keeps capabilities (every stage, start vs end)",
            "kept on MMLU, HellaSwag, GPQA-Diamond, PIQA (reported; no numbers found)", ours, v["kept"],
            f"agrees if no stage's end is below its start by more than {vd.study.capabilities.DROP_SE:g} SE "
            "of the paired difference",
            judged=False)
    return pd.DataFrame(out)


def _failed_controls(controls: pd.DataFrame | None) -> str:
    """"dpo on synthetic-support (M +0.01), ..." for each control that FAILS; "" where none does."""
    if controls is None or controls.empty:
        return ""
    bad = controls[controls["verdict"] == "FAILS"]
    return ", ".join(f"{r.algo} on synthetic-{r.setting}: M {r.M:+.2f}, needs {r.requirement}"
                     for r in bad.itertuples())


def comparison_markdown(comp: pd.DataFrame) -> str:
    """The comparison as a plain-language list (the notebook displays it as Markdown)."""
    marks = {"agrees": "✅ agrees", "differs": "❌ differs", NOT_RESOLVED: "◌ not resolved at this budget",
             CONTROLS_FAILED: "⊘ no verdict (positive controls failed)", "n/a": "· no verdict"}
    lines = [f"- **{marks[r.verdict]}** — {r.claim}. Paper: {r.paper}. Ours: {r.ours}."
             + (f" ({r.note})" if r.note else "") for r in comp.itertuples()]
    n = comp.verdict.value_counts()
    n_ok, n_no, n_open = (int(n.get(v, 0)) for v in ("agrees", "differs", NOT_RESOLVED))
    n_blind = int(n.get(CONTROLS_FAILED, 0))
    if n_blind:
        lines.append(f"\n**No verdict on {n_blind} claims: the positive controls failed, so this instrument could "
                     "not have seen the drifts they are about (see the controls above).**")
    lines.append(f"\n**{n_ok} of {n_ok + n_no + n_open} checked claims agree, {n_no} differ, "
                 f"{n_open} are not resolved at this budget.**")
    return "\n".join(lines)
