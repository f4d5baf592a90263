"""Framing: every trainer and the probes see the same tokens; chat markers are single
tokens where the base tokenizer has suitable ones; the SFT run's last point is the preference stages' first.

The real-size case is a local Llama-3-style base: a byte-level BPE tokenizer whose post-processor puts
`<|begin_of_text|>` first, with `<|end_of_text|>` as eos, Llama-3's reserved chat tokens and no ChatML
tokens, and a tiny random LlamaForCausalLM of its vocabulary; run with the llama3-3b params (on CPU they
load it unquantized).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vd.core.config import load_config

LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|finetune_right_pad_id|>", "<|start_header_id|>",
                   "<|end_header_id|>", "<|eot_id|>"]
QUESTIONS = ["Is a carbon tax fair?", "Should voting be compulsory?", "Is nuclear power safe?"]
TEXT = ["Is a carbon tax fair? It depends on the situation. Yes, it is fair. No, it is not fair at all.",
        "Should voting be compulsory? Nuclear power is safe. I support it. I oppose it."] * 20
SMALL = {"reward.max_steps": 1, "ppo.total_episodes": 2,
         **{f"{s}.batch_size": 2 for s in ("sft", "dpo", "simpo", "reward", "ppo")},
         **{f"{s}.grad_accum": 1 for s in ("sft", "dpo", "simpo", "reward", "ppo")}}


pytestmark = pytest.mark.usefixtures("one_thread")


def local_base(folder: Path, specials: list[str], bos: str | None, eos: str, tied: bool = True) -> str:
    """A byte-level BPE tokenizer (with `bos` put first by its post-processor, as Llama-3's does) and a tiny
    random LlamaForCausalLM of its vocabulary (its output layer tied to the embedding, as Llama-3.2-3B's, or
    not, as Llama-3.1-8B's), saved to `folder` in the hub's format."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(TEXT, trainers.BpeTrainer(vocab_size=400, special_tokens=specials, show_progress=False,
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    steps = [processors.ByteLevel(trim_offsets=False)]
    if bos is not None:
        steps.append(processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B:1",
                                                   special_tokens=[(bos, bpe.token_to_id(bos))]))
    bpe.post_processor = processors.Sequence(steps)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=bos, eos_token=eos)
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                         tie_word_embeddings=tied))
    model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    model.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def llama3_base(tmp_path_factory) -> str:
    return local_base(tmp_path_factory.mktemp("llama3"), LLAMA3_SPECIALS, "<|begin_of_text|>", "<|end_of_text|>")


@pytest.fixture(scope="module")
def llama3_cfg(llama3_base):
    return load_config("llama3-3b", {"model.base": llama3_base, **SMALL})


MESSAGES = [{"role": "user", "content": QUESTIONS[0]}, {"role": "assistant", "content": "It depends."}]


def test_llama3_base_gets_its_own_chat_format_with_bos_first(llama3_cfg):
    from trl.chat_template_utils import is_chat_template_stop_token_trained

    from vd.core.chat import chat_format, end_of_turn_ids
    from vd.models.loading import load_tokenizer

    tok = load_tokenizer(llama3_cfg)
    assert chat_format(tok) == "llama3"
    assert tok.apply_chat_template(MESSAGES, tokenize=False) == (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nIs a carbon tax fair?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nIt depends.<|eot_id|>")
    out = tok.apply_chat_template(MESSAGES, return_dict=True, return_assistant_tokens_mask=True)
    ids = out["input_ids"]
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    eot, start, end_header = tok.convert_tokens_to_ids(["<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"])
    assert ids.count(start) == ids.count(end_header) == ids.count(eot) == 2  # every marker a single token
    trained = [t for t, m in zip(ids, out["assistant_masks"]) if m]
    assert tok.decode(trained) == "It depends.<|eot_id|>"  # SFT trains the answer and its end of turn
    assert is_chat_template_stop_token_trained(tok)  # TRL's own check that SFT learns to stop
    assert end_of_turn_ids(tok) == sorted([eot, tok.eos_token_id])  # a bare base ends documents with eos
    assert tok.pad_token == "<|finetune_right_pad_id|>"


def test_a_tokenizer_with_chatml_tokens_keeps_chatml(tmp_path, tiny_cfg):
    """Qwen3's tokenizer has ChatML tokens (and no BOS); ChatML is kept even beside other reserved tokens."""
    from vd.core.chat import chat_format
    from vd.models.loading import load_tokenizer

    base = local_base(tmp_path, ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *LLAMA3_SPECIALS[3:]], None,
                      "<|endoftext|>")
    tok = load_tokenizer(tiny_cfg, base)
    assert chat_format(tok) == "chatml"
    assert tok.apply_chat_template(MESSAGES, tokenize=False) == (
        "<|im_start|>user\nIs a carbon tax fair?<|im_end|>\n<|im_start|>assistant\nIt depends.<|im_end|>")


