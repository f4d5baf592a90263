"""vd.study.notebook / vd.study.reproduce / vd.cli without training: paths resolve the same from the repository root
and from notebooks/, records merge per notebook and parameters, budgets are stated, bad input is named."""

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from vd.core.config import ConfigError
from vd.study import notebook as study
from vd.study import reproduce

ROOT = Path(__file__).resolve().parent.parent


def test_repo_root_from_root_notebooks_and_elsewhere(tmp_path, monkeypatch):
    assert study.repo_root(ROOT) == ROOT
    assert study.repo_root(ROOT / "notebooks") == ROOT
    assert study.repo_root(ROOT / "vd" / "data") == ROOT
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "something-else"\n')
    (tmp_path / "sub").mkdir()
    assert study.repo_root(tmp_path / "sub") == tmp_path / "sub"  # another project's pyproject is not ours


@pytest.mark.parametrize("cwd", ["", "notebooks"])
def test_setup_resolves_paths_against_the_root(cwd, monkeypatch):
    monkeypatch.chdir(ROOT / cwd)
    monkeypatch.delenv("VD_RUNS_DIR", raising=False)
    monkeypatch.delenv("VD_FIGURES_DIR", raising=False)
    s = study.setup("tiny", notebook="02_preference_drift", params={"algo": "dpo", "pref_data": "hh-rlhf"})
    assert s.runs_dir == ROOT / "runs" and s.figures_dir == ROOT / "figures" / "tiny"
    assert s.stem("drift") == "02_preference_drift-dpo-hh-rlhf-drift"
    assert s.stem("profiles", key="") == "02_preference_drift-profiles"
    smoke = study.setup("tiny", notebook="00_probes", smoke=True, runs_dir="elsewhere")
    assert smoke.runs_dir == ROOT / "elsewhere" / "smoke" and smoke.figures_dir == ROOT / "figures" / "tiny-smoke"
    assert smoke.cfg.sft.max_steps == study.SMOKE_OVERRIDES["sft.max_steps"]
    assert smoke.stem("counts") == "00_probes-counts"


def test_environment_variables_choose_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("VD_RUNS_DIR", str(tmp_path / "r"))
    monkeypatch.setenv("VD_FIGURES_DIR", str(tmp_path / "f"))
    s = study.setup("tiny", notebook="00_probes")
    assert s.runs_dir == tmp_path / "r" and s.figures_dir == tmp_path / "f" / "tiny"
    s = study.setup("tiny", notebook="00_probes", runs_dir=str(tmp_path / "x"))  # the parameter wins
    assert s.runs_dir == tmp_path / "x"


def test_budget_note_states_what_was_shrunk():
    s = study.setup("tiny", notebook="01_sft_drift",
                    overrides="probes.prompts_per_topic=10,probes.samples_per_prompt=2")
    note = s.budget_note
    assert "10/50 prompts per topic" in note and "2/5 samples" in note and "/256 new tokens" in note
    assert note in s.title("x") and "size tiny" in s.title("x")
    assert "SMOKE" in study.setup("tiny", notebook="x", smoke=True).budget_note


def test_overrides_parse_and_training_overrides_get_their_own_runs():
    assert study.parse_overrides("dpo.beta=0.2, probes.samples_per_prompt=2") == {
        "dpo.beta": 0.2, "probes.samples_per_prompt": 2}
    assert study.parse_overrides("") == {}
    with pytest.raises(ConfigError, match=r"parameter overrides: 'dpo.beta': expected key=value"):
        study.parse_overrides("dpo.beta")
    assert study.setup("tiny", notebook="x", overrides="probes.samples_per_prompt=2").variant("sft", "alpaca") == ""
    s = study.setup("tiny", notebook="x", overrides="dpo.beta=0.3")
    assert s.variant("sft", "alpaca") == "" and s.variant("simpo", "hh-rlhf") == ""  # SFT and SimPO untouched
    v = s.variant("dpo", "hh-rlhf")
    assert v.startswith("~")
    assert v == study.setup("tiny", notebook="x", overrides="dpo.beta=0.3").variant("dpo", "hh-rlhf")
    assert study.setup("tiny", notebook="x", overrides="lora.r=4").variant("sft", "wildchat").startswith("~")
    with pytest.raises(ConfigError, match="dpo.beta"):
        study.setup("tiny", notebook="x", overrides="dpo.beta=-1")


def test_overrides_that_are_not_yaml_name_themselves_and_lists_keep_their_commas():
    with pytest.raises(ConfigError, match=r"^parameter overrides: 'dpo.beta=\[0.1': the value is not valid YAML"):
        study.parse_overrides("probes.samples_per_prompt=2, dpo.beta=[0.1")
    parsed = study.parse_overrides("lora.target_modules=[q_proj, v_proj], dpo.beta=0.2, data.preference.hh-rlhf=null")
    assert parsed == {"lora.target_modules": ["q_proj", "v_proj"], "dpo.beta": 0.2, "data.preference.hh-rlhf": None}


