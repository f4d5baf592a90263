"""Supervised fine-tuning (`trl.SFTTrainer`) on chat rows, with the loss on the assistant's answers only.

At the end the final adapter is merged into the base model (`merged/`), where every preference stage
starts: TRL's PEFT reference ("adapter disabled") is then exactly the final SFT policy, and SFT's last
scored point is that same model (docs/method.md §9). TRL tokenises each chat with our template and
add_special_tokens=False (trl/trainer/sft_trainer.py _prepare_dataset), so BOS comes from the template
only, and the loss covers each answer and its end-of-turn token. A chat longer than sft.max_length is
truncated, one whose answer starts past it left out, both counted (docs/method.md §9, Long rows).
"""

from __future__ import annotations

import shutil

from vd.models import loading
from vd.train.common import StageJob, is_main, load_policy, ready, set_max_steps, trl_args

SECTIONS = ("sft",)
RESUMABLE = True
KEEP_ON_RESTART: tuple[str, ...] = ()
set_total_steps = set_max_steps


def build_trainer(job: StageJob, rows: list[dict]):
    import datasets
    from trl import SFTConfig, SFTTrainer

    st = job.params
    tokenizer = loading.load_tokenizer(job.cfg, job.start_model)
    count_truncated(job, rows, tokenizer)
    model = load_policy(job.cfg, job.start_model, st)
    args = trl_args(SFTConfig, job.cfg, st, job.run_dir, max_length=st.max_length, assistant_only_loss=True)
    trainer = SFTTrainer(model=model, args=args, train_dataset=datasets.Dataset.from_list(rows),
                         processing_class=tokenizer, peft_config=loading.policy_lora_config(job.cfg, model, tokenizer),
                         callbacks=job.callbacks)
    expose_output_bias(trainer.model)
    return ready(trainer, job.cfg, "sft", job.record.name)


def expose_output_bias(model) -> None:
    """TRL's default SFT loss reads `lm_head.weight` and `lm_head.bias` (trl/trainer/sft_trainer.py
    _patch_chunked_ce_lm_head), but PEFT's wrapper of an output layer with trainable token rows passes on only
    `weight` (peft/utils/other.py TrainableTokensWrapper._hasattr_wrapped): give it its layer's bias (none in
    Llama or Qwen), as a plain attribute so that it is no second parameter."""
    from peft.utils.other import TrainableTokensWrapper

    head = model.get_output_embeddings()
    if isinstance(head, TrainableTokensWrapper) and "bias" not in vars(head):
        object.__setattr__(head, "bias", head.original_module.bias)


def count_truncated(job: StageJob, rows: list[dict], tokenizer) -> int:
    """How many chats are longer than sft.max_length (kept, truncated): in the data report and one line."""
    limit = job.params.max_length
    ids = tokenizer.apply_chat_template([r["messages"] for r in rows], tokenize=True, return_dict=True)["input_ids"]
    n = sum(len(i) > limit for i in ids)
    if n:
        job.report.setdefault("truncated", {})["longer_than_sft.max_length"] = n
        if is_main():
            print(f"[{job.record.name}] {n} of {len(rows)} chats are longer than sft.max_length = {limit} tokens: "
                  f"trained on their first {limit}", flush=True)
    return n


def finish(job: StageJob) -> None:
    """Merge the final checkpoint's adapter into the base model: `merged/`, and its identity in run.json."""
    if not is_main():
        return
    record = job.record
    final = record.checkpoints[-1]
    if final.step != record.total_steps:
        raise RuntimeError(f"{record.root}: no checkpoint of the final step {record.total_steps}")
    tmp = record.root / ".merged-partial"
    shutil.rmtree(tmp, ignore_errors=True)
    loading.merge_adapter(job.cfg, job.start_model, record.adapter_dir(final), tmp)
    shutil.rmtree(record.merged_dir, ignore_errors=True)
    tmp.rename(record.merged_dir)
    record.extra["merged_identity"] = loading.model_identity(str(record.merged_dir))
