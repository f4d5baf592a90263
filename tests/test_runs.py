"""Run folders under faults: a kill after the last checkpoint, two processes training one run, a resumed
run's log, and a runs folder moved to another place with the tiny world under another VD_HOME.

Each test injects the fault for real: a process killed with SIGKILL at the named point, two processes
started at once, folders copied elsewhere.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from vd.core.config import load_config
from vd.core.run import RunRecord

ROOT = Path(__file__).resolve().parent.parent
SFT_STEPS = {"sft.max_steps": 4, "sft.save_every": 2, "sft.batch_size": 8,
             "dpo.max_steps": 2, "dpo.save_every": 1, "dpo.batch_size": 8}
BUDGET = {"probes.prompts_per_topic": 2, "probes.samples_per_prompt": 1, "probes.max_new_tokens": 12}
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cfg(tiny_world):
    return load_config("tiny", {**SFT_STEPS, **BUDGET})


@pytest.fixture(scope="module")
def straight(cfg, tmp_path_factory):
    """An uninterrupted SFT run: what every interrupted one must end as."""
    from vd.train.runner import train_stage

    return train_stage(cfg, "sft", "wildchat", runs_dir=tmp_path_factory.mktemp("straight"))


def _vd_train(runs: Path, *extra: str) -> list[str]:
    sets = [a for k, v in SFT_STEPS.items() for a in ("--set", f"{k}={v}")]
    return [sys.executable, "-m", "vd.train", "train", "--size", "tiny", "--stage", "sft", "--data", "wildchat",
            "--runs-dir", str(runs), *sets, *extra]


def _same_weights(a: Path, b: Path) -> bool:
    x, y = load_file(a), load_file(b)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


@pytest.mark.slow
def test_sft_killed_during_its_merge_finishes_as_an_uninterrupted_run(cfg, straight, tmp_path):
    """Killed (SIGKILL) once `.merged-partial` is written, after the last checkpoint: the rerun trains no
    step past the end (the pinned transformers would add one when resuming at max_steps) and ends with the
    same checkpoints and the same merged weights as a run that was never interrupted."""
    from vd.train.runner import train_stage

    runs = tmp_path / "runs"
    kill_in_merge = textwrap.dedent(f"""
        import os, signal, sys
        from vd.models import loading
        real = loading.merge_adapter
        def merge_then_die(*args, **kwargs):
            real(*args, **kwargs)          # .merged-partial is complete, not yet renamed to merged/
            os.kill(os.getpid(), signal.SIGKILL)
        loading.merge_adapter = merge_then_die
        from vd.train.cli import main
        sys.exit(main({_vd_train(runs)[3:]!r}))
    """)
    out = subprocess.run([sys.executable, "-c", kill_in_merge], env=ENV, cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    run = runs / "tiny" / "sft-wildchat"
    assert out.returncode == -9, out.stderr[-2000:]
    assert (run / ".merged-partial").is_dir() and not (run / "merged").exists()
    assert not RunRecord.read(run).complete

    assert train_stage(cfg, "sft", "wildchat", runs_dir=runs) == run
    record = RunRecord.read(run)
    assert record.complete and [c.step for c in record.checkpoints] == [0, 2, 4] == \
        [c.step for c in RunRecord.read(straight).checkpoints]
    assert not (run / "checkpoint-5").exists() and not (run / ".merged-partial").exists()
    assert _same_weights(run / "merged" / "model.safetensors", straight / "merged" / "model.safetensors")


@pytest.mark.slow
def test_two_processes_training_one_run_never_write_into_each_other(straight, tmp_path):
    """The second `vd train` of the same run waits for the first's lock, then finds the run complete and
    returns it: one set of checkpoints, exactly the steps asked for, the same weights as a lone run."""
    runs, hold = tmp_path / "runs", tmp_path / "hold"
    hold.touch()
    # the first process holds its lock until the second is seen waiting for it (no race on start-up times)
    held_first = textwrap.dedent(f"""
        import pathlib, sys, time
        from vd.train import runner
        real = runner._train
        def held(*args, **kwargs):
            while pathlib.Path({str(hold)!r}).exists():
                time.sleep(0.05)
            return real(*args, **kwargs)
        runner._train = held
        from vd.train.cli import main
        sys.exit(main({_vd_train(runs)[3:]!r}))
    """)
    first = subprocess.Popen([sys.executable, "-c", held_first], env=ENV, cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    run_json = runs / "tiny" / "sft-wildchat" / "run.json"
    deadline = time.time() + 240
    while not run_json.is_file() and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)  # the first process holds the lock and is about to train
    second, said = subprocess.Popen(_vd_train(runs), env=ENV, cwd=ROOT, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True), ""
    while "waiting" not in said and second.poll() is None:
        said += second.stdout.readline()
    hold.unlink()
    first_out, second_out = first.communicate(timeout=300)[0], said + second.communicate(timeout=300)[0]
    assert first.returncode == 0 and second.returncode == 0, first_out[-2000:] + second_out[-2000:]
    assert "another process is training this run; waiting" in second_out
    assert "complete, 2 checkpoints of 4 steps" in second_out
    run = run_json.parent
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert RunRecord.read(run).complete
    assert _same_weights(run / "checkpoint-4" / "adapter_model.safetensors",
                         straight / "checkpoint-4" / "adapter_model.safetensors")


@pytest.mark.slow
def test_a_resumed_runs_log_reads_as_one_run(cfg, straight, tmp_path):
    """After a resume, train_log.csv continues TRL's token count and its train_loss covers every step,
    as the uninterrupted run's does (logged losses are rounded to 4 digits: within 1e-3)."""
    from vd.train.runner import train_stage

    runs = tmp_path / "runs"
    train_stage(cfg, "sft", "wildchat", runs_dir=runs, stop_after=2)
    run = train_stage(cfg, "sft", "wildchat", runs_dir=runs)
    resumed, whole = (pd.read_csv(r / "train_log.csv") for r in (run, straight))
    steps = resumed.dropna(subset=["num_tokens"])
    assert steps["num_tokens"].tolist() == whole.dropna(subset=["num_tokens"])["num_tokens"].tolist()
    assert steps["num_tokens"].is_monotonic_increasing
    loss = [df["train_loss"].dropna().iloc[-1] for df in (resumed, whole)]
    assert abs(loss[0] - loss[1]) < 1e-3


