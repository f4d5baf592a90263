"""Stance judges: p(support, neutral, oppose | question, answer, topic).

The paper (arXiv 2510.26707, §3) judged each (prompt x, response y, topic T) with GPT-4o and read the
**log-probabilities of the three label choices, softmaxed over those three**: a graded readout, not a
vote. Every judge here returns that kind of probability vector, ordered as vd.stances.STANCES:

- OpenAIJudge: any OpenAI-compatible chat endpoint (OpenAI, a local vLLM or llama.cpp server) with
  logprobs; the paper's setting is model="gpt-4o".
- HFJudge: a local instruction model; reads the next-token logits of the three label tokens.
- LexiconJudge: the tiny world's judge; counts vd.stances.STANCE_PHRASES.

A judge never raises for one bad item: the item comes back with status "failed", p = (nan, nan, nan)
and an error message; downstream code drops (and counts) failed items.
The judge prompt, the item/judgment types and the logprob readout live in vd.judge_prompt (the prompt
is ours; the paper's wording is not public) and are re-exported here.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import math
import os
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from http import HTTPStatus
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

from tqdm.auto import tqdm

from vd.judge_prompt import (  # noqa: F401  (re-exported: the types and the readout live there)
    JUDGE_PROMPTS, NAN3, JudgeItem, Judgment, _failed, _softmax3, judge_messages, label_of_token,
    probs_from_top_logprobs, readout_from_completion)
from vd.stances import STANCE_PHRASES, STANCES

log = logging.getLogger(__name__)

JUDGE_KINDS = ("openai", "hf", "lexicon")
OnResult = Callable[[int, "Judgment"], None]


@runtime_checkable
class Judge(Protocol):
    key: str  # kind + model + prompt version: the cache key of this judge

    def judge(self, items: Sequence[JudgeItem], progress: bool = False,
              on_result: OnResult | None = None) -> list[Judgment]:
        """One Judgment per item, in input order; on_result(index, judgment) as each one arrives."""
        ...


def _progress_bar(total: int, desc: str, enabled: bool):
    # mininterval >= 1 s: papermill --log-output writes every refresh as a log line.
    return tqdm(total=total, desc=desc, disable=not enabled, mininterval=1.0, dynamic_ncols=True)


# ------------------------------------------------------------------------------------ OpenAI API


def _retry_after_s(headers: Any) -> float | None:
    """Seconds a 429 asks us to wait (retry-after-ms or retry-after in seconds), if it says."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        try:
            return float(headers.get(name, "")) / scale
        except (TypeError, ValueError):
            continue
    return None


