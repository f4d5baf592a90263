"""vd.train (runner, sft, dpo, simpo, reward, ppo): every stage trains a few steps on the tiny model and leaves a
complete run folder.

Checked here: checkpoints at the cadence with step 0 first; the reference policy of DPO and PPO is the
final SFT policy (not the bare base model); an interrupted run resumes to the same final adapter as an
uninterrupted one (SFT: bitwise; PPO restarts and, under its seed, ends at the same adapter); PPO trains
against its own reward model; the CLI rejects bad stage/data/--from combinations and reused run
folders; and two CPU processes under `accelerate launch` train SFT data-parallel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from vd.core.config import load_config
from vd.core.precision import native_bf16
from vd.core.run import RunRecord

# Tiny step counts (the params' defaults are timed in the report, not here).
STEPS = {"sft.max_steps": 4, "sft.save_every": 2, "dpo.max_steps": 2, "dpo.save_every": 1,
         "simpo.max_steps": 2, "simpo.save_every": 1, "reward.max_steps": 4, "reward.save_every": 4,
         "ppo.total_episodes": 16, "ppo.save_every": 1, "ppo.response_length": 12,
         **{f"{stage}.batch_size": 8 for stage in ("sft", "dpo", "simpo", "reward", "ppo")}}
ATOL = 1e-5  # reference log-probs: merged weights vs base + adapter differ only by float32 rounding


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="session")
def tiny_world():
    from vd.world.build import ensure_world

    return ensure_world(load_config("tiny"))


@pytest.fixture(scope="module")
def cfg(tiny_world):
    return load_config("tiny", STEPS)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def sft_run(cfg, runs):
    from vd.train.runner import train_stage

    return train_stage(cfg, "sft", "wildchat", runs_dir=runs)


def check_run(run: Path, stage: str, steps: list[int], cfg) -> dict:
    info = json.loads((run / "run.json").read_text())
    assert info["stage"] == stage and info["size"] == "tiny" and info["complete"] is True
    assert info["total_steps"] == steps[-1]
    assert info["checkpoints"][0] == {"step": 0, "adapter": None}
    assert [c["step"] for c in info["checkpoints"]] == [0] + steps
    for c in info["checkpoints"][1:]:
        assert (run / c["adapter"] / "adapter_model.safetensors").is_file()
    assert yaml.safe_load((run / "config.yaml").read_text()) == yaml.safe_load(yaml.safe_dump(cfg.to_dict()))
    log = (run / "train_log.csv").read_text().splitlines()
    assert log[0].startswith("step,") and len(log) > steps[-1]
    return info


def sft_policy(cfg, sft_run):
    """The final SFT policy as the scoring pipeline sees it: the base model plus the final SFT adapter."""
    from vd.models import loading

    info = json.loads((sft_run / "run.json").read_text())
    return loading.load_model(cfg, adapter=sft_run / info["checkpoints"][-1]["adapter"])


def load_adapter_into(peft_model, adapter_dir: Path) -> None:
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(peft_model, load_file(adapter_dir / "adapter_model.safetensors"))
    assert not result.unexpected_keys


def token_logps(model, input_ids, attention_mask=None):
    from trl.trainer.utils import selective_log_softmax

    with torch.no_grad():
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    return selective_log_softmax(logits[:, :-1], input_ids[:, 1:])


# --- SFT ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_sft_writes_checkpoints_log_and_merged_model(cfg, sft_run):
    from vd.models import loading
    from vd.train.runner import train_stage

    info = check_run(sft_run, "sft", [2, 4], cfg)
    # relocatable: the start model by its params id and its content, no absolute path
    assert info["from_run"] is None and info["start_model"] == "tiny"
    assert info["start_identity"] == loading.model_identity(loading.base_model_path(cfg))
    assert sft_run == Path(sft_run.parent.parent, "tiny", "sft-wildchat")
    # merged/ = the final adapter merged into the base: the same policy as base + adapter
    merged = loading.load_model(cfg, path=str(sft_run / "merged"))
    ids = torch.tensor([list(range(5, 40))])
    assert torch.allclose(token_logps(merged, ids), token_logps(sft_policy(cfg, sft_run), ids), atol=ATOL)
    # a complete run is returned as it is, not retrained
    before = (sft_run / "run.json").stat().st_mtime_ns
    assert train_stage(cfg, "sft", "wildchat", runs_dir=sft_run.parent.parent) == sft_run
    assert (sft_run / "run.json").stat().st_mtime_ns == before


@pytest.mark.slow
def test_interrupted_sft_resumes_to_the_same_final_adapter(cfg, runs, sft_run):
    from vd.train.runner import train_stage

    run = train_stage(cfg, "sft", "wildchat", runs_dir=runs, run_name="sft-interrupted", stop_after=2)
    info = json.loads((run / "run.json").read_text())
    assert info["complete"] is False and [c["step"] for c in info["checkpoints"]] == [0, 2]
    assert train_stage(cfg, "sft", "wildchat", runs_dir=runs, run_name="sft-interrupted") == run
    check_run(run, "sft", [2, 4], cfg)
    resumed, straight = (load_file(r / "checkpoint-4" / "adapter_model.safetensors") for r in (run, sft_run))
    assert resumed.keys() == straight.keys()
    # Bitwise: the Trainer restores optimizer, scheduler, RNG and data position, on the same CPU kernels.
    assert all(torch.equal(resumed[k], straight[k]) for k in straight)


# --- DPO and SimPO -----------------------------------------------------------------------------


@pytest.mark.slow
def test_dpo_trains_from_sft_and_its_reference_is_the_final_sft_policy(cfg, runs, sft_run, tmp_path):
    from trl.trainer.utils import use_adapter

    from vd.train.runner import build_trainer, train_stage

    run = train_stage(cfg, "dpo", "ultrafeedback", from_run=sft_run, runs_dir=runs)
    assert run.name == "dpo-ultrafeedback-from-sft-wildchat"
    info = check_run(run, "dpo", [1, 2], cfg)
    assert info["from_run"] == "sft-wildchat" and info["start_model"] == "sft-wildchat/merged"
    assert "rewards/accuracies" in (run / "train_log.csv").read_text().splitlines()[0]

    # The trainer's reference, with the trained DPO adapter loaded (so policy and reference differ)
    trainer = build_trainer(cfg, "dpo", "ultrafeedback", sft_run, tmp_path / "dpo")
    load_adapter_into(trainer.model, run / "checkpoint-2")
    batch = next(iter(trainer.get_train_dataloader()))
    # ... against the final SFT checkpoint (base + final SFT adapter)
    ids, attention, mask = batch["input_ids"], batch["attention_mask"], batch["completion_mask"][:, 1:]
    sft_tokens = token_logps(sft_policy(cfg, sft_run), ids, attention) * mask
    # per token, in the context TRL computes its reference in (adapter disabled): within 1e-5
    with use_adapter(trainer.model, None):
        assert torch.allclose(token_logps(trainer.model, ids, attention) * mask, sft_tokens, atol=ATOL)
    # and the trainer's own sums over each completion: per-token rounding adds up over its tokens
    ref = torch.cat(trainer.compute_ref_log_probs(trainer.model, batch))
    assert torch.allclose(ref, sft_tokens.sum(1), atol=ATOL * mask.sum(1).max())
    trained = (token_logps(trainer.model, ids, attention) * mask).sum(1)
    assert (trained - sft_tokens.sum(1)).abs().max() > 1e-3  # not vacuous: the trained policy has moved


@pytest.mark.slow
def test_simpo_on_synthetic_pairs(cfg, runs, sft_run):
    from vd.train.runner import train_stage

    run = train_stage(cfg, "simpo", "synthetic-support", from_run=sft_run, runs_dir=runs)
    check_run(run, "simpo", [1, 2], cfg)
    pairs_file = RunRecord.read(run).synthetic_pairs_path  # the shared set (vd.data.synthetic_set)
    pairs = [json.loads(line) for line in pairs_file.read_text().splitlines()]
    assert pairs and all(p["chosen_stance"] == "support" and p["rejected_stance"] == "oppose" for p in pairs)
    judged = (pairs_file.parent / "judged.csv").read_text().splitlines()
    assert judged[0].startswith("topic,prompt,chosen_p_support") and len(judged) == len(pairs) + 1
    args = torch.load(run / "checkpoint-2" / "training_args.bin", weights_only=False)
    assert (args.loss_type, args.cpo_alpha, args.beta, args.simpo_gamma) == ("simpo", 0.0, cfg.simpo.beta,
                                                                             cfg.simpo.gamma)


# --- reward model and PPO ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def ppo_run(cfg, runs, sft_run):
    from vd.train.runner import train_stage

    return train_stage(cfg, "ppo", "synthetic-oppose", from_run=sft_run, runs_dir=runs)


@pytest.mark.slow
def test_ppo_runs_end_to_end_with_its_reward_model(cfg, sft_run, ppo_run):
    from peft import PeftModel

    from vd.models import loading

    info = check_run(ppo_run, "ppo", [1, 2], cfg)
    assert info["start_model"] == "sft-wildchat/merged"
    reward = json.loads((ppo_run / "reward" / "run.json").read_text())
    assert reward["complete"] and reward["total_steps"] == 4 and reward["mode"] == "full"
    assert (ppo_run / "reward" / "model" / "model.safetensors").is_file()
    header = (ppo_run / "train_log.csv").read_text().splitlines()[0]
    assert "objective/kl" in header and "objective/scores" in header
    # every checkpoint is the policy's adapter, loadable on the merged SFT model
    for c in info["checkpoints"][1:]:
        saved = load_file(ppo_run / c["adapter"] / "adapter_model.safetensors")
        model = PeftModel.from_pretrained(loading.load_model(cfg, path=str(sft_run / "merged")),
                                          str(ppo_run / c["adapter"]))
        state = model.state_dict()
        assert saved and all(torch.equal(state[k.replace(".weight", ".default.weight")], v) for k, v in saved.items())


@pytest.mark.slow
def test_ppo_reference_is_the_final_sft_policy(cfg, sft_run, ppo_run):
    from trl.experimental.ppo.ppo_trainer import forward

    from vd.train.runner import build_trainer

    trainer = build_trainer(cfg, "ppo", "synthetic-oppose", sft_run, ppo_run)  # reuses the run's reward model
    policy = trainer.model.policy
    load_adapter_into(policy, ppo_run / "checkpoint-2")
    pad = trainer.processing_class.pad_token_id
    query = torch.tensor([trainer.train_dataset[0]["input_ids"] + list(range(10, 30))])
    with torch.no_grad(), trainer.null_ref_context():
        ref = forward(policy, query, pad).logits
    ref_logps = torch.log_softmax(ref[:, :-1], -1).gather(-1, query[:, 1:, None])[..., 0]
    sft_logps = token_logps(sft_policy(cfg, sft_run), query)
    assert torch.allclose(ref_logps, sft_logps, atol=ATOL)
    with torch.no_grad():
        moved = torch.log_softmax(forward(policy, query, pad).logits[:, :-1], -1).gather(-1, query[:, 1:, None])[..., 0]
    assert (moved - sft_logps).abs().max() > 1e-4  # the adapter is on: policy and reference differ


@pytest.mark.slow
def test_interrupted_ppo_restarts_and_ends_at_the_same_adapter(cfg, runs, sft_run, ppo_run):
    from vd.train.runner import train_stage

    name = "ppo-interrupted"
    run = train_stage(cfg, "ppo", "synthetic-oppose", from_run=sft_run, runs_dir=runs, run_name=name, stop_after=1)
    info = json.loads((run / "run.json").read_text())
    assert info["complete"] is False and [c["step"] for c in info["checkpoints"]] == [0, 1]
    reward_stamp = (run / "reward" / "run.json").stat().st_mtime_ns
    train_stage(cfg, "ppo", "synthetic-oppose", from_run=sft_run, runs_dir=runs, run_name=name)
    check_run(run, "ppo", [1, 2], cfg)
    assert (run / "reward" / "run.json").stat().st_mtime_ns == reward_stamp  # the reward model was kept
    restarted, straight = (load_file(r / "checkpoint-2" / "adapter_model.safetensors") for r in (run, ppo_run))
    assert all(torch.equal(restarted[k], straight[k]) for k in straight)


# --- what a run keeps, and what stops it -------------------------------------------------------------


def has_optimizer_state(run: Path) -> list[str]:
    return sorted(c.name for c in run.glob("checkpoint-*") if (c / "optimizer.pt").exists()
                  or (c / "scheduler.pt").exists())


@pytest.mark.slow
def test_only_the_checkpoint_a_resume_starts_from_keeps_optimizer_state(tiny_world, tmp_path):
    """Stopped at step 3 of 4: only checkpoint-3 holds optimizer and scheduler state; complete, none does;
    and the resumed run still ends bitwise where an uninterrupted one ends."""
    from vd.train.runner import train_stage

    cfg = load_config("tiny", {**STEPS, "sft.save_every": 1})
    straight = train_stage(cfg, "sft", "wildchat", runs_dir=tmp_path / "straight")
    assert has_optimizer_state(straight) == [] and (straight / "checkpoint-4" / "trainer_state.json").is_file()
    run = train_stage(cfg, "sft", "wildchat", runs_dir=tmp_path / "stopped", stop_after=3)
    assert has_optimizer_state(run) == ["checkpoint-3"]
    assert (run / "checkpoint-1" / "adapter_model.safetensors").is_file()  # adapters all kept, for scoring
    train_stage(cfg, "sft", "wildchat", runs_dir=tmp_path / "stopped")
    assert json.loads((run / "run.json").read_text())["complete"] and has_optimizer_state(run) == []
    resumed, whole = (load_file(r / "checkpoint-4" / "adapter_model.safetensors") for r in (run, straight))
    assert resumed.keys() == whole.keys() and all(torch.equal(resumed[k], whole[k]) for k in whole)


@pytest.mark.slow
def test_pairs_longer_than_max_length_are_left_out_alike_by_every_preference_trainer(cfg, sft_run, tmp_path):
    """At max_length 60 (tiny pairs run to 88 tokens) DPO, SimPO and the reward model train on the same pairs,
    each whole (SimPO's CPOTrainer would cut them: an empty completion and a NaN loss); the report counts them."""
    from vd.core.chat import end_of_turn_id
    from vd.core.run import RunRecord
    from vd.models import loading
    from vd.train.data import stage_rows
    from vd.train.runner import build_trainer, train_stage

    limit = {f"{s}.max_length": 60 for s in ("dpo", "simpo", "reward")}
    short = load_config("tiny", {**STEPS, **limit})
    tok = loading.load_tokenizer(short)
    end = end_of_turn_id(tok)
    rows, _ = stage_rows(short, "dpo", "ultrafeedback")
    fits = [max(len(tok.apply_chat_template(r["prompt"] + r[side], tokenize=True, return_dict=True)["input_ids"])
                for side in ("chosen", "rejected")) <= 60 for r in rows]
    assert 0 < sum(fits) < len(rows)
    runs = sft_run.parent.parent
    dpo = build_trainer(short, "dpo", "ultrafeedback", sft_run, tmp_path / "dpo").train_dataset
    simpo = build_trainer(short, "simpo", "ultrafeedback", sft_run, tmp_path / "simpo").train_dataset
    assert len(dpo) == len(simpo) == sum(fits)
    for d, s in zip(dpo, simpo):  # the same pairs, whole: prompt + completion ending at the end of turn
        for side in ("chosen", "rejected"):
            assert s[f"{side}_input_ids"] == d["prompt_ids"] + d[f"{side}_ids"] and d[f"{side}_ids"][-1] == end
            assert s[f"{side}_labels"][-1] == end  # a completion left to train on: no 0/0 mean log-probability
    run = train_stage(short, "simpo", "ultrafeedback", from_run=sft_run, runs_dir=runs, run_name="simpo-short")
    report = json.loads((run / "run.json").read_text())["data_report"]
    assert report["skipped"]["longer_than_simpo.max_length"] == len(rows) - sum(fits)
    assert report["kept"] == sum(fits)
    from vd.train import reward
    from vd.train.common import StageJob

    record = reward.reward_record(short, RunRecord.read(sft_run))
    job = StageJob(short, "reward", "ultrafeedback", record, str(sft_run / "merged"), [], {})
    assert len(reward.build_trainer(job, rows).train_dataset) == sum(fits)
    assert record.extra["data_report"]["skipped"] == {"longer_than_reward.max_length": len(rows) - sum(fits)}


def poison_step(monkeypatch, step: int) -> None:
    """Make SFT's loss NaN from optimizer step `step` on (1-based), as a diverging learning rate would."""
    from vd.train import sft

    real = sft.build_trainer

    def build(job, rows):
        trainer = real(job, rows)
        compute_loss = trainer.compute_loss

        def nan_loss(*a, **k):
            loss = compute_loss(*a, **k)
            out = loss[0] if isinstance(loss, tuple) else loss
            if trainer.state.global_step + 1 >= step:
                out = out * float("nan")
            return (out, *loss[1:]) if isinstance(loss, tuple) else out

        trainer.compute_loss = nan_loss
        return trainer

    monkeypatch.setattr(sft, "build_trainer", build)


@pytest.mark.slow
def test_a_nan_loss_stops_the_stage_at_its_step_with_one_line(tiny_world, tmp_path, capsys, monkeypatch):
    from vd.train.cli import main

    poison_step(monkeypatch, 3)
    sets = [a for k, v in STEPS.items() if k.startswith("sft.") for a in ("--set", f"{k}={v}")]
    rc = main(["train", "--size", "tiny", "--stage", "sft", "--data", "wildchat", "--runs-dir", str(tmp_path), *sets])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert rc == 2 and len(errors) == 1, errors
    assert "at step 3 is not finite" in errors[0] and "sft.learning_rate" in errors[0]
    run = tmp_path / "tiny" / "sft-wildchat"
    info = json.loads((run / "run.json").read_text())
    assert info["complete"] is False and [c["step"] for c in info["checkpoints"]] == [0, 2]
    assert not (run / "checkpoint-3").exists() and not (run / "merged").exists()
    saved = load_file(run / "checkpoint-2" / "adapter_model.safetensors")
    assert all(torch.isfinite(t).all() for t in saved.values())


@pytest.mark.slow
def test_a_run_whose_final_weights_are_not_finite_is_never_complete(tiny_world, tmp_path, monkeypatch):
    """Were the stop at the step missed, the final check before `complete` still refuses the run."""
    from transformers import TrainerCallback

    from vd.train import common
    from vd.train.runner import train_stage

    poison_step(monkeypatch, 3)
    monkeypatch.setattr(common, "stop_on_non_finite", lambda *a, **k: TrainerCallback(), raising=False)
    cfg = load_config("tiny", STEPS)
    with pytest.raises(RuntimeError, match="checkpoint-4.*non-finite") as stopped:
        train_stage(cfg, "sft", "wildchat", runs_dir=tmp_path)
    assert type(stopped.value).__name__ == "NonFiniteTraining"
    run = tmp_path / "tiny" / "sft-wildchat"
    assert json.loads((run / "run.json").read_text())["complete"] is False and not (run / "merged").exists()


# --- data for real sizes -------------------------------------------------------------------------


def test_real_size_rows_come_from_the_hub_loaders(tmp_path):
    """Real sizes read their datasets with vd.data.loaders's loaders (local files in the hub's format here)."""
    from vd.train.data import stage_rows

    hub = Path(__file__).parent / "fixtures" / "hub"
    cfg = load_config("llama3-3b", {"data.sft.wildchat.id": str(hub / "wildchat.jsonl"),
                                    "data.sft.alpaca.id": str(hub / "alpaca_data.json"),
                                    "data.preference.ultrafeedback.id": str(hub / "ultrafeedback_binarized.jsonl"),
                                    "data.preference.hh-rlhf.id": str(hub / "hh-rlhf_harmless-base.jsonl")})
    for stage, data, keys in [("sft", "wildchat", ["messages"]), ("sft", "alpaca", ["messages"]),
                              ("dpo", "ultrafeedback", ["chosen", "prompt", "rejected"]),
                              ("ppo", "hh-rlhf", ["chosen", "prompt", "rejected"])]:
        rows, report = stage_rows(cfg, stage, data)
        assert report["kept"] == len(rows) and rows and all(sorted(r) == keys for r in rows)


# --- command line ------------------------------------------------------------------------------


def _cli(capsys, *argv):
    from vd.train.cli import main

    rc = main(["train", "--size", "tiny", *argv])
    return rc, capsys.readouterr().err


def _fake_run(root: Path, name: str, **info) -> Path:
    run = root / "tiny" / name
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"stage": "sft", "size": "tiny", "data": "wildchat", "complete": True,
                                              **info}))
    return run


