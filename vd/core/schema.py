"""The params schema: one typed dataclass per section of params/<size>.yaml, each field's type and the
check its value must pass (`metadata["check"]`: a predicate and what is expected), which
vd.core.config validates every file and override against. Each stage of vd.core.registry.STAGES has a
section of the schema its entry names: StageConfig's shared trainer fields plus the stage's own.

A field added after runs were stored that shapes training or data carries `metadata["legacy"]`, the value
a stored config without it was trained as (others take their default); a value given a new name carries
`metadata["renamed"]` (old name -> new)."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from vd.core import registry
from vd.core.errors import ConfigError

# Each field's `metadata["check"]` is (predicate, "what is expected", or a function of the value that says it);
# types are checked from hints.


def _check(pred, expected: str, metadata: dict | None = None, **kw):
    return field(metadata={"check": (pred, expected), **(metadata or {})}, **kw)


_positive = (lambda v: v > 0, "a number > 0")
_nonneg = (lambda v: v >= 0, "a number >= 0")
_prob = (lambda v: 0 <= v <= 1, "a number in [0, 1]")
_atleast1 = (lambda v: v >= 1, "an integer >= 1")


def _pos(**kw):
    return _check(*_positive, **kw)


def _ge1(**kw):
    return _check(*_atleast1, **kw)


@functools.cache
def _transformers_names() -> tuple[frozenset, frozenset]:
    """The optimizer and LR scheduler names the pinned transformers' TrainingArguments accept (imported on
    first use: transformers pulls in torch, which reading a params file alone never needs)."""
    from transformers.trainer_utils import SchedulerType
    from transformers.training_args import OptimizerNames

    return frozenset(o.value for o in OptimizerNames), frozenset(s.value for s in SchedulerType)


# Names the shipped params use, accepted without importing transformers (seconds per process); a test holds
# them to transformers' own lists. Any other name is checked against those.
COMMON_OPTIMIZERS = frozenset({"adamw_torch", "paged_adamw_8bit", "adamw_8bit", "adafactor", "sgd"})
COMMON_SCHEDULERS = frozenset({"linear", "cosine", "constant", "constant_with_warmup"})


def _one_of(common: frozenset, names, what: str):
    """(predicate, expected) for a name from `common` or a set computed on use; `expected` names the closest."""
    def expected(value) -> str:
        close = difflib.get_close_matches(str(value), sorted(names()), n=3, cutoff=0.5)
        hint = f"; closest: {', '.join(close)}" if close else f"; e.g. {', '.join(sorted(names())[:4])}"
        return f"{what}{hint}"
    return (lambda v: v in common or v in names(), expected)


_optimizer = _one_of(COMMON_OPTIMIZERS, lambda: _transformers_names()[0],
                     "a transformers optimizer name (transformers.training_args.OptimizerNames)")
_scheduler = _one_of(COMMON_SCHEDULERS, lambda: _transformers_names()[1],
                     "a transformers LR scheduler name (transformers.trainer_utils.SchedulerType)")
# A sequence must hold the chat framing of a user and an assistant turn (ChatML's is 10 tokens, Llama 3's
# headers about 15) plus a prompt and an answer of a few tokens each (ours).
MIN_MAX_LENGTH = 32
_url = (lambda v: urlsplit(v).scheme in ("http", "https") and bool(urlsplit(v).hostname),
        "an http(s) URL of an OpenAI-compatible server, e.g. http://localhost:8000/v1")


@dataclass
class ModelConfig:
    base: str  # hub id or local folder (`tiny`: the tiny world's model, built by vd.world)
    revision: str | None = None
    # "project": the project's template (vd.core.chat) in the format the tokenizer's own chat tokens allow,
    # the same at every checkpoint (base checkpoints have none); "model": the tokenizer's own template
    chat_template: Literal["project", "model"] = field(
        default="project", metadata={"renamed": {"chatml": "project", "own": "model"}})


@dataclass
class QuantizationConfig:
    load_in_4bit: bool = True  # CUDA only; on CPU the model is loaded unquantized
    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True
    compute_dtype: Literal["auto", "bf16", "fp16", "fp32"] = "auto"  # auto: bf16 where supported


@dataclass
class LoraConfig:
    r: int = _ge1(default=16)
    alpha: float = _pos(default=32)
    dropout: float = _check(*_prob, default=0.05)
    target_modules: str | list[str] = "all-linear"
    # a policy's adapter also trains the embedding (and untied lm_head) rows of the chat format's own tokens
    # (vd.models.loading.chat_token_ids), which base checkpoints never trained and LoRA would freeze
    train_chat_tokens: bool = field(default=True, metadata={"legacy": False})


@dataclass
class StageConfig:
    """Trainer settings every stage has (SFT has no others); a stage's own are in its subclass."""

    learning_rate: float = _pos(default=1e-5)
    epochs: float = _pos(default=1.0)
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = _ge1(default=8)
    grad_accum: int = _ge1(default=1)
    max_length: int = _check(lambda v: v >= MIN_MAX_LENGTH, f"an integer >= {MIN_MAX_LENGTH} (room for the chat "
                             "framing, a prompt and an answer; PPO: the prompt limit)", default=1024)
    save_every: int = _ge1(default=100)  # checkpoint cadence in optimizer steps
    log_every: int = _ge1(default=10)  # trainer log cadence in steps (never less often than save_every)
    warmup_ratio: float = _check(*_prob, default=0.0)
    lr_scheduler: str = _check(*_scheduler, default="linear")
    activation_checkpointing: bool = False
    optimizer: str = _check(*_optimizer, default="adamw_torch")


