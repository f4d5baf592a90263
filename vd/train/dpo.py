"""Direct preference optimization (`trl.DPOTrainer`, sigmoid loss, β from the params).

The policy is the merged SFT model plus a fresh LoRA adapter and `ref_model=None`, so TRL's reference
is the model with the adapter disabled: the final SFT policy.

Framing (vd.core.chat): TRL tokenises the prompt and prompt + answer with our template and
add_special_tokens=False (trl/trainer/dpo_trainer.py _prepare_dataset), so BOS comes from the template
only and each completion ends at the end-of-turn token. Pairs longer than dpo.max_length are left out,
as in every preference stage (vd.train.guards.drop_long_pairs), not truncated.
"""

from __future__ import annotations

from vd.models import loading
from vd.train.common import StageJob, load_policy, nothing_to_finish, ready, set_max_steps, trl_args
from vd.train.guards import fitting_pairs

SECTIONS = ("dpo",)
RESUMABLE = True
KEEP_ON_RESTART: tuple[str, ...] = ()
finish = nothing_to_finish
set_total_steps = set_max_steps


def build_trainer(job: StageJob, rows: list[dict]):
    import datasets
    from trl import DPOConfig, DPOTrainer

    st = job.params
    tokenizer = loading.load_tokenizer(job.cfg, job.start_model)
    rows = fitting_pairs(rows, tokenizer, "dpo", st.max_length)
    model = load_policy(job.cfg, job.start_model, st)
    args = trl_args(DPOConfig, job.cfg, st, job.run_dir, beta=st.beta, loss_type=["sigmoid"],
                    max_length=st.max_length)
    trainer = DPOTrainer(model=model, args=args, ref_model=None, train_dataset=datasets.Dataset.from_list(rows),
                         processing_class=tokenizer, peft_config=loading.policy_lora_config(job.cfg, model, tokenizer),
                         callbacks=job.callbacks)
    return ready(trainer, job.cfg, "dpo", job.record.name)
