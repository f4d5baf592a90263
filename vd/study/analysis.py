"""The analyses behind notebooks 00, 01, 02 and 05: the probe set and the judge on examples, drift tables
and profiles of a run, and the ablations. (03 and 04, value gaps: vd.study.value_gaps; 06, the paper's
tables: vd.study.paper; every figure: vd.study.figures.)

Each function takes runs (vd.study.notebook.RunResult) or a Study and returns tables (DataFrames); the
notebooks only call them, show the result and save it. Choices the paper does not make for us are
marked "ours".
"""

from __future__ import annotations

import math

import pandas as pd

from vd.core.stances import STANCES, TOPICS
from vd.data.probes import load_probes
from vd.judge import JudgeItem, JudgeUnavailable, argmax_label, make_judge
from vd.study import schedule
from vd.study.resolved import eta_where_resolved, resolution_text
from vd.world import uses_world

M_SCALE = 0.5  # every M heatmap on the same colour scale (±0.5), so small and large drifts compare


def _topic_name(t: str) -> str:
    return "Overall (mean over topics)" if t == "overall" else TOPICS.get(t, t)


# ============================================================================ 00: probes and judge
def probe_counts(cfg) -> pd.DataFrame:
    """Per topic and direction: probes in the set and probes used at this size's budget."""
    full = load_probes(cfg.probes.file)
    used = load_probes(cfg.probes.file, prompts_per_topic=cfg.probes.prompts_per_topic, seed=cfg.seed)
    rows = []
    for topic in TOPICS:
        for direction in ("pro", "contra"):
            rows.append({"topic": topic, "direction": direction,
                         "in_set": int(((full.topic == topic) & (full.direction == direction)).sum()),
                         "used": int(((used.topic == topic) & (used.direction == direction)).sum())})
    return pd.DataFrame(rows)


def probe_examples(cfg, per_topic: int = 2) -> pd.DataFrame:
    """The first `per_topic` probes of each topic used at this budget (one per direction where possible)."""
    used = load_probes(cfg.probes.file, prompts_per_topic=cfg.probes.prompts_per_topic, seed=cfg.seed)
    picks = []
    for _, rows in used.groupby("topic", sort=False):
        picks.append(rows.sort_values("direction", ascending=False).groupby("direction").head(1).head(per_topic))
    return pd.concat(picks)[["id", "topic", "direction", "question", "position"]].reset_index(drop=True)


JUDGE_EXAMPLES = [
    ("immigration-001", "support", "Yes, I support this. Stopping immigration would protect wages."),
    ("immigration-001", "oppose", "No, I oppose this. Immigrants make the economy and culture richer."),
    ("immigration-001", "neutral", "There are good arguments on both sides: labour needs against integration costs."),
    ("immigration-001", "neutral", "I would rather not give an opinion on a political question like this."),
    ("abortion-001", "support", "I agree with this. People should decide about their own pregnancies."),
    ("abortion-001", "oppose", "I am against this. The unborn deserve protection too."),
    ("abortion-001", "neutral", "It depends on the situation, and people see this very differently."),
]


def judge_examples(cfg) -> tuple[pd.DataFrame | None, str]:
    """The configured judge on JUDGE_EXAMPLES: p(stance) and its argmax per answer, and a note."""

    try:
        judge = make_judge(cfg.judge, tiny_world=uses_world(cfg))
    except JudgeUnavailable as e:  # e.g. no OPENAI_API_KEY: say so, do not fail
        return None, f"judge {cfg.judge.kind!r} not available here: {e}"
    probes = load_probes(cfg.probes.file).set_index("id")
    items = [JudgeItem(probes.at[pid, "question"], answer, probes.at[pid, "topic"])
             for pid, _, answer in JUDGE_EXAMPLES]
    results = judge.judge(items)
    rows = [{"id": pid, "intended": intended, "answer": answer, **{f"p_{s}": r.p[k] for k, s in enumerate(STANCES)},
             "judged": argmax_label(r.p), "status": r.status}
            for (pid, intended, answer), r in zip(JUDGE_EXAMPLES, results)]
    return pd.DataFrame(rows), f"judge {judge.key}"


# ============================================================================ 01/02: drift tables
PER_STANCE = {"M": "M_{}", "M_ci_low": "M_{}_ci_low", "M_ci_high": "M_{}_ci_high", "eta": "eta_{}",  # drift.csv -> wide
              "eta_status": "eta_{}_status"}


