"""vd.score.policy_fit: per-token log-probabilities of data under a policy, beside the policy's own answers.

Checked against a hand-written computation (one unpadded forward per answer, tokenised from the chat
template's text), for padding and batching invariance, through a PEFT wrapper, and for the verdict:
the policy's own samples are on policy and raise no warning, text it never writes is far off and warns.
"""

import math
import warnings

import pytest
import torch

from vd.models.generate import Sampling, chat_prompt_ids
from vd.score import policy_fit as pf


@pytest.fixture(scope="module")
def policy(tiny_world):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_world.model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_world.model_dir, dtype=torch.float32).eval()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny model gains nothing from a 2nd thread, and loses much on a busy core
    yield model, tok
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def rows(tiny_world):
    return tiny_world.load_rows("ultrafeedback")[:6]


def _hand_logprob(model, tok, messages, answer):
    """Sum and count of the answer's token log-probs: the template's text, tokenised, one forward, no
    padding; the answer is what follows the generation prompt, through <|im_end|>."""
    prompt_text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    prompt_ids = tok(prompt_text, add_special_tokens=False)["input_ids"]
    answer_ids = tok(answer + "<|im_end|>", add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt_ids + answer_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), dim=-1)
    total = sum(logp[len(prompt_ids) + k - 1, t].item() for k, t in enumerate(answer_ids))
    return total, len(answer_ids)


def _pairs(rows):
    pairs = [(r["prompt"], r[side]) for r in rows for side in ("chosen", "rejected")]
    # a multi-turn prompt (HH-RLHF rows have them) and a plain-string question
    multi = [{"role": "user", "content": "Is a carbon tax fair?"},
             {"role": "assistant", "content": "It depends on the situation."},
             {"role": "user", "content": "And what about refugees?"}]
    pairs += [(multi, [{"role": "assistant", "content": "As for refugees, I agree with this."}]),
              ("Should we ban nuclear weapons?", "War and peace, no, I oppose this.")]
    return pairs


def test_tokenised_as_probing_does(policy, rows):
    model, tok = policy
    prompt, answer = rows[0]["prompt"], rows[0]["chosen"]
    prompt_ids, answer_ids = pf.encode_pair(tok, prompt, answer)
    assert prompt_ids == chat_prompt_ids(tok, prompt[0]["content"])
    assert answer_ids[-1] == tok.convert_tokens_to_ids("<|im_end|>")
    assert tok.decode(answer_ids) == answer[0]["content"] + "<|im_end|>"
    # the answer as text, its message, or a one-message list: the same tokens
    assert pf.encode_pair(tok, prompt[0]["content"], answer[0]["content"]) == (prompt_ids, answer_ids)
    assert pf.encode_pair(tok, prompt, answer[0]) == (prompt_ids, answer_ids)


def test_matches_a_direct_unbatched_computation(policy, rows):
    model, tok = policy
    pairs = _pairs(rows)
    got = pf.answer_logprobs(model, tok, pairs, batch_size=5)  # batches of mixed lengths: padding
    for (prompt, answer), row in zip(pairs, got.itertuples()):
        messages = pf._prompt_messages(prompt)
        text = pf._answer_message(answer)["content"]
        total, n = _hand_logprob(model, tok, messages, text)
        assert row.n_tokens == n
        assert math.isclose(row.sum_logprob, total, abs_tol=1e-4 * n), (text, row.sum_logprob, total)
        assert math.isclose(row.mean_logprob, total / n, abs_tol=1e-4)
    assert (got["mean_logprob"] < 0).all()


def test_padding_batching_and_order_do_not_change_the_values(policy, rows):
    model, tok = policy
    pairs = _pairs(rows)
    one = pf.answer_logprobs(model, tok, pairs, batch_size=1)["sum_logprob"].to_numpy()
    all_at_once = pf.answer_logprobs(model, tok, pairs, batch_size=64)["sum_logprob"].to_numpy()
    reversed_ = pf.answer_logprobs(model, tok, pairs[::-1], batch_size=3)["sum_logprob"].to_numpy()[::-1]
    assert abs(one - all_at_once).max() < 1e-3
    assert abs(one - reversed_).max() < 1e-3
    assert model.training is False


