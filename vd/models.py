"""Loading base models, tokenizers, chat templates and adapters for every size.

On CUDA a real-size base model is loaded in 4-bit NF4 (QLoRA, DESIGN §4); on CPU models are loaded
unquantized in fp32, because 4-bit LoRA training on CPU gives silently wrong gradients after any
eval-mode forward (bitsandbytes repacks the weights into an inference-only format).

Chat formatting: every checkpoint of a run, the bare base model included, is prompted with the same
template. Base checkpoints ship no chat template (or one they were never trained on), so with
`model.chat_template: chatml` (the default) the tokenizer gets this project's ChatML template; a
base model at step 0 thus sees `<|im_start|>user\n…<|im_end|>\n<|im_start|>assistant\n` and continues
from there. Where `<|im_end|>` is not a single token of the tokenizer (Llama-3), generation stops on
the string instead.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from vd.config import Config

log = logging.getLogger(__name__)
END_OF_TURN = "<|im_end|>"


def base_model_path(cfg: Config) -> str:
    """Where the base model of `cfg` lives: the tiny world's folder (built if needed) or a hub id."""
    if cfg.model.base == "tiny":
        from vd.tiny import ensure_world

        return str(ensure_world(cfg).model_dir)
    return cfg.model.base


def compute_dtype(cfg: Config) -> torch.dtype:
    """bf16 where the GPU supports it, else fp16 (a T4 has no bf16); fp32 on CPU."""
    choice = cfg.quantization.compute_dtype
    if choice == "auto":
        if not torch.cuda.is_available():
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[choice]


def use_4bit(cfg: Config) -> bool:
    return cfg.quantization.load_in_4bit and torch.cuda.is_available()


# Reserved tokens some base tokenizers carry that can pad without being the end-of-sequence token.
_PAD_CANDIDATES = ("<|finetune_right_pad_id|>", "<|endoftext|>", "<pad>", "<|pad|>")


def load_tokenizer(cfg: Config, path: str | None = None, padding_side: str = "right"):
    """The tokenizer of the base model, with the run's chat template and a pad token.

    With ChatML on a tokenizer where `<|im_end|>` is not a token of its own (Llama-3 base), the markers
    stay plain text and every assistant turn ends with `<|im_end|>` followed by the tokenizer's own
    end-of-sequence token, which the base model already knows: SFT teaches the model to emit it, and
    generation and PPO stop on it. The pad token is then a token other than that end token where the
    tokenizer has one, so that padding masks never hide a trained end-of-turn.
    """
    from transformers import AutoTokenizer

    from vd.tiny import CHATML_TEMPLATE

    tokenizer = AutoTokenizer.from_pretrained(path or base_model_path(cfg), revision=cfg.model.revision,
                                              padding_side=padding_side)
    if cfg.model.chat_template == "chatml":
        if _is_single_token(tokenizer, END_OF_TURN):
            tokenizer.chat_template = CHATML_TEMPLATE
        else:
            tokenizer.chat_template = CHATML_TEMPLATE.replace("'<|im_end|>' }}{% endgeneration %}",
                                                              "'<|im_end|>' + eos_token }}{% endgeneration %}")
    elif not tokenizer.chat_template:
        raise ValueError(f"{cfg.source}: model.chat_template: 'own' but {cfg.model.base} has no chat template; "
                         "use 'chatml'")
    if tokenizer.pad_token is None or tokenizer.pad_token == tokenizer.eos_token:
        vocab = tokenizer.get_vocab()
        spare = next((t for t in _PAD_CANDIDATES if t in vocab and t != tokenizer.eos_token), None)
        tokenizer.pad_token = spare or tokenizer.eos_token
    return tokenizer


def _is_single_token(tokenizer, text: str) -> bool:
    return len(tokenizer.encode(text, add_special_tokens=False)) == 1


def end_of_turn_ids(tokenizer) -> list[int]:
    """Token ids that end an assistant turn (for generation's eos_token_id)."""
    ids = {tokenizer.eos_token_id}
    token = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    if isinstance(token, int) and token != tokenizer.unk_token_id and token is not None:
        ids.add(token)
    return sorted(i for i in ids if i is not None)


def quantization_config(cfg: Config):
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=cfg.quantization.quant_type,
                              bnb_4bit_use_double_quant=cfg.quantization.double_quant,
                              bnb_4bit_compute_dtype=compute_dtype(cfg))


def _local_device() -> int:
    """This process's GPU: under `accelerate launch` each process takes the GPU of its local rank."""
    import os

    return int(os.environ.get("LOCAL_RANK", 0))


def load_model(cfg: Config, path: str | None = None, adapter: str | Path | None = None,
               trainable: bool = False, head: str = "causal"):
    """Load a model: 4-bit on CUDA when the params say so, plain fp32 on CPU; optionally an adapter.

    head: "causal" for policies, "score" for reward/value models (a scalar head).
    """
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    kwargs = {"revision": cfg.model.revision} if path is None else {}
    if use_4bit(cfg):
        kwargs.update(quantization_config=quantization_config(cfg), dtype=compute_dtype(cfg),
                      device_map={"": _local_device()})
    elif torch.cuda.is_available():
        kwargs.update(dtype=compute_dtype(cfg), device_map={"": _local_device()})
    else:
        kwargs.update(dtype=torch.float32)
    auto = AutoModelForSequenceClassification if head == "score" else AutoModelForCausalLM
    if head == "score":
        kwargs["num_labels"] = 1
    model = auto.from_pretrained(path or base_model_path(cfg), **kwargs)
    if head == "score" and model.config.pad_token_id is None:
        model.config.pad_token_id = model.config.eos_token_id
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter), is_trainable=trainable)
    if not trainable:
        model.eval()
    return model


def lora_config(cfg: Config, task_type: str = "CAUSAL_LM"):
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=cfg.lora.target_modules, task_type=task_type)


def merge_adapter(cfg: Config, base_path: str, adapter: str | Path, out: str | Path) -> Path:
    """Merge a LoRA adapter into its base and save the result (weights + tokenizer) to `out`.

    Preference stages start from this merged SFT model, so that "adapter disabled" — the reference
    policy TRL uses for DPO and PPO with PEFT — is exactly the final SFT policy. The merge is done in
    the compute dtype without quantization (merging into 4-bit weights would round the adapter away).
    """
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    dtype = compute_dtype(cfg) if torch.cuda.is_available() else torch.float32
    revision = cfg.model.revision if base_path == cfg.model.base else None
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=dtype, revision=revision)
    merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    out = Path(out)
    merged.save_pretrained(out)
    load_tokenizer(cfg, base_path).save_pretrained(out)
    return out


# --- GPU memory the 4-bit weights take (a floor: activations come on top) ----------------------------

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
        raise MemoryError(f"{what} at size {cfg.size!r} holds {len(resident)} 4-bit models whose weights alone take "
                          f"{need / 2**30:.1f} GiB, more than this GPU's {have / 2**30:.1f} GiB "
                          f"({torch.cuda.get_device_name(_local_device())}); use a larger GPU "
                          "(benchmarks/RESULTS.md: which stage fits which card)")