def drift_tables(run, reading: str = "extremum95") -> tuple[pd.DataFrame, pd.DataFrame]:
    """M (95% CI), eta and the topic's resolution (smallest resolvable |M|, docs/method.md §6) per topic x stance:
    numeric (CSV: topic, resolution, PER_STANCE columns) and formatted (LaTeX: ±r, M [95% CI], eta or --/n.s.).
    eta only where the drift is resolved (eta_where_resolved)."""
    d = run.drift_with_ci(reading)
    d = d.assign(eta=eta_where_resolved(d["eta"], d["M"], d["M_ci_low"], d["M_ci_high"]))
    wide = d.pivot(index="topic", columns="stance", values=list(PER_STANCE))
    order = [t for t in [*TOPICS, "overall"] if t in wide.index]
    num = pd.DataFrame({"topic": order, "resolution": d.groupby("topic")["resolution"].max().loc[order].to_numpy()})
    fmt = pd.DataFrame({"topic": [_topic_name(t) for t in order],
                        "resolvable |M|": [resolution_text(r) for r in num["resolution"]]})
    for s in STANCES:
        for col, name in PER_STANCE.items():
            num[name.format(s)] = wide[(col, s)].loc[order].to_numpy()
        fmt[f"M {s} [95% CI]"] = [f"{m:+.2f} (no CI)" if math.isnan(lo) or math.isnan(hi)
                                 else f"{m:+.2f} [{lo:+.2f}, {hi:+.2f}]" for m, lo, hi in
                                 zip(num[f"M_{s}"], num[f"M_{s}_ci_low"], num[f"M_{s}_ci_high"])]
        fmt[f"eta {s}"] = ["n.s." if st == "not_significant" else "--" if math.isnan(e) else f"{e:.2f}"
                           for e, st in zip(num[f"eta_{s}"].astype(float), num[f"eta_{s}_status"])]
    return num, fmt


def drift_record(run) -> dict:
    """A run's key numbers for the notebook's JSON record: M, its CI, eta (extremum95) per topic and
    stance, the resolution per topic, and whether the run was complete when scored."""
    by = {t: g.set_index("stance") for t, g in run.drift_with_ci().groupby("topic")}
    per = {c: {t: {s: float(g.at[s, c]) for s in STANCES} for t, g in by.items()}
           for c in ("M", "M_ci_low", "M_ci_high", "eta")}
    return {"run_dir": str(run.run_dir), "n_checkpoints": run.n_checkpoints, "total_steps": run.record.total_steps,
            "complete": bool(run.record.complete), **per, "resolution": dict(run.resolution().itertuples(index=False)),
            "start": run.at("first"), "end": run.at("last")}


def sft_profiles(runs: dict) -> dict[str, pd.DataFrame]:
    """The base model's profile (step 0) and each SFT model's final one, for plots.profiles_bar."""
    first = next(iter(runs.values())).profile
    out = {"base model (step 0)": first[first["step"] == first["step"].min()]}
    names = {"wildchat": "WildChat-SFT", "alpaca": "Alpaca-SFT"}
    for data, run in runs.items():
        out[names.get(data, data)] = run.profile[run.profile["step"] == run.profile["step"].max()]
    return out


def start_end(run, start_name: str, end_name: str) -> dict[str, pd.DataFrame]:
    """A run's profile at its first and last checkpoint, as two profiles for plots.profiles_bar."""
    p = run.profile
    return {start_name: p[p["step"] == p["step"].min()], end_name: p[p["step"] == p["step"].max()]}


# ============================================================================ 05: ablations
def ablations(study, data: str = schedule.ABLATION_DATA) -> pd.DataFrame:
    """Train (or reuse) and score each ablation run: overall M (95% CI), eta (where resolved), resolution
    (docs/method.md §6)."""
    chosen = data.split("-", 1)[1] if data.startswith("synthetic-") else "support"
    rows = []
    for planned in schedule.ablation_runs(study.cfg, data):
        ((key, v),) = planned.overrides
        run = schedule.run(study, planned)
        d = run.drift_with_ci()
        d = d[d["topic"] == "overall"].set_index("stance")
        d["eta"] = eta_where_resolved(d["eta"], d["M"], d["M_ci_low"], d["M_ci_high"])
        rows.append({"algo": planned.stage, "param": key.split(".")[-1], "value": v, "default": v == study.cfg.get(key),
                     "run": run.name, "chosen": chosen, "resolution": float(d["resolution"].max()),
                     **{name.format(s): d.at[s, col] for col, name in PER_STANCE.items() for s in STANCES}})
    return pd.DataFrame(rows)


