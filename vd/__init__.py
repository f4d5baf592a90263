"""value-drifts: trace how post-training (SFT, PPO, DPO, SimPO) moves the stances a model takes.

Companion to "Value Drifts: Tracing Value Alignment During LLM Post-Training" (arXiv 2510.26707). The
public API, what the notebooks use:

    import vd
    study = vd.setup("tiny", notebook="01_sft_drift", params={"sft_data": "alpaca"})
    run = study.sft("alpaca")                                  # trained if missing, scored: a RunResult
    vd.figures.trajectories(run.profile, study.title("SFT on alpaca", run))
    vd.drift_table(run.profile)                                # M and eta (docs/method.md §3-§4)

Names resolve on first use, so `import vd` stays light (torch and TRL load only when needed).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> "module:attribute", or a module
_API = {
    # the study as notebooks run it
    "setup": "vd.study.notebook:setup", "Study": "vd.study.notebook:Study",
    "RunResult": "vd.study.notebook:RunResult",
    "analysis": "vd.study.analysis", "value_gaps": "vd.study.value_gaps", "figures": "vd.study.figures",
    "paper": "vd.study.paper",
    "records": "vd.study.records", "controls": "vd.study.controls", "capabilities": "vd.study.capabilities",
    "check_parameters": "vd.study.params:check_parameters", "schedule": "vd.study.schedule",
    "notes": "vd.study.notes",
    # the paper's metrics (docs/method.md)
    **{name: f"vd.score.metrics:{name}" for name in
       ("value_profile", "drift_magnitude", "drift_time", "drift_table", "value_gap")},
    "score_run": "vd.score.scoring:score_run", "policy_fit": "vd.score.policy_fit:policy_fit",
    # the pipeline's parts
    **{name: f"vd.core.config:{name}" for name in ("load_config", "Config", "ConfigError", "check_choice")},
    "RunRecord": "vd.core.run:RunRecord", "registry": "vd.core.registry",
    "STANCES": "vd.core.stances:STANCES", "TOPICS": "vd.core.stances:TOPICS",
    "train_stage": "vd.train.runner:train_stage", "make_judge": "vd.judge:make_judge",
    "load_probes": "vd.data.probes:load_probes", "ensure_world": "vd.world:ensure_world",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'vd' has no attribute {name!r}")
    module, _, attribute = _API[name].partition(":")
    value = importlib.import_module(module)
    value = getattr(value, attribute) if attribute else value
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
