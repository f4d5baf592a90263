"""Post-training stages on TRL 1.12 + PEFT: SFT, DPO, SimPO, and PPO with its reward model.

    from vd.train.runner import train_stage
    record = train_stage(cfg, "sft", "wildchat")          # runs/<size>/sft-wildchat/ (vd.core.run)

A stage is one module, named in vd.core.registry.STAGES, with the hooks of vd.train.common.StageModule
(build_trainer, SECTIONS, RESUMABLE, KEEP_ON_RESTART, finish, set_total_steps); vd.train.runner does the
rest (request checks, the run folder, its lock, resume, the data report). Modules: common (shared helpers),
guards (long pairs left out, non-finite training stopped), data (the rows a stage trains on), preflight
(what is checked before anything is written), runner, cli, and one per stage: sft, dpo, simpo, ppo, reward.
"""
