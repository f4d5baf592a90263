"""Training precision on the GPU path, shown on CPU: a 4-bit policy as transformers' bitsandbytes quantizer
leaves it (`is_loaded_in_4bit = True`, weights in the compute dtype; here a small random Llama-3-style model,
not quantized), prepared for k-bit training by vd's own load_policy, with the compute dtype forced to bf16
or fp16 in every TRL config (`use_cpu=True`).

- PPO's first rollout runs (TRL 1.12 would cast the policy's lm_head and embeddings to bf16 and then
  multiply them with fp32 hidden states: "expected m1 and m2 to have the same dtype");
- every trainable parameter (LoRA, score head, chat-token rows) of every stage's trainer is fp32, PPO's
  value model included (TRL casts them to bf16 under quantization, which fp16's GradScaler cannot unscale);
- on CPU, the substitutions (no 4-bit, no bitsandbytes optimizer) are said once per process.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from test_framing import LLAMA3_SPECIALS, _job, _rows, local_base

from vd.core.config import load_config

SMALL = {"reward.max_steps": 1, "ppo.total_episodes": 2, "ppo.response_length": 4, "ppo.num_ppo_epochs": 1,
         **{f"{s}.batch_size": 2 for s in ("sft", "dpo", "simpo", "reward", "ppo")},
         **{f"{s}.grad_accum": 1 for s in ("sft", "dpo", "simpo", "reward", "ppo")}}
STAGES = ("sft", "dpo", "simpo", "reward", "ppo")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def llama3_base(tmp_path_factory) -> str:
    return local_base(tmp_path_factory.mktemp("llama3"), LLAMA3_SPECIALS, "<|begin_of_text|>", "<|end_of_text|>")


def as_if_4bit(monkeypatch, dtype: torch.dtype) -> None:
    """Models load as from a 4-bit checkpoint in `dtype`, and every TRL config gets that dtype's flag."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from vd.models import loading
    from vd.train import common, dpo, ppo, reward, sft, simpo

    def load_model(cfg, path=None, adapter=None, trainable=False, head="causal"):
        kw = {"num_labels": 1} if head == "score" else {}
        auto = AutoModelForSequenceClassification if head == "score" else AutoModelForCausalLM
        model = auto.from_pretrained(path or cfg.model.base, dtype=dtype, **kw)
        if head == "score" and model.config.pad_token_id is None:
            model.config.pad_token_id = model.config.eos_token_id
        model.is_loaded_in_4bit = True  # as transformers' bnb quantizer sets it (quantizer_bnb_4bit.py)
        if adapter is not None:
            model = PeftModel.from_pretrained(model, str(adapter), is_trainable=trainable)
        return model if trainable else model.eval()

    real_args = common.trl_args

    def trl_args(config_cls, cfg, st, output_dir, **extra):
        flags = {"bf16": dtype == torch.bfloat16, "fp16": dtype == torch.float16}
        return real_args(config_cls, cfg, st, output_dir, **{**extra, **flags})

    monkeypatch.setattr(loading, "load_model", load_model)
    monkeypatch.setattr(loading, "use_4bit", lambda cfg: True)
    for module in (sft, dpo, simpo, reward, ppo):
        monkeypatch.setattr(module, "trl_args", trl_args)


@pytest.mark.slow
def test_ppo_with_a_4bit_policy_in_bf16_runs_its_first_rollout(llama3_base, tmp_path, monkeypatch):
    from vd.train import ppo

    cfg = load_config("llama3-3b", {"model.base": llama3_base, **SMALL})
    as_if_4bit(monkeypatch, torch.bfloat16)
    reward_path = score_model(llama3_base, tmp_path / "reward-model")  # a trained one: not needed here
    monkeypatch.setattr(ppo, "train_reward_model", lambda *a, **k: Path(reward_path))
    trainer = ppo.build_trainer(_job(cfg, "ppo", llama3_base, tmp_path), _rows()[1])
    assert trainer.args.bf16 and trainer.args.use_cpu  # the flag reached PPOConfig, as on a bf16 GPU
    trainer.train()  # generate, score, one PPO update
    assert trainer.state.global_step == 1
    policy = trainer.model.policy
    assert policy.is_loaded_in_4bit and policy.get_output_embeddings().weight.dtype == torch.float32
    assert all(torch.isfinite(p).all() for p in policy.parameters() if p.requires_grad)


def trainable(model) -> dict[str, torch.dtype]:
    return {n: p.dtype for n, p in model.named_parameters() if p.requires_grad}


def score_model(base: str, folder: Path) -> str:
    """A reward model as train_reward_model leaves it (PPO's value model starts from it)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
    model.config.pad_token_id = model.config.eos_token_id
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(base).save_pretrained(folder)
    return str(folder)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_every_trainable_parameter_is_fp32_whatever_the_compute_dtype(dtype, llama3_base, tmp_path, monkeypatch):
    from vd.train import dpo, ppo, reward, sft, simpo

    cfg = load_config("llama3-3b", {"model.base": llama3_base, **SMALL})
    as_if_4bit(monkeypatch, dtype)
    reward_path = score_model(llama3_base, tmp_path / "reward-model")
    monkeypatch.setattr(ppo, "train_reward_model", lambda *a, **k: Path(reward_path))
    sft_rows, pref_rows = _rows()
    for stage in STAGES:
        job = _job(cfg, stage, llama3_base, tmp_path)
        if stage == "reward":  # its own run folder inside the PPO run's
            job = dataclasses.replace(job, record=reward.reward_record(cfg, job.record))
        module = {"sft": sft, "dpo": dpo, "simpo": simpo, "reward": reward, "ppo": ppo}[stage]
        trainer = module.build_trainer(job, sft_rows if stage == "sft" else pref_rows)
        assert getattr(trainer.args, "fp16" if dtype == torch.float16 else "bf16"), stage
        params = trainable(trainer.model)
        assert params and set(params.values()) == {torch.float32}, (stage, {n for n, d in params.items()
                                                                            if d != torch.float32})
        if stage in ("sft", "dpo", "simpo", "ppo"):  # the policy's chat-token rows train too
            assert any("trainable_tokens_delta" in n for n in params), stage
        if stage in ("reward", "ppo"):  # the score head (PPO: its value model's)
            assert any("score" in n and "lora" not in n for n in params), stage
        if stage == "ppo":
            assert trainable(trainer.model.value_model)


def test_cpu_substitutions_are_said_once_per_process(capsys, monkeypatch, llama3_base, tmp_path):
    from trl import SFTConfig

    from vd.models import loading
    from vd.train.common import trl_args

    monkeypatch.setattr(loading, "_NOTED", set(), raising=False)  # as in a fresh process
    cfg = load_config("llama3-3b", {"model.base": llama3_base})
    assert cfg.quantization.load_in_4bit and "8bit" in cfg.sft.optimizer
    for _ in range(2):
        for stage in ("sft", "dpo"):
            args = trl_args(SFTConfig, cfg, cfg.stage(stage), tmp_path / stage)
            assert args.optim == "adamw_torch"
        model = loading.load_model(cfg)
        assert next(model.parameters()).dtype == torch.float32
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note: ")]
    assert len(lines) == 2, lines
    assert "adamw_torch" in lines[0] and "paged_adamw_8bit" in lines[0]
    assert "unquantized in fp32" in lines[1] and "quantization.load_in_4bit" in lines[1]
