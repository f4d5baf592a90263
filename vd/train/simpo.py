"""SimPO: TRL's `CPOTrainer` with `loss_type="simpo"` and no NLL term (`cpo_alpha=0`), so the loss is
-logsigmoid(β·Δ(mean log-prob) − γ), with no reference model.

params' simpo.gamma is TRL's `simpo_gamma`, which is γ itself (not γ/β as in the SimPO paper's tables):
for the paper's β = 2.5, γ/β = 0.5, set gamma = 1.25. TRL's CPO defaults are not SimPO's. CPOTrainer gets
the tokenizer of vd.core.chat.eos_at_end_of_turn, so it adds no BOS or EOS of its own: its rows are the
tokens DPO, SFT and the probes use. Pairs longer than simpo.max_length are left out, the pairs DPO leaves
out: CPOTrainer would cut them, and an emptied completion's mean log-probability is 0/0.
"""

from __future__ import annotations

from vd.core.chat import eos_at_end_of_turn
from vd.models import loading
from vd.train.common import StageJob, load_policy, nothing_to_finish, ready, set_max_steps, trl_args
from vd.train.guards import fitting_pairs

SECTIONS = ("simpo",)
RESUMABLE = True
KEEP_ON_RESTART: tuple[str, ...] = ()
finish = nothing_to_finish
set_total_steps = set_max_steps


def build_trainer(job: StageJob, rows: list[dict]):
    import datasets
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    st = job.params
    tokenizer = loading.load_tokenizer(job.cfg, job.start_model)
    rows = fitting_pairs(rows, tokenizer, "simpo", st.max_length)
    model = load_policy(job.cfg, job.start_model, st)
    args = trl_args(CPOConfig, job.cfg, st, job.run_dir, loss_type="simpo", cpo_alpha=0.0, beta=st.beta,
                    simpo_gamma=st.gamma, max_length=st.max_length, remove_unused_columns=False)
    trainer = CPOTrainer(model=model, args=args, train_dataset=datasets.Dataset.from_list(rows),
                         processing_class=eos_at_end_of_turn(tokenizer),
                         peft_config=loading.policy_lora_config(job.cfg, model, tokenizer), callbacks=job.callbacks)
    return ready(trainer, job.cfg, "simpo", job.record.name)
