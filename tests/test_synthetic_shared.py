"""The synthetic value-gap pairs as one dataset the runs share: PPO, DPO and SimPO on a setting train on the
same stored file, a stochastic writer is paid once, notebooks read that file too, a kill while it is built
leaves nothing that blocks a retry, and the `openai` writer calls the server the params name.

The writers here are registered for the test (vd.core.registry.ANSWER_WRITERS), as a user's would be:
`random` samples the tiny world's answers from an unseeded generator (a stand-in for GPT-4o-mini at
temperature 0.7) and counts its calls; `held` does the same but waits while a file exists, so that a
`vd train` subprocess can be killed while it is building the pairs.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import SimpleNamespace

import pytest
from local_server import LocalHTTPServer, send_json

from vd.core import registry
from vd.core.config import load_config
from vd.core.run import RunRecord

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
STEPS = {"sft.max_steps": 2, "sft.save_every": 1, "sft.batch_size": 8, "dpo.batch_size": 4, "simpo.batch_size": 4,
         "reward.max_steps": 2, "reward.save_every": 2, "reward.batch_size": 4, "ppo.batch_size": 4,
         "ppo.response_length": 8, "ppo.num_ppo_epochs": 1, "data.synthetic.prompts_per_topic": 2}
N_PROMPTS = 22  # 2 per topic, 11 topics
CALLS: Counter = Counter()  # (question, stance) -> calls of the `random` writer


def random_writer_from_config(cfg):
    """A stochastic writer: every call draws a new answer (an unseeded generator), as a sampled LLM does."""
    from vd.world.text import make_answer

    def write(question, topic, stance):
        CALLS[(question, stance)] += 1
        return make_answer(random.Random(), topic, stance, "good")

    return write


def held_writer_from_config(cfg):
    """`random`, but each call waits while the file named by VD_TEST_HOLD exists (after touching VD_TEST_STARTED)."""
    write = random_writer_from_config(cfg)

    def held(question, topic, stance):
        Path(os.environ["VD_TEST_STARTED"]).touch()
        while Path(os.environ["VD_TEST_HOLD"]).exists():
            time.sleep(0.05)
        return write(question, topic, stance)

    return held


@pytest.fixture(autouse=True)
def writers(monkeypatch):
    monkeypatch.setitem(registry.ANSWER_WRITERS, "random", f"{__name__}:random_writer_from_config")
    monkeypatch.setitem(registry.ANSWER_WRITERS, "held", f"{__name__}:held_writer_from_config")
    CALLS.clear()


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def sft_run(tiny_world, tmp_path_factory):
    from vd.train.runner import train_stage

    return train_stage(load_config("tiny", STEPS), "sft", "alpaca", runs_dir=tmp_path_factory.mktemp("sft") / "runs")


def _runs_with_sft(sft_run: Path, tmp_path: Path) -> Path:
    """A fresh runs folder holding a copy of the module's SFT run (preference runs live beside their SFT run)."""
    import shutil

    runs = tmp_path / "runs"
    shutil.copytree(sft_run, runs / "tiny" / sft_run.name)
    return runs


@pytest.mark.slow
def test_ppo_dpo_and_simpo_train_on_one_stored_set_written_once(sft_run, tmp_path):
    from vd.study import notebook as study
    from vd.study import value_gaps
    from vd.train.runner import train_stage

    runs = _runs_with_sft(sft_run, tmp_path)
    cfg = load_config("tiny", {**STEPS, "data.synthetic.generator": "random"})
    records = {algo: RunRecord.read(train_stage(cfg, algo, "synthetic-support", from_run="sft-alpaca", runs_dir=runs,
                                                max_steps=1)) for algo in ("ppo", "dpo", "simpo")}
    # the writer was asked once per prompt and stance, for all three runs together
    assert len(CALLS) == 2 * N_PROMPTS and set(CALLS.values()) == {1}
    files = {r.synthetic_pairs_path for r in records.values()}
    assert len(files) == 1 and {r.synthetic_sha256 for r in records.values()} == {
        __import__("hashlib").sha256(next(iter(files)).read_bytes()).hexdigest()}
    pairs = next(iter(files))
    assert pairs.parent.parent == runs / "tiny" / "synthetic" and not Path(records["dpo"].synthetic_pairs).is_absolute()
    assert all(r.extra["data_report"]["read"] == N_PROMPTS for r in records.values())
    # notebooks (value gaps, policy fit) read the same file; nothing is written again
    s = study.setup("tiny", notebook="04_dataset_value_gap", runs_dir=str(runs),
                    overrides={k: v for k, v in STEPS.items() if k.startswith("data.")}
                    | {"data.synthetic.generator": "random"})
    rows, judged = s.synthetic_pairs("support")
    assert rows == [json.loads(line) for line in pairs.read_text().splitlines()] and len(judged) == len(rows)
    simpo = SimpleNamespace(run_dir=records["simpo"].root, record=records["simpo"], name="simpo")  # as a RunResult
    gap = value_gaps.synthetic_gap(simpo)
    assert gap.equals(value_gaps.pair_gap(judged))  # notebook 03's gap: the judgments of the pairs trained on
    assert set(CALLS.values()) == {1}


