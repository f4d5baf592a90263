"""Post-training stages on TRL 1.12 + PEFT: SFT, DPO, SimPO, and PPO with its reward model.

    from vd.train.runner import train_stage
    record = train_stage(cfg, "sft", "wildchat")          # runs/<size>/sft-wildchat/ (vd.core.run)

A stage is one module, named in vd.core.registry.STAGES, that defines

    build_trainer(job: StageJob, rows) -> a transformers/TRL Trainer ready to train (vd.train.common.ready)
    SECTIONS        the config sections its training depends on (PPO: "ppo" and "reward")
    RESUMABLE       False where the trainer cannot resume (TRL 1.12's PPO restarts from step 0)
    finish(job)     optional, after the last step (SFT merges its adapter into the base)
    set_total_steps optional, how --max-steps sets its length (PPO counts episodes)

and vd.train.runner does the rest (request checks, the run folder, its lock, resume, the data report).
Modules: common (shared helpers), guards (long pairs left out, non-finite training stopped), data (the rows a
stage trains on), preflight (what is checked before anything is written), runner, cli, and one per stage:
sft, dpo, simpo, ppo, reward.
"""