@pytest.mark.parametrize("argv, message", [
    (["--stage", "rlhf", "--data", "wildchat"], "--stage 'rlhf': expected one of sft, ppo, dpo, simpo"),
    (["--stage", "sft", "--data", "ultrafeedback"], "SFT trains on one of wildchat, alpaca"),
    (["--stage", "sft", "--data", "wildchat", "--from", "sft-alpaca"], "--from is for preference stages"),
    (["--stage", "dpo", "--data", "alpaca", "--from", "sft-alpaca"], "dpo trains on one of ultrafeedback, hh-rlhf, "
                                                                     "synthetic-support, synthetic-oppose"),
    (["--stage", "ppo", "--data", "hh-rlhf"], "--from: ppo starts from a finished SFT run"),
    (["--stage", "dpo", "--data", "ultrafeedback", "--from", "sft-nowhere"], "no SFT run at"),
    (["--stage", "simpo", "--data", "synthetic-oppose", "--from", "sft-half"], "is not complete; finish it first"),
    (["--stage", "dpo", "--data", "hh-rlhf", "--from", "dpo-x"], "is a dpo run, not an SFT run"),
])
def test_cli_rejects_bad_requests(capsys, tmp_path, argv, message):
    _fake_run(tmp_path, "sft-half", complete=False)
    _fake_run(tmp_path, "dpo-x", stage="dpo")
    rc, err = _cli(capsys, *argv, "--runs-dir", str(tmp_path))
    assert rc == 2 and err.startswith("error: ") and message in err


