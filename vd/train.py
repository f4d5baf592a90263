"""Post-training stages on TRL 1.12 + PEFT: SFT, DPO, SimPO, and PPO with its reward model.

    run = train_stage(cfg, "sft", "wildchat")                   # runs/<size>/sft-wildchat/
    train_stage(cfg, "dpo", "synthetic-support", from_run=run)  # .../dpo-synthetic-support-from-sft-wildchat/
    vd train --size tiny --stage dpo --data ultrafeedback --from sft-wildchat

A run folder `<runs_dir>/<size>/<run name>/` holds `config.yaml` (the resolved config), `run.json`
(stage, data, base model, total steps, the checkpoints from step 0, a complete flag; rewritten
atomically as checkpoints appear), the `checkpoint-<step>/` folders the HF Trainer writes (all kept:
adapters are small), `train_log.csv` (the trainer's log history: loss, rewards/accuracies, KL, ...),
for SFT runs `merged/` (the final adapter merged into the base), for synthetic data
`synthetic_pairs.jsonl` and `synthetic_judged.csv`, and for PPO runs `reward/` (the reward model).

Models (DESIGN §4): QLoRA (4-bit NF4 + LoRA) on CUDA, plain fp32 + LoRA on CPU (never 4-bit training
on CPU: its LoRA gradients are silently wrong there). Every preference stage starts from the SFT run's
`merged/` model with a fresh LoRA adapter, so TRL's PEFT reference ("adapter disabled") is exactly the
final SFT policy, not the bare base model; step 0 of a preference stage is that merged model.

Interrupted runs resume from their last checkpoint (HF Trainer state: optimizer, scheduler, RNG, data
position) and end where an uninterrupted run ends. PPO is the exception: TRL 1.12's PPOTrainer.train()
cannot resume, so an interrupted PPO stage restarts from step 0 (its reward model is kept); under the
same seed the restarted run is the uninterrupted run. Nothing here is distribution code: the same
entry point runs under `accelerate launch` (files are written by the main process only).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import inspect
import json
import logging
import re
import shutil
import sys
import time
from pathlib import Path

import yaml

from vd import models
from vd.config import ALGORITHMS, PREFERENCE_DATASETS, SFT_DATASETS, Config, ConfigError, StageConfig
from vd.store import atomic_write_csv, atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

LABEL_COLUMNS = ("topic", "stance", "chosen_stance", "rejected_stance")  # tiny-world labels, not trained on
_CKPT = re.compile(r"^checkpoint-(\d+)$")
# Config sections that determine every stage's training (plus the stage's own section and its dataset's
# entry): a run folder is resumed, or returned as complete, only under the same values.
_TRAINING_KEYS = ("seed", "model", "quantization", "lora", "tiny")


class TrainRequestError(ConfigError):
    """A stage/data/--from combination that cannot be trained (caught by the CLI like a config error)."""


class _Interrupted(Exception):
    """Raised by the stop_after callback where a trainer's loop ignores should_training_stop (PPO)."""


# --- requests and run folders ------------------------------------------------------------------


def default_run_name(stage: str, data: str, from_run: Path | None = None) -> str:
    return f"{stage}-{data}" if from_run is None else f"{stage}-{data}-from-{Path(from_run).name}"


def read_run(run_dir: Path) -> dict | None:
    path = Path(run_dir) / "run.json"
    return json.loads(path.read_text()) if path.is_file() else None


def resolve_run(ref: str | Path, size: str, runs_dir: str | Path = "runs") -> Path:
    """An SFT run given as a path to its folder, or as a run name under `<runs_dir>/<size>/`."""
    path = Path(ref)
    return path if (path / "run.json").is_file() or path.is_absolute() else Path(runs_dir) / size / path