@dataclass
class DPOStageConfig(StageConfig):
    beta: float = _pos(default=0.1)  # DPO β


@dataclass
class SimPOStageConfig(StageConfig):
    beta: float = _pos(default=0.1)  # SimPO β
    # SimPO target margin γ in TRL's convention: CPOConfig.simpo_gamma is γ itself (the loss is
    # -logsigmoid(β·Δavg_logp − γ)), not γ/β as in the SimPO paper's tables.
    gamma: float = _check(*_nonneg, default=0.5)


@dataclass
class RewardStageConfig(StageConfig):
    # reward model (and PPO's value model, a copy of it): train every weight instead of a LoRA adapter
    full_finetune: bool = False


@dataclass
class PPOStageConfig(StageConfig):
    kl_coef: float = _check(*_nonneg, default=0.05)  # KL penalty
    response_length: int = _ge1(default=256)  # rollout length
    num_ppo_epochs: int = _ge1(default=4)
    num_mini_batches: int = _ge1(default=1)
    total_episodes: int = -1  # > 0 overrides epochs
    missing_eos_penalty: float = _check(*_nonneg, default=1.0)
    # rollouts generated and scored together (TRL's local_rollout_forward_batch_size; its default 64)
    rollout_batch_size: int = _ge1(default=64, metadata={"legacy": 64})


@dataclass
class DatasetConfig:
    id: str  # hub id or local file
    split: str = "train"
    max_samples: int | None = None
    data_dir: str | None = None
    turns: Literal["first", "all"] = "first"  # WildChat
    language: str | None = None  # WildChat
    drop_toxic: bool = True
    drop_redacted: bool = True


@dataclass
class SyntheticConfig:
    # the prompts the pairs answer, {"prompt", "topic"} JSONL; None: vd/data/synthetic_prompts.jsonl
    prompts_file: str | None = None
    prompts_per_topic: int = _check(lambda v: 1 <= v <= 40, "an integer in [1, 40] (vd/data/synthetic_prompts.jsonl "
                                    "has 40 per topic)", default=40)
    generator: str = _check(lambda v: v in registry.ANSWER_WRITERS,
                            "one of " + ", ".join(map(repr, registry.ANSWER_WRITERS)), default="openai")
    generator_model: str = "gpt-4o-mini"
    min_confidence: float = _check(*_prob, default=0.5)
    # the server generator `openai` calls; None: judge.base_url, else $OPENAI_BASE_URL, else OpenAI's API
    base_url: str | None = _check(*_url, default=None, metadata={"legacy": None})


@dataclass
class DataConfig:
    sft: dict[str, DatasetConfig] = field(default_factory=dict)
    preference: dict[str, DatasetConfig] = field(default_factory=dict)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass
class ProbeConfig:
    file: str | None = None  # None: the shipped vd/data/vprism.jsonl
    # at least 2: a topic's confidence interval resamples its prompts, and one prompt gives none (§6)
    prompts_per_topic: int = _check(lambda v: 2 <= v <= 50, "an integer in [2, 50]", default=50)
    samples_per_prompt: int = _ge1(default=5)  # paper: 5
    temperature: float = _check(*_nonneg, default=0.7)  # paper: 0.7
    top_p: float = _check(lambda v: 0 < v <= 1, "a number in (0, 1]", default=1.0)
    max_new_tokens: int = _ge1(default=256)  # paper: 256
    batch_size: int = _ge1(default=32)


@dataclass
class JudgeConfig:
    kind: str = _check(lambda v: v in registry.JUDGES, "one of " + ", ".join(map(repr, registry.JUDGES)),
                       default="openai")
    model: str = "gpt-4o"  # the paper's judge
    base_url: str | None = _check(*_url, default=None)
    prompt_version: str = "v1"
    max_concurrency: int = _ge1(default=8)
    max_retries: int = _check(*_nonneg, default=5)
    timeout_s: float = _pos(default=60.0)
    batch_size: int = _ge1(default=16)
    # kind openai: what a local server's chat template is given; null: {enable_thinking: false} for a
    # base_url, none for OpenAI's API (vd.judge.endpoint.chat_template_kwargs_for); {}: none
    chat_template_kwargs: dict[str, bool | int | float | str] | None = None
    revision: str | None = None  # kind hf: the hub revision of judge.model (a folder is known by its weights)
    load_in_4bit: bool = False  # kind hf: 4-bit NF4 on a GPU (needs bitsandbytes); ignored on CPU


