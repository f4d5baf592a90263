"""The GPU benchmarks' own logic, on CPU: the real configs, the computed weights floor (by hand), the
fit rule, the vocabulary-sized tokenizer, and bench_gpu.py end to end with shrunken models (--smoke).
The GPU measurements themselves run only where a GPU is (python benchmarks/bench_gpu.py)."""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))  # the scripts import their neighbours as top-level modules

import bench_gpu  # noqa: E402
import smoke_model  # noqa: E402
from common import model_config, real_sizes  # noqa: E402

from vd.models.memory import weight_bytes, weight_counts  # noqa: E402


@pytest.mark.slow
def test_configs_have_the_published_parameter_counts():
    from transformers import AutoModelForCausalLM

    from vd.models.architectures import ARCHITECTURES as entries

    assert real_sizes() == ["llama3-3b", "llama3-8b", "qwen3-4b", "qwen3-8b"]
    for size in real_sizes():
        with torch.device("meta"):
            n = sum(p.numel() for p in AutoModelForCausalLM.from_config(model_config(size)).parameters())
        assert abs(n / entries[size]["published_params"] - 1) < 0.01, size  # model cards: 3.21B, 8.03B, 4.0B, 8.2B
    from vd.core.config import load_config

    assert {s: entries[s]["hub_id"] for s in real_sizes()} == {s: load_config(s).model.base for s in real_sizes()}


@pytest.mark.slow
def test_weight_counts_of_llama_8b_by_hand():
    counts = weight_counts(model_config("llama3-8b"))
    layers, hidden, inter, kv = 32, 4096, 14336, 8 * 128
    per_layer = 2 * hidden * hidden + 2 * hidden * kv + 3 * hidden * inter  # q, o; k, v; gate, up, down
    assert counts["quantized"] == layers * per_layer
    assert counts["other"] == 2 * 128256 * hidden + layers * 2 * hidden + hidden  # embed, lm_head, norms
    lora_per_layer = 2 * (hidden + hidden) + 2 * (hidden + kv) + 3 * (hidden + inter)
    assert counts["lora_per_rank"] == layers * lora_per_layer
    score = weight_counts(model_config("llama3-8b"), "score")
    assert score["other"] == 128256 * hidden + layers * 2 * hidden + hidden + hidden  # no lm_head; a 1-wide score


def test_weight_bytes_by_hand():
    counts = {"quantized": 4096, "other": 1000, "lora_per_rank": 300}
    trained = weight_bytes(counts, lora_rank=2, prepared=True, trained=True)
    # 4096 x (1/2 + 1/64 + 4/16384) = 2048 + 64 + 1; 1000 fp32; 600 LoRA x (4 weights + 4 grads + 2 states)
    assert trained == {"bytes": 2113 + 4000 + 6000, "upcast_bytes": 2000}
    frozen = weight_bytes(counts, lora_rank=2, prepared=False, trained=False)
    assert frozen == {"bytes": 2113 + 2000 + 2400, "upcast_bytes": 0}


def test_fit_rule():
    measured = {"peak_allocated_gib": 13.5, "cuda_context_gib": 0.5}  # 14.0 <= 0.95 x 15.0
    assert bench_gpu.fits(measured)["T4"] and bench_gpu.fits(measured)["L4"]
    measured["peak_allocated_gib"] = 14.0  # 14.5 > 14.25
    assert not bench_gpu.fits(measured)["T4"] and bench_gpu.fits(measured)["L4"]
    assert bench_gpu.fits({"peak_rss_gib": 1.0}) == {}  # a CPU run fits nothing


@pytest.mark.parametrize("family,size,bos,chat", [("llama", "llama3-3b", True, "llama3"),
                                                  ("qwen3", "qwen3-4b", False, "chatml")])
