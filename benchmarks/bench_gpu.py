"""QLoRA peak GPU memory and tokens/s of every stage at the real sizes, on one GPU (random weights).

For each real size, a model with random weights is built from the real config (vd/models/architectures.py:
the architecture decides memory and speed, the weights do not), saved in the compute dtype with a
tokenizer of the real vocabulary size, and then loaded and trained by vd exactly as a study does it: 4-bit
NF4, the params' LoRA, batch sizes, gradient accumulation, lengths, activation checkpointing and paged
8-bit AdamW. Training rows are synthetic, every one as long as the params allow (the worst case the
params admit: SFT and preference sequences of max_length tokens; PPO prompts of ppo.max_length tokens
with response_length tokens of rollout, which random weights never end early). Stages, each in a
process of its own (a clean peak; a stage that runs out of memory is recorded and the others go on):

  sft, dpo, simpo   vd.train.<stage>.build_trainer(...).train()
  reward            vd.train.reward.train_reward_model (the reward model PPO is trained against)
  ppo               vd.train.ppo.build_trainer(...).train(): policy, reward and value models
  generate          vd.models.generate on the policy with a LoRA adapter, as `vd score` runs it, at the
                    params' probe batch size and larger ones (answers run to max_new_tokens)

Measured per stage: the peak GPU memory (PyTorch's peak allocated and reserved, and the device's used
memory polled every 50 ms, CUDA context included) and tokens/s: the tokens of one optimizer step over
the median step time after --warmup steps (PPO: one update of batch x accumulation episodes of prompt +
response tokens; generate: new tokens over wall time). From the peaks, which stage fits a T4, an L4 and
an A100-40GB (`fits`: peak allocated + CUDA context <= 95 % of the card's memory).

Without a CUDA GPU this script measures nothing and says so; `--smoke` runs the same code on the CPU
with shrunken configs (what tests/test_benchmarks.py runs).
    python benchmarks/bench_gpu.py [--sizes llama3-3b ...] [--stages sft dpo ...] [--steps 3] [--warmup 1]
    python benchmarks/bench_gpu.py --table      # the fit table of the recorded results
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
from common import RESULTS, machine_info, merge_results, model_config, real_sizes
from weights_floor import CARDS, GIB
from weights_floor import STAGES as RESIDENT

STAGES = tuple(RESIDENT)  # sft, dpo, simpo, reward, ppo, generate: the same stages the weights floor counts
WORDS = ("value alignment model answer question policy reward support oppose neutral topic stance drift "
         "data training checkpoint probe people society family health money work school science nature "
         "history future law rights freedom safety risk benefit cost choice change growth trust fair").split()
# --smoke: the same code on CPU, every model and length shrunk
SMOKE_MODEL = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, head_dim=16, vocab_size=4096)
SMOKE_PARAMS = {f"{s}.{k}": v for s in ("sft", "dpo", "simpo", "reward", "ppo")
                for k, v in (("batch_size", 2), ("grad_accum", 1), ("max_length", 64))} | {
    "ppo.max_length": 32, "ppo.response_length": 8, "ppo.num_ppo_epochs": 1,
    "probes.max_new_tokens": 8, "probes.batch_size": 10}
FIT_MARGIN = 0.95


# --- the random-weight model and its tokenizer ---------------------------------------------------


def build_model(size: str, out: Path, smoke: bool) -> None:
    """A random-weight `size` model in the compute dtype, with a ChatML tokenizer of its vocabulary size."""
    from transformers import AutoModelForCausalLM

    from vd.core.config import load_config
    from vd.models.loading import compute_dtype
    from vd.train.common import quiet as _quiet

    vocab_size = SMOKE_MODEL["vocab_size"] if smoke else model_config(size).vocab_size
    tokenizer = vocabulary_sized_tokenizer(vocab_size)
    config = model_config(size, **(SMOKE_MODEL if smoke else {}), pad_token_id=tokenizer.pad_token_id,
                          eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    with torch.device(device):  # initialised where it runs: an 8B model inits in seconds on a GPU
        model = AutoModelForCausalLM.from_config(config, dtype=compute_dtype(load_config(size)))
    with _quiet(True):  # no progress bars
        model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def vocabulary_sized_tokenizer(vocab_size: int):
    """A byte-level BPE tokenizer trained on WORDS (each " word" one token), padded with filler tokens
    to `vocab_size`, so that every id a random model samples decodes; ChatML as every vd model."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    from vd.core.chat import CHATML_TEMPLATE
    from vd.world.build import train_tokenizer

    sentences = [" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(12)) for i in range(400)]
    trained = train_tokenizer([{"messages": [{"content": s}]} for s in sentences], vocab_size=1000)
    spec = json.loads(trained.backend_tokenizer.to_str())
    vocab = spec["model"]["vocab"]
    used = len(trained)
    vocab.update({f"fill{i}": i for i in range(used, vocab_size)})  # byte-level alphabet: decodes as text
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(spec)),
                                        eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.chat_template = CHATML_TEMPLATE
    if len(tokenizer) != vocab_size:
        raise RuntimeError(f"tokenizer has {len(tokenizer)} tokens, the model {vocab_size}")
    return tokenizer


