"""PPO (`trl.experimental.ppo`, TRL 1.12) and the reward model it is trained against.

The reward model is trained with `trl.RewardTrainer` on the same preference data as the PPO stage,
starting from the SFT run's merged model with a scalar head (`models.load_model(head="score")`), inside
`train_stage(stage="ppo")`, and saved under `<ppo run>/reward/`: its checkpoints, `train_log.csv`,
`run.json` (complete when done), and the final model in `reward/model/`. A complete reward model is
reused when the PPO stage is restarted. How it is trained (our choice):

- tiny size: full fine-tuning (a sub-1M-parameter model; simplest, and nothing to merge);
- real sizes: LoRA (task_type SEQ_CLS; the new score head is trained in full as a `modules_to_save`),
  then merged into the SFT model in the compute dtype and saved, so PPO loads it like any model.

PPO: the policy is the merged SFT model plus a fresh LoRA adapter, `ref_model=None`, so the KL reference
is the adapter-disabled policy = the final SFT policy. The reward model is frozen; the value model is a
copy of it that PPO trains (in full for the tiny size, with its own LoRA adapter for real sizes, so that
neither its weights nor its optimizer state are a full model's). Prompts are pre-tokenized (`input_ids`,
with the generation prompt), the tokenizer pads left, and rollouts stop at the end-of-turn token.

The reward model scores a sequence at its last token. RewardTrainer would see chat-formatted pairs
ending in "<|im_end|>\\n", while PPO scores responses truncated right after the stop token; so the pairs
are tokenized here without the trailing whitespace, and both read the score at the end-of-turn token.

Checkpoints: every `save_every` PPO updates; PPOTrainer saves only its policy (the PEFT adapter), which
loads with `PeftModel.from_pretrained(merged SFT model, checkpoint)`. Resume: TRL 1.12's
`PPOTrainer.train()` has no `resume_from_checkpoint` (it always starts at update 0), so an interrupted PPO
stage is restarted from step 0 by `train_stage` (under the same seed it then ends where an uninterrupted
run ends); checkpoints are saved without optimizer state (`save_only_model`) since nothing reads it.

Two patches to TRL 1.12's PPOTrainer (it skips `Trainer.__init__`), in `build_ppo_trainer`: the attribute
`is_distributed_loading_by_transformers` that transformers 5.20's `save_model` reads, and, under DDP,
`policy`/`config` on the DDP wrapper, which TRL reads there (without them PPO fails on several processes).
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

from vd import models
from vd.config import Config
from vd.train import (_make_callback, _quiet, _tidy_callbacks, _wait, _write_run, load_policy, process_state,
                      stage_rows, trl_args)


# (head, prepared for k-bit training, LoRA trained) of the models a PPO stage holds on the GPU: the policy,
# the frozen reward model and the value model (see build_ppo_trainer)
PPO_MODELS = [("causal", True, True), ("score", False, False), ("score", True, True)]


@contextlib.contextmanager
def _new_head_quietly():
    """transformers reports the fresh score head of a causal LM loaded with a scalar head as MISSING: expected."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def reward_mode(cfg: Config) -> str:
    """"full" fine-tuning for the tiny size, "lora" (SEQ_CLS) otherwise."""
    return "full" if cfg.model.base == "tiny" else "lora"


def end_of_turn_id(tokenizer) -> int:
    """The token that ends an assistant turn: <|im_end|> where it is one token, else the tokenizer's eos."""
    token = tokenizer.convert_tokens_to_ids(models.END_OF_TURN)
    if isinstance(token, int) and token is not None and token != tokenizer.unk_token_id:
        return token
    return tokenizer.eos_token_id


def reward_pairs(rows: list[dict], tokenizer) -> list[dict]:
    """Pre-tokenized pairs for RewardTrainer, each sequence ending at the end-of-turn token (see above)."""
    def ids(messages):
        text = tokenizer.apply_chat_template(messages, tokenize=False).rstrip()
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    return [{"chosen_ids": ids(r["prompt"] + r["chosen"]), "rejected_ids": ids(r["prompt"] + r["rejected"])}
            for r in rows]


def ppo_prompts(rows: list[dict], tokenizer, max_length: int):
    """The PPO prompts: each preference row's prompt, chat-formatted with the generation prompt, as input_ids."""
    import datasets

    ids = [tokenizer.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=True,
                                         return_dict=True)["input_ids"] for r in rows]
    kept = [i for i in ids if len(i) <= max_length]
    if not kept:
        raise ValueError(f"no PPO prompt fits ppo.max_length = {max_length} tokens")
    return datasets.Dataset.from_dict({"input_ids": kept})