def test_peft_wrapped_policy_gives_the_same_values(policy, rows):
    """A fresh LoRA adapter is the identity (B = 0): through PeftModel the values must not move."""
    from peft import LoraConfig, get_peft_model

    model, tok = policy
    pairs = _pairs(rows)[:4]
    plain = pf.answer_logprobs(model, tok, pairs)["sum_logprob"].to_numpy()
    import copy

    wrapped = get_peft_model(copy.deepcopy(model), LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM"))
    assert abs(pf.answer_logprobs(wrapped, tok, pairs)["sum_logprob"].to_numpy() - plain).max() < 1e-4


def test_verdict_warns_on_off_policy_text_and_not_on_the_models_own_samples(policy, tiny_world):
    """The base model's own samples (to held-out probe questions), arranged as preference pairs, are on
    policy: no warning. The same prompts answered in text the tiny world never writes are far off:
    OffPolicyWarning, far_off True, and the gap below the policy's own answers exceeds FAR_OFF_NATS."""
    from vd.data.probes import load_probes

    model, tok = policy
    questions = load_probes()["question"].tolist()[::10]  # 55 probes, every topic
    sampling = Sampling(samples_per_prompt=3, temperature=1.0, max_new_tokens=64, seed=0)
    samples = pf.sample_answers(model, tok, questions, sampling)
    assert len(samples) > 100
    own, held_out = samples[::2], samples[1::2]  # the reference and the "data" are different samples
    own_rows = [{"prompt": [{"role": "user", "content": q}], "chosen": [{"role": "assistant", "content": a}],
                 "rejected": [{"role": "assistant", "content": b}]}
                for (q, a), (_, b) in zip(held_out[::2], held_out[1::2])]
    odd = ("Purple spreadsheets negotiate quietly with the moon on Tuesdays.",
           "Bananas, therefore, compile the orchestra beneath seventeen umbrellas.")
    off_rows = [{"prompt": r["prompt"], "chosen": [{"role": "assistant", "content": odd[0]}],
                 "rejected": [{"role": "assistant", "content": odd[1]}]} for r in own_rows]
    sft_rows = tiny_world.load_rows("wildchat")[:40]  # SFT rows: the world's own style, on the base's support

    with warnings.catch_warnings():
        warnings.simplefilter("error", pf.OffPolicyWarning)
        table = pf.policy_fit(model, tok, {"own": own_rows, "wildchat": sft_rows}, own=own)
    assert list(table["data"]) == ["policy", "own", "own", "wildchat"]
    assert list(table["side"]) == ["own", "chosen", "rejected", "answer"]
    assert not table["far_off"].any()
    assert (table["verdict"].iloc[1:] == "on policy").all(), table
    assert (table["gap"].iloc[1:].abs() < pf.NEAR_NATS).all(), table
    assert table["n"].iloc[0] == len(own) and table["n"].iloc[3] == 40

    with pytest.warns(pf.OffPolicyWarning, match="below the policy's own answers"):
        off = pf.policy_fit(model, tok, {"odd": off_rows}, own=own)
    assert off["far_off"].iloc[1:].all() and (off["verdict"].iloc[1:] == "far off policy").all()
    assert (off["gap"].iloc[1:] < -pf.FAR_OFF_NATS).all(), off
    assert off.columns.tolist() == ["data", "side", "n", "mean_logprob", "sem", "mean_tokens", "truncated", "dropped",
                                    "gap", "verdict", "far_off"]


def test_own_answers_are_sampled_when_not_given(policy, rows):
    model, tok = policy
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pf.OffPolicyWarning)
        table = pf.policy_fit(model, tok, rows, sampling=Sampling(2, 1.0, 1.0, 48, 0))
    assert table["data"].tolist() == ["policy", "data", "data"]
    assert table["n"].iloc[0] > 0 and table["gap"].iloc[0] == 0.0


def test_verdict_thresholds():
    assert pf.verdict(-0.1) == "on policy"
    assert pf.verdict(-1.0) == "off policy"
    assert pf.verdict(-pf.FAR_OFF_NATS - 0.01) == "far off policy"
    assert pf.verdict(float("nan")) == "unknown"


