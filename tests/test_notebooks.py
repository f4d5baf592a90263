"""The numbered notebooks: their parameters cells (what papermill and Colab users rely on), and every
notebook executed through papermill at size `tiny` on the smoke budget, its recorded numbers checked
(shapes, ranges, distributions, and M/eta recomputed with vd.score.metrics from the run's own profile.csv).

The executions share one runs folder, in notebook order, as `vd reproduce` does: later notebooks
reuse the runs earlier ones trained.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from vd.core.run import RunRecord
from vd.judge import LexiconJudge
from vd.score import metrics
from vd.score.outputs import read_scores
from vd.study import colab

ROOT = Path(__file__).resolve().parent.parent
NB_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(p.stem for p in NB_DIR.glob("[0-9][0-9]_*.ipynb"))
EXPECTED = ["00_probes", "01_sft_drift", "02_preference_drift", "03_value_gap", "04_dataset_value_gap",
            "05_ablations", "06_paper_tables", "07_capabilities"]
PAPERMILL = str(Path(sys.executable).parent / "papermill")


def read(name: str):
    return nbformat.read(NB_DIR / f"{name}.ipynb", as_version=4)


def parameter_cells(nb):
    return [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]


def declared(name: str) -> list[tuple[str, str]]:
    """(name, type) of each entry of the parameters cell, parsed as Python."""
    import ast

    tree = ast.parse(parameter_cells(read(name))[0].source)
    out = []
    for node in tree.body:
        assert isinstance(node, ast.AnnAssign), f"{name}: every parameter must be annotated: {ast.unparse(node)}"
        out.append((node.target.id, ast.unparse(node.annotation)))
    return out


# --- static checks --------------------------------------------------------------------------------------


def test_the_numbered_notebooks_are_all_there():
    assert NOTEBOOKS == EXPECTED


@pytest.mark.parametrize("name", EXPECTED)
def test_exactly_one_annotated_parameters_cell_with_size_first(name):
    nb = read(name)
    cells = parameter_cells(nb)
    assert len(cells) == 1 and cells[0].cell_type == "code"
    params = declared(name)
    assert cells[0].source.splitlines()[0].startswith('size: str = "tiny"')
    assert params[0] == ("size", "str")
    for line in cells[0].source.splitlines():
        assert "#" in line, f"{name}: parameter without a help comment: {line}"
    assert {"smoke", "runs_dir", "figures_dir", "overrides"} <= {p for p, _ in params}


@pytest.mark.parametrize("name", EXPECTED)
def test_committed_without_outputs_with_python3_kernel_and_colab_cell(name):
    nb = read(name)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name}: committed with outputs"
    intro, install = nb.cells[0], nb.cells[1]
    assert colab.badge(name) in intro.source.splitlines()
    assert install.cell_type == "code" and install.source == colab.install_cell()
    assert '"google.colab" in sys.modules' in install.source and "prepare(drive=True)" in install.source
    assert len(install.source.splitlines()) <= 16  # short: the work is in vd.study.colab
    assert nb.cells.index(parameter_cells(nb)[0]) == 3  # right after the Colab cell and its note


def test_the_shared_cells_agree_with_their_source_and_follow_the_repository_address(tmp_path):
    """The badge and install cell of every notebook are vd.study.colab's: syncing changes nothing; set an
    address and the sync writes a working badge and an install cell without the placeholder's stop."""
    import shutil

    assert colab.sync_notebooks(NB_DIR) == [], "run `python -m vd.study.colab` and commit the notebooks"
    for name in EXPECTED:
        shutil.copy(NB_DIR / f"{name}.ipynb", tmp_path)
    url = "https://github.com/someone/value-drifts"
    assert len(colab.sync_notebooks(tmp_path, url)) == len(EXPECTED)
    nb = nbformat.read(tmp_path / "03_value_gap.ipynb", as_version=4)
    assert ("(https://colab.research.google.com/github/someone/value-drifts/blob/main/notebooks/03_value_gap.ipynb)"
            in nb.cells[0].source)
    assert f'REPO = "{url}"' in nb.cells[1].source and "SystemExit" not in nb.cells[1].source
    assert nb.cells[2:] == read("03_value_gap").cells[2:]


