"""Generation: reproducible per (checkpoint, prompt, sample index), independent of batching."""

import pytest
import torch

from vd.models.generate import Sampling, generate_answers, naive_generate


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_world):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return (AutoModelForCausalLM.from_pretrained(tiny_world.model_dir).eval(),
            AutoTokenizer.from_pretrained(tiny_world.model_dir))


@pytest.fixture(scope="module")
def prompts():
    from vd.data.probes import load_probes

    probes = load_probes(prompts_per_topic=2)
    return list(zip(probes["id"], probes["question"]))


def _by_key(rows):
    return {(r["prompt_id"], r["sample_index"]): r["text"] for r in rows}


@pytest.mark.slow
def test_sampling_is_reproducible_and_independent_of_batch_size(model_and_tokenizer, prompts):
    model, tok = model_and_tokenizer
    sampling = Sampling(samples_per_prompt=3, temperature=0.7, max_new_tokens=24, seed=5)
    a = _by_key(generate_answers(model, tok, prompts, sampling, batch_size=64))
    b = _by_key(generate_answers(model, tok, prompts, sampling, batch_size=64))
    c = _by_key(generate_answers(model, tok, prompts[::-1], sampling, batch_size=6))
    assert len(a) == len(prompts) * 3
    assert a == b
    same = sum(a[k] == c[k] for k in a)
    # Other batch compositions change padding, which can move logits by float rounding; almost every
    # answer must still be identical.
    assert same >= 0.95 * len(a), same
    assert len(set(a.values())) > len(a) // 2  # samples differ from each other
    other_seed = _by_key(generate_answers(model, tok, prompts, Sampling(3, 0.7, 1.0, 24, seed=6), batch_size=64))
    assert sum(a[k] != other_seed[k] for k in a) > len(a) // 2


@pytest.mark.slow
def test_wanted_subset_gives_the_same_answers(model_and_tokenizer, prompts):
    model, tok = model_and_tokenizer
    sampling = Sampling(samples_per_prompt=3, temperature=0.7, max_new_tokens=24, seed=1)
    full = _by_key(generate_answers(model, tok, prompts, sampling, batch_size=64))
    wanted = {(prompts[0][0], 2), (prompts[5][0], 0)}
    part = _by_key(generate_answers(model, tok, prompts, sampling, batch_size=64, wanted=wanted))
    assert set(part) == wanted
    assert all(part[k] == full[k] for k in wanted)


def test_each_answer_names_the_prompt_it_was_asked_by_its_token_ids(model_and_tokenizer, prompts, tiny_world):
    from vd.core.cache import prompt_hash
    from vd.models.generate import chat_prompt_ids, context_length

    model, tok = model_and_tokenizer
    rows = generate_answers(model, tok, prompts[:3], Sampling(2, 0.7, 1.0, 8, seed=1), batch_size=64)
    expected = {pid: prompt_hash(chat_prompt_ids(tok, q)) for pid, q in prompts[:3]}
    assert {(r["prompt_id"], r["prompt_hash"]) for r in rows} == set(expected.items())
    assert len(set(expected.values())) == 3 and prompt_hash([1, 2]) != prompt_hash([12])
    assert context_length(str(tiny_world.model_dir)) == 256  # the tiny model's max_position_embeddings


@pytest.mark.slow
def test_batched_greedy_equals_one_at_a_time(model_and_tokenizer, prompts):
    model, tok = model_and_tokenizer
    greedy = Sampling(samples_per_prompt=1, temperature=0.0, max_new_tokens=24, seed=0)
    batched = _by_key(generate_answers(model, tok, prompts, greedy, batch_size=32))
    single = {}
    for p in prompts:
        single.update(_by_key(generate_answers(model, tok, [p], greedy)))
    assert batched == single
    naive = _by_key(naive_generate(model, tok, prompts[:4], greedy))
    assert all(naive[k] == batched[k] for k in naive)  # the same as HF generate's greedy output


@pytest.mark.slow
def test_answers_stop_at_end_of_turn(model_and_tokenizer, prompts):
    model, tok = model_and_tokenizer
    rows = generate_answers(model, tok, prompts[:6], Sampling(2, 0.7, 1.0, 48, 0))
    assert all("<|im_end|>" not in r["text"] and "<|im_start|>" not in r["text"] for r in rows)
    assert all(0 < r["n_new_tokens"] < 48 for r in rows)  # tiny answers end well before the cap


def test_inverse_cdf_sampler_draws_each_token_at_its_probability():
    """vd.models.generate._sample on one known distribution, many rows: frequencies match softmax(logits / T),
    top-p drops exactly the tail, and greedy takes the argmax."""
    import torch

    from vd.models.generate import _sample

    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05])).repeat(40_000, 1)
    uniform = torch.rand(40_000, generator=torch.Generator().manual_seed(0))
    drawn = _sample(logits, Sampling(temperature=1.0), uniform)
    freq = torch.bincount(drawn, minlength=4).double() / len(drawn)
    assert torch.allclose(freq, torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.double), atol=0.01)
    sharper = torch.softmax(torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05])) / 0.5, -1).double()
    freq = torch.bincount(_sample(logits, Sampling(temperature=0.5), uniform), minlength=4).double() / len(drawn)
    assert torch.allclose(freq, sharper, atol=0.01)
    top = _sample(logits, Sampling(temperature=1.0, top_p=0.8), uniform)  # keeps 0.5 + 0.3
    freq = torch.bincount(top, minlength=4).double() / len(top)
    assert freq[2] == freq[3] == 0 and abs(freq[0] - 0.5 / 0.8) < 0.01
    assert (_sample(logits, Sampling(temperature=0.0), uniform) == 0).all()


