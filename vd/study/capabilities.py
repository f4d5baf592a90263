"""Capability checks over the study's runs (notebooks 06 and 07): every stage's start and end evaluated
through lm-eval (vd.score.capabilities), the paired change per stage and task, and the verdict on the
paper's "post-training keeps capabilities" (ours: a stage loses a task when its end scores below its start
by more than DROP_SE standard errors of the paired difference)."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd

from vd.core.config import Config
from vd.core.stances import TOPICS
from vd.score.capabilities import (  # noqa: F401
    DROP_SE,
    PAPER_STATEMENT,
    PAPER_TASKS,
    chance,
    check_tasks,
    evaluate_run,
    lm_eval_version,
    task_label,
)
from vd.study import (
    figures,  # noqa: F401  (the project's figure style and headless backend)
    schedule,
)
from vd.study.params import parse_algos
from vd.world import capability

# ----------------------------------------------------------------------------- the study

def study_runs(study, sft_data: str | None = None, algos: str = "all") -> dict:
    """Every run of the study (trained and scored only if missing): the SFT runs the params name, then per
    algorithm its standard-data and synthetic runs from the SFT model `sft_data` (vd.study.schedule's
    capability_runs). {run name: RunResult}."""
    runs = {}
    for planned in schedule.capability_runs(study.cfg, sft_data, parse_algos(algos)):
        r = schedule.run(study, planned)
        runs[r.name] = r
    return runs


def capability_table(study, runs: dict | None = None, sft_data: str | None = None, algos: str = "all",
                     verbose: bool = True) -> pd.DataFrame:
    """`evaluate_run` over the study's runs (default: `study_runs`), cached in <runs>/<size>/capabilities/."""
    if study.cfg.capabilities.tasks and not any(t == capability.TASK for t in study.cfg.capabilities.tasks):
        check_tasks(study.cfg)
    runs = runs if runs is not None else study_runs(study, sft_data, algos)
    cache = study.runs_dir / study.cfg.size / "capabilities"
    t0 = time.perf_counter()
    frames = [evaluate_run(r.run_dir, r.cfg, cache_dir=cache) for r in runs.values()]
    table = pd.concat(frames, ignore_index=True)
    if verbose:
        new = table[~table["cached"]]
        print(f"capabilities: {len(table)} results ({table['task'].nunique()} task(s), {len(runs)} runs, start and "
              f"end): {len(new)} evaluated now in {time.perf_counter() - t0:.0f} s, {len(table) - len(new)} from "
              f"the cache ({study.rel(cache)})", flush=True)
    return table


