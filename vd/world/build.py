"""The tiny world: a tokenizer and a ~0.7M-parameter Qwen3-architecture base model trained locally on
synthetic chats, and tiny analogues of the paper's four datasets.

    world = vd.world.build.ensure_world(cfg)     # builds once into $VD_HOME/tiny/<recipe hash>/, then loads
    world.model_dir, world.tokenizer_dir, world.dataset_path("wildchat")

The build is deterministic under the config's seed and keyed by a hash of its recipe (the `tiny:`
params, the seed, and the source of the modules that write it), so changing any of them builds a new
world beside the old one. It is written to a temporary folder and renamed into place only when
complete, under a file lock, so an interrupted build never leaves a cache that loads as complete.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from vd.core import stances
from vd.core.chat import CHATML_TEMPLATE
from vd.core.config import Config, TinyConfig
from vd.core.io import atomic_write_json, code_hash, file_lock
from vd.world import hub_format
from vd.world import text as tiny_text
from vd.world import vocab as tiny_vocab

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
DATASETS = ("wildchat", "alpaca", "ultrafeedback", "hh-rlhf", "synthetic_prompts", "pretrain")


def vd_home() -> Path:
    return Path(os.environ.get("VD_HOME") or Path.home() / ".cache" / "value-drifts")


@dataclass(frozen=True)
class TinyWorld:
    root: Path

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def tokenizer_dir(self) -> Path:
        return self.root / "model"  # saved beside the weights, as hub checkpoints are

    @property
    def manifest(self) -> dict:
        return json.loads((self.root / "manifest.json").read_text())

    def dataset_path(self, name: str) -> Path:
        if name not in DATASETS:
            raise ValueError(f"tiny dataset {name!r}: expected one of {', '.join(DATASETS)}")
        return self.root / "data" / f"{name}.jsonl"

    def hub_path(self, name: str) -> Path:
        """The dataset `name` in the format of the hub dataset it stands in for (vd.world.hub_format)."""
        if name not in hub_format.HUB_FORMATS:
            raise ValueError(f"tiny dataset {name!r} has no hub format; "
                             f"expected one of {', '.join(hub_format.HUB_FORMATS)}")
        return self.root / "hub" / f"{name}.jsonl"

    def load_rows(self, name: str) -> list[dict]:
        with open(self.dataset_path(name)) as f:
            return [json.loads(line) for line in f]


def recipe_hash(tiny: TinyConfig, seed: int) -> str:
    """Hash of everything that determines the world: recipe, seed, and the code that writes it
    (vd.core.io.code_hash)."""
    h = hashlib.sha256(json.dumps({"tiny": dataclasses.asdict(tiny), "seed": seed}, sort_keys=True).encode())
    h.update(code_hash(stances, tiny_text, tiny_vocab, hub_format, sys.modules[__name__]).encode())
    return h.hexdigest()[:16]


def ensure_world(cfg: Config, home: Path | None = None, verbose: bool = True) -> TinyWorld:
    """Return the tiny world of `cfg`, building it first if it is not cached (complete) yet."""
    if cfg.tiny is None:
        raise ValueError(f"{cfg.source}: size {cfg.size!r} has no `tiny:` section; the tiny world needs one")
    home = Path(home or vd_home()) / "tiny"
    final = home / recipe_hash(cfg.tiny, cfg.seed)
    if (final / "manifest.json").is_file():
        clean_partials(home)
        return TinyWorld(final)
    home.mkdir(parents=True, exist_ok=True)
    with file_lock(home / ".build.lock"):
        if (final / "manifest.json").is_file():  # built by another process while we waited
            return TinyWorld(final)
        _remove_partials(home)  # we hold the lock: every partial build left is a dead process's
        tmp = home / f".partial-{final.name}-{os.getpid()}"
        try:
            build_world(cfg.tiny, cfg.seed, tmp, verbose=verbose)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return TinyWorld(final)


def _remove_partials(home: Path) -> None:
    for partial in home.glob(".partial-*"):
        shutil.rmtree(partial, ignore_errors=True)


def clean_partials(home: Path) -> None:
    """Remove what killed builds left (`.partial-<hash>-<pid>`, megabytes each), unless a build is running:
    builds hold the lock, so a partial folder found while the lock is free is a dead process's."""
    if not any(home.glob(".partial-*")):
        return
    with file_lock(home / ".build.lock", blocking=False) as locked:
        if locked:  # else a build is running: its partial folder is alive
            _remove_partials(home)


