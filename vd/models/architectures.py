"""The published config.json fields of each real size's base checkpoint (architecture only), keyed by size:
what the GPU benchmarks build random-weight models from, and what `vd plan` and the memory estimate read
where the hub cannot be reached (tests/test_benchmarks.py checks them against the published parameter counts).

    config = published_config("meta-llama/Llama-3.2-3B")   # a transformers config, or None
    config, source = model_architecture(cfg)                 # a params file's model, offline where vd has it
"""

from __future__ import annotations

from pathlib import Path

from vd import world
from vd.core.config import ConfigError

ARCHITECTURES: dict[str, dict] = {
    "llama3-3b": {
        "hub_id": "meta-llama/Llama-3.2-3B",
        "published_params": 3210000000.0,
        "config": {
            "model_type": "llama",
            "architectures": [
                "LlamaForCausalLM"
            ],
            "vocab_size": 128256,
            "hidden_size": 3072,
            "intermediate_size": 8192,
            "num_hidden_layers": 28,
            "num_attention_heads": 24,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "hidden_act": "silu",
            "max_position_embeddings": 131072,
            "rms_norm_eps": 1e-05,
            "rope_theta": 500000.0,
            "tie_word_embeddings": True,
            "attention_bias": False,
            "mlp_bias": False,
            "rope_scaling": {
                "rope_type": "llama3",
                "factor": 32.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192
            },
            "bos_token_id": 128000,
            "eos_token_id": 128001
        }
    },
    "llama3-8b": {
        "hub_id": "meta-llama/Llama-3.1-8B",
        "published_params": 8030000000.0,
        "config": {
            "model_type": "llama",
            "architectures": [
                "LlamaForCausalLM"
            ],
            "vocab_size": 128256,
            "hidden_size": 4096,
            "intermediate_size": 14336,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "hidden_act": "silu",
            "max_position_embeddings": 131072,
            "rms_norm_eps": 1e-05,
            "rope_theta": 500000.0,
            "tie_word_embeddings": False,
            "attention_bias": False,
            "mlp_bias": False,
            "rope_scaling": {
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192
            },
            "bos_token_id": 128000,
            "eos_token_id": 128001
        }
    },
    "qwen3-4b": {
        "hub_id": "Qwen/Qwen3-4B-Base",
        "published_params": 4000000000.0,
        "config": {
            "model_type": "qwen3",
            "architectures": [
                "Qwen3ForCausalLM"
            ],
            "vocab_size": 151936,
            "hidden_size": 2560,
            "intermediate_size": 9728,
            "num_hidden_layers": 36,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "hidden_act": "silu",
            "max_position_embeddings": 32768,
            "rms_norm_eps": 1e-06,
            "rope_theta": 1000000.0,
            "tie_word_embeddings": True,
            "attention_bias": False,
            "bos_token_id": 151643,
            "eos_token_id": 151643
        }
    },
    "qwen3-8b": {
        "hub_id": "Qwen/Qwen3-8B-Base",
        "published_params": 8200000000.0,
        "config": {
            "model_type": "qwen3",
            "architectures": [
                "Qwen3ForCausalLM"
            ],
            "vocab_size": 151936,
            "hidden_size": 4096,
            "intermediate_size": 12288,
            "num_hidden_layers": 36,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "hidden_act": "silu",
            "max_position_embeddings": 32768,
            "rms_norm_eps": 1e-06,
            "rope_theta": 1000000.0,
            "tie_word_embeddings": False,
            "attention_bias": False,
            "bos_token_id": 151643,
            "eos_token_id": 151643
        }
    }
}


def published_config(model_id: str, **changes):
    """The transformers config of a real size's base checkpoint by its hub id (None for another model);
    `changes` override fields."""
    from transformers import AutoConfig

    entry = next((e for e in ARCHITECTURES.values() if e["hub_id"] == model_id), None)
    if entry is None:
        return None
    fields = dict(entry["config"]) | changes
    return AutoConfig.for_model(fields.pop("model_type"), **fields)


def model_architecture(cfg):
    """The model's transformers config: vd's copy of a published model's (vd.models.architectures: offline),
    else its config.json (a local folder, the tiny world's model, the hub or its cache)."""
    from transformers import AutoConfig

    copy = None if Path(cfg.model.base).exists() else published_config(cfg.model.base)
    if copy is not None:  # a published model: its architecture without a call to the hub
        return copy, "vd.models.architectures (copy of the published config.json)"
    try:
        return AutoConfig.from_pretrained(world.model_path(cfg), revision=cfg.model.revision), "config.json"
    except (OSError, ValueError):
        raise ConfigError(f"{cfg.source}: model.base: the config.json of {cfg.model.base} cannot be read "
                          "here (offline?), and vd has no copy of it") from None
