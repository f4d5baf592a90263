"""The study's choices, each with the code that implements it: the one list the config, the `vd` command,
the notebooks and `vd reproduce` read their choices from.

Adding an algorithm (KTO, ORPO, GRPO) is one new file under `vd/train/` plus one entry in `STAGES`
(and its hyperparameters: a schema in vd/core/schema.py, a section of the same name in the params files);
adding a judge is one file under `vd/judge/` plus one entry in `JUDGES`. Entries name their implementation as
"module:attribute" text, imported on use by :func:`resolve`, so that `core`, the bottom layer of the
package, imports nothing above it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    """One post-training stage.

    kind: "sft" (trained from the base model on SFT data), "preference" (trained from a finished SFT
    run on preference pairs) or "helper" (trained inside another stage: PPO's reward model).
    """

    module: str  # a module of vd.train that defines build_trainer (see vd/train/__init__.py)
    kind: str
    title: str  # as figures and tables name it
    schema: str = "vd.core.schema:StageConfig"  # the dataclass of its params section: the fields it reads


# Stage order: SFT first, then the preference algorithms in the paper's order (PPO, DPO, SimPO).
STAGES: dict[str, Stage] = {
    "sft": Stage("vd.train.sft", "sft", "SFT", "vd.core.schema:StageConfig"),
    "ppo": Stage("vd.train.ppo", "preference", "PPO", "vd.core.schema:PPOStageConfig"),
    "dpo": Stage("vd.train.dpo", "preference", "DPO", "vd.core.schema:DPOStageConfig"),
    "simpo": Stage("vd.train.simpo", "preference", "SimPO", "vd.core.schema:SimPOStageConfig"),
    "reward": Stage("vd.train.reward", "helper", "reward model", "vd.core.schema:RewardStageConfig"),
}
TRAINABLE = tuple(name for name, s in STAGES.items() if s.kind != "helper")  # what `vd train --stage` takes
ALGORITHMS = tuple(name for name, s in STAGES.items() if s.kind == "preference")  # the notebooks' `algo`

# Datasets by the short names params files, notebooks and the CLI use, with their hub loaders.
SFT_DATA: dict[str, str] = {
    "wildchat": "vd.data.loaders:load_wildchat",
    "alpaca": "vd.data.loaders:load_alpaca",
}
PREFERENCE_DATA: dict[str, str] = {
    "ultrafeedback": "vd.data.loaders:load_ultrafeedback",
    "hh-rlhf": "vd.data.loaders:load_hh_rlhf",
}
# Synthetic value-gap pairs are built, not loaded: `synthetic-<setting>`, the chosen answer takes
# <setting>, the rejected one the opposite stance (vd.data.synthetic).
SYNTHETIC_SETTINGS: tuple[str, ...] = ("support", "oppose")
SYNTHETIC_DATA: tuple[str, ...] = tuple(f"synthetic-{s}" for s in SYNTHETIC_SETTINGS)
PREFERENCE_CHOICES: tuple[str, ...] = (*PREFERENCE_DATA, *SYNTHETIC_DATA)

# Stance judges (params `judge.kind`): classes with `from_config(judge_cfg, *, tiny_world)` and
# `check_available(judge_cfg, *, tiny_world)`, taking the `judge` section (vd.judge.base says more).
JUDGES: dict[str, str] = {
    "openai": "vd.judge.openai_api:OpenAIJudge",
    "hf": "vd.judge.hf:HFJudge",
    "lexicon": "vd.judge.lexicon:LexiconJudge",
}

# Writers of the synthetic pairs' stance-taking answers (params `data.synthetic.generator`).
ANSWER_WRITERS: dict[str, str] = {
    "openai": "vd.data.synthetic:openai_writer_from_config",
    "hf": "vd.data.synthetic:hf_writer_from_config",
    "tiny": "vd.world:answer_writer_from_config",
}

# Checks a package above core makes on a loaded config (each raises ConfigError), run by load_config.
CONFIG_CHECKS: tuple[str, ...] = ("vd.world:check_config",)


def resolve(target: str):
    """The object a registry entry names: "package.module:attribute" (or a module, without ":")."""
    module, _, attribute = target.partition(":")
    loaded = importlib.import_module(module)
    return getattr(loaded, attribute) if attribute else loaded
