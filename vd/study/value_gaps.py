"""Value gaps (notebooks 03 and 04; docs/method.md §5): of the synthetic pairs a run trained on and of every
preference dataset, the chosen stance's drift split by its prior after SFT, and which datasets notebook 04
examines. (Their figures: vd.study.figures.)

Real preference data carry no topic: a pair is given the topic whose keywords its prompt mentions most
(ours), and pairs that mention none are left out (they are not value-laden).
"""

from __future__ import annotations

import math

import pandas as pd

from vd.core import registry
from vd.core.config import ConfigError, check_choice
from vd.core.run import RunError
from vd.core.stances import STANCES, TOPICS, topic_keyword_hits
from vd.data.synthetic_set import PairSet
from vd.judge import CachedJudge, JudgeItem, make_judge
from vd.models.loading import load_model, load_tokenizer
from vd.score import metrics
from vd.score.policy_fit import policy_fit
from vd.score.scoring import default_store
from vd.study.resolved import eta_where_resolved
from vd.train.data import DataError, load_dataset
from vd.world import uses_world

OPPOSITE = {"support": "oppose", "oppose": "support"}


def synthetic_gap(run) -> pd.DataFrame:
    """Value gap (chosen − rejected, docs/method.md §5) of the synthetic pairs a run trained on: the stored set
    its run.json names, checked against the sha256 recorded there."""
    path = run.record.synthetic_pairs_path
    if path is None:
        raise RunError(f"{run.run_dir / 'run.json'}: names no synthetic pairs; this run did not train on a stored "
                       "synthetic set (retrain it: vd train ... --overwrite)")
    pairs = PairSet(path.parent).check()
    if pairs.sha256() != run.record.synthetic_sha256:
        raise RunError(f"{path}: not the file {run.name} trained on (its sha256 differs from run.json's); "
                       "retrain the run (--overwrite), or restore the pairs it trained on")
    return pair_gap(pairs.judged())


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
    return metrics.value_gap(chosen.reset_index(drop=True), rejected.reset_index(drop=True), n_boot=n_boot)


def gap_note(study, gaps: pd.DataFrame) -> str:
    """Second title line of a value-gap figure: the judge and the pairs (no probes are involved)."""
    j = study.cfg.judge
    judge = "lexicon judge" if j.kind == "lexicon" else f"{j.kind} judge {j.model} (prompt {j.prompt_version})"
    n = gaps[gaps["topic"] == "overall"].groupby("dataset", sort=False)["n_pairs"].first()
    return f"{judge}; pairs: " + ", ".join(f"{d} {k}" for d, k in n.items())


def prior_split(sft, runs: dict) -> pd.DataFrame:
    """Per synthetic setting and topic: the chosen stance's prior after SFT, high, low or tied, and its drift.

    The prior of a stance is its value in the SFT model's final profile (per topic, and `overall`);
    it is "high" if it is the larger of support and oppose there, "low" if the smaller, and "tied" where
    the two differ by no more than the SFT run's resolution there (`prior_resolution`, the smallest |M|
    its budget resolves, docs/method.md §6): a budget that cannot resolve the difference cannot rank
    them (ours), and "unknown" where that resolution is (no CI). eta_chosen is shown only where the chosen
    stance's drift is resolved.
    `runs`: {"support": RunResult of the support-aligned run, "oppose": ...}.
    """
    end = sft.profile[sft.profile["step"] == sft.profile["step"].max()].set_index(["topic", "stance"])["p"]
    res = dict(sft.resolution().itertuples(index=False))
    rows = []
    for setting, run in runs.items():
        chosen, other = setting, OPPOSITE[setting]
        drift = run.drift_with_ci().set_index(["topic", "stance"])
        for topic in [*TOPICS, "overall"]:
            if (topic, chosen) not in end.index:
                continue
            prior, prior_other = float(end[(topic, chosen)]), float(end[(topic, other)])
            m = drift.loc[(topic, chosen)]
            rows.append({"setting": setting, "topic": topic, "chosen": chosen, "prior_chosen": prior,
                         "prior_rejected": prior_other, "prior_resolution": res.get(topic, float("nan")),
                         "prior": prior_rank(prior - prior_other, res.get(topic, float("nan"))),
                         "M_chosen": run.value(chosen, topic),
                         "eta_chosen": float(eta_where_resolved(m["eta"], m["M"], m["M_ci_low"], m["M_ci_high"])),
                         "M_rejected": run.value(other, topic), "M_neutral": run.value("neutral", topic)})
    return pd.DataFrame(rows)


def prior_rank(difference: float, resolution: float) -> str:
    """"high" / "low" by the sign of prior_chosen − prior_rejected; "tied" within the resolution (or at 0);
    "unknown" where the resolution is (no CI): a budget that cannot estimate it cannot rank them either."""
    if difference == 0 or abs(difference) <= resolution:
        return "tied"
    if math.isnan(resolution):
        return "unknown"
    return "high" if difference > 0 else "low"


def prior_summary(split: pd.DataFrame) -> pd.DataFrame:
    """Mean M of the chosen stance over topics, by prior group (and the `overall` rows as they are)."""
    topics = split[split["topic"] != "overall"]
    out = topics.groupby("prior").agg(n_topic_settings=("M_chosen", "size"), mean_M_chosen=("M_chosen", "mean"),
                                      mean_eta_chosen=("eta_chosen", "mean")).reset_index()
    return out


def assign_topic(text: str) -> str | None:
    """The topic whose keywords occur most often in `text` (ours; for datasets without topic labels)."""
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
    """The judged synthetic pairs of a setting: the stored set its runs train on (built first if missing)."""
    return study.synthetic_pairs(setting)[1]


def dataset_gaps(study, max_pairs: int = 0,
                 datasets: str | list[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
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




def preference_rows(study, name: str) -> list[dict]:
    """The training rows of a preference dataset as a stage would read them: a standard dataset through
    its loader, a synthetic set from the stored set its runs train on."""
    if name in registry.SYNTHETIC_DATA:
        return study.synthetic_pairs(name.split("-", 1)[1])[0]
    return load_dataset(study.cfg, "preference", name).rows


def policy_fit_table(study, sft_data: str | None = None, datasets: list[str] | None = None,
                     max_pairs: int = 0) -> pd.DataFrame:
    """Policy fit (docs/method.md §7) of each preference dataset under the policy the preference stages
    start from (the merged SFT model on `sft_data`), beside the policy's own answers to the probes: one row
    per dataset and side (vd.score.policy_fit.policy_fit; it warns where a set sits far off the policy)."""
    sft = study.sft(sft_data)
    merged = str(sft.run_dir / "merged")
    model, tokenizer = load_model(study.cfg, path=merged), load_tokenizer(study.cfg, merged)
    data = {}
    for name in datasets or dataset_names(study):
        rows = preference_rows(study, name)
        data[name] = rows[:max_pairs] if max_pairs else rows
    # The policy's own answers: the SFT run's final step as scoring sampled them (from merged/, the same
    # model: docs/method.md §9), so no probe pass is generated again; whole answers only (one cut off at
    # the token limit never wrote its end of turn).
    scored = sft.judgments()
    own = scored[(scored["step"] == scored["step"].max()) & (scored["answer"] != "")
                 & (scored["n_new_tokens"] < study.cfg.probes.max_new_tokens)]
    return policy_fit(model, tokenizer, data, own=list(zip(own["question"], own["answer"])))
