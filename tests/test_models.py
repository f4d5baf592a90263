"""Tokenizer set-up for base models: the project's chat template on tokenizers with and without ChatML
tokens (Llama-3's own format: tests/test_framing.py)."""

import pytest

from vd.core.config import load_config
from vd.models.loading import END_OF_TURN, compute_dtype, end_of_turn_ids, load_tokenizer, use_4bit


def _plain_tokenizer(tmp_path, extra_special=()):
    """A byte-level BPE tokenizer with no chat tokens at all (no ChatML, no Llama-3 header tokens)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    specials = ["<|end_of_text|>", *extra_special]
    bpe.train_from_iterator(["Is a carbon tax fair? It depends on the situation."] * 20,
                            trainers.BpeTrainer(vocab_size=300, special_tokens=specials,
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                show_progress=False))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|end_of_text|>")
    tok.save_pretrained(tmp_path)
    return str(tmp_path)


MESSAGES = [{"role": "user", "content": "Is a carbon tax fair?"},
            {"role": "assistant", "content": "It depends on the situation."}]


def test_tiny_tokenizer_keeps_plain_chatml(tiny_world, tiny_cfg):
    tok = load_tokenizer(tiny_cfg, str(tiny_world.model_dir))
    text = tok.apply_chat_template(MESSAGES, tokenize=False)
    # nothing after the last turn's end: a completion ends where generation stops
    assert text == ("<|im_start|>user\nIs a carbon tax fair?<|im_end|>\n"
                    "<|im_start|>assistant\nIt depends on the situation.<|im_end|>")
    prompt = tok.apply_chat_template(MESSAGES[:1], tokenize=False, add_generation_prompt=True)
    assert text.startswith(prompt) and prompt.endswith("<|im_end|>\n<|im_start|>assistant\n")
    assert tok.bos_token is None  # no BOS: none in the template either
    assert tok.pad_token == "<|endoftext|>" and tok.eos_token == END_OF_TURN
    assert end_of_turn_ids(tok) == [tok.convert_tokens_to_ids(END_OF_TURN)]


def test_tokenizer_without_chatml_tokens_ends_turns_with_its_own_eos(tmp_path, tiny_cfg):
    tok = load_tokenizer(tiny_cfg, _plain_tokenizer(tmp_path))
    text = tok.apply_chat_template(MESSAGES, tokenize=False)
    assert text.endswith("It depends on the situation.<|im_end|><|end_of_text|>")
    out = tok.apply_chat_template(MESSAGES, return_dict=True, return_assistant_tokens_mask=True)
    trained = [t for t, m in zip(out["input_ids"], out["assistant_masks"]) if m]
    assert trained[-1] == tok.eos_token_id  # SFT teaches the model to end its turn with the eos token
    assert tok.eos_token_id in end_of_turn_ids(tok)
    assert tok.pad_token == tok.eos_token  # no spare token in this vocabulary: documented fallback


def test_spare_pad_token_is_preferred_over_eos(tmp_path, tiny_cfg):
    tok = load_tokenizer(tiny_cfg, _plain_tokenizer(tmp_path, ["<|finetune_right_pad_id|>"]))
    assert tok.pad_token == "<|finetune_right_pad_id|>" and tok.pad_token_id != tok.eos_token_id


def test_own_template_required_when_asked_for(tmp_path):
    cfg = load_config("tiny", ["model.chat_template=model"])
    with pytest.raises(ValueError, match="model.chat_template: 'model' but tiny has no chat template; use 'project'"):
        load_tokenizer(cfg, _plain_tokenizer(tmp_path))


def test_cpu_never_quantizes_and_uses_fp32():
    import torch

    cfg = load_config("llama3-3b")
    if not torch.cuda.is_available():
        assert not use_4bit(cfg) and compute_dtype(cfg) == torch.float32


def test_a_t4_computes_in_fp16_not_emulated_bf16(monkeypatch):
    """A T4 (compute capability 7.5) reports bf16 support only through emulation: vd computes in fp16 there,
    in bf16 on an Ampere or newer GPU, and the notebooks' environment report says which."""
    import torch

    from vd.core import precision
    from vd.study import colab

    def t4(including_emulation=True):  # what torch says on a T4
        return including_emulation

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", t4)
    cfg = load_config("llama3-3b")
    assert not precision.native_bf16() and compute_dtype(cfg) == torch.float16
    assert precision.gpu_dtype("auto") == torch.float16 and precision.gpu_dtype("bf16") == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda i: type("P", (), {"name": "Tesla T4", "total_memory": 15 * 2**30})())
    assert "bf16 no (fp16 compute)" in colab.environment_report()
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)  # an A100
    assert precision.native_bf16() and compute_dtype(cfg) == torch.bfloat16
