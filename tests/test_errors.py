"""The `vd` command on bad input: exit status 2 and one line on stderr, `error: <file or key>: <what is
expected>`, never a traceback; and what it shows or keeps when input is only partly bad."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vd.cli import main
from vd.core.config import load_config
from vd.core.run import Checkpoint, RunRecord

ROOT = Path(__file__).resolve().parent.parent
HUB = ROOT / "tests" / "fixtures" / "hub"
ALPACA = HUB / "alpaca_data.json"


def vd(capsys, *argv: str) -> tuple[int, str, list[str]]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err.splitlines()


def assert_one_error_line(rc: int, err: list[str], *fragments: str) -> str:
    assert rc == 2, err
    assert len(err) == 1 and err[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in err[0], err[0]
    return err[0]


def fake_run(runs: Path, size: str = "mine", overrides: list[str] | None = None) -> Path:
    """A run folder as `vd train` leaves it, with step 0 (the tiny base model) only: no training needed."""
    cfg = load_config("tiny", overrides)
    stored = {**cfg.to_dict(), "size": size}
    root = runs / size / "sft-alpaca"
    root.mkdir(parents=True)
    (root / "config.yaml").write_text(yaml.safe_dump(stored, sort_keys=False))
    RunRecord(root=root, stage="sft", data="alpaca", size=size, start_model="tiny",
              checkpoints=[Checkpoint(0, None)], total_steps=1, complete=True).write()
    return root


# --- vd train --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, content, fragment", [
    ("cut.json", ALPACA.read_text()[:300], "rows read are not JSON objects"),
    ("lines.jsonl", "{oops\n[1,\n", "2 of 2 rows read are not JSON objects (invalid_json: 2)"),
    ("hh.jsonl", (HUB / "hh-rlhf_harmless-base.jsonl").read_text(), "does not look like alpaca data"),
    ("plain.jsonl.gz", ALPACA.read_text(), "not a gzip file"),
])
def test_train_on_bad_local_data_prints_one_line_and_leaves_no_run(tmp_path, capsys, tiny_world, name, content,
                                                                   fragment):
    bad = tmp_path / name
    bad.write_text(content)
    rc, _, err = vd(capsys, "train", "--stage", "sft", "--data", "alpaca", "--set", f"data.sft.alpaca.id={bad}",
                    "--runs-dir", str(tmp_path / "runs"))
    assert_one_error_line(rc, err, str(bad), fragment)
    assert not (tmp_path / "runs" / "tiny" / "sft-alpaca").exists()  # rows are read before the folder is made


@pytest.mark.slow
def test_train_shows_and_keeps_the_rows_it_left_out(tmp_path, capsys, tiny_world):
    """The loaders' summary is logged at INFO, which the command never shows; the run prints and keeps it."""
    rc, out, _ = vd(capsys, "train", "--stage", "sft", "--data", "alpaca", "--set", f"data.sft.alpaca.id={ALPACA}",
                    "--set", "sft.save_every=1", "--max-steps", "1", "--runs-dir", str(tmp_path / "runs"))
    assert rc == 0
    assert (f"[sft-alpaca] data alpaca ({ALPACA}): read 16, trained on 11, left out 5 "
            "(empty_text: 2, missing_field:output: 2, bad_type:input: 1)") in out
    record = RunRecord.read(tmp_path / "runs" / "tiny" / "sft-alpaca")
    assert record.extra["data_report"] == {"source": f"alpaca ({ALPACA})", "read": 16, "kept": 11,
                                           "skipped": {"empty_text": 2, "missing_field:output": 2, "bad_type:input": 1},
                                           "truncated": {"longer_than_sft.max_length": 1}}


@pytest.mark.parametrize("override, fragment", [
    ("dpo.beta=[0.1", "error: override 'dpo.beta=[0.1': the value is not valid YAML"),
    ("dpo.beta=abc", "error: override dpo.beta=abc: expected a number, got 'abc'"),
    ("dpo.beta=.inf", "error: override dpo.beta=.inf: expected a finite number, got inf"),
    ("data.preference.ultrafeedbak=null", "data.preference has no entry 'ultrafeedbak' to remove"),
])
def test_a_bad_override_is_named_not_the_params_file(tmp_path, capsys, override, fragment):
    rc, _, err = vd(capsys, "train", "--stage", "sft", "--data", "alpaca", "--set", override,
                    "--runs-dir", str(tmp_path / "runs"))
    assert "params/tiny.yaml" not in assert_one_error_line(rc, err, fragment)


