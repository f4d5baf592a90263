"""Stance judge on any OpenAI-compatible chat endpoint (OpenAI, a local vLLM or llama.cpp server) that
returns log-probabilities; the paper's setting is model="gpt-4o" (arXiv 2510.26707, §3)."""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from http import HTTPStatus
from typing import Any

from vd.judge.base import JudgeItem, JudgeUnavailable, Judgment, OnResult, failed, progress_bar
from vd.judge.endpoint import (  # noqa: F401 (re-exported: every caller of an endpoint shares them)
    OPENAI_ENDPOINT,
    PLACEHOLDER_KEY,
    api_key_for,
    chat_template_kwargs_for,
    endpoint_name,
    extra_body_for,
)
from vd.judge.prompt import check_prompt_version, judge_messages, readout_from_completion
from vd.judge.redaction import SECRET_RUN, judge_logger, redact, redact_known  # noqa: F401 (re-exported)

log = judge_logger(__name__)
ERROR_CHARS = 120  # of a server's error text kept in an error message
NO_KEY = ("judge.kind is 'openai' and judge.base_url is not set, so the OpenAI API is called, which needs "
          "the environment variable OPENAI_API_KEY: set it in the environment (never in a params file), or "
          "set judge.base_url to a local OpenAI-compatible server (vLLM, llama.cpp), which needs no key")


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
    logprobs=True, top_logprobs=k, and to a server other than OpenAI's the chat template arguments
    (vd.judge.endpoint.chat_template_kwargs_for: by default enable_thinking=false, so a thinking model's
    one token is a label, not "<think>"). The key is vd.judge.endpoint.api_key_for(base_url): from
    OPENAI_API_KEY only, a placeholder for a local server without one. Every judgment judge_one returns
    passes through one redaction (`_redacted`), and every log line through vd.judge.redaction: no 8
    characters of the API key appear in `key`, repr, log lines or error messages. `key` names the
    endpoint that answers (base_url, else $OPENAI_BASE_URL, else OpenAI's) and the chat template
    arguments sent, so two servers serving one model name never share judgments; OpenAI's own
    endpoint keeps the plain "openai:<model>:<prompt version>", under which earlier caches hold its
    (paid) judgments.

    Retries are ours (the client's own are off): 429, 5xx, timeouts and connection errors are retried
    up to max_retries times with exponential backoff and seeded jitter (a 429's Retry-After is
    honoured, capped at backoff_max_s); any other 4xx fails at once. An item that still fails comes
    back with status "failed" and the error, never raised, never dropped; so does one whose reply does
    not parse (retried: a truncated body is a transient fault) or that raised anything else (not
    retried). `stats` counts requests, retries and failed items (cumulative over calls).
    """

    kind = "openai"

    def __init__(self, model: str = "gpt-4o", base_url: str | None = None, prompt_version: str = "v1",
                 max_concurrency: int = 8, max_retries: int = 5, timeout_s: float = 60,
                 backoff_base_s: float = 1.0, backoff_max_s: float = 30, top_logprobs: int = 5,
                 seed: int = 0, chat_template_kwargs: dict | None = None):
        check_prompt_version(prompt_version)
        if max_concurrency < 1 or max_retries < 0 or timeout_s <= 0 or not 0 <= top_logprobs <= 20:
            raise ValueError("OpenAIJudge needs max_concurrency >= 1, max_retries >= 0, timeout_s > 0, "
                             "0 <= top_logprobs <= 20")
        api_key = api_key_for(base_url, NO_KEY)
        import openai  # lazy: the lexicon path never needs it

        self.model, self.base_url, self.prompt_version = model, base_url, prompt_version
        self.max_concurrency, self.max_retries, self.timeout_s = max_concurrency, max_retries, timeout_s
        self.backoff_base_s, self.backoff_max_s, self.top_logprobs = backoff_base_s, backoff_max_s, top_logprobs
        self.stats = {"requests": 0, "retries": 0, "failed": 0}
        self._secret = api_key if api_key != PLACEHOLDER_KEY else None  # only used to redact messages
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._client = openai.OpenAI(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout_s)
        # The URL the client really calls (base_url, else $OPENAI_BASE_URL, else OpenAI's).
        self.endpoint = self._redact(endpoint_name(str(self._client.base_url)))
        self.chat_template_kwargs = chat_template_kwargs_for(str(self._client.base_url), chat_template_kwargs)
        self._extra_body = {"chat_template_kwargs": self.chat_template_kwargs} if self.chat_template_kwargs else None
        at = "" if self.endpoint == OPENAI_ENDPOINT else f"@{self.endpoint}"
        # The chat template arguments change the prompt the model reads: ";enable_thinking=false".
        sent = "".join(f";{k}={json.dumps(v)}" for k, v in sorted(self.chat_template_kwargs.items()))
        self.key = self._redact(f"openai:{model}:{prompt_version}{at}{sent}")

    @classmethod
    def check_available(cls, judge_cfg: Any, *, tiny_world: bool = False) -> None:
        """JudgeUnavailable unless the `judge` section can run here: a known prompt, a model name, a key
        or a base_url, chat template arguments only for a server other than OpenAI's, the openai
        package. Makes no request."""
        check_prompt_version(judge_cfg.prompt_version)
        if not judge_cfg.model:
            raise JudgeUnavailable("judge.model: expected the model name the endpoint serves (e.g. gpt-4o), got ''")
        api_key_for(judge_cfg.base_url, NO_KEY)
        chat_template_kwargs_for(judge_cfg.base_url, judge_cfg.chat_template_kwargs)
        try:
            import openai  # noqa: F401
        except ImportError:
            raise JudgeUnavailable("judge.kind 'openai' needs the openai package (pip install openai)") from None

    @classmethod
    def from_config(cls, judge_cfg: Any, *, tiny_world: bool = False) -> OpenAIJudge:
        """The judge the params' `judge` section describes (vd.core.config.JudgeConfig)."""
        cls.check_available(judge_cfg, tiny_world=tiny_world)
        return cls(model=judge_cfg.model, base_url=judge_cfg.base_url, prompt_version=judge_cfg.prompt_version,
                   max_concurrency=judge_cfg.max_concurrency, max_retries=judge_cfg.max_retries,
                   timeout_s=judge_cfg.timeout_s, chat_template_kwargs=judge_cfg.chat_template_kwargs)

    def __repr__(self) -> str:
        return (f"OpenAIJudge(model={self.model!r}, endpoint={self.endpoint!r}, "
                f"prompt_version={self.prompt_version!r}, max_concurrency={self.max_concurrency}, "
                f"max_retries={self.max_retries}, timeout_s={self.timeout_s})")

    def _redact(self, msg: str) -> str:
        return redact_known(msg, self._secret)

    def _redacted(self, j: Judgment) -> Judgment:
        """`j` with its error redacted: the one door every judgment of judge_one leaves by."""
        return j if j.error is None else Judgment(j.p, j.status, self._redact(j.error))

    def _clip(self, text: str, limit: int = ERROR_CHARS) -> str:
        return self._redact(text)[:limit]  # redact first: a cut may fall inside the key

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
        """One item, with retries. Never raises (but for KeyboardInterrupt and the like): a failure
        comes back as status "failed" with its error, redacted whatever path made it."""
        return self._redacted(self._attempts(item))

    def _attempts(self, item: JudgeItem) -> Judgment:
        import openai

        messages = judge_messages(item.question, item.answer, item.topic, self.prompt_version)
        error = "no attempt made"
        for attempt in range(self.max_retries + 1):
            retry_after = None
            self._count("requests")
            try:
                completion = self._client.chat.completions.create(
                    model=self.model, messages=messages, max_tokens=1, temperature=0,
                    logprobs=True, top_logprobs=self.top_logprobs, extra_body=self._extra_body)
            except openai.APITimeoutError:
                error, retryable = f"timeout: no response within {self.timeout_s} s", True
            except openai.APIConnectionError as e:
                error, retryable = f"connection error: {self._clip(e.message)}", True
            except openai.APIStatusError as e:
                code = e.status_code
                reason = re.sub(r"^Error code: \d+( - )?", "", e.message or "").strip()
                try:
                    reason = reason or HTTPStatus(code).phrase
                except ValueError:
                    pass
                error = f"HTTP {code}: {self._clip(reason)}"
                retryable = code == 429 or code >= 500
                if code == 429:
                    retry_after = _retry_after_s(e.response.headers)
            except openai.OpenAIError as e:
                error, retryable = f"{type(e).__name__}: {self._clip(str(e))}", False
            except ValueError as e:  # the body did not parse (e.g. truncated JSON): a transient fault
                error, retryable = f"malformed response: {type(e).__name__}: {self._clip(str(e))}", True
            except Exception as e:  # anything else: this item's failure, never the whole call's
                error, retryable = f"{type(e).__name__}: {self._clip(str(e))}", False
            else:
                try:
                    return readout_from_completion(completion)
                except Exception as e:  # e.g. a reply that is not a chat completion
                    error = f"malformed completion: {type(e).__name__}: {self._clip(str(e), 100)}"
                    retryable = False
            if not retryable:
                break
            if attempt < self.max_retries:
                self._count("retries")
                time.sleep(self._backoff(attempt, retry_after))
        else:
            attempts = self.max_retries + 1
            error = f"{error} (gave up after {attempts} attempt{'s' if attempts > 1 else ''})"
        self._count("failed")
        log.debug("judge item failed: %s", self._redact(error))
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
                try:
                    results[i] = self._redacted(fut.result())
                except Exception as e:  # judge_one catches everything; this guards against its bugs
                    results[i] = failed(self._clip(f"{type(e).__name__}: {e}", 200))
                if on_result is not None:
                    on_result(i, results[i])
                bar.update(1)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            bar.close()
        failures = [r for r in results if r is not None and r.status == "failed"]
        if failures:  # one line per call, not per item: a papermill log stays readable
            log.warning("%s: %d of %d items failed; first error: %s", self.key, len(failures), len(items),
                        failures[0].error)
        return results  # type: ignore[return-value]