@pytest.mark.parametrize("name", EXPECTED)
def test_notebooks_read_as_documents(name):
    """No line over 100 characters; every figure is followed by a cell saying what to look for; the
    notebooks use the public API (`import vd`) and end with their bookkeeping."""
    nb = read(name)
    for cell in nb.cells:
        for line in cell.source.splitlines():
            assert len(line) <= 100 or colab.is_badge_line(line), f"{name}: {len(line)}: {line}"
    sources = [c.source for c in nb.cells]
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and "save_figure(" in cell.source:
            assert nb.cells[i + 1].cell_type == "markdown" and "What to look for" in sources[i + 1], \
                f"{name}: cell {i} draws a figure with no note after it"
    body = [c for c in nb.cells[4:] if c.cell_type == "code"]
    assert all("from vd." not in c.source for c in body), f"{name}: import from the public API, `import vd`"
    assert "study.record(" in body[-1].source and all("study.record(" not in c.source for c in body[:-1])


@pytest.mark.parametrize("name", EXPECTED)
def test_papermill_help_notebook_lists_every_parameter(name):
    """The `papermill` command itself (its click entry point, in-process: a subprocess each costs seconds)."""
    from click.testing import CliRunner
    from papermill.cli import papermill as papermill_cli

    out = CliRunner().invoke(papermill_cli, ["--help-notebook", str(NB_DIR / f"{name}.ipynb")])
    assert out.exit_code == 0, out.output
    assert "Unable to parse" not in out.output
    for param, kind in declared(name):
        assert f"{param}: {kind}" in out.output, f"{name}: {param} missing from --help-notebook:\n{out.output}"


# --- executions -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny_world):
    base = tmp_path_factory.mktemp("nb")
    (base / "executed").mkdir()
    return {"runs": base / "runs", "figures": base / "figures", "out": base / "executed"}


def executed(env, name: str, **params) -> Path:
    """Where `execute` writes the executed copy (also when the execution fails)."""
    key = re.sub(r"[^\w.~+-]+", "_", "-".join(map(str, params.values())))  # papermill formats {...} in paths
    return env["out"] / f"{name}-{key or 'default'}.ipynb"


def execute(env, name: str, cwd: Path = NB_DIR, **params) -> Path:
    import papermill

    out = executed(env, name, **params)
    papermill.execute_notebook(str(NB_DIR / f"{name}.ipynb"), str(out), kernel_name="python3", cwd=str(cwd),
                               progress_bar=False, parameters={"smoke": True, "runs_dir": str(env["runs"]),
                                                               "figures_dir": str(env["figures"]), **params})
    return out


def records(env, name: str) -> dict:
    return json.loads((env["figures"] / "tiny-smoke" / f"{name}.json").read_text())


def profile_of(run) -> pd.DataFrame:
    """A tiny run's profile as scoring wrote it (by the tiny world's lexicon judge)."""
    return read_scores(RunRecord.read(run), LexiconJudge().key, ("profile",))["profile"]


def check_run_record(rec: dict) -> pd.DataFrame:
    """A run's recorded M/eta equal vd.score.metrics recomputed from its profile.csv; ranges hold."""
    run = Path(rec["run_dir"])
    profile = profile_of(run)
    assert ((profile["p"] >= 0) & (profile["p"] <= 1)).all()
    assert np.allclose(profile.groupby(["step", "topic"])["p"].sum(), 1.0)
    assert (profile["ci_low"] <= profile["p"] + 1e-9).all() and (profile["p"] <= profile["ci_high"] + 1e-9).all()
    assert profile["step"].nunique() == rec["n_checkpoints"] >= 3
    table = metrics.drift_table(profile)
    table = table[table["eta_reading"] == "extremum95"]
    assert set(rec["M"]) == set(table["topic"]) and len(rec["M"]) == 12  # 11 topics + overall
    for r in table.itertuples():
        assert rec["M"][r.topic][r.stance] == pytest.approx(r.M, abs=1e-9)
        assert -1 <= r.M <= 1
        got = rec["eta"][r.topic][r.stance]
        assert (got is None and math.isnan(r.eta)) or got == pytest.approx(r.eta, abs=1e-9)
        assert got is None or 0 < got <= 1
    for side in ("start", "end"):
        assert sum(rec[side].values()) == pytest.approx(1.0)
    return table


