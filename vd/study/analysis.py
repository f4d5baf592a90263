"""The analyses behind notebooks 00-05, one section per notebook (06, the paper's tables: vd.study.paper).

Each function takes runs (vd.study.notebook.RunResult) or a Study and returns tables (DataFrames) or figures;
the notebooks only call them, show the result and save it. Choices the paper does not make for us are
marked "ours" (thresholds of the agree/differ verdicts, the topic assignment of real preference pairs).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from vd.core import registry
from vd.core.config import ConfigError, check_choice
from vd.score import metrics as vdrift
from vd.train.data import DataError, load_dataset
from vd.core.stances import STANCES, TOPICS

OPPOSITE = {"support": "oppose", "oppose": "support"}
M_SCALE = 0.5  # every M heatmap on the same colour scale (±0.5), so small and large drifts compare


def _topic_name(t: str) -> str:
    return "Overall (mean over topics)" if t == "overall" else TOPICS.get(t, t)


# ============================================================================ 00: probes and judge
def probe_counts(cfg) -> pd.DataFrame:
    """Per topic and direction: probes in the set and probes used at this size's budget."""
    from vd.data.probes import load_probes

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
    from vd.data.probes import load_probes

    used = load_probes(cfg.probes.file, prompts_per_topic=cfg.probes.prompts_per_topic, seed=cfg.seed)
    picks = []
    for _, rows in used.groupby("topic", sort=False):
        picks.append(rows.sort_values("direction", ascending=False).groupby("direction").head(1).head(per_topic))
    return pd.concat(picks)[["id", "topic", "direction", "question", "position"]].reset_index(drop=True)


def probe_figure(counts: pd.DataFrame, title: str):
    import matplotlib.pyplot as plt

    from vd.study.figures import topic_label

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True, layout="constrained")
    colors = {"pro": "#4c72b0", "contra": "#c44e52"}
    for ax, col, what in zip(axes, ("in_set", "used"), ("the probe set (V-PRISM-style, ours)", "used at this budget")):
        wide = counts.pivot(index="topic", columns="direction", values=col).loc[list(TOPICS), ["pro", "contra"]]
        wide.index = [topic_label(t) for t in wide.index]
        wide.plot.barh(stacked=True, ax=ax, color=[colors["pro"], colors["contra"]], width=0.75, legend=False)
        ax.invert_yaxis()
        ax.set_title(f"{what}: {int(wide.values.sum())} prompts", fontsize=10)
        ax.set_xlabel("prompts")
    handles, _ = axes[0].get_legend_handles_labels()
    fig.legend(handles, ["pro: supporting moves toward the topic's axis (vd.data.probes.TOPIC_AXES)",
                         "contra: supporting moves away from it"], loc="outside lower center", ncol=2, frameon=False)
    fig.suptitle(title, x=0.01, ha="left", fontsize=10)
    return fig