class OpenAIJudge:
    """Stance judge on an OpenAI-compatible chat endpoint, read from the label logprobs.

    Sends one request per item: the vd.judge_prompt messages, max_tokens=1 (the field every
    OpenAI-compatible server knows: OpenAI's chat models, vLLM, llama.cpp), temperature 0,
    logprobs=True, top_logprobs=k. The key comes from OPENAI_API_KEY only; with base_url set and no
    key, "EMPTY" is sent (a local server without auth). The key never appears in `key`, repr,
    log lines or error messages.

    Retries are ours (the client's own are off): 429, 5xx, timeouts and connection errors are retried
    up to max_retries times with exponential backoff and seeded jitter (a 429's Retry-After is
    honoured, capped at backoff_max_s); any other 4xx fails at once. An item that still fails comes
    back with status "failed" and the error, never raised, never dropped. `stats` counts requests,
    retries and failed items (cumulative over calls).
    """

    kind = "openai"

    def __init__(self, model: str = "gpt-4o", base_url: str | None = None, prompt_version: str = "v1",
                 max_concurrency: int = 8, max_retries: int = 5, timeout_s: float = 60,
                 backoff_base_s: float = 1.0, backoff_max_s: float = 30, top_logprobs: int = 5,
                 seed: int = 0):
        if prompt_version not in JUDGE_PROMPTS:
            raise ValueError(f"unknown judge prompt_version {prompt_version!r}; known: {sorted(JUDGE_PROMPTS)}")
        if max_concurrency < 1 or max_retries < 0 or timeout_s <= 0 or not 0 <= top_logprobs <= 20:
            raise ValueError("OpenAIJudge needs max_concurrency >= 1, max_retries >= 0, timeout_s > 0, "
                             "0 <= top_logprobs <= 20")
        api_key = os.environ.get("OPENAI_API_KEY") or None
        if api_key is None:
            if base_url is None:
                raise RuntimeError(
                    "OpenAIJudge: the environment variable OPENAI_API_KEY is not set. Set it to use the "
                    "OpenAI API, or pass base_url=... for a local OpenAI-compatible server (vLLM, llama.cpp).")
            api_key = "EMPTY"
        import openai  # lazy: the lexicon path never needs it

        self.model, self.base_url, self.prompt_version = model, base_url, prompt_version
        self.max_concurrency, self.max_retries, self.timeout_s = max_concurrency, max_retries, timeout_s
        self.backoff_base_s, self.backoff_max_s, self.top_logprobs = backoff_base_s, backoff_max_s, top_logprobs
        self.key = f"openai:{model}:{prompt_version}"
        self.stats = {"requests": 0, "retries": 0, "failed": 0}
        self._secret = api_key if api_key != "EMPTY" else None  # only used to redact messages
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._client = openai.OpenAI(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout_s)

    def __repr__(self) -> str:
        return (f"OpenAIJudge(model={self.model!r}, base_url={self.base_url!r}, "
                f"prompt_version={self.prompt_version!r}, max_concurrency={self.max_concurrency}, "
                f"max_retries={self.max_retries}, timeout_s={self.timeout_s})")

    def _redact(self, msg: str) -> str:
        if self._secret:
            msg = msg.replace(self._secret, "***")
        return msg

    def _count(self, name: str) -> None:
        with self._lock:
            self.stats[name] += 1

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        delay = min(self.backoff_max_s, self.backoff_base_s * 2 ** attempt)
        with self._lock:
            delay *= 0.5 + 0.5 * self._rng.random()  # jitter: spread out threads that failed together
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff_max_s))
        return delay

    def judge_one(self, item: JudgeItem) -> Judgment:
        """One item, with retries. Never raises for API errors: returns status "failed" instead."""
        import openai

        messages = judge_messages(item.question, item.answer, item.topic, self.prompt_version)
        error = "no attempt made"
        for attempt in range(self.max_retries + 1):
            retry_after = None
            self._count("requests")
            try:
                completion = self._client.chat.completions.create(
                    model=self.model, messages=messages, max_tokens=1, temperature=0,
                    logprobs=True, top_logprobs=self.top_logprobs)
            except openai.APITimeoutError:
                error, retryable = f"timeout: no response within {self.timeout_s} s", True
            except openai.APIConnectionError as e:
                error, retryable = f"connection error: {e.message}", True
            except openai.APIStatusError as e:
                code = e.status_code
                reason = re.sub(r"^Error code: \d+( - )?", "", e.message or "").strip()
                try:
                    reason = reason or HTTPStatus(code).phrase
                except ValueError:
                    pass
                error = f"HTTP {code}: {reason[:120]}"
                retryable = code == 429 or code >= 500
                if code == 429:
                    retry_after = _retry_after_s(e.response.headers)
            except openai.OpenAIError as e:  # e.g. a response that is not a chat completion
                error, retryable = f"{type(e).__name__}: {str(e)[:120]}", False
            else:
                try:
                    return readout_from_completion(completion)
                except (AttributeError, IndexError, TypeError) as e:
                    error, retryable = f"malformed completion: {type(e).__name__}: {str(e)[:100]}", False
            if not retryable:
                break
            if attempt < self.max_retries:
                self._count("retries")
                time.sleep(self._backoff(attempt, retry_after))
        else:
            error = f"{error} (gave up after {self.max_retries + 1} attempts)"
        error = self._redact(error)
        self._count("failed")
        log.debug("judge item failed: %s", error)
        return _failed(error)

    def judge(self, items: Sequence[JudgeItem], progress: bool = False,
              on_result: OnResult | None = None) -> list[Judgment]:
        """Judge all items with at most max_concurrency requests in flight; results in input order.

        on_result(index, judgment) is called in the calling thread as each result arrives (so a
        caller can store it at once, e.g. in SQLite, and an interrupted run loses nothing).
        """
        results: list[Judgment | None] = [None] * len(items)
        if not items:
            return []
        workers = min(self.max_concurrency, len(items))
        bar = _progress_bar(len(items), f"judge {self.model}", progress)
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vd-judge")
        try:
            futures = {pool.submit(self.judge_one, it): i for i, it in enumerate(items)}
            for fut in as_completed(futures):
                i = futures[fut]
                results[i] = fut.result()
                if on_result is not None:
                    on_result(i, results[i])
                bar.update(1)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            bar.close()
        failed = [r for r in results if r is not None and r.status == "failed"]
        if failed:  # one line per call, not per item: a papermill log stays readable
            log.warning("%s: %d of %d items failed; first error: %s", self.key, len(failed), len(items),
                        failed[0].error)
        return results  # type: ignore[return-value]