@pytest.mark.slow
def test_00_probes(env):
    execute(env, "00_probes")
    rec = records(env, "00_probes")["all"]
    assert rec["n_probes"] == 550 and rec["n_used"] == 22  # smoke: 2 prompts per topic
    assert all(v["in_set"] == 50 and v["used"] == 2 for v in rec["per_topic"].values()) and len(rec["per_topic"]) == 11
    assert rec["per_direction"]["pro"] == {"in_set": 275, "used": 11} == rec["per_direction"]["contra"]
    assert rec["judge_accuracy_on_examples"] == 1.0
    figures = env["figures"] / "tiny-smoke"
    for stem in ("00_probes-counts", "00_probes-examples", "00_probes-judge_examples"):
        assert (figures / f"{stem}.csv").is_file() and (figures / f"{stem}.tex").is_file()
    assert (figures / "00_probes-counts.png").is_file() and (figures / "00_probes-counts.pdf").is_file()


@pytest.mark.slow
def test_01_sft_drift(env):
    execute(env, "01_sft_drift", sft_data="alpaca")
    rec = records(env, "01_sft_drift")["alpaca"]
    assert rec["params"] == {"size": "tiny", "sft_data": "alpaca", "smoke": True} and "SMOKE" in rec["budget_note"]
    check_run_record(rec["sft"])
    assert Path(rec["sft"]["run_dir"]).name == "sft-alpaca"
    assert set(rec["final_profiles"]) == {"wildchat", "alpaca"}
    for prof in (*rec["final_profiles"].values(), rec["base_profile"]):
        assert sum(prof.values()) == pytest.approx(1.0)
    assert rec["final_profiles"]["alpaca"] == rec["sft"]["end"]
    csv = pd.read_csv(env["figures"] / "tiny-smoke" / "01_sft_drift-alpaca-drift.csv")
    assert len(csv) == 12 and {"M_support", "M_support_ci_low", "eta_oppose"} <= set(csv.columns)
    assert (csv["M_support_ci_low"] <= csv["M_support"] + 1e-9).all()
    for stem in ("01_sft_drift-alpaca-trajectories", "01_sft_drift-alpaca-drift", "01_sft_drift-profiles"):
        assert (env["figures"] / "tiny-smoke" / f"{stem}.png").is_file()


@pytest.mark.slow
def test_02_preference_drift(env):
    execute(env, "02_preference_drift", algo="dpo", pref_data="hh-rlhf")
    rec = records(env, "02_preference_drift")["dpo-hh-rlhf-alpaca"]
    check_run_record(rec["run"])
    run = Path(rec["run"]["run_dir"])
    assert run.name == "dpo-hh-rlhf-from-sft-alpaca"
    info = json.loads((run / "run.json").read_text())
    assert info["stage"] == "dpo" and info["complete"] and info["start_model"] == "sft-alpaca/merged"
    # a training override gets its own run folder, figures and record; the SFT run it starts from is reused
    execute(env, "02_preference_drift", algo="dpo", pref_data="hh-rlhf", overrides="dpo.beta=0.3")
    recs = records(env, "02_preference_drift")
    (key,) = [k for k in recs if k.startswith("dpo-hh-rlhf-alpaca~")]
    assert recs[key]["overrides"]["dpo.beta"] == 0.3 and "dpo-hh-rlhf-alpaca" in recs
    other = Path(recs[key]["run"]["run_dir"])
    assert other.name.startswith("dpo-hh-rlhf-from-sft-alpaca~") and other != run
    assert json.loads((other / "run.json").read_text())["start_model"] == info["start_model"]
    assert (env["figures"] / "tiny-smoke" / f"02_preference_drift-{key}-trajectories.png").is_file()
    check_run_record(recs[key]["run"])