@pytest.mark.slow
def test_a_run_whose_pairs_changed_refuses_to_resume(sft_run, tmp_path):
    from vd.train.runner import TrainRequestError, train_stage

    runs = _runs_with_sft(sft_run, tmp_path)
    cfg = load_config("tiny", {**STEPS, "data.synthetic.generator": "random", "dpo.max_steps": 2, "dpo.save_every": 1})
    run = train_stage(cfg, "dpo", "synthetic-oppose", from_run="sft-alpaca", runs_dir=runs, stop_after=1)
    record = RunRecord.read(run)
    assert not record.complete
    # the set is deleted and built again: a stochastic writer writes other pairs
    import shutil

    shutil.rmtree(record.synthetic_pairs_path.parent)
    with pytest.raises(TrainRequestError, match=r"trained on the synthetic pairs synthetic/oppose-\w+/pairs.jsonl "
                                                r"\(sha256 \w+…\), but these settings read .* --no-resume"):
        train_stage(cfg, "dpo", "synthetic-oppose", from_run="sft-alpaca", runs_dir=runs)
    assert RunRecord.read(run).synthetic_sha256 == record.synthetic_sha256  # untouched
    done = RunRecord.read(train_stage(cfg, "dpo", "synthetic-oppose", from_run="sft-alpaca", runs_dir=runs,
                                      resume=False))
    assert done.complete and done.synthetic_sha256 != record.synthetic_sha256
    assert done.synthetic_sha256 == __import__("hashlib").sha256(done.synthetic_pairs_path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_a_kill_while_the_pairs_are_built_leaves_nothing_that_blocks_a_retry(sft_run, tmp_path, capsys):
    from vd.train.cli import main

    runs = _runs_with_sft(sft_run, tmp_path)
    hold, started = tmp_path / "hold", tmp_path / "started"
    hold.touch()
    argv = ["train", "--stage", "dpo", "--data", "synthetic-support", "--from", "sft-alpaca", "--runs-dir", str(runs),
            "--max-steps", "1", *[a for k, v in STEPS.items() for a in ("--set", f"{k}={v}")],
            "--set", "data.synthetic.generator=held"]
    script = textwrap.dedent(f"""
        import sys
        from vd.core import registry
        registry.ANSWER_WRITERS["held"] = "test_synthetic_shared:held_writer_from_config"
        from vd.train.cli import main
        sys.exit(main({argv!r}))
    """)
    env = {**ENV, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}", "VD_TEST_HOLD": str(hold),
           "VD_TEST_STARTED": str(started)}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    while not started.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert started.exists(), proc.communicate()[0][-3000:]
    os.kill(proc.pid, signal.SIGKILL)  # while the writer is writing the pairs
    proc.wait(timeout=60)
    run = runs / "tiny" / "dpo-synthetic-support-from-sft-alpaca"
    assert not run.exists()  # the run folder is written only once its data are built
    assert not list((runs / "tiny" / "synthetic").glob("*/manifest.json"))  # no half set either
    hold.unlink()
    os.environ.update(VD_TEST_HOLD=str(hold), VD_TEST_STARTED=str(started))
    try:
        capsys.readouterr()
        assert main(argv) == 0, capsys.readouterr().err
        assert RunRecord.read(run).complete
        assert main([*argv, "--overwrite"]) == 0, capsys.readouterr().err
    finally:
        for var in ("VD_TEST_HOLD", "VD_TEST_STARTED"):
            os.environ.pop(var, None)
    assert RunRecord.read(run).complete
    assert not list((runs / "tiny" / "synthetic").glob(".partial-*"))  # the killed build's leftovers are gone
    assert set(CALLS.values()) == {1}  # the retry built the set once; --overwrite reused it


