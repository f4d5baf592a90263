"""Supervised fine-tuning (`trl.SFTTrainer`) on chat rows, with the loss on the assistant's answers only.

At the end the final adapter is merged into the base model (`merged/`), where every preference stage
starts: so TRL's PEFT reference ("adapter disabled") is exactly the final SFT policy, and the SFT
stage's last scored point is that same merged model (vd.score.scoring), which preference stages
score as their step 0.

Framing (vd.core.chat): TRL tokenises each chat with our template and add_special_tokens=False
(trl/trainer/sft_trainer.py _prepare_dataset, via transformers' apply_chat_template), so BOS comes from the
template only; the assistant-only loss covers each answer and its end-of-turn token ({% generation %}).
"""

from __future__ import annotations

import shutil

from vd.models import loading as models
from vd.train.common import StageJob, is_main, load_policy, trl_args

SECTIONS = ("sft",)
RESUMABLE = True


def build_trainer(job: StageJob, rows: list[dict]):
    import datasets
    from trl import SFTConfig, SFTTrainer

    st = job.params
    args = trl_args(SFTConfig, job.cfg, st, job.run_dir, max_length=st.max_length, assistant_only_loss=True)
    return SFTTrainer(model=load_policy(job.cfg, job.start_model, st), args=args,
                      train_dataset=datasets.Dataset.from_list(rows),
                      processing_class=models.load_tokenizer(job.cfg, job.start_model),
                      peft_config=models.lora_config(job.cfg), callbacks=job.callbacks)


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
    models.merge_adapter(job.cfg, job.start_model, record.adapter_dir(final), tmp)
    shutil.rmtree(record.merged_dir, ignore_errors=True)
    tmp.rename(record.merged_dir)
    record.extra["merged_identity"] = models.model_identity(str(record.merged_dir))
