"""PPO (`trl.experimental.ppo`, TRL 1.12), trained against its own reward model (vd.train.reward).

The policy is the merged SFT model plus a fresh LoRA adapter (made here, not by PPOTrainer: docs/
decisions.md) and `ref_model=None`, so the KL reference is the final SFT policy. The reward model is
frozen; the value model is a copy of it that PPO trains (in full where `reward.full_finetune`, else with
its own adapter). Rollouts stop at the end-of-turn token, which TRL's missing-eos penalty also looks for
(vd.core.chat.eos_at_end_of_turn). A PPO step is one update on (per-device batch × accumulation ×
processes) episodes. TRL 1.12's PPO cannot resume: an interrupted stage restarts from step 0, keeping its
reward model (RESUMABLE, KEEP_ON_RESTART; docs/decisions.md). Precision: docs/method.md §9.
"""

from __future__ import annotations

from vd.core.chat import end_of_turn_id, eos_at_end_of_turn
from vd.core.config import StageConfig
from vd.models import loading
from vd.models.memory import check_gpu_fits
from vd.train.common import StageJob, fp32_trainable, load_policy, nothing_to_finish, process_state, ready, trl_args
from vd.train.reward import train_reward_model

SECTIONS = ("ppo", "reward")
RESUMABLE = False
KEEP_ON_RESTART = ("reward",)
finish = nothing_to_finish


def episodes(st: StageConfig, steps: int) -> int:
    """The PPO episodes of `steps` updates (what PPOConfig.total_episodes counts)."""
    return steps * st.batch_size * st.grad_accum * process_state().num_processes


def set_total_steps(st: StageConfig, steps: int) -> None:
    st.total_episodes = episodes(st, steps)


def ppo_prompts(rows: list[dict], tokenizer, max_length: int):
    """The PPO prompts: each preference row's prompt, chat-formatted with the generation prompt, as input_ids
    (the template's tokens only, as chat_prompt_ids gives the probes)."""
    import datasets

    ids = [tokenizer.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=True,
                                         return_dict=True)["input_ids"] for r in rows]
    kept = [i for i in ids if len(i) <= max_length]  # the runner counts the prompts left out
    if not kept:
        raise ValueError(f"no PPO prompt fits ppo.max_length = {max_length} tokens")
    return datasets.Dataset.from_dict({"input_ids": kept})


def build_trainer(job: StageJob, rows: list[dict]):
    """The PPOTrainer of a PPO stage (training its reward model first if the run has none yet)."""
    from peft import get_peft_model
    from transformers import set_seed
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    cfg, st, start = job.cfg, job.params, job.start_model
    # before the reward model is trained: PPO's three models (policy, frozen reward, value) must fit together
    check_gpu_fits(cfg, start, "ppo")
    reward_path = train_reward_model(cfg, job.record, start, rows)
    set_seed(cfg.seed)
    tokenizer = eos_at_end_of_turn(loading.load_tokenizer(cfg, start, padding_side="left"))
    prompts = ppo_prompts(rows, tokenizer, st.max_length)
    policy = load_policy(cfg, start, st)
    reward_model = loading.load_model(cfg, str(reward_path), head="score")
    value_model = load_policy(cfg, str(reward_path), st, head="score")
    if not cfg.reward.full_finetune:
        value_model = get_peft_model(value_model, loading.lora_config(cfg, "SEQ_CLS"))
    # the policy's adapter made here (docs/decisions.md), after the value model's as TRL would
    policy = get_peft_model(policy, loading.policy_lora_config(cfg, policy, tokenizer))
    for model in (policy, value_model):
        fp32_trainable(model)  # before PPOTrainer builds its optimizer (and DDP its buckets)
    extra = dict(num_ppo_epochs=st.num_ppo_epochs, num_mini_batches=st.num_mini_batches,
                 response_length=st.response_length, stop_token_id=end_of_turn_id(tokenizer),
                 missing_eos_penalty=st.missing_eos_penalty, kl_coef=st.kl_coef, num_sample_generations=0,
                 save_only_model=True, sft_model_path=start, reward_model_path=str(reward_path),
                 local_rollout_forward_batch_size=st.rollout_batch_size)
    if st.total_episodes > 0:
        extra["total_episodes"] = st.total_episodes
    elif st.max_steps > 0:
        extra["total_episodes"] = episodes(st, st.max_steps)
    args = trl_args(PPOConfig, cfg, st, job.run_dir, **extra)
    trainer = PPOTrainer(args=args, processing_class=tokenizer, model=policy, ref_model=None,
                         reward_model=reward_model, value_model=value_model, train_dataset=prompts,
                         eval_dataset=prompts.select(range(min(len(prompts), st.batch_size))),
                         callbacks=job.callbacks, peft_config=None)
    # PPOTrainer skips Trainer.__init__; transformers 5.20's save_model reads this attribute it would have set.
    if not hasattr(trainer, "is_distributed_loading_by_transformers"):
        trainer.is_distributed_loading_by_transformers = False
    for name in ("policy", "config"):
        # Under DDP (several processes) TRL 1.12 reads `model.policy` and `model.config` off the DDP wrapper
        # (reference forward, saving, model card): expose them there as plain attributes (not submodules).
        if not hasattr(trainer.model, name):
            object.__setattr__(trainer.model, name, getattr(trainer.accelerator.unwrap_model(trainer.model), name))
    return ready(trainer, cfg, "ppo", job.record.name)