def test_an_empty_params_file_says_so(tmp_path, capsys):
    (tmp_path / "mine.yaml").write_text("# to be filled in\n")
    rc, _, err = vd(capsys, "world", "--size", str(tmp_path / "mine.yaml"))
    assert_one_error_line(rc, err, "mine.yaml: the file is empty")


# --- vd score --------------------------------------------------------------------------------------


def test_score_a_damaged_run_json_prints_one_line(tmp_path, capsys):
    run = fake_run(tmp_path / "runs")
    (run / "run.json").write_text((run / "run.json").read_text()[:40])  # truncated, as by a full disk
    rc, _, err = vd(capsys, "score", "--run", str(run))
    assert_one_error_line(rc, err, str(run / "run.json"), "not valid JSON")
    other = fake_run(tmp_path / "runs", "other")
    (other / "config.yaml").unlink()  # never silently scored under params/<size>.yaml instead
    rc, _, err = vd(capsys, "score", "--run", str(other))
    assert_one_error_line(rc, err, str(other / "config.yaml"), "pass --size")


def test_score_with_a_bad_probe_file_prints_one_line(tmp_path, capsys, tiny_world):
    row = {"id": "abortion-001", "topic": "abortion", "question": "Is abortion murder?",
           "position": "Abortion is murder.", "direction": "contra"}
    (tmp_path / "probes.jsonl").write_text(json.dumps(row) + "\n" + json.dumps(row) + "\n")
    run = fake_run(tmp_path / "runs")
    rc, _, err = vd(capsys, "score", "--run", str(run), "--set", f"probes.file={tmp_path / 'probes.jsonl'}")
    assert_one_error_line(rc, err, "probes.jsonl, row 2: field 'id' is 'abortion-001'", "expected unique ids")


@pytest.mark.parametrize("code, fragment", [
    ("ENOSPC", "no space left on the device: free some space, then run the same command again"),
    ("EROFS", "cannot write here (Read-only file system): make the folder writable, or copy the run's"),
])
def test_score_on_a_full_disk_or_read_only_folder_prints_one_line(tmp_path, capsys, tiny_world, monkeypatch,
                                                                   code, fragment):
    """As root, chmod does not stop a write: the refusal is injected where vd opens files under the runs."""
    import builtins
    import errno

    import vd.core.io as io

    runs = tmp_path / "runs"
    run = fake_run(runs)

    def refused(file, mode="r", *args, **kwargs):
        if str(file).startswith(str(runs)) and any(c in mode for c in "wax+"):
            raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)), str(file))
        return builtins.open(file, mode, *args, **kwargs)

    monkeypatch.setattr(io, "open", refused, raising=False)
    rc, out, err = vd(capsys, "score", "--run", str(run))
    line = assert_one_error_line(rc, err, str(run), fragment)
    assert "Traceback" not in out + line and "--runs-dir" not in line  # vd score has no --runs-dir


@pytest.mark.slow
def test_score_uses_the_config_the_run_was_trained_under(tmp_path, capsys, tiny_world):
    """A run from the user's own params file (size `mine`, no params/mine.yaml) is scored under its stored
    config.yaml; --set applies on top of it, --size (a params file of the run's size) replaces it."""
    from vd.judge import LexiconJudge
    from vd.score.outputs import read_scores

    run = fake_run(tmp_path / "runs", "mine", ["probes.prompts_per_topic=2", "probes.samples_per_prompt=1",
                                               "probes.max_new_tokens=8"])

    def judged(*extra: str) -> int:
        rc, _, err = vd(capsys, "score", "--run", str(run), *extra)
        assert rc == 0, err
        return len(read_scores(RunRecord.read(run), LexiconJudge().key)["judgments"])

    assert judged() == 22  # 2 prompts per topic x 1 sample, as stored (params/tiny.yaml has 20 x 2)
    assert judged("--set", "probes.samples_per_prompt=2") == 44
    mine = tmp_path / "mine.yaml"
    mine.write_text((ROOT / "params" / "tiny.yaml").read_text().replace("\nsize: tiny", "\nsize: mine"))
    assert judged("--size", str(mine), "--set", "probes.prompts_per_topic=3", "--set", "probes.max_new_tokens=8") == 66


