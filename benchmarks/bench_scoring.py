"""Probe-scoring throughput and cache speed-up on the tiny model (CPU); method: benchmarks/README.md.

1. One checkpoint's full pass (550 probes x the params' samples and sampling): our batched engine
   (vd.models.generate.generate_answers) against a naive loop of one `generate` call per prompt, timed on a
   subset of prompts and extrapolated per generation.
2. `vd score` on an unchanged run, first pass (generate + judge + store) against the second (all cached),
   which must regenerate and re-judge nothing. Results are merged into results.json under "scoring".

    python benchmarks/bench_scoring.py [--repeats 5] [--naive-prompts 44]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from common import machine_info, merge_results  # benchmarks/common.py (scripts run from this folder's path)


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def bench_generation(cfg, world, repeats: int, naive_prompts: int) -> dict:
    """Both engines warmed up, then timed in `repeats` back-to-back pairs (batched, then naive), so each
    pair sees the same machine state; the speed-up is the median of the pairs' ratios (the naive loop's
    many small ops are the more sensitive to other load), with its range."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from vd.data.probes import load_probes
    from vd.models.generate import Sampling, generate_answers, naive_generate

    tokenizer = AutoTokenizer.from_pretrained(world.model_dir)
    model = AutoModelForCausalLM.from_pretrained(world.model_dir).eval()
    probes = load_probes()
    prompts = list(zip(probes["id"], probes["question"]))
    sampling = Sampling(samples_per_prompt=5, temperature=0.7, max_new_tokens=cfg.probes.max_new_tokens, seed=0)
    subset = prompts[:naive_prompts]
    batched = lambda: generate_answers(model, tokenizer, prompts, sampling, batch_size=cfg.probes.batch_size)  # noqa: E731
    naive = lambda: naive_generate(model, tokenizer, subset, sampling)  # noqa: E731
    batched(), naive()  # warm-up
    pairs = [(timed(batched), timed(naive)) for _ in range(repeats)]
    answers, naive_answers = pairs[-1][0][1], pairs[-1][1][1]
    batched_s = statistics.median(b[0] for b, _ in pairs)
    naive_s = statistics.median(n[0] for _, n in pairs)
    ratios = [(len(answers) / b[0]) / (len(naive_answers) / n[0]) for b, n in pairs]
    batched_gps = len(answers) / batched_s
    naive_gps = len(naive_answers) / naive_s
    return {
        "generations": len(answers), "batch_size": cfg.probes.batch_size, "sampling": sampling.as_dict(),
        "batched_seconds": round(batched_s, 2), "batched_generations_per_s": round(batched_gps, 1),
        "batched_new_tokens_per_s": round(sum(a["n_new_tokens"] for a in answers) / batched_s, 0),
        "naive_prompts_timed": len(subset), "naive_generations_per_s": round(naive_gps, 1),
        "naive_new_tokens_per_s": round(sum(a["n_new_tokens"] for a in naive_answers) / naive_s, 0),
        "naive_full_pass_seconds_extrapolated": round(len(answers) / naive_gps, 1),
        "batched_vs_naive_speedup": round(statistics.median(ratios), 2),
        "speedup_of_each_pair": [round(r, 2) for r in ratios],
    }


def bench_cache(cfg, world, repeats: int) -> dict:
    """First vs second `score_run` on a run of two checkpoints (base + one random LoRA adapter)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from vd.core.cache import Store
    from vd.judge import LexiconJudge
    from vd.score.scoring import score_run

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "tiny" / "bench-run"
        torch.manual_seed(0)
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(world.model_dir),
                               LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
        model.save_pretrained(run / "checkpoint-1")
        (run / "run.json").write_text(json.dumps({
            "stage": "sft", "data": "bench", "size": "tiny", "total_steps": 1, "base_model": str(world.model_dir),
            "checkpoints": [{"step": 0, "adapter": None}, {"step": 1, "adapter": "checkpoint-1"}], "complete": True}))
        with Store(Path(tmp) / "cache.sqlite") as store:
            t0 = time.perf_counter()
            score_run(run, cfg, judge=LexiconJudge(), store=store, progress=False)
            first = time.perf_counter() - t0
            counts = (store.count("generations"), store.count("judgments"))
            second = []  # the cached pass is short: the median of `repeats`
            for _ in range(repeats):
                t0 = time.perf_counter()
                score_run(run, cfg, judge=LexiconJudge(), store=store, progress=False)
                second.append(time.perf_counter() - t0)
            assert (store.count("generations"), store.count("judgments")) == counts, "the second pass wrote rows"
    cached = statistics.median(second)
    return {"checkpoints": 2, "generations": counts[0], "judgments": counts[1], "first_seconds": round(first, 2),
            "cached_seconds": round(cached, 3), "cached_seconds_all": [round(x, 3) for x in second],
            "cached_vs_first_speedup": round(first / cached, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--naive-prompts", type=int, default=44)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(os.cpu_count() or 1)
    from vd.core.config import load_config
    from vd.world.build import ensure_world

    cfg = load_config("tiny", ["probes.prompts_per_topic=50", "probes.samples_per_prompt=5"])
    world = ensure_world(cfg)
    generation = bench_generation(cfg, world, args.repeats, args.naive_prompts)
    print(json.dumps(generation, indent=1))
    cache = bench_cache(cfg, world, args.repeats)
    print(json.dumps(cache, indent=1))
    merge_results("scoring", {
        "batched_vs_naive_speedup": generation["batched_vs_naive_speedup"],
        "cached_vs_first_speedup": cache["cached_vs_first_speedup"],
        "generation": generation, "cache": cache, "machine": machine_info(),
    })


if __name__ == "__main__":
    main()
