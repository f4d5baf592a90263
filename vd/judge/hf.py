"""Stance judge on a local instruction model: the judge prompt through its chat template, and the
labels read from the next-token distribution with the OpenAI judge's readout (docs/method.md §1)."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vd.core.precision import gpu_dtype
from vd.core.stances import STANCES
from vd.core.weights import model_identity, tokenizer_digest
from vd.judge.base import JudgeItem, JudgeUnavailable, Judgment, OnResult, failed, failed_by, progress_bar
from vd.judge.prompt import check_prompt_version, judge_messages, label_of_token, probs_from_top_logprobs
from vd.judge.redaction import judge_logger, redact_known

log = judge_logger(__name__)

# The readout is part of the key, as the prompt is: "labels-2" reads every token label_of_token
# reads as a label (the first readout took each label's first token only), so old judgments are not reused.
READOUT = "labels-2"


class HFJudge:
    """Stance judge on a local instruction model (e.g. Qwen/Qwen2.5-7B-Instruct): the same prompt
    through the tokenizer's chat template, read from the log-probabilities of the next token.

    The readout is the OpenAI judge's (vd.judge.prompt.probs_from_top_logprobs, with the same label
    matching, label_of_token) on the whole vocabulary instead of the API's top k: every token that
    reads as a label ("support", " Support", "opp", "Opposing", ...) counts, and a label's logprob is
    the highest among its tokens. A tokenizer with no token for some label, or
    with no chat template (the judge asks an instruction-tuned model), is a ValueError. A batch that
    raises is judged again one item at a time; an item that raises alone is a failure. Takes a model
    name/path, or an already-loaded (model, tokenizer) pair.

    On a GPU the model is loaded straight onto it (device_map), in the GPU's compute dtype
    (vd.core.precision.gpu_dtype), or in 4-bit NF4 with load_in_4bit (bitsandbytes; ignored on CPU,
    where the model is fp32). `key` names the model by its content (judge_identity: a folder by the
    digests of its weight and tokenizer files, a hub id by id@revision) and says where it was loaded in
    NF4, so a model, tokenizer or chat template replaced in its folder is a new judge; `name`, where
    given, stands in for the model's identity.
    """

    kind = "hf"

    def __init__(self, model_name_or_path: str | tuple[Any, Any], prompt_version: str = "v1",
                 batch_size: int = 16, device: str | None = None, dtype: Any = None, name: str | None = None,
                 revision: str | None = None, load_in_4bit: bool = False):
        check_prompt_version(prompt_version)
        if isinstance(model_name_or_path, (tuple, list)):
            model, tok = model_name_or_path
            require_chat_template(tok, getattr(model, "name_or_path", "") or type(model).__name__)
            if device is not None:
                model = model.to(device)
            path = getattr(model, "name_or_path", "") or ""
            identity = judge_identity(path) if path and Path(path).is_dir() else path or type(model).__name__
        else:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(model_name_or_path, revision=revision)
            require_chat_template(tok, model_name_or_path)  # before the weights: a base model fails in seconds
            model = _load_model(model_name_or_path, revision, device, dtype, load_in_4bit)
            identity = judge_identity(model_name_or_path, revision)
        model.eval()
        tok.padding_side = "left"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        self.model, self.tokenizer = model, tok
        self.prompt_version, self.batch_size = prompt_version, batch_size
        self.name = name or (model_name_or_path if isinstance(model_name_or_path, str)
                             else getattr(model, "name_or_path", "") or type(model).__name__)
        # NF4 weights judge differently from the same weights unquantized: another judge
        nf4 = ":nf4" if getattr(model, "is_loaded_in_4bit", False) else ""
        self.key = f"hf:{name or identity}:{prompt_version}:{READOUT}{nf4}"
        self.label_token_ids = self._label_token_ids()
        self._keeps_logits = "logits_to_keep" in inspect.signature(model.forward).parameters

    @classmethod
    def check_available(cls, judge_cfg: Any, *, tiny_world: bool = False) -> None:
        """JudgeUnavailable unless the `judge` section names a model (a local folder must exist) whose
        tokenizer loads and has a chat template, and bitsandbytes is there where 4-bit loading is asked
        for on a GPU. Loads the tokenizer only, never the weights."""
        check_prompt_version(judge_cfg.prompt_version)
        model = judge_cfg.model
        if not model:
            raise JudgeUnavailable("judge.model: expected a local instruction model (a folder or hub id) "
                                   "for judge.kind 'hf', got ''")
        if model.startswith(("/", "./", "../", "~")) and not Path(model).expanduser().is_dir():
            raise JudgeUnavailable(f"judge.model: {model!r}: no such folder "
                                   "(expected a local model folder or a hub id)")
        try:
            import torch
            from transformers import AutoTokenizer
        except ImportError as e:
            raise JudgeUnavailable(f"judge.kind 'hf' needs torch and transformers: {e}") from None
        if judge_cfg.load_in_4bit and torch.cuda.is_available():
            try:
                import bitsandbytes  # noqa: F401
            except ImportError:
                raise JudgeUnavailable("judge.load_in_4bit: true needs the bitsandbytes package on a GPU "
                                       "(pip install bitsandbytes), or set it to false") from None
        try:
            tok = AutoTokenizer.from_pretrained(model, revision=judge_cfg.revision)
            require_chat_template(tok, model)
        except (OSError, ValueError) as e:
            raise JudgeUnavailable(_whole(judge_cfg.model, e)) from None

    @classmethod
    def from_config(cls, judge_cfg: Any, *, tiny_world: bool = False) -> HFJudge:
        """The judge the params' `judge` section describes (vd.core.config.JudgeConfig)."""
        cls.check_available(judge_cfg, tiny_world=tiny_world)
        try:
            return cls(judge_cfg.model, prompt_version=judge_cfg.prompt_version, batch_size=judge_cfg.batch_size,
                       revision=judge_cfg.revision, load_in_4bit=judge_cfg.load_in_4bit)
        except JudgeUnavailable:
            raise
        except (OSError, ValueError) as e:  # not a folder, not on the hub, offline; not a causal LM; no label tokens
            raise JudgeUnavailable(_whole(judge_cfg.model, e)) from None

    def __repr__(self) -> str:
        return f"HFJudge(name={self.name!r}, prompt_version={self.prompt_version!r}, batch_size={self.batch_size})"

    def _prompt(self, item: JudgeItem) -> str:  # the tokenizer has a chat template: checked when built
        messages = judge_messages(item.question, item.answer, item.topic, self.prompt_version)
        kw = dict(tokenize=False, add_generation_prompt=True, enable_thinking=False)
        try:
            return self.tokenizer.apply_chat_template(messages, **kw)
        except Exception:  # templates without a system role (e.g. Gemma): fold it into the user turn
            merged = [{"role": "user", "content": messages[0]["content"] + "\n\n" + messages[1]["content"]}]
            return self.tokenizer.apply_chat_template(merged, **kw)

    def _label_token_ids(self) -> tuple[tuple[int, ...], ...]:
        """Per stance, every token id whose text label_of_token reads as that stance."""
        special = set(self.tokenizer.all_special_ids)
        ids = [i for i in range(len(self.tokenizer)) if i not in special]
        texts = self.tokenizer.batch_decode([[i] for i in ids])
        by_label: dict[str, list[int]] = {s: [] for s in STANCES}
        for i, text in zip(ids, texts):
            s = label_of_token(text)
            if s is not None:
                by_label[s].append(i)
        missing = [s for s in STANCES if not by_label[s]]
        if missing:
            raise ValueError(f"HFJudge: no token of this tokenizer reads as {missing[0]!r} "
                             "(vd.judge.prompt.label_of_token); the readout needs a token for each label")
        return tuple(tuple(by_label[s]) for s in STANCES)

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
            logprobs = torch.log_softmax(logits, dim=-1)
            # The best token of each label, so the readout below sees 3 pairs, not the whole vocabulary.
            best = [logprobs[:, list(group)].max(dim=-1) for group in self.label_token_ids]
            top = logprobs.argmax(dim=-1)
        out = []
        for r in range(len(items)):
            if torch.isnan(logits[r]).any():
                out.append(failed("non-finite logits"))
                continue
            pairs = [(self.tokenizer.decode([group[int(b.indices[r])]]), float(b.values[r]))
                     for group, b in zip(self.label_token_ids, best)]
            out.append(probs_from_top_logprobs(pairs, self.tokenizer.decode([int(top[r])])))
        return out

    def _judge_safely(self, items: Sequence[JudgeItem]) -> list[Judgment]:
        try:
            return self._judge_batch(items)
        except Exception as e:  # e.g. out of memory on a long batch: each item alone, then its failure
            if len(items) == 1:
                return [failed_by(e)]
            return [self._judge_safely([it])[0] for it in items]

    def judge(self, items: Sequence[JudgeItem], progress: bool = False,
              on_result: OnResult | None = None) -> list[Judgment]:
        """Batched; items are grouped by prompt length to save padding; results in input order."""
        order = sorted(range(len(items)), key=lambda i: len(items[i].question) + len(items[i].answer))
        results: list[Judgment | None] = [None] * len(items)
        with progress_bar(len(items), f"judge {self.name}", progress) as bar:
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                for i, j in zip(idx, self._judge_safely([items[i] for i in idx])):
                    results[i] = j
                    if on_result is not None:
                        on_result(i, j)
                bar.update(len(idx))
        return results  # type: ignore[return-value]