@pytest.mark.slow
@pytest.mark.parametrize("where", ["root", "notebooks"])
def test_03_value_gap_with_papermill_cli_from_root_and_from_notebooks(env, where, tmp_path):
    """`papermill notebooks/03_value_gap.ipynb out.ipynb -p algo simpo`, from the root and from notebooks/."""
    cwd, nb = (ROOT, "notebooks/03_value_gap.ipynb") if where == "root" else (NB_DIR, "03_value_gap.ipynb")
    cmd = [PAPERMILL, nb, str(tmp_path / "out.ipynb"), "-p", "algo", "simpo", "-p", "smoke", "True",
           "-p", "runs_dir", str(env["runs"]), "-p", "figures_dir", str(env["figures"])]
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    rec = records(env, "03_value_gap")["simpo-support-alpaca"]
    table = check_run_record(rec["run"])
    assert Path(rec["run"]["run_dir"]).name == "simpo-synthetic-support-from-sft-alpaca"
    m = table.set_index(["topic", "stance"])["M"]
    assert rec["chosen_M_overall"]["support"] == pytest.approx(m[("overall", "support")])
    # support and oppose: one high and one low, or both tied within the SFT run's resolution
    assert sorted(rec["prior_overall"].values()) in (["high", "low"], ["tied", "tied"])
    assert rec["gap_overall"]["synthetic-support"]["support"] > 0.5  # chosen supports, rejected opposes
    assert rec["gap_overall"]["synthetic-oppose"]["support"] < -0.5
    split = pd.read_csv(env["figures"] / "tiny-smoke" / "03_value_gap-simpo-prior_split.csv")
    assert len(split) == 2 * 12 and set(split["prior"]) <= {"high", "low", "tied"}
    gap = split["prior_chosen"] - split["prior_rejected"]
    tied = gap.abs() <= split["prior_resolution"]
    assert ((split["prior"] == "tied") == tied).all() and ((split["prior"] == "high") == (~tied & (gap > 0))).all()
    executed = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert executed.metadata.papermill.parameters["algo"] == "simpo"


@pytest.mark.slow
def test_04_dataset_value_gap(env):
    execute(env, "04_dataset_value_gap")
    rec = records(env, "04_dataset_value_gap")["alpaca"]
    gaps = rec["gap_overall"]
    assert set(gaps) == {"ultrafeedback", "hh-rlhf", "synthetic-support", "synthetic-oppose"}
    for g in gaps.values():
        assert sum(g.values()) == pytest.approx(0.0, abs=1e-9)  # differences of two distributions
        assert all(-1 <= v <= 1 for v in g.values())
    for name in ("ultrafeedback", "hh-rlhf"):  # the tiny world's standard pairs share a stance
        assert max(abs(v) for v in gaps[name].values()) < 0.05
        assert rec["n_pairs"][name] > 100
    assert gaps["synthetic-support"]["support"] > 0.5 > -0.5 > gaps["synthetic-oppose"]["support"]
    for row in rec["distributions"]:
        assert sum(row[s] for s in ("support", "neutral", "oppose")) == pytest.approx(1.0)
    # policy fit: the policy's own answers, then chosen and rejected of every dataset, all on its support
    fit = pd.DataFrame(rec["policy_fit"])
    assert fit["data"].iloc[0] == "policy" and len(fit) == 1 + 2 * len(gaps)
    assert set(fit["data"].iloc[1:]) == set(gaps) and not fit["far_off"].any()
    assert (fit["gap"].iloc[1:].abs() < 0.5).all() and (fit["mean_logprob"] < 0).all()