def check_request(cfg: Config, stage: str, data: str, from_run: str | Path | None,
                  runs_dir: str | Path = "runs") -> Path | None:
    """Validate a stage/data/--from combination before anything is loaded; return the SFT run folder."""
    if stage not in ALGORITHMS:
        raise TrainRequestError(f"--stage {stage!r}: expected one of {', '.join(ALGORITHMS)}")
    if stage == "sft":
        if data not in SFT_DATASETS:
            raise TrainRequestError(f"--data {data!r}: SFT trains on one of {', '.join(SFT_DATASETS)}")
        if from_run is not None:
            raise TrainRequestError("--from: SFT starts from the base model; --from is for preference stages")
        if data not in cfg.data.sft:
            raise TrainRequestError(f"{cfg.source}: data.sft.{data}: not configured for size {cfg.size!r}")
        return None
    if data not in PREFERENCE_DATASETS:
        raise TrainRequestError(f"--data {data!r}: {stage} trains on one of {', '.join(PREFERENCE_DATASETS)}")
    if not data.startswith("synthetic-") and data not in cfg.data.preference:
        raise TrainRequestError(f"{cfg.source}: data.preference.{data}: not configured for size {cfg.size!r}")
    if from_run is None:
        raise TrainRequestError(f"--from: {stage} starts from a finished SFT run; name one (e.g. --from sft-wildchat)")
    run = resolve_run(from_run, cfg.size, runs_dir)
    info = read_run(run)
    if info is None:
        raise TrainRequestError(f"--from {from_run}: no SFT run at {run} (no run.json)")
    if info.get("stage") != "sft":
        raise TrainRequestError(f"--from {from_run}: {run} is a {info.get('stage')} run, not an SFT run")
    if info.get("size") != cfg.size:
        raise TrainRequestError(f"--from {from_run}: {run} was trained for size {info.get('size')!r}, not {cfg.size!r}")
    if not info.get("complete") or not (run / "merged" / "config.json").is_file():
        raise TrainRequestError(f"--from {from_run}: the SFT run at {run} is not complete; finish it first "
                                f"(vd train --stage sft --data {info.get('data')} resumes it)")
    return run.resolve()


def checkpoints(run_dir: Path) -> list[dict]:
    """Step 0 (the stage's starting model, no adapter) and every saved adapter checkpoint, by step."""
    found = []
    for d in Path(run_dir).iterdir() if Path(run_dir).is_dir() else ():
        m = _CKPT.match(d.name)
        if m and (d / "trainer_state.json").is_file() and any(  # trainer_state.json: a finished save
                (d / f).is_file() for f in ("adapter_model.safetensors", "adapter_model.bin")):
            found.append({"step": int(m.group(1)), "adapter": d.name})
    return [{"step": 0, "adapter": None}] + sorted(found, key=lambda c: c["step"])


def process_state():
    """accelerate's process state. On CPU it must be created with cpu=True, or processes started by
    `accelerate launch --multi_gpu` / torchrun on a machine without GPUs each train alone (transformers
    would create it with cpu=False first); it is created once per process and shared."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def _is_main() -> bool:
    return process_state().is_main_process


def _wait() -> None:
    process_state().wait_for_everyone()


def _write_run(run_dir: Path, info: dict, log_history: list | None = None) -> None:
    if not _is_main():
        return
    info["checkpoints"] = checkpoints(run_dir)
    atomic_write_json(info, run_dir / "run.json")
    if log_history:
        import pandas as pd

        df = pd.DataFrame(log_history)
        atomic_write_csv(df[["step"] + [c for c in df.columns if c != "step"]] if "step" in df else df,
                         run_dir / "train_log.csv")


def _training_part(cfg_dict: dict, stage: str, data: str) -> dict:
    """What determines a run's training: a run folder is resumed (or returned) only under the same."""
    part = {k: cfg_dict.get(k) for k in _TRAINING_KEYS}
    part.update({k: cfg_dict.get(k) for k in ((stage, "reward") if stage == "ppo" else (stage,))})
    d = cfg_dict.get("data") or {}
    part["data"] = d.get("synthetic") if data.startswith("synthetic-") else \
        (d.get("sft" if stage == "sft" else "preference") or {}).get(data)
    return part


# --- data --------------------------------------------------------------------------------------


def _loader_kwargs(loader, ds, seed: int) -> dict:
    """The DatasetConfig fields `loader` takes (id -> source)."""
    fields = {**dataclasses.asdict(ds), "source": ds.id, "seed": seed}
    return {k: v for k, v in fields.items() if k in inspect.signature(loader).parameters}