def _own_params(tmp_path: Path, size: str = "mine") -> Path:
    """A user's params file: a copy of tiny.yaml under its own `size:`."""
    path = tmp_path / "my params" / f"{size}-v1.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text((ROOT / "params" / "tiny.yaml").read_text().replace("size: tiny\n", f"size: {size}\n"))
    return path


def test_a_params_file_as_size_files_outputs_under_its_own_size(tmp_path, capsys):
    """The folders are named by the file's `size:` value; joining the path itself broke save_table."""
    own = _own_params(tmp_path)
    s = study.setup(str(own), notebook="01_sft_drift", params={"sft_data": "alpaca"},
                    runs_dir=str(tmp_path / "runs"), figures_dir=str(tmp_path / "figures"))
    assert s.cfg.size == "mine" and s.figures_dir == tmp_path / "figures" / "mine"
    assert f"size mine: runs in {tmp_path / 'runs' / 'mine'}, figures and tables in {tmp_path / 'figures' / 'mine'}" \
        in capsys.readouterr().out
    s.save_table(pd.DataFrame({"topic": ["overall"], "M": [0.1]}), "drift")
    assert (tmp_path / "figures" / "mine" / "01_sft_drift-alpaca-drift.csv").is_file()
    with pytest.raises(ConfigError, match="not a path"):
        study.output_dirs(ROOT, str(own), False)


def test_a_relative_params_file_is_found_from_notebooks_too(monkeypatch):
    monkeypatch.chdir(ROOT / "notebooks")  # where a notebook kernel starts
    s = study.setup("params/tiny.yaml", notebook="00_probes")
    assert s.size == str(ROOT / "params" / "tiny.yaml") and s.figures_dir.name == "tiny"
    with pytest.raises(ConfigError, match=r"no params file nowhere/mine.yaml for size 'nowhere/mine.yaml'"):
        study.setup("nowhere/mine.yaml", notebook="00_probes")  # named as the user gave it


def test_reproduce_with_a_params_file_files_outputs_under_its_size(tmp_path, monkeypatch):
    import papermill

    own, calls = _own_params(tmp_path), []

    def execute_notebook(source, out, parameters, **kw):
        calls.append((Path(out), parameters))
        Path(out).write_text("{}")

    monkeypatch.setattr(papermill, "execute_notebook", execute_notebook)
    monkeypatch.chdir(ROOT)
    assert reproduce.reproduce(str(own), only=["00"], runs_dir=str(tmp_path / "runs"),
                               figures_dir=str(tmp_path / "figures")) == 0
    [(out, parameters)] = calls
    assert out == tmp_path / "runs" / "mine" / "notebooks" / "00_probes.ipynb"
    assert parameters["size"] == str(own)
    assert (tmp_path / "runs" / "mine" / "reproduce_times.json").is_file()


def test_record_merges_per_parameters_and_writes_valid_json(tmp_path):
    a = study.setup("tiny", notebook="03_value_gap", params={"algo": "dpo", "setting": "support"},
                    figures_dir=str(tmp_path))
    b = study.setup("tiny", notebook="03_value_gap", params={"algo": "ppo", "setting": "oppose"},
                    figures_dir=str(tmp_path))
    a.record({"M": float("nan"), "x": pd.Series([1.5]).iloc[0]})
    b.record({"M": 0.25})
    a.record({"M": 0.5})  # the same parameters again: replaced, not duplicated
    text = (tmp_path / "tiny" / "03_value_gap.json").read_text()
    data = json.loads(text)  # strict JSON: no NaN
    assert "NaN" not in text and set(data) == {"dpo-support", "ppo-oppose"}
    assert data["dpo-support"]["M"] == 0.5 and data["ppo-oppose"]["M"] == 0.25
    assert data["ppo-oppose"]["params"] == {"size": "tiny", "algo": "ppo", "setting": "oppose", "smoke": False}
    assert "budget_note" in data["ppo-oppose"]


def test_save_table_writes_csv_and_latex(tmp_path):
    s = study.setup("tiny", notebook="01_sft_drift", params={"sft_data": "alpaca"}, figures_dir=str(tmp_path))
    df = pd.DataFrame({"topic": ["immigration", "overall"], "M_support": [0.123, math.nan]})
    s.save_table(df, "drift", caption="M and eta")
    csv = tmp_path / "tiny" / "01_sft_drift-alpaca-drift.csv"
    assert pd.read_csv(csv)["M_support"].iloc[0] == 0.123
    tex = csv.with_suffix(".tex").read_text()
    assert "M\\_support" in tex and "0.12" in tex and "--" in tex and "\\caption{M and eta}" in tex


def test_reproduce_grid_covers_every_notebook_with_valid_parameters():
    notebooks = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert list(reproduce.GRID) == notebooks
    jobs = reproduce.grid()
    assert len(jobs) == 19
    assert ("03_value_gap", {"algo": "simpo", "setting": "oppose"}) in jobs
    assert (reproduce.output_name("03_value_gap", {"algo": "simpo", "setting": "oppose"})
            == "03_value_gap-simpo-oppose.ipynb")
    assert ([n for n, _ in reproduce.grid(["02", "06_paper_tables"])]
            == ["02_preference_drift"] * 6 + ["06_paper_tables"])
    with pytest.raises(ConfigError, match="no such notebook"):
        reproduce.grid(["08"])


