"""Policy fit of preference (or SFT) data: how likely a policy finds the answers it is trained on,
beside how likely it finds its own answers (docs/method.md §7; ours, not the paper's).

A trainer can separate pairs written in a way the policy never writes without moving what the policy
says; this table shows where a data set sits, per token, against the policy's own answers, and warns
(OffPolicyWarning) where it sits far off (the thresholds: docs/method.md §7, docs/decisions.md).

    table = policy_fit(model, tokenizer, {"synthetic-oppose": rows}, own=own_answers)
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from vd.core.chat import END_OF_TURN, end_of_turn_ids
from vd.models.generate import Sampling, chat_prompt_ids, generate_answers

log = logging.getLogger(__name__)

FAR_OFF_NATS = 2.0  # ours: a side more than this far below the policy's own answers (per token) warns
NEAR_NATS = 0.5  # ours: within this of the policy's own answers, the data are "on policy"
POLICY = "policy"  # the `data` name of the policy's own answers in the table
# Memory bounds (ours; docs/method.md §7): what a preference trainer sees of a pair at the real sizes'
# max_length; padded tokens per forward; answer positions whose logits exist at once (1024 x a 152k
# vocabulary: 0.6 GB in fp32)
MAX_LENGTH = 1024
MAX_BATCH_TOKENS = 8192
LOGIT_CHUNK = 1024


class OffPolicyWarning(UserWarning):
    """A data set's answers sit far below the policy's own answers in per-token log-probability."""


# ----------------------------------------------------------------------------- tokenising
def _prompt_messages(prompt) -> list[dict]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return list(prompt)


def _answer_message(answer) -> dict:
    if isinstance(answer, str):
        return {"role": "assistant", "content": answer}
    if isinstance(answer, Mapping):
        return dict(answer)
    answer = list(answer)
    if len(answer) != 1:
        raise ValueError(f"an answer must be one assistant message, got {len(answer)} messages")
    return dict(answer[0])


def encode_pair(tokenizer, prompt, answer) -> tuple[list[int], list[int]]:
    """(prompt ids, answer ids) of one prompt (a question or a list of messages) and one answer (its text
    or its assistant message), tokenised as probing tokenises them.

    The prompt: `vd.models.generate.chat_prompt_ids` for a single user turn (what the probes are), else the
    chat template over its messages with the generation prompt. The answer: what the chat template writes
    after that prompt for the assistant turn, through its end-of-turn token (the template's text after it,
    e.g. ChatML's newline, is not part of the answer: generation stops at the end-of-turn token).
    """
    messages = _prompt_messages(prompt)
    if len(messages) == 1 and messages[0].get("role") == "user":
        prompt_ids = chat_prompt_ids(tokenizer, messages[0]["content"])
    else:
        prompt_ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                   return_dict=False)
    message = _answer_message(answer)
    full = tokenizer.apply_chat_template(messages + [message], tokenize=True, return_dict=False)
    stops = set(end_of_turn_ids(tokenizer))
    if list(full[:len(prompt_ids)]) == list(prompt_ids):
        rest = list(full[len(prompt_ids):])
    else:  # the template tokenises the turn boundary otherwise: the answer's text and the end of turn alone
        log.info("chat template does not extend the generation prompt token by token; encoding the answer alone")
        rest = tokenizer.encode(message["content"] + END_OF_TURN, add_special_tokens=False)
    end = next((i for i, t in enumerate(rest) if t in stops), None)
    if end is None:  # the end-of-turn marker is not a token here (Llama-3 base with ChatML as text)
        marker = tokenizer.encode(END_OF_TURN, add_special_tokens=False)
        end = next((i + len(marker) - 1 for i in range(len(rest) - len(marker) + 1)
                    if rest[i:i + len(marker)] == marker), len(rest) - 1)
    answer_ids = rest[:end + 1]
    if not answer_ids:
        raise ValueError("empty answer after tokenisation")
    return list(prompt_ids), answer_ids


# ----------------------------------------------------------------------------- scoring
def _batches(lengths: Sequence[int], batch_size: int, max_batch_tokens: int) -> list[list[int]]:
    """Indices in length-sorted batches of at most `batch_size` rows and `max_batch_tokens` padded tokens
    (rows x the batch's longest sequence); a sequence longer than that budget goes alone."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches and len(batches[-1]) < batch_size and (len(batches[-1]) + 1) * lengths[i] <= max_batch_tokens:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def answer_logprobs(model, tokenizer, pairs: Sequence[tuple], batch_size: int = 32, max_length: int = MAX_LENGTH,
                    max_batch_tokens: int = MAX_BATCH_TOKENS, logit_chunk: int = LOGIT_CHUNK) -> pd.DataFrame:
    """Per (prompt, answer) pair: the summed and mean per-token log-probability (nats) of the answer's
    tokens (end-of-turn included) under `model`, and its token count.

    Bounded memory, whatever the answers' lengths: a pair longer than `max_length` tokens is scored on the
    answer's first max_length - prompt tokens (`truncated`; a prompt of max_length tokens or more leaves
    nothing to score: `dropped`, NaN); batches are length-sorted, left-padded with position ids as the
    probe generator does (padding changes nothing but float rounding), and hold at most `batch_size` rows
    and `max_batch_tokens` padded tokens; the decoder's last hidden states of the answer tokens go through
    the output layer `logit_chunk` positions at a time, each chunk's log-probabilities taken as the target's
    logit minus the logsumexp (fp32), so no batch-sized logits tensor is ever made. Under inference_mode.
    Returns columns sum_logprob, n_tokens, mean_logprob, truncated, dropped, in the order of `pairs`.
    """
    encoded = [encode_pair(tokenizer, p, a) for p, a in pairs]
    sums = np.full(len(encoded), np.nan)
    counts = np.zeros(len(encoded), dtype=np.int64)
    truncated = np.zeros(len(encoded), dtype=bool)
    dropped = np.array([len(prompt) >= max_length for prompt, _ in encoded])
    kept = [i for i in range(len(encoded)) if not dropped[i]]
    for i in kept:
        prompt, answer = encoded[i]
        truncated[i] = len(prompt) + len(answer) > max_length
        encoded[i] = (prompt, answer[:max_length - len(prompt)])
    decoder, head = _decoder_and_head(model)
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            lengths = [sum(map(len, encoded[i])) for i in kept]
            for batch in _batches(lengths, max(1, batch_size), max_batch_tokens):
                idx = [kept[b] for b in batch]
                seqs = [encoded[i][0] + encoded[i][1] for i in idx]
                width = max(map(len, seqs))
                input_ids = torch.full((len(idx), width), pad, dtype=torch.long)
                attention = torch.zeros((len(idx), width), dtype=torch.long)
                for row, seq in enumerate(seqs):  # left padding: every answer ends at the last column
                    input_ids[row, width - len(seq):] = torch.tensor(seq)
                    attention[row, width - len(seq):] = 1
                positions = (attention.cumsum(-1) - 1).clamp(min=0)
                hidden = decoder(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                                 position_ids=positions.to(device)).last_hidden_state
                # the hidden state at column c predicts the token at c + 1: answer tokens' predictors only
                n_ans = [len(encoded[i][1]) for i in idx]
                rows = torch.cat([torch.full((n,), r) for r, n in enumerate(n_ans)])
                columns = torch.cat([torch.arange(width - n, width) for n in n_ans])
                token_logp = torch.cat([
                    _chunk_logprobs(head, hidden[rows[k:k + logit_chunk], columns[k:k + logit_chunk] - 1],
                                    input_ids[rows[k:k + logit_chunk], columns[k:k + logit_chunk]].to(device))
                    for k in range(0, len(rows), max(1, logit_chunk))])
                row_sums = torch.zeros(len(idx), dtype=torch.float64).index_add_(0, rows, token_logp.double().cpu())
                for row, i in enumerate(idx):
                    sums[i], counts[i] = row_sums[row].item(), n_ans[row]
    finally:
        model.train(was_training)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts
    return pd.DataFrame({"sum_logprob": sums, "n_tokens": counts, "mean_logprob": means,
                         "truncated": truncated, "dropped": dropped})


def _decoder_and_head(model):
    """The decoder (whose last hidden states the output layer turns into logits) and the output layer of a
    causal LM, PEFT-wrapped or not. Models that rescale or cap their logits are refused: the chunked
    log-softmax applies the output layer alone."""
    config = getattr(model, "config", None)
    if any(getattr(config, k, None) for k in ("final_logit_softcapping", "logit_scale")):
        raise ValueError(f"policy fit: {type(model).__name__} rescales its logits; vd.score.policy_fit applies the "
                         "output layer alone")
    try:
        return model.get_decoder(), model.get_output_embeddings()
    except (AttributeError, NotImplementedError) as e:
        raise TypeError(f"policy fit needs a causal LM with get_decoder() and get_output_embeddings(): {e}") from None


def _chunk_logprobs(head, hidden, targets) -> torch.Tensor:
    """log p(target) for each (hidden state, target) row: the target's logit minus the logsumexp, in fp32."""
    logits = head(hidden).float()
    return logits.gather(-1, targets[:, None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def sample_answers(model, tokenizer, questions: Sequence[str], sampling: Sampling | None = None,
                   batch_size: int = 256) -> list[tuple[str, str]]:
    """(question, answer) pairs the policy samples itself, with the probe generator (`vd.models.generate`).

    Default sampling: temperature 1.0 (the policy's own distribution, which is what the data are
    compared with), 2 answers per question, at most 64 new tokens. An answer cut off at the token limit
    is left out (its end-of-turn token was never written, so it is not a whole answer of the policy's).
    """
    sampling = sampling or Sampling(samples_per_prompt=2, temperature=1.0, max_new_tokens=64, seed=0)
    prompts = [(f"q{i}", q) for i, q in enumerate(questions)]
    rows = generate_answers(model, tokenizer, prompts, sampling, batch_size=batch_size)
    by_id = dict(prompts)
    return [(by_id[r["prompt_id"]], r["text"]) for r in rows
            if r["text"] and r["n_new_tokens"] < sampling.max_new_tokens]


def _pairs(rows: Iterable[dict]) -> dict[str, list[tuple]]:
    """Preference rows -> {"chosen": pairs, "rejected": pairs}; SFT rows -> {"answer": pairs}."""
    sides: dict[str, list[tuple]] = {}
    for r in rows:
        if "chosen" in r and "rejected" in r:
            for side in ("chosen", "rejected"):
                sides.setdefault(side, []).append((r["prompt"], r[side]))
        elif "messages" in r:
            msgs = list(r["messages"])
            if not msgs or msgs[-1].get("role") != "assistant":
                raise ValueError("an SFT row's last message must be the assistant's answer")
            sides.setdefault("answer", []).append((msgs[:-1], msgs[-1]))
        else:
            raise ValueError(f"a row needs prompt/chosen/rejected or messages, got keys {sorted(r)}")
    return sides


def policy_fit(model, tokenizer, datasets: Mapping[str, Sequence[dict]] | Sequence[dict],
               own: Sequence[tuple[str, str]] | None = None, questions: Sequence[str] | None = None,
               sampling: Sampling | None = None, far_off_nats: float = FAR_OFF_NATS, near_nats: float = NEAR_NATS,
               batch_size: int = 32, warn: bool = True, max_length: int = MAX_LENGTH) -> pd.DataFrame:
    """Policy fit of data sets under a policy (docs/method.md §7): one row per data set and side.

    datasets: {name: rows} (or one list of rows, named "data"); rows in the schema of vd.data: preference
    rows ``{"prompt": [msgs], "chosen": [msg], "rejected": [msg]}`` or SFT rows ``{"messages": [...]}``.
    own: the policy's own (question, answer) pairs; else they are sampled (`sample_answers`) for
    `questions`, or, without those, for the data sets' own prompts (single user turns only).

    Columns: data, side, n, mean_logprob (mean over answers of the per-answer mean per-token
    log-probability), sem, mean_tokens, truncated and dropped (answers scored on their first tokens only, and
    answers left out, by `max_length`: answer_logprobs), gap (mean_logprob minus the policy row's), verdict
    ("own answers", "on policy", "off policy", "far off policy"), far_off. Warns (`OffPolicyWarning`, and the log) for
    each side that is far off policy.
    """
    if not isinstance(datasets, Mapping):
        datasets = {"data": datasets}
    sides = {name: _pairs(rows) for name, rows in datasets.items()}
    if own is None:
        if questions is None:
            questions = list(dict.fromkeys(
                p[0]["content"] if not isinstance(p, str) else p
                for by_side in sides.values() for pairs in by_side.values() for p, _ in pairs
                if isinstance(p, str) or (len(p) == 1 and p[0].get("role") == "user")))
        own = sample_answers(model, tokenizer, list(questions), sampling)
    if not own:
        raise ValueError("no answers of the policy's own to compare with")
    rows = [_summary(POLICY, "own", answer_logprobs(model, tokenizer, list(own), batch_size, max_length))]
    for name, by_side in sides.items():
        for side, pairs in by_side.items():
            rows.append(_summary(name, side, answer_logprobs(model, tokenizer, pairs, batch_size, max_length)))
    table = pd.DataFrame(rows)
    base = float(table["mean_logprob"].iloc[0])
    table["gap"] = table["mean_logprob"] - base
    table["verdict"] = [verdict(g, far_off_nats, near_nats) if d != POLICY else "own answers"
                        for d, g in zip(table["data"], table["gap"])]
    table["far_off"] = table["verdict"] == "far off policy"
    for r in table[table["far_off"]].itertuples():
        message = (f"{r.data} ({r.side}): mean per-token log-prob {r.mean_logprob:.2f} nats, {-r.gap:.2f} below the "
                   f"policy's own answers ({base:.2f}; threshold {far_off_nats:g}): a trainer can separate these "
                   "answers without moving what the policy says (vd.score.policy_fit)")
        log.warning(message)
        if warn:
            warnings.warn(message, OffPolicyWarning, stacklevel=2)
    return table


def verdict(gap: float, far_off_nats: float = FAR_OFF_NATS, near_nats: float = NEAR_NATS) -> str:
    if not math.isfinite(gap):
        return "unknown"
    if gap < -far_off_nats:
        return "far off policy"
    if gap < -near_nats:
        return "off policy"
    return "on policy"


def _summary(data: str, side: str, scores: pd.DataFrame) -> dict:
    scored = scores[~scores["dropped"]]
    x = scored["mean_logprob"].to_numpy()
    return {"data": data, "side": side, "n": len(x), "mean_logprob": float(x.mean()) if len(x) else float("nan"),
            "sem": float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else float("nan"),
            "mean_tokens": float(scored["n_tokens"].mean()) if len(x) else float("nan"),
            "truncated": int(scores["truncated"].sum()), "dropped": int(scores["dropped"].sum())}


__all__ = ["FAR_OFF_NATS", "NEAR_NATS", "OffPolicyWarning", "answer_logprobs", "encode_pair", "policy_fit",
           "sample_answers", "verdict"]