def stage_rows(cfg: Config, stage: str, data: str, run_dir: Path | None = None) -> list[dict]:
    """The training rows of a stage: SFT `messages` rows or preference `prompt/chosen/rejected` rows."""
    from vd import data as vdata

    if data.startswith("synthetic-"):
        rows = synthetic_rows(cfg, data.split("-", 1)[1], run_dir)
    elif cfg.model.base == "tiny":
        from vd.tiny import ensure_world

        rows = ensure_world(cfg, verbose=False).load_rows(data)
        ds = (cfg.data.sft if stage == "sft" else cfg.data.preference)[data]
        rows = rows[:ds.max_samples] if ds.max_samples else rows
    else:
        ds = (cfg.data.sft if stage == "sft" else cfg.data.preference)[data]
        loader = vdata.SFT_LOADERS[data] if stage == "sft" else vdata.PREFERENCE_LOADERS[data]
        res = loader(**_loader_kwargs(loader, ds, cfg.seed))
        log.info(res.summary())
        rows = res.rows
    rows = [{k: v for k, v in r.items() if k not in LABEL_COLUMNS} for r in rows]
    if not rows:
        raise ValueError(f"{data}: no training rows")
    return rows


def synthetic_rows(cfg: Config, setting: str, run_dir: Path | None = None) -> list[dict]:
    """The synthetic value-gap pairs (chosen takes `setting`, rejected the opposite stance).

    Built once per run by the main process and written to `synthetic_pairs.jsonl` (with the judged
    stance probabilities of every kept answer in `synthetic_judged.csv`, from which the dataset's value
    gap is computed); other processes, and a resumed run, read that file.
    """
    path = run_dir / "synthetic_pairs.jsonl" if run_dir is not None else None
    with process_state().main_process_first():
        if path is not None and path.is_file():
            return [json.loads(line) for line in path.read_text().splitlines()]
        from vd.synthetic import build_synthetic

        rows, judged = build_synthetic(cfg, setting)
        if path is not None and _is_main():
            import pandas as pd

            atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
            judged = pd.DataFrame(judged)
            atomic_write_csv(judged, run_dir / "synthetic_judged.csv")
            gap = {s: judged[f"chosen_p_{s}"].mean() - judged[f"rejected_p_{s}"].mean() for s in ("support", "oppose")}
            print(f"[{run_dir.name}] synthetic-{setting}: {len(rows)} pairs; value gap (chosen - rejected) "
                  + ", ".join(f"{k} {v:+.2f}" for k, v in gap.items()), flush=True)
    return rows


# --- TRL configs -------------------------------------------------------------------------------


def trl_args(config_cls, cfg: Config, st: StageConfig, output_dir: Path, **extra):
    """A TRL config for one stage from its params: precision, checkpoint cadence, logging, seed."""
    import torch

    cuda = torch.cuda.is_available()
    dtype = models.compute_dtype(cfg)
    optim = st.optimizer
    if not cuda and ("8bit" in optim or "paged" in optim):
        optim = "adamw_torch"  # bitsandbytes optimizers are for CUDA; on CPU the plain AdamW
    kw = dict(output_dir=str(output_dir), per_device_train_batch_size=st.batch_size,
              gradient_accumulation_steps=st.grad_accum, learning_rate=st.learning_rate,
              num_train_epochs=st.epochs, max_steps=st.max_steps if st.max_steps > 0 else -1,
              warmup_steps=st.warmup_ratio if st.warmup_ratio < 1 else 0.0,  # a float < 1 is a ratio
              lr_scheduler_type=st.lr_scheduler, optim=optim, save_strategy="steps", save_steps=st.save_every,
              save_total_limit=None, logging_steps=1 if cfg.model.base == "tiny" else min(10, st.save_every),
              report_to="none", seed=cfg.seed, data_seed=cfg.seed, bf16=cuda and dtype == torch.bfloat16,
              fp16=cuda and dtype == torch.float16, use_cpu=not cuda, dataloader_pin_memory=cuda,
              disable_tqdm=tidy(cfg), ddp_find_unused_parameters=False)
    fields = {f.name for f in dataclasses.fields(config_cls)}
    # transformers 5.20 still calls it gradient_checkpointing (5.23 renames it activation_checkpointing)
    kw["activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"] = \
        st.activation_checkpointing
    if st.activation_checkpointing:
        kw["gradient_checkpointing_kwargs"] = {"use_reentrant": False}
    kw.update(extra)
    unknown = sorted(set(kw) - fields)
    if unknown:
        raise TypeError(f"{config_cls.__name__} takes no {', '.join(unknown)}")  # a bug here, not the user's
    return config_cls(**kw)


