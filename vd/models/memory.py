"""GPU memory the 4-bit weights of a stage's models take (a floor: activations come on top), and the
pre-flight check that stops a stage whose models cannot fit before anything is trained."""

from __future__ import annotations

import torch

from vd.core.config import Config, ConfigError
from vd.models.loading import _local_device, use_4bit


class DoesNotFit(ConfigError, MemoryError):
    """A stage's 4-bit models cannot fit this GPU: a user's choice of size and card (one error line)."""


NF4_BYTES_PER_WEIGHT = 1 / 2 + 1 / 64 + 4 / (64 * 256)  # packed 4-bit + double-quantized absmax per 64 weights


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


def weight_bytes(counts: dict, lora_rank: int, prepared: bool, trained: bool) -> dict:
    """GPU bytes of one 4-bit model with a LoRA adapter of `lora_rank`. `prepared`: after
    peft.prepare_model_for_kbit_training, which casts every non-4-bit parameter to fp32 (as load_policy
    does before training); else they stay in the 2-byte compute dtype. Adapters are fp32; `trained` adds
    their fp32 gradients and paged 8-bit AdamW's two 1-byte states."""
    lora = counts["lora_per_rank"] * lora_rank
    total = (counts["quantized"] * NF4_BYTES_PER_WEIGHT + counts["other"] * (4 if prepared else 2)
             + lora * 4 + (lora * (4 + 2) if trained else 0))
    return {"bytes": total, "upcast_bytes": counts["other"] * 2 if prepared else 0}


def check_gpu_fits(cfg: Config, path: str, resident: list[tuple[str, bool, bool]], what: str) -> None:
    """Before a 4-bit stage loads anything: stop with a clear error if the weights of its models alone
    (`resident`: (head, prepared, trained) per model) exceed this GPU's memory, instead of an
    out-of-memory error deep inside a library after other work (PPO trains its reward model first)."""
    if not use_4bit(cfg):
        return
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path)
    need = sum(weight_bytes(weight_counts(config, head), cfg.lora.r, prepared, trained)["bytes"]
               for head, prepared, trained in resident)
    have = torch.cuda.get_device_properties(_local_device()).total_memory
    if need > have:
        raise DoesNotFit(f"{what} at size {cfg.size!r} holds {len(resident)} 4-bit models whose weights alone take "
                          f"{need / 2**30:.1f} GiB, more than this GPU's {have / 2**30:.1f} GiB "
                          f"({torch.cuda.get_device_name(_local_device())}); use a larger GPU "
                          "(benchmarks/RESULTS.md: which stage fits which card)")