@pytest.mark.slow
def test_05_ablations(env):
    execute(env, "05_ablations")
    rec = records(env, "05_ablations")["synthetic-support-alpaca"]
    table = pd.DataFrame(rec["ablations"])
    assert len(table) == 9 and table.groupby("algo").size().to_dict() == {"dpo": 3, "ppo": 3, "simpo": 3}
    assert table.groupby("algo")["default"].sum().to_dict() == {"dpo": 1, "ppo": 1, "simpo": 1}
    assert table["run"].nunique() == 9
    runs = env["runs"] / "smoke" / "tiny"
    for r in table.itertuples():
        profile = profile_of(runs / r.run)
        m = metrics.drift_magnitude(profile).set_index(["topic", "stance"])["M"]
        for s in ("support", "neutral", "oppose"):
            assert getattr(r, f"M_{s}") == pytest.approx(m[("overall", s)], abs=1e-9)
            assert getattr(r, f"M_{s}_ci_low") <= getattr(r, f"M_{s}") + 1e-9 <= getattr(r, f"M_{s}_ci_high") + 2e-9


@pytest.mark.slow
def test_06_paper_tables(env):
    execute(env, "06_paper_tables")
    rec = records(env, "06_paper_tables")["alpaca"]
    controls = pd.DataFrame(rec["controls"])  # shown first; the smoke budget is too short to pass them
    assert len(controls) == 6 and set(controls["algo"]) == {"ppo", "dpo", "simpo"}
    assert set(controls["verdict"]) <= {"passes", "FAILS", "reported"}
    assert (controls[controls.algo == "ppo"]["verdict"] == "reported").all()
    assert ((controls["ci_low"] <= controls["M"] + 1e-9) & (controls["M"] <= controls["ci_high"] + 1e-9)).all()
    comparison = pd.DataFrame(rec["comparison"])
    assert len(comparison) >= 10
    assert set(comparison["verdict"]) <= {"agrees", "differs", "not resolved at this budget", "n/a",
                                          "no verdict: positive controls failed"}
    if (controls["verdict"] == "FAILS").any():  # no claim the judge measures gets a verdict
        judged = comparison[~comparison["claim"].str.startswith("post-training keeps capabilities")]
        assert set(judged["verdict"]) <= {"no verdict: positive controls failed", "n/a"}
        assert judged["note"].str.contains("positive controls failed").any()
    assert sum(rec["verdicts"].values()) == len(comparison)
    figures = env["figures"] / "tiny-smoke"
    sft = pd.read_csv(figures / "06_paper_tables-sft.csv")
    assert set(sft["data"]) == {"wildchat", "alpaca"}
    pref = pd.read_csv(figures / "06_paper_tables-preference.csv")
    assert set(zip(pref["stage"], pref["data"])) == {(a, d) for a in ("ppo", "dpo", "simpo")
                                                     for d in ("ultrafeedback", "hh-rlhf")}
    # every gathered M is the run's own profile difference
    for run, part in pref.groupby("run"):
        profile = profile_of(env["runs"] / "smoke" / "tiny" / run)
        m = metrics.drift_magnitude(profile).set_index(["topic", "stance"])["M"]
        assert np.allclose(part["M"], [m[(t, s)] for t, s in zip(part["topic"], part["stance"])])
    syn = pd.read_csv(figures / "06_paper_tables-synthetic.csv")
    assert len(syn) == 3 * 2 * 12
    assert (figures / "06_paper_tables-comparison.tex").is_file()


