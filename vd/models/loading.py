"""Loading base models, tokenizers, chat templates and adapters for every size.

On CUDA a real-size base model is loaded in 4-bit NF4 (QLoRA, docs/method.md §9); on CPU unquantized in
fp32, because 4-bit LoRA training on CPU gives silently wrong gradients after any eval-mode forward
(bitsandbytes repacks the weights into an inference-only format). Every checkpoint of a run, the bare
base model included, is prompted with the same template (vd.core.chat): base checkpoints ship none, so
with `model.chat_template: project` the tokenizer gets the project's, in the format its tokens allow
(ChatML, or Llama-3's own header/`<|eot_id|>` format), with BOS first where the tokenizer adds one.

    model, tokenizer = load_model(cfg, adapter=run / "checkpoint-100"), load_tokenizer(cfg)
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import torch

from vd import world
from vd.core.chat import (  # noqa: F401 (END_OF_TURN, end_of_turn_ids re-exported)
    CHATML_START,
    END_OF_TURN,
    LLAMA3_END_HEADER,
    LLAMA3_END_OF_TURN,
    LLAMA3_START,
    chat_format,
    chat_template,
    end_of_turn_ids,
    end_of_turn_token,
)
from vd.core.config import Config
from vd.core.precision import gpu_dtype
from vd.core.run import RunRecord
from vd.core.weights import model_identity  # noqa: F401 (re-exported: a model by its content)
from vd.models.merging import merge_shardwise, safetensors_shards

log = logging.getLogger(__name__)


def base_model_path(cfg: Config) -> str:
    """Where the base model of `cfg` lives: a hub id, a local folder, or the tiny world's (built if needed)."""
    return world.model_path(cfg)


def start_model_path(record: RunRecord, cfg: Config) -> str:
    """Step 0 of a run: the SFT run's merged model for a preference stage, the base model for SFT."""
    source = record.from_run_dir()
    return str(source / "merged") if source is not None else base_model_path(cfg)


def compute_dtype(cfg: Config) -> torch.dtype:
    """bf16 where the GPU has it natively, else fp16 (a T4: vd.core.precision); fp32 on CPU."""
    choice = cfg.quantization.compute_dtype
    if choice == "auto" and not torch.cuda.is_available():
        return torch.float32
    return gpu_dtype(choice)


def use_4bit(cfg: Config) -> bool:
    return cfg.quantization.load_in_4bit and torch.cuda.is_available()


_NOTED: set[str] = set()


def note_once(text: str) -> None:
    """Print `text` (a substitution the user should know of) once per process, from the first process only."""
    if text not in _NOTED and int(os.environ.get("RANK", 0)) == 0:
        print(f"note: {text}", file=sys.stderr, flush=True)
    _NOTED.add(text)


# Reserved tokens some base tokenizers carry that can pad without being the end-of-sequence token.
_PAD_CANDIDATES = ("<|finetune_right_pad_id|>", "<|endoftext|>", "<pad>", "<|pad|>")


def load_tokenizer(cfg: Config, path: str | None = None, padding_side: str = "right"):
    """The tokenizer of the base model, with the run's chat template (vd.core.chat) and a pad token.

    Where ChatML is plain text (no ChatML or Llama-3 chat tokens), every assistant turn ends with
    `<|im_end|>` and the tokenizer's own end-of-sequence token, which the base model already knows: SFT
    teaches the model to emit it, and generation and PPO stop on it. The pad token is a token other
    than the eos and end-of-turn tokens where the tokenizer has one, so that padding masks never hide a
    trained end-of-turn.
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path or base_model_path(cfg), revision=cfg.model.revision,
                                              padding_side=padding_side)
    if cfg.model.chat_template == "project":
        tokenizer.chat_template = chat_template(tokenizer)
    elif not tokenizer.chat_template:
        raise ValueError(f"{cfg.source}: model.chat_template: 'model' but {cfg.model.base} has no chat template; "
                         "use 'project'")
    ends = {tokenizer.eos_token, end_of_turn_token(tokenizer)}
    if tokenizer.pad_token is None or tokenizer.pad_token in ends:
        vocab = tokenizer.get_vocab()
        spare = next((t for t in _PAD_CANDIDATES if t in vocab and t not in ends), None)
        tokenizer.pad_token = spare or tokenizer.pad_token or tokenizer.eos_token
    return tokenizer




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
        if cfg.quantization.load_in_4bit:
            note_once("no CUDA GPU: models load unquantized in fp32, not in 4-bit as quantization.load_in_4bit says "
                      "(bitsandbytes' 4-bit LoRA gradients are wrong on CPU)")
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


def lora_config(cfg: Config, task_type: str = "CAUSAL_LM", trainable_tokens: list[int] | dict | None = None):
    """The run's LoRA adapter; a policy's (`policy_lora_config`) also trains the chat tokens' rows."""
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=cfg.lora.target_modules, task_type=task_type,
                      trainable_token_indices=trainable_tokens)