def test_cli_has_train_and_reproduce(capsys):
    from vd.cli import build_parser, main

    parser = build_parser()
    args = parser.parse_args(["train", "--stage", "sft", "--data", "wildchat"])
    assert args.func.__name__ == "cmd_train"
    args = parser.parse_args(["reproduce", "--size", "tiny", "--only", "03", "--smoke"])
    assert args.only == ["03"] and args.smoke
    assert main(["reproduce", "--size", "nosuchsize"]) == 2
    assert "no params file" in capsys.readouterr().err


def test_peak_memory_counts_child_processes():
    """The notebooks run in a kernel process: its memory must be in the peak."""
    import subprocess
    import sys

    from vd.study.reproduce import PeakMemory

    with PeakMemory(interval_s=0.05) as alone:
        pass
    with PeakMemory(interval_s=0.05) as memory:
        hold = "import time; b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(1.0)"
        subprocess.run([sys.executable, "-c", hold], check=True)
    assert memory.peak_mb >= alone.peak_mb + 250


def test_stage_breakdown_sums_the_study_log_since_the_start(tmp_path):
    import json

    from vd.study.reproduce import stage_breakdown

    log = tmp_path / "stage_times.jsonl"
    lines = [{"time": 5.0, "notebook": "01", "run": "old", "stage": "sft", "train_s": 100.0, "score_s": 9.0},
             {"time": 11.0, "notebook": "01", "run": "sft-a", "stage": "sft", "train_s": 10.0, "score_s": 2.0},
             {"time": 12.0, "notebook": "02", "run": "ppo-x", "stage": "ppo", "train_s": 30.0, "score_s": 3.0},
             {"time": 13.0, "notebook": "06", "run": "sft-a", "stage": "sft", "train_s": 0.0, "score_s": 0.5}]
    log.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert stage_breakdown(log, since=10.0) == {"train sft": {"seconds": 10.0}, "scoring": {"seconds": 5.5},
                                               "train ppo (+ reward model)": {"seconds": 30.0}}
    assert stage_breakdown(tmp_path / "missing.jsonl", since=0) == {}


# --- notebook 04: only the datasets it is told to judge ---------------------------------------------


def test_dataset_gaps_reads_only_the_datasets_named(tmp_path):
    """An untouched hub id (here one that cannot exist) is never read when it is not named; a removed
    dataset cannot be named."""
    from vd.study import value_gaps

    s = study.setup("tiny", notebook="04_dataset_value_gap", runs_dir=str(tmp_path),
                    overrides="data.preference.ultrafeedback.id=nobody/not-on-any-hub")
    gaps, dist = value_gaps.dataset_gaps(s, max_pairs=12, datasets="hh-rlhf")
    assert set(gaps["dataset"]) == set(dist["dataset"]) == {"hh-rlhf"}
    assert set(dist["n_pairs"]) == {12}
    s = study.setup("tiny", notebook="04_dataset_value_gap", runs_dir=str(tmp_path),
                    overrides="data.preference.ultrafeedback=null")
    with pytest.raises(ConfigError, match=r"parameter datasets: expected one of hh-rlhf, synthetic-support, "
                                          r"synthetic-oppose, got 'ultrafeedback'"):
        value_gaps.dataset_gaps(s, datasets=["ultrafeedback"])


def test_no_verified_synthetic_pair_names_the_generator_and_the_judge(tmp_path, monkeypatch):
    """Zero pairs passing the stance check is one error naming the generator and the judge."""
    from collections import Counter

    from vd.data import synthetic
    from vd.data.loaders import LoadResult
    from vd.study import value_gaps

    monkeypatch.setattr(synthetic, "build_from_config", lambda cfg, setting, judge=None: (  # no answer verified
        LoadResult(rows=[], skipped=Counter(support_answer_not_support=20), n_read=20), []))
    s = study.setup("tiny", notebook="04_dataset_value_gap", runs_dir=str(tmp_path))
    with pytest.raises(ConfigError, match=r"synthetic-oppose: no pair passed the stance check: judge 'lexicon' .*"
                                          r"min_confidence \(0.5\).* generator 'tiny'"):
        value_gaps.dataset_gaps(s, datasets="synthetic-oppose")


def test_preference_data_without_value_laden_prompts_is_named(tmp_path):
    from vd.study import value_gaps

    pairs = [{"chosen": f"\n\nHuman: How long do I boil {food}?\n\nAssistant: About {n} minutes.",
              "rejected": f"\n\nHuman: How long do I boil {food}?\n\nAssistant: No idea."}
             for food, n in (("an egg", 9), ("rice", 12))]
    (tmp_path / "cooking.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    s = study.setup("tiny", notebook="04_dataset_value_gap", runs_dir=str(tmp_path),
                    overrides=f"data.preference.hh-rlhf.id={tmp_path / 'cooking.jsonl'}")
    with pytest.raises(ConfigError, match=r"data.preference.hh-rlhf: none of its 2 pairs has a prompt that mentions"):
        value_gaps.dataset_gaps(s, datasets="hh-rlhf")
