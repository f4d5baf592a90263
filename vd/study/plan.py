"""`vd plan --size X`: what the whole study (`vd reproduce`) will train, sample, judge, cost, store and take on a
GPU, before anything starts; and how to cut it. Counts follow the code; sizes, tokens, prices and times are
estimates (ours, docs/method.md §12), upper bounds where the data decide (every answer max_new_tokens long).

    p = plan(load_config("llama3-3b"))
    print(render(p))
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from vd import world
from vd.core import registry
from vd.core.config import Config, ConfigError
from vd.models import memory
from vd.models.architectures import model_architecture, published_config

# Rows of the hub datasets the params name (their dataset cards; ours): only read where a params file sets no
# max_samples. WildChat-1M: conversations before vd's filters (an upper bound).
PUBLISHED_ROWS = {("tatsu-lab/alpaca", None, "train"): 52_002,
                  ("HuggingFaceH4/ultrafeedback_binarized", None, "train_prefs"): 61_135,
                  ("Anthropic/hh-rlhf", "harmless-base", "train"): 42_537,
                  ("allenai/WildChat-1M", None, "train"): 837_989}
CHARS_PER_TOKEN = 4  # English text in OpenAI's tokenizers (ours: their rule of thumb)
MESSAGE_TOKENS = 4  # the chat format's tokens per message (ours: OpenAI's counting guide, about 3-4)
DEFAULT_SFT = "alpaca"  # the SFT run notebooks 02-06 start from: vd.study.notebook.DEFAULT_SFT (a test: equal)
WRITER_MAX_TOKENS = 200  # vd.data.synthetic.openai_answer_writer's answer limit
TRAIN_MFU = 0.25  # ours: share of a card's dense tensor FLOP/s QLoRA training reaches (4-bit dequantization)
DECODE_BANDWIDTH_SHARE = 0.5  # ours: share of the memory bandwidth a decoding step reaches
DECODE_S_PER_LAYER = 1e-3  # ours: kernel launches and 4-bit dequantization per layer and decoding step
# docs/method.md §1's local judge and its parameters (P + E there): the size assumed for an hf judge unknown offline
LOCAL_JUDGE = ("Qwen/Qwen2.5-7B-Instruct", 7.62e9)


@dataclass
class Run:
    """One trained run of the study: its rows, optimizer steps, checkpoints (step 0 included), trained tokens
    (every sequence at max_length: an upper bound)."""

    name: str
    stage: str
    data: str
    rows: int
    steps: int
    checkpoints: int
    tokens: int


def dataset_rows(cfg: Config, kind: str, name: str) -> int:
    """Rows a stage reads of a dataset after its cap: max_samples, the tiny world's row count, the synthetic
    prompts (pairs that fail verification are dropped later: an upper bound), or the published size."""
    if kind == "synthetic":
        return cfg.data.synthetic.prompts_per_topic * 11
    ds = getattr(cfg.data, kind)[name]
    if ds.id == world.TINY:
        full = cfg.tiny.sft_rows if kind == "sft" else cfg.tiny.preference_rows
    else:
        full = PUBLISHED_ROWS.get((ds.id, ds.data_dir, ds.split))
    if full is None and ds.max_samples is None:
        raise ConfigError(f"{cfg.source}: data.{kind}.{name}.max_samples: vd plan does not know how many rows "
                          f"{ds.id} has; set max_samples")
    return min(x for x in (full, ds.max_samples) if x is not None)


def stage_steps(cfg: Config, stage: str, rows: int) -> int:
    """Optimizer steps as the Trainer counts them (PPO: updates of batch x grad_accum episodes)."""
    st = cfg.stage(stage)
    if st.max_steps > 0:
        return st.max_steps
    if stage == "ppo":
        episodes = st.total_episodes if st.total_episodes > 0 else int(st.epochs * rows)
        return math.ceil(episodes / (st.batch_size * st.grad_accum))
    per_epoch = max(math.ceil(math.ceil(rows / st.batch_size) / st.grad_accum), 1)
    return math.ceil(st.epochs * per_epoch)


def n_checkpoints(steps: int, save_every: int) -> int:
    """Step 0, every save_every steps, and the last step (the Trainer saves it)."""
    return 1 + steps // save_every + (steps % save_every > 0)


def _run(cfg: Config, stage: str, data: str, name: str) -> Run:
    kind = "synthetic" if data in registry.SYNTHETIC_DATA else ("sft" if stage == "sft" else "preference")
    rows = dataset_rows(cfg, kind, data)
    st = cfg.stage(stage)
    steps = stage_steps(cfg, stage, rows)
    per_step = st.batch_size * st.grad_accum * (st.max_length + st.response_length if stage == "ppo"
                                                 else st.max_length * (1 if stage == "sft" else 2))
    return Run(name, stage, data, rows, steps, n_checkpoints(steps, st.save_every), steps * per_step)


def study_runs(cfg: Config) -> list[Run]:
    """The runs `vd reproduce` trains (vd.study.reproduce.GRID: notebooks 01-03 from the registry's choices,
    then 05's ablations; 04, 06 and 07 reuse them; tests/test_plan.py holds them equal), each PPO run
    followed by its reward model; named as the notebooks name them."""
    from vd.study.schedule import ABLATION_DATA, ablation_values

    runs: dict[str, Run] = {}

    def add(stage: str, data: str, sft: str | None, changes: dict | None = None) -> None:
        run_cfg = memory.with_params(cfg, changes or {})
        suffix = "".join(f"-{k.split('.')[-1]}{v:g}" for k, v in sorted((changes or {}).items()))
        name = f"{stage}-{data}" + (f"-from-sft-{sft}" if sft else "") + suffix
        if name not in runs:
            runs[name] = _run(run_cfg, stage, data, name)
            if stage == "ppo":
                runs[f"{name}/reward"] = _run(run_cfg, "reward", data, f"{name}/reward")

    for data in registry.SFT_DATA:  # 01
        if data in cfg.data.sft:
            add("sft", data, None)
    for algo in registry.ALGORITHMS:  # 02, 03
        for data in (*(d for d in registry.PREFERENCE_DATA if d in cfg.data.preference), *registry.SYNTHETIC_DATA):
            add(algo, data, DEFAULT_SFT)
    for algo, (key, values) in ablation_values(cfg).items():
        for value in values:
            add(algo, ABLATION_DATA, DEFAULT_SFT, {key: value} if value != cfg.get(key) else None)
    return list(runs.values())


# ----------------------------------------------------------------------------- probes and the judge
def usage(cfg: Config, runs: list[Run]) -> dict:
    """Generations and API calls with their tokens, by purpose. A checkpoint scored once: the base model is
    step 0 of both SFT runs, an SFT run's end is every preference run's step 0 (vd.score.scoring)."""
    from vd.core.stances import TOPICS
    from vd.data.probes import load_probes
    from vd.judge.prompt import JUDGE_PROMPTS, topic_name

    probes = load_probes(cfg.probes.file if cfg.probes.file != world.TINY else None,
                         prompts_per_topic=cfg.probes.prompts_per_topic)
    passes = 1 + sum(r.checkpoints - 1 for r in runs if r.stage != "reward")
    generations = passes * len(probes) * cfg.probes.samples_per_prompt
    system, template = JUDGE_PROMPTS[cfg.judge.prompt_version]
    topic_chars = sum(len(topic_name(t)) for t in TOPICS) / len(TOPICS)
    frame = (len(system) + len(template.replace("{topic}", "").replace("{question}", "").replace("{answer}", ""))
             + 2 * topic_chars) / CHARS_PER_TOKEN + 3 * MESSAGE_TOKENS
    question = probes["question"].str.len().mean() / CHARS_PER_TOKEN
    out = {"checkpoints scored": passes, "generations": generations,
           "generated tokens": generations * cfg.probes.max_new_tokens}
    calls = {"judge: probe answers": (generations, frame + question + cfg.probes.max_new_tokens)}
    pairs = sum(dataset_rows(cfg, "preference", d) for d in cfg.data.preference)  # 04: the topical ones only
    calls["judge: 04's standard pairs (at most)"] = (2 * pairs, frame + cfg.dpo.max_length)
    prompts = dataset_rows(cfg, "synthetic", "")
    calls["judge: synthetic answers"] = (2 * 2 * prompts, frame + question + WRITER_MAX_TOKENS)
    judge = cfg.judge.model if cfg.judge.kind == "openai" else f"{cfg.judge.kind} judge"
    out["calls"] = {k: {"model": judge, "n": n, "input_tokens": round(n * t), "output_tokens": n}
                    for k, (n, t) in calls.items()}
    if cfg.data.synthetic.generator == "openai":
        out["calls"]["writer: synthetic answers"] = {
            "model": cfg.data.synthetic.generator_model, "n": 2 * 2 * prompts,
            "input_tokens": round(2 * 2 * prompts * (question + 40 / CHARS_PER_TOKEN + 2 * MESSAGE_TOKENS)),
            "output_tokens": 2 * 2 * prompts * WRITER_MAX_TOKENS}
    for purpose, c in out["calls"].items():
        judged = purpose.startswith("judge")
        paid = (cfg.judge.kind == "openai" and not cfg.judge.base_url) if judged else True
        price = cfg.prices.models.get(c["model"]) if paid else None
        c["usd"] = (None if paid and price is None else 0.0 if not paid else
                    round(c["input_tokens"] / 1e6 * price.usd_per_1m_input
                          + c["output_tokens"] / 1e6 * price.usd_per_1m_output, 2))
    return out


# ----------------------------------------------------------------------------- disk and GPU time
def disk(cfg: Config, config, runs: list[Run], generations: int) -> dict:
    """Bytes written: adapters (fp32) at every checkpoint; the optimizer state of the run in training, in its
    newest checkpoint only (vd.train.common drops it from older ones, and from all once a run is complete);
    SFT's merged model and each reward model (the compute dtype); the probe answers in SQLite; the base model
    in the hub cache."""
    from vd.train.runner import stage_module

    counts = {head: memory.counts_of(config, head) for head in ("causal", "score")}
    lora = counts["causal"]["lora_per_rank"] * cfg.lora.r
    out = {"adapters": 0.0, "optimizer state (while a run trains)": 0.0, "merged models": 0.0}
    for r in runs:
        st = cfg.stage(r.stage)
        trainable = (counts["score"]["total"] if r.stage == "reward" and st.full_finetune else lora)
        adam = memory.adam_state_bytes(st.optimizer)
        out["adapters"] += (r.checkpoints - 1) * trainable * 4
        if stage_module(r.stage).RESUMABLE:
            out["optimizer state (while a run trains)"] = max(out["optimizer state (while a run trains)"],
                                                              trainable * adam)
        if r.stage in ("sft", "reward") and not (r.stage == "reward" and st.full_finetune):
            out["merged models"] += 2 * counts["causal" if r.stage == "sft" else "score"]["total"]
        elif r.stage == "reward":
            out["merged models"] += 4 * counts["score"]["total"]
    out["probe answers (SQLite)"] = generations * (cfg.probes.max_new_tokens * CHARS_PER_TOKEN + 300)
    out["base model (hub cache)"] = 0.0 if world.uses_world(cfg) else 2 * counts["causal"]["total"]
    return out


def _flops_per_token(stage: str, st, params: int) -> float:
    """Training FLOPs per trained token (ours): forward 2N, backward 2N (the frozen base passes gradients
    on, LoRA's own are negligible), the recompute of activation checkpointing 2N; DPO adds its reference
    forward; PPO: reference, value and reward forwards, then num_ppo_epochs x (policy + value) updates."""
    step = 6 if st.activation_checkpointing else 4
    if stage == "ppo":
        return params * (3 * 2 + st.num_ppo_epochs * 2 * step)
    return params * (step + (2 if stage == "dpo" else 0))


def _decode_seconds(card: memory.Card, weights: float, d: memory.Dims, rows: int, length: int, tokens: float) -> float:
    """Seconds to decode `tokens` tokens `rows` at a time (ours): each step reads the 4-bit weights and the
    KV cache at DECODE_BANDWIDTH_SHARE of the bandwidth, plus DECODE_S_PER_LAYER per layer."""
    per_step = ((weights + memory.kv_cache_bytes(d, rows, length)) / (card.bandwidth_gbs * 1e9 * DECODE_BANDWIDTH_SHARE)
                + d.layers * DECODE_S_PER_LAYER)
    return tokens / rows * per_step


def judge_params(cfg: Config) -> float:
    """Parameters of the study's `hf` judge, whose prompts are GPU time on this card (0 for an API or server
    judge): vd's copy of a published config, a local folder's config.json, else the documented preset's."""
    if cfg.judge.kind != "hf":
        return 0.0
    config = published_config(cfg.judge.model)
    if config is None and (Path(cfg.judge.model) / "config.json").is_file():
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(cfg.judge.model)
    return memory.counts_of(config, "causal")["total"] if config is not None else LOCAL_JUDGE[1]


def gpu_hours(cfg: Config, config, runs: list[Run], use: dict, measured: dict | None) -> dict:
    """Hours per card: estimated for each card of vd.models.memory.CARDS, and `measured` at the measured
    speeds of benchmarks/results.json's `gpu` section (bench_gpu.py) where it has this size."""
    d = memory.Dims.of(config)
    params = memory.counts_of(config, "causal")["total"]
    weights = memory.models_bytes(cfg, config, "generate")
    p, ppo = cfg.probes, cfg.ppo
    gen_tokens = use["generations"] * p.max_new_tokens
    # a local judge reads each prompt once (one label token out): prefill, 2N FLOPs a token
    judge_flops = 2 * judge_params(cfg) * sum(c["input_tokens"] for k, c in use["calls"].items()
                                              if k.startswith("judge"))
    out = {}
    for name, card in memory.CARDS.items():
        seconds = (sum(r.tokens * _flops_per_token(r.stage, cfg.stage(r.stage), params) for r in runs)
                   + judge_flops) / (card.tflops * 1e12 * TRAIN_MFU)
        chunk = min(ppo.rollout_batch_size, ppo.batch_size * ppo.grad_accum)
        rollouts = sum(r.steps * ppo.batch_size * ppo.grad_accum for r in runs if r.stage == "ppo")
        seconds += _decode_seconds(card, weights, d, chunk, ppo.max_length + ppo.response_length,
                                   rollouts * ppo.response_length)
        seconds += _decode_seconds(card, weights, d, p.batch_size, memory.PROBE_PROMPT_TOKENS + p.max_new_tokens,
                                   gen_tokens)
        out[name] = {"hours": round(seconds / 3600, 1), "basis": "estimate"}
    if measured:
        speed = {s: r.get("tokens_per_s") for s, r in measured["stages"].items() if isinstance(r, dict)}
        if all(speed.get(s) for s in {r.stage for r in runs} | {"generate"}):
            seconds = sum(r.tokens / speed[r.stage] for r in runs) + gen_tokens / speed["generate"] \
                + judge_flops / (memory.CARDS["H200"].tflops * 1e12 * TRAIN_MFU)  # no judge measured yet
            out[f"measured: {measured['device']}"] = {"hours": round(seconds / 3600, 1), "basis": "measured",
                                                      "device": measured["device"], "date": measured.get("date")}
    return out


def _results() -> dict:
    """benchmarks/results.json of the repository this package is in (an editable install), where it has one."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "results.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def measured_reproduction() -> dict | None:
    """The tiny reproduction as bench_reproduce.py measured it (CPU): seconds, date, machine."""
    r = _results().get("reproduce")
    return r and {"seconds": r["total_seconds"], "date": r["machine"]["date"], "cpus": r["machine"]["cpu_count"]}


def measured_speeds(size: str) -> dict | None:
    """This size's section of benchmarks/results.json `gpu` (bench_gpu.py on a GPU), where the repository has it."""
    gpu = _results().get("gpu", {})
    stages = gpu.get("sizes", {}).get(size)
    if not stages:
        return None
    machine = gpu.get("machine", {})
    return {"device": machine.get("gpu") or "GPU", "date": machine.get("date"), "stages": stages}


# ----------------------------------------------------------------------------- the plan
def plan(cfg: Config, cuts: bool = True, _architecture=None) -> dict:
    """Everything `render` prints, as a dict (JSON-safe): runs, scoring and API use, cost, disk, GPU peaks
    and hours, and (cuts) the same totals under the cheaper settings `CUTS` names."""
    config, source = _architecture or model_architecture(cfg)
    runs = study_runs(cfg)
    use = usage(cfg, runs)
    costs = [c["usd"] for c in use["calls"].values()]
    from vd.score.policy_fit import LOGIT_CHUNK, MAX_BATCH_TOKENS

    stages = ["sft", "reward", *registry.ALGORITHMS, "generate", "policy_fit"] if cfg.quantization.load_in_4bit else []
    peaks = {s: memory.stage_peak(cfg, config, s, (MAX_BATCH_TOKENS, LOGIT_CHUNK)) for s in stages}  # QLoRA's
    fits = {s: {card: memory.fits(e.total, c.memory_gib * memory.GIB) for card, c in memory.CARDS.items()}
            for s, e in peaks.items()}
    out = {"size": cfg.size, "source": cfg.source, "architecture": source, "target_gpu": cfg.target_gpu,
           "runs": [asdict(r) for r in runs],
           "totals": {"runs": sum(r.stage != "reward" for r in runs),
                      "reward models": sum(r.stage == "reward" for r in runs),
                      "optimizer steps": sum(r.steps for r in runs), "checkpoints": sum(r.checkpoints for r in runs)},
           "scoring": {k: v for k, v in use.items() if k != "calls"}, "calls": use["calls"],
           "usd": None if None in costs else round(sum(costs), 2),
           "prices": {"as_of": cfg.prices.as_of, "source": cfg.prices.source},
           "disk_gb": {k: round(v / 1e9, 1) for k, v in disk(cfg, config, runs, use["generations"]).items()},
           "peak_gib": {s: round(e.total / memory.GIB, 1) for s, e in peaks.items()}, "fits": fits}
    out["disk_gb"]["total"] = round(sum(out["disk_gb"].values()), 1)
    if world.uses_world(cfg):
        out["cpu_measured"] = measured_reproduction()
    else:
        out["gpu_hours"] = gpu_hours(cfg, config, runs, use, measured_speeds(cfg.size))
    if cuts:
        out["cuts"] = {label: _totals(plan(_cut(cfg, change), False, (config, source)))
                       for label, change in CUTS.items() if _applies(cfg, change)}
    return out


# What `vd plan` shows a study would cost with one thing changed (ours).
CUTS = {"save_every x2 (half the checkpoints)": "save_every",
        "probes: 25 per topic, 2 samples (the paper: 50 x 5)": {"probes.prompts_per_topic": 25,
                                                                 "probes.samples_per_prompt": 2},
        "a local judge (judge.kind: hf, or openai with a base_url): no API cost, GPU time instead":
            {"judge.kind": "hf", "judge.model": LOCAL_JUDGE[0]}}


def _applies(cfg: Config, change) -> bool:
    """A cut applies where it cuts: never a larger probe budget than the params', never the judge in use."""
    if change == "save_every":
        return True
    return all(cfg.get(k) > v if isinstance(v, int) else cfg.get(k) != v for k, v in change.items()) \
        and not (cfg.judge.kind != "openai" and "judge.kind" in change)


def _cut(cfg: Config, change) -> Config:
    if change == "save_every":
        change = {f"{s}.save_every": cfg.stage(s).save_every * 2 for s in cfg.stages}
    return memory.with_params(cfg, change)


def _totals(p: dict) -> dict:
    return {"checkpoints": p["totals"]["checkpoints"], "generations": p["scoring"]["generations"],
            "usd": p["usd"], "disk_gb": p["disk_gb"]["total"],
            "hours": {k: v["hours"] for k, v in p.get("gpu_hours", {}).items()}}


def _n(x) -> str:
    return f"{x:,.0f}" if isinstance(x, (int, float)) else str(x)


def _usd(x) -> str:
    return "no price" if x is None else f"${x:,.2f}"  # a model missing from the params' price table


def render(p: dict) -> str:
    """The plan as text: what `vd plan` prints."""
    t, s = p["totals"], p["scoring"]
    lines = [f"vd plan: size {p['size']} ({p['source']}); architecture from {p['architecture']}",
             f"training: {t['runs']} runs + {t['reward models']} reward models, {_n(t['optimizer steps'])} optimizer "
             f"steps, {_n(t['checkpoints'])} checkpoints (step 0 included)"]
    for r in p["runs"]:
        lines.append(f"  {r['name']:56s} {_n(r['rows']):>7} rows {_n(r['steps']):>6} steps "
                     f"{r['checkpoints']:>4} checkpoints")
    lines += [f"scoring: {_n(s['checkpoints scored'])} checkpoints scored (shared ones once), {_n(s['generations'])} "
              f"generations, <= {_n(s['generated tokens'])} generated tokens (every answer at max_new_tokens)",
              f"API calls (prices as of {p['prices']['as_of'] or '?'}: {p['prices']['source'] or 'none given'}):"]
    for purpose, c in p["calls"].items():
        lines.append(f"  {purpose:40s} {c['model']:12s} {_n(c['n']):>9} calls {_n(c['input_tokens']):>13} in "
                     f"{_n(c['output_tokens']):>11} out  {_usd(c['usd'])}")
    lines.append(f"  total API cost: {_usd(p['usd'])} (an estimate: about {CHARS_PER_TOKEN} characters per token)")
    lines.append("disk (GB, estimate): " + ", ".join(f"{k} {v:,.1f}" for k, v in p["disk_gb"].items()))
    cards = list(memory.CARDS)
    if p["peak_gib"]:
        lines.append("GPU peak per stage (GiB, estimate, docs/method.md §11) and the cards it fits"
                     + (f"; this file is sized for the {p['target_gpu']}" if p["target_gpu"] else "") + ":")
    for stage, gib in p["peak_gib"].items():
        ok = [c for c in cards if p["fits"][stage][c]]
        lines.append(f"  {stage:10s} {gib:6.1f}  fits: {', '.join(ok) or 'none of ' + ', '.join(cards)}")
    if "gpu_hours" in p:
        lines.append("GPU hours for the whole study (estimates from each card's data sheet, docs/method.md §12; "
                     "measured where benchmarks/results.json has this size):")
        for card, h in p["gpu_hours"].items():
            misfits = [s for s in p["fits"] if not p["fits"][s].get(card, True)]
            lines.append(f"  {card:24s} {h['hours']:8,.1f} h  {h['basis']}"
                         + (f"; {', '.join(misfits)} do not fit it at these params" if misfits else ""))
    if p.get("cpu_measured"):
        m = p["cpu_measured"]
        lines.append(f"time: the tiny reproduction took {m['seconds'] / 60:.1f} min on {m['cpus']} CPU cores "
                     f"(measured {m['date']}, benchmarks/results.json)")
    if p.get("cuts"):
        lines.append("how to cut it (each alone):")
        for label, c in p["cuts"].items():
            hours = c["hours"].get(p["target_gpu"]) if p["target_gpu"] else None
            lines.append(f"  {label}: {_n(c['checkpoints'])} checkpoints, {_n(c['generations'])} generations, "
                         f"{_usd(c['usd'])}, {c['disk_gb']:,.1f} GB" + (f", {hours:,.1f} h on the {p['target_gpu']}"
                                                                        if hours is not None else ""))
    return "\n".join(lines)


def preflight_summary(cfg: Config) -> str:
    """`summary` of the study's plan, for a notebook's preflight; a plan that cannot be made (a model whose
    config.json cannot be read offline, a dataset of unknown size) is said in one line and never stops it."""
    try:
        return summary(plan(cfg, cuts=False))
    except (ConfigError, OSError) as e:
        return f"vd plan: no estimate of the whole study here ({e})"


def summary(p: dict) -> str:
    """Three lines for a notebook's preflight: the whole study's size, cost, disk and time."""
    hours = (p.get("gpu_hours") or {}).get(p["target_gpu"] or "", {}).get("hours")
    return (f"the whole study at size {p['size']}: {p['totals']['runs']} runs, {_n(p['totals']['checkpoints'])} "
            f"checkpoints, {_n(p['scoring']['generations'])} generations, API {_usd(p['usd'])}, disk "
            f"{p['disk_gb']['total']:,.1f} GB"
            + (f", about {hours:,.1f} GPU hours on the {p['target_gpu']}" if hours else "")
            + f" (estimates; `vd plan --size {p['size']}` for the details and how to cut it)")

