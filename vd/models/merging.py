"""A LoRA adapter merged into its base model one weight at a time, from the base's safetensors shards, into
a sharded output: host RAM holds one output shard and a tensor or two, never the model (docs/decisions.md).

The arithmetic is PEFT's, so the result equals `merge_and_unload()` (tests/test_merging.py): W += (B @ A)
· scaling in fp32, rounded once to the weight's dtype (peft/tuners/lora/layer.py Linear.get_delta_weight,
merge); trainable token rows replace the embedding's rows (peft/tuners/trainable_tokens/layer.py
TrainableTokensLayer.merge); a modules_to_save module (a reward model's score head) replaces the base's.

    merge_shardwise("base/", "checkpoint-100/", "merged/", torch.bfloat16, head="causal")
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

MAX_SHARD_BYTES = 1 << 30  # output shards of at most 1 GiB (one tensor larger than this gets a shard alone)
PREFIX = "base_model.model."  # PEFT's prefix of every key in adapter_model.safetensors
LORA_A, LORA_B, TOKENS = ".lora_A.weight", ".lora_B.weight", ".token_adapter.trainable_tokens_delta"
# LoRA options whose merge is not W += B @ A · alpha / r: our adapters never use them (vd.models.loading.lora_config)
UNSUPPORTED = ("use_dora", "fan_in_fan_out", "lora_bias", "rank_pattern", "alpha_pattern", "layer_replication")


def safetensors_shards(model_dir: Path) -> list[Path]:
    """The safetensors files of a saved model, in its index's order (one file where it has no index)."""
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        return [model_dir / f for f in dict.fromkeys(json.loads(index.read_text())["weight_map"].values())]
    single = model_dir / "model.safetensors"
    return [single] if single.is_file() else []


def _adapter_parts(adapter_dir: Path) -> tuple[dict, dict, dict, float]:
    """(LoRA pairs by base weight name, token rows by base weight name, whole modules by weight name, scaling)."""
    from safetensors.torch import load_file

    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    used = [k for k in UNSUPPORTED if config.get(k)]
    if config.get("peft_type") != "LORA" or used:
        raise ValueError(f"{adapter_dir}: cannot merge shard by shard: a {config.get('peft_type')} adapter "
                         f"with {', '.join(used) or 'no LoRA'}")
    scaling = config["lora_alpha"] / (config["r"] ** 0.5 if config.get("use_rslora") else config["r"])
    indices = config.get("trainable_token_indices")
    lora, tokens, modules = {}, {}, {}
    for key, tensor in load_file(adapter_dir / "adapter_model.safetensors").items():
        name = key.removeprefix(PREFIX)
        if name.endswith(LORA_A) or name.endswith(LORA_B):
            part = "A" if name.endswith(LORA_A) else "B"
            lora.setdefault(name[: -len(LORA_A)] + ".weight", {})[part] = tensor
        elif name.endswith(TOKENS):
            module = name[: -len(TOKENS)]
            rows = indices if isinstance(indices, list) else \
                next(ids for target, ids in indices.items() if module.endswith(target))
            tokens[module + ".weight"] = (torch.tensor(rows), tensor)
        elif ".lora_" in name or ".token_adapter." in name:
            raise ValueError(f"{adapter_dir}: cannot merge shard by shard: unknown adapter weight {key}")
        else:  # a modules_to_save module, saved under the module's own name
            modules[name] = tensor
    return lora, tokens, modules, scaling


def _expected_weights(config, head: str) -> set[str]:
    """The weight names a model of `config` with `head` saves: its state dict, a tied weight once (from a meta
    model: no memory)."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    auto = AutoModelForSequenceClassification if head == "score" else AutoModelForCausalLM
    with torch.device("meta"):
        model = auto.from_config(config)
    tied = {n for n, _ in model.named_parameters(remove_duplicate=False)} - {n for n, _ in model.named_parameters()}
    return set(model.state_dict()) - tied


def target_config(base_dir: Path, dtype: torch.dtype, head: str):
    """The merged model's config: the base's, in `dtype`, with one scalar output for a score head."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(base_dir)
    if head == "score":
        config.num_labels = 1
        config.architectures = [config.architectures[0].replace("ForCausalLM", "ForSequenceClassification")] \
            if config.architectures else None
        if config.pad_token_id is None:  # as vd.models.loading.load_model sets it for a score head
            config.pad_token_id = config.eos_token_id
    config.dtype = dtype
    return config


