"""The hf judge as a user's model folder meets it: known by its weights, tokenizer and precision, not its
path; refused at once without a chat template; loaded straight onto the GPU (optionally in 4-bit NF4).
And the one function every caller of an OpenAI-compatible endpoint asks for its key."""

from __future__ import annotations

import logging
import shutil

import pytest
from test_judge import CHATML, HF_LOGITS, HF_WORDS, FixedNextToken, _word_tokenizer  # noqa: F401

from vd.core.cache import Store
from vd.core.config import ConfigError, JudgeConfig
from vd.core.weights import model_identity, tokenizer_digest, weights_digest
from vd.judge import CachedJudge, HFJudge, JudgeItem, JudgeUnavailable, check_available, make_judge
from vd.judge import hf as hf_mod
from vd.judge.endpoint import PLACEHOLDER_KEY, MissingAPIKey, api_key_for

torch = pytest.importorskip("torch")
ITEMS = [JudgeItem("Should we stop immigration?", "The answer.", "immigration"),
         JudgeItem("Is religion good?", "support", "religion")]


def _save_model(folder, seed: int, chat_template: str | None = CHATML):
    """A 1-layer random Qwen3 model and a word-level tokenizer (with `chat_template`) saved to `folder`."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tok = _word_tokenizer(HF_WORDS)
    tok.chat_template = chat_template
    torch.manual_seed(seed)
    cfg = Qwen3Config(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=512)
    Qwen3ForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_the_hf_judge_is_known_by_its_weights_not_its_folder(tmp_path):
    # the key was "hf:<folder>:v1:...": a model replaced in its folder reused the old one's judgments
    folder = _save_model(tmp_path / "judge", seed=0)
    first = HFJudge(str(folder))
    assert first.key == f"hf:sha256:{weights_digest(folder)}+tok:{tokenizer_digest(folder)}:v1:labels-2"
    assert str(folder) not in first.key
    assert HFJudge(str(shutil.copytree(folder, tmp_path / "copy"))).key == first.key  # a copy is the same judge
    with Store(tmp_path / "cache.sqlite") as store:
        CachedJudge(first, store).judge(ITEMS)
        _save_model(folder, seed=1)  # another model saved over it
        replaced = make_judge(JudgeConfig(kind="hf", model=str(folder)))
        assert replaced.key != first.key and replaced.key.startswith("hf:sha256:")
        again = CachedJudge(replaced, store)
        again.judge(ITEMS)
        assert again.counts["cached"] == 0 and again.counts["judged"] == len(ITEMS)  # nothing stale reused
    # training models and the judge share one identity; a hub id is known by id@revision
    from vd.models import loading

    assert loading.model_identity is model_identity
    assert model_identity("Qwen/Qwen2.5-7B-Instruct") == "hub:Qwen/Qwen2.5-7B-Instruct@main"
    assert model_identity("Qwen/Qwen2.5-7B-Instruct", "a1b2c3") == "hub:Qwen/Qwen2.5-7B-Instruct@a1b2c3"
    with pytest.raises(FileNotFoundError, match="no model weights"):
        model_identity(str(tmp_path))


def test_an_hf_judge_without_a_chat_template_is_refused_before_any_weights_load(tmp_path, monkeypatch):
    # it failed only after every answer was generated, each item with a message cut mid-word
    folder = _save_model(tmp_path / "base-model", seed=0, chat_template=None)
    from transformers import AutoModelForCausalLM

    def no_weights(*a, **k):
        raise AssertionError("the weights were loaded")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", no_weights)
    cfg = JudgeConfig(kind="hf", model=str(folder))
    for call in (check_available, make_judge):
        with pytest.raises(JudgeUnavailable) as e:
            call(cfg)
        message = str(e.value)
        assert isinstance(e.value, ConfigError) and "\n" not in message
        assert message.startswith(f"judge.model: {str(folder)!r} does not load as a judge: "
                                  f"{str(folder)!r} has no chat template")
        assert "expects an instruction-tuned (chat) model" in message
        assert message.endswith("add the model's chat template to its tokenizer_config.json")  # whole, not cut


def _fake_weights(tmp_path):
    """A folder holding a tokenizer with a chat template and a stand-in weight file."""
    folder = tmp_path / "judge"
    _word_tokenizer(HF_WORDS).save_pretrained(folder)
    (folder / "model.safetensors").write_bytes(b"stand-in weights")
    return folder


def test_the_hf_judge_is_known_by_its_tokenizer_and_precision_too(tmp_path, monkeypatch):
    # the key named the weights only: a replaced chat template, or NF4 instead of 16-bit, reused old judgments
    from transformers import AutoModelForCausalLM

    from vd.core import weights

    folder = _save_model(tmp_path / "judge", seed=0)
    first = HFJudge(str(folder)).key
    hashed = weights._digest.cache_info().misses
    assert HFJudge(str(folder)).key == first  # nothing changed: the same judge, its files not hashed again
    assert weights._digest.cache_info().misses == hashed
    digest = weights_digest(folder)
    tok = _word_tokenizer(HF_WORDS)
    tok.chat_template = CHATML.replace("<|im_start|>assistant", "<|im_start|>judge")
    tok.save_pretrained(folder)  # another chat template beside the same weights
    assert weights_digest(folder) == digest and HFJudge(str(folder)).key not in (first, None)
    # NF4 on a GPU (faked: the loader marks the model as bitsandbytes does), and on CPU, where it is ignored
    tok = _word_tokenizer(HF_WORDS)

    def from_pretrained(path, **kwargs):
        model = FixedNextToken(tok, HF_LOGITS)
        model.is_loaded_in_4bit = "quantization_config" in kwargs
        model.to = lambda *a, **k: model
        return model

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", from_pretrained)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(hf_mod, "gpu_dtype", lambda choice="auto": torch.float16)
    full, nf4 = HFJudge(str(folder)).key, HFJudge(str(folder), load_in_4bit=True).key
    assert nf4 == full + ":nf4"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert HFJudge(str(folder), load_in_4bit=True).key == HFJudge(str(folder)).key == full  # fp32 either way


def test_the_hf_judge_loads_straight_onto_the_gpu_in_its_dtype_or_in_nf4(tmp_path, monkeypatch, caplog):
    # it loaded the whole model in host memory, then copied it to the GPU, and had no 4-bit option
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    folder = _fake_weights(tmp_path)
    tok = _word_tokenizer(HF_WORDS)
    loads, moves = [], []

    def from_pretrained(path, **kwargs):
        loads.append(kwargs)
        model = FixedNextToken(tok, HF_LOGITS)
        model.to = lambda *a, **k: (moves.append(a), model)[1]
        return model

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", from_pretrained)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(hf_mod, "gpu_dtype", lambda choice="auto": torch.float16)  # a T4, say
    judge = HFJudge(str(folder))
    assert loads[-1] == {"revision": None, "dtype": torch.float16, "device_map": {"": 0}} and moves == []
    assert judge.judge(ITEMS)[0].status == "ok"
    HFJudge(str(folder), load_in_4bit=True, revision="abc")
    q = loads[-1].pop("quantization_config")
    assert loads[-1] == {"revision": "abc", "dtype": torch.float16, "device_map": {"": 0}}
    assert isinstance(q, BitsAndBytesConfig) and q.load_in_4bit and q.bnb_4bit_quant_type == "nf4"
    assert q.bnb_4bit_use_double_quant and q.bnb_4bit_compute_dtype == torch.float16 and moves == []
    # 4-bit on a GPU needs bitsandbytes: said before any loading (it is not installed here)
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        with pytest.raises(JudgeUnavailable, match=r"^judge\.load_in_4bit: true needs the bitsandbytes package"):
            check_available(JudgeConfig(kind="hf", model=str(folder), load_in_4bit=True))
    # without a GPU: fp32, no device map, and 4-bit said to be ignored
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    loads.clear()
    with caplog.at_level(logging.WARNING, logger="vd.judge"):
        HFJudge(str(folder), load_in_4bit=True)
    assert loads == [{"revision": None, "dtype": torch.float32}] and moves == [("cpu",)]
    assert "judge.load_in_4bit: no GPU here" in caplog.text


def test_one_function_gives_the_api_key_for_a_base_url(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert api_key_for("http://127.0.0.1:8000/v1") == PLACEHOLDER_KEY  # a local server: no key needed
    with pytest.raises(MissingAPIKey, match="OPENAI_API_KEY") as e:
        api_key_for(None)
    assert isinstance(e.value, ConfigError)
    with pytest.raises(MissingAPIKey, match="^my message$"):
        api_key_for(None, "my message")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://10.0.0.5:8000/v1")  # what the client itself reads
    assert api_key_for(None) == PLACEHOLDER_KEY
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env-123456")
    assert api_key_for(None) == api_key_for("http://127.0.0.1:8000/v1") == "sk-from-env-123456"