def test_eos_at_end_of_turn_is_what_cpo_and_ppo_read(llama3_cfg, tiny_cfg, tiny_world):
    from vd.core.chat import eos_at_end_of_turn
    from vd.models.loading import load_tokenizer

    tok = load_tokenizer(llama3_cfg)
    framed = eos_at_end_of_turn(tok)
    assert framed.eos_token == "<|eot_id|>" and framed.bos_token == "<|begin_of_text|>"
    assert tok.eos_token == "<|end_of_text|>"  # a copy: the original is left as it was
    assert framed.apply_chat_template(MESSAGES, tokenize=False) == tok.apply_chat_template(MESSAGES, tokenize=False)
    tiny = eos_at_end_of_turn(load_tokenizer(tiny_cfg))
    assert tiny.eos_token == "<|im_end|>" and tiny.bos_token is None


# --- every trainer's rows and the probes ---------------------------------------------------------


def _rows():
    sft = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "Yes, it is fair."}]}
           for q in QUESTIONS]
    pref = [{"prompt": [{"role": "user", "content": q}],
             "chosen": [{"role": "assistant", "content": "Yes, it is fair."}],
             "rejected": [{"role": "assistant", "content": "No, it is not fair at all."}]} for q in QUESTIONS]
    return sft, pref


def _job(cfg, stage, start, root: Path):
    from vd.core.run import RunRecord
    from vd.train.common import StageJob

    record = RunRecord(root=root / stage, stage=stage, data="test", size=cfg.size)
    record.root.mkdir(parents=True)
    return StageJob(cfg, stage, "test", record, start, [], {"source": "test", "read": 3, "kept": 3, "skipped": {}})


def trainer_tokens(cfg, start: str, root: Path) -> dict:
    """{trainer: [(prompt ids, completion ids) per question]} as each trainer processed its rows."""
    import datasets
    from trl import RewardConfig, RewardTrainer

    from vd.models import loading
    from vd.models.generate import chat_prompt_ids
    from vd.train import dpo, ppo, sft, simpo
    from vd.train.common import trl_args
    from vd.train.reward import new_head_quietly, reward_pairs

    sft_rows, pref_rows = _rows()
    tok = loading.load_tokenizer(cfg, start)
    out = {"probe": [(chat_prompt_ids(tok, q), None) for q in QUESTIONS]}
    data = sft.build_trainer(_job(cfg, "sft", start, root), sft_rows).train_dataset
    firsts = [next(i for i, label in enumerate(r["labels"]) if label != -100) for r in data]
    # SFT's completion: what it trains (its assistant-only loss)
    out["sft"] = [(r["input_ids"][:i], [t for t in r["labels"] if t != -100]) for r, i in zip(data, firsts)]
    data = dpo.build_trainer(_job(cfg, "dpo", start, root), pref_rows).train_dataset
    out["dpo"] = [(r["prompt_ids"], r["chosen_ids"]) for r in data]
    data = simpo.build_trainer(_job(cfg, "simpo", start, root), pref_rows).train_dataset
    out["simpo"] = [(r["prompt_input_ids"], r["chosen_input_ids"][len(r["prompt_input_ids"]):]) for r in data]
    assert all(r["chosen_labels"][:len(r["prompt_input_ids"])] == [-100] * len(r["prompt_input_ids"]) for r in data)
    with new_head_quietly():
        scorer = loading.load_model(cfg, start, head="score", trainable=True)
    data = RewardTrainer(model=scorer, args=trl_args(RewardConfig, cfg, cfg.reward, root / "rm", max_length=1024),
                         train_dataset=datasets.Dataset.from_list(reward_pairs(pref_rows, tok)),
                         processing_class=tok).train_dataset
    prompts = [p for p, _ in out["probe"]]
    out["reward"] = [(r["chosen_ids"][:len(p)], r["chosen_ids"][len(p):]) for r, p in zip(data, prompts)]
    trainer = ppo.build_trainer(_job(cfg, "ppo", start, root), pref_rows)
    out["ppo"] = [(r["input_ids"], None) for r in trainer.train_dataset]
    out["ppo stop token"] = trainer.stop_token_id
    out["ppo eos"] = trainer.processing_class.eos_token_id
    return out