def load_policy(cfg: Config, path: str | None, st: StageConfig, head: str = "causal"):
    """A trainable model (4-bit + prepared for k-bit training on CUDA when the params say so)."""
    model = models.load_model(cfg, path=path, trainable=True, head=head)
    if models.use_4bit(cfg):
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=st.activation_checkpointing)
    return model


def tidy(cfg: Config) -> bool:
    """No progress bars for the tiny size or when stderr is not a terminal (papermill, logs)."""
    return cfg.model.base == "tiny" or not sys.stderr.isatty()


@contextlib.contextmanager
def _quiet(enabled: bool):
    """Without the progress bars of datasets (map/filter) and transformers (loading/writing weights)."""
    import datasets
    from transformers.utils import logging as hf_logging

    if not enabled:
        yield
        return
    was_ds, was_hf = datasets.utils.logging.is_progress_bar_enabled(), hf_logging.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_ds:
            datasets.enable_progress_bars()
        if was_hf:
            hf_logging.enable_progress_bar()


def build_trainer(cfg: Config, stage: str, data: str, from_run: Path | None, run_dir: Path, callbacks=()):
    """The TRL trainer of an SFT, DPO or SimPO stage, ready to train (PPO: vd.train_ppo.build_ppo_trainer)."""
    import datasets
    from transformers import set_seed

    if stage == "ppo":
        from vd.train_ppo import build_ppo_trainer

        return build_ppo_trainer(cfg, data, from_run, run_dir, callbacks)
    set_seed(cfg.seed)  # the LoRA init happens before the Trainer seeds itself
    st = cfg.stage(stage)
    start = None if stage == "sft" else str(Path(from_run) / "merged")
    tokenizer = models.load_tokenizer(cfg, start)
    dataset = datasets.Dataset.from_list(stage_rows(cfg, stage, data, run_dir))
    model = load_policy(cfg, start, st)
    common = dict(model=model, train_dataset=dataset, processing_class=tokenizer,
                  peft_config=models.lora_config(cfg), callbacks=list(callbacks))
    with _quiet(tidy(cfg)):
        if stage == "sft":
            from trl import SFTConfig, SFTTrainer

            args = trl_args(SFTConfig, cfg, st, run_dir, max_length=st.max_length, assistant_only_loss=True)
            trainer = SFTTrainer(args=args, **common)
        elif stage == "dpo":
            from trl import DPOConfig, DPOTrainer

            args = trl_args(DPOConfig, cfg, st, run_dir, beta=st.beta, loss_type=["sigmoid"], max_length=st.max_length)
            # ref_model=None with a fresh adapter on the merged SFT model: TRL's reference is the model with
            # the adapter disabled, i.e. the final SFT policy.
            trainer = DPOTrainer(args=args, ref_model=None, **common)
        else:
            from trl.experimental.cpo import CPOConfig, CPOTrainer

            # SimPO = CPO's "simpo" loss without its NLL term: -logsigmoid(β·Δ(mean log-prob) − γ), no reference.
            # params' simpo.gamma is TRL's simpo_gamma, which is γ itself (not γ/β as in the SimPO paper's
            # tables): for the paper's β = 2.5, γ/β = 0.5, set gamma = 1.25. TRL's CPO defaults are not SimPO's.
            args = trl_args(CPOConfig, cfg, st, run_dir, loss_type="simpo", cpo_alpha=0.0, beta=st.beta,
                            simpo_gamma=st.gamma, max_length=st.max_length, remove_unused_columns=False)
            trainer = CPOTrainer(args=args, **common)
    _tidy_callbacks(trainer)
    return trainer


def _tidy_callbacks(trainer) -> None:
    """With disable_tqdm the Trainer prints every log dict; our progress callback prints one line per checkpoint."""
    from transformers.trainer_callback import PrinterCallback

    if trainer.args.disable_tqdm:
        trainer.remove_callback(PrinterCallback)


# --- callback ----------------------------------------------------------------------------------