def stage_summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, task): start and end with their stderrs, the difference, its paired standard
    error, and whether the stage lost the capability (a drop beyond DROP_SE standard errors)."""
    rows = []
    for (run, task), part in table.groupby(["run", "task"], sort=False):
        s, e = (part[part["position"] == p].iloc[0] for p in ("start", "end"))
        delta = e["value"] - s["value"]
        se = paired_se(s.get("per_item"), e.get("per_item"))
        if math.isnan(se):  # no per-item scores: as if independent (conservative for paired items)
            se = math.sqrt(s["stderr"] ** 2 + e["stderr"] ** 2)
        lost = None if math.isnan(se) else bool(delta < -DROP_SE * se) if se > 0 else bool(delta < 0)
        rows.append({"run": run, "stage": s["stage"], "data": s["data"], "task": task, "metric": s["metric"],
                     "n": int(s["n"]), "chance": s["chance"], "start_step": int(s["step"]), "end_step": int(e["step"]),
                     "start": s["value"], "start_stderr": s["stderr"], "end": e["value"], "end_stderr": e["stderr"],
                     "delta": delta, "delta_se": se, "lost": lost})
    out = pd.DataFrame(rows)
    if len(out):
        out["lost"] = pd.Series([r["lost"] for r in rows], dtype=object)  # True / False / None, not numpy bools
    return out


def _lost(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and bool(value)


def paired_se(start: dict | None, end: dict | None) -> float:
    """Standard error of the mean per-item difference end - start over the items both scored."""
    if not isinstance(start, dict) or not isinstance(end, dict) or set(start) != set(end):
        return math.nan
    diffs = []
    for name in start:
        a, b = start[name], end[name]
        if not isinstance(a, list) or not isinstance(b, list) or len(a) != len(b):
            return math.nan
        diffs += [y - x for x, y in zip(a, b)]
    if len(diffs) < 2:
        return math.nan
    return float(np.std(diffs, ddof=1) / math.sqrt(len(diffs)))


def verdict(summary: pd.DataFrame) -> dict:
    """The claim "post-training keeps capabilities" on our numbers: kept (True/False; None when nothing
    could be tested), how many stage x task pairs lost their task, and the worst change (lowest end - start)."""
    tested = summary[summary["lost"].notna()]
    if tested.empty:
        return {"kept": None, "n_pairs": 0, "n_lost": 0, "worst": None}
    worst = tested.loc[tested["delta"].idxmin()]
    n_lost = sum(_lost(v) for v in tested["lost"])
    return {"kept": n_lost == 0, "n_pairs": len(tested), "n_lost": n_lost,
            "worst": {"run": worst["run"], "task": worst["task"], "delta": float(worst["delta"]),
                      "delta_se": float(worst["delta_se"])}}


def verdict_markdown(summary: pd.DataFrame) -> str:
    v = verdict(summary)
    if v["kept"] is None:
        return "No stage could be tested (no standard errors)."
    w = v["worst"]
    head = ("**Kept**: no stage's end scores below its start by more than "
            f"{DROP_SE:g} standard errors of the paired difference on any task" if v["kept"] else
            f"**Lost in {v['n_lost']} of {v['n_pairs']} stage × task pairs** (a drop beyond {DROP_SE:g} standard "
            "errors of the paired difference)")
    return (f"{head}. Worst change (end − start): {w['delta']:+.3f} ± {w['delta_se']:.3f} ({w['run']}, "
            f"{task_label(w['task'])}). Verdict rule (ours): see `vd.study.capabilities`.")


def latex_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary formatted for LaTeX (ASCII): value (stderr) at start and end, the change (its paired SE)."""
    def pm(v, s):
        return "--" if pd.isna(v) else f"{v:.3f} ({s:.3f})" if not pd.isna(s) else f"{v:.3f}"

    return pd.DataFrame({
        "run": summary["run"], "task": summary["task"].map(task_label), "metric": summary["metric"],
        "start (stderr)": [pm(v, s) for v, s in zip(summary["start"], summary["start_stderr"])],
        "end (stderr)": [pm(v, s) for v, s in zip(summary["end"], summary["end_stderr"])],
        "change (SE)": [pm(v, s) for v, s in zip(summary["delta"], summary["delta_se"])],
        "lost": ["--" if v is None or (isinstance(v, float) and math.isnan(v)) else "yes" if v else "no"
                 for v in summary["lost"]]})


def budget_note(cfg: Config, smoke: bool = False) -> str:
    """What the capability evaluation evaluated, relative to full test sets (every figure title states it)."""

    c = cfg.capabilities
    tasks = ", ".join(f"{task_label(t)} {s.num_fewshot}-shot {s.metric}" for t, s in c.tasks.items())
    whole = f" of {capability.PER_TOPIC * len(TOPICS)}" if capability.TASK in c.tasks else ""
    per = " per task" + (" (MMLU: per subject)" if "mmlu" in c.tasks else "")
    items = f"≤ {c.limit}{whole} items{per} (paper: full test sets)" if c.limit else "all items"
    return (("SMOKE TEST (a few steps); " if smoke else "") + f"capability budget: {items}\n{tasks}; "
            f"lm-eval {lm_eval_version()}")


