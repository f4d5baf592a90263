"""The GPU smoke's model and rows (benchmarks/bench_gpu.py): a random-weight model of a real size's architecture
with a tokenizer built here that carries the family's chat tokens at their real ids, and local files in the hub
datasets' formats whose every row is as long as the params allow.

    info = build_model("llama3-3b", Path("work/model"), cpu=False, layers=None)
    lengths = write_data(cfg, tokenizer, Path("work/data"), rows=256)
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from common import model_config

WORDS = ("value alignment model answer question policy reward support oppose neutral topic stance drift "
         "data training checkpoint probe people society family health money work school science nature "
         "history future law rights freedom safety risk benefit cost choice change growth trust fair").split()
# --cpu: 4096 regular tokens, the chat tokens after them, and a model this small
CPU_MODEL = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16)
CPU_REGULAR = 4096
# The families' chat tokens at their real ids: (regular BPE tokens, {offset after them: token}, specials in all,
# bos, eos, pad as the hub's tokenizer_config has them)
FAMILIES = {
    "llama": (128000, {0: "<|begin_of_text|>", 1: "<|end_of_text|>", 4: "<|finetune_right_pad_id|>",
                       6: "<|start_header_id|>", 7: "<|end_header_id|>", 8: "<|eom_id|>", 9: "<|eot_id|>"}, 256,
              "<|begin_of_text|>", "<|end_of_text|>", None),
    "qwen3": (151643, {0: "<|endoftext|>", 1: "<|im_start|>", 2: "<|im_end|>"}, 26, None, "<|endoftext|>",
              "<|endoftext|>"),
}


# --- the random-weight model and its family's tokenizer ---------------------------------------------------


def family_tokenizer(family: str, n_regular: int | None = None):
    """A byte-level BPE tokenizer trained on WORDS (each " word" one token), padded with filler tokens to the
    family's regular vocabulary, then its special tokens at their real offsets (the rest reserved), its BOS
    put first by the post-processor where the family has one (Llama-3), its eos and pad as the hub's."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    regular, named, n_special, bos, eos, pad = FAMILIES[family]
    regular = n_regular or regular
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    sentences = [" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(12)) for i in range(400)]
    bpe.train_from_iterator(sentences, trainers.BpeTrainer(vocab_size=1000, show_progress=False,
                                                           initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    spec = json.loads(bpe.to_str())
    spec["model"]["vocab"].update({f"fill{i}": i for i in range(bpe.get_vocab_size(), regular)})
    spec["added_tokens"] = [{"id": regular + k, "content": named.get(k, f"<|reserved_special_token_{k}|>"),
                             "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
                             "special": True} for k in range(n_special)]
    tokenizer = Tokenizer.from_str(json.dumps(spec))
    steps = [processors.ByteLevel(trim_offsets=False)]
    if bos:
        steps.append(processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B:1",
                                                   special_tokens=[(bos, tokenizer.token_to_id(bos))]))
    tokenizer.post_processor = processors.Sequence(steps)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=bos, eos_token=eos, pad_token=pad)


def build_model(size: str, out: Path, cpu: bool, layers: int | None) -> dict:
    """The random-weight `size` model in the compute dtype (bf16 on a GPU), with its family's tokenizer."""
    from transformers import AutoModelForCausalLM, GenerationConfig

    config = model_config(size)
    family = "qwen3" if config.model_type.startswith("qwen") else "llama"
    tokenizer = family_tokenizer(family, CPU_REGULAR if cpu else None)
    ids = {k: tokenizer.convert_tokens_to_ids(t) if t else None for k, t in
           (("bos_token_id", tokenizer.bos_token), ("eos_token_id", tokenizer.eos_token))}
    changes = dict(CPU_MODEL, vocab_size=len(tokenizer)) if cpu else {}
    config = model_config(size, **changes, **({"num_hidden_layers": layers} if layers else {}),
                          **(ids if cpu else {}))  # the small vocabulary's ids; None where the family has none
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    with torch.device(device):  # initialised where it runs: an 8B model inits in seconds on a GPU
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16 if device == "cuda" else torch.float32)
    model.generation_config = GenerationConfig(bos_token_id=ids["bos_token_id"], eos_token_id=ids["eos_token_id"])
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return {"layers": config.num_hidden_layers, "vocab": config.vocab_size, "tokenizer": len(tokenizer),
            "family": family, "params": sum(p.numel() for p in model.parameters())}


# --- rows of the params' lengths, in the hub datasets' formats -----------------------------------------------


def words(n: int, offset: int = 0) -> str:
    return " ".join(WORDS[(offset + i) % len(WORDS)] for i in range(max(n, 1)))


def chat_length(tokenizer, messages: list[dict], generation_prompt: bool = False) -> int:
    return len(tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation_prompt,
                                             return_dict=False))


def fill(tokenizer, make, total: int, generation_prompt: bool = False):
    """make(n) with the largest n whose chat is at most `total` tokens (each word is one token)."""
    n = max(total - chat_length(tokenizer, make(1), generation_prompt), 1)
    while n > 1 and chat_length(tokenizer, make(n), generation_prompt) > total:
        n -= 1
    return make(n)


def write_data(cfg, tokenizer, folder: Path, rows: int) -> dict:
    """Local files in the hub datasets' formats, every row at the params' lengths: Alpaca for SFT, UltraFeedback
    pairs for DPO, SimPO and policy fit, and UltraFeedback pairs with ppo.max_length prompts for PPO and its
    reward model; returns the tokens of one row of each."""
    folder.mkdir(parents=True, exist_ok=True)
    user = lambda text: [{"role": "user", "content": text}]  # noqa: E731
    turn = lambda text: [{"role": "assistant", "content": text}]  # noqa: E731
    question = words(max(cfg.sft.max_length // 8, 1), 1)
    sft = fill(tokenizer, lambda n: user(question) + turn(words(n, 3)), cfg.sft.max_length)
    (folder / "alpaca.json").write_text(json.dumps([{"instruction": question, "input": "", "output": sft[1]["content"]}]
                                                   * rows))
    pair_length = max(cfg.dpo.max_length, cfg.simpo.max_length)
    chosen = fill(tokenizer, lambda n: user(question) + turn(words(n, 3)), pair_length)
    rejected = fill(tokenizer, lambda n: user(question) + turn(words(n, 5)), pair_length)
    prompt = fill(tokenizer, lambda n: user(words(n, 2)), cfg.ppo.max_length, generation_prompt=True)
    ppo_chosen = fill(tokenizer, lambda n: prompt + turn(words(n, 3)), cfg.reward.max_length)
    ppo_rejected = fill(tokenizer, lambda n: prompt + turn(words(n, 5)), cfg.reward.max_length)
    for name, (c, r) in {"pairs": (chosen, rejected), "ppo": (ppo_chosen, ppo_rejected)}.items():
        line = json.dumps({"prompt": c[0]["content"], "chosen": c, "rejected": r})
        (folder / f"{name}.jsonl").write_text("\n".join([line] * rows) + "\n")
    return {"sft": chat_length(tokenizer, sft),
            "pair": chat_length(tokenizer, chosen) + chat_length(tokenizer, rejected),
            "reward": chat_length(tokenizer, ppo_chosen) + chat_length(tokenizer, ppo_rejected),
            "ppo": chat_length(tokenizer, prompt, True) + cfg.ppo.response_length}