def _make_callback(run_dir: Path, info: dict, label: str, stop_after: int | None, raise_on_stop: bool):
    from transformers import TrainerCallback

    class RunCallback(TrainerCallback):
        """Keeps run.json and train_log.csv current at every checkpoint; stops at `stop_after`."""

        t0 = time.perf_counter()

        def on_train_begin(self, args, state, control, **kw):
            info["total_steps"] = int(state.max_steps)
            _write_run(run_dir, info)

        def on_step_end(self, args, state, control, **kw):
            if stop_after is not None and state.global_step >= stop_after:
                control.should_save = True
                control.should_training_stop = True

        def on_save(self, args, state, control, **kw):
            _write_run(run_dir, info, state.log_history)
            if state.is_world_process_zero:
                keys = ("loss", "rewards/accuracies", "accuracy", "objective/kl", "objective/scores")
                last = next((h for h in reversed(state.log_history) if any(k in h for k in keys)), {})
                shown = {k: last[k] for k in keys if k in last}
                print(f"[{label}] step {state.global_step}/{state.max_steps} "
                      + " ".join(f"{k}={v:.4g}" for k, v in shown.items())
                      + f" ({time.perf_counter() - self.t0:.0f} s)", flush=True)
            if raise_on_stop and stop_after is not None and state.global_step >= stop_after:
                raise _Interrupted

    return RunCallback()


# --- the entry point ---------------------------------------------------------------------------


def train_stage(cfg: Config, stage: str, data: str, from_run: str | Path | None = None, run_name: str | None = None,
                runs_dir: str | Path = "runs", resume: bool = True, max_steps: int | None = None,
                overwrite: bool = False, stop_after: int | None = None) -> Path:
    """Train one stage and return its run folder `<runs_dir>/<size>/<run name>/`.

    from_run: the SFT run a preference stage starts from (a folder, or a run name under runs_dir/size).
    resume: continue an unfinished run from its last checkpoint (False: start it again from step 0).
    max_steps: the stage's total steps (overrides the params; for PPO, PPO updates of one batch each).
    overwrite: retrain a run that is already complete (a complete run is otherwise returned at once).
    stop_after: stop (checkpointing) once this global step is reached, leaving the run resumable — an
    interruption on purpose, e.g. to train a long stage in several notebook sessions.
    """
    data = data.replace("_", "-")
    src = check_request(cfg, stage, data, from_run, runs_dir)
    cfg = copy.deepcopy(cfg)
    if max_steps is not None:
        _set_max_steps(cfg, stage, max_steps)
    run_dir = Path(runs_dir) / cfg.size / (run_name or default_run_name(stage, data, src))
    info = read_run(run_dir)
    if run_dir.exists() and any(run_dir.iterdir()):
        if not (run_dir / "config.yaml").is_file():
            raise TrainRequestError(f"{run_dir}: exists and is not a run folder; choose another --run-name")
        old = yaml.safe_load((run_dir / "config.yaml").read_text())
        same = (info or {}).get("stage") == stage and info.get("data") == data and \
            info.get("from_run") == (None if src is None else str(src)) and \
            _training_part(old, stage, data) == _training_part(cfg.to_dict(), stage, data) and \
            info.get("base_model") == _start_model(cfg, src)  # last: for tiny it may build the world
        if info and not overwrite and not same:
            state = "a complete" if info.get("complete") else "an unfinished"
            raise TrainRequestError(f"{run_dir}: {state} run trained under other settings than these; use another "
                                    "--run-name, or overwrite (--overwrite) to train it again")
        if info and info.get("complete") and not overwrite:
            log.info("%s: complete; not retrained", run_dir)
            return run_dir
        keep = ()
        if stage == "ppo" and resume and not overwrite and info:
            keep = ("reward", "synthetic_pairs.jsonl", "synthetic_judged.csv")
            if _is_main():
                print(f"[{run_dir.name}] TRL's PPOTrainer cannot resume: restarting the stage from step 0 "
                      "(its reward model and data are kept)", flush=True)
        if (overwrite or not resume or not info or stage == "ppo") and _is_main():
            for d in run_dir.iterdir():
                if d.name not in keep:
                    shutil.rmtree(d) if d.is_dir() else d.unlink()
        _wait()
    base = _start_model(cfg, src)
    info = {"stage": stage, "data": data, "size": cfg.size, "from_run": None if src is None else str(src),
            "base_model": base, "total_steps": None, "checkpoints": [], "complete": False}
    if _is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        _write_run(run_dir, info)
    _wait()

    with _quiet(tidy(cfg)):
        return _train(cfg, stage, data, src, run_dir, info, base, stop_after)


