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
    cfg = load_config("tiny", ["model.chat_template=own"])
    with pytest.raises(ValueError, match="model.chat_template: 'own' but tiny has no chat template"):
        load_tokenizer(cfg, _plain_tokenizer(tmp_path))


def test_cpu_never_quantizes_and_uses_fp32():
    import torch

    cfg = load_config("llama3-3b")
    if not torch.cuda.is_available():
        assert not use_4bit(cfg) and compute_dtype(cfg) == torch.float32