def train_reward_model(cfg: Config, data: str, from_run: Path, run_dir: Path) -> Path:
    """Train (or reuse, or resume) the reward model of a PPO run; return the folder of the final model."""
    import datasets
    from transformers import set_seed
    from trl import RewardConfig, RewardTrainer

    out = Path(run_dir) / "reward"
    final = out / "model"
    done = out / "run.json"
    if done.is_file() and json.loads(done.read_text()).get("complete") and (final / "config.json").is_file():
        return final
    set_seed(cfg.seed)
    st, merged, mode = cfg.reward, str(Path(from_run) / "merged"), reward_mode(cfg)
    tokenizer = models.load_tokenizer(cfg, merged)
    dataset = datasets.Dataset.from_list(reward_pairs(stage_rows(cfg, "ppo", data, run_dir), tokenizer))
    with _new_head_quietly():
        model = load_policy(cfg, merged, st, head="score")
    info = {"stage": "reward", "data": data, "size": cfg.size, "from_run": str(from_run), "base_model": merged,
            "mode": mode, "total_steps": None, "checkpoints": [], "complete": False}
    callback = _make_callback(out, info, f"{Path(run_dir).name}/reward", None, False)
    args = trl_args(RewardConfig, cfg, st, out, max_length=st.max_length)
    with _quiet(args.disable_tqdm):
        trainer = RewardTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                                peft_config=models.lora_config(cfg, "SEQ_CLS") if mode == "lora" else None,
                                callbacks=[callback])
    _tidy_callbacks(trainer)
    saved = sorted((int(d.name[11:]), d) for d in out.glob("checkpoint-*")
                   if d.name[11:].isdigit() and (d / "trainer_state.json").is_file())  # finished saves only
    trainer.train(resume_from_checkpoint=str(saved[-1][1]) if saved else None)
    tmp = out / ".model-partial"
    if trainer.accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    _wait()
    trainer.save_model(str(tmp))  # on every process: saving may be collective under distributed backends
    if trainer.accelerator.is_main_process:
        if mode == "lora":
            _merge_score_adapter(cfg, merged, tmp, out / ".model-merged")
            shutil.rmtree(tmp)
            (out / ".model-merged").rename(tmp)
        tokenizer.save_pretrained(tmp)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        accuracies = [h["accuracy"] for h in trainer.state.log_history if "accuracy" in h]
        info.update(total_steps=int(trainer.state.max_steps), complete=True,
                    final_train_accuracy=sum(accuracies[-5:]) / len(accuracies[-5:]) if accuracies else None)
        _write_run(out, info, trainer.state.log_history)
    _wait()
    return final


def _merge_score_adapter(cfg: Config, base: str, adapter: Path, out: Path) -> None:
    """Merge a SEQ_CLS LoRA adapter (with its trained score head) into the unquantized base; save to `out`."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    dtype = models.compute_dtype(cfg) if torch.cuda.is_available() else torch.float32
    with _new_head_quietly():
        model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, dtype=dtype)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = model.config.eos_token_id
    PeftModel.from_pretrained(model, str(adapter)).merge_and_unload().save_pretrained(out)


def build_ppo_trainer(cfg: Config, data: str, from_run: Path, run_dir: Path, callbacks=()):
    """The PPOTrainer of a PPO stage (training its reward model first if the run has none yet)."""
    from transformers import set_seed
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    merged = str(Path(from_run) / "merged")
    # before the reward model is trained: PPO's three models (policy, frozen reward, value) must fit together
    models.check_gpu_fits(cfg, merged, PPO_MODELS, "PPO")
    reward_path = train_reward_model(cfg, data, from_run, run_dir)
    set_seed(cfg.seed)
    st = cfg.ppo
    tokenizer = models.load_tokenizer(cfg, merged, padding_side="left")
    prompts = ppo_prompts(stage_rows(cfg, "ppo", data, run_dir), tokenizer, st.max_length)
    policy = load_policy(cfg, merged, st)
    reward_model = models.load_model(cfg, str(reward_path), head="score")
    value_model = load_policy(cfg, str(reward_path), st, head="score")
    if reward_mode(cfg) == "lora":
        from peft import get_peft_model

        value_model = get_peft_model(value_model, models.lora_config(cfg, "SEQ_CLS"))
    extra = dict(num_ppo_epochs=st.num_ppo_epochs, num_mini_batches=st.num_mini_batches,
                 response_length=st.response_length, stop_token_id=end_of_turn_id(tokenizer),
                 missing_eos_penalty=st.missing_eos_penalty, kl_coef=st.kl_coef, num_sample_generations=0,
                 save_only_model=True, sft_model_path=merged, reward_model_path=str(reward_path))
    if st.total_episodes > 0:
        extra["total_episodes"] = st.total_episodes
    elif st.max_steps > 0:
        extra["total_episodes"] = st.max_steps * st.batch_size * st.grad_accum * process_state().num_processes
    args = trl_args(PPOConfig, cfg, st, run_dir, **extra)
    trainer = PPOTrainer(args=args, processing_class=tokenizer, model=policy, ref_model=None,
                         reward_model=reward_model, value_model=value_model, train_dataset=prompts,
                         eval_dataset=prompts.select(range(min(len(prompts), st.batch_size))),
                         callbacks=list(callbacks), peft_config=models.lora_config(cfg))
    # PPOTrainer skips Trainer.__init__; transformers 5.20's save_model reads this attribute it would have set.
    if not hasattr(trainer, "is_distributed_loading_by_transformers"):
        trainer.is_distributed_loading_by_transformers = False
    for name in ("policy", "config"):
        # Under DDP (several processes) TRL 1.12 reads `model.policy` and `model.config` off the DDP wrapper
        # (reference forward, saving, model card): expose them there as plain attributes (not submodules).
        if not hasattr(trainer.model, name):
            object.__setattr__(trainer.model, name, getattr(trainer.accelerator.unwrap_model(trainer.model), name))
    _tidy_callbacks(trainer)
    return trainer