@pytest.mark.slow
def test_a_moved_runs_folder_and_vd_home_need_nothing_redone(cfg, straight, tmp_path, monkeypatch):
    """Runs trained and scored in one place, then copied elsewhere (another runs folder, the tiny world
    under another VD_HOME, as after a move to Drive or to a laptop): the runs are recognised as complete
    under the same params (nothing retrained), and scoring finds every generation and judgment in the
    copied cache (nothing regenerated, nothing rejudged)."""
    from vd.judge.lexicon import LexiconJudge
    from vd.score import scoring
    from vd.train.runner import train_stage
    from vd.world import vd_home

    dpo = train_stage(cfg, "dpo", "ultrafeedback", from_run=straight, runs_dir=straight.parent.parent)
    for run in (straight, dpo):
        scoring.score_run(run, cfg, judge=LexiconJudge(), progress=False, n_boot=20)
    moved_runs = tmp_path / "elsewhere" / "runs"
    shutil.copytree(straight.parent.parent, moved_runs)
    new_home = tmp_path / "drive" / "value-drifts"
    shutil.copytree(vd_home() / "tiny", new_home / "tiny")
    monkeypatch.setenv("VD_HOME", str(new_home))

    sft_moved = moved_runs / "tiny" / straight.name
    stamps = {p: (p / "run.json").stat().st_mtime_ns for p in (sft_moved, moved_runs / "tiny" / dpo.name)}
    assert train_stage(cfg, "sft", "wildchat", runs_dir=moved_runs) == sft_moved
    assert train_stage(cfg, "dpo", "ultrafeedback", from_run=sft_moved, runs_dir=moved_runs) == \
        moved_runs / "tiny" / dpo.name
    assert {p: (p / "run.json").stat().st_mtime_ns for p in stamps} == stamps  # nothing retrained
    record = RunRecord.read(moved_runs / "tiny" / dpo.name)
    assert record.from_run_dir() == sft_moved and str(tmp_path) not in json.dumps(record.to_json())

    calls = {"generated": 0, "judged": 0}

    class CountingJudge(LexiconJudge):
        def judge(self, items, progress=False, on_result=None):
            calls["judged"] += len(items)
            return super().judge(items, progress, on_result)

    real = scoring.generate_answers
    monkeypatch.setattr(scoring, "generate_answers",
                        lambda *a, **k: calls.__setitem__("generated", calls["generated"] + 1) or real(*a, **k))
    for run in stamps:
        scoring.score_run(run, cfg, judge=CountingJudge(), progress=False, n_boot=20)
    assert calls == {"generated": 0, "judged": 0}