def judge_identity(model: str, revision: str | None = None) -> str:
    """vd.core.weights.model_identity, and for a folder its tokenizer's digest too: the judge reads the
    model through its chat template, so a replaced template or vocabulary judges differently."""
    identity = model_identity(model, revision)
    return f"{identity}+tok:{tokenizer_digest(model)}" if Path(model).is_dir() else identity


def require_chat_template(tokenizer: Any, model: str) -> None:
    """ValueError unless the tokenizer has a chat template: the judge prompt is a chat, and a model
    without one is a base model, which reads every answer as about 1/3 of each stance."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"{model!r} has no chat template (its tokenizer's chat_template is not set); "
                         "the hf judge expects an instruction-tuned (chat) model, e.g. Qwen/Qwen2.5-7B-Instruct, "
                         "asked through its own chat template: use an instruct model, or add the model's chat "
                         "template to its tokenizer_config.json")


def _whole(model: str, e: BaseException) -> str:
    """The whole message of a failure to load `model` as a judge, on one line (nothing cut)."""
    text = " ".join(str(e).split()) or type(e).__name__
    return redact_known(f"judge.model: {model!r} does not load as a judge: {text}")  # a hub error may quote a token


def _load_model(path: str, revision: str | None, device: str | None, dtype: Any, load_in_4bit: bool):
    """The causal LM at `path`: on a GPU straight onto it (device_map, no copy through host memory), in
    `dtype` (default: the GPU's compute dtype), or 4-bit NF4 with double quantization; fp32 on CPU."""
    import torch
    from transformers import AutoModelForCausalLM

    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    on_gpu = torch.cuda.is_available() and (device is None or str(device).startswith("cuda"))
    if not on_gpu:
        if load_in_4bit:
            log.warning("judge.load_in_4bit: no GPU here, so the judge is loaded unquantized in fp32")
        model = AutoModelForCausalLM.from_pretrained(path, revision=revision, dtype=dtype or torch.float32)
        return model.to(device or "cpu")
    dtype = dtype or gpu_dtype()
    target = torch.device(device) if device is not None else torch.device("cuda", torch.cuda.current_device())
    kwargs: dict[str, Any] = {"dtype": dtype, "device_map": {"": target.index if target.index is not None else 0}}
    if load_in_4bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                           bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype)
    return AutoModelForCausalLM.from_pretrained(path, revision=revision, **kwargs)