def test_no_openai_key_for_the_writer_is_one_line_and_no_folder(tiny_world, tmp_path, capsys, monkeypatch):
    from vd.train.cli import main

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    runs = tmp_path / "runs"
    sft = runs / "tiny" / "sft-alpaca"
    _complete_sft_stub(sft, tiny_world)
    rc = main(["train", "--stage", "dpo", "--data", "synthetic-support", "--from", "sft-alpaca", "--runs-dir",
               str(runs), "--set", "data.synthetic.generator=openai"])
    err = capsys.readouterr().err.splitlines()
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith("error: ") and "OPENAI_API_KEY" in err[0] and "data.synthetic.base_url" in err[0]
    assert [p.name for p in (runs / "tiny").iterdir() if not p.name.endswith(".lock")] == ["sft-alpaca"]  # no run
    # folder, no synthetic set: only the run's lock file, taken before the checks


def _complete_sft_stub(root: Path, world) -> None:
    """A finished SFT run whose merged model is the tiny base model (what --from needs; nothing trained)."""
    import shutil

    from vd.core.run import Checkpoint

    root.mkdir(parents=True)
    shutil.copytree(world.model_dir, root / "merged")
    (root / "config.yaml").write_text(json.dumps(load_config("tiny").to_dict()))
    RunRecord(root=root, stage="sft", data="alpaca", size="tiny", start_model="tiny",
              checkpoints=[Checkpoint(0, None)], total_steps=1, complete=True).write()


class FakeWriterServer(LocalHTTPServer):
    """An OpenAI-compatible chat server on 127.0.0.1 that answers with the stance it was told to take
    (`echo`: followed by the request's Authorization header, as a careless server might)."""

    def __init__(self, echo: bool = False):
        from vd.world.text import make_answer

        self.requests: list[tuple[str | None, str]] = []  # (Authorization header, model)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append((self.headers.get("Authorization"), body["model"]))
                told = body["messages"][-1]["content"]
                topic = re.search(r"Topic: (.*)\n", told).group(1)
                from vd.core.stances import TOPICS

                key = next(k for k, v in TOPICS.items() if v == topic)
                stance = "support" if "supportive" in told else "oppose"
                text = make_answer(random.Random(len(outer.requests)), key, stance, "good")
                text += f" ({self.headers.get('Authorization')})" if echo else ""
                send_json(self, 200, {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                                      "choices": [{"index": 0, "finish_reason": "stop",
                                                   "message": {"role": "assistant", "content": text}}]})

        super().__init__(Handler)
        self.__enter__()

    def close(self):
        self.__exit__()


def test_the_openai_writer_calls_a_local_server_without_a_key(tiny_world, tmp_path, monkeypatch):
    """data.synthetic.base_url (else judge.base_url, else $OPENAI_BASE_URL) names the server that writes the
    pairs; a local one gets the placeholder key local servers take."""
    from vd.data.synthetic import writer_base_url
    from vd.data.synthetic_set import ensure_pairs

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://env.example/v1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    server = FakeWriterServer()
    try:
        over = {"data.synthetic.generator": "openai", "data.synthetic.generator_model": "local-writer",
                "data.synthetic.prompts_per_topic": 1}
        cfg = load_config("tiny", {**over, "data.synthetic.base_url": server.base_url})
        assert writer_base_url(load_config("tiny", {**over, "judge.base_url": "http://judge.example/v1"})) == \
            "http://judge.example/v1"
        assert writer_base_url(load_config("tiny", over)) == "http://env.example/v1"
        pairs = ensure_pairs(cfg, "support", tmp_path / "tiny", say=None)
        assert len(server.requests) == 2 * 11 and set(server.requests) == {("Bearer EMPTY", "local-writer")}
        assert len(pairs.rows()) == 11 and pairs.manifest()["key"]["writer_endpoint"] == server.base_url
    finally:
        server.close()


