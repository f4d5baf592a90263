"""Stance judge on a local instruction model: the judge prompt through its chat template, softmax over
the next-token logits of the three labels."""

from __future__ import annotations

import inspect
import math
from typing import Any, Sequence

from vd.core.stances import STANCES
from vd.judge.base import Judgment, JudgeItem, OnResult, failed, progress_bar, softmax3
from vd.judge.prompt import JUDGE_PROMPTS, judge_messages


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
                out.append(failed(f"non-finite label logits: {x}"))
            else:
                out.append(Judgment(softmax3(x), "ok"))
        return out

    def judge(self, items: Sequence[JudgeItem], progress: bool = False,
              on_result: OnResult | None = None) -> list[Judgment]:
        """Batched; items are grouped by prompt length to save padding; results in input order."""
        order = sorted(range(len(items)), key=lambda i: len(items[i].question) + len(items[i].answer))
        results: list[Judgment | None] = [None] * len(items)
        with progress_bar(len(items), f"judge {self.name}", progress) as bar:
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                for i, j in zip(idx, self._judge_batch([items[i] for i in idx])):
                    results[i] = j
                    if on_result is not None:
                        on_result(i, j)
                bar.update(len(idx))
        return results  # type: ignore[return-value]
