"""The reward model PPO is trained against (`trl.RewardTrainer`), on the PPO stage's preference pairs,
from the SFT run's merged model with a scalar head.

It lives in `<ppo run>/reward/`, itself a run folder (stage "reward"; the final model in `reward/model/`),
reused when the PPO stage restarts. With `reward.full_finetune` (the tiny size) every weight trains;
otherwise a LoRA adapter with the new score head trained in full (`modules_to_save`), merged into the SFT
model shard by shard so PPO loads it like any model (ours). Pairs longer than reward.max_length are left
out, as DPO and SimPO leave them out, and counted. Each sequence ends at the end-of-turn token, where PPO
truncates its responses and the reward model reads its score (`reward_pairs`).

    final = train_reward_model(cfg, parent, start_model, rows)   # <ppo run>/reward/model
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

from vd.core.config import Config
from vd.core.run import RunRecord, discover_checkpoints
from vd.models import loading
from vd.train.common import (
    StageJob,
    drop_resume_state,
    is_main,
    load_policy,
    nothing_to_finish,
    quiet,
    ready,
    run_callback,
    set_max_steps,
    trl_args,
    wait_for_everyone,
    write_run,
)
from vd.train.guards import check_final_weights, fitting_pairs

# A helper stage: trained inside PPO's (train_reward_model), never by the runner, but a StageModule all the same.
SECTIONS = ("reward",)
RESUMABLE = True
KEEP_ON_RESTART: tuple[str, ...] = ()
finish = nothing_to_finish
set_total_steps = set_max_steps


@contextlib.contextmanager
def new_head_quietly():
    """transformers reports the fresh score head of a causal LM loaded with a scalar head as MISSING: expected."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def reward_pairs(rows: list[dict], tokenizer) -> list[dict]:
    """Pre-tokenized pairs for RewardTrainer, each sequence ending at the end-of-turn token, as the project's
    template ends a conversation (trailing whitespace stripped for a model's own template), where PPO
    truncates its responses; the template's tokens only, BOS from it. RewardTrainer takes
    `chosen_ids`/`rejected_ids` as they are (trl/trainer/reward_trainer.py _prepare_dataset)."""
    def ids(messages):
        text = tokenizer.apply_chat_template(messages, tokenize=False).rstrip()
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    return [{"chosen_ids": ids(r["prompt"] + r["chosen"]), "rejected_ids": ids(r["prompt"] + r["rejected"])}
            for r in rows]


def reward_record(cfg: Config, parent: RunRecord) -> RunRecord:
    """The reward model's run folder record, `<parent>/reward/`."""
    return RunRecord(root=parent.reward_dir, stage="reward", data=parent.data, size=cfg.size,
                     from_run=parent.from_run, start_model=parent.start_model, start_identity=parent.start_identity,
                     extra={"mode": "full" if cfg.reward.full_finetune else "lora"})


def build_trainer(job: StageJob, rows: list[dict]):
    """The RewardTrainer of a reward model, on the pairs that fit reward.max_length (counted in its record)."""
    import datasets
    from trl import RewardConfig, RewardTrainer

    cfg, record, start_model = job.cfg, job.record, job.start_model
    st = cfg.reward
    tokenizer = loading.load_tokenizer(cfg, start_model)
    kept = fitting_pairs(rows, tokenizer, "reward", st.max_length)
    record.extra["data_report"] = {"source": "the PPO run's pairs", "read": len(rows), "kept": len(kept),
                                   "skipped": {"longer_than_reward.max_length": len(rows) - len(kept)}
                                   if len(kept) < len(rows) else {}}
    dataset = datasets.Dataset.from_list(reward_pairs(kept, tokenizer))
    with new_head_quietly():
        model = load_policy(cfg, start_model, st, head="score")
    args = trl_args(RewardConfig, cfg, st, record.root, max_length=st.max_length)
    with quiet(args.disable_tqdm):
        trainer = RewardTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                                peft_config=None if st.full_finetune else loading.lora_config(cfg, "SEQ_CLS"),
                                callbacks=job.callbacks)
    return ready(trainer, cfg, "reward", f"{record.root.parent.name}/reward")


def train_reward_model(cfg: Config, parent: RunRecord, start_model: str, rows: list[dict], callbacks=None) -> Path:
    """Train (or reuse, or resume) the reward model of the PPO run `parent`; return its final model's folder.
    `callbacks` replace the one that keeps reward/run.json current (benchmarks time steps this way)."""
    from transformers import set_seed

    out = parent.reward_dir
    final = out / "model"
    done = RunRecord.find(out)
    if done is not None and done.complete and (final / "config.json").is_file():
        return final
    set_seed(cfg.seed)
    st = cfg.reward
    record = reward_record(cfg, parent)
    callbacks = callbacks or [run_callback(record, f"{parent.name}/reward", None, False)]
    trainer = build_trainer(StageJob(cfg, "reward", parent.data, record, start_model, callbacks, {}), rows)
    last = discover_checkpoints(out)[-1]
    trainer.train(resume_from_checkpoint=str(out / last.adapter) if last.adapter else None)
    record.checkpoints = discover_checkpoints(out)
    check_final_weights(record, "reward")
    tmp = out / ".model-partial"
    if is_main():
        shutil.rmtree(tmp, ignore_errors=True)
    wait_for_everyone()
    trainer.save_model(str(tmp))  # on every process: saving may be collective under distributed backends
    if is_main():
        if not st.full_finetune:
            loading.merge_adapter(cfg, start_model, tmp, out / ".model-merged", head="score")
            shutil.rmtree(tmp)
            (out / ".model-merged").rename(tmp)
        trainer.processing_class.save_pretrained(tmp)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        accuracies = [h["accuracy"] for h in trainer.state.log_history if "accuracy" in h]
        drop_resume_state(out)
        record.total_steps, record.complete = int(trainer.state.max_steps), True
        record.extra["final_train_accuracy"] = sum(accuracies[-5:]) / len(accuracies[-5:]) if accuracies else None
        write_run(record, trainer.state.log_history)
    wait_for_everyone()
    return final