def test_the_openai_writer_stores_and_prints_no_key_a_server_echoes(tiny_world, tmp_path, monkeypatch, capsys):
    # the answers went to pairs.jsonl as the server sent them, the key in the Authorization header included
    from vd.data.synthetic_set import ensure_pairs

    key = "sk-test-" + "k3y" * 12
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    server = FakeWriterServer(echo=True)
    try:
        cfg = load_config("tiny", {"data.synthetic.generator": "openai", "data.synthetic.generator_model": "w",
                                   "data.synthetic.prompts_per_topic": 1, "data.synthetic.base_url": server.base_url})
        pairs = ensure_pairs(cfg, "support", tmp_path / "tiny", say=print)
    finally:
        server.close()
    assert {auth for auth, _ in server.requests} == {f"Bearer {key}"}  # the server was sent the key
    assert len(pairs.rows()) == 11 and "(Bearer ***)" in json.dumps(pairs.rows())
    printed = "".join(capsys.readouterr())
    written = "".join(p.read_text() for p in tmp_path.rglob("*") if p.is_file())
    assert not any(key[i:i + 8] in printed + written for i in range(len(key) - 7))


def counted_writer_from_config(cfg):
    """`held`, also appending one line per call to the file named by VD_TEST_CALLS (shared by processes)."""
    write = held_writer_from_config(cfg)

    def counted(question, topic, stance):
        with open(os.environ["VD_TEST_CALLS"], "a") as f:
            f.write(f"{stance}\t{question}\n")
        return write(question, topic, stance)

    return counted


@pytest.mark.slow
def test_two_processes_build_one_set_once(tiny_world, tmp_path):
    """The second process waits for the first's lock, then reads the set the first built: each answer is
    written once, and both return the same folder."""
    hold, started, calls = tmp_path / "hold", tmp_path / "started", tmp_path / "calls.tsv"
    hold.touch()
    script = textwrap.dedent(f"""
        from vd.core import registry
        registry.ANSWER_WRITERS["counted"] = "test_synthetic_shared:counted_writer_from_config"
        from vd.core.config import load_config
        from vd.data.synthetic_set import ensure_pairs
        cfg = load_config("tiny", {{"data.synthetic.generator": "counted", "data.synthetic.prompts_per_topic": 1}})
        print("set", ensure_pairs(cfg, "support", {str(tmp_path / 'tiny')!r}).sha256(), flush=True)
    """)
    env = {**ENV, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}", "VD_TEST_HOLD": str(hold),
           "VD_TEST_STARTED": str(started), "VD_TEST_CALLS": str(calls)}
    run = lambda: subprocess.Popen([sys.executable, "-c", script], env=env, cwd=ROOT, stdout=subprocess.PIPE,  # noqa: E731
                                   stderr=subprocess.STDOUT, text=True)
    first = run()
    deadline = time.time() + 240
    while not started.exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    second, seen = run(), ""
    while "waiting" not in seen and second.poll() is None:
        seen += second.stdout.readline()
    assert "another process is building support-" in seen, seen  # it found the lock taken, mid-build
    hold.unlink()
    out = [p.communicate(timeout=300)[0] for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, out
    assert len(calls.read_text().splitlines()) == 2 * 11  # every answer written once, by one process
    shas = [line.split()[1] for o in out for line in o.splitlines() if line.startswith("set ")]
    assert len(shas) == 2 and shas[0] == shas[1]


def test_a_local_writer_or_judge_keys_the_set_by_its_content_not_its_folder(tmp_path):
    from vd.data.synthetic_set import key_hash, pairs_key

    model = tmp_path / "writer"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights one")
    (model / "tokenizer_config.json").write_text('{"chat_template": "a"}')
    api = pairs_key(load_config("tiny"), "support")
    assert "generator_identity" not in api and "judge_identity" not in api  # API-made sets keep their keys
    cfg = load_config("tiny", {"data.synthetic.generator": "hf", "data.synthetic.generator_model": str(model),
                               "judge.kind": "hf", "judge.model": str(model)})
    first = key_hash(pairs_key(cfg, "support"))
    (model / "model.safetensors").write_bytes(b"weights two!")  # another model saved into the same folder
    assert key_hash(pairs_key(cfg, "support")) != first
    second = key_hash(pairs_key(cfg, "support"))
    (model / "tokenizer_config.json").write_text('{"chat_template": "bb"}')
    assert key_hash(pairs_key(cfg, "support")) != second