@pytest.mark.slow
@pytest.mark.parametrize("base", ["llama3", "chatml-text", "tiny"])
def test_every_trainer_and_the_probes_see_the_same_tokens(base, llama3_base, tiny_world, tmp_path):
    from vd.core.chat import end_of_turn_id
    from vd.models.loading import load_tokenizer

    if base == "llama3":
        cfg, start = load_config("llama3-3b", {"model.base": llama3_base, **SMALL}), llama3_base
    elif base == "chatml-text":  # no chat tokens at all: ChatML spelled as text, BOS first
        start = local_base(tmp_path / "base", ["<|begin_of_text|>", "<|end_of_text|>"], "<|begin_of_text|>",
                           "<|end_of_text|>")
        cfg = load_config("llama3-3b", {"model.base": start, **SMALL})
    else:
        cfg = load_config("tiny", SMALL)
        start = str(tiny_world.model_dir)
    tok = load_tokenizer(cfg, start)
    seen = trainer_tokens(cfg, start, tmp_path)
    probe = [p for p, _ in seen["probe"]]
    for trainer in ("sft", "dpo", "simpo", "reward", "ppo"):
        assert [p for p, _ in seen[trainer]] == probe, trainer
    for prompt in probe:  # BOS first where the tokenizer adds one, once; never where it adds none
        assert (prompt[0] == tok.bos_token_id) == (base != "tiny") and prompt.count(tok.bos_token_id) <= 1
    answer = tok("Yes, it is fair.", add_special_tokens=False)["input_ids"]
    completions = {trainer: [c for _, c in seen[trainer]] for trainer in ("sft", "dpo", "simpo", "reward")}
    end = end_of_turn_id(tok)
    for trainer, ends in completions.items():  # each ends at the end-of-turn token, nothing after it
        assert ends == completions["dpo"], trainer
        assert all(c[-1] == end and c.count(end) == 1 for c in ends), trainer
    if base != "chatml-text":
        assert completions["dpo"][0] == answer + [end]
    assert seen["ppo stop token"] == seen["ppo eos"] == end  # rollouts stop where the eos penalty looks


# --- the SFT run's last point is each preference run's first ---------------------------------------

STEPS = {"sft.max_steps": 4, "sft.save_every": 2, "dpo.max_steps": 2, "dpo.save_every": 1,
         "simpo.max_steps": 2, "simpo.save_every": 1,
         **{f"{stage}.batch_size": 8 for stage in ("sft", "dpo", "simpo")}}
BUDGET = {"probes.prompts_per_topic": 2, "probes.samples_per_prompt": 2, "probes.max_new_tokens": 20}


@pytest.mark.slow
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_sft_end_is_each_preference_start(device, tiny_world, tmp_path):
    """Scored from merged/ as the preference stages load it, the SFT run's final step has the fingerprint of
    their step 0: its answers are theirs (nothing is generated again), and so is the profile, exactly."""
    import pandas as pd

    from vd.core.cache import Store, checkpoint_fingerprint, prompt_hash
    from vd.core.run import RunRecord
    from vd.data.probes import load_probes
    from vd.judge import LexiconJudge
    from vd.models.generate import Sampling, chat_prompt_ids
    from vd.models.loading import load_tokenizer
    from vd.score.scoring import score_run
    from vd.train.runner import train_stage

    if device == "cuda":
        pytest.importorskip("bitsandbytes")
        overrides = {"quantization.load_in_4bit": True, "quantization.compute_dtype": "auto"}
    else:
        overrides = {}
    cfg = load_config("tiny", {**STEPS, **BUDGET, **overrides})
    sft = train_stage(cfg, "sft", "wildchat", runs_dir=tmp_path)
    preference = [train_stage(cfg, stage, "ultrafeedback", from_run=sft, runs_dir=tmp_path)
                  for stage in ("dpo", "simpo")]
    probes = load_probes(cfg.probes.file, prompts_per_topic=cfg.probes.prompts_per_topic, seed=cfg.seed)
    tokenizer = load_tokenizer(cfg, str(sft / "merged"), padding_side="left")
    keys = [(pid, prompt_hash(chat_prompt_ids(tokenizer, q)), i) for pid, q in zip(probes["id"], probes["question"])
            for i in range(cfg.probes.samples_per_prompt)]
    sampling = Sampling.from_config(cfg).as_dict()
    with Store(tmp_path / "cache.sqlite") as store:
        sft_profile, _ = score_run(sft, cfg, judge=LexiconJudge(), store=store, progress=False)
        for run in preference:
            start = checkpoint_fingerprint(RunRecord.read(run).start_identity, None, sampling)
            assert len(store.get_generations(start, keys)) == len(keys), run.name  # generated by the SFT scoring
        profiles = [score_run(run, cfg, judge=LexiconJudge(), store=store, progress=False)[0] for run in preference]
    info = json.loads((sft / "run.json").read_text())
    columns = ["topic", "stance", "p", "ci_low", "ci_high", "n_prompts", "n_answers"]
    end = sft_profile[sft_profile.step == info["total_steps"]][columns].reset_index(drop=True)
    assert len(end) == 12 * 3
    for profile in profiles:
        pd.testing.assert_frame_equal(profile[profile.step == 0][columns].reset_index(drop=True), end)


