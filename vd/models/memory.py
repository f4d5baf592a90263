"""GPU memory of every stage at a size: the 4-bit weights, and on top the logits, activations, KV cache and
rollout buffers of the params' batch sizes and lengths (docs/method.md §11: an estimate, ours, from the
shapes the pinned TRL and transformers materialise); and the pre-flight check that refuses a stage whose
estimate exceeds this GPU, naming the knob to turn, before anything is trained.

    peak = stage_peak(cfg, AutoConfig.from_pretrained(path), "dpo")   # Estimate: .total (bytes), .parts
    check_gpu_fits(cfg, path, "dpo")                                   # DoesNotFit, one line, or nothing
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from vd.core.config import Config, ConfigError
from vd.models.loading import _local_device, use_4bit

GIB = 2 ** 30


class DoesNotFit(ConfigError, MemoryError):
    """A stage cannot fit this GPU at these params: a user's choice of params and card (one error line)."""


@dataclass(frozen=True)
class Card:
    """A GPU our users run on: memory as nvidia-smi reports it; dense bf16/fp16 tensor TFLOP/s and memory
    bandwidth from the vendor's data sheets (what `vd plan` estimates times from where none was measured)."""

    memory_gib: float
    tflops: float
    bandwidth_gbs: float


CARDS = {"T4": Card(15360 / 1024, 65, 320), "L4": Card(23034 / 1024, 121, 300),
         "A100-40GB": Card(40960 / 1024, 312, 1555), "A100-80GB": Card(81920 / 1024, 312, 2039),
         "H100-80GB": Card(81559 / 1024, 989, 3350), "H200": Card(143771 / 1024, 989, 4800)}
FIT_MARGIN = 0.95  # a stage fits when its peak + the CUDA context stays under this share of the card (ours)
CUDA_CONTEXT_GIB = 0.5  # the CUDA context and cuBLAS workspaces, outside PyTorch's allocator (ours)
NF4_BYTES_PER_WEIGHT = 1 / 2 + 1 / 64 + 4 / (64 * 256)  # packed 4-bit + double-quantized absmax per 64 weights
PROBE_PROMPT_TOKENS = 64  # V-PRISM questions are at most 123 characters: with the chat framing, < 64 tokens
# (head, prepared for k-bit training, LoRA trained) of the models each stage holds on the GPU. PPO: the
# policy, the frozen reward model and the value model (vd.train.ppo.build_trainer); scoring and the policy fit:
# one policy with an adapter, not prepared.
RESIDENT = {"sft": [("causal", True, True)], "dpo": [("causal", True, True)], "simpo": [("causal", True, True)],
            "reward": [("score", True, True)],
            "ppo": [("causal", True, True), ("score", False, False), ("score", True, True)],
            "generate": [("causal", False, False)], "policy_fit": [("causal", False, False)]}


def weight_counts(config, head: str = "causal") -> dict:
    """Parameters of a model of `config` by how QLoRA stores them: `quantized` (the decoder's nn.Linear
    weights, 4-bit), `other` (embeddings, an untied lm_head, norms, a score head: the compute dtype) and
    `lora_per_rank` (LoRA parameters per unit of rank on all linear layers but the output layer)."""
    import copy

    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    with torch.device("meta"):  # shapes only, no memory
        if head == "score":
            config = copy.deepcopy(config)
            config.num_labels = 1
            model = AutoModelForSequenceClassification.from_config(config)
        else:
            model = AutoModelForCausalLM.from_config(config)
    output = {"lm_head", "score"}  # bitsandbytes leaves the output layer unquantized; all-linear LoRA skips it
    linears = [m for name, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and name.split(".")[-1] not in output]
    quantized = sum(m.weight.numel() for m in linears)
    total = sum(p.numel() for p in model.parameters())  # tied tensors once
    return {"total": total, "quantized": quantized, "other": total - quantized,
            "lora_per_rank": sum(m.in_features + m.out_features for m in linears)}


def adam_state_bytes(optimizer: str) -> int:
    """Bytes of Adam's two states per trained parameter: 2 for a bitsandbytes 8-bit optimizer, 8 in fp32."""
    return 2 if "8bit" in optimizer else 8


def weight_bytes(counts: dict, lora_rank: int, prepared: bool, trained: bool, adam_bytes: int = 2) -> dict:
    """GPU bytes of one 4-bit model with a LoRA adapter of `lora_rank`. `prepared`: after
    peft.prepare_model_for_kbit_training, which casts every non-4-bit parameter to fp32 (as load_policy
    does before training); else they stay in the 2-byte compute dtype. Adapters are fp32; `trained` adds
    their fp32 gradients and Adam's two states (`adam_bytes` per parameter: 2 for 8-bit AdamW, 8 for fp32)."""
    lora = counts["lora_per_rank"] * lora_rank
    total = (counts["quantized"] * NF4_BYTES_PER_WEIGHT + counts["other"] * (4 if prepared else 2)
             + lora * 4 + (lora * (4 + adam_bytes) if trained else 0))
    return {"bytes": total, "upcast_bytes": counts["other"] * 2 if prepared else 0}