def figure(table: pd.DataFrame, summary: pd.DataFrame, title: str):
    """Per task: above, each run's start (open) and end (filled) score ± its stderr, chance dashed; below,
    the change end - start with its 2-SE bar (paired), a red edge where the stage lost the task."""
    import textwrap

    import matplotlib.pyplot as plt

    colors = {"sft": "#4c72b0", "ppo": "#55a868", "dpo": "#dd8452", "simpo": "#8172b2"}
    tasks = list(dict.fromkeys(table["task"]))
    runs = list(dict.fromkeys(table["run"]))
    width = max(6.0, 0.5 * len(runs) + 1.5)
    fig, axes = plt.subplots(2 * len(tasks), 1, figsize=(width, 5.0 * len(tasks)), squeeze=False, sharex=True,
                             gridspec_kw={"height_ratios": [3, 2] * len(tasks)})
    x = np.arange(len(runs))
    for ax, dx, task in zip(axes[0::2, 0], axes[1::2, 0], tasks):
        part = table[table["task"] == task]
        for i, run in enumerate(runs):
            r = part[part["run"] == run].set_index("position")
            if r.empty:
                continue
            color = colors.get(r["stage"].iloc[0], "grey")
            s, e = r.loc["start"], r.loc["end"]
            ax.errorbar(i - 0.12, s["value"], yerr=s["stderr"], fmt="o", mfc="white", color=color, capsize=2)
            ax.errorbar(i + 0.12, e["value"], yerr=e["stderr"], fmt="o", color=color, capsize=2)
            ax.plot([i - 0.12, i + 0.12], [s["value"], e["value"]], color=color, lw=1)
        c = chance(task)
        if not math.isnan(c):
            ax.axhline(c, ls="--", color="grey", lw=1)
            ax.text(len(runs) - 0.5, c, "chance", va="bottom", ha="right", color="grey", fontsize=8)
        ax.set_ylim(0, 1.02)
        ax.set_ylabel(part["metric"].iloc[0])
        ax.set_title(f"{task_label(task)}: start (open) and end (filled) ± stderr", fontsize=9)
        sm = summary[summary["task"] == task].set_index("run").reindex(runs)
        bar = [colors.get(st, "grey") for st in sm["stage"]]
        edge = ["#d62728" if _lost(lost) else b for lost, b in zip(sm["lost"], bar)]
        dx.bar(x, sm["delta"], color=bar, edgecolor=edge, linewidth=[2 if _lost(lost) else 0.5 for lost in sm["lost"]])
        dx.errorbar(x, sm["delta"], yerr=DROP_SE * sm["delta_se"], fmt="none", ecolor="black", capsize=2, lw=1)
        dx.axhline(0, color="black", lw=0.8)
        dx.set_ylabel(f"end − start ({part['metric'].iloc[0]})")
        dx.set_title(f"change ± {DROP_SE:g} SE (paired); red edge: lost", fontsize=9)
        dx.set_xticks(x)
        dx.set_xticklabels([_short(r) for r in runs], rotation=35, ha="right", fontsize=8)
        dx.set_xlim(-0.6, len(runs) - 0.4)
    fig.suptitle("\n".join(textwrap.fill(line, width=int(15 * width)) for line in title.splitlines()), fontsize=9)
    fig.tight_layout()
    return fig


def _short(run: str) -> str:
    return run.split("-from-")[0]


def record(table: pd.DataFrame, summary: pd.DataFrame) -> dict:
    """The notebook's key numbers (no per-item scores)."""
    keep = ["run", "stage", "data", "position", "step", "task", "metric", "value", "stderr", "n", "chance"]
    return {"results": table[keep].to_dict("records"), "summary": summary.to_dict("records"),
            "verdict": verdict(summary), "evaluated_now": int((~table["cached"]).sum()),
            "evaluation_seconds": float(table.loc[~table["cached"], "seconds"].sum())}


__all__ = ["PAPER_TASKS", "PAPER_STATEMENT", "capability_table", "stage_summary", "verdict", "figure", "budget_note"]
