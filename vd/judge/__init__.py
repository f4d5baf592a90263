"""Stance judges: p(support, neutral, oppose | question, answer, topic), the versioned judge prompt, and
the readout of label log-probabilities (arXiv 2510.26707, §3; docs/method.md §1).

`tiny_world` says whether the judged text is the tiny world's (vd.world.uses_world(cfg)); only the lexicon
judge needs it. Modules: base (the interface and errors), prompt, one per backend (openai_api, hf,
lexicon), cached, agreement, sanity (the judge check), endpoint, redaction (no secret stored or printed).

    check_available(cfg.judge, tiny_world=uses_world(cfg))   # before training: JudgeUnavailable if not
    judge = make_judge(cfg.judge, tiny_world=uses_world(cfg))  # the class vd.core.registry.JUDGES names
    judgments = CachedJudge(judge, store).judge(items)         # through the SQLite cache
    require_sighted(check_judge(judge, store))                 # JudgeCannotTell where it cannot tell stances apart
"""

from __future__ import annotations

from vd.core import registry
from vd.core.config import JudgeConfig
from vd.judge.agreement import agreement, argmax_label  # noqa: F401
from vd.judge.base import NAN3, Judge, JudgeItem, JudgeUnavailable, JudgingFailed, Judgment, OnResult  # noqa: F401
from vd.judge.cached import CachedJudge, cache_key  # noqa: F401
from vd.judge.endpoint import MissingAPIKey, api_key_for, extra_body_for  # noqa: F401
from vd.judge.hf import HFJudge  # noqa: F401
from vd.judge.lexicon import LexiconJudge  # noqa: F401
from vd.judge.openai_api import OpenAIJudge  # noqa: F401
from vd.judge.prompt import (  # noqa: F401
    JUDGE_PROMPTS,
    judge_messages,
    label_of_token,
    probs_from_top_logprobs,
    readout_from_completion,
)
from vd.judge.sanity import (  # noqa: F401
    LABELLED_EXAMPLES,
    JudgeCannotTell,
    JudgeCheckWarning,
    SanityResult,
    check_judge,
    require_sighted,
    sighted_judge,
)


def judge_class(judge_cfg: JudgeConfig) -> type:
    """The backend class vd.core.registry.JUDGES names for judge_cfg.kind."""
    if not isinstance(judge_cfg, JudgeConfig):
        raise TypeError(f"expected the `judge` section of a config (cfg.judge, a JudgeConfig), "
                        f"got {type(judge_cfg).__name__}")
    if judge_cfg.kind not in registry.JUDGES:
        raise JudgeUnavailable(f"judge.kind: expected one of {', '.join(map(repr, registry.JUDGES))}, "
                               f"got {judge_cfg.kind!r}")
    return registry.resolve(registry.JUDGES[judge_cfg.kind])


def check_available(judge_cfg: JudgeConfig, *, tiny_world: bool = False) -> None:
    """Raise JudgeUnavailable (a ConfigError: one line naming the key) unless the configured judge can
    run here: e.g. OPENAI_API_KEY unset for OpenAI's API (a base_url needs no key), or the lexicon
    judge outside the tiny world. Makes no request and loads no model: a notebook calls it before
    its first training step, so a judge that cannot run stops it then, not at scoring."""
    judge_class(judge_cfg).check_available(judge_cfg, tiny_world=tiny_world)


def make_judge(judge_cfg: JudgeConfig, *, tiny_world: bool = False) -> Judge:
    """The judge the params' `judge` section describes: JUDGES[judge_cfg.kind].from_config(judge_cfg)."""
    return judge_class(judge_cfg).from_config(judge_cfg, tiny_world=tiny_world)