# --- the estimate (docs/method.md §11) ---------------------------------------------------------------


@dataclass(frozen=True)
class Dims:
    """The shapes an estimate needs, from a transformers config."""

    vocab: int
    hidden: int
    intermediate: int
    layers: int
    q: int  # attention heads x head dim
    kv: int  # key-value heads x head dim

    @classmethod
    def of(cls, config) -> Dims:
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        return cls(config.vocab_size, config.hidden_size, config.intermediate_size, config.num_hidden_layers,
                   heads * head_dim, (getattr(config, "num_key_value_heads", None) or heads) * head_dim)


@dataclass
class Estimate:
    """A stage's estimated peak: its parts in bytes (they add up to `total`) and the params that shrink it."""

    stage: str
    parts: dict[str, float]
    knobs: tuple[str, ...]

    @property
    def total(self) -> float:
        return sum(self.parts.values())

    def as_gib(self) -> dict[str, float]:
        return {k: round(v / GIB, 2) for k, v in {**self.parts, "total": self.total}.items()}


def layer_bytes(d: Dims, lora_dropout: bool) -> float:
    """Bytes one Llama/Qwen3 decoder layer keeps per token for its backward under 2-byte autocast with
    QLoRA (ours, docs/method.md §11): two RMSNorms' inputs and outputs in fp32 (the prepared model's
    residual stream is fp32): 16H; the 7 projections' inputs, cast to 2 bytes once for the 4-bit matmul and
    once for LoRA's A: 4(5H + q + I); LoRA dropout's copies of those inputs (q, k, v, gate, up in fp32; o, down
    in 2 bytes): 20H + 2q + 2I; attention (q and k before and after rotary, v, the output): 2(3q + 3kv);
    the gated MLP's gate, up, activation and product: 8I."""
    h, i, q, kv = d.hidden, d.intermediate, d.q, d.kv
    dropout = 20 * h + 2 * q + 2 * i if lora_dropout else 0
    return 16 * h + 4 * (5 * h + q + i) + dropout + 6 * q + 6 * kv + 8 * i


def activation_bytes(d: Dims, tokens: float, checkpointing: bool, lora_dropout: bool) -> float:
    """A trained forward's activations over `tokens` tokens: with activation checkpointing each layer keeps
    its fp32 input and one layer at a time is recomputed in full; without, every layer keeps all of it.
    Then the final norm and the lm_head's input (fp32 + fp32 + 2 bytes per hidden unit)."""
    per_layer = layer_bytes(d, lora_dropout)
    kept = d.layers * 4 * d.hidden + per_layer if checkpointing else d.layers * per_layer
    return tokens * (kept + 10 * d.hidden)


def kv_cache_bytes(d: Dims, rows: float, length: float, dtype_bytes: int = 2) -> float:
    return rows * length * d.layers * 2 * d.kv * dtype_bytes


# Bytes per logit element a trained forward and backward hold at their peak under 2-byte autocast
# (trl 1.12, accelerate 1.15): the 2-byte logits, accelerate's fp32 copy of them (convert_to_fp32), the
# fp32 log-softmax (SFT: transformers' loss) or the reference model's fp32 logits (DPO: a second,
# adapter-disabled forward of the same batch), then in the backward the fp32 and 2-byte gradients.
LOGIT_BYTES = 10


_COUNTED: dict[tuple[str, str], dict] = {}


def counts_of(config, head: str) -> dict:
    """weight_counts, once per architecture and head (the advice re-estimates a stage many times)."""
    key = (config.to_json_string(use_diff=False), head)
    if key not in _COUNTED:
        _COUNTED[key] = weight_counts(config, head)
    return _COUNTED[key]


def models_bytes(cfg: Config, config, stage: str) -> float:
    adam = adam_state_bytes(cfg.stage(stage if stage in cfg.stages else "sft").optimizer)
    resident = RESIDENT.get(stage, RESIDENT["sft"])  # a stage not listed trains one policy, as SFT does
    counts = {head: counts_of(config, head) for head in {h for h, _, _ in resident}}
    return sum(weight_bytes(counts[head], cfg.lora.r, prepared, trained, adam)["bytes"]
               for head, prepared, trained in resident)