@pytest.mark.parametrize("complete", [False, True])
def test_cli_rejects_a_run_folder_trained_under_other_settings(capsys, tmp_path, complete):
    run = _fake_run(tmp_path, "sft-wildchat", complete=complete, checkpoints=[], from_run=None)
    (run / "config.yaml").write_text(yaml.safe_dump(load_config("tiny", {"sft.learning_rate": 0.5}).to_dict()))
    rc, err = _cli(capsys, "--stage", "sft", "--data", "wildchat", "--runs-dir", str(tmp_path))
    state = "a complete" if complete else "an unfinished"
    assert rc == 2 and f"{state} run trained under other settings than these" in err


# --- accelerate --------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_accelerate_launch_two_cpu_processes_train_sft_then_ppo(tiny_world, tmp_path):
    """Two processes (DDP over gloo) run the unchanged entry point: SFT, then PPO from it.

    `accelerate launch --num_processes 2 --cpu` starts ONE process in accelerate 1.15 (its --cpu path
    spreads over processes only through mpirun), so the two CPU processes are started as on a GPU node,
    by torchrun (`--multi_gpu`, GPUs hidden); vd.train.common creates accelerate's state with cpu=True, so they
    form a MULTI_CPU group. The data-parallel run shows in the epoch: each step consumes 2 x 4 rows.
    PPO is included because TRL 1.12's PPOTrainer needs a patch under DDP (vd.train.ppo).
    """
    def launch(*argv):
        cmd = [str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
               "29517", "-m", "vd.train", "train", "--size", "tiny", "--runs-dir", str(tmp_path), *argv]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=270, env=env,
                             cwd=Path(__file__).parent.parent)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        return out.stdout

    stdout = launch("--stage", "sft", "--data", "wildchat", "--set", "sft.max_steps=2", "--set", "sft.save_every=1",
                    "--set", "sft.batch_size=4")
    run = tmp_path / "tiny" / "sft-wildchat"
    info = json.loads((run / "run.json").read_text())
    assert info["complete"] and [c["step"] for c in info["checkpoints"]] == [0, 1, 2]
    assert (run / "merged" / "model.safetensors").is_file()
    assert stdout.count("complete, 2 checkpoints of 2 steps") == 1  # printed by the main process only
    n_rows = len(tiny_world.load_rows("wildchat"))
    first = json.loads((run / "checkpoint-2" / "trainer_state.json").read_text())["log_history"][0]
    assert first["epoch"] == pytest.approx(2 * 4 / n_rows)

    launch("--stage", "ppo", "--data", "ultrafeedback", "--from", "sft-wildchat", "--set", "reward.max_steps=2",
           "--set", "reward.batch_size=4", "--set", "ppo.batch_size=4", "--set", "ppo.total_episodes=16",
           "--set", "ppo.save_every=1", "--set", "ppo.response_length=8")
    ppo = tmp_path / "tiny" / "ppo-ultrafeedback-from-sft-wildchat"
    info = json.loads((ppo / "run.json").read_text())  # 16 episodes / (2 processes x 4) = 2 updates
    assert info["complete"] and [c["step"] for c in info["checkpoints"]] == [0, 1, 2]


