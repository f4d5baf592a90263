"""Stance judges: p(support, neutral, oppose | question, answer, topic), the versioned judge prompt, and
the readout of label log-probabilities (arXiv 2510.26707, §3).

    judge = make_judge(cfg.judge)            # the backend vd.core.registry.JUDGES names for judge.kind

Modules: base (JudgeItem, Judgment, the Judge interface), prompt (the versioned prompt, the readout),
one per backend (openai_api, hf, lexicon), agreement (accuracy, Cohen's kappa).
"""

from __future__ import annotations

from typing import Any

from vd.core import registry
from vd.judge.agreement import agreement, argmax_label  # noqa: F401
from vd.judge.base import NAN3, Judge, JudgeItem, Judgment, OnResult  # noqa: F401
from vd.judge.hf import HFJudge  # noqa: F401
from vd.judge.lexicon import LexiconJudge  # noqa: F401
from vd.judge.openai_api import OpenAIJudge, _retry_after_s  # noqa: F401
from vd.judge.prompt import (JUDGE_PROMPTS, judge_messages, label_of_token, probs_from_top_logprobs,  # noqa: F401
                             readout_from_completion)

JUDGE_KINDS = tuple(registry.JUDGES)


def make_judge(cfg: Any) -> Judge:
    """A judge from a config: the `judge` section of vd.core.config (or any object with its attributes:
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