def stage_peak(cfg: Config, config, stage: str, policy_fit: tuple[int, int] | None = None) -> Estimate:
    """The estimated peak GPU bytes of `stage` (sft, dpo, simpo, reward, ppo, generate, policy_fit) under
    `cfg`, for a model of transformers `config`, at the worst case the params admit (every sequence
    max_length long, every rollout and answer response_length / max_new_tokens). `policy_fit`: its
    (tokens per batch, positions of logits per chunk), vd.score.policy_fit's bounds."""
    d = Dims.of(config)
    weights = models_bytes(cfg, config, stage)
    dropout = cfg.lora.dropout > 0
    if stage == "generate":
        p = cfg.probes
        rows, length = p.batch_size, PROBE_PROMPT_TOKENS + p.max_new_tokens
        # per decoding row: fp32 logits, the softmax, the fp64 cumulative sum; the cache is copied once when
        # finished rows leave the batch (batch_select_indices)
        return Estimate(stage, {"weights": weights, "kv_cache": 2 * kv_cache_bytes(d, rows, length),
                                "logits": rows * d.vocab * (4 + 4 + 8)}, ("probes.batch_size",))
    if stage == "policy_fit":
        tokens, chunk = policy_fit
        # inference in the 2-byte dtype: one layer's transients at a time (residual and norm, q, k, v and the
        # attention output, the MLP's four intermediates); one chunk of logits: 2-byte, fp32, exp() in logsumexp
        per_token = 2 * (4 * d.hidden + 2 * d.q + 2 * d.kv + 4 * d.intermediate)
        return Estimate(stage, {"weights": weights, "activations": tokens * per_token,
                                "logits": chunk * d.vocab * (2 + 4 + 4)}, ())
    st = cfg.stage(stage)
    if stage == "ppo":
        return _ppo_peak(cfg, d, weights, dropout)
    rows = st.batch_size * (1 if stage == "sft" else 2)  # preference stages: chosen and rejected, concatenated
    tokens = rows * st.max_length
    parts = {"weights": weights,
             "activations": activation_bytes(d, tokens, st.activation_checkpointing, dropout),
             "logits": 0.0 if stage == "reward" else LOGIT_BYTES * tokens * d.vocab}  # a scalar head: nothing
    return Estimate(stage, parts, (f"{stage}.batch_size", f"{stage}.max_length"))


def _ppo_peak(cfg: Config, d: Dims, weights: float, dropout: bool) -> Estimate:
    """PPO (trl/experimental/ppo/ppo_trainer.py, TRL 1.12; no autocast: its own Accelerator has no mixed
    precision, so the prepared models' fp32 residual stream gives fp32 hidden states and logits). Each update
    samples batch x grad_accum rollouts, `rollout_batch_size` at a time, keeping every rollout's fp32 scores
    (response x vocabulary) until the update ends; the rollout phase then runs the reference (adapter-off
    policy, all positions' fp32 logits and every layer's hidden states), value and reward forwards a chunk
    at a time; the training phase runs micro-batches of `batch_size` through policy and value model."""
    st = cfg.ppo
    local = st.batch_size * st.grad_accum
    chunk = min(st.rollout_batch_size, local)
    prompt, response = st.max_length, st.response_length
    seq = prompt + response
    scores = 4 * local * response * d.vocab  # kept from generation to the end of the update
    generation = max(8 * local * response * d.vocab,  # padding the chunks' scores copies them all
                     4 * (local + chunk) * response * d.vocab + kv_cache_bytes(d, chunk, seq))
    hidden = (d.layers + 1) * seq * d.hidden * 4  # output_hidden_states: every layer's, fp32, per sequence
    reference = scores + chunk * (4 * seq * d.vocab + hidden)
    micro = st.batch_size
    backbone = (micro * hidden if st.activation_checkpointing
                else activation_bytes(d, micro * seq, False, dropout))
    recompute = micro * seq * layer_bytes(d, dropout) if st.activation_checkpointing else 0
    training = scores + 2 * backbone + recompute + 2 * 4 * micro * seq * d.vocab  # policy + value; logits + grad
    phases = {"rollout generation": generation, "rollout forwards": reference, "training": training}
    worst = max(phases, key=phases.get)
    knobs = ("ppo.rollout_batch_size", "ppo.batch_size", "ppo.grad_accum", "ppo.response_length", "ppo.max_length")
    return Estimate("ppo", {"weights": weights, worst: phases[worst]}, knobs)


def fits(need_bytes: float, card_bytes: float, context_gib: float = CUDA_CONTEXT_GIB) -> bool:
    """The fit rule (ours): peak + the CUDA context (estimated, or as measured) <= FIT_MARGIN of the card."""
    return need_bytes + context_gib * GIB <= FIT_MARGIN * card_bytes


def with_params(cfg: Config, changes: dict) -> Config:
    """`cfg` with dotted params changed ({"dpo.batch_size": 2, "probes.batch_size": 16}), not validated."""
    stages, sections = dict(cfg.stages), {}
    for key, value in changes.items():
        section, name = key.split(".")
        if section in stages:
            stages[section] = dataclasses.replace(stages[section], **{name: value})
        else:
            sections[section] = dataclasses.replace(sections.get(section, getattr(cfg, section)), **{name: value})
    return dataclasses.replace(cfg, stages=stages, **sections)