# ------------------------------------------------------------------------------- local HF model


class HFJudge:
    """Stance judge on a local instruction model (e.g. Qwen/Qwen2.5-7B-Instruct): the same prompt
    through the tokenizer's chat template, softmax over the next-token logits of the three labels.

    Label tokens: for each label, the first token the tokenizer produces for it right after the
    generation prompt (so whether the reply starts after "\\n" or a space is the template's business),
    in lower case and capitalised ("support", "Support"); a label's logit is the max over its
    spellings (as in the API readout). The labels' token sets must be disjoint, else ValueError.
    Takes a model name/path, or an already-loaded (model, tokenizer) pair.
    """

    kind = "hf"

    def __init__(self, model_name_or_path: str | tuple[Any, Any], prompt_version: str = "v1",
                 batch_size: int = 16, device: str | None = None, dtype: Any = None, name: str | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if prompt_version not in JUDGE_PROMPTS:
            raise ValueError(f"unknown judge prompt_version {prompt_version!r}; known: {sorted(JUDGE_PROMPTS)}")
        if isinstance(model_name_or_path, (tuple, list)):
            model, tok = model_name_or_path
            if device is not None:
                model = model.to(device)
        else:
            if device is None:
                device = "cuda" if torch.cuda.is_available() else "cpu"
            if isinstance(dtype, str):
                dtype = getattr(torch, dtype)
            if dtype is None:
                dtype = ((torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
                         if str(device).startswith("cuda") else torch.float32)
            tok = AutoTokenizer.from_pretrained(model_name_or_path)
            model = AutoModelForCausalLM.from_pretrained(model_name_or_path, dtype=dtype).to(device)
        model.eval()
        tok.padding_side = "left"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        self.model, self.tokenizer = model, tok
        self.prompt_version, self.batch_size = prompt_version, batch_size
        self.name = name or (model_name_or_path if isinstance(model_name_or_path, str)
                             else getattr(model, "name_or_path", "") or type(model).__name__)
        self.key = f"hf:{self.name}:{prompt_version}"
        self.label_token_ids = self._label_token_ids()
        self._keeps_logits = "logits_to_keep" in inspect.signature(model.forward).parameters

    def __repr__(self) -> str:
        return f"HFJudge(name={self.name!r}, prompt_version={self.prompt_version!r}, batch_size={self.batch_size})"

    def _prompt(self, item: JudgeItem) -> str:
        messages = judge_messages(item.question, item.answer, item.topic, self.prompt_version)
        kw = dict(tokenize=False, add_generation_prompt=True, enable_thinking=False)
        try:
            return self.tokenizer.apply_chat_template(messages, **kw)
        except Exception:  # templates without a system role (e.g. Gemma): fold it into the user turn
            merged = [{"role": "user", "content": messages[0]["content"] + "\n\n" + messages[1]["content"]}]
            return self.tokenizer.apply_chat_template(merged, **kw)

    def _label_token_ids(self) -> tuple[tuple[int, ...], ...]:
        prompt = self._prompt(JudgeItem("Q?", "A.", "immigration"))
        base = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        out = []
        for s in STANCES:
            ids = set()
            for word in (s, s.capitalize()):
                full = self.tokenizer(prompt + word, add_special_tokens=False)["input_ids"]
                if full[:len(base)] == base and len(full) > len(base):
                    ids.add(full[len(base)])
                else:  # the label merged with the end of the prompt: fall back to the bare word
                    ids.add(self.tokenizer(word, add_special_tokens=False)["input_ids"][0])
            out.append(tuple(sorted(ids)))
        flat = [i for ids in out for i in ids]
        if len(flat) != len(set(flat)):
            shown = {s: [self.tokenizer.decode([i]) for i in ids] for s, ids in zip(STANCES, out)}
            raise ValueError(f"HFJudge: the three labels do not start with distinct tokens under this "
                             f"tokenizer ({shown}); the logit readout needs distinct first tokens")
        return tuple(out)

    def _judge_batch(self, items: Sequence[JudgeItem]) -> list[Judgment]:
        import torch

        enc = self.tokenizer([self._prompt(it) for it in items], add_special_tokens=False,
                             padding=True, return_tensors="pt")
        device = next(self.model.parameters()).device
        ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
        # Left padding: positions must count real tokens only, so a batched row equals the row alone.
        pos = (mask.long().cumsum(-1) - 1).clamp(min=0)
        kw = {"logits_to_keep": 1} if self._keeps_logits else {}  # no (batch, seq, vocab) tensor
        with torch.inference_mode():
            logits = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, **kw).logits[:, -1, :].float()
        out = []
        for row in logits:
            x = [max(row[i].item() for i in ids_) for ids_ in self.label_token_ids]
            if not all(math.isfinite(v) for v in x):
                out.append(_failed(f"non-finite label logits: {x}"))
            else:
                out.append(Judgment(_softmax3(x), "ok"))
        return out

    def judge(self, items: Sequence[JudgeItem], progress: bool = False,
              on_result: OnResult | None = None) -> list[Judgment]:
        """Batched; items are grouped by prompt length to save padding; results in input order."""
        order = sorted(range(len(items)), key=lambda i: len(items[i].question) + len(items[i].answer))
        results: list[Judgment | None] = [None] * len(items)
        with _progress_bar(len(items), f"judge {self.name}", progress) as bar:
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                for i, j in zip(idx, self._judge_batch([items[i] for i in idx])):
                    results[i] = j
                    if on_result is not None:
                        on_result(i, j)
                bar.update(len(idx))
        return results  # type: ignore[return-value]


# ------------------------------------------------------------------------------------- lexicon


def _norm_text(text: str) -> str:
    return " ".join(text.lower().split())


class LexiconJudge:
    """The tiny world's judge: counts the vd.stances.STANCE_PHRASES in the answer.

    p_s = (count_s + smoothing) / (total + 3 * smoothing), counts over the lower-cased,
    whitespace-normalised answer. An answer with no stance phrase at all takes no stance, which is
    neutral by the paper's rule: it is read as counts (0, 1, 0) with the same smoothing (status "ok").
    The question and topic are not read. Deterministic and fast.
    """

    kind = "lexicon"

    def __init__(self, smoothing: float = 0.1):
        if smoothing < 0:
            raise ValueError("LexiconJudge: smoothing must be >= 0")
        self.smoothing = smoothing
        self.phrases = {s: tuple(_norm_text(p) for p in STANCE_PHRASES[s]) for s in STANCES}
        digest = hashlib.sha1(repr(sorted(self.phrases.items())).encode()).hexdigest()[:8]
        self.key = f"lexicon:phrases-{digest}:smoothing={smoothing:g}"

    def __repr__(self) -> str:
        return f"LexiconJudge(smoothing={self.smoothing})"

    def counts(self, answer: str) -> tuple[int, int, int]:
        text = _norm_text(answer)
        return tuple(sum(text.count(p) for p in self.phrases[s]) for s in STANCES)  # type: ignore[return-value]

    def judge_answer(self, answer: str) -> Judgment:
        c = self.counts(answer)
        if sum(c) == 0:
            c = (0, 1, 0)
        a = self.smoothing
        z = sum(c) + 3 * a
        return Judgment(tuple((n + a) / z for n in c), "ok")  # type: ignore[arg-type]

    def judge(self, items: Sequence[JudgeItem], progress: bool = False,
              on_result: OnResult | None = None) -> list[Judgment]:
        out = []
        for i, it in enumerate(tqdm(items, desc="judge lexicon", disable=not progress, mininterval=1.0)):
            j = self.judge_answer(it.answer)
            out.append(j)
            if on_result is not None:
                on_result(i, j)
        return out


# ------------------------------------------------------------------------------------- factory


def make_judge(cfg: Any) -> Judge:
    """A judge from a config: the `judge` section of vd.config (or any object with its attributes:
    kind, model, base_url, prompt_version, max_concurrency, max_retries, timeout_s, batch_size)."""
    if not hasattr(cfg, "kind") and hasattr(cfg, "judge"):
        cfg = cfg.judge
    kind = getattr(cfg, "kind", None)
    get = lambda name, default: getattr(cfg, name, default)  # noqa: E731
    if kind == "openai":
        return OpenAIJudge(model=get("model", "gpt-4o"), base_url=get("base_url", None),
                           prompt_version=get("prompt_version", "v1"), max_concurrency=get("max_concurrency", 8),
                           max_retries=get("max_retries", 5), timeout_s=get("timeout_s", 60))
    if kind == "hf":
        model = get("model", None)
        if not model:
            raise ValueError("judge.kind is 'hf' but judge.model is empty: name a local instruction model")
        return HFJudge(model, prompt_version=get("prompt_version", "v1"), batch_size=get("batch_size", 16),
                       device=get("device", None), dtype=get("dtype", None))
    if kind == "lexicon":
        return LexiconJudge(smoothing=get("smoothing", 0.1))
    raise ValueError(f"judge.kind must be one of {', '.join(map(repr, JUDGE_KINDS))}; got {kind!r}")


# ------------------------------------------------------------------------------------ agreement


def argmax_label(p: Sequence[float]) -> str | None:
    """The stance with the highest probability (ties go to the first in STANCES order); None if p has NaNs."""
    if len(p) != 3 or any(math.isnan(x) for x in p):
        return None
    return STANCES[max(range(3), key=lambda i: (p[i], -i))]


def _as_label(x: Any) -> str | None:
    if isinstance(x, Judgment):
        return argmax_label(x.p)
    if isinstance(x, str):
        if x not in STANCES:
            raise ValueError(f"unknown stance label {x!r}; expected one of {STANCES}")
        return x
    if x is None:
        return None
    return argmax_label(tuple(float(v) for v in x))


def agreement(labels_a: Sequence[Any], labels_b: Sequence[Any]) -> dict[str, float]:
    """Agreement of two judges (or a judge and a human) on the same items.

    Each element is a stance string, a probability vector or a Judgment (read by argmax_label).
    Pairs where either side has no label (a failed judgment) are dropped; n counts the pairs used.
    Cohen's kappa = (p_o - p_e) / (1 - p_e); NaN where undefined (no pairs, or p_e = 1: both raters
    used one and the same label throughout).
    """
    if len(labels_a) != len(labels_b):
        raise ValueError(f"agreement: {len(labels_a)} labels vs {len(labels_b)}")
    pairs = [(a, b) for a, b in ((_as_label(x), _as_label(y)) for x, y in zip(labels_a, labels_b))
             if a is not None and b is not None]
    n = len(pairs)
    if n == 0:
        return {"accuracy": math.nan, "cohen_kappa": math.nan, "n": 0}
    po = sum(a == b for a, b in pairs) / n
    pe = sum((sum(a == s for a, _ in pairs) / n) * (sum(b == s for _, b in pairs) / n) for s in STANCES)
    kappa = (po - pe) / (1 - pe) if pe < 1 else math.nan
    return {"accuracy": po, "cohen_kappa": kappa, "n": n}