@pytest.mark.slow
def test_family_tokenizers_carry_the_real_chat_tokens(tmp_path, family, size, bos, chat):
    """Llama-3: 128,000 BPE tokens, then its specials at their real ids, BOS put first; Qwen3: ChatML at its
    ids, no BOS; every word one token; vd's own tokenizer set-up picks the family's chat format."""
    from vd.core.chat import chat_format
    from vd.core.config import load_config
    from vd.models.loading import load_tokenizer

    tokenizer = smoke_model.family_tokenizer(family)
    config = model_config(size)
    ids = {"llama": {"<|begin_of_text|>": 128000, "<|end_of_text|>": 128001, "<|start_header_id|>": 128006,
                     "<|end_header_id|>": 128007, "<|eot_id|>": 128009},
           "qwen3": {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645}}[family]
    assert {t: tokenizer.convert_tokens_to_ids(t) for t in ids} == ids
    assert len(tokenizer) == {"llama": 128256, "qwen3": 151669}[family] <= config.vocab_size
    assert tokenizer.eos_token_id == config.eos_token_id
    encoded = tokenizer(" " + " ".join(smoke_model.WORDS))["input_ids"]
    assert len(encoded) == len(smoke_model.WORDS) + bos and (encoded[0] == 128000) == bos
    tokenizer.save_pretrained(tmp_path)
    framed = load_tokenizer(load_config(size), str(tmp_path))
    assert chat_format(framed) == chat
    text = framed.apply_chat_template([{"role": "user", "content": "fair"}], tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|begin_of_text|><|start_header_id|>user" if bos else "<|im_start|>user")


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: the script would measure")
def test_bench_gpu_without_a_gpu_measures_nothing(tmp_path):
    results = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, str(BENCH / "bench_gpu.py"), "--results", str(results)],
                          capture_output=True, text=True, check=True)
    assert "no CUDA GPU" in proc.stdout and not results.exists()


@pytest.mark.slow
def test_bench_gpu_cpu_mode_runs_every_stage(tmp_path):
    """--cpu: every stage of the smoke through vd's own code on a shrunken llama3-3b, one JSON line each, in
    $OUT and results.json."""
    results, out = tmp_path / "results.json", tmp_path / "out"
    out.mkdir()
    proc = subprocess.run([sys.executable, str(BENCH / "bench_gpu.py"), "--cpu", "--results", str(results)],
                          capture_output=True, text=True, env={**os.environ, "OUT": str(out)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(x) for x in (out / "bench_gpu-llama3-3b.jsonl").read_text().splitlines()]
    stages = {line["stage"]: line for line in lines}
    assert list(stages) == ["build", "sft", "sft_merge", "generate", "generate_4x", "dpo", "simpo", "reward",
                            "reward_merge", "ppo", "sft_fp16", "dpo_fp16", "simpo_fp16", "policy_fit",
                            "reward_fp16", "ppo_fp16"]
    assert [s for s, line in stages.items() if line["status"] != "ok"] == []
    assert stages["build"]["family"] == "llama" and stages["build"]["tokenizer"] == smoke_model.CPU_REGULAR + 256
    lengths = stages["build"]["row_tokens"]
    # rows fill the (shrunken) lengths: 64 tokens a sequence, a pair 2 x 64, PPO 32-token prompts + 8
    assert lengths["sft"] in (63, 64) and lengths["pair"] in range(124, 129) and lengths["ppo"] in range(38, 41)
    for stage in ("sft", "dpo", "simpo", "reward", "ppo", "sft_fp16", "dpo_fp16", "simpo_fp16", "reward_fp16",
                  "ppo_fp16"):
        assert stages[stage]["tokens_per_s"] > 0 and stages[stage]["trainable_dtypes"] == ["float32"], stage
    assert stages["sft"]["tokens_per_step"] == 2 * lengths["sft"]
    assert stages["ppo"]["tokens_per_step"] == 2 * lengths["ppo"]
    assert stages["dpo"]["settings"]["started_from"] == "sft merged"
    assert {stages[s]["settings"]["compute_dtype"] for s in stages if s.endswith("_fp16")} == {"float16"}
    assert (stages["generate"]["settings"]["batch_size"], stages["generate_4x"]["settings"]["batch_size"]) == (10, 40)
    assert stages["generate_4x"]["generations"] == 40 and stages["generate_4x"]["settings"]["adapter"]
    assert stages["policy_fit"]["answers"] > 0
    saved = json.loads(results.read_text())["gpu_smoke"]["sizes"]["llama3-3b"]
    assert set(saved) == set(stages)


def test_a_failed_stage_is_recorded_and_the_next_runs(monkeypatch, tmp_path):
    def run_one(size, stage, work, steps, cpu, layers, ppo_steps=1):
        if stage == "dpo":
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [{"stage": stage, "status": "ok"}]

    monkeypatch.setattr(bench_gpu, "run_one", run_one)
    args = argparse.Namespace(stages=["build", "dpo", "simpo"], deadline_s=100, cpu=True, steps=2, layers=None,
                              ppo_steps=1)
    lines = []
    bench_gpu.drive(args, "llama3-3b", tmp_path, lines.append)
    assert [(x["stage"], x["status"]) for x in lines] == [("build", "ok"), ("dpo", "out of memory"), ("simpo", "ok")]
    assert "Tried to allocate" in lines[1]["error"]
    args.deadline_s = 0
    lines.clear()
    bench_gpu.drive(args, "llama3-3b", tmp_path, lines.append)
    assert {x["status"] for x in lines} == {"skipped"}