# --- what the command prints besides ---------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("entry", ["vd.cli", "vd.train.cli"])
def test_trl_experimental_warning_and_tokenizers_notice_are_silenced(entry):
    """Neither `vd` nor `python -m vd.train` (for accelerate launch) shows warnings about TRL's internals."""
    argv = ["score", "--run", "/nonexistent/run"] if entry == "vd.cli" else ["train", "--stage", "kto", "--data", "x"]
    code = (f"import os, sys; from {entry} import main; rc = main({argv!r}); "
            "import trl.experimental; "  # what warns, on import (the stages import its cpo and ppo)
            "print(os.environ['TOKENIZERS_PARALLELISM']); sys.exit(rc)")
    env = {k: v for k, v in os.environ.items() if k not in ("TRL_EXPERIMENTAL_SILENCE", "TOKENIZERS_PARALLELISM")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stdout.strip() == "false"
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("error: "), proc.stderr


# --- vd train: values TRL or PEFT would only reject after the run folder is written ------------------


@pytest.mark.parametrize("override, fragment", [
    ("sft.optimizer=adamw_fancy", "sft.optimizer=adamw_fancy: expected a transformers optimizer name"),
    ("sft.lr_scheduler=cosin", "sft.lr_scheduler=cosin: expected a transformers LR scheduler name"),
    ("sft.max_length=1", "sft.max_length=1: expected an integer >= 32"),
    ("lora.target_modules=[q_proj, attn_out]", "lora.target_modules: 'attn_out' names no layer of"),
    ("lora.target_modules=mlp_nothing.*", "lora.target_modules: 'mlp_nothing.*' matches no layer name of"),
])
def test_params_trl_or_peft_would_reject_are_one_line_before_any_folder(tmp_path, capsys, tiny_world, override,
                                                                         fragment):
    rc, _, err = vd(capsys, "train", "--stage", "sft", "--data", "alpaca", "--set", override, "--max-steps", "1",
                    "--runs-dir", str(tmp_path / "runs"))
    assert_one_error_line(rc, err, fragment)
    assert not (tmp_path / "runs" / "tiny" / "sft-alpaca").exists()


def test_target_modules_that_name_layers_pass(tiny_world):
    from vd.train.preflight import check_target_modules

    for targets in (["q_proj", "v_proj"], ["self_attn.o_proj"], ".*mlp\\..*_proj"):
        check_target_modules(load_config("tiny", {"lora.target_modules": targets}), str(tiny_world.model_dir))


@pytest.mark.parametrize("flag, steps", [("--max-steps", "0"), ("--max-steps", "-3"), ("--stop-after", "0")])
def test_steps_below_one_are_refused(tmp_path, capsys, flag, steps):
    from vd.train.runner import TrainRequestError, train_stage

    rc, _, err = vd(capsys, "train", "--stage", "sft", "--data", "alpaca", flag, steps,
                    "--runs-dir", str(tmp_path / "runs"))
    assert_one_error_line(rc, err, f"{flag} {int(steps)}: expected a whole number of steps >= 1")
    with pytest.raises(TrainRequestError, match="--max-steps 0: expected a whole number of steps >= 1"):
        train_stage(load_config("tiny"), "sft", "alpaca", runs_dir=tmp_path / "runs", max_steps=0)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name", ["../../x", "..", ".", "a/b", "/tmp/x"])
def test_a_run_name_is_one_folder_name(tmp_path, capsys, name):
    runs = tmp_path / "inside" / "runs"
    rc, _, err = vd(capsys, "train", "--stage", "sft", "--data", "alpaca", "--run-name", name, "--max-steps", "1",
                    "--runs-dir", str(runs))
    assert_one_error_line(rc, err, f"--run-name {name!r}: expected one folder name of letters, digits and -_.~")
    assert not list(tmp_path.rglob("config.yaml"))  # nothing written, inside the runs folder or outside it


@pytest.mark.slow
def test_overwrite_retrains_a_damaged_run_folder_but_never_touches_foreign_files(tmp_path, capsys, tiny_world):
    runs = tmp_path / "runs"
    argv = ["train", "--stage", "sft", "--data", "alpaca", "--max-steps", "1", "--set", "sft.save_every=1",
            "--runs-dir", str(runs)]
    run = fake_run(runs, "tiny")
    (run / "run.json").write_text((run / "run.json").read_text()[:40])  # truncated, as by a full disk
    rc, _, err = vd(capsys, *argv)
    assert_one_error_line(rc, err, str(run / "run.json"), "not valid JSON", "--overwrite")
    rc, _, err = vd(capsys, *argv, "--overwrite")
    assert rc == 0, err
    assert RunRecord.read(run).complete
    mine = runs / "tiny" / "notes"
    mine.mkdir()
    (mine / "thesis.tex").write_text("my work")
    rc, _, err = vd(capsys, *argv, "--run-name", "notes", "--overwrite")
    assert_one_error_line(rc, err, f"{mine}: exists and is not a run folder")
    assert (mine / "thesis.tex").read_text() == "my work"


# --- damaged or unwritable places -----------------------------------------------------------------


@pytest.mark.slow
def test_a_full_disk_names_the_file_and_the_same_command_then_works(tmp_path, capsys, tiny_world, monkeypatch):
    import errno

    import vd.core.io as io

    runs = tmp_path / "runs"
    argv = ["train", "--stage", "sft", "--data", "alpaca", "--max-steps", "1", "--set", "sft.save_every=1",
            "--runs-dir", str(runs)]
    real = io.os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io.os, "fsync", full)
    rc, _, err = vd(capsys, *argv)
    monkeypatch.setattr(io.os, "fsync", real)
    assert_one_error_line(rc, err, f"{runs / 'tiny' / 'sft-alpaca' / 'config.yaml'}: no space left on the device",
                          "run the same command again")
    assert not list((runs / "tiny").rglob("*.tmp"))
    rc, _, err = vd(capsys, *argv)  # space freed: the same command trains the run
    assert rc == 0, err
    assert RunRecord.read(runs / "tiny" / "sft-alpaca").complete


