"""The GPU benchmarks' own logic, on CPU: the real configs, the computed weights floor (by hand), the
fit rule, the vocabulary-sized tokenizer, and bench_gpu.py end to end with shrunken models (--smoke).
The GPU measurements themselves run only where a GPU is (python benchmarks/bench_gpu.py)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))  # the scripts import their neighbours as top-level modules

import bench_gpu  # noqa: E402
from common import model_config, real_sizes  # noqa: E402

from vd.models.memory import weight_bytes, weight_counts  # noqa: E402


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
    assert bench_gpu.fits(measured) == {"T4": True, "L4": True, "A100-40GB": True}
    measured["peak_allocated_gib"] = 14.0  # 14.5 > 14.25
    assert bench_gpu.fits(measured) == {"T4": False, "L4": True, "A100-40GB": True}
    assert bench_gpu.fits({"peak_rss_gib": 1.0}) == {}  # a CPU run fits nothing


def test_vocabulary_sized_tokenizer():
    tokenizer = bench_gpu.vocabulary_sized_tokenizer(3000)
    assert len(tokenizer) == 3000
    assert tokenizer.decode([2999]) == "fill2999"
    assert len(tokenizer(" " + " ".join(bench_gpu.WORDS), add_special_tokens=False)["input_ids"]) == len(bench_gpu.WORDS)
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") == tokenizer.eos_token_id


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: the script would measure")
def test_bench_gpu_without_a_gpu_measures_nothing(tmp_path):
    results = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, str(BENCH / "bench_gpu.py"), "--results", str(results)],
                          capture_output=True, text=True, check=True)
    assert "no CUDA GPU" in proc.stdout and not results.exists()


def test_bench_gpu_smoke_runs_every_stage(tmp_path):
    results = tmp_path / "results.json"
    subprocess.run([sys.executable, str(BENCH / "bench_gpu.py"), "--smoke", "--sizes", "llama3-3b",
                    "--steps", "2", "--results", str(results)], check=True, capture_output=True, text=True)
    stages = json.loads(results.read_text())["gpu_smoke"]["sizes"]["llama3-3b"]
    assert list(stages) == list(bench_gpu.STAGES)
    assert not [s for s, r in stages.items() if "error" in r]
    for stage in ("sft", "dpo", "simpo", "reward", "ppo"):
        assert stages[stage]["steps_timed"] == 2 and stages[stage]["tokens_per_s"] > 0
    # rows fill the (smoke) lengths exactly: batch 2 x 64 tokens; a pair 2 x 64; PPO 32-token prompts + 8
    assert stages["sft"]["tokens_per_step"] == 2 * 64
    assert stages["dpo"]["tokens_per_step"] == stages["reward"]["tokens_per_step"] == 2 * 2 * 64
    assert stages["ppo"]["tokens_per_step"] == 2 * (32 + 8)
    by_batch = stages["generate"]["by_batch_size"]
    assert list(by_batch) == ["10", "20", "40", "80"]
    # per batch size: 2 timed batches of batch_size // 5 prompts x 5 samples
    assert {k: b["generations"] for k, b in by_batch.items()} == {k: 2 * (int(k) // 5) * 5 for k in by_batch}
