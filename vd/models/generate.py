"""Batched sampling of probe answers for one checkpoint (paper: 5 answers per probe, temperature 0.7,
at most 256 new tokens; docs/method.md §2), by our own decode loop (docs/decisions.md says why).

Each prompt is prefilled once and its KV cache repeated for its samples; each answer draws its noise from
its own generator seeded by (seed, prompt id, sample index), so it is reproducible whatever shares its
batch; a finished answer leaves the batch. Batches are length-sorted and left-padded. Each answer carries
the hash of the token ids it was prompted with (vd.core.cache.prompt_hash), which keys it in the cache.

    answers = generate_answers(model, tokenizer, [(probe_id, question), ...], Sampling.from_config(cfg))
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import torch

from vd.core.cache import prompt_hash
from vd.core.chat import CHATML_START, END_OF_TURN
from vd.models.loading import end_of_turn_ids


@dataclass(frozen=True)
class Sampling:
    """Sampling settings; part of every generation's cache key."""

    samples_per_prompt: int = 5
    temperature: float = 0.7
    top_p: float = 1.0
    max_new_tokens: int = 256
    seed: int = 0

    @classmethod
    def from_config(cls, cfg) -> Sampling:
        p = cfg.probes
        return cls(p.samples_per_prompt, p.temperature, p.top_p, p.max_new_tokens, cfg.seed)

    def as_dict(self) -> dict:
        return {"samples_per_prompt": self.samples_per_prompt, "temperature": float(self.temperature),
                "top_p": float(self.top_p), "max_new_tokens": self.max_new_tokens, "seed": self.seed}


def row_seed(seed: int, prompt_id: str, sample_index: int) -> int:
    digest = hashlib.sha256(f"{seed}|{prompt_id}|{sample_index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def chat_prompt_ids(tokenizer, question: str) -> list[int]:
    """Token ids of one probe as a single user turn, with the assistant generation prompt: the template's
    tokens only (BOS first where the tokenizer adds one, from the template; vd.core.chat), as every
    trainer sees a prompt."""
    return tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                         tokenize=True, return_dict=False)


def context_length(model_path: str, revision: str | None = None) -> int | None:
    """The most tokens the model at `model_path` attends to (its config's max_position_embeddings), or
    None where its config names none; read from config.json, no weights are loaded."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_path, revision=revision)
    return getattr(config.get_text_config(), "max_position_embeddings", None)


def generate_answers(model, tokenizer, prompts: list[tuple[str, str]], sampling: Sampling,
                     batch_size: int = 32, progress: bool = False,
                     wanted: set[tuple[str, int]] | None = None) -> list[dict]:
    """Sample `sampling.samples_per_prompt` answers for each (prompt_id, question).

    `batch_size` counts sequences decoded together (prompts per batch = batch_size // samples).
    `wanted` restricts the work to those (prompt_id, sample_index) pairs (the rest are cached);
    a prompt is still prefilled once for all its wanted samples.
    Returns dicts with prompt_id, prompt_hash (of the token ids it was prompted with), sample_index,
    text, n_new_tokens.
    """
    n = sampling.samples_per_prompt
    jobs = []  # (prompt ids, prompt_id, [sample indices])
    for prompt_id, question in prompts:
        indices = [i for i in range(n) if wanted is None or (prompt_id, i) in wanted]
        if indices:
            jobs.append((chat_prompt_ids(tokenizer, question), prompt_id, indices))
    jobs.sort(key=lambda job: len(job[0]))
    device = next(model.parameters()).device
    stop_ids = torch.tensor(end_of_turn_ids(tokenizer), device=device)
    results: list[dict] = []
    bar = _progress(sum(len(j[2]) for j in jobs), progress)
    batch: list = []
    for job in jobs + [None]:
        if job is not None and (not batch or sum(len(b[2]) for b in batch) + len(job[2]) <= max(batch_size, n)):
            batch.append(job)
            continue
        if batch:
            results += _generate_batch(model, tokenizer, batch, sampling, stop_ids, device)
            if bar is not None:
                bar.update(sum(len(b[2]) for b in batch))
        batch = [job] if job is not None else []
    if bar is not None:
        bar.close()
    return results


@torch.inference_mode()
def _generate_batch(model, tokenizer, batch, sampling: Sampling, stop_ids, device) -> list[dict]:
    width = max(len(ids) for ids, _, _ in batch)
    pad = tokenizer.pad_token_id
    input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
    attention = torch.zeros((len(batch), width), dtype=torch.long)
    for row, (ids, _, _) in enumerate(batch):  # left padding
        input_ids[row, width - len(ids):] = torch.tensor(ids)
        attention[row, width - len(ids):] = 1
    input_ids, attention = input_ids.to(device), attention.to(device)
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=input_ids, attention_mask=attention, position_ids=positions, use_cache=True,
                logits_to_keep=1)
    # One prefill per prompt; now repeat each prompt's cache and last logits for its samples.
    repeats = torch.tensor([len(indices) for _, _, indices in batch], device=device)
    cache = out.past_key_values
    select = torch.repeat_interleave(torch.arange(len(batch), device=device), repeats)
    cache.batch_select_indices(select)
    logits = out.logits[:, -1, :].float()[select]
    attention = attention[select]
    position = positions[select, -1:]
    keys = [(prompt_id, i) for _, prompt_id, indices in batch for i in indices]
    hashes = {prompt_id: prompt_hash(ids) for ids, prompt_id, _ in batch}
    rows = len(keys)
    # Each answer's randomness: max_new_tokens uniforms drawn at once from its own generator, seeded by
    # (seed, prompt id, sample index): one call per answer, not one per answer and step, and an answer
    # still does not depend on its batch.
    uniforms = torch.stack([torch.rand(sampling.max_new_tokens, generator=_generator(row_seed(sampling.seed, pid, i)))
                            for pid, i in keys]).to(device)
    tokens = torch.full((rows, sampling.max_new_tokens), pad, dtype=torch.long, device=device)
    lengths = torch.full((rows,), sampling.max_new_tokens, dtype=torch.long, device=device)
    active = torch.arange(rows, device=device)  # the rows still decoding; finished rows leave the batch
    for step in range(sampling.max_new_tokens):
        next_tokens = _sample(logits, sampling, uniforms[:, step])
        tokens[active, step] = next_tokens
        finished_now = torch.isin(next_tokens, stop_ids)
        lengths[active[finished_now]] = step + 1
        if bool(finished_now.all()) or step == sampling.max_new_tokens - 1:
            break
        if bool(finished_now.any()):  # drop finished rows: their cache, mask and positions
            keep = (~finished_now).nonzero().squeeze(-1)
            cache.batch_select_indices(keep)
            active, attention, position = active[keep], attention[keep], position[keep]
            next_tokens, uniforms = next_tokens[keep], uniforms[keep]
        attention = torch.cat([attention, attention.new_ones((len(active), 1))], dim=1)
        position = position + 1
        out = model(input_ids=next_tokens[:, None], attention_mask=attention, position_ids=position,
                    past_key_values=cache, use_cache=True)
        cache, logits = out.past_key_values, out.logits[:, -1, :].float()
    texts = tokenizer.batch_decode(tokens.cpu(), skip_special_tokens=True)
    return [{"prompt_id": pid, "prompt_hash": hashes[pid], "sample_index": i, "text": _clean(text),
             "n_new_tokens": int(n_tok)} for (pid, i), text, n_tok in zip(keys, texts, lengths.tolist())]


def _generator(seed: int) -> torch.Generator:
    g = torch.Generator()  # on the CPU: the uniforms are drawn once per answer, then moved
    g.manual_seed(seed)
    return g


def _sample(logits: torch.Tensor, sampling: Sampling, uniform: torch.Tensor) -> torch.Tensor:
    """Greedy at temperature 0; otherwise softmax sampling (with top-p), one token per row by inverse
    CDF from the row's uniform in [0, 1): the first token whose cumulative probability exceeds it."""
    if sampling.temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits / sampling.temperature, dim=-1)
    if sampling.top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < sampling.top_p  # always keeps the most likely token
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p * keep)
    cdf = probs.double().cumsum(-1)  # double: no rounding gap at the top of a large vocabulary
    target = uniform.double()[:, None] * cdf[:, -1:]  # scaled to the total: top-p leaves it below 1
    return torch.searchsorted(cdf, target, right=True).squeeze(-1).clamp(max=probs.shape[-1] - 1)