def _train(cfg: Config, stage: str, data: str, src: Path | None, run_dir: Path, info: dict, base: str,
           stop_after: int | None) -> Path:
    callback = _make_callback(run_dir, info, run_dir.name, stop_after, raise_on_stop=stage == "ppo")
    trainer = build_trainer(cfg, stage, data, src, run_dir, callbacks=[callback])
    last = checkpoints(run_dir)[-1]
    resume_from = str(run_dir / last["adapter"]) if last["adapter"] and stage != "ppo" else None
    if resume_from:
        print(f"[{run_dir.name}] resuming from {last['adapter']}", flush=True)
    try:
        trainer.train(resume_from_checkpoint=resume_from) if stage != "ppo" else trainer.train()
    except _Interrupted:
        pass
    state = trainer.state
    info["total_steps"] = int(state.max_steps)
    if state.global_step < state.max_steps:  # stopped on purpose (stop_after)
        _write_run(run_dir, info, state.log_history)
        _wait()
        return run_dir
    if stage == "sft" and _is_main():
        final = checkpoints(run_dir)[-1]
        if final["step"] != state.max_steps:
            raise RuntimeError(f"{run_dir}: no checkpoint of the final step {state.max_steps}")
        tmp = run_dir / ".merged-partial"
        shutil.rmtree(tmp, ignore_errors=True)
        models.merge_adapter(cfg, base, run_dir / final["adapter"], tmp)
        shutil.rmtree(run_dir / "merged", ignore_errors=True)
        tmp.rename(run_dir / "merged")
    info["complete"] = True
    _write_run(run_dir, info, state.log_history)
    _wait()
    return run_dir


def _start_model(cfg: Config, src: Path | None) -> str:
    """Step 0 of a stage: the base model for SFT, the SFT run's merged model for preference stages."""
    return models.base_model_path(cfg) if src is None else str(src / "merged")


def _set_max_steps(cfg: Config, stage: str, max_steps: int) -> None:
    st = cfg.stage(stage)
    if stage == "ppo":  # a PPO step is one update on a batch of per_device × accumulation × processes episodes
        st.total_episodes = max_steps * st.batch_size * st.grad_accum * process_state().num_processes
    else:
        st.max_steps = max_steps


# --- command line ------------------------------------------------------------------------------


def register_cli(subparsers) -> None:
    """Add `train` to the `vd` command."""
    p = subparsers.add_parser("train", help="train one post-training stage (SFT, DPO, SimPO, PPO)",
                              description="Train one stage; runs live in <runs-dir>/<size>/<run name>/.")
    p.add_argument("--size", default="tiny", help="params/<size>.yaml (default: tiny)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a params value, e.g. --set dpo.beta=0.2 (repeatable)")
    p.add_argument("--stage", required=True, help=f"one of {', '.join(ALGORITHMS)}")
    p.add_argument("--data", required=True, help=f"SFT: {', '.join(SFT_DATASETS)}; preference stages: "
                                                 f"{', '.join(PREFERENCE_DATASETS)}")
    p.add_argument("--from", dest="from_run", help="the finished SFT run a preference stage starts from (name or path)")
    p.add_argument("--run-name", help="default: <stage>-<data>[-from-<sft run>]")
    p.add_argument("--runs-dir", default="runs", help="default: runs")
    p.add_argument("--max-steps", type=int, help="total steps of the stage, overriding the params (PPO: updates)")
    p.add_argument("--stop-after", type=int, help="stop at this step (with a checkpoint), leaving the run resumable")
    p.add_argument("--no-resume", action="store_true", help="start an unfinished run again from step 0")
    p.add_argument("--overwrite", action="store_true", help="retrain even a complete run")
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    from vd.config import load_config

    cfg = load_config(args.size, args.set)
    run = train_stage(cfg, args.stage, args.data, from_run=args.from_run, run_name=args.run_name,
                      runs_dir=args.runs_dir, resume=not args.no_resume, max_steps=args.max_steps,
                      overwrite=args.overwrite, stop_after=args.stop_after)
    if _is_main():
        info = read_run(run)
        print(f"{run}: {'complete' if info['complete'] else 'stopped'}, "
              f"{len(info['checkpoints']) - 1} checkpoints of {info['total_steps']} steps")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m vd.train train …` (what `vd train …` runs), e.g. under `accelerate launch`."""
    import argparse

    parser = argparse.ArgumentParser(prog="vd")
    register_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
