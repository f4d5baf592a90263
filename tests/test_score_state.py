"""Scoring's tables and cache across processes: a kill while the tables are written never leaves a mixed set
a reader takes for current (nor a temporary file once scored again), and two scorers of one run judge each
answer once (the second waits for the first, then finds everything cached)."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vd.core.config import load_config
from vd.core.run import RunRecord
from vd.judge import LexiconJudge
from vd.score import outputs
from vd.score import scoring as score_mod

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["probes.prompts_per_topic=2", "probes.samples_per_prompt=2", "probes.max_new_tokens=12"]
LARGER = ["probes.prompts_per_topic=3", "probes.samples_per_prompt=2", "probes.max_new_tokens=12"]

# Scores a run in a process of its own: `kill-after-first-table` dies (SIGKILL) once judgments.csv is
# written, `kill-mid-write` while profile.csv is still a temporary file, `count` judges slowly and writes a
# line per item judged to a file (a judge that costs money), `plain` just scores.
SCRIPT = textwrap.dedent("""
    import json, os, signal, sys, time
    from pathlib import Path
    run, mode, overrides = Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
    from vd.core.config import load_config
    from vd.judge import LexiconJudge
    from vd.score import outputs, scoring

    if mode == "kill-after-first-table":
        real_write = outputs.atomic_write_text
        def write_then_die(path, text):
            real_write(path, text)
            os.kill(os.getpid(), signal.SIGKILL)
        outputs.atomic_write_text = write_then_die
    elif mode == "kill-mid-write":
        real_replace, replaced = os.replace, []
        def replace(src, dst):
            replaced.append(dst)
            if str(dst).endswith("profile.csv"):
                os.kill(os.getpid(), signal.SIGKILL)
            real_replace(src, dst)
        os.replace = replace

    class CountingJudge(LexiconJudge):
        def judge(self, items, progress=False, on_result=None):
            with open(os.environ["VD_TEST_COUNTS"], "a") as f:
                for _ in items:
                    f.write(f"{os.getpid()}\\n")
                    f.flush()
                    time.sleep(0.005)
            return super().judge(items, progress, on_result)

    judge = CountingJudge() if mode == "count" else LexiconJudge()
    scoring.score_run(run, load_config("tiny", overrides), judge=judge, progress=mode == "count", n_boot=50)
""")


def scorer(tmp_path, run, mode, overrides, env=None) -> subprocess.Popen:
    script = tmp_path / "score_once.py"
    script.write_text(SCRIPT)
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                   **(env or {})}
    return subprocess.Popen([sys.executable, str(script), str(run), mode, json.dumps(overrides)], env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def run_dir(tiny_world, tmp_path_factory):
    """A run (step 0 and one random LoRA checkpoint) in its own runs folder."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    run = tmp_path_factory.mktemp("runs") / "tiny" / "sft-state"
    torch.manual_seed(3)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_world.model_dir),
                           LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    model.save_pretrained(run / "checkpoint-4")
    checkpoints = [{"step": 0, "adapter": None}, {"step": 4, "adapter": "checkpoint-4"}]
    (run / "run.json").write_text(json.dumps({"stage": "sft", "data": "test", "size": "tiny", "total_steps": 4,
                                              "complete": True, "checkpoints": checkpoints}))
    return run


@pytest.mark.slow
def test_a_kill_while_the_tables_are_written_never_leaves_a_mixed_set(run_dir, tmp_path):
    # scoring rewrote judgments, profile and drift, then the stamp, and never removed the old stamp first:
    # killed after judgments.csv at another probe budget, a 2-prompt profile stayed beside 3-prompt judgments
    record = RunRecord.read(run_dir)
    key = LexiconJudge().key
    larger = score_mod.score_run(run_dir, load_config("tiny", LARGER), judge=LexiconJudge(), progress=False, n_boot=50)
    smaller = score_mod.score_run(run_dir, load_config("tiny", SMALL), judge=LexiconJudge(), progress=False, n_boot=50)
    assert len(outputs.read_scores(record, key)["judgments"]) == 2 * 22 * 2  # both budgets now cached

    proc = scorer(tmp_path, run_dir, "kill-after-first-table", LARGER)
    assert proc.wait(300) == -9, proc.stdout.read()
    folder = record.scores_dir(key)
    assert len(outputs.parse_csv((folder / "judgments.csv").read_text())) == 2 * 33 * 2  # the new judgments ...
    assert (folder / "profile.csv").read_bytes() == smaller.folder.joinpath("profile.csv").read_bytes()  # old
    with pytest.raises(outputs.ScoresMissing, match="no complete scores of run sft-state by judge lexicon"):
        outputs.read_scores(record, key)  # ... and no reader takes the two for one set
    assert outputs.scores_key(folder) is None

    proc = scorer(tmp_path, run_dir, "kill-mid-write", LARGER)
    assert proc.wait(300) == -9, proc.stdout.read()
    assert list(folder.glob(".profile.csv.*.tmp"))  # the kill left profile.csv's temporary file
    with pytest.raises(outputs.ScoresMissing):
        outputs.read_scores(record, key)

    again = score_mod.score_run(run_dir, load_config("tiny", LARGER), judge=LexiconJudge(), progress=False, n_boot=50)
    assert not list(folder.glob("*.tmp")) and not list(folder.glob(".*.tmp"))  # nothing left behind
    tables = outputs.read_scores(record, key)
    assert len(tables["judgments"]) == 2 * 33 * 2
    assert tables["profile"].equals(larger.profile) and again.profile.equals(larger.profile)


@pytest.mark.slow
def test_two_scorers_of_one_run_judge_each_answer_once(run_dir, tmp_path):
    # two `vd score` processes (or a notebook and `vd score`) on one run judged every item twice
    import shutil

    run = tmp_path / "runs" / "tiny" / run_dir.name
    shutil.copytree(run_dir, run, ignore=shutil.ignore_patterns("scores", "cache.sqlite"))
    counts = tmp_path / "judged.txt"
    procs = [scorer(tmp_path, run, "count", SMALL, env={"VD_TEST_COUNTS": str(counts)}) for _ in range(2)]
    logs = [p.communicate(timeout=400)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    assert len(counts.read_text().splitlines()) == 2 * 22 * 2  # every answer once, by whichever came first
    assert any("another process is scoring this run; waiting for it" in log for log in logs)
    assert sum("judgments needed" in log for log in logs) == 1  # the second found every judgment cached
    tables = outputs.read_scores(RunRecord.read(run), LexiconJudge().key)
    assert len(tables["judgments"]) == 2 * 22 * 2