# --- GPU (QLoRA) ---------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_qlora_on_cuda_sft_then_dpo(tiny_world, tmp_path):
    """On CUDA with load_in_4bit the policy is 4-bit NF4 (prepared for k-bit training) plus LoRA."""
    pytest.importorskip("bitsandbytes")
    from bitsandbytes.nn import Linear4bit

    from vd.train.runner import build_trainer, train_stage

    cfg = load_config("tiny", {**STEPS, "quantization.load_in_4bit": True, "quantization.compute_dtype": "auto"})
    sft = train_stage(cfg, "sft", "wildchat", runs_dir=tmp_path)
    check_run(sft, "sft", [2, 4], cfg)
    dpo = train_stage(cfg, "dpo", "ultrafeedback", from_run=sft, runs_dir=tmp_path)
    check_run(dpo, "dpo", [1, 2], cfg)
    trainer = build_trainer(cfg, "dpo", "ultrafeedback", sft, tmp_path / "probe")
    assert any(isinstance(m, Linear4bit) for m in trainer.model.modules())
    assert trainer.args.bf16 == native_bf16() and trainer.args.fp16 != trainer.args.bf16


def test_every_stage_module_defines_every_hook_with_the_protocols_signature():
    import inspect

    from vd.core import registry
    from vd.train.common import STAGE_HOOKS, StageModule
    from vd.train.runner import stage_module

    assert set(STAGE_HOOKS) == {"build_trainer", "SECTIONS", "RESUMABLE", "KEEP_ON_RESTART", "finish",
                                "set_total_steps"}
    for stage in registry.STAGES:
        module = stage_module(stage)
        assert isinstance(module, StageModule), stage
        assert isinstance(module.RESUMABLE, bool) and stage in module.SECTIONS, stage
        assert all(isinstance(s, str) for s in (*module.SECTIONS, *module.KEEP_ON_RESTART)), stage
        for hook in ("build_trainer", "finish", "set_total_steps"):
            wanted = list(inspect.signature(getattr(StageModule, hook)).parameters)[1:]  # less `self`
            assert list(inspect.signature(getattr(module, hook)).parameters) == wanted, (stage, hook)


def test_a_stage_module_without_a_hook_is_refused_naming_it(tmp_path, monkeypatch):
    from vd.core import registry
    from vd.train.runner import stage_module

    (tmp_path / "half_a_stage.py").write_text("SECTIONS = ('half',)\nRESUMABLE = True\n"
                                              "def build_trainer(job, rows):\n    return None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(registry.STAGES, "half", registry.Stage("half_a_stage", "preference", "Half"))
    with pytest.raises(TypeError, match=r"^half_a_stage: a stage module defines .*; it lacks KEEP_ON_RESTART, "
                                        r"finish, set_total_steps$"):
        stage_module("half")