# --- synthetic rows of the params' lengths ---------------------------------------------------------


def words(n: int, offset: int = 0) -> str:
    return " ".join(WORDS[(offset + i) % len(WORDS)] for i in range(max(n, 1)))


def chat_length(tokenizer, messages: list[dict], generation_prompt: bool = False) -> int:
    return len(tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation_prompt,
                                             return_dict=False))


def sized_answer(tokenizer, prompt: list[dict], total: int, offset: int) -> list[dict]:
    """An assistant turn that brings prompt + answer to `total` tokens (each word is one token)."""
    n = total - chat_length(tokenizer, prompt + [{"role": "assistant", "content": "x"}]) + 1
    answer = [{"role": "assistant", "content": words(n, offset)}]
    while chat_length(tokenizer, prompt + answer) > total and n > 1:
        n -= 1
        answer = [{"role": "assistant", "content": words(n, offset)}]
    return answer


def stage_rows_for(cfg, stage: str, tokenizer, n_rows: int) -> tuple[list[dict], float]:
    """`n_rows` training rows of `stage` at the params' lengths, and the tokens of one row (a pair: both)."""
    st = cfg.stage(stage)
    if stage == "ppo":  # prompts as long as ppo.max_length admits
        n = st.max_length - chat_length(tokenizer, [{"role": "user", "content": "x"}], True) + 1
        prompt = [{"role": "user", "content": words(n)}]
        while chat_length(tokenizer, prompt, True) > st.max_length:
            n -= 1
            prompt = [{"role": "user", "content": words(n)}]
        rows = [{"prompt": prompt, "chosen": [], "rejected": []}] * n_rows
        return rows, chat_length(tokenizer, prompt, True) + st.response_length
    prompt = [{"role": "user", "content": words(st.max_length // 8)}]
    if stage == "sft":
        row = {"messages": prompt + sized_answer(tokenizer, prompt, st.max_length, 3)}
        return [row] * n_rows, chat_length(tokenizer, row["messages"])
    chosen = sized_answer(tokenizer, prompt, st.max_length, 3)
    rejected = sized_answer(tokenizer, prompt, st.max_length, 5)
    tokens = chat_length(tokenizer, prompt + chosen) + chat_length(tokenizer, prompt + rejected)
    return [{"prompt": prompt, "chosen": chosen, "rejected": rejected}] * n_rows, tokens


# --- one stage, in its own process -------------------------------------------------------------------


class PeakPoller:
    """The device's used memory (CUDA context and every allocator included), polled every 50 ms."""

    def __init__(self):
        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self):
        while not self._stop.wait(0.05):
            free, total = torch.cuda.mem_get_info()
            self.peak = max(self.peak, total - free)

    def __enter__(self):
        if torch.cuda.is_available():
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()


def step_timer(cuda: bool):
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        times: list[float] = []

        def on_train_begin(self, args, state, control, **kw):
            self.times[:] = [time.perf_counter()]

        def on_step_end(self, args, state, control, **kw):
            if cuda:
                torch.cuda.synchronize()
            self.times.append(time.perf_counter())

    return StepTimer()


def run_stage(size: str, stage: str, work: Path, steps: int, warmup: int, smoke: bool) -> dict:
    """Train (or generate) `stage` of `size` for warmup + steps steps; what it measured."""
    from vd.core.config import load_config
    from vd.core.run import RunRecord
    from vd.models import loading as models
    from vd.train.common import StageJob
    from vd.train.reward import train_reward_model
    from vd.train.runner import stage_module

    cuda = torch.cuda.is_available()
    model_dir = work / "model"  # every stage starts from it (preference stages: as if it were merged SFT)
    overrides = {"model.base": str(model_dir)} | (SMOKE_PARAMS if smoke else {})
    total = warmup + steps
    for st in ("sft", "dpo", "simpo", "reward", "ppo"):
        overrides |= {f"{st}.max_steps": total, f"{st}.save_every": 10 ** 6}
    cfg = load_config(size, overrides)
    free, total_memory = torch.cuda.mem_get_info() if cuda else (0, 0)
    context = total_memory - free  # the CUDA context, before any model is loaded
    t0 = time.perf_counter()
    with PeakPoller() as poller:
        if stage == "generate":
            result = run_generate(cfg, model_dir, steps, warmup)
        else:
            st = cfg.stage(stage)
            tokenizer = models.load_tokenizer(cfg, str(model_dir))
            rows, row_tokens = stage_rows_for(cfg, stage, tokenizer, total * st.batch_size * st.grad_accum)
            timer = step_timer(cuda)
            data = "alpaca" if stage == "sft" else "ultrafeedback"
            run_dir = work / ("ppo" if stage == "reward" else stage)  # PPO finds its reward model in ppo/reward/
            record = RunRecord(root=run_dir, stage=stage, data=data, size=cfg.size)
            if stage == "reward":
                train_reward_model(cfg, record, str(model_dir), rows, callbacks=[timer])
            else:
                if stage == "ppo" and not (run_dir / "reward" / "model" / "config.json").is_file():
                    raise SystemExit("the ppo stage needs the reward stage's model: run --stages reward ppo")
                job = StageJob(cfg, stage, data, record, str(model_dir), [timer], {})
                stage_module(stage).build_trainer(job, rows).train()
            per_step = row_tokens * st.batch_size * st.grad_accum
            seconds = [b - a for a, b in zip(timer.times, timer.times[1:])][warmup:]
            result = {"steps_timed": len(seconds), "step_seconds": [round(s, 3) for s in seconds],
                      "tokens_per_step": per_step,
                      "tokens_per_s": round(per_step / statistics.median(seconds), 1) if seconds else None,
                      "settings": {"batch_size": st.batch_size, "grad_accum": st.grad_accum,
                                   "max_length": st.max_length, "optimizer": st.optimizer,
                                   "activation_checkpointing": st.activation_checkpointing}
                      | ({"response_length": st.response_length} if stage == "ppo" else {})}
    result["seconds"] = round(time.perf_counter() - t0, 1)
    if cuda:
        result |= {"peak_allocated_gib": round(torch.cuda.max_memory_allocated() / GIB, 2),
                   "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / GIB, 2),
                   "peak_device_used_gib": round(poller.peak / GIB, 2), "cuda_context_gib": round(context / GIB, 2)}
    else:
        import resource

        result["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB, 2)
    return result


def run_generate(cfg, model_dir: Path, batches: int, warmup: int) -> dict:
    """Probe generation as `vd score` runs it (4-bit policy + LoRA adapter) at the params' batch size and
    2x, 4x, 8x; `warmup` + `batches` batches each, tokens/s over the timed batches."""
    from peft import get_peft_model

    from vd.data.probes import load_probes
    from vd.models import loading as models
    from vd.models.generate import Sampling, generate_answers

    model = get_peft_model(models.load_model(cfg, str(model_dir)), models.lora_config(cfg)).eval()
    tokenizer = models.load_tokenizer(cfg, str(model_dir), padding_side="left")
    sampling = Sampling.from_config(cfg)
    probes = load_probes()
    questions = list(zip(probes["id"], probes["question"]))
    out = {}
    for batch_size in (cfg.probes.batch_size * k for k in (1, 2, 4, 8)):
        per_batch = max(batch_size // sampling.samples_per_prompt, 1)
        generate_answers(model, tokenizer, questions[:per_batch * warmup], sampling, batch_size)
        timed = questions[per_batch * warmup: per_batch * (warmup + batches)]
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        answers = generate_answers(model, tokenizer, timed, sampling, batch_size)
        seconds = time.perf_counter() - t0
        out[str(batch_size)] = {"generations": len(answers), "seconds": round(seconds, 2),
                                "generations_per_s": round(len(answers) / seconds, 2),
                                "new_tokens_per_s": round(sum(a["n_new_tokens"] for a in answers) / seconds, 1)}
    return {"by_batch_size": out, "params_batch_size": cfg.probes.batch_size,
            "tokens_per_s": out[str(cfg.probes.batch_size)]["new_tokens_per_s"],
            "max_new_tokens": sampling.max_new_tokens}


# --- the driver --------------------------------------------------------------------------------


def fits(result: dict) -> dict:
    """Which card a measured stage fits: peak allocated + CUDA context <= FIT_MARGIN x the card's memory."""
    if "peak_allocated_gib" not in result:
        return {}
    need = result["peak_allocated_gib"] + result["cuda_context_gib"]
    return {card: need <= FIT_MARGIN * gib for card, gib in CARDS.items()}


def fit_table(section: dict) -> str:
    lines = ["| size | stage | peak allocated + context (GiB) | tokens/s | " + " | ".join(CARDS) + " |",
             "|---|---|---|---|" + "---|" * len(CARDS)]
    for size, stages in section.get("sizes", {}).items():
        for stage, r in stages.items():
            if "error" in r:
                lines.append(f"| {size} | {stage} | {r['error'][:60]} | | " + " | ".join("?" for _ in CARDS) + " |")
                continue
            need = r.get("peak_allocated_gib", 0) + r.get("cuda_context_gib", 0)
            fit = r.get("fits") or dict.fromkeys(CARDS)  # none: measured on CPU (--smoke)
            lines.append(f"| {size} | {stage} | {need:.1f} | {r.get('tokens_per_s')} | "
                         + " | ".join({True: "yes", False: "**no**", None: "-"}[ok] for ok in fit.values()) + " |")
    return "\n".join(lines)


def run_in_process(args, size: str, stage: str, work: Path) -> dict:
    """One stage in a fresh process; its error (last lines) if it fails, out-of-memory named."""
    out = work / f"{stage}.json"
    cmd = [sys.executable, __file__, "--one", size, stage, "--work", str(work), "--steps", str(args.steps),
           "--warmup", str(args.warmup)] + (["--smoke"] if args.smoke else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode == 0 and out.is_file():
        result = json.loads(out.read_text())
        return result | {"fits": fits(result)}
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    oom = any("OutOfMemoryError" in line or "out of memory" in line for line in tail)
    print("\n".join(tail), file=sys.stderr)
    return {"error": ("out of memory: " if oom else "failed: ") + " / ".join(tail)[-300:], "oom": oom}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=real_sizes(), choices=real_sizes())
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    parser.add_argument("--steps", type=int, default=3, help="timed optimizer steps (generate: timed batches)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--smoke", action="store_true", help="on CPU with shrunken models: tests the code, measures nothing")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the results file (default benchmarks/results.json)")
    parser.add_argument("--table", action="store_true", help="print the fit table of the recorded results and stop")
    parser.add_argument("--one", nargs=2, metavar=("SIZE", "STAGE"), help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    section_name = "gpu_smoke" if args.smoke else "gpu"
    if args.table:
        print(fit_table(json.loads(args.results.read_text()).get(section_name, {}) if args.results.is_file() else {}))
        return
    if args.one:
        size, stage = args.one
        if stage == "build":
            build_model(size, args.work / "model", args.smoke)
            return
        result = run_stage(size, stage, args.work, args.steps, args.warmup, args.smoke)
        (args.work / f"{stage}.json").write_text(json.dumps(result))
        return
    if not args.smoke and not torch.cuda.is_available():
        print("bench_gpu: no CUDA GPU here; nothing measured, results unchanged (the GPU rows stay open). "
              "--smoke runs the code on CPU with shrunken models.")
        return
    stages = [s for s in STAGES if s in args.stages or (s == "reward" and "ppo" in args.stages)]
    section = json.loads(args.results.read_text()).get(section_name, {}) if args.results.is_file() else {}
    section |= {"machine": machine_info(), "steps": args.steps, "warmup": args.warmup}
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, __file__, "--one", size, "build", "--work", str(work)]
                                  + (["--smoke"] if args.smoke else []))
            if proc.returncode:
                raise SystemExit(f"building the random {size} model failed")
            print(f"[{size}] random model built in {time.perf_counter() - t0:.0f} s", flush=True)
            for stage in stages:
                result = run_in_process(args, size, stage, work)
                section.setdefault("sizes", {}).setdefault(size, {})[stage] = result
                merge_results(section_name, section, args.results)  # each stage kept as it lands
                print(f"[{size}] {stage}: {json.dumps(result)}", flush=True)
    print(fit_table(section))


if __name__ == "__main__":
    main()
