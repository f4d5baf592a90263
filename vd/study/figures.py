"""The study's figure styles (seaborn): stance trajectories with CI bands, drift tables, profiles and
value gaps. Every function returns the matplotlib Figure; `save` writes it as PNG and PDF.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

if "ipykernel" not in sys.modules:  # headless scripts and CI; a notebook keeps its inline backend (shows figures)
    matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.container import BarContainer  # noqa: E402

from vd.core.stances import STANCES, TOPICS  # noqa: E402
from vd.study.resolved import eta_where_resolved, resolution_text  # noqa: E402

STANCE_COLORS = {"support": "#1b9e77", "neutral": "#7570b3", "oppose": "#d95f02"}
sns.set_theme(context="paper", style="whitegrid", font_scale=1.0)


def topic_label(topic: str) -> str:
    return TOPICS.get(topic, "Overall (mean over topics, ours)" if topic == "overall" else topic)


def save(fig, out_dir: str | Path, name: str) -> list[Path]:
    """Write `name`.png (150 dpi) and `name`.pdf into `out_dir`; returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    return paths


def _resolution(drift: pd.DataFrame | None) -> dict:
    """{topic: smallest resolvable |M|, NaN where unknown} from a drift table's `resolution` column (empty
    without one)."""
    if drift is None or "resolution" not in drift:
        return {}
    return dict(drift.groupby("topic")["resolution"].max().items())


def _with_resolution(topic: str, res: dict) -> str:
    """A topic's label with its resolution: "immigration ±0.12", "immigration (resolution unknown)"."""
    if topic not in res:
        return topic_label(topic)
    r = res[topic]
    return topic_label(topic).split(" (")[0] + (" (resolution unknown)" if pd.isna(r) else f" {resolution_text(r)}")


def trajectories(profile: pd.DataFrame, title: str, topics=None, ncols: int = 4, drift: pd.DataFrame | None = None):
    """One panel per topic: p(stance) against the fraction of the stage's training, with 95% CI bands.

    drift: the run's drift table; each panel's title then states the topic's resolution (±r: the smallest
    |M| the probe budget resolves there, docs/method.md §6)."""
    topics = [t for t in (topics or [*TOPICS, "overall"]) if t in set(profile["topic"])]
    res = _resolution(drift)
    nrows = -(-len(topics) // ncols)
    # constrained layout keeps the title's lines (the budget's resolution among them) off the axes
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.5 * nrows + 0.6), sharex=True, sharey=True,
                             squeeze=False, layout="constrained")
    for ax, topic in zip(axes.flat, topics):
        part = profile[profile["topic"] == topic]
        for stance in STANCES:
            line = part[part["stance"] == stance].sort_values("fraction")
            color = STANCE_COLORS[stance]
            ax.plot(line["fraction"], line["p"], marker="o", markersize=2.5, color=color, label=stance)
            ax.fill_between(line["fraction"], line["ci_low"], line["ci_high"], color=color, alpha=0.2, linewidth=0)
        ax.set_title(_with_resolution(topic, res), fontsize=9)
        ax.set_ylim(0, 1)
    for ax in axes.flat[len(topics):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("fraction of stage's training steps")
    for ax in axes[:, 0]:
        ax.set_ylabel("p(stance)")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper right", ncol=3, frameon=False,
               title="stance (band: 95% bootstrap CI)" + ("\n±: smallest resolvable |M|" if res else ""))
    fig.suptitle(title, x=0.01, ha="left", fontsize=11)
    return fig


