"""Writes the numbered notebooks (run: `python notebooks/_generate.py`).

The notebooks read as documents: what the paper claims, the parameters, calls into `vd`, each figure or
table followed by what to look for in it, and the bookkeeping last. They are written from this script so
that the shared cells (the Colab cell, the parameters conventions) live in one place, diffs stay
reviewable and no outputs are committed. Edit here, rerun, and commit both. Each notebook gets exactly
one cell tagged `parameters`, with annotated entries (`size: str = "tiny"` first) that
`papermill --help-notebook` lists; tests/test_notebooks.py checks all of this, and that no line is
longer than 100 characters.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from vd.study.colab import BRANCH, CLONE, REPO_URL  # noqa: E402

SIZE = 'size: str = "tiny"  # params/<size>.yaml or a params file: tiny | llama3-3b | ... | qwen3-8b'
COMMON = '''\
smoke: bool = False  # True: a few training steps, 2 prompts per topic (tests, quick checks)
overrides: str = ""  # params values to change, as vd train --set takes them, comma-separated
runs_dir: str = ""  # where runs live (default: runs/ at the repository root, or $VD_RUNS_DIR)
figures_dir: str = ""  # figures and tables (default: figures/ at the root, or $VD_FIGURES_DIR)'''
SETUP_ARGS = "overrides=overrides, smoke=smoke, runs_dir=runs_dir, figures_dir=figures_dir"

COLAB = f'''\
# Colab only: clone and install this repository (Colab keeps its own torch); data go to Drive.
import os, subprocess, sys
REPO = "{REPO_URL}"  # the repository you opened this from
DIR = "{CLONE}"
if "google.colab" in sys.modules and not os.path.isdir(DIR):
    if "<owner>" in REPO:
        raise SystemExit("set REPO above to your fork or the published repository, then rerun")
    subprocess.run(["git", "clone", "--depth", "1", "-b", "{BRANCH}", REPO, DIR], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", DIR + "[gpu]"], check=True)
    sys.path.insert(0, DIR)
from vd.study.colab import prepare  # noqa: E402
prepare(drive=True)  # Colab: work in the clone, data on Drive; everywhere: versions and GPU'''


def badge(name: str) -> str:
    colab = REPO_URL.replace("https://github.com/", "https://colab.research.google.com/github/")
    return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"({colab}/blob/{BRANCH}/notebooks/{name}.ipynb)")


def look(what: str, paper: str, world: str = "") -> list[tuple[str, str]]:
    """The markdown cell after a figure or table: what to look for, the paper's result; then, with `world`
    (a figure's name in vd.study.notes), a cell that shows the tiny world's reading at that size only."""
    cells = [("md", f"**What to look for.** {what}\n\n**The paper.** {paper}")]
    return cells + [("code", f'vd.notes.show(study, "{world}")')] if world else cells


def wrap(text: str, width: int = 100) -> str:
    """Markdown with no line over `width` characters: paragraphs and list items refilled, headings,
    tables and badges left as they are."""
    out = []
    for line in text.split("\n"):
        if len(line) <= width or line.startswith(("#", "|", "[![")):
            out.append(line)
        elif line.startswith(("- ", "> ")):
            out.append(textwrap.fill(line, width, subsequent_indent="  " if line[0] == "-" else "> ",
                                     break_long_words=False, break_on_hyphens=False))
        else:
            out.append(textwrap.fill(line, width, break_long_words=False, break_on_hyphens=False))
    return "\n".join(out)


def notebook(name: str, title: str, intro: str, params: str, setup: str, body: list, record: str) -> None:
    cells = [new_markdown_cell(f"# {title}\n\n{badge(name)}\n\n{intro}"),
             new_code_cell(COLAB),
             new_markdown_cell("**Parameters.** Papermill: `-p name value`; `papermill --help-notebook "
                               f"notebooks/{name}.ipynb` lists them. Runs trained under changed\n"
                               "training values (`overrides`) get their own run folders."),
             new_code_cell("\n".join(filter(None, [SIZE, params, COMMON])), metadata={"tags": ["parameters"]}),
             new_code_cell("from IPython.display import Markdown, display\n\nimport vd\n\n" + setup)]
    for kind, text in (c for item in body for c in (item if isinstance(item, list) else [item])):
        cells.append(new_markdown_cell(text) if kind == "md" else new_code_cell(text))
    cells += [new_markdown_cell("## Bookkeeping\n\nThe key numbers of this run, for `vd reproduce`, notebook 06 "
                                "and the tests (`figures/<size>/<notebook>.json`)."),
              new_code_cell(record)]
    for cell in cells:
        if cell.cell_type == "markdown":
            cell.source = wrap(cell.source)
    nb = new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"}})
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{name[:2]}-{i:02d}"
    nbformat.validate(nb)
    nbformat.write(nb, HERE / f"{name}.ipynb")


def setup_cell(name: str, params: str, plan: str = "") -> str:
    """The parameters checked against their annotations, the study, and the runs it uses, listed and
    checked (vd.schedule.check: the preflight) before any trains."""
    return ("vd.check_parameters(globals())  # each parameter as its annotation says, or one error line\n"
            f'study = vd.setup(size, notebook="{name}",\n                 params={params},\n                 {SETUP_ARGS})\n'
            "# the runs it uses, listed (which exist, which to train); then the checks before any trains\n"
            f"vd.schedule.check(study{plan})")


SFT_PARAM = 'sft_data: str = "alpaca"  # the SFT model it starts from: wildchat | alpaca'
M_AND_ETA = ("M = v_end − v_start per topic and stance (signed, with a paired bootstrap 95% CI); η = the "
             "fraction of the stage's steps needed to come within 95% of the way to the trajectory's "
             "extremum (`extremum95`), shown only where the drift is resolved (M's CI excludes 0). η can "
             "only take the checkpoints' values, multiples of 1/(checkpoints − 1). `docs/method.md` §3–§4 defines both.")


def main() -> None:
    notebook(
        "00_probes", "00 · The probe set and the stance judge",
        "Every checkpoint of the study is probed with value-laden questions and its answers are judged "
        "support / neutral / oppose. The paper uses V-PRISM (550 questions, 11 topics × 50, curated from "
        "PRISM), which is not released; the set shipped here (`vd/data/vprism.jsonl`) is ours, in the "
        "same shape. In each topic half the questions are phrased so that *support* moves toward the "
        "topic's axis (`pro`) and half away from it (`contra`), so a profile's *support* is not one "
        "side's support.\n\nThis notebook shows the set, the part a size's budget uses, examples, and the "
        "judge on hand-written answers. It trains nothing.",
        "", setup_cell("00_probes", "{}"),
        [("md", "## Probes per topic and direction"),
         ("code", 'counts = vd.analysis.probe_counts(study.cfg)\n'
                  'study.save_table(counts, "counts")\n'
                  'title = study.title("Probes per topic and direction")\n'
                  'study.save_figure(vd.figures.probe_figure(counts, title), "counts")'),
         look("Left, the whole set; right, the subset this size probes (`probes.prompts_per_topic`, the same "
              "subset at every checkpoint). Both halves of each bar should be equal: a topic's support is "
              "half *pro* and half *contra* its axis.",
              "550 questions, 50 per topic (V-PRISM); no direction balance is reported.", "counts"),
         ("md", "## Examples"),
         ("code", 'examples = vd.analysis.probe_examples(study.cfg)\n'
                  'study.save_table(examples, "examples")\nexamples'),
         look("`position` is the claim a *support* answer agrees with, whatever the question's grammar.",
              "Figure 1's example is `immigration-001`.", "examples"),
         ("md", "## The judge on examples"),
         ("code", 'judged, note = vd.analysis.judge_examples(study.cfg)\nprint(note)\n'
                  'if judged is not None:\n    study.save_table(judged, "judge_examples")\n'
                  '    display(judged.round(3))'),
         look("Each row's `judged` (the most probable stance) should equal `intended`; the refusal counts as "
              "neutral. The p columns are the graded readout: the three labels' log-probabilities "
              "softmaxed over those three.",
              "GPT-4o, read this way (`docs/method.md` §1).", "judge")],
        'study.record(vd.records.probes(counts, judged, note))')

    notebook(
        "01_sft_drift", "01 · Value drift through supervised fine-tuning",
        "**Paper (claim 1):** SFT establishes a model's values, early and strongly: most of the drift "
        "happens in the first ~10% of the SFT steps (WildChat, Llama-3 3B, immigration, neutral: M = 0.38, "
        "η = 0.09), and the final profile follows the SFT data: WildChat-SFT models turn neutral, "
        "Alpaca-SFT models supportive.\n\nThis notebook trains SFT on each dataset the params name (both by "
        "default; only what is not trained yet), scores every checkpoint (step 0 = the base model), and "
        "shows the stance trajectories of `sft_data`, its drift table, and the final profiles of the SFT "
        "models.",
        'sft_data: str = "wildchat"  # wildchat | alpaca: whose trajectories and drift table to show',
        setup_cell("01_sft_drift", '{"sft_data": sft_data}'),
        [("code", 'runs = {d: study.sft(d) for d in vd.schedule.sft_datasets(study.cfg)}\nsft = runs[sft_data]'),
         ("md", "## Stance trajectories"),
         ("code", 'title = study.title(f"Stance trajectories through SFT on {sft_data}", sft)\n'
                  'figure = vd.figures.trajectories(sft.profile, title, drift=sft.drift)\n'
                  'study.save_figure(figure, "trajectories")'),
         look("One panel per topic and the mean over topics: the value profile v_t(T), the mean judged "
              "p(stance) over the topic's prompts and answers, against the fraction of SFT steps, with 95% "
              "bootstrap bands (prompts resampled). A drift is early when most of the climb happens left of "
              "0.1; it is real only where the band at the end leaves the band at step 0.",
              "Most of the drift in the first ~10% of steps; WildChat-SFT moves toward neutral.", "trajectories"),
         ("md", "## Drift magnitude M and drift time η\n\n" + M_AND_ETA),
         ("code", 'table, formatted = vd.analysis.drift_tables(sft)\n'
                  'study.save_table(table, "drift", caption=f"M and eta through SFT on {sft_data}",\n'
                  '                 latex=formatted)\n'
                  'title = study.title(f"Drift through SFT on {sft_data}", sft)\n'
                  'heatmap = vd.figures.drift_heatmap(sft.drift, title, bound=vd.analysis.M_SCALE)\n'
                  'study.save_figure(heatmap, "drift")\nformatted'),
         look("Cells whose CI includes 0 are not resolved at this budget, however large they look; the table "
              "states the smallest |M| the budget resolves.",
              "WildChat, immigration, neutral: M = 0.38, η = 0.09."),
         ("md", "## Final profiles: WildChat-SFT vs Alpaca-SFT"),
         ("code", 'title = study.title("Profiles before and after SFT", *runs.values())\n'
                  'figure = vd.figures.profiles_bar(vd.analysis.sft_profiles(runs), title)\n'
                  'study.save_figure(figure, "profiles", key="")'),
         look("Stance shares per topic of the base model and of the two SFT models at their last checkpoint.",
              "WildChat-SFT turns neutral, Alpaca-SFT supportive.", "profiles")],
        'study.record(vd.records.sft(runs, sft))')

    notebook(
        "02_preference_drift", "02 · Value drift through preference optimization",
        "**Paper (claim 2):** preference optimization (PPO, DPO, SimPO) on standard preference data "
        "(UltraFeedback, HH-RLHF) barely moves the values SFT established (M between 0.01 and 0.27, η "
        "between 0.14 and 0.42), because chosen and rejected answers there take the same stance (a small "
        "value gap; see notebook 04).\n\nThis notebook trains `algo` on `pref_data` starting from the SFT "
        "model (`sft_data`; step 0 = the final SFT model) and shows the same trajectories and tables as "
        "notebook 01. A null result here is evidence only beside the positive controls of notebooks 03 "
        "and 06 (the same pipeline moves when the data say it should).",
        'algo: str = "dpo"  # ppo | dpo | simpo\n'
        'pref_data: str = "ultrafeedback"  # ultrafeedback | hh-rlhf\n' + SFT_PARAM,
        setup_cell("02_preference_drift", '{"algo": algo, "pref_data": pref_data, "sft_data": sft_data}'),
        [("code", 'run = study.preference(algo, pref_data, sft_data)'),
         ("md", "## Stance trajectories"),
         ("code", 'title = study.title(f"{algo.upper()} on {pref_data} from SFT on {sft_data}", run)\n'
                  'figure = vd.figures.trajectories(run.profile, title, drift=run.drift)\n'
                  'study.save_figure(figure, "trajectories")'),
         look("As in notebook 01, against the fraction of the preference stage's steps (PPO: its updates). "
              "Flat lines inside their bands mean nothing moved that this budget can see.",
              "Standard preference data barely move values.", "trajectories"),
         ("md", "## M and η\n\n" + M_AND_ETA),
         ("code", 'table, formatted = vd.analysis.drift_tables(run)\n'
                  'study.save_table(table, "drift", caption=f"M and eta through {algo} on {pref_data}",\n'
                  '                 latex=formatted)\n'
                  'title = study.title(f"Drift through {algo.upper()} on {pref_data}", run)\n'
                  'heatmap = vd.figures.drift_heatmap(run.drift, title, bound=vd.analysis.M_SCALE)\n'
                  'study.save_figure(heatmap, "drift")\nformatted'),
         look("Small |M| with CIs around 0, read against the stated resolution; η is blank where no drift is "
              "resolved.",
              "M 0.01–0.27, η 0.14–0.42 (e.g. DPO, immigration, support: 0.02 / 0.14)."),
         ("md", "## Profiles before and after"),
         ("code", 'start_end = vd.analysis.start_end(run, f"SFT on {sft_data} (start)", f"after {algo.upper()}")\n'
                  'title = study.title(f"{algo.upper()} on {pref_data}: profiles", run)\n'
                  'study.save_figure(vd.figures.profiles_bar(start_end, title), "profiles")'),
         look("The SFT model (step 0 of this stage) and the model after preference optimization.",
              "Nearly the same profile.", "profiles")],
        'study.record(vd.records.preference(run))')

    notebook(
        "03_value_gap", "03 · A large value gap: synthetic preference data",
        "**Paper (claim 3):** with synthetic preference pairs whose chosen and rejected answers take "
        "opposite stances (a large value gap), the algorithms differ although the data are the same: PPO "
        "barely moves (M 0.0 support-aligned, −0.02 oppose-aligned; its KL penalty anchors it to the SFT "
        "policy), DPO moves strongly (M 0.53 when the chosen stance already had a high prior after SFT, "
        "0.46 when it had a low one), SimPO moderately (about 0.15).\n\nThis notebook trains `algo` on both "
        "synthetic settings (chosen = support, chosen = oppose) from the SFT model `sft_data`, shows the "
        "value gap of the data, the trajectories and drift table of `setting`, and splits the drift of the "
        "chosen stance by its prior after SFT.",
        'algo: str = "dpo"  # ppo | dpo | simpo\n'
        'setting: str = "support"  # support | oppose: the stance of the chosen answers\n' + SFT_PARAM,
        setup_cell("03_value_gap", '{"algo": algo, "setting": setting, "sft_data": sft_data}'),
        [("code", 'runs = {s: study.preference(algo, f"synthetic-{s}", sft_data)\n'
                  '        for s in vd.registry.SYNTHETIC_SETTINGS}\nrun = runs[setting]'),
         ("md", "## The synthetic data's value gap"),
         ("code", 'gaps = vd.value_gaps.synthetic_gaps(runs)\n'
                  'study.save_table(gaps, "gap", key=algo)\n'
                  'title = study.title("Value gap of the synthetic pairs",\n'
                  '                    note=vd.value_gaps.gap_note(study, gaps))\n'
                  'study.save_figure(vd.figures.gap_figure(gaps, title), "gap", key=algo)'),
         look("Mean judged p(stance) of chosen minus rejected answers, per stance (ours: `docs/method.md` §5), "
              "with 95% CIs over pairs: close to +1 for the chosen stance, −1 for the other.",
              "A large value gap by construction.", "gap"),
         ("md", "## Stance trajectories and drift of this setting\n\n" + M_AND_ETA),
         ("code", 'title = study.title(f"{algo.upper()} on synthetic-{setting} from SFT on {sft_data}", run)\n'
                  'figure = vd.figures.trajectories(run.profile, title, drift=run.drift)\n'
                  'study.save_figure(figure, "trajectories")\n'
                  'table, formatted = vd.analysis.drift_tables(run)\n'
                  'study.save_table(table, "drift", latex=formatted,\n'
                  '                 caption=f"M and eta through {algo} on synthetic-{setting}")\n'
                  'title = study.title(f"Drift through {algo.upper()} on synthetic-{setting}", run)\n'
                  'heatmap = vd.figures.drift_heatmap(run.drift, title, bound=vd.analysis.M_SCALE)\n'
                  'study.save_figure(heatmap, "drift")\nformatted'),
         look("The chosen stance should rise for DPO and SimPO, with a CI that excludes 0 (the positive "
              "control); PPO may stay put.",
              "PPO ≈ 0, SimPO ≈ 0.15, DPO ≈ 0.5.", "drift"),
         ("md", "## High vs low prior"),
         ("code", 'split = vd.value_gaps.prior_split(study.sft(sft_data), runs)\n'
                  'summary = vd.value_gaps.prior_summary(split)\n'
                  'study.save_table(split, "prior_split", key=algo)\n'
                  'title = study.title(f"{algo.upper()}: drift of the chosen stance by its prior", *runs.values())\n'
                  'study.save_figure(vd.figures.prior_split_figure(split, title), "prior_split", key=algo)\n'
                  'display(summary.round(3))\nsplit[split.topic == "overall"].round(3)'),
         look("For each topic and setting: the chosen stance's value at the end of SFT (its prior; *high* if "
              "it is the larger of support and oppose there) against its drift M through this stage.",
              "DPO amplifies a high-prior stance (0.53) and partly shifts toward a low-prior one (0.46).",
              "prior_split")],
        'study.record(vd.records.value_gap(run, split, summary, gaps))')

    notebook(
        "04_dataset_value_gap", "04 · The value gap and the policy fit of each preference dataset",
        "**Paper:** standard preference data move values little because their chosen and rejected "
        "answers take the same stance; the synthetic data have opposite stances by construction. This "
        "notebook judges the chosen and rejected answers of every preference dataset with the study's "
        "judge and shows their stance distributions and the gap (ours: `docs/method.md` §5), then how far "
        "each dataset sits from what the SFT model itself writes (its policy fit, §7).\n\nReal data carry no "
        "topic: only pairs whose prompt mentions a topic's keywords are judged, at most `max_pairs` per "
        "dataset (judge calls cost money at real sizes).",
        'max_pairs: int = 0  # judge at most this many pairs per standard dataset (0: all)\n'
        'datasets: str = ""  # comma-separated preference datasets (default: all configured + synthetic)\n'
        + SFT_PARAM,
        setup_cell("04_dataset_value_gap", '{"sft_data": sft_data}'),
        [("code", 'names = vd.value_gaps.dataset_names(study, datasets)\n'
                  'gaps, dist = vd.value_gaps.dataset_gaps(study, max_pairs, datasets=names)\n'
                  'study.save_table(gaps, "gaps")\nstudy.save_table(dist, "distributions")'),
         ("md", "## Stance distributions of chosen and rejected answers"),
         ("code", 'title = study.title("Stances of chosen and rejected answers",\n'
                  '                    note=vd.value_gaps.gap_note(study, gaps))\n'
                  'study.save_figure(vd.figures.distribution_figure(dist, title), "distributions")'),
         look("For each dataset, chosen and rejected answers side by side.",
              "UltraFeedback and HH-RLHF: chosen and rejected share the same stance distribution.",
              "distributions"),
         ("md", "## Value gaps"),
         ("code", 'title = study.title("Value gap per dataset", note=vd.value_gaps.gap_note(study, gaps))\n'
                  'study.save_figure(vd.figures.gap_figure(gaps, title), "gaps")\n'
                  'gaps[gaps.topic == "overall"].round(3)'),
         look("Bars near 0 (a small gap) for standard data, near ±1 for synthetic data, with 95% CIs over "
              "pairs.", "A small gap for standard data.", "gaps"),
         ("md", "## Policy fit\n\nA trainer can separate pairs on tokens the policy never writes without "
                "moving what it says: then even a large value gap moves nothing. Here: the mean per-token "
                "log-probability of each dataset's chosen and rejected answers under the SFT model the "
                "preference stages start from, beside that of the model's own answers to the probes."),
         ("code", 'fit = vd.value_gaps.policy_fit_table(study, sft_data, names, max_pairs)\n'
                  'study.save_table(fit, "policy_fit")\nfit.round(2)'),
         look("Chosen and rejected should cost about as much per token as the model's own answers; a dataset "
              "flagged far off the policy cannot be expected to move it, whatever its value gap.",
              "Not reported (ours, `docs/method.md` §7).", "policy_fit")],
        'study.record(vd.records.dataset_gaps(gaps, dist, fit))')

    notebook(
        "05_ablations", "05 · Ablations: PPO's KL coefficient, DPO's β, SimPO's γ",
        "**Paper:** the algorithms' different responses to a large value gap come from their objectives: "
        "PPO's KL penalty anchors it to the SFT policy, DPO's β sets how far it may move, and SimPO's "
        "target margin γ matters little (M 0.34 vs 0.36 in its ablation).\n\nThis notebook sweeps each knob "
        "over three values (ours: 0.2×, 1× and 5× the size's KL coefficient; 0.5×, 1× and 5× its β; 0×, 1× "
        "and 2× its γ) on `ablation_data` from the SFT model `sft_data`, and shows M of each stance "
        "(overall profile) per value. The 1× runs are the main runs of notebook 03.",
        'ablation_data: str = "synthetic-support"  # a preference dataset (e.g. synthetic-oppose, hh-rlhf)\n'
        + SFT_PARAM,
        setup_cell("05_ablations", '{"ablation_data": ablation_data, "sft_data": sft_data}'),
        [("code", 'table = vd.analysis.ablations(study, ablation_data)\nstudy.save_table(table, "ablations")'),
         ("md", "## M per value"),
         ("code", 'title = study.title(f"Ablations on {ablation_data}")\n'
                  'study.save_figure(vd.figures.ablation_figure(table, title), "ablations")\n'
                  'columns = ["algo", "param", "value", "M_support", "M_neutral", "M_oppose"]\n'
                  'table[columns + ["eta_support", "eta_oppose"]].round(3)'),
         look("M of the overall profile per knob value, with paired bootstrap 95% CIs: a knob matters where "
              "the intervals of its values separate.",
              "SimPO's γ changes little (0.34 vs 0.36).", "ablations")],
        'study.record(vd.records.ablations(table))')

    notebook(
        "06_paper_tables", "06 · The paper's tables, ours beside them",
        "Gathers every run of the size (training and scoring only what is missing) into the paper's tables: "
        "SFT drift per dataset, preference drift on standard data, and the synthetic value-gap runs split "
        "by prior; then puts each number and claim the paper reports (from secondary sources) beside ours "
        "and says plainly where they agree, where not, and where this budget cannot tell. It starts with "
        "the positive controls: an instrument first proves it can see. At size `tiny` the study runs in a "
        "synthetic miniature world: agreement or disagreement there checks the pipeline, not the paper.",
        SFT_PARAM.replace("it starts from", "the preference stages start from") + '\n'
        'include_ablations: bool = True  # also gather (and train if missing) the ablation runs of 05\n'
        'include_capabilities: bool = True  # also check capabilities (notebook 07; cached lm-eval runs)',
        setup_cell("06_paper_tables", '{"sft_data": sft_data}',
                   ", include_ablations=include_ablations,\n                  include_capabilities=include_capabilities"),
        [("code", 'tables = vd.paper.paper_tables(study)\n'
                  'gaps, _ = vd.value_gaps.dataset_gaps(study)\n'
                  'ablation = vd.analysis.ablations(study) if include_ablations else None\n'
                  'capabilities = None\n'
                  'if include_capabilities:\n'
                  '    table = vd.capabilities.capability_table(study)\n'
                  '    capabilities = vd.capabilities.stage_summary(table)\n'
                  'for name, table in tables.items():\n'
                  '    wide = vd.paper.wide_formatted(table) if name != "synthetic" else None\n'
                  '    study.save_table(table, name, key="", latex=wide)'),
         ("md", "## First: can the instrument see?"),
         ("code", 'controls = vd.controls.positive_controls(study, sft_data)\n'
                  'study.save_table(controls, "controls", key="")\ncontrols.round(3)'),
         look("DPO and SimPO on the synthetic value-gap data must move the chosen stance (DPO by at least "
              "+0.10, SimPO by more than 0 with its CI excluding 0; `docs/method.md` §8). Only where they do "
              "is a null result below evidence; PPO is reported as measured. Where one fails, the comparison "
              "below gives no agree/differ verdict on what the judge measures: it says why instead.",
              "DPO moves strongly, SimPO moderately, PPO barely."),
         ("md", "## SFT (paper topics and the mean over topics)"),
         ("code", 'vd.paper.wide(tables["sft"])'),
         ("md", "## Preference optimization on standard data"),
         ("code", 'vd.paper.wide(tables["preference"])'),
         ("md", "## Synthetic value gap: the chosen stance's drift, by its prior after SFT"),
         ("code", 'synthetic = tables["synthetic"]\n'
                  'columns = ["algo", "setting", "prior", "prior_chosen", "M_chosen", "M_chosen_ci_low",\n'
                  '           "M_chosen_ci_high", "resolution", "eta_chosen"]\n'
                  'synthetic[synthetic.topic == "overall"][columns].round(3)'),
         ("md", "## Where we agree with the paper, and where not"),
         ("code", 'comparison = vd.paper.paper_comparison(tables, gaps, ablation, capabilities, controls)\n'
                  'study.save_table(comparison, "comparison", key="")\n'
                  'display(Markdown(vd.paper.comparison_markdown(comparison)))'),
         look("Each claim with the paper's number, ours with its CI, and a verdict; 'not resolved at this "
              "budget' where our interval covers both the paper's value and 0.",
              "The numbers come from secondary sources (the paper's body could not be read).", "comparison")],
        'study.record(vd.records.paper(comparison, controls, tables))')

    notebook(
        "07_capabilities", "07 · Capabilities before and after each stage",
        "**Paper:** post-training keeps the models' capabilities: they are checked on MMLU, HellaSwag, "
        "GPQA-Diamond and PIQA (from secondary sources: the claim is reported, its numbers and settings "
        "were not found).\n\nThis notebook evaluates the start (step 0) and the end (last checkpoint) of "
        "every stage of the study through lm-evaluation-harness: both SFT runs, and per algorithm in "
        "`algos` its runs on standard and synthetic preference data from the SFT model `sft_data` (trained "
        "and scored first where missing), on the tasks the params name (`capabilities.tasks`). The shipped "
        "real sizes use lm-eval's `mmlu`, `hellaswag`, "
        "`gpqa_diamond_zeroshot` and `piqa` (few-shot counts, metrics and the item budget in the "
        "`capabilities` section of the params; GPQA is gated on the hub: accept its terms and log in "
        "first; the notebook checks before any training that every task's data can be read). The tiny "
        "model knows none of those: it is checked on the tiny world's own task, "
        "`vd_tiny_topics` (pick the answer on the question's topic among four; chance 0.25). Results are "
        "cached per checkpoint and task: re-executing evaluates nothing.",
        SFT_PARAM.replace("it starts from", "the preference stages start from") + '\n'
        'algos: str = "all"  # algorithms whose runs are checked: all, or some of ppo, dpo, simpo',
        setup_cell("07_capabilities", '{"sft_data": sft_data, "algos": algos.replace(",", "+")}',
                   ", algos=algos"),
        [("code", 'runs = vd.capabilities.study_runs(study, sft_data, algos)\n'
                  'table = vd.capabilities.capability_table(study, runs)\n'
                  'summary = vd.capabilities.stage_summary(table)'),
         ("md", "## Scores at the start and end of each stage"),
         ("code", 'note = vd.capabilities.budget_note(study.cfg, study.smoke)\n'
                  'title = study.title("Capabilities at the start and end of each stage", note=note)\n'
                  'study.save_figure(vd.capabilities.figure(table, summary, title), "capabilities")'),
         look("Above, per task: each run's score at the start of its stage (open marker) and at its end "
              "(filled), ± lm-eval's standard error; the dashed line is chance. Below: the change end − start, "
              "± 2 standard errors of the paired difference (the same items at both ends); a red edge marks a "
              "stage that lost the task. Everything should sit well above chance, or the task cannot show "
              "forgetting at all. A preference run starts from the final SFT model, so its start repeats "
              "the end of SFT on `sft_data`. With the paper's tasks, look at MMLU and GPQA-Diamond (knowledge) "
              "after the synthetic value-gap stages, which train hardest on one stance.",
              "Capabilities are preserved (no numbers found).", "capabilities"),
         ("code", 'latex = vd.capabilities.latex_table(summary)\n'
                  'study.save_table(summary, "capabilities", latex=latex,\n'
                  '                 caption="Capability scores at the start and end of each stage")\nlatex'),
         ("md", "## The paper's statement, and ours\n\nOur verdict rule: a stage *loses* a task when its end "
                "scores below its start by more than 2 standard errors of the paired difference; the claim "
                "holds when no stage loses any task (the same rule as notebook 06's comparison)."),
         ("code", 'display(Markdown(vd.capabilities.verdict_markdown(summary)))')],
        'study.record(vd.records.capabilities(study, runs, table, summary))')


if __name__ == "__main__":
    main()
