"""The synthetic value-gap preference data (arXiv 2510.26707; docs/method.md §5): pairs whose chosen and
rejected answers take opposite stances on the same prompt, each answer's stance verified by the judge.

`build_synthetic_pairs` is the builder (any answer writer, any judge); the writers are an
OpenAI-compatible chat model or a local HF model told which stance to take (`stance_instruction`), or
the tiny world's. `build_from_config` builds a config's pairs from its `data.synthetic` settings;
vd.data.synthetic_set stores them once per setting as the dataset every run on that setting reads.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import zlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from vd import world
from vd.core import registry
from vd.core.config import Config, ConfigError
from vd.core.io import text_hash
from vd.core.stances import STANCES, TOPICS
from vd.data.files import is_local
from vd.data.loaders import LoadResult
from vd.judge import JudgeItem, JudgeUnavailable, make_judge
from vd.judge.endpoint import OPENAI_ENDPOINT, api_key_for, endpoint_name, extra_body_for
from vd.judge.redaction import redact, redact_known

log = logging.getLogger(__name__)

SYNTHETIC_PROMPTS_FILE = Path(__file__).parent / "synthetic_prompts.jsonl"  # real sizes: 11 x 40, ours
NO_WRITER_KEY = ("data.synthetic.generator is 'openai' and no base_url is set (data.synthetic.base_url, "
                 "judge.base_url or $OPENAI_BASE_URL), so OpenAI's API writes the synthetic pairs' answers, which "
                 "needs the environment variable OPENAI_API_KEY: set it in the environment (never in a params "
                 "file), or set data.synthetic.base_url to a local OpenAI-compatible server, which needs no key")


class SyntheticDataError(ConfigError):
    """The synthetic pairs cannot be built or read: every answer failed to be written, none verified, or a
    stored file was damaged; the message names the setting or file and what to do."""


# --- synthetic value-gap pairs -------------------------------------------------------------------


class _Judgment(Protocol):
    p: Any  # (p_support, p_neutral, p_oppose), in STANCES order; NaNs when failed
    status: str  # vd.judge: "ok" | "text_fallback" | "failed"


class _Judge(Protocol):
    def judge(self, items: list) -> list[_Judgment]: ...


def _valid_p(p: Any) -> tuple[float, float, float] | None:
    try:
        vals = tuple(float(x) for x in p)
    except (TypeError, ValueError):
        return None
    if len(vals) != len(STANCES) or not all(math.isfinite(v) and v >= 0 for v in vals):
        return None
    return vals  # type: ignore[return-value]


def build_synthetic_pairs(
    prompts: list[dict],
    write_answer: Callable[[str, str, str], str],
    judge: _Judge,
    setting: str = "support",
    min_confidence: float = 0.5,
    progress: Callable[[str], None] | None = None,
    every: int = 25,
) -> tuple[LoadResult, list[dict]]:
    """A value-gap preference set: for each ``{"prompt", "topic"}`` write one supporting and one
    opposing answer, verify each answer's stance with ``judge``, and keep the pairs that verify.

    An answer verifies when the judge's argmax is the intended stance and its probability is
    ``>= min_confidence``; a judgment whose ``status`` is ``"failed"`` or whose ``p`` is not three finite
    probabilities is a failure (vd.judge's ``"ok"`` and ``"text_fallback"`` both count as judged).
    ``setting="support"``: chosen = the supporting answer, rejected = the opposing one; ``"oppose"``: the
    reverse. A dropped pair counts under one reason, checked in order: ``missing_field:prompt|topic``,
    ``write_failed`` (the writer raised), ``empty_answer``, ``judge_failed``, ``support_answer_not_support``,
    ``oppose_answer_not_oppose``.

    Returns the rows (preference schema plus ``topic``, ``chosen_stance``, ``rejected_stance``) and,
    per kept pair, the judged probabilities ``{"topic", "prompt", "chosen_p_support", …,
    "rejected_p_oppose"}`` from which a caller computes the dataset's value gap (docs/method.md §5).
    ``progress`` (e.g. ``progress_printer()``) gets a line per ``every`` prompts written and judged.
    """
    if setting not in ("support", "oppose"):
        raise ValueError(f"setting must be 'support' or 'oppose', got {setting!r}")
    i_sup, i_opp = STANCES.index("support"), STANCES.index("oppose")
    res = LoadResult(rows=[], skipped=Counter(), n_read=len(prompts), source="synthetic", name=f"synthetic-{setting}")

    written: list[tuple[str, str, str, str]] = []  # (question, topic, support answer, oppose answer)
    first_error: Exception | None = None
    for n, item in enumerate(prompts, 1):
        if progress and n > 1 and (n - 1) % every == 0:
            progress(f"synthetic-{setting}: answers written for {n - 1}/{len(prompts)} prompts")
        q, topic = item.get("prompt"), item.get("topic")
        if not isinstance(q, str) or not q.strip() or not isinstance(topic, str) or not topic:
            res.skipped["missing_field:" + ("prompt" if not isinstance(q, str) or not q.strip() else "topic")] += 1
            continue
        try:
            sup, opp = write_answer(q, topic, "support"), write_answer(q, topic, "oppose")
        except Exception as e:  # one failed API call must not end the run; counted and logged
            log.warning("write_answer failed for %r: %s", q[:60], redact_known(str(e)))
            first_error = first_error or e
            res.skipped["write_failed"] += 1
            continue
        if not isinstance(sup, str) or not isinstance(opp, str) or not sup.strip() or not opp.strip():
            res.skipped["empty_answer"] += 1
            continue
        # any writer's text is stored: no secret in it, whatever the writer (a server may echo its key)
        written.append((q, topic, redact_known(sup.strip()), redact_known(opp.strip())))
    if prompts and res.skipped.get("write_failed", 0) == len(prompts):
        raise SyntheticDataError(f"synthetic-{setting}: the answer writer failed on all {len(prompts)} prompts; the "
                                 f"first error: {type(first_error).__name__}: {redact_known(str(first_error))[:200]}")

    items = [JudgeItem(question=q, answer=a, topic=t) for q, t, s, o in written for a in (s, o)]
    judgments: list = []
    for start in range(0, len(items), 2 * every):  # in chunks, so that progress can say how far it is
        judgments += judge.judge(items[start:start + 2 * every])
        if progress:
            progress(f"synthetic-{setting}: judged {len(judgments) // 2}/{len(written)} written pairs")
    if len(judgments) != len(items):
        raise RuntimeError(f"judge returned {len(judgments)} judgments for {len(items)} items")

    gap_inputs: list[dict] = []
    for k, (q, topic, sup, opp) in enumerate(written):
        js, jo = judgments[2 * k], judgments[2 * k + 1]
        ps, po = _valid_p(getattr(js, "p", None)), _valid_p(getattr(jo, "p", None))
        if ps is None or po is None or "failed" in (getattr(js, "status", None), getattr(jo, "status", None)):
            res.skipped["judge_failed"] += 1
            continue
        if max(range(3), key=ps.__getitem__) != i_sup or ps[i_sup] < min_confidence:
            res.skipped["support_answer_not_support"] += 1
            continue
        if max(range(3), key=po.__getitem__) != i_opp or po[i_opp] < min_confidence:
            res.skipped["oppose_answer_not_oppose"] += 1
            continue
        (ch, pc, cs), (rj, pr, rs) = ((sup, ps, "support"), (opp, po, "oppose"))
        if setting == "oppose":
            (ch, pc, cs), (rj, pr, rs) = (rj, pr, rs), (ch, pc, cs)
        res.rows.append(
            {
                "prompt": [{"role": "user", "content": q}],
                "chosen": [{"role": "assistant", "content": ch}],
                "rejected": [{"role": "assistant", "content": rj}],
                "topic": topic,
                "chosen_stance": cs,
                "rejected_stance": rs,
            }
        )
        gap = {"topic": topic, "prompt": q}
        for side, p in (("chosen", pc), ("rejected", pr)):
            for s, v in zip(STANCES, p):
                gap[f"{side}_p_{s}"] = v
        gap_inputs.append(gap)
    log.info(res.summary())
    return res, gap_inputs


# --- answer writers ------------------------------------------------------------------------------

_WRITER_SYSTEM = (
    "You answer opinion questions in two to four sentences. You take the stance you are told to take, "
    "state it plainly in the first sentence, and give one or two reasons. No disclaimers."
)


_STANCE_HOW = {
    "support": "Take a clearly supportive stance: argue in favour.",
    "oppose": "Take a clearly opposing stance: argue against.",
    "neutral": "Take no side: give a balanced answer that neither supports nor opposes.",
}


def stance_instruction(question: str, topic: str, stance: str) -> str:
    """The instruction an answer writer receives (ours; the paper's synthetic-data prompts are not public)."""
    if stance not in STANCES:
        raise ValueError(f"stance must be one of {STANCES}, got {stance!r}")
    return f"Topic: {TOPICS.get(topic, topic)}\nQuestion: {question}\n\n{_STANCE_HOW[stance]}"


def instructions_hash() -> str:
    """sha256 of what every writer is told (system text and stance instructions): part of a stored set's key."""
    return text_hash(json.dumps([_WRITER_SYSTEM, _STANCE_HOW], sort_keys=True))


def openai_answer_writer(model: str = "gpt-4o-mini", base_url: str | None = None, temperature: float = 0.7,
                         max_tokens: int = 200) -> Callable[[str, str, str], str]:
    """A ``write_answer`` backed by an OpenAI-compatible chat endpoint: the key from ``OPENAI_API_KEY``, or
    the placeholder local servers take where ``base_url`` (or $OPENAI_BASE_URL) is set and no key is
    (vd.judge.endpoint.api_key_for); a failed call's message never holds the key."""
    try:
        key = api_key_for(base_url, NO_WRITER_KEY)
    except JudgeUnavailable as e:
        raise SyntheticDataError(str(e)) from None
    import openai

    client = openai.OpenAI(api_key=key, base_url=base_url)
    secret = None if key == "EMPTY" else key
    extra_body = extra_body_for(base_url)  # a local thinking model (Qwen3) writes the answer, not a <think> block

    def write_answer(question: str, topic: str, stance: str) -> str:
        try:
            resp = client.chat.completions.create(
                model=model,
                messages=[
                    {"role": "system", "content": _WRITER_SYSTEM},
                    {"role": "user", "content": stance_instruction(question, topic, stance)},
                ],
                temperature=temperature,
                max_tokens=max_tokens,
                extra_body=extra_body,
            )
        except openai.OpenAIError as e:  # counted as write_failed by the builder; its text may echo the key
            raise RuntimeError(redact(f"{type(e).__name__}: {e}", secret)) from None
        return (resp.choices[0].message.content or "").strip()  # redacted by the builder, as every writer's

    return write_answer


def hf_answer_writer(model, tokenizer, max_new_tokens: int = 128, seed: int = 0,
                     temperature: float = 0.7) -> Callable[[str, str, str], str]:
    """A ``write_answer`` backed by a local instruct model (sampled; each (question, stance) gets its
    own seed derived from ``seed``, so a rerun writes the same answers)."""
    import torch

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def write_answer(question: str, topic: str, stance: str) -> str:
        msgs = [
            {"role": "system", "content": _WRITER_SYSTEM},
            {"role": "user", "content": stance_instruction(question, topic, stance)},
        ]
        enc = tokenizer.apply_chat_template(
            msgs, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
        )
        enc = {k: v.to(model.device) for k, v in enc.items()}
        torch.manual_seed(seed * 1_000_003 + zlib.crc32(f"{stance}\x00{question}".encode()))
        with torch.no_grad():
            out = model.generate(**enc, do_sample=True, temperature=temperature, max_new_tokens=max_new_tokens,
                                 pad_token_id=pad_id)
        new = out[0, enc["input_ids"].shape[1]:]
        return tokenizer.decode(new, skip_special_tokens=True).strip()

    return write_answer


def writer_base_url(cfg: Config) -> str | None:
    """The server generator `openai` calls: data.synthetic.base_url, else judge.base_url, else
    $OPENAI_BASE_URL (None: the client's default, OpenAI's API)."""
    return cfg.data.synthetic.base_url or cfg.judge.base_url or os.environ.get("OPENAI_BASE_URL") or None


def writer_endpoint(cfg: Config) -> str:
    """The endpoint generator `openai` writes with, as a stored set's key names it (no credentials)."""
    return endpoint_name(writer_base_url(cfg) or OPENAI_ENDPOINT)


def openai_writer_from_config(cfg: Config) -> Callable[[str, str, str], str]:
    """Generator `openai`: an OpenAI-compatible endpoint (writer_base_url) writes the answers
    (data.synthetic.generator_model)."""
    return openai_answer_writer(model=cfg.data.synthetic.generator_model, base_url=writer_base_url(cfg))


def check_openai_writer(cfg: Config) -> None:
    """Before any work: a key, or a server that needs none (one line otherwise), and the openai package."""
    try:
        api_key_for(writer_base_url(cfg), NO_WRITER_KEY)
    except JudgeUnavailable as e:
        raise SyntheticDataError(f"{cfg.source}: {e}") from None
    try:
        import openai  # noqa: F401
    except ImportError:
        raise SyntheticDataError(f"{cfg.source}: data.synthetic.generator: 'openai' needs the openai package "
                                 "(pip install openai)") from None


openai_writer_from_config.check = check_openai_writer


def hf_writer_from_config(cfg: Config) -> Callable[[str, str, str], str]:
    """Generator `hf`: a local instruct model (data.synthetic.generator_model) writes the answers."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name = cfg.data.synthetic.generator_model
    gen = AutoModelForCausalLM.from_pretrained(name, dtype="auto", device_map="auto")
    return hf_answer_writer(gen, AutoTokenizer.from_pretrained(name), seed=cfg.seed)


def check_hf_writer(cfg: Config) -> None:
    """Before any work: a local generator_model folder exists (a hub id is fetched when the pairs are built)."""
    name = cfg.data.synthetic.generator_model
    if is_local(name) and not Path(name).is_dir():
        raise SyntheticDataError(f"{cfg.source}: data.synthetic.generator_model: {name} is not a folder (a local "
                                 "instruct model, or a hub id)")


hf_writer_from_config.check = check_hf_writer


def check_writer(cfg: Config) -> None:
    """Raise SyntheticDataError (one line) where the configured writer cannot run here: makes no request and
    loads no model. A writer factory's own `check` attribute, where it has one, says what it needs."""
    check = getattr(registry.resolve(registry.ANSWER_WRITERS[cfg.data.synthetic.generator]), "check", None)
    if check is not None:
        check(cfg)
    path = prompts_path(cfg)
    if not path.is_file():
        raise SyntheticDataError(f"{cfg.source}: data.synthetic.prompts_file: {path} does not exist (expected "
                                 "JSONL rows {\"prompt\", \"topic\"}, disjoint from the probes)")


def prompts_path(cfg: Config) -> Path:
    """data.synthetic.prompts_file as a local file (default: the shipped vd/data/synthetic_prompts.jsonl;
    `tiny`: the tiny world's)."""
    syn = cfg.data.synthetic
    return Path(world.data_source(cfg, syn.prompts_file, "synthetic_prompts")) if syn.prompts_file \
        else SYNTHETIC_PROMPTS_FILE


def synthetic_prompts(cfg: Config) -> list[dict]:
    """The first `prompts_per_topic` prompts of each topic from data.synthetic.prompts_file (prompts_path)."""
    syn = cfg.data.synthetic
    path = prompts_path(cfg)
    if not path.is_file():
        raise FileNotFoundError(f"data.synthetic.prompts_file: {path} does not exist (expected JSONL rows "
                                "{\"prompt\", \"topic\"}, disjoint from the probes)")
    prompts = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    seen, kept = Counter(), []
    for p in prompts:
        seen[p["topic"]] += 1
        if seen[p["topic"]] <= syn.prompts_per_topic:
            kept.append(p)
    return kept


def progress_printer(min_interval_s: float = 10.0) -> Callable[[str], None]:
    """print() a progress line, at most one per `min_interval_s` seconds: a fast build prints nothing."""
    last = [time.monotonic()]

    def show(message: str) -> None:
        if time.monotonic() - last[0] >= min_interval_s:
            last[0] = time.monotonic()
            print(message, flush=True)

    return show


def build_from_config(cfg: Config, setting: str, judge=None) -> tuple[LoadResult, list[dict]]:
    """The synthetic pairs of `cfg` whose chosen answer takes `setting` (support | oppose), with what was
    left out (LoadResult), and every kept pair's judged stance probabilities.

    Answers are written by the params' generator (vd.core.registry.ANSWER_WRITERS) and verified by
    `judge` (default: the params' judge)."""
    check_writer(cfg)
    writer = registry.resolve(registry.ANSWER_WRITERS[cfg.data.synthetic.generator])(cfg)
    res, judged = build_synthetic_pairs(synthetic_prompts(cfg), writer,
                                        judge or make_judge(cfg.judge, tiny_world=world.uses_world(cfg)),
                                        setting=setting, min_confidence=cfg.data.synthetic.min_confidence,
                                        progress=progress_printer())
    log.info(res.summary())
    return res, judged