@pytest.mark.slow
def test_07_capabilities(env):
    """Every run's start and end through lm-eval on the tiny task; a second execution evaluates nothing."""
    execute(env, "07_capabilities")
    rec = records(env, "07_capabilities")["alpaca-all"]
    assert rec["tasks"] == ["vd_tiny_topics"] and "capability budget: ≤ 220 of 440 items" in rec["budget"]
    assert len(rec["runs"]) == 14 and sum(r.startswith("sft-") for r in rec["runs"]) == 2
    results = pd.DataFrame(rec["results"])
    assert len(results) == 2 * 14 and set(results["position"]) == {"start", "end"}
    assert (results["n"] == 220).all() and (results["chance"] == 0.25).all()
    assert results["value"].between(0, 1).all() and (results["stderr"] >= 0).all()
    runs = env["runs"] / "smoke" / "tiny"
    for r in results.itertuples():  # start = step 0, end = the run's last checkpoint
        steps = [c["step"] for c in json.loads((runs / r.run / "run.json").read_text())["checkpoints"]]
        assert r.step == (0 if r.position == "start" else max(steps))
    starts = results[results["position"] == "start"]
    assert starts[starts["stage"] == "sft"]["value"].nunique() == 1  # both SFT runs start from the base model
    assert starts[starts["stage"] != "sft"]["value"].nunique() == 1  # every preference run from the same SFT model
    assert starts["value"].min() > 0.8  # the base and the SFT model read topics far above chance
    summary = pd.DataFrame(rec["summary"])
    assert len(summary) == 14
    for r in summary.itertuples():
        part = results[(results["run"] == r.run)].set_index("position")["value"]
        assert r.start == part["start"] and r.end == part["end"] and r.delta == pytest.approx(r.end - r.start)
        assert r.lost == (r.delta < -2 * r.delta_se if r.delta_se > 0 else r.delta < 0)
    assert rec["verdict"]["kept"] == (not summary["lost"].any()) and rec["verdict"]["n_pairs"] == 14
    figures = env["figures"] / "tiny-smoke"
    csv = pd.read_csv(figures / "07_capabilities-alpaca-all-capabilities.csv")
    assert np.allclose(csv["delta"], summary["delta"])
    for ext in ("png", "pdf", "tex"):
        assert (figures / f"07_capabilities-alpaca-all-capabilities.{ext}").is_file()
    # re-executing the notebook evaluates nothing: every result comes from the cache
    execute(env, "07_capabilities")
    again = records(env, "07_capabilities")["alpaca-all"]
    assert again["evaluated_now"] == 0 and again["results"] == rec["results"]


@pytest.mark.slow
def test_a_bad_parameter_value_fails_with_a_clear_message(env):
    from papermill.exceptions import PapermillExecutionError

    with pytest.raises(PapermillExecutionError) as e:
        execute(env, "03_value_gap", algo="rlhf")
    assert "parameter algo: expected one of ppo, dpo, simpo, got 'rlhf'" in str(e.value)
    assert error_output(executed(env, "03_value_gap", algo="rlhf")) == [
        "error: parameter algo: expected one of ppo, dpo, simpo, got 'rlhf'"]


def error_output(path: Path) -> list[str]:
    """The traceback lines of the executed notebook's error output (one error: papermill stops there)."""
    nb = nbformat.read(path, as_version=4)
    (error,) = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    return error.traceback