@pytest.mark.slow
def test_a_run_killed_before_its_run_json_is_started_again(straight, tmp_path, capsys):
    """Killed (SIGKILL) after config.yaml and before run.json: the folder holds only what vd writes, so the
    same command starts it again (and says so in one line), as does --overwrite; both end as a lone run."""
    from vd.train.cli import main

    runs = tmp_path / "runs"
    kill_before_record = textwrap.dedent(f"""
        import os, signal, sys
        from vd.core import run
        run.RunRecord.write = lambda self: os.kill(os.getpid(), signal.SIGKILL)
        from vd.train.cli import main
        sys.exit(main({_vd_train(runs)[3:]!r}))
    """)
    out = subprocess.run([sys.executable, "-c", kill_before_record], env=ENV, cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    run = runs / "tiny" / "sft-wildchat"
    assert out.returncode == -9, out.stderr[-2000:]
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml"]
    shutil.copytree(runs, tmp_path / "copy")
    capsys.readouterr()
    assert main(_vd_train(runs)[3:]) == 0, capsys.readouterr().err
    said = capsys.readouterr().out
    assert f"{run} has no run.json (a run stopped before it began training): starting it again" in said
    copied = tmp_path / "copy" / "tiny" / "sft-wildchat"
    assert main(_vd_train(tmp_path / "copy")[3:] + ["--overwrite"]) == 0, capsys.readouterr().err
    for r in (run, copied):
        assert RunRecord.read(r).complete
        assert _same_weights(r / "merged" / "model.safetensors", straight / "merged" / "model.safetensors")


@pytest.fixture(scope="module")
def stopped(cfg, tmp_path_factory):
    """An SFT run stopped on purpose at step 2 of 4: checkpoint-2 holds the Trainer's full state."""
    from vd.train.runner import train_stage

    runs = tmp_path_factory.mktemp("stopped") / "runs"
    train_stage(cfg, "sft", "wildchat", runs_dir=runs, stop_after=2)
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("name", ["optimizer.pt", "rng_state.pth", "trainer_state.json"])
def test_a_damaged_checkpoint_file_is_named_with_what_to_do(stopped, tmp_path, capsys, name):
    from vd.train.cli import main

    runs = tmp_path / "runs"
    shutil.copytree(stopped, runs)
    checkpoint = runs / "tiny" / "sft-wildchat" / "checkpoint-2"
    damaged = checkpoint / name
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])  # cut short, as by a full disk
    capsys.readouterr()
    assert main(_vd_train(runs)[3:]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {damaged}: "), err
    assert f"delete {checkpoint} to resume from the checkpoint before it, or rerun with --no-resume" in err[0]
    if name == "optimizer.pt":  # doing what it says works
        assert main(_vd_train(runs)[3:] + ["--no-resume"]) == 0, capsys.readouterr().err
        assert RunRecord.read(runs / "tiny" / "sft-wildchat").complete
