"""GPU smoke of one real size: every stage through vd's own code, on a random-weight model of the real
architecture (vd.models.architectures) with a tokenizer that carries the family's real chat tokens, at the
params' batch sizes and worst-case lengths. Each stage of STAGES runs in a process of its own (its own
peak; a failure is recorded and the next runs); --deadline-s starts no stage after it. One JSON line per
stage (status, seconds, peak GiB, tokens/s, trainable dtypes): printed, appended to
$OUT/bench_gpu-<size>.jsonl where OUT is set, and merged into results.json (`gpu`; --cpu: `gpu_smoke`).
benchmarks/README.md says what each stage runs; a bare GPU machine needs the wheels of trl 1.12.0,
bitsandbytes 0.50.2, datasets 5.2.0 (+ dill, multiprocess), transformers 5.20.2, peft 0.21.2 (gpu_wheels.sh).

    python benchmarks/bench_gpu.py --size SIZE [--stages ...] [--steps 2] [--layers N] [--deadline-s 540]
    python benchmarks/bench_gpu.py --cpu      # tiny dims on CPU, in one process: the code (tests/test_benchmarks.py)
    python benchmarks/bench_gpu.py --table    # the fit table of the recorded results
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from common import RESULTS, machine_info, merge_results, real_sizes
from smoke_model import build_model, write_data

from vd.models.memory import CARDS, CUDA_CONTEXT_GIB, GIB
from vd.models.memory import fits as memory_fits

# in this order (a stage's inputs first; what the plan and a T4 need most, early, since --deadline-s may cut the end)
# the fp16 stages (a T4's compute dtype) last but one: past --deadline-s, the bf16 path has been measured
STAGES = ("build", "sft", "generate", "dpo", "simpo", "reward", "ppo", "sft_fp16", "dpo_fp16", "simpo_fp16",
          "policy_fit", "reward_fp16", "ppo_fp16")
# --cpu: the same code with every model and length shrunk
CPU_PARAMS = {f"{s}.{k}": v for s in ("sft", "dpo", "simpo", "reward", "ppo")
              for k, v in (("batch_size", 2), ("grad_accum", 1), ("max_length", 64))} | {
    "ppo.max_length": 32, "ppo.response_length": 8, "ppo.num_ppo_epochs": 1, "ppo.rollout_batch_size": 1,
    "probes.max_new_tokens": 8, "probes.batch_size": 10}
# merged models no later stage reads, removed once their stage is done (runs/<size>/...): 64 GiB of disk hold an
# 8B model, SFT's merge and a reward model
DONE_WITH = {"ppo": ("ppo-alpaca/reward/model",), "ppo_fp16": ("ppo-fp16",)}


# --- one stage --------------------------------------------------------------------------------------------


class Probe:
    """A trainer callback: each optimizer step's time and the trainable parameters' dtypes; and the peaks."""

    def __init__(self):
        from transformers import TrainerCallback

        probe = self

        class Callback(TrainerCallback):
            def on_train_begin(self, args, state, control, model=None, **kw):
                probe.times = [time.perf_counter()]
                if model is not None:
                    probe.dtypes = sorted({str(p.dtype).replace("torch.", "") for p in model.parameters()
                                           if p.requires_grad})

            def on_step_end(self, args, state, control, **kw):
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                probe.times.append(time.perf_counter())

        self.callback, self.times, self.dtypes = Callback(), [], []

    def result(self, tokens_per_step: float) -> dict:
        steps = [b - a for a, b in zip(self.times, self.times[1:])]
        timed = steps[1:] or steps  # the first step warms up
        return {"steps": len(steps), "tokens_per_step": tokens_per_step, "trainable_dtypes": self.dtypes,
                "tokens_per_s": round(tokens_per_step / statistics.median(timed), 1) if timed else None}


def peaks(reset: bool = True) -> dict:
    """PyTorch's peak allocated and reserved GPU memory since the last reset (then reset), and the process's
    peak host memory so far (a merge's need: it loads the full model on the CPU)."""
    import resource

    rss = {"peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB, 2)}
    if not torch.cuda.is_available():
        return rss
    out = {"peak_allocated_gib": round(torch.cuda.max_memory_allocated() / GIB, 2),
           "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / GIB, 2), **rss}
    if reset:
        torch.cuda.reset_peak_memory_stats()
    return out


@contextlib.contextmanager
def patched(module, name: str, wrap):
    """module.name replaced by wrap(original) inside the block, and put back after (--cpu runs every stage
    in one process: a stage's wrappers must not pile up on the next's)."""
    original = getattr(module, name)
    setattr(module, name, wrap(original))
    try:
        yield
    finally:
        setattr(module, name, original)


def timed_merge(module, name: str, lines: list, stage: str):
    """Inside the block, module.name (a merge) is wrapped so that its seconds and peaks make a line of their own."""

    def wrap(original):
        def merge(*args, **kw):
            before = peaks()  # the training's peak, then reset for the merge's
            lines[-1].update(before)
            t0 = time.perf_counter()
            out = original(*args, **kw)
            lines.append({"stage": stage, "status": "ok", "seconds": round(time.perf_counter() - t0, 1), **peaks()})
            return out

        return merge

    return patched(module, name, wrap)


def run_stage(size: str, stage: str, work: Path, steps: int, cpu: bool, ppo_steps: int = 1) -> list[dict]:
    """Run `stage` on the model in work/model; its result lines (a stage with a merge: two)."""
    from vd.core.config import load_config
    from vd.core.run import RunRecord
    from vd.models import loading
    from vd.train import runner
    from vd.train.common import StageJob
    from vd.train.data import stage_rows

    algo = stage.split("_")[0]
    fp16 = {"quantization.compute_dtype": "fp16"} if stage.endswith("_fp16") else {}
    data = work / "data"
    overrides = {"model.base": str(work / "model"), "data.sft.alpaca.id": str(data / "alpaca.json"),
                 "data.preference.ultrafeedback.id": str(data / ("ppo.jsonl" if algo in ("ppo", "reward")
                                                                 else "pairs.jsonl")),
                 **(CPU_PARAMS if cpu else {}), **fp16}
    for s in ("sft", "dpo", "simpo", "reward", "ppo"):
        overrides |= {f"{s}.max_steps": steps, f"{s}.save_every": steps, f"{s}.log_every": 1}
    cfg = load_config(size, overrides)
    overrides["ppo.total_episodes"] = ppo_steps * cfg.ppo.batch_size * cfg.ppo.grad_accum
    overrides.pop("ppo.max_steps")
    cfg = load_config(size, overrides)
    lengths = json.loads((data / "lengths.json").read_text())
    runs = work / "runs"
    sft_run = runs / cfg.size / "sft-alpaca"
    started = RunRecord.find(sft_run)
    sft_done = started is not None and started.complete and algo != "sft"  # SFT itself starts from the base
    start = str(sft_run / "merged") if sft_done else str(work / "model")
    if stage in ("generate", "policy_fit"):
        return run_inference(cfg, stage, start, work, steps)
    probe, lines = Probe(), [{"stage": stage, "status": "ok"}]
    st = cfg.stage(algo)
    tokens = st.batch_size * st.grad_accum * lengths[{"sft": "sft", "reward": "reward", "ppo": "ppo"}.get(algo, "pair")]
    if stage == "sft":
        from vd.train import sft

        def with_probe(build):
            return lambda job, rows: _with_callback(build(job, rows), probe.callback)

        with patched(sft, "build_trainer", with_probe), timed_merge(loading, "merge_adapter", lines, "sft_merge"):
            runner.train_stage(cfg, "sft", "alpaca", runs_dir=runs)
    elif algo == "reward":
        from vd.train import reward

        parent = RunRecord(root=runs / cfg.size / ("ppo-alpaca" if not fp16 else "ppo-fp16"), stage="ppo",
                           data="ultrafeedback", size=cfg.size)
        rows, _ = stage_rows(cfg, "ppo", "ultrafeedback")
        # the reward model's merge timed on its own line (once: not again on the fp16 path)
        with timed_merge(loading, "merge_adapter", lines, "reward_merge") if not fp16 else contextlib.nullcontext():
            reward.train_reward_model(cfg, parent, start, rows, callbacks=[probe.callback])
    else:
        run_dir = runs / cfg.size / ({"ppo": "ppo-alpaca", "ppo_fp16": "ppo-fp16"}.get(stage, stage))
        if sft_done:
            trainer = runner.build_trainer(cfg, algo, "ultrafeedback", sft_run, run_dir, [probe.callback])
        else:  # from the base model: SFT trains from it; a failed SFT leaves no merged model to start from
            data_name = "alpaca" if algo == "sft" else "ultrafeedback"
            rows, _ = stage_rows(cfg, algo, data_name)
            record = RunRecord(root=run_dir, stage=algo, data=data_name, size=cfg.size)
            trainer = runner.stage_module(algo).build_trainer(StageJob(cfg, algo, data_name, record, start,
                                                                       [probe.callback], {}), rows)
        trainer.train()
    lines[0] |= probe.result(tokens) | ({} if "peak_allocated_gib" in lines[0] or "peak_rss_gib" in lines[0]
                                        else peaks(reset=False))
    lines[0]["settings"] = {"batch_size": st.batch_size, "grad_accum": st.grad_accum, "max_length": st.max_length,
                            "compute_dtype": str(loading.compute_dtype(cfg)).replace("torch.", ""),
                            "started_from": "sft merged" if sft_done else "base"} | (
        {"response_length": st.response_length, "rollout_batch_size": st.rollout_batch_size} if algo == "ppo" else {})
    return lines


def _with_callback(trainer, callback):
    trainer.add_callback(callback)
    return trainer


def run_inference(cfg, stage: str, start: str, work: Path, steps: int) -> list[dict]:
    """generate: probe answers at probes.batch_size and 4x it, as `vd score` runs them (the policy with an SFT
    checkpoint's adapter where there is one); policy_fit: pairs of max_length tokens under the start policy."""
    from vd.core.run import discover_checkpoints
    from vd.data.probes import load_probes
    from vd.models import loading
    from vd.models.generate import Sampling, generate_answers
    from vd.score.policy_fit import policy_fit

    sft_run, base = work / "runs" / cfg.size / "sft-alpaca", str(work / "model")
    adapters = [c.adapter for c in discover_checkpoints(sft_run) if c.adapter]
    lines = []
    if stage == "generate":
        if adapters:
            model = loading.load_model(cfg, path=base, adapter=sft_run / adapters[-1])
        else:  # no SFT checkpoint: a fresh adapter, so that LoRA's cost is in the measurement
            from peft import get_peft_model

            model = get_peft_model(loading.load_model(cfg, path=base), loading.lora_config(cfg)).eval()
        tokenizer = loading.load_tokenizer(cfg, base, padding_side="left")
        sampling = Sampling.from_config(cfg)
        probes = load_probes()
        questions = list(zip(probes["id"], probes["question"]))
        generate_answers(model, tokenizer, questions[-1:], Sampling(1, 0.7, 1.0, 4, 0), 1)  # kernels warmed up
        for name, batch in (("generate", cfg.probes.batch_size), ("generate_4x", 4 * cfg.probes.batch_size)):
            per_batch = max(batch // sampling.samples_per_prompt, 1)
            peaks()
            t0 = time.perf_counter()
            answers = generate_answers(model, tokenizer, questions[:per_batch], sampling, batch)
            seconds = time.perf_counter() - t0
            new = sum(a["n_new_tokens"] for a in answers)
            lines.append({"stage": name, "status": "ok", "seconds": round(seconds, 1), **peaks(),
                          "tokens_per_s": round(new / seconds, 1), "generations": len(answers), "new_tokens": new,
                          "settings": {"batch_size": batch, "max_new_tokens": sampling.max_new_tokens,
                                       "adapter": bool(adapters)}})
        return lines
    model, tokenizer = loading.load_model(cfg, path=start), loading.load_tokenizer(cfg, start)
    rows = [json.loads(line) for line in (work / "data" / "pairs.jsonl").read_text().splitlines()][:max(8, 4 * steps)]
    rows = [{"prompt": r["chosen"][:-1], "chosen": r["chosen"][-1:], "rejected": r["rejected"][-1:]} for r in rows]
    own = [(r["prompt"][0]["content"], "I support it.") for r in rows[:4]]
    peaks()
    t0 = time.perf_counter()
    table = policy_fit(model, tokenizer, {"pairs": rows}, own=own, warn=False)
    seconds = time.perf_counter() - t0
    tokens = int((table["n"] * table["mean_tokens"]).sum())
    return [{"stage": stage, "status": "ok", "seconds": round(seconds, 1), **peaks(),
             "tokens_per_s": round(tokens / seconds, 1),
             "answers": int(table["n"].sum()), "scored_tokens": tokens, "truncated": int(table["truncated"].sum())}]


# --- the driver -------------------------------------------------------------------------------------------


def fits(result: dict) -> dict:
    """Which card a measured stage fits: its peak allocated + the CUDA context <= FIT_MARGIN of the card (the
    rule of vd.models.memory.fits, with the context measured where it was)."""
    if "peak_allocated_gib" not in result:
        return {}
    context = result.get("cuda_context_gib", CUDA_CONTEXT_GIB)
    return {card: memory_fits(result["peak_allocated_gib"] * GIB, c.memory_gib * GIB, context)
            for card, c in CARDS.items()}


def fit_table(section: dict) -> str:
    lines = ["| size | stage | status | peak allocated (GiB) | tokens/s | " + " | ".join(CARDS) + " |",
             "|---|---|---|---|---|" + "---|" * len(CARDS)]
    for size, stages in section.get("sizes", {}).items():
        for stage, r in stages.items():
            fit = fits(r) or dict.fromkeys(CARDS)  # none: measured on CPU, or failed
            lines.append(f"| {size} | {stage} | {r.get('status')} | {r.get('peak_allocated_gib', '')} | "
                         f"{r.get('tokens_per_s') or ''} | "
                         + " | ".join({True: "yes", False: "**no**", None: "-"}[ok] for ok in fit.values()) + " |")
    return "\n".join(lines)


def one(args) -> None:
    """`--one SIZE STAGE`: run a stage here, its lines to work/STAGE.jsonl (as they land: a merge's too)."""
    size, stage = args.one
    out = args.work / f"{stage}.jsonl"
    lines = run_one(size, stage, args.work, args.steps, args.cpu, args.layers, args.ppo_steps)
    out.write_text("".join(json.dumps(line) + "\n" for line in lines))


def run_one(size: str, stage: str, work: Path, steps: int, cpu: bool, layers: int | None,
            ppo_steps: int = 1) -> list[dict]:
    if stage == "build":
        from vd.core.config import load_config
        from vd.models.loading import load_tokenizer

        info = build_model(size, work / "model", cpu, layers)
        cfg = load_config(size, {"model.base": str(work / "model"), **(CPU_PARAMS if cpu else {})})
        lengths = write_data(cfg, load_tokenizer(cfg, str(work / "model")), work / "data", rows=256)
        (work / "data" / "lengths.json").write_text(json.dumps(lengths))
        return [{"stage": "build", "status": "ok", **info, "row_tokens": lengths}]
    return run_stage(size, stage, work, steps, cpu, ppo_steps)


def _failed(stage: str, error: str) -> dict:
    oom = "out of memory" in error.lower() or "OutOfMemoryError" in error
    return {"stage": stage, "status": "out of memory" if oom else "error", "error": error[-600:]}


def drive(args, size: str, work: Path, emit) -> None:
    """Every stage of `size` in turn (in a process of its own on a GPU, in this one with --cpu)."""
    deadline = time.monotonic() + args.deadline_s
    log = Path(os.environ["OUT"]) / f"bench_gpu-{size}.log" if os.environ.get("OUT") else work / "log"
    context = 0.0
    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        context = (total - free) / GIB
    for stage in args.stages:
        left = deadline - time.monotonic()
        if left < 20:
            emit({"stage": stage, "status": "skipped", "error": f"--deadline-s {args.deadline_s} reached"})
            continue
        t0 = time.perf_counter()
        if args.cpu:
            try:
                lines = run_one(size, stage, work, args.steps, True, args.layers, args.ppo_steps)
            except Exception as e:  # a stage that fails is recorded; the next runs
                lines = [_failed(stage, f"{type(e).__name__}: {e}")]
        else:
            cmd = [sys.executable, __file__, "--one", size, stage, "--work", str(work), "--steps", str(args.steps),
                   "--ppo-steps", str(args.ppo_steps)] \
                + (["--layers", str(args.layers)] if args.layers else [])
            with open(log, "a") as f:
                f.write(f"\n===== {size} {stage}\n")
                f.flush()
                try:
                    proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=left)
                    code = proc.returncode
                except subprocess.TimeoutExpired:
                    code = "timeout"
            out = work / f"{stage}.jsonl"
            lines = [json.loads(x) for x in out.read_text().splitlines()] if out.is_file() else []
            if code != 0 or not lines:
                tail = " / ".join(log.read_text().strip().splitlines()[-4:])
                lines = lines or [_failed(stage, f"exit {code}: {tail}")]
        lines[0]["seconds"] = round(time.perf_counter() - t0, 1)
        for folder in DONE_WITH.get(stage, ()):
            shutil.rmtree(work / "runs" / size / folder, ignore_errors=True)
        for line in lines:
            emit(line | ({"cuda_context_gib": round(context, 2)} if context else {}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", "--sizes", dest="sizes", nargs="+", default=None, choices=real_sizes(),
                        help="the real size(s); default llama3-3b (--cpu: llama3-3b)")
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    parser.add_argument("--steps", type=int, default=2, help="optimizer steps per training stage (the first warms up)")
    parser.add_argument("--ppo-steps", type=int, default=1,
                        help="PPO updates (each samples batch x grad_accum rollouts)")
    parser.add_argument("--layers", type=int, default=None, help="fewer decoder layers than the real model (stated in "
                                                                 "the build line); default: all")
    parser.add_argument("--deadline-s", type=float, default=540.0, help="start no stage after this many seconds")
    parser.add_argument("--cpu", action="store_true", help="tiny dims on CPU: tests the code, measures nothing")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="the results file (default benchmarks/results.json)")
    parser.add_argument("--table", action="store_true", help="print the fit table of the recorded results and stop")
    parser.add_argument("--one", nargs=2, metavar=("SIZE", "STAGE"), help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    section_name = "gpu_smoke" if args.cpu else "gpu"
    if args.table:
        print(fit_table(json.loads(args.results.read_text()).get(section_name, {}) if args.results.is_file() else {}))
        return
    if args.one:
        one(args)
        return
    if args.cpu:
        torch.set_num_threads(1)  # matrices this small gain nothing from a second thread on a shared machine
    elif not torch.cuda.is_available():
        print("bench_gpu: no CUDA GPU here; nothing measured, results unchanged. --cpu runs the code on CPU with "
              "shrunken models.")
        return
    if "build" not in args.stages:
        args.stages = ["build", *args.stages]
    section = json.loads(args.results.read_text()).get(section_name, {}) if args.results.is_file() else {}
    section |= {"machine": machine_info(), "steps": args.steps, "layers": args.layers,
                "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}
    import tempfile

    for size in args.sizes or ["llama3-3b"]:
        out_file = Path(os.environ["OUT"]) / f"bench_gpu-{size}.jsonl" if os.environ.get("OUT") else None
        results = section.setdefault("sizes", {}).setdefault(size, {})

        def emit(line: dict, size=size, out_file=out_file, results=results) -> None:
            line = {"size": size, **line}
            if line.get("status") == "ok" and "peak_allocated_gib" in line:
                line["fits"] = fits(line)
            print(json.dumps(line), flush=True)
            if out_file is not None:
                with open(out_file, "a") as f:
                    f.write(json.dumps(line) + "\n")
            results[line["stage"]] = {k: v for k, v in line.items() if k not in ("size", "stage")}
            merge_results(section_name, section, args.results)  # each stage kept as it lands

        with tempfile.TemporaryDirectory() as tmp:
            drive(args, size, Path(tmp), emit)
    print(fit_table(section))


if __name__ == "__main__":
    main()