def chat_token_ids(tokenizer) -> list[int]:
    """The tokens the chat format adds (vd.core.chat): ChatML's `<|im_start|>` and `<|im_end|>`, Llama-3's
    `<|start_header_id|>`, `<|end_header_id|>` and `<|eot_id|>`; none for ChatML spelled as text."""
    tokens = {"chatml": [CHATML_START, END_OF_TURN],
              "llama3": [LLAMA3_START, LLAMA3_END_HEADER, LLAMA3_END_OF_TURN]}.get(chat_format(tokenizer), [])
    return tokenizer.convert_tokens_to_ids(tokens)


def chat_token_targets(cfg: Config, model, tokenizer) -> list[int] | dict | None:
    """PEFT's `trainable_token_indices` for the chat tokens (docs/method.md §9), or None (lora.train_chat_tokens
    off, or a format without tokens of its own). Base checkpoints never trained them (Llama-3's are near zero)
    and all-linear LoRA freezes embeddings, so a policy would never learn to end its turn.

    A list where the output layer shares the embedding's weight: PEFT then ties lm_head's rows to the
    embedding's (peft/utils/other.py set_additional_trainable_modules); else both layers by name, each its own rows.
    """
    ids = chat_token_ids(tokenizer) if cfg.lora.train_chat_tokens else []
    if not ids:
        return None
    embedding, output = model.get_input_embeddings(), model.get_output_embeddings()
    if output is None or output.weight is embedding.weight:
        return ids
    names = {module: name for name, module in model.named_modules()}
    return {names[embedding]: ids, names[output]: ids}


def policy_lora_config(cfg: Config, model, tokenizer):
    """The LoRA adapter of a policy (SFT, DPO, SimPO, PPO): all-linear LoRA plus the chat tokens' rows."""
    return lora_config(cfg, trainable_tokens=chat_token_targets(cfg, model, tokenizer))


def local_model_dir(model: str, revision: str | None = None) -> Path:
    """A model's local folder: itself, or a hub model's cached snapshot (config and safetensors files)."""
    if Path(model).is_dir():
        return Path(model)
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(model, revision=revision, allow_patterns=["*.json", "*.safetensors"]))


def merge_adapter(cfg: Config, base_path: str, adapter: str | Path, out: str | Path, head: str = "causal") -> Path:
    """Merge a LoRA adapter (and its chat-token rows; a score head's adapter, its head) into its base and save
    the result (weights + tokenizer) to `out`.

    Preference stages start from this merged SFT model, so that "adapter disabled" — the reference
    policy TRL uses for DPO and PPO with PEFT — is exactly the final SFT policy. The merge is done in
    the compute dtype without quantization (merging into 4-bit weights would round the adapter away),
    one weight at a time from the base's safetensors shards (vd.models.merging: a full 8B base does not
    fit a standard Colab's RAM); a base saved without safetensors is merged in memory by PEFT.
    """
    dtype = compute_dtype(cfg) if torch.cuda.is_available() else torch.float32
    revision = cfg.model.revision if base_path == cfg.model.base else None
    local, out = local_model_dir(base_path, revision), Path(out)
    if safetensors_shards(local):
        merge_shardwise(local, adapter, out, dtype, head=head)
    else:
        note_once(f"{base_path} has no safetensors weights: merging its adapter in memory (the whole model in RAM)")
        _merge_in_memory(base_path, revision, adapter, out, dtype, head)
    load_tokenizer(cfg, base_path).save_pretrained(out)
    return out


def _merge_in_memory(base: str, revision: str | None, adapter: str | Path, out: Path, dtype: torch.dtype,
                     head: str) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    if head == "score":
        model = AutoModelForSequenceClassification.from_pretrained(base, revision=revision, num_labels=1, dtype=dtype)
        if model.config.pad_token_id is None:
            model.config.pad_token_id = model.config.eos_token_id
    else:
        model = AutoModelForCausalLM.from_pretrained(base, revision=revision, dtype=dtype)
    PeftModel.from_pretrained(model, str(adapter)).merge_and_unload().save_pretrained(out)