def papermill_cli(name: str, out: Path, *params: str, env=None) -> subprocess.CompletedProcess:
    cmd = [PAPERMILL, f"notebooks/{name}.ipynb", str(out), "--cwd", "notebooks"]
    for k, v in zip(params[::2], params[1::2]):
        cmd += ["-p", k, v]
    if env is not None:
        cmd += ["-p", "runs_dir", str(env["runs"]), "-p", "figures_dir", str(env["figures"])]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_papermill_parameters_are_coerced_to_their_annotations_or_refused_in_one_line(env, tmp_path):
    """`-p smoke false` arrives as the text "false" (truthy): it now means False. `-p smoke maybe` and
    `-p max_pairs -5` exit non-zero with one error line, before anything is computed or written."""
    done = papermill_cli("00_probes", tmp_path / "false.ipynb", "smoke", "false", env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    rec = json.loads((env["figures"] / "tiny" / "00_probes.json").read_text())["all"]
    assert rec["params"]["smoke"] is False and rec["n_used"] == 220 and "SMOKE" not in rec["budget_note"]
    done = papermill_cli("00_probes", tmp_path / "maybe.ipynb", "smoke", "maybe", env=env)
    assert done.returncode != 0
    line = "error: parameter smoke: expected true or false (True/False, true/false, 1/0), got 'maybe'"
    assert done.stderr.rstrip().endswith(line) and error_output(tmp_path / "maybe.ipynb") == [line]
    before = set((env["figures"] / "tiny-smoke").glob("04_*"))
    done = papermill_cli("04_dataset_value_gap", tmp_path / "minus.ipynb", "smoke", "True", "max_pairs", "-5", env=env)
    assert done.returncode != 0
    line = "error: parameter max_pairs: expected an integer >= 0 (0: all), got -5"
    assert done.stderr.rstrip().endswith(line) and error_output(tmp_path / "minus.ipynb") == [line]
    assert set((env["figures"] / "tiny-smoke").glob("04_*")) == before  # the default outputs are untouched


def outputs_text(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    parts = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            parts.append(o.get("text", "") if o.output_type == "stream" else
                         "\n".join(o.get("data", {}).get(k, "") for k in ("text/plain", "text/markdown")))
    return "\n".join(parts)


@pytest.mark.slow
def test_only_the_datasets_the_params_name_are_trained_and_compared(env, monkeypatch):
    """`data.sft.wildchat: null` removes WildChat: notebook 01 trains and compares Alpaca alone (it trained
    both, then failed); `data.preference.hh-rlhf: null` the same for notebooks 02, 04 and 06."""
    monkeypatch.delenv("TRL_EXPERIMENTAL_SILENCE", raising=False)  # kernels as a user starts them (noise test below)
    out = execute(env, "01_sft_drift", sft_data="alpaca", overrides="data.sft.wildchat=null")
    recs = records(env, "01_sft_drift")
    (key,) = [k for k in recs if k.startswith("alpaca~")]
    assert set(recs[key]["final_profiles"]) == {"alpaca"}
    text = outputs_text(out)
    assert "  sft-alpaca (" in text and "sft-wildchat" not in text
    assert text.count("skipped, as the params remove them: data.sft.wildchat") == 1
    removed = "data.preference.hh-rlhf=null"
    out = execute(env, "02_preference_drift", algo="dpo", pref_data="ultrafeedback", overrides=removed)
    assert "hh-rlhf" not in outputs_text(out).replace("skipped, as the params remove them: data.preference.hh-rlhf", "")
    execute(env, "04_dataset_value_gap", overrides=removed)
    (key,) = [k for k in records(env, "04_dataset_value_gap") if "~" in k]
    assert set(records(env, "04_dataset_value_gap")[key]["gap_overall"]) == {
        "ultrafeedback", "synthetic-support", "synthetic-oppose"}
    execute(env, "06_paper_tables", overrides=removed, include_ablations=False, include_capabilities=False)
    (key,) = [k for k in records(env, "06_paper_tables") if "~" in k]
    assert not [r for r in records(env, "06_paper_tables")[key]["runs"] if "hh-rlhf" in r]


@pytest.mark.slow
def test_notebook_06_stops_before_training_on_a_capability_dataset_it_cannot_read(env, tmp_path, monkeypatch):
    from papermill.exceptions import PapermillExecutionError

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "empty-cache"))  # the kernel inherits it
    fresh = {**env, "runs": tmp_path / "runs"}
    mmlu = {"overrides": "capabilities.tasks.mmlu={num_fewshot: 0, metric: acc}"}
    with pytest.raises(PapermillExecutionError):
        execute(fresh, "06_paper_tables", **mmlu)
    (line,) = error_output(executed(fresh, "06_paper_tables", **mmlu))
    assert line.startswith("error: ") and "capabilities.tasks.mmlu: reads the dataset cais/mmlu" in line
    assert not list((tmp_path / "runs").rglob("run.json"))  # nothing trained


@pytest.mark.slow
def test_executed_notebooks_list_their_runs_first_and_hold_no_library_noise(env):
    """Every execution above: the runs listed before any trains; no "Loading weights" bars, no TRL
    experimental notice, no warning about the libraries' internals a user cannot act on."""
    executed = sorted(env["out"].glob("*.ipynb"))
    assert executed
    for path in executed:
        text = outputs_text(path)
        for noise in ("Loading weights", "IProgress", "TRL_EXPERIMENTAL_SILENCE", "Passing `generation_config`"):
            assert noise not in text, f"{path.name}: {noise}"
        if "training " in text:
            assert text.index("runs this notebook uses") < text.index("training "), path.name
