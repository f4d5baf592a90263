"""Stance judge on any OpenAI-compatible chat endpoint (OpenAI, a local vLLM or llama.cpp server) that
returns log-probabilities; the paper's setting is model="gpt-4o" (arXiv 2510.26707, §3)."""

from __future__ import annotations

import logging
import os
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from http import HTTPStatus
from typing import Any, Sequence

from vd.judge.base import Judgment, JudgeItem, OnResult, failed, progress_bar
from vd.judge.prompt import JUDGE_PROMPTS, judge_messages, readout_from_completion

log = logging.getLogger(__name__)


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

    Sends one request per item: the vd.judge.prompt messages, max_tokens=1 (the field every
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
        return failed(error)

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
        bar = progress_bar(len(items), f"judge {self.model}", progress)
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
