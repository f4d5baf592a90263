"""Merging an adapter shard by shard (vd.models.merging, through vd.models.loading.merge_adapter): the result
equals PEFT's `merge_and_unload()` weight for weight, for a policy (LoRA and chat-token rows, tied and untied
output layer) and for a reward model (LoRA and its score head), and the full model is never loaded: every
from_pretrained raises during the merge, and no output shard exceeds the shard bound."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_framing import LLAMA3_SPECIALS, local_base

from vd.core.config import load_config

CHAT_ROWS = [3, 4, 5]  # <|start_header_id|>, <|end_header_id|>, <|eot_id|> in local_base's vocabulary


@pytest.fixture(scope="module", params=["tied", "untied"])
def base(request, tmp_path_factory) -> tuple[Path, str]:
    """A Llama-3-style base saved in several safetensors shards (tied or untied output layer)."""
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    folder = Path(local_base(tmp_path_factory.mktemp("base"), LLAMA3_SPECIALS, "<|begin_of_text|>",
                             "<|end_of_text|>"))
    model = AutoModelForCausalLM.from_pretrained(folder)
    if request.param == "untied":
        model.config.tie_word_embeddings = False
        untied = LlamaForCausalLM(model.config)
        untied.load_state_dict({**model.state_dict(), "lm_head.weight": model.lm_head.weight.detach() + 0.01})
        model = untied
    for f in folder.glob("model*.safetensors"):
        f.unlink()
    model.save_pretrained(folder, max_shard_size="20KB")
    assert len(list(folder.glob("model-*.safetensors"))) >= 3
    return folder, request.param


def make_adapter(base: Path, out: Path, task: str) -> Path:
    """A trained-looking adapter: non-zero LoRA B, changed chat-token rows (policy) or score head (reward)."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from vd.models import loading

    torch.manual_seed(1)
    cfg = load_config("llama3-3b", {"model.base": str(base)})
    if task == "causal":
        model = AutoModelForCausalLM.from_pretrained(base)
        lora = loading.policy_lora_config(cfg, model, loading.load_tokenizer(cfg, str(base)))
    else:
        model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
        model.config.pad_token_id = model.config.eos_token_id
        lora = loading.lora_config(cfg, "SEQ_CLS")
    lora.init_lora_weights = False  # B random too: every delta non-zero
    peft_model = get_peft_model(model, lora)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if p.requires_grad and "lora_" not in name:  # token rows, score head
                p.add_(torch.randn_like(p))
    peft_model.save_pretrained(out)
    return out


def peft_merged(base: Path, adapter: Path, head: str) -> dict:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    if head == "score":
        model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
    else:
        model = AutoModelForCausalLM.from_pretrained(base)
    return PeftModel.from_pretrained(model, str(adapter)).merge_and_unload().state_dict()


def saved_weights(folder: Path) -> dict:
    out = {}
    for f in folder.glob("*.safetensors"):
        out.update(load_file(f))
    return out


@pytest.mark.parametrize("head", ["causal", "score"])
def test_shardwise_merge_equals_peft_and_never_loads_the_model(base, head, tmp_path, monkeypatch):
    from transformers.modeling_utils import PreTrainedModel

    from vd.models import loading, merging

    base, kind = base
    cfg = load_config("llama3-3b", {"model.base": str(base)})
    adapter = make_adapter(base, tmp_path / "adapter", head)
    if head == "causal":  # the chat tokens' rows: the embedding's (a tied lm_head follows), or both layers'
        tokens = json.loads((adapter / "adapter_config.json").read_text())["trainable_token_indices"]
        assert tokens == (CHAT_ROWS if kind == "tied" else {"model.embed_tokens": CHAT_ROWS, "lm_head": CHAT_ROWS})
    expected = peft_merged(base, adapter, head)

    def never(*a, **k):
        raise AssertionError("the merge loaded a whole model")

    monkeypatch.setattr(PreTrainedModel, "from_pretrained", classmethod(never))
    bound = 20_000
    monkeypatch.setattr(merging, "MAX_SHARD_BYTES", bound)
    out = loading.merge_adapter(cfg, str(base), adapter, tmp_path / "merged", head=head)
    monkeypatch.undo()

    shards = sorted(out.glob("model-*.safetensors"))
    assert len(shards) >= 3 and (out / "model.safetensors.index.json").is_file()
    for shard in shards:  # one shard at a time in RAM: each is bounded (a larger tensor alone in its shard)
        weights = load_file(shard)
        assert len(weights) == 1 or sum(t.numel() * t.element_size() for t in weights.values()) <= bound
    merged = saved_weights(out)
    tied = "lm_head.weight" not in merged and head == "causal"
    want = {k: v for k, v in expected.items() if not (tied and k == "lm_head.weight")}
    assert merged.keys() == want.keys()
    assert all(torch.equal(merged[k], want[k]) for k in want), [k for k in want if not torch.equal(merged[k], want[k])]
    assert not any("lora" in k or "token_adapter" in k or "modules_to_save" in k for k in merged)

    # it loads as the model PEFT's merge is, and computes the same
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    auto = AutoModelForSequenceClassification if head == "score" else AutoModelForCausalLM
    loaded = auto.from_pretrained(out)
    ids = torch.tensor([[1, 3, 40, 4, 50, 5, 60]])
    assert all(torch.equal(t, expected[k]) for k, t in loaded.state_dict().items())
    with torch.no_grad():
        assert torch.isfinite(loaded(ids).logits).all()
    if head == "score":
        assert loaded.config.num_labels == 1 and loaded.config.pad_token_id is not None


def test_a_base_without_safetensors_is_merged_in_memory(tmp_path):
    """A base saved as pytorch_model.bin (older checkpoints): PEFT's merge, with a note."""
    from transformers import AutoModelForCausalLM

    from vd.models import loading

    folder = Path(local_base(tmp_path / "base", LLAMA3_SPECIALS, "<|begin_of_text|>", "<|end_of_text|>"))
    model = AutoModelForCausalLM.from_pretrained(folder)
    for f in folder.glob("model*.safetensors"):
        f.unlink()
    torch.save(model.state_dict(), folder / "pytorch_model.bin")  # transformers 5 saves safetensors only
    cfg = load_config("llama3-3b", {"model.base": str(folder)})
    adapter = make_adapter(folder, tmp_path / "adapter", "causal")
    out = loading.merge_adapter(cfg, str(folder), adapter, tmp_path / "merged")
    merged, expected = saved_weights(out), peft_merged(folder, adapter, "causal")
    assert merged and all(torch.equal(merged[k], expected[k]) for k in merged)