# Hand-written answers to two probes, one per kind of stance, including a refusal (neutral by the
# paper's rule). Ours; worded so that both the lexicon judge and an LLM judge can read them.
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
    from vd.judge import JudgeItem, JudgeUnavailable, argmax_label, make_judge
    from vd.data.probes import load_probes
    from vd.world import uses_world

    try:
        judge = make_judge(cfg.judge, tiny_world=uses_world(cfg))
    except JudgeUnavailable as e:  # e.g. no OPENAI_API_KEY: say so, do not fail
        return None, f"judge {cfg.judge.kind!r} not available here: {e}"
    probes = load_probes(cfg.probes.file).set_index("id")
    items = [JudgeItem(probes.at[pid, "question"], answer, probes.at[pid, "topic"]) for pid, _, answer in JUDGE_EXAMPLES]
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
    numeric (CSV: topic, resolution, PER_STANCE columns) and formatted (LaTeX: ±r, M [95% CI], eta or --/n.s.)."""
    d = run.drift_with_ci(reading)
    wide = d.pivot(index="topic", columns="stance", values=list(PER_STANCE))
    order = [t for t in [*TOPICS, "overall"] if t in wide.index]
    num = pd.DataFrame({"topic": order, "resolution": d.groupby("topic")["resolution"].max().loc[order].to_numpy()})
    fmt = pd.DataFrame({"topic": [_topic_name(t) for t in order],
                        "resolvable |M|": ["--" if math.isnan(r) else f"±{r:.2f}" for r in num["resolution"]]})
    for s in STANCES:
        for col, name in PER_STANCE.items():
            num[name.format(s)] = wide[(col, s)].loc[order].to_numpy()
        fmt[f"M {s} [95% CI]"] = [f"{m:+.2f} [{lo:+.2f}, {hi:+.2f}]" for m, lo, hi in
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


# ============================================================================ 03: value gap, prior split
def synthetic_gap(run) -> pd.DataFrame:
    """Value gap (chosen − rejected, docs/method.md §5) of the synthetic pairs a run trained on."""
    judged = pd.read_csv(run.run_dir / "synthetic_judged.csv")
    return pair_gap(judged)


def synthetic_gaps(runs: dict) -> pd.DataFrame:
    """The value gaps of the synthetic pairs of several runs ({setting: run}), a `dataset` column each."""
    return pd.concat([synthetic_gap(r).assign(dataset=f"synthetic-{s}") for s, r in runs.items()],
                     ignore_index=True)


def dataset_names(study, text: str = "") -> list[str]:
    """The preference datasets notebook 04 examines: `text` ("a,b"), or every configured one and both
    synthetic sets; a name the study cannot build is a clear error."""
    known = [*study.cfg.data.preference, *registry.SYNTHETIC_DATA]
    names = [n.strip() for n in text.split(",") if n.strip()] or known
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"parameter datasets: {unknown[0]!r} is not a preference dataset of size "
                          f"{study.cfg.size!r}; expected some of {', '.join(known)}")
    return names


def pair_gap(judged: pd.DataFrame, n_boot: int = 1000) -> pd.DataFrame:
    """vd.score.metrics.value_gap of a table with topic, chosen_p_<stance>, rejected_p_<stance> columns."""
    chosen = judged[["topic"]].assign(**{f"p_{s}": judged[f"chosen_p_{s}"] for s in STANCES})
    rejected = judged[["topic"]].assign(**{f"p_{s}": judged[f"rejected_p_{s}"] for s in STANCES})
    return vdrift.value_gap(chosen.reset_index(drop=True), rejected.reset_index(drop=True), n_boot=n_boot)


def gap_note(study, gaps: pd.DataFrame) -> str:
    """Second title line of a value-gap figure: the judge and the pairs (no probes are involved)."""
    j = study.cfg.judge
    judge = "lexicon judge" if j.kind == "lexicon" else f"{j.kind} judge {j.model} (prompt {j.prompt_version})"
    n = gaps[gaps["topic"] == "overall"].groupby("dataset", sort=False)["n_pairs"].first()
    return f"{judge}; pairs: " + ", ".join(f"{d} {k}" for d, k in n.items())


def gap_figure(gaps: pd.DataFrame, title: str):
    """plots.value_gap_bars with each bar's value written on it (a zero gap is a visible 0.00), on [-1, 1]."""
    from matplotlib.container import BarContainer

    from vd.study import figures as plots

    fig = plots.value_gap_bars(gaps, title)
    ax = fig.axes[0]
    fig.set_size_inches(max(8.0, 1.9 * gaps["dataset"].nunique() + 3.0), 3.8)
    for container in ax.containers:
        if isinstance(container, BarContainer):
            ax.bar_label(container, fmt="%+.2f", fontsize=7, padding=2)
    ax.set_ylim(-1.05, 1.05)
    ax.legend(title="stance", frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def prior_split(sft, runs: dict) -> pd.DataFrame:
    """Per synthetic setting and topic: the chosen stance's prior after SFT, high or low, and its drift.

    The prior of a stance is its value in the SFT model's final profile (per topic, and `overall`);
    it is "high" if it is the larger of support and oppose there, else "low" (ours).
    `runs`: {"support": RunResult of the support-aligned run, "oppose": ...}.
    """
    end = sft.profile[sft.profile["step"] == sft.profile["step"].max()].set_index(["topic", "stance"])["p"]
    rows = []
    for setting, run in runs.items():
        chosen, other = setting, OPPOSITE[setting]
        for topic in [*TOPICS, "overall"]:
            if (topic, chosen) not in end.index:
                continue
            prior, prior_other = float(end[(topic, chosen)]), float(end[(topic, other)])
            rows.append({"setting": setting, "topic": topic, "chosen": chosen, "prior_chosen": prior,
                         "prior_rejected": prior_other, "prior": "high" if prior > prior_other else "low",
                         "M_chosen": run.value(chosen, topic), "eta_chosen": run.value(chosen, topic, "eta"),
                         "M_rejected": run.value(other, topic), "M_neutral": run.value("neutral", topic)})
    return pd.DataFrame(rows)


def prior_summary(split: pd.DataFrame) -> pd.DataFrame:
    """Mean M of the chosen stance over topics, by prior group (and the `overall` rows as they are)."""
    topics = split[split["topic"] != "overall"]
    out = topics.groupby("prior").agg(n_topic_settings=("M_chosen", "size"), mean_M_chosen=("M_chosen", "mean"),
                                      mean_eta_chosen=("eta_chosen", "mean")).reset_index()
    return out


def prior_split_figure(split: pd.DataFrame, title: str):
    """M of the chosen stance against its prior after SFT, one point per topic and setting."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    markers = {"support": "^", "oppose": "v"}
    colors = {"high": "#d62728", "low": "#1f77b4"}
    rng = np.random.default_rng(0)  # a little horizontal jitter: the tiny world's values coincide often
    for (setting, prior), part in split[split["topic"] != "overall"].groupby(["setting", "prior"]):
        x = part["prior_chosen"] + rng.uniform(-0.012, 0.012, len(part))
        ax.scatter(x, part["M_chosen"], marker=markers[setting], color=colors[prior], s=40, alpha=0.6,
                   label=f"chosen = {setting}, {prior} prior (one point per topic)")
    for _, r in split[split["topic"] == "overall"].iterrows():
        ax.scatter(r["prior_chosen"], r["M_chosen"], marker=markers[r["setting"]], s=160, facecolor="none",
                   edgecolor="black", linewidth=1.5)
        ax.annotate(f"overall ({r['setting']})", (r["prior_chosen"], r["M_chosen"]), textcoords="offset points",
                    xytext=(8, -3), fontsize=8)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("prior of the chosen stance: its p at the end of SFT (high = above the other stance's)")
    ax.set_ylabel("M of the chosen stance (end − start)")
    low, high = ax.get_ylim()
    ax.set_ylim(min(low, -0.1), max(high, 0.3))
    ax.legend(fontsize=7, frameon=False, loc="upper center")
    ax.set_title(title, loc="left", fontsize=9)
    fig.tight_layout()
    return fig


# ============================================================================ 04: dataset value gaps
def assign_topic(text: str) -> str | None:
    """The topic whose keywords occur most often in `text` (ours; for datasets without topic labels)."""
    from vd.data.probes import topic_keyword_hits

    hits = {t: len(topic_keyword_hits(text, t)) for t in TOPICS}
    best = max(hits, key=hits.get)
    return best if hits[best] else None


def preference_pairs(study, name: str, max_pairs: int = 0) -> pd.DataFrame:
    """(topic, question, chosen, rejected) texts of a standard preference dataset, read by its hub loader: the
    pairs whose prompt mentions a topic's keywords (assign_topic), its value-laden part (every tiny-world pair:
    their prompts carry their topic's keywords by construction)."""
    raw, rows = load_dataset(study.cfg, "preference", name).rows, []
    for r in raw:
        question = " ".join(m["content"] for m in r["prompt"] if m["role"] == "user")
        if topic := assign_topic(question):
            rows.append({"topic": topic, "question": question, "chosen": r["chosen"][-1]["content"],
                         "rejected": r["rejected"][-1]["content"]})
        if max_pairs and len(rows) >= max_pairs:
            break
    if not rows:  # nothing to judge: say why rather than fail on an empty table
        raise DataError(f"data.preference.{name}: none of its {len(raw)} pairs has a prompt that mentions a topic's "
                        "keywords (vd.core.stances.TOPIC_KEYWORDS), so no pair can be given a topic")
    return pd.DataFrame(rows)


def judge_pairs(study, pairs: pd.DataFrame) -> pd.DataFrame:
    """Judge chosen and rejected answers with the study's judge, through the scoring cache
    (vd.judge.CachedJudge); a failed judgment reads as NaN."""
    from vd.judge import CachedJudge, JudgeItem, make_judge
    from vd.score.scoring import default_store
    from vd.world import uses_world

    judge = make_judge(study.cfg.judge, tiny_world=uses_world(study.cfg))
    items = [JudgeItem(q, a, t) for side in ("chosen", "rejected")
             for q, a, t in zip(pairs["question"], pairs[side], pairs["topic"])]
    with default_store(study.cfg, study.runs_dir) as store:
        results = CachedJudge(judge, store).judge(items)
    out = pairs[["topic"]].copy()
    for n, side in enumerate(("chosen", "rejected")):
        side_results = results[n * len(pairs):(n + 1) * len(pairs)]
        for k, s in enumerate(STANCES):
            out[f"{side}_p_{s}"] = [r.p[k] for r in side_results]
    return out


def synthetic_judged(study, setting: str) -> pd.DataFrame:
    """The judged synthetic pairs of a setting: from any run trained on them, else built (not trained)."""
    for path in sorted((study.runs_dir / study.cfg.size).glob(f"*-synthetic-{setting}-from-*/synthetic_judged.csv")):
        return pd.read_csv(path)
    from vd.data.synthetic import build_synthetic

    judged, syn, j = pd.DataFrame(build_synthetic(study.cfg, setting)[1]), study.cfg.data.synthetic, study.cfg.judge
    if judged.empty:
        raise DataError(f"synthetic-{setting}: no pair passed the stance check: judge {j.kind!r} (model {j.model!r}) did "
                        f"not confirm, with p >= data.synthetic.min_confidence ({syn.min_confidence}), the stances that "
                        f"generator {syn.generator!r} (model {syn.generator_model!r}) was told to write")
    return judged


def dataset_gaps(study, max_pairs: int = 0, datasets: str | list[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Value gaps (vd.score.metrics.value_gap rows plus `dataset`) of the `datasets` named (data.preference entries
    and synthetic-<setting>, a list or comma-separated; none: every data.preference entry and both synthetic sets),
    the only ones read, built and judged; and their stance distributions (dataset, side, stance, p, n_pairs)."""
    choices = (*study.cfg.data.preference, *registry.SYNTHETIC_DATA)
    names = [d.strip() for d in datasets.split(",") if d.strip()] if isinstance(datasets, str) else datasets
    judged = {name: synthetic_judged(study, name.split("-", 1)[1]) if name in registry.SYNTHETIC_DATA else
              judge_pairs(study, preference_pairs(study, name, max_pairs))
              for name in dict.fromkeys(check_choice("datasets", d, choices) for d in names or choices)}
    gaps = [pair_gap(j).assign(dataset=name) for name, j in judged.items()]
    dist = [{"dataset": name, "side": side, "stance": s, "p": float(j[f"{side}_p_{s}"].mean()), "n_pairs": len(j)}
            for name, j in judged.items() for side in ("chosen", "rejected") for s in STANCES]
    return pd.concat(gaps, ignore_index=True), pd.DataFrame(dist)


def distribution_figure(dist: pd.DataFrame, title: str):
    """Stacked stance shares of chosen and rejected answers, per dataset."""
    import matplotlib.pyplot as plt

    from vd.study.figures import STANCE_COLORS

    datasets = list(dict.fromkeys(dist["dataset"]))
    fig, ax = plt.subplots(figsize=(9.5, 0.55 * 2 * len(datasets) + 1.6), layout="constrained")
    labels = []
    for d in datasets:
        for side in ("chosen", "rejected"):
            labels.append(f"{d}: {side}")
    y = np.arange(len(labels))
    left = np.zeros(len(labels))
    for s in STANCES:
        vals = [float(dist[(dist.dataset == d) & (dist.side == side) & (dist.stance == s)]["p"].iloc[0])
                for d in datasets for side in ("chosen", "rejected")]
        ax.barh(y, vals, left=left, color=STANCE_COLORS[s], label=s, height=0.8)
        left += vals
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("mean judged p(stance)")
    ax.legend(ncol=3, frameon=False, loc="lower center", bbox_to_anchor=(0.5, 1.0), fontsize=8)
    fig.suptitle(title, x=0.01, ha="left", fontsize=9)
    return fig


# ============================================================================ 05: ablations
# Ours: three values per knob, as multiples of the size's configured value (so the sweep scales
# with whatever each size uses): PPO's KL coefficient, DPO's beta, SimPO's gamma (TRL's simpo_gamma).
ABLATIONS = {"ppo": ("ppo.kl_coef", (0.2, 1.0, 5.0)), "dpo": ("dpo.beta", (0.5, 1.0, 5.0)),
             "simpo": ("simpo.gamma", (0.0, 1.0, 2.0))}


def ablation_values(cfg) -> dict[str, tuple[str, list[float]]]:
    return {algo: (key, [round(cfg.get(key) * f, 6) for f in factors]) for algo, (key, factors) in ABLATIONS.items()}


def ablations(study, data: str = "synthetic-support") -> pd.DataFrame:
    """Train (or reuse) and score each ablation run: overall M (95% CI), eta, resolution (docs/method.md §6)."""
    chosen = data.split("-", 1)[1] if data.startswith("synthetic-") else "support"
    rows = []
    for algo, (key, values) in ablation_values(study.cfg).items():
        default = study.cfg.get(key)
        for v in values:
            run = study.preference(algo, data, overrides={key: v})
            d = run.drift_with_ci()
            d = d[d["topic"] == "overall"].set_index("stance")
            rows.append({"algo": algo, "param": key.split(".")[-1], "value": v, "default": v == default,
                         "run": run.name, "chosen": chosen, "resolution": float(d["resolution"].max()),
                         **{name.format(s): d.at[s, col] for col, name in PER_STANCE.items() for s in STANCES}})
    return pd.DataFrame(rows)


def ablation_figure(table: pd.DataFrame, title: str):
    import matplotlib.pyplot as plt

    from vd.study.figures import STANCE_COLORS

    algos = list(dict.fromkeys(table["algo"]))
    fig, axes = plt.subplots(1, len(algos), figsize=(4.0 * len(algos) + 1.2, 3.4), sharey=True, squeeze=False,
                             layout="constrained")
    for ax, algo in zip(axes[0], algos):
        part = table[table["algo"] == algo].reset_index(drop=True)
        x = np.arange(len(part))
        for k, s in enumerate(STANCES):
            ax.errorbar(x + (k - 1) * 0.12, part[f"M_{s}"],
                        yerr=[part[f"M_{s}"] - part[f"M_{s}_ci_low"], part[f"M_{s}_ci_high"] - part[f"M_{s}"]],
                        fmt="o-", color=STANCE_COLORS[s], capsize=2, markersize=4, label=s)
        ax.set_xticks(x, [f"{v:g}" + (" (default)" if d else "") for v, d in zip(part["value"], part["default"])],
                      fontsize=8)
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.set_xlabel(f"{algo}: {part['param'].iloc[0]}")
        ax.set_title(algo.upper() if algo != "simpo" else "SimPO", fontsize=10)
    axes[0, 0].set_ylabel("M, overall profile (end − start)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, title="stance (95% CI)", fontsize=8, frameon=False, loc="outside right center")
    fig.suptitle(title, x=0.01, ha="left", fontsize=9)
    return fig
