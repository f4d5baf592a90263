"""Training throughput (tokens/s) of each trainer on the tiny model (CPU); method: benchmarks/README.md.

Each trainer runs as the tiny params configure it, from a fresh run folder with one checkpoint at the end;
throughput is the trainer's own token count over its own clock (model loading and merging excluded). SimPO
(CPOTrainer) logs no token count: its pairs seen x DPO's tokens per pair. PPO logs episodes/s only: times
(mean prompt tokens + response_length), the tokens of one episode through the policy. One warm-up run
per trainer, then the median of --repeats runs, on the notebooks' torch threads unless --threads says.

    python benchmarks/bench_training.py [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import tempfile
from pathlib import Path

import torch
from common import machine_info, merge_results  # benchmarks/common.py (scripts run from this folder's path)

# (stage, data), in order: the preference stages start from the SFT run on alpaca, as in the
# notebooks; the reward model is trained inside the PPO stage and read from its folder.
TRAINERS = (("sft", "alpaca"), ("dpo", "ultrafeedback"), ("simpo", "ultrafeedback"), ("ppo", "ultrafeedback"))


def last_row(path: Path) -> dict:
    """The last row of a train_log.csv (the trainer's summary: train_runtime), with the largest
    `num_tokens` logged (a running total, absent from the summary row)."""
    with open(path) as f:
        rows = list(csv.DictReader(f))
    out = {k: float(v) for k, v in rows[-1].items() if v not in ("", None)}
    tokens = [float(r["num_tokens"]) for r in rows if r.get("num_tokens")]
    return out | ({"num_tokens": max(tokens)} if tokens else {})


def logged_throughput(run_dir: Path, tokens: float | None = None) -> dict:
    """tokens, seconds and tokens/s of a TRL Trainer run, from its train_log.csv (`tokens`: when the
    trainer logs no token count)."""
    row = last_row(run_dir / "train_log.csv")
    tokens = row.get("num_tokens", tokens)
    return {"tokens": int(tokens), "seconds": round(row["train_runtime"], 2),
            "tokens_per_s": round(tokens / row["train_runtime"], 1)}


def ppo_throughput(cfg, run_dir: Path) -> dict:
    from transformers import AutoTokenizer

    from vd.core.run import RunRecord
    from vd.models.loading import start_model_path
    from vd.train.data import stage_rows

    tokenizer = AutoTokenizer.from_pretrained(start_model_path(RunRecord.read(run_dir), cfg))
    rows, _ = stage_rows(cfg, "ppo", "ultrafeedback")
    prompt_tokens = statistics.mean(
        len(tokenizer.apply_chat_template(r["prompt"], tokenize=True, add_generation_prompt=True, return_dict=False))
        for r in rows)
    eps = last_row(run_dir / "train_log.csv")["eps"]
    per_episode = prompt_tokens + cfg.ppo.response_length
    return {"episodes_per_s": eps, "tokens_per_episode": round(per_episode, 1),
            "tokens_per_s": round(eps * per_episode, 1)}


def pairs_seen(cfg, stage: str) -> int:
    st = cfg.stage(stage)
    return st.max_steps * st.batch_size * st.grad_accum


def train_once(cfg, stage: str, data: str, sft_run: Path | None, runs: Path, dpo: dict | None) -> tuple[Path, dict]:
    from vd.train.runner import train_stage

    run_dir = train_stage(cfg, stage, data, from_run=sft_run, run_name=f"bench-{stage}", runs_dir=runs)
    if stage == "ppo":
        return run_dir, {"ppo": ppo_throughput(cfg, run_dir), "reward": logged_throughput(run_dir / "reward")}
    if stage == "simpo":  # CPOTrainer logs no token count: DPO's tokens per pair on the same data
        tokens = pairs_seen(cfg, "simpo") * dpo["tokens"] / pairs_seen(cfg, "dpo")
        return run_dir, {stage: logged_throughput(run_dir, tokens)}
    return run_dir, {stage: logged_throughput(run_dir)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from vd.core.config import load_config
    from vd.world.build import ensure_world

    base = load_config("tiny")
    ensure_world(base)
    torch.set_num_threads(args.threads)
    # one checkpoint, at the end of each stage (PPO: its number of updates)
    updates = base.ppo.total_episodes // (base.ppo.batch_size * base.ppo.grad_accum)
    cfg = load_config("tiny", {"sft.save_every": base.sft.max_steps, "dpo.save_every": base.dpo.max_steps,
                               "simpo.save_every": base.simpo.max_steps, "reward.save_every": base.reward.max_steps,
                               "ppo.save_every": updates})
    samples: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats + 1):  # rep 0: warm-up
            runs = Path(tmp) / f"rep{rep}"
            sft_run = None
            dpo = None
            for stage, data in TRAINERS:
                run_dir, result = train_once(cfg, stage, data, sft_run, runs, dpo)
                sft_run, dpo = sft_run or run_dir, dpo or result.get("dpo")
                if rep:
                    for name, values in result.items():
                        samples.setdefault(name, []).append(values)
                        print(f"rep {rep} {name}: {values}", flush=True)
    medians = {name: {k: statistics.median(v[k] for v in vals) for k in vals[0]} for name, vals in samples.items()}
    settings = {name: {"batch_size": cfg.stage(name).batch_size, "max_length": cfg.stage(name).max_length,
                       "steps": cfg.stage(name).max_steps if name != "ppo" else updates}
                for name in medians}
    print(json.dumps(medians, indent=1))
    merge_results("training", {"tokens_per_s": {k: v["tokens_per_s"] for k, v in medians.items()},
                               "medians": medians, "settings": settings, "repeats": args.repeats,
                               "torch_threads": args.threads, "machine": machine_info()})


if __name__ == "__main__":
    main()