def merge_shardwise(base_dir: str | Path, adapter_dir: str | Path, out_dir: str | Path, dtype: torch.dtype,
                    head: str = "causal", max_shard_bytes: int | None = None) -> Path:
    """Merge the adapter in `adapter_dir` into the safetensors model in `base_dir`, writing `out_dir` (weights in
    `dtype`, config, generation config) as `save_pretrained` lays a model out. head: "causal" or "score" (the
    base's lm_head is left out and the adapter's score head put in). Raises ValueError on a non-finite weight."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    base_dir, adapter_dir, out_dir = Path(base_dir), Path(adapter_dir), Path(out_dir)
    max_shard_bytes = max_shard_bytes or MAX_SHARD_BYTES
    files = safetensors_shards(base_dir)
    if not files:
        raise FileNotFoundError(f"{base_dir}: no safetensors weights to merge shard by shard")
    lora, tokens, modules, scaling = _adapter_parts(adapter_dir)
    config = target_config(base_dir, dtype, head)
    expected = _expected_weights(config, head)
    out_dir.mkdir(parents=True, exist_ok=True)
    shard, sizes, written = {}, {}, []  # written: [(file, {name: bytes})]

    def flush():
        nonlocal shard, sizes
        if shard:
            path = out_dir / f".shard-{len(written)}.safetensors"
            save_file(shard, str(path), metadata={"format": "pt"})
            written.append((path, sizes))
        shard, sizes = {}, {}

    def put(name: str, tensor: torch.Tensor):
        if not torch.isfinite(tensor).all():
            raise ValueError(f"{adapter_dir}: merging gives non-finite values in {name}")
        size = tensor.numel() * tensor.element_size()
        if shard and sum(sizes.values()) + size > max_shard_bytes:
            flush()
        shard[name], sizes[name] = tensor.contiguous(), size

    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for name in f.keys():
                if name not in expected or name in modules:
                    continue  # e.g. a causal LM's lm_head under a score head, or a module the adapter replaces
                weight = f.get_tensor(name).to(dtype)
                if name in lora:
                    pair = lora.pop(name)
                    weight += (pair["B"].float() @ pair["A"].float()) * scaling
                if name in tokens:
                    index, rows = tokens.pop(name)
                    weight = weight.index_copy(0, index, rows.to(weight))
                put(name, weight)
    for name, tensor in modules.items():
        put(name, tensor.to(dtype))
    flush()
    names = {n for _, group in written for n in group}
    if lora or tokens or expected - names:
        raise ValueError(f"{base_dir} + {adapter_dir}: cannot merge shard by shard: adapter weights without a base "
                         f"weight {sorted(lora) + sorted(tokens)} or base weights missing {sorted(expected - names)}")
    _name_shards(out_dir, written)
    config.save_pretrained(out_dir)
    if head == "causal" and (base_dir / "generation_config.json").is_file():
        shutil.copy(base_dir / "generation_config.json", out_dir / "generation_config.json")
    return out_dir


def _name_shards(out_dir: Path, written: list[tuple[Path, dict[str, int]]]) -> None:
    """Rename the shards as transformers names them, with an index where there are several."""
    if len(written) == 1:
        written[0][0].rename(out_dir / "model.safetensors")
        return
    weight_map = {}
    for i, (path, sizes) in enumerate(written, 1):
        final = f"model-{i:05d}-of-{len(written):05d}.safetensors"
        path.rename(out_dir / final)
        weight_map.update(dict.fromkeys(sizes, final))
    total = sum(sum(sizes.values()) for _, sizes in written)
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