def build_world(tiny: TinyConfig, seed: int, out: Path, verbose: bool = True) -> dict:
    """Write the whole tiny world into `out`; the manifest is written last and marks it complete."""
    t0 = time.perf_counter()
    log = print if verbose else (lambda *a, **k: None)
    rng = random.Random(seed)
    (out / "data").mkdir(parents=True, exist_ok=True)
    pretrain = tiny_text.pretraining_chats(rng, tiny.pretrain_chats)
    datasets = {
        "pretrain": pretrain,
        "wildchat": tiny_text.sft_rows(rng, "wildchat", tiny.sft_rows),
        "alpaca": tiny_text.sft_rows(rng, "alpaca", tiny.sft_rows),
        "ultrafeedback": tiny_text.preference_rows(rng, "ultrafeedback", tiny.preference_rows),
        "hh-rlhf": tiny_text.preference_rows(rng, "hh-rlhf", tiny.preference_rows),
        "synthetic_prompts": tiny_text.synthetic_prompts(rng, max(1, tiny.preference_rows // len(stances.TOPICS))),
    }
    (out / "hub").mkdir(exist_ok=True)
    for name, rows in datasets.items():
        with open(out / "data" / f"{name}.jsonl", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        if name in hub_format.HUB_FORMATS:
            with open(out / "hub" / f"{name}.jsonl", "w") as f:
                f.writelines(json.dumps(hub_format.to_hub(name, r)) + "\n" for r in rows)
    log(f"tiny world: wrote {sum(map(len, datasets.values()))} rows of synthetic data")

    tokenizer = train_tokenizer(pretrain, tiny.vocab_size)
    model = new_model(tiny, tokenizer, seed)
    log(f"tiny world: tokenizer of {len(tokenizer)} tokens; model of {n_params(model):,} parameters; pre-training…")
    losses = pretrain_model(model, tokenizer, pretrain, tiny, seed, log)
    model.save_pretrained(out / "model")
    tokenizer.save_pretrained(out / "model")

    manifest = {
        "recipe": dataclasses.asdict(tiny), "seed": seed, "recipe_hash": recipe_hash(tiny, seed),
        "n_params": n_params(model), "vocab_size": len(tokenizer),
        "weights_sha256": weights_hash(model), "tokenizer_sha256": _sha256(out / "model" / "tokenizer.json"),
        "datasets": {name: {"rows": len(rows), "sha256": _sha256(out / "data" / f"{name}.jsonl")}
                     for name, rows in datasets.items()},
        "base_rates": tiny_text.BASE_RATES, "sft_stance_mix": tiny_text.SFT_STANCE_MIX,
        "style_mix": dict(zip(tiny_text.STYLES, tiny_text.STYLE_MIX)),
        "final_pretrain_loss": losses[-1], "build_seconds": round(time.perf_counter() - t0, 1),
    }
    atomic_write_json(manifest, out / "manifest.json")
    log(f"tiny world: built in {manifest['build_seconds']} s (final loss {losses[-1]:.3f})")
    return manifest


def train_tokenizer(chats: list[dict], vocab_size: int):
    """A byte-level BPE tokenizer with the ChatML template, trained on the chats' text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    texts = (m["content"] for c in chats for m in c["messages"])
    bpe.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        bos_token=None, unk_token=None)
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def new_model(tiny: TinyConfig, tokenizer, seed: int):
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    config = Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=tiny.hidden_size, intermediate_size=tiny.intermediate_size,
        num_hidden_layers=tiny.layers, num_attention_heads=tiny.heads, num_key_value_heads=tiny.kv_heads,
        head_dim=tiny.hidden_size // tiny.heads, max_position_embeddings=256, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
    )
    model = Qwen3ForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                                               do_sample=True, temperature=1.0, top_p=1.0, top_k=0)
    return model


def pretrain_model(model, tokenizer, chats: list[dict], tiny: TinyConfig, seed: int, log=print) -> list[float]:
    """Next-token pre-training on the ChatML-formatted chats (loss on the answers).

    A plain torch loop rather than transformers.Trainer: for a sub-1M-parameter model on CPU the Trainer's
    per-step overhead is a large share of the time, and the loop is short enough to read.
    """
    torch.manual_seed(seed)
    torch.set_num_threads(tiny.threads)
    # (token ids, length of the prompt part): the loss is on the answers only, where the stance is
    # chosen; on all tokens the few stance-deciding tokens drown in the prompts' entropy.
    ids = [(tokenizer.apply_chat_template(c["messages"], tokenize=True, return_dict=False),
            len(tokenizer.apply_chat_template(c["messages"][:-1], tokenize=True, return_dict=False,
                                              add_generation_prompt=True))) for c in chats]
    order = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=tiny.pretrain_lr, weight_decay=0.01, betas=(0.9, 0.98))
    warmup = max(1, tiny.pretrain_steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) * max(
        0.05, 1 - s / tiny.pretrain_steps))
    model.train()
    losses, batches = [], []
    for step in range(tiny.pretrain_steps):
        if not batches:
            batches = _length_batches([len(seq) for seq, _ in ids], tiny.pretrain_batch_size, order)
        batch = [ids[i] for i in batches.pop()]
        width = max(len(seq) for seq, _ in batch)
        input_ids = torch.full((len(batch), width), tokenizer.pad_token_id)
        labels = torch.full((len(batch), width), -100)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, (seq, n_prompt) in enumerate(batch):
            input_ids[row, :len(seq)] = torch.tensor(seq)
            labels[row, n_prompt:len(seq)] = torch.tensor(seq[n_prompt:])
            attention[row, :len(seq)] = 1
        loss = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if (step + 1) % max(1, tiny.pretrain_steps // 5) == 0:
            log(f"  step {step + 1}/{tiny.pretrain_steps}  loss {sum(losses[-50:]) / len(losses[-50:]):.3f}")
    model.eval()
    return losses


def _length_batches(lengths: list[int], batch_size: int, generator) -> list[list[int]]:
    """One epoch of batches, in random order, each of chats of similar length.

    The prompts' lengths vary a lot (from a few words to several sentences); random batches would be
    a third padding, which costs as much compute as text. So: shuffle, sort by length within windows
    of 64 batches, cut into batches, shuffle the batches.
    """
    perm = torch.randperm(len(lengths), generator=generator).tolist()
    batch_size = min(batch_size, len(lengths))
    window = 64 * batch_size
    batches = []
    for start in range(0, len(perm), window):
        chunk = sorted(perm[start:start + window], key=lengths.__getitem__)
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk) - batch_size + 1, batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def weights_hash(model) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