@dataclass
class PriceConfig:
    """An API model's list price in US dollars per million tokens (what `vd plan` costs a study at)."""

    usd_per_1m_input: float = _check(*_nonneg, default=0.0)
    usd_per_1m_output: float = _check(*_nonneg, default=0.0)


@dataclass
class PricesConfig:
    """A dated price table (ours): `as_of` and `source` say when and where the prices were read."""

    as_of: str = ""
    source: str = ""
    models: dict[str, PriceConfig] = field(default_factory=dict)


@dataclass
class CapabilityTaskConfig:
    """One capability task of lm-evaluation-harness (vd.score.capabilities): its few-shot count and the metric read."""

    num_fewshot: int = _check(lambda v: v >= 0, "an integer >= 0", default=0)
    metric: Literal["acc", "acc_norm"] = "acc"


@dataclass
class CapabilitiesConfig:
    """Capability checks through lm-evaluation-harness at the start and end of every stage (notebook 07).

    tasks: lm-eval task (or group) names; limit: items per task (lm-eval's `limit`; for a group such as
    mmlu, per subtask), None for all; batch_size: lm-eval's batch size for the HF model."""

    tasks: dict[str, CapabilityTaskConfig] = field(default_factory=dict)
    limit: int | None = _ge1(default=None)
    batch_size: int = _ge1(default=8)


@dataclass
class TinyConfig:
    """Recipe of the tiny world (size `tiny` only); any change rebuilds it."""

    vocab_size: int = _ge1(default=2048)
    hidden_size: int = _ge1(default=128)
    layers: int = _ge1(default=2)
    heads: int = _ge1(default=4)
    kv_heads: int = _ge1(default=2)
    intermediate_size: int = _ge1(default=384)
    pretrain_chats: int = _ge1(default=20000)
    pretrain_steps: int = _ge1(default=1050)
    pretrain_batch_size: int = _ge1(default=32)
    pretrain_lr: float = _pos(default=3e-3)
    sft_rows: int = _ge1(default=400)
    preference_rows: int = _ge1(default=300)
    threads: int = _ge1(default=1)


@dataclass
class Config:
    # the folder its runs are filed under (<runs_dir>/<size>/): one folder name
    size: str = _check(lambda v: v not in (".", "..") and bool(re.fullmatch(r"[A-Za-z0-9_.~-]+", v)),
                       "one folder name of letters, digits and -_.~ (runs are filed under <runs_dir>/<size>/)")
    seed: int
    model: ModelConfig
    quantization: QuantizationConfig
    lora: LoraConfig
    data: DataConfig
    probes: ProbeConfig
    judge: JudgeConfig
    tiny: TinyConfig | None = None
    capabilities: CapabilitiesConfig = field(default_factory=CapabilitiesConfig)
    budget_note: str = ""  # what a shrunk run shrank; figure titles show it
    progress_bars: bool = True  # the trainers' progress bars (shown only on a terminal)
    # the GPU this file's batch sizes and lengths are sized for (vd.models.memory.CARDS; `vd plan` shows each)
    target_gpu: Literal["T4", "L4", "A100-40GB", "A100-80GB", "H100-80GB", "H200"] | None = None
    prices: PricesConfig = field(default_factory=PricesConfig)  # API prices `vd plan` costs the judge at
    # One section per stage of vd.core.registry.STAGES (`sft:`, `dpo:`, ... in the file), read as cfg.dpo;
    # each of the schema the stage's entry names (stage_schema).
    stages: dict[str, StageConfig] = field(default_factory=dict)
    source: str = ""  # the file this was loaded from (set by load_config)

    def stage(self, name: str) -> StageConfig:
        if name not in self.stages:
            raise ConfigError(f"unknown stage {name!r}: expected one of {', '.join(self.stages)}")
        return self.stages[name]

    def get(self, dotted: str):
        """A value by its dotted key, as overrides name it: cfg.get("dpo.beta")."""
        node = self
        for part in dotted.split("."):
            node = node[part] if isinstance(node, dict) else getattr(node, part)
        return node

    def __getattr__(self, name: str):  # only called for attributes a Config does not have
        stages = self.__dict__.get("stages") or {}
        if name in stages:
            return stages[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def to_dict(self) -> dict[str, Any]:
        """The config as its params file lays it out: each stage a top-level section (after `lora`)."""
        flat = {}
        for key, value in dataclasses.asdict(self).items():
            if key == "stages":
                continue
            flat[key] = value
            if key == "lora":
                flat.update({name: dataclasses.asdict(st) for name, st in self.stages.items()})
        return flat


def stage_schema(stage: str) -> type[StageConfig]:
    """The dataclass of `stage`'s params section, as its vd.core.registry.STAGES entry names it."""
    return registry.resolve(registry.STAGES[stage].schema)