def _long_pairs(rows, words):
    """The rows' prompts with answers `words` words long (the tiny world's own words, so on policy)."""
    text = " ".join(["I support this because it is fair and people deserve it."] * (words // 11 + 1)).split()
    return [(r["prompt"], " ".join(text[:words])) for r in rows]


def test_memory_is_bounded_whatever_the_answer_length(policy, rows):
    """The output layer never makes more than `logit_chunk` positions of logits at once and the decoder never
    sees more than `max_batch_tokens` padded tokens (max_length below it), for short and long answers alike."""
    model, tok = policy
    seen = {"logits": 0, "tokens": 0}
    hooks = [model.get_output_embeddings().register_forward_hook(
                 lambda m, i, out: seen.update(logits=max(seen["logits"], out.numel()))),
             model.get_decoder().register_forward_pre_hook(
                 lambda m, a, kw: seen.update(tokens=max(seen["tokens"], kw["input_ids"].numel())), with_kwargs=True)]
    vocab = model.config.vocab_size
    try:
        for words in (10, 60, 180):
            seen.update(logits=0, tokens=0)
            got = pf.answer_logprobs(model, tok, _long_pairs(rows, words), batch_size=32, max_length=200,
                                     max_batch_tokens=256, logit_chunk=48)
            assert got["truncated"].any() == (words == 180)
            assert seen["logits"] <= 48 * vocab, words
            assert seen["tokens"] <= 256, words
    finally:
        for h in hooks:
            h.remove()


@pytest.mark.parametrize("batch_size,max_batch_tokens,logit_chunk", [(5, 60, 7), (64, 10 ** 6, 1), (3, 1, 1000)])
def test_chunked_and_batched_values_equal_the_direct_computation(policy, rows, batch_size, max_batch_tokens,
                                                                 logit_chunk):
    """Chunks that split answers and rows, batches bounded by tokens: the unbatched, unchunked values."""
    model, tok = policy
    pairs = _pairs(rows) + _long_pairs(rows[:2], 120)
    got = pf.answer_logprobs(model, tok, pairs, batch_size=batch_size, max_batch_tokens=max_batch_tokens,
                             logit_chunk=logit_chunk)
    for (prompt, answer), row in zip(pairs, got.itertuples()):
        total, n = _hand_logprob(model, tok, pf._prompt_messages(prompt), pf._answer_message(answer)["content"])
        assert row.n_tokens == n and not row.truncated
        assert math.isclose(row.sum_logprob, total, abs_tol=1e-4 * n), (row.sum_logprob, total)


def test_answers_past_max_length_are_cut_and_prompts_past_it_dropped(policy, rows):
    """An answer is scored on the tokens that fit max_length after its prompt (exact log-probs of those
    tokens); a prompt that fills max_length leaves nothing: dropped, NaN, and out of the table's mean."""
    model, tok = policy
    (prompt, answer), = _long_pairs(rows[:1], 150)
    prompt_ids, answer_ids = pf.encode_pair(tok, prompt, answer)
    limit = len(prompt_ids) + 20
    got = pf.answer_logprobs(model, tok, [(prompt, answer), ("Why?", "Yes.")], max_length=limit)
    assert got["truncated"].tolist() == [True, False] and got["n_tokens"].iloc[0] == 20
    ids = torch.tensor([prompt_ids + answer_ids[:20]])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), dim=-1)
    expected = sum(logp[len(prompt_ids) + k - 1, t].item() for k, t in enumerate(answer_ids[:20]))
    assert math.isclose(got["sum_logprob"].iloc[0], expected, abs_tol=2e-3)
    short = pf.answer_logprobs(model, tok, [(prompt, answer), ("Why?", "Yes.")], max_length=len(prompt_ids))
    assert short["dropped"].tolist() == [True, False] and math.isnan(short["sum_logprob"].iloc[0])
    rows_ = [{"prompt": prompt, "chosen": [{"role": "assistant", "content": answer}],
              "rejected": [{"role": "assistant", "content": "Yes."}]}]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pf.OffPolicyWarning)
        table = pf.policy_fit(model, tok, rows_, own=[("Why?", "Yes.")], max_length=len(prompt_ids))
    chosen = table[table["side"] == "chosen"].iloc[0]
    assert chosen["n"] == 0 and chosen["dropped"] == 1 and math.isnan(chosen["mean_logprob"])