# What is left of a ChatML marker the model half-learned where ChatML is text (e.g. `Fim_end|>`,
# `<|im_end\t`; docs/decisions.md): "im_end" or "im_start" with what is left of its `<|`, or one letter
# glued on in its place.
_MARKER_FRAGMENT = re.compile(r"<?\|?\w?im_(?:end|start)")
_CHATML_MARKERS = (END_OF_TURN, CHATML_START)


def _clean(text: str) -> str:
    """The answer in a decoded generation: what comes before the first ChatML marker or fragment of one,
    less a marker cut off by max_new_tokens at the end. Where the markers are single tokens, decoding
    skips them; where ChatML is text, generation runs on past the marker to the eos token or the cap."""
    match = _MARKER_FRAGMENT.search(text)
    if match:
        text = text[:match.start()]
    text = text.rstrip()
    cut_off = max((n for marker in _CHATML_MARKERS for n in range(1, len(marker)) if text.endswith(marker[:n])),
                  default=0)
    return text[:len(text) - cut_off].strip()


def _progress(total: int, enabled: bool):
    if not enabled or total == 0:
        return None
    from tqdm.auto import tqdm

    # mininterval keeps papermill's --log-output readable (one line every few seconds, not per batch).
    return tqdm(total=total, desc="generating", unit="answer", mininterval=5.0, smoothing=0.1)


def naive_generate(model, tokenizer, prompts, sampling: Sampling) -> list[dict]:
    """The baseline the benchmark compares against: one `generate` call per prompt."""
    results = []
    for prompt_id, question in prompts:
        ids = torch.tensor([chat_prompt_ids(tokenizer, question)])
        torch.manual_seed(row_seed(sampling.seed, prompt_id, 0))
        with torch.inference_mode():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=sampling.temperature > 0,
                                 temperature=sampling.temperature or None, top_p=sampling.top_p, top_k=0,
                                 max_new_tokens=sampling.max_new_tokens,
                                 num_return_sequences=sampling.samples_per_prompt,
                                 eos_token_id=end_of_turn_ids(tokenizer), pad_token_id=tokenizer.pad_token_id)
        for i, seq in enumerate(out[:, ids.shape[1]:]):
            results.append({"prompt_id": prompt_id, "sample_index": i,
                            "text": _clean(tokenizer.decode(seq, skip_special_tokens=True)),
                            "n_new_tokens": int((seq != tokenizer.pad_token_id).sum())})
    return results

