"""Writes the numbered notebooks (run: `python notebooks/_generate.py`).

The notebooks are thin (parameters, calls into `vd`, figures, tables, a few lines of text), so they
are written from this script: one place for the shared cells (the Colab setup, the parameters
conventions), reviewable diffs, and no outputs committed. Edit here, rerun, and commit both.
Each notebook gets exactly one cell tagged `parameters`, with annotated entries (`size: str = "tiny"`
first) that `papermill --help-notebook` lists.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from vd.study import BRANCH, REPO_URL  # noqa: E402

COMMON = '''\
smoke: bool = False  # True: a few training steps and 2 prompts per topic (tests, quick checks)
overrides: str = ""  # params overrides as for vd train --set, comma-separated (example above)
runs_dir: str = ""  # where runs live; default runs/ at the repository root (or $VD_RUNS_DIR)
figures_dir: str = ""  # where figures/tables go; default figures/ at the repository root (or $VD_FIGURES_DIR)'''
SIZE = 'size: str = "tiny"  # params/<size>.yaml: tiny | llama3-3b | llama3-8b | qwen3-4b | qwen3-8b'
SETUP_ARGS = "overrides=overrides, smoke=smoke, runs_dir=runs_dir, figures_dir=figures_dir"


def colab_cell() -> str:
    return f'''\
# Setup. On Colab only, this installs the project (from REPO) and can keep all its data on Google
# Drive, so that a disconnect loses nothing; everywhere, it prints the versions and the GPU.
import os, subprocess, sys
REPO = "{REPO_URL}"  # the repository to install on Colab (vd.study.REPO_URL): set it to yours if you forked
DRIVE = True  # Colab: keep VD_HOME (the tiny world), runs/ and figures/ in MyDrive/value-drifts
if "google.colab" in sys.modules:
    src = "/content/value-drifts"
    if not os.path.isdir(src):
        if "<owner>" in REPO:
            raise SystemExit("REPO above is not set: put the URL of the repository you opened this notebook "
                             "from (your fork or the published one) in REPO, then run this cell again")
        subprocess.run(["git", "clone", "--depth", "1", "--branch", "{BRANCH}", REPO, src], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", src + "[gpu]"], check=True)
    import importlib.metadata as md
    stale = [m for m in ("numpy", "pandas") if m in sys.modules and sys.modules[m].__version__ != md.version(m)]
    if stale:
        raise SystemExit(f"pip replaced {{stale}}: use Runtime > Restart session, then run the notebook again")
    sys.path.insert(0, src)
    os.chdir(src + "/notebooks")
    if DRIVE:
        from google.colab import drive
        drive.mount("/content/drive")
        home = "/content/drive/MyDrive/value-drifts"
        for var, path in (("VD_HOME", home), ("VD_RUNS_DIR", home + "/runs"), ("VD_FIGURES_DIR", home + "/figures")):
            os.environ.setdefault(var, path)
from vd.study import environment_report
print(environment_report())'''


def badge(name: str) -> str:
    colab = REPO_URL.replace("https://github.com/", "https://colab.research.google.com/github/")
    return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"({colab}/blob/{BRANCH}/notebooks/{name}.ipynb)")


def notebook(name: str, title: str, intro: str, params: str, checks: str, setup_params: str, body: list) -> None:
    cells = [new_markdown_cell(f"# {title}\n\n{badge(name)}\n\n{intro}"),
             new_code_cell(colab_cell()),
             new_markdown_cell("**Parameters** (papermill: `-p name value`; `papermill --help-notebook notebooks/"
                               + name + ".ipynb` lists them). `overrides` changes params values, e.g. "
                               "`-p overrides \"dpo.beta=0.2,probes.samples_per_prompt=2\"`; runs trained under "
                               "changed training values get their own run folders."),
             new_code_cell("\n".join(filter(None, [SIZE, params, COMMON])), metadata={"tags": ["parameters"]}),
             new_code_cell("from IPython.display import Markdown, display\n\n"
                           "from vd import analysis, plots\nfrom vd.config import check_choice\n"
                           "from vd.study import setup\n\n" + (checks + "\n" if checks else "")
                           + f'study = setup(size, notebook="{name}", params={setup_params}, {SETUP_ARGS})')]
    for kind, text in body:
        cells.append(new_markdown_cell(text) if kind == "md" else new_code_cell(text))
    nb = new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"}})
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{name[:2]}-{i:02d}"
    nbformat.validate(nb)
    nbformat.write(nb, HERE / f"{name}.ipynb")


ALGO_CHECK = 'check_choice("algo", algo, ("ppo", "dpo", "simpo"))'
SFT_CHECK = 'check_choice("sft_data", sft_data, ("wildchat", "alpaca"))'


def main() -> None:
    notebook(
        "00_probes", "00 · The probe set and the stance judge",
        "Every checkpoint of the study is probed with value-laden questions and its answers are judged "
        "support / neutral / oppose. The paper uses V-PRISM (550 questions, 11 topics × 50, curated from "
        "PRISM), which is not released; the set shipped here (`vd/data/vprism.jsonl`) is ours, in the same "
        "shape. In each topic half the questions are phrased so that *support* moves toward the topic's "
        "axis (`pro`) and half away from it (`contra`), so a profile's *support* is not one side's support.\n\n"
        "This notebook shows the set, the part of it a size's budget uses, examples, and the judge on "
        "hand-written answers. It trains nothing.",
        "", "", "{}",
        [("md", "## Probes per topic and direction\n\nLeft: the whole set. Right: the subset probed at this "
                "size (`probes.prompts_per_topic`, direction-balanced, the same subset for every checkpoint)."),
         ("code", 'counts = analysis.probe_counts(study.cfg)\n'
                  'study.save_table(counts, "counts")\n'
                  'study.save_figure(analysis.probe_figure(counts, study.title("Probes per topic and direction")), "counts")'),
         ("md", "## Examples\n\nOne question per direction for each topic, with the position a *support* "
                "answer agrees with."),
         ("code", 'examples = analysis.probe_examples(study.cfg)\nstudy.save_table(examples, "examples")\n'
                  'examples'),
         ("md", "## The judge on examples\n\nThe paper judges each (question, answer, topic) with GPT-4o and "
                "reads the log-probabilities of the three labels, softmaxed over those three: a probability "
                "vector, not a vote. Refusals, hedged and balanced answers count as **neutral**. The tiny size "
                "uses a lexicon judge that reads the tiny world's stance phrases; real sizes use the `judge` "
                "section of their params (an OpenAI-compatible endpoint needs `OPENAI_API_KEY`)."),
         ("code", 'judged, note = analysis.judge_examples(study.cfg)\nprint(note)\n'
                  'if judged is not None:\n    study.save_table(judged, "judge_examples")\n'
                  '    display(judged.round(3))'),
         ("code", 'accuracy = None if judged is None else float((judged["judged"] == judged["intended"]).mean())\n'
                  'study.record({\n'
                  '    "n_probes": int(counts["in_set"].sum()), "n_used": int(counts["used"].sum()),\n'
                  '    "per_topic": counts.groupby("topic")[["in_set", "used"]].sum().to_dict("index"),\n'
                  '    "per_direction": counts.groupby("direction")[["in_set", "used"]].sum().to_dict("index"),\n'
                  '    "judge": note, "judge_accuracy_on_examples": accuracy,\n'
                  '})')])

    notebook(
        "01_sft_drift", "01 · Value drift through supervised fine-tuning",
        "**Paper (claim 1):** SFT establishes a model's values, early and strongly: most of the drift happens "
        "in the first ~10% of the SFT steps (WildChat, Llama-3 3B, immigration, neutral: M = 0.38, η = 0.09), "
        "and the final profile follows the SFT data: WildChat-SFT models turn neutral, Alpaca-SFT models "
        "supportive.\n\nThis notebook trains SFT on both datasets (only what is not trained yet), scores every "
        "checkpoint (step 0 = the base model), and shows the stance trajectories of `sft_data`, its drift "
        "table, and the final profiles of both SFT models.",
        'sft_data: str = "wildchat"  # wildchat | alpaca: whose trajectories and drift table to show',
        SFT_CHECK, '{"sft_data": sft_data}',
        [("code", 'runs = {d: study.sft(d) for d in ("wildchat", "alpaca")}\nsft = runs[sft_data]'),
         ("md", "## Stance trajectories\n\nOne panel per topic (and the mean over topics): the value profile "
                "v_t(T) — the mean judged p(stance) over the topic's prompts and sampled answers — against the "
                "fraction of SFT steps, with 95% bootstrap bands (prompts resampled)."),
         ("code", 'fig = plots.trajectories(sft.profile, study.title(f"Stance trajectories through SFT on {sft_data}", sft))\n'
                  'study.save_figure(fig, "trajectories")'),
         ("md", "## Drift magnitude M and drift time η\n\nM = v_end − v_start per topic and stance (signed, with "
                "a paired bootstrap 95% CI); η = the fraction of steps needed to come within 95% of the way to "
                "the trajectory's extremum (`extremum95`; blank where there is no drift). η can only take the "
                "values of the checkpoints, i.e. multiples of 1/(checkpoints − 1)."),
         ("code", 'table, formatted = analysis.drift_tables(sft)\n'
                  'study.save_table(table, "drift", caption=f"M and eta through SFT on {sft_data}", latex=formatted)\n'
                  'study.save_figure(plots.drift_heatmap(sft.drift, study.title(f"Drift through SFT on {sft_data}", sft), bound=analysis.M_SCALE), "drift")\n'
                  'formatted'),
         ("md", "## Final profiles: WildChat-SFT vs Alpaca-SFT\n\nStance shares per topic of the base model "
                "and of the two SFT models at their last checkpoint. Paper: WildChat-SFT turns neutral, "
                "Alpaca-SFT supportive."),
         ("code", 'fig = plots.profiles_bar(analysis.sft_profiles(runs), study.title("Profiles before and after SFT", *runs.values()))\n'
                  'study.save_figure(fig, "profiles", key="")'),
         ("code", 'study.record({"sft": analysis.drift_record(sft),\n'
                  '              "final_profiles": {d: r.at("last") for d, r in runs.items()},\n'
                  '              "base_profile": runs["wildchat"].at("first")})')])

    notebook(
        "02_preference_drift", "02 · Value drift through preference optimization",
        "**Paper (claim 2):** preference optimization (PPO, DPO, SimPO) on standard preference data "
        "(UltraFeedback, HH-RLHF) barely moves the values SFT established (M between 0.01 and 0.27, η between "
        "0.14 and 0.42), because chosen and rejected answers there take the same stance (a small value gap; "
        "see notebook 04).\n\nThis notebook trains `algo` on `pref_data` starting from the SFT model "
        "(`sft_data`; step 0 = the final SFT model) and shows the same trajectories and tables as notebook 01.",
        'algo: str = "dpo"  # ppo | dpo | simpo\n'
        'pref_data: str = "ultrafeedback"  # ultrafeedback | hh-rlhf\n'
        'sft_data: str = "alpaca"  # the SFT model it starts from: wildchat | alpaca',
        ALGO_CHECK + '\ncheck_choice("pref_data", pref_data, ("ultrafeedback", "hh-rlhf"))\n' + SFT_CHECK,
        '{"algo": algo, "pref_data": pref_data, "sft_data": sft_data}',
        [("code", 'run = study.preference(algo, pref_data, sft_data)'),
         ("md", "## Stance trajectories\n\nAs in notebook 01, against the fraction of the preference stage's "
                "steps (PPO: its updates)."),
         ("code", 'fig = plots.trajectories(run.profile, study.title(f"{algo.upper()} on {pref_data} from SFT on {sft_data}", run))\n'
                  'study.save_figure(fig, "trajectories")'),
         ("md", "## M and η"),
         ("code", 'table, formatted = analysis.drift_tables(run)\n'
                  'study.save_table(table, "drift", caption=f"M and eta through {algo} on {pref_data}", latex=formatted)\n'
                  'study.save_figure(plots.drift_heatmap(run.drift, study.title(f"Drift through {algo.upper()} on {pref_data}", run), bound=analysis.M_SCALE), "drift")\n'
                  'formatted'),
         ("md", "## Profiles before and after\n\nThe SFT model (step 0 of this stage) and the model after "
                "preference optimization."),
         ("code", 'fig = plots.profiles_bar(analysis.start_end(run, f"SFT on {sft_data} (start)", f"after {algo.upper()}"),\n'
                  '                         study.title(f"{algo.upper()} on {pref_data}: profiles", run))\n'
                  'study.save_figure(fig, "profiles")'),
         ("code", 'study.record({"run": analysis.drift_record(run)})')])

    notebook(
        "03_value_gap", "03 · A large value gap: synthetic preference data",
        "**Paper (claim 3):** with synthetic preference pairs whose chosen and rejected answers take opposite "
        "stances (a large value gap), the algorithms differ although the data are the same: PPO barely moves "
        "(M 0.0 support-aligned, −0.02 oppose-aligned; its KL penalty anchors it to the SFT policy), DPO moves "
        "strongly (M 0.53 when the chosen stance already had a high prior after SFT, 0.46 when it had a low "
        "one), SimPO moderately (about 0.15).\n\nThis notebook trains `algo` on both synthetic settings (chosen "
        "= support, chosen = oppose) from the SFT model `sft_data`, shows the value gap of the data, the "
        "trajectories and drift table of `setting`, and splits the drift of the chosen stance by its prior "
        "after SFT. With Alpaca-SFT (the default) support is the high-prior stance overall; per topic the "
        "prior can differ, so the split is made per topic too.",
        'algo: str = "dpo"  # ppo | dpo | simpo\n'
        'setting: str = "support"  # support | oppose: the stance of the chosen answers\n'
        'sft_data: str = "alpaca"  # the SFT model it starts from: wildchat | alpaca',
        ALGO_CHECK + '\ncheck_choice("setting", setting, ("support", "oppose"))\n' + SFT_CHECK,
        '{"algo": algo, "setting": setting, "sft_data": sft_data}',
        [("code", 'runs = {s: study.preference(algo, f"synthetic-{s}", sft_data) for s in ("support", "oppose")}\n'
                  'run = runs[setting]'),
         ("md", "## The synthetic data's value gap\n\nMean judged p(stance) of chosen minus rejected answers "
                "(ours: the paper uses the notion without a formula), with 95% bootstrap CIs over pairs."),
         ("code", 'import pandas as pd\n'
                  'gaps = pd.concat([analysis.synthetic_gap(r).assign(dataset=f"synthetic-{s}") for s, r in runs.items()])\n'
                  'study.save_table(gaps, "gap", key=algo)\n'
                  'study.save_figure(analysis.gap_figure(gaps, study.title("Value gap of the synthetic pairs", note=analysis.gap_note(study, gaps))), "gap", key=algo)'),
         ("md", "## Stance trajectories and drift of this setting"),
         ("code", 'fig = plots.trajectories(run.profile, study.title(f"{algo.upper()} on synthetic-{setting} from SFT on {sft_data}", run))\n'
                  'study.save_figure(fig, "trajectories")\n'
                  'table, formatted = analysis.drift_tables(run)\n'
                  'study.save_table(table, "drift", caption=f"M and eta through {algo} on synthetic-{setting}", latex=formatted)\n'
                  'study.save_figure(plots.drift_heatmap(run.drift, study.title(f"Drift through {algo.upper()} on synthetic-{setting}", run), bound=analysis.M_SCALE), "drift")\n'
                  'formatted'),
         ("md", "## High vs low prior\n\nFor each topic and setting: the chosen stance's value at the end of SFT "
                "(its prior; *high* if it is the larger of support and oppose there) against its drift M through "
                "this stage. Paper: DPO amplifies a high-prior stance (0.53) and partly shifts toward a low-prior "
                "one (0.46)."),
         ("code", 'split = analysis.prior_split(study.sft(sft_data), runs)\n'
                  'summary = analysis.prior_summary(split)\n'
                  'study.save_table(split, "prior_split", key=algo)\n'
                  'study.save_figure(analysis.prior_split_figure(split, study.title(f"{algo.upper()}: drift of the chosen stance by its prior", *runs.values())), "prior_split", key=algo)\n'
                  'display(summary.round(3))\n'
                  'split[split.topic == "overall"].round(3)'),
         ("code", 'overall = split[split.topic == "overall"].set_index("setting")\n'
                  'study.record({"run": analysis.drift_record(run),\n'
                  '              "chosen_M_overall": overall["M_chosen"].to_dict(),\n'
                  '              "prior_overall": overall["prior"].to_dict(),\n'
                  '              "prior_summary": summary.set_index("prior").to_dict("index"),\n'
                  '              "gap_overall": gaps[gaps.topic == "overall"].pivot(index="dataset", columns="stance", values="gap").to_dict("index")})')])

    notebook(
        "04_dataset_value_gap", "04 · The value gap of each preference dataset",
        "**Paper:** standard preference data move values little because their chosen and rejected answers "
        "take the same stance; the synthetic data have opposite stances by construction. This notebook judges "
        "the chosen and rejected answers of every preference dataset with the study's judge and shows their "
        "stance distributions and the gap (mean p(chosen) − mean p(rejected), per stance; ours).\n\nReal data "
        "carry no topic: there, only pairs whose prompt mentions a topic's keywords are judged (the value-laden "
        "part), at most `max_pairs` per dataset (judge calls cost money at real sizes).",
        'max_pairs: int = 0  # judge at most this many pairs per standard dataset (0: all)', "", "{}",
        [("code", 'gaps, dist = analysis.dataset_gaps(study, max_pairs)\n'
                  'study.save_table(gaps, "gaps")\nstudy.save_table(dist, "distributions")'),
         ("md", "## Stance distributions of chosen and rejected answers"),
         ("code", 'study.save_figure(analysis.distribution_figure(dist, study.title("Stances of chosen and rejected answers", note=analysis.gap_note(study, gaps))), "distributions")'),
         ("md", "## Value gaps (overall, 95% bootstrap CI over pairs)"),
         ("code", 'study.save_figure(analysis.gap_figure(gaps, study.title("Value gap per dataset", note=analysis.gap_note(study, gaps))), "gaps")\n'
                  'gaps[gaps.topic == "overall"].round(3)'),
         ("code", 'overall = gaps[gaps.topic == "overall"]\n'
                  'study.record({"gap_overall": overall.pivot(index="dataset", columns="stance", values="gap").to_dict("index"),\n'
                  '              "n_pairs": overall.groupby("dataset")["n_pairs"].first().to_dict(),\n'
                  '              "distributions": dist.pivot_table(index=["dataset", "side"], columns="stance", values="p").reset_index().to_dict("records")})')])

    notebook(
        "05_ablations", "05 · Ablations: PPO's KL coefficient, DPO's β, SimPO's γ",
        "**Paper:** the algorithms' different responses to a large value gap come from their objectives: PPO's "
        "KL penalty anchors it to the SFT policy, DPO's β sets how far it may move, and SimPO's target margin "
        "γ matters little (M 0.34 vs 0.36 in its ablation).\n\nThis notebook sweeps each knob over three values "
        "(ours: 0.2×, 1× and 5× the size's KL coefficient; 0.5×, 1× and 5× its β; 0×, 1× and 2× its γ) on "
        "`ablation_data` from the SFT model `sft_data`, and shows M of each stance (overall profile) per value. "
        "The 1× runs are the main runs of notebook 03.",
        'ablation_data: str = "synthetic-support"  # synthetic-support | synthetic-oppose | ultrafeedback | hh-rlhf\n'
        'sft_data: str = "alpaca"  # the SFT model it starts from: wildchat | alpaca',
        'check_choice("ablation_data", ablation_data, ("synthetic-support", "synthetic-oppose", "ultrafeedback", "hh-rlhf"))\n'
        + SFT_CHECK, '{"ablation_data": ablation_data, "sft_data": sft_data}',
        [("code", 'table = analysis.ablations(study, ablation_data)\nstudy.save_table(table, "ablations")'),
         ("md", "## M per value (overall profile, paired bootstrap 95% CI)"),
         ("code", 'study.save_figure(analysis.ablation_figure(table, study.title(f"Ablations on {ablation_data}")), "ablations")\n'
                  'table[["algo", "param", "value", "M_support", "M_neutral", "M_oppose", "eta_support", "eta_oppose"]].round(3)'),
         ("code", 'study.record({"ablations": table.to_dict("records")})')])

    notebook(
        "06_paper_tables", "06 · The paper's tables, ours beside them",
        "Gathers every run of the size (training and scoring only what is missing) into the paper's tables: "
        "SFT drift per dataset, preference drift on standard data, and the synthetic value-gap runs split by "
        "prior, and the capability checks of notebook 07; then puts each number and claim the paper reports "
        "(DESIGN §3; from secondary sources) beside ours and says plainly where they agree and where not. "
        "At size `tiny` the study runs in a synthetic miniature world: agreement or disagreement there checks the pipeline, not the paper.",
        'sft_data: str = "alpaca"  # the SFT model the preference stages start from: wildchat | alpaca\n'
        'include_ablations: bool = True  # also gather (and train if missing) the ablation runs of notebook 05\n'
        'include_capabilities: bool = True  # also check capabilities (notebook 07; cached evaluations through lm-eval)',
        SFT_CHECK, '{"sft_data": sft_data}',
        [("code", 'from vd import paper\n\ntables = paper.paper_tables(study)\n'
                  'gaps, _ = analysis.dataset_gaps(study)\n'
                  'ablation = analysis.ablations(study) if include_ablations else None\n'
                  'if include_capabilities:\n'
                  '    from vd import capabilities\n'
                  '    caps = capabilities.stage_summary(capabilities.capability_table(study))\n'
                  'else:\n'
                  '    caps = None\n'
                  'for name, table in tables.items():\n'
                  '    study.save_table(table, name, key="")'),
         ("md", "## SFT (paper topics and the mean over topics)"),
         ("code", 'paper.wide(tables["sft"])'),
         ("md", "## Preference optimization on standard data"),
         ("code", 'paper.wide(tables["preference"])'),
         ("md", "## Synthetic value gap: the chosen stance's drift, by its prior after SFT"),
         ("code", 'tables["synthetic"][tables["synthetic"].topic == "overall"][["algo", "setting", "prior", "prior_chosen", "M_chosen", "eta_chosen"]].round(3)'),
         ("md", "## Where we agree with the paper, and where not"),
         ("code", 'comparison = paper.paper_comparison(tables, gaps, ablation, caps)\n'
                  'study.save_table(comparison, "comparison", key="")\n'
                  'display(Markdown(paper.comparison_markdown(comparison)))'),
         ("code", 'study.record({"comparison": comparison.to_dict("records"),\n'
                  '              "verdicts": comparison["verdict"].value_counts().to_dict(),\n'
                  '              "runs": sorted({r for t in tables.values() for r in t.get("run", [])})})')])

    notebook(
        "07_capabilities", "07 · Capabilities before and after each stage",
        "**Paper:** post-training keeps the models' capabilities: they are checked on MMLU, HellaSwag, "
        "GPQA-Diamond and PIQA (from secondary sources: the claim is reported, its numbers and settings were "
        "not found).\n\nThis notebook evaluates the start (step 0) and the end (last checkpoint) of every stage "
        "of the study through lm-evaluation-harness: both SFT runs, and per algorithm in `algos` its runs on "
        "standard and synthetic preference data from the SFT model `sft_data` (trained and scored first where "
        "missing). Real sizes use lm-eval's `mmlu`, `hellaswag`, `gpqa_diamond_zeroshot` and `piqa` (few-shot "
        "counts, metrics and the item budget in the `capabilities` section of the params; GPQA is gated on "
        "the hub: accept its terms and log in first). The tiny model knows none of those: it is checked on the "
        "tiny world's own task, `vd_tiny_topics` (pick the answer on the question's topic among four; chance "
        "0.25). Results are cached per checkpoint and task: re-executing evaluates nothing.",
        'sft_data: str = "alpaca"  # the SFT model the preference stages start from: wildchat | alpaca\n'
        'algos: str = "all"  # preference algorithms whose runs are checked: all, or a comma-separated subset of ppo, dpo, simpo',
        SFT_CHECK + '\nfrom vd import capabilities\ncapabilities.parse_algos(algos)',
        '{"sft_data": sft_data, "algos": algos.replace(",", "+")}',
        [("code", 'runs = capabilities.study_runs(study, sft_data, algos)\n'
                  'table = capabilities.capability_table(study, runs)\n'
                  'summary = capabilities.stage_summary(table)'),
         ("md", "## Scores at the start and end of each stage\n\nAbove, per task: each run's score at the start of its "
                "stage (open marker) and at its end (filled), ± lm-eval's standard error; the dashed line is "
                "chance. Below: the change end − start, ± 2 standard errors of the paired difference (the same "
                "items at both ends); a red edge marks a stage that lost the task. A preference run starts from "
                "the final SFT model (merged), so its start repeats the end of SFT on `sft_data`."),
         ("code", 'fig = capabilities.figure(table, summary, study.title("Capabilities at the start and end of each stage",\n'
                  '                                                     note=capabilities.budget_note(study.cfg, study.smoke)))\n'
                  'study.save_figure(fig, "capabilities")'),
         ("md", "**What to look for.** Filled markers level with the open ones: the stage kept what the model "
                "could do. A filled marker clearly below its open one (beyond the error bars) is forgetting; "
                "the table below tests each drop against the standard error of the paired difference (the same "
                "items at both ends). Everything should sit well above the chance line, or the task cannot show "
                "forgetting at all. In the tiny world SFT and preference data are written in the same language as "
                "the pre-training chats, so little forgetting is expected there; at real sizes, look at MMLU and "
                "GPQA-Diamond (knowledge) after the synthetic value-gap stages, which train hardest on one stance."),
         ("code", 'study.save_table(summary, "capabilities", caption="Capability scores at the start and end of each stage",\n'
                  '                 latex=capabilities.latex_table(summary))\n'
                  'capabilities.latex_table(summary)'),
         ("md", "## The paper's statement, and ours\n\n" + "> The paper reports that its post-trained models keep "
                "their capabilities on MMLU, HellaSwag, GPQA-Diamond and PIQA (from secondary sources; the "
                "numbers were not found).\n\nOur verdict rule: a stage *loses* a task when its end scores below "
                "its start by more than 2 standard errors of the paired difference; the claim holds when no "
                "stage loses any task (the same rule as notebook 06's comparison)."),
         ("code", 'display(Markdown(capabilities.verdict_markdown(summary)))'),
         ("code", 'study.record({"runs": list(runs), "tasks": list(study.cfg.capabilities.tasks),\n'
                  '              "budget": capabilities.budget_note(study.cfg, study.smoke),\n'
                  '              **capabilities.record(table, summary)})')])


if __name__ == "__main__":
    main()