def drift_heatmap(drift: pd.DataFrame, title: str, reading: str = "extremum95", bound: float | None = None):
    """Two heatmaps side by side: signed drift magnitude M and drift time η per topic × stance.

    Each topic's label carries its resolution (±r, the smallest |M| the probe budget resolves there,
    docs/method.md §6), and an M whose 95% CI covers 0 is shown in parentheses. η is blank where it is
    undefined (M = 0, no data), where M's CI covers 0 (no resolved drift: η would time noise) or, under
    ci95, not significant.
    bound: the colour scale of M is ±bound (default: the largest |M|); a fixed bound keeps heatmaps of
    different stages comparable (a small M must not look as strong as a large one)."""
    part = drift[drift["eta_reading"] == reading]
    order = [t for t in [*TOPICS, "overall"] if t in set(part["topic"])]
    fig, (ax_m, ax_eta) = plt.subplots(1, 2, figsize=(9.5, 0.35 * len(order) + 2.0), layout="constrained")
    m = part.pivot(index="topic", columns="stance", values="M").loc[order, list(STANCES)]
    eta = part.pivot(index="topic", columns="stance", values="eta").loc[order, list(STANCES)]
    annot = m.map(lambda v: f"{v:.2f}")
    if {"M_ci_low", "M_ci_high"} <= set(part.columns):
        lo, hi = (part.pivot(index="topic", columns="stance", values=c).loc[order, list(STANCES)]
                  for c in ("M_ci_low", "M_ci_high"))
        annot = annot.where(~((lo <= 0) & (hi >= 0)), "(" + annot + ")")
        eta = pd.DataFrame(eta_where_resolved(eta, m, lo, hi), index=eta.index, columns=eta.columns)
    res = _resolution(part)
    labels = [_with_resolution(t, res) for t in order]
    bound = bound or max(0.05, float(m.abs().max().max()))
    sns.heatmap(m, ax=ax_m, annot=annot.to_numpy(), fmt="", cmap="RdBu_r", vmin=-bound, vmax=bound,
                yticklabels=labels, cbar_kws={"label": "M (end − start)"})
    sns.heatmap(eta, ax=ax_eta, annot=True, fmt=".2f", cmap="viridis_r", vmin=0, vmax=1, yticklabels=False,
                cbar_kws={"label": f"η ({reading}); blank: no resolved drift"})
    ax_eta.grid(False)  # no grid line through the blank (undefined) cells
    ax_m.set_title("drift magnitude M\n(±r: smallest resolvable |M|; (M): CI covers 0)", fontsize=9)
    ax_eta.set_title("drift time η (fraction of steps)", fontsize=9)
    for ax in (ax_m, ax_eta):
        ax.set_xlabel("stance")
        ax.set_ylabel("")
    fig.suptitle(title, x=0.01, ha="left", fontsize=11)
    return fig


def profiles_bar(profiles: dict[str, pd.DataFrame], title: str, step: str = "last"):
    """Stacked stance shares per topic for several models (e.g. WildChat- vs Alpaca-SFT), at a step."""
    rows = []
    for name, profile in profiles.items():
        at = profile["step"].max() if step == "last" else profile["step"].min()
        rows.append(profile[profile["step"] == at].assign(model=name))
    data = pd.concat(rows)
    order = [t for t in [*TOPICS, "overall"] if t in set(data["topic"])]
    fig, axes = plt.subplots(1, len(profiles), figsize=(4.2 * len(profiles), 0.3 * len(order) + 1.5), sharey=True,
                             squeeze=False, layout="constrained")
    for ax, (name, part) in zip(axes[0], data.groupby("model", sort=False)):
        wide = part.pivot(index="topic", columns="stance", values="p").loc[order, list(STANCES)]
        wide.index = [topic_label(t).split(" (")[0] for t in order]
        wide.plot.barh(stacked=True, ax=ax, color=[STANCE_COLORS[s] for s in STANCES], width=0.8, legend=False)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_xlabel("share of stance probability")
        ax.set_title(name, fontsize=10)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper right", ncol=3, frameon=False)
    fig.suptitle(title, x=0.01, ha="left", fontsize=11)
    return fig


def value_gap_bars(gaps: pd.DataFrame, title: str):
    """Overall value gap (chosen − rejected) per dataset and stance, with 95% CIs.

    `gaps`: rows of vd.score.metrics.value_gap output with an added `dataset` column.
    """
    part = gaps[gaps["topic"] == "overall"]
    datasets = list(dict.fromkeys(part["dataset"]))
    fig, ax = plt.subplots(figsize=(1.6 * len(datasets) + 2.5, 3.2))
    width = 0.8 / len(STANCES)
    for k, stance in enumerate(STANCES):
        rows = part[part["stance"] == stance].set_index("dataset").loc[datasets]
        xs = [i + (k - 1) * width for i in range(len(datasets))]
        ax.bar(xs, rows["gap"], width=width, color=STANCE_COLORS[stance], label=stance,
               yerr=[rows["gap"] - rows["ci_low"], rows["ci_high"] - rows["gap"]], capsize=2)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(datasets)), datasets)
    ax.set_ylabel("value gap: p(chosen) − p(rejected)")
    ax.legend(title="stance", frameon=False, fontsize=8)
    ax.set_title(title, loc="left", fontsize=11)
    fig.tight_layout()
    return fig