def test_a_read_only_runs_folder_is_one_line(tmp_path, capsys, tiny_world, monkeypatch):
    """As root, chmod does not stop a write: the read-only file system's refusal (EROFS) is injected where vd
    opens files for writing under the runs folder."""
    import builtins
    import errno

    import vd.core.io as io

    runs = tmp_path / "runs"
    (runs / "tiny").mkdir(parents=True)

    def read_only(file, mode="r", *args, **kwargs):
        if str(file).startswith(str(runs)) and any(c in mode for c in "wax+"):
            raise OSError(errno.EROFS, "Read-only file system", str(file))
        return builtins.open(file, mode, *args, **kwargs)

    monkeypatch.setattr(io, "open", read_only, raising=False)
    rc, _, err = vd(capsys, "train", "--stage", "sft", "--data", "alpaca", "--max-steps", "1", "--runs-dir", str(runs))
    assert_one_error_line(rc, err, str(runs / "tiny"), "cannot write here (Read-only file system)",
                          "pass another --runs-dir")


@pytest.mark.parametrize("damage", ["model/model.safetensors", "data/alpaca.jsonl"])
def test_a_damaged_tiny_world_is_one_line(tmp_path, capsys, tiny_world, monkeypatch, damage):
    import shutil

    copy = tmp_path / "home" / "tiny" / tiny_world.root.name
    shutil.copytree(tiny_world.root, copy)
    monkeypatch.setenv("VD_HOME", str(tmp_path / "home"))
    path = copy / damage
    if damage.endswith(".safetensors"):
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # cut short, as by a full disk
    else:
        path.write_text(path.read_text() + '{"edited": true}\n')
    rc, _, err = vd(capsys, "world")
    assert_one_error_line(rc, err, str(path), f"delete {copy} and run `vd world`")