def _candidates(cfg: Config, stage: str) -> list[dict]:
    """Smaller batch settings of `stage`, in our order of preference: the effective batch (batch x
    accumulation) kept if at all possible (else its largest divisor), then the largest micro-batch, then
    (PPO) the largest rollout chunk."""
    if stage == "generate":
        return [{"probes.batch_size": b} for b in range(cfg.probes.batch_size - 1, 0, -1)]
    if stage == "policy_fit":
        return []
    st = cfg.stage(stage)
    effective = st.batch_size * st.grad_accum
    pairs = sorted(((b, ga) for b in range(1, st.batch_size + 1) for ga in range(1, effective // b + 1)
                    if effective % (b * ga) == 0), key=lambda p: (-p[0] * p[1], -p[0]))
    out = []
    for b, ga in pairs:
        base = {f"{stage}.batch_size": b, f"{stage}.grad_accum": ga}
        if stage != "ppo":
            out.append(base)
            continue
        local = b * ga  # PPO's rollout chunk: a divisor of the rollouts per update (no ragged last chunk)
        out += [base | {"ppo.rollout_batch_size": r} for r in range(min(st.rollout_batch_size, local), 0, -1)
                if local % r == 0]
    return out


def advice(cfg: Config, config, estimate: Estimate, card_bytes: float) -> str:
    """What to change so that a stage fits: the first of `_candidates` that fits (only what changes is
    named, with the effective batch where it changes); lengths are named, never chosen (they change what
    is trained); else a larger GPU."""
    for change in _candidates(cfg, estimate.stage):
        if fits(stage_peak(with_params(cfg, change), config, estimate.stage).total, card_bytes):
            current = {k: cfg.get(k) for k in change}
            shown = ", ".join(f"{k}={v}" for k, v in change.items() if current[k] != v)
            section = next(iter(change)).split(".")[0]
            if section != "probes":
                before = current[f"{section}.batch_size"] * current[f"{section}.grad_accum"]
                after = change[f"{section}.batch_size"] * change[f"{section}.grad_accum"]
                shown += (f" (effective batch {after} kept)" if after == before else
                          f" (effective batch {before} -> {after}: no smaller micro-batch fits)")
            return f"set {shown}"
    lengths = [k for k in estimate.knobs if k.split(".")[1] in ("max_length", "response_length")]
    return (f"even at batch 1: lower {' or '.join(lengths)}, or " if lengths else "") + "use a larger GPU"


# what a stage trains on the GPU before its own models load: PPO trains its reward model first
TRAINS_FIRST = {"ppo": ("reward",)}


def check_gpu_fits(cfg: Config, path: str, stages: str | Sequence[str], config=None) -> None:
    """Before a 4-bit stage loads anything: DoesNotFit (one line: the estimate, this GPU, the knob to change)
    if a stage's estimated peak exceeds this GPU, instead of an out-of-memory error deep inside a library
    after other work. `stages`: one or several (PPO's reward model with PPO), the model's config read once.
    Nothing on CPU or without 4-bit."""
    stages = [stages] if isinstance(stages, str) else stages
    if not use_4bit(cfg) or not stages:
        return
    if config is None:
        config = _model_config(cfg, path)
    for stage in dict.fromkeys(part for s in stages for part in (*TRAINS_FIRST.get(s, ()), s)):
        _check_fits(cfg, config, stage)


def _model_config(cfg: Config, path: str):
    """vd's copy of a published model's config (offline), else the folder's or the hub's config.json."""
    from transformers import AutoConfig

    from vd.models.architectures import published_config

    copy = None if Path(path).exists() else published_config(path)
    return copy or AutoConfig.from_pretrained(path, revision=cfg.model.revision if path == cfg.model.base else None)


def _check_fits(cfg: Config, config, stage: str) -> None:
    estimate = stage_peak(cfg, config, stage)
    have = torch.cuda.get_device_properties(_local_device()).total_memory
    if fits(estimate.total, have):
        return
    largest = max((k for k in estimate.parts if k != "weights"), key=estimate.parts.get, default="weights")
    name = torch.cuda.get_device_name(_local_device())
    raise DoesNotFit(f"{cfg.source}: {stage}: needs about {estimate.total / GIB:.1f} GiB at its peak (weights "
                     f"{estimate.parts['weights'] / GIB:.1f}, {largest} {estimate.parts[largest] / GIB:.1f}; "
                     "an estimate, "
                     f"docs/method.md §11), more than this GPU's {have / GIB:.1f} GiB ({name}) allows; "
                     f"{advice(cfg, config, estimate, have)}")