# Where ChatML is text (no chat tokens of its own, e.g. Llama-3 prompted with ChatML), answers an SFT model
# wrote kept half-learned markers like these (docs/decisions.md).
MARKER_FRAGMENTS = ["Fim_end|>", "<|im_end\t", "<|im_end|>", "<|im_start|>assistant\n", "im_end|>"]


@pytest.mark.parametrize("fragment", MARKER_FRAGMENTS)
def test_clean_cuts_at_a_marker_fragment(fragment):
    from vd.models.generate import _clean

    assert _clean(f"It depends on the situation.{fragment}user\nAnd then?") == "It depends on the situation."


@pytest.mark.parametrize("cut", ["<", "<|", "<|im", "<|im_en", "<|im_end", "<|im_end|", "<|im_sta"])
def test_clean_drops_a_marker_cut_off_at_the_end(cut):
    from vd.models.generate import _clean

    assert _clean(f"It depends on the situation. {cut}") == "It depends on the situation."


def test_clean_leaves_plain_answers_alone():
    from vd.models.generate import _clean

    for text in ["It depends on the situation.", "Yes: 3 < 4, and | is a pipe.", "A claim, ended."]:
        assert _clean(text) == text


class Scripted(torch.nn.Module):
    """A causal LM whose next token is forced: decoding step k emits script[k] (then the last one again)."""

    def __init__(self, model, script: list[int]):
        super().__init__()
        self.model, self.script, self.step = model, script, 0

    def forward(self, past_key_values=None, **kwargs):
        out = self.model(past_key_values=past_key_values, **kwargs)
        if past_key_values is None:  # the prefill: a new batch
            self.step = 0
        forced = torch.full_like(out.logits, -1e4)
        forced[..., self.script[min(self.step, len(self.script) - 1)]] = 0.0
        out.logits, self.step = forced, self.step + 1
        return out


def _model(folder, tiny_cfg, specials: list[str]):
    """A byte-level BPE tokenizer with `specials` (the first its BOS, put first as Llama-3's is; the second
    its eos), with the project's chat template, and a tiny random Llama of its vocabulary."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from vd.models.loading import load_tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(["It depends on the situation. And then? user assistant im_end im_start"] * 20,
                            trainers.BpeTrainer(vocab_size=300, special_tokens=specials, show_progress=False,
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    bpe.post_processor = processors.TemplateProcessing(single=f"{specials[0]} $A", special_tokens=[(specials[0], 0)])
    PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=specials[0], eos_token=specials[1]).save_pretrained(folder)
    tok = load_tokenizer(tiny_cfg, str(folder), padding_side="left")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, head_dim=8)).eval()
    return model, tok


@pytest.fixture(scope="module")
def plain_model(tmp_path_factory, tiny_cfg):
    """No chat tokens: ChatML is text."""
    return _model(tmp_path_factory.mktemp("plain"), tiny_cfg, ["<s>", "</s>"])


@pytest.mark.parametrize("fragment", MARKER_FRAGMENTS)
def test_no_stored_answer_keeps_a_marker_fragment(plain_model, prompts, fragment):
    from vd.core.chat import chat_format

    model, tok = plain_model
    assert chat_format(tok) == "chatml-text"
    answer = "It depends on the situation."
    # the model writes the answer, a half-learned marker, a new turn, and ends with eos (its end of turn)
    script = tok(answer + fragment + "user\nAnd then?", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    greedy = Sampling(samples_per_prompt=2, temperature=0.0, max_new_tokens=len(script) + 5)
    rows = generate_answers(Scripted(model, script), tok, prompts[:3], greedy)
    assert [r["text"] for r in rows] == [answer] * 6
    assert all(r["n_new_tokens"] == len(script) for r in rows)  # stopped at eos
    cut = Sampling(samples_per_prompt=1, temperature=0.0, max_new_tokens=len(script) - 4)  # cut inside the turn
    assert {r["text"] for r in generate_answers(Scripted(model, script), tok, prompts[:2], cut)} == {answer}


def test_llama3_answers_end_at_its_single_token_end_of_turn(tmp_path, tiny_cfg, prompts):
    from vd.core.chat import chat_format

    model, tok = _model(tmp_path, tiny_cfg, ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                                             "<|end_header_id|>", "<|eot_id|>"])
    assert chat_format(tok) == "llama3"
    answer = "It depends on the situation."
    script = tok(answer, add_special_tokens=False)["input_ids"]
    for end in ("<|eot_id|>", "<|end_of_text|>"):  # its end of turn, and a bare base's end of document
        after = tok("<|start_header_id|>user<|end_header_id|>And then?", add_special_tokens=False)["input_ids"]
        greedy = Sampling(samples_per_prompt=1, temperature=0.0, max_new_tokens=len(script) + 8)
        rows = generate_answers(Scripted(model, script + [tok.convert_tokens_to_ids(end)] + after), tok, prompts[:2],
                                greedy)
        assert [(r["text"], r["n_new_tokens"]) for r in rows] == [(answer, len(script) + 1)] * 2