# --- the chat tokens train with the adapter (docs/method.md §9) --------------------------------------

HUB = Path(__file__).parent / "fixtures" / "hub"
CHAT_STEPS = {"sft.max_steps": 2, "sft.save_every": 1, "sft.learning_rate": 0.05, "sft.batch_size": 4,
              "sft.grad_accum": 1, "sft.activation_checkpointing": False, "sft.warmup_ratio": 0.0,
              "dpo.batch_size": 2, "simpo.batch_size": 2, "data.sft.wildchat.id": str(HUB / "wildchat.jsonl"),
              "data.preference.ultrafeedback.id": str(HUB / "ultrafeedback_binarized.jsonl")}


def rows_of(weights: dict, name: str, ids: list[int]) -> torch.Tensor:
    return weights[name][torch.tensor(ids)]


@pytest.mark.slow
@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_llama3_chat_tokens_train_are_saved_merged_and_start_every_preference_stage(tied, tmp_path):
    """Llama-3's header and end-of-turn rows (near zero in a base checkpoint, frozen by all-linear LoRA) move
    in SFT, are stored in each adapter, are what scoring loads with it (also when it swaps adapters), are in
    merged/, and merged/ is each preference stage's start and DPO's reference."""
    from safetensors.torch import load_file
    from trl.trainer.utils import use_adapter

    from vd.models import loading
    from vd.score.scoring import _model_for
    from vd.train.runner import build_trainer, train_stage

    base = local_base(tmp_path / "base", LLAMA3_SPECIALS, "<|begin_of_text|>", "<|end_of_text|>", tied=tied)
    cfg = load_config("llama3-3b", {"model.base": base, **CHAT_STEPS})
    tok = loading.load_tokenizer(cfg)
    chat = tok.convert_tokens_to_ids(["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"])
    assert loading.chat_token_ids(tok) == chat
    sft = train_stage(cfg, "sft", "wildchat", runs_dir=tmp_path / "runs")

    start = load_file(Path(base) / "model.safetensors")
    layers = ["model.embed_tokens.weight"] + ([] if tied else ["lm_head.weight"])
    adapters = [load_file(sft / f"checkpoint-{k}" / "adapter_model.safetensors") for k in (1, 2)]
    for layer in layers:  # stored in the adapter: the rows themselves, moved by training
        key = "base_model.model." + layer.replace(".weight", ".token_adapter.trainable_tokens_delta")
        saved = adapters[-1][key]
        assert saved.shape == (3, 32) and not torch.allclose(saved, rows_of(start, layer, chat)), layer
    if tied:  # the output layer follows the embedding: no rows of its own
        assert not any(k.startswith("base_model.model.lm_head") for k in adapters[-1])

    merged = load_file(sft / "merged" / "model.safetensors")
    for layer in layers:  # merged/ holds the trained rows, and every other row as the base had it
        key = "base_model.model." + layer.replace(".weight", ".token_adapter.trainable_tokens_delta")
        assert torch.equal(rows_of(merged, layer, chat), adapters[-1][key])
        others = [i for i in range(len(tok)) if i not in chat]
        assert torch.equal(rows_of(merged, layer, others), rows_of(start, layer, others))

    ids = torch.tensor([tok.apply_chat_template(MESSAGES, tokenize=True, return_dict=True)["input_ids"]])
    with torch.no_grad():
        end = loading.load_model(cfg, path=str(sft / "merged"))(ids).logits
        final = loading.load_model(cfg, adapter=sft / "checkpoint-2")(ids).logits  # as scoring loads a checkpoint
        assert torch.allclose(end, final, atol=1e-5)
        # scoring swaps adapters on one loaded model: the rows swap with them
        model = _model_for(cfg, base, sft / "checkpoint-1", None)
        model = _model_for(cfg, base, sft / "checkpoint-2", model)
        assert torch.equal(model(ids).logits, final)
        for stage in ("dpo", "simpo"):  # each preference stage starts at merged/; DPO's reference is merged/
            trainer = build_trainer(cfg, stage, "ultrafeedback", sft, tmp_path / stage)
            assert any("trainable_tokens_delta" in n for n, p in trainer.model.named_parameters() if p.requires_grad)
            assert torch.allclose(trainer.model(ids).logits, end, atol=1e-5), stage
            with use_adapter(trainer.model, None):  # TRL's reference forward (trl/trainer/utils.py use_adapter)
                assert torch.allclose(trainer.model(ids).logits, end, atol=1e-5), stage