# --- the figures of notebooks 00, 03, 04, 05 ---------------------------------------------------------


def probe_figure(counts: pd.DataFrame, title: str):
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
def gap_figure(gaps: pd.DataFrame, title: str):
    """plots.value_gap_bars with each bar's value written on it (a zero gap is a visible 0.00), on [-1, 1]."""
    fig = value_gap_bars(gaps, title)
    ax = fig.axes[0]
    fig.set_size_inches(max(8.0, 1.9 * gaps["dataset"].nunique() + 3.0), 3.8)
    for container in ax.containers:
        if isinstance(container, BarContainer):
            ax.bar_label(container, fmt="%+.2f", fontsize=7, padding=2)
    ax.set_ylim(-1.05, 1.05)
    ax.legend(title="stance", frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def prior_split_figure(split: pd.DataFrame, title: str):
    """M of the chosen stance against its prior after SFT, one point per topic and setting; the prior is
    high, low, tied (within the SFT run's resolution) or unknown (no resolution): vd.study.value_gaps.prior_split."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    markers = {"support": "^", "oppose": "v"}
    colors = {"high": "#d62728", "low": "#1f77b4", "tied": "#7f7f7f", "unknown": "#bcbd22"}
    rng = np.random.default_rng(0)  # a little horizontal jitter: the tiny world's values coincide often
    for (setting, prior), part in split[split["topic"] != "overall"].groupby(["setting", "prior"]):
        x = part["prior_chosen"] + rng.uniform(-0.012, 0.012, len(part))
        ax.scatter(x, part["M_chosen"], marker=markers[setting], color=colors.get(prior, "black"), s=40, alpha=0.6,
                   label=f"chosen = {setting}, {prior} prior (one point per topic)")
    overall = split[split["topic"] == "overall"]
    for _, r in overall.iterrows():
        ax.scatter(r["prior_chosen"], r["M_chosen"], marker=markers[r["setting"]], s=160, facecolor="none",
                   edgecolor="black", linewidth=1.5)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("prior of the chosen stance: its p at the end of SFT (high = above the other stance's)")
    ax.set_ylabel("M of the chosen stance (end − start)")
    low, high = ax.get_ylim()
    ax.set_ylim(min(low, -0.1), max(high, 0.3))
    annotate_points(ax, [(r["prior_chosen"], r["M_chosen"], f"overall ({r['setting']}, {r['prior']} prior)")
                         for _, r in overall.iterrows()])
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, frameon=False, loc="upper center")
    ax.set_title(title, loc="left", fontsize=9)
    fig.tight_layout()
    return fig


def annotate_points(ax, points: list[tuple[float, float, str]], near: float = 0.04) -> list:
    """Label points (x, y, text) beside them; points closer than `near` (a fraction of the axes' spans,
    after the limits are set) share one label, their texts joined, so that coincident points never print
    their labels over each other. Returns the annotations."""
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    groups: list[list[tuple[float, float, str]]] = []
    for x, y, text in points:
        for group in groups:
            gx, gy, _ = group[0]
            if abs(x - gx) <= near * (x1 - x0) and abs(y - gy) <= near * (y1 - y0):
                group.append((x, y, text))
                break
        else:
            groups.append([(x, y, text)])
    return [ax.annotate("\n".join(t for _, _, t in group), (group[0][0], group[0][1]), textcoords="offset points",
                        xytext=(8, -3), fontsize=8, va="top") for group in groups]


def distribution_figure(dist: pd.DataFrame, title: str):
    """Stacked stance shares of chosen and rejected answers, per dataset."""
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


def ablation_figure(table: pd.DataFrame, title: str):
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
