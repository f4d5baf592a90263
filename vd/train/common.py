"""What every stage's trainer shares: the stage hooks (StageModule) and their defaults, its TRL config
from the params, the trainable model, the processes it runs in, quiet libraries, and the callback that
keeps the run folder current.

Models: QLoRA (4-bit NF4 + LoRA) on CUDA, plain fp32 + LoRA on CPU, and every trainable parameter in
fp32 whatever the compute dtype (docs/method.md §9; `ready`). Nothing here is distribution code: the same
entry point runs under `accelerate launch`, and files are written by the main process only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from vd.core.config import Config, StageConfig
from vd.core.io import atomic_write_csv
from vd.core.run import RunRecord
from vd.models import loading
from vd.train.guards import check_final_weights, stop_on_non_finite


@dataclass
class StageJob:
    """One stage to train: what a stage module's build_trainer gets (see vd/train/__init__.py)."""

    cfg: Config
    stage: str
    data: str
    record: RunRecord  # the run folder being trained
    start_model: str  # step 0: the base model (SFT) or the SFT run's merged model (path or hub id)
    callbacks: list
    report: dict  # what was read and left out (vd.train.data.stage_rows); a trainer adds its own drops

    @property
    def run_dir(self) -> Path:
        return self.record.root

    @property
    def params(self) -> StageConfig:
        return self.cfg.stage(self.stage)


@runtime_checkable
class StageModule(Protocol):
    """What a stage module (named in vd.core.registry.STAGES) defines: vd.train.runner calls these hooks
    directly, and a stage with nothing special to do takes the shared defaults below."""

    SECTIONS: tuple[str, ...]  # the config sections its training depends on (PPO: "ppo" and "reward")
    RESUMABLE: bool  # False where the trainer cannot resume (TRL 1.12's PPO restarts from step 0)
    KEEP_ON_RESTART: tuple[str, ...]  # what a restart from step 0 keeps of the run folder (PPO: its reward model)

    def build_trainer(self, job: StageJob, rows: list[dict]):
        """A transformers/TRL Trainer ready to train (see `ready`)."""

    def finish(self, job: StageJob) -> None:
        """After the last step (SFT merges its adapter into the base model)."""

    def set_total_steps(self, st: StageConfig, steps: int) -> None:
        """How --max-steps sets the stage's length (PPO counts episodes)."""


STAGE_HOOKS = (*StageModule.__annotations__,
               *(name for name, member in vars(StageModule).items() if callable(member) and name[0] != "_"))


def nothing_to_finish(job: StageJob) -> None:
    """The `finish` of a stage that has nothing to do after its last step."""


def set_max_steps(st: StageConfig, steps: int) -> None:
    """The `set_total_steps` of a stage whose length is its optimizer steps."""
    st.max_steps = steps


class Interrupted(Exception):
    """Raised by the stop_after callback where a trainer's loop ignores should_training_stop (PPO)."""


# --- processes ---------------------------------------------------------------------------------------


def process_state():
    """accelerate's process state. On CPU it must be created with cpu=True, or processes started by
    `accelerate launch --multi_gpu` / torchrun on a machine without GPUs each train alone (transformers
    would create it with cpu=False first); it is created once per process and shared."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def is_main() -> bool:
    return process_state().is_main_process


def wait_for_everyone() -> None:
    process_state().wait_for_everyone()


# --- TRL configs and models --------------------------------------------------------------------------


def mixed_precision(cfg: Config) -> dict:
    """The Trainer's autocast: the compute dtype on CUDA (bf16 where native, else fp16: vd.core.precision),
    none on CPU."""
    import torch

    dtype = loading.compute_dtype(cfg) if torch.cuda.is_available() else torch.float32
    return {"bf16": dtype == torch.bfloat16, "fp16": dtype == torch.float16}


def trl_args(config_cls, cfg: Config, st: StageConfig, output_dir: Path, **extra):
    """A TRL config for one stage from its params: precision, checkpoint cadence, logging, seed."""
    import torch

    cuda = torch.cuda.is_available()
    optim = st.optimizer
    if not cuda and ("8bit" in optim or "paged" in optim):
        loading.note_once(f"no CUDA GPU: the bitsandbytes optimizer {optim} the params name is replaced by adamw_torch")
        optim = "adamw_torch"  # bitsandbytes optimizers are for CUDA; on CPU the plain AdamW
    kw = dict(output_dir=str(output_dir), per_device_train_batch_size=st.batch_size,
              gradient_accumulation_steps=st.grad_accum, learning_rate=st.learning_rate,
              num_train_epochs=st.epochs, max_steps=st.max_steps if st.max_steps > 0 else -1,
              warmup_steps=st.warmup_ratio if st.warmup_ratio < 1 else 0.0,  # a float < 1 is a ratio
              lr_scheduler_type=st.lr_scheduler, optim=optim, save_strategy="steps", save_steps=st.save_every,
              save_total_limit=None, logging_steps=min(st.log_every, st.save_every),
              report_to="none", seed=cfg.seed, data_seed=cfg.seed, **mixed_precision(cfg), use_cpu=not cuda,
              dataloader_pin_memory=cuda, disable_tqdm=hide_progress_bars(cfg), ddp_find_unused_parameters=False,
              logging_nan_inf_filter=False)  # a NaN loss is logged as NaN (vd.train.guards stops on it)
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
    """A trainable model (4-bit + prepared for k-bit training on CUDA when the params say so): a quantized
    model's other weights (embeddings, norms, lm_head) are upcast to fp32 (peft prepare_model_for_kbit_training)."""
    model = loading.load_model(cfg, path=path, trainable=True, head=head)
    if getattr(model, "is_loaded_in_4bit", False):  # set by transformers' bnb quantizer (quantizer_bnb_4bit.py)
        from peft import prepare_model_for_kbit_training

        # non-reentrant checkpointing, as trl_args asks of the Trainer: PEFT's default passes no use_reentrant
        # (peft/utils/other.py prepare_model_for_kbit_training), which torch warns will become an error
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=st.activation_checkpointing,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def fp32_trainable(model):
    """Every trainable parameter of `model` in fp32, in place (the same Parameter objects, so an optimizer built
    on them keeps them). Under quantization TRL casts them to bf16 whatever the precision (trl/trainer/
    sft_trainer.py, dpo_trainer.py, reward_trainer.py __init__: `param.data.to(torch.bfloat16)`), and
    peft_module_casting_to_bf16 casts a trainable embedding's rows (trl/experimental/cpo/cpo_trainer.py):
    fp16's GradScaler cannot unscale bf16 gradients, and a bf16 LoRA weight rounds away small Adam steps."""
    import torch

    for p in model.parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()
    return model


def ready(trainer, cfg: Config, stage: str, label: str):
    """A built trainer made ready to train: trainable parameters fp32 (before the optimizer exists: the
    Trainer creates it in train()), stopped on a non-finite loss or weight, without the Trainer's per-log
    printer where progress bars are hidden (drop_log_printer)."""
    fp32_trainable(trainer.model)
    trainer.add_callback(stop_on_non_finite(cfg, stage, label, fp16=bool(trainer.args.fp16)))
    drop_log_printer(trainer)
    return trainer


# --- quiet libraries ---------------------------------------------------------------------------------


def hide_progress_bars(cfg: Config) -> bool:
    """Whether to hide progress bars: where the params turn them off, or stderr is not a terminal (papermill,
    logs)."""
    return not cfg.progress_bars or not sys.stderr.isatty()


@contextlib.contextmanager
def quiet(enabled: bool):
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


def drop_log_printer(trainer) -> None:
    """With disable_tqdm the Trainer prints every log dict; our progress callback prints one line per checkpoint."""
    from transformers.trainer_callback import PrinterCallback

    if trainer.args.disable_tqdm:
        trainer.remove_callback(PrinterCallback)


# --- the run folder, kept current ---------------------------------------------------------------------


def write_run(record: RunRecord, log_history: list | None = None, resumed_at: int | None = None) -> None:
    """run.json (checkpoints rediscovered) and, given the trainer's history, train_log.csv (main process)."""
    if not is_main():
        return
    record.write()
    if log_history:
        import pandas as pd

        df = pd.DataFrame(continuous_log(log_history, resumed_at))
        atomic_write_csv(df[["step"] + [c for c in df.columns if c != "step"]] if "step" in df else df,
                         record.log_path)


def continuous_log(history: list[dict], resumed_at: int | None) -> list[dict]:
    """The log history of a resumed run as if it had never stopped.

    The Trainer restores the history from its checkpoint, but TRL's token counter (`num_tokens`) restarts
    at 0 in the resumed process, and the closing `train_loss` averages only the steps run there. So
    entries after the resume point continue the count, and `train_loss` is the step-weighted mean of the
    part before (its logged losses) and the resumed part (the Trainer's own train_loss).
    """
    rows = [dict(h) for h in history]
    if not resumed_at:
        return rows
    before = [h for h in rows if h.get("step", 0) <= resumed_at]
    tokens = [h["num_tokens"] for h in before if "num_tokens" in h]
    for h in rows:
        if h.get("step", 0) > resumed_at and "num_tokens" in h:
            h["num_tokens"] += tokens[-1] if tokens else 0
    logged, previous, weighted = [h for h in before if "loss" in h], 0, 0.0
    for h in logged:  # a logged loss is the mean over the steps since the previous log
        weighted += h["loss"] * (h["step"] - previous)
        previous = h["step"]
    for h in rows:
        if "train_loss" in h and previous and h.get("step", 0) > previous:
            h["train_loss"] = (weighted + h["train_loss"] * (h["step"] - previous)) / h["step"]
    return rows


# What a checkpoint holds only for a resume (transformers/trainer.py _save_checkpoint: OPTIMIZER_NAME,
# SCHEDULER_NAME, SCALER_NAME; per-rank and DeepSpeed/FSDP optimizer shards): an 8B adapter's 8-bit Adam state
# is several times the adapter itself. Scoring reads only adapters; rng_state and trainer_state stay.
RESUME_STATE = ("optimizer.pt", "optimizer.bin", "scheduler.pt", "scaler.pt", "*-optimizer.pt", "optimizer_*",
                "global_step*")


def drop_resume_state(root: Path, keep: str | None = None) -> None:
    """Remove the optimizer/scheduler state of every checkpoint in `root` but `keep` (the one a resume would
    start from; None once the run is complete). Main process only."""
    import shutil

    if not is_main():
        return
    for folder in Path(root).glob("checkpoint-*"):
        if folder.name == keep:
            continue
        for pattern in RESUME_STATE:
            for path in folder.glob(pattern):
                shutil.rmtree(path) if path.is_dir() else path.unlink()


def seal(record: RunRecord, stage: str) -> None:
    """What a run passes before it is finished and marked complete: finite final weights (else
    NonFiniteTraining); then its checkpoints keep no optimizer state (nothing will resume it)."""
    check_final_weights(record, stage)
    drop_resume_state(record.root)


def run_callback(record: RunRecord, label: str, stop_after: int | None, raise_on_stop: bool,
                 resumed_at: int | None = None):
    """Keeps run.json and train_log.csv current at every checkpoint (and the optimizer state in the newest only),
    prints one line each, stops at `stop_after`."""
    from transformers import TrainerCallback

    class RunCallback(TrainerCallback):
        t0 = time.perf_counter()

        def on_train_begin(self, args, state, control, **kw):
            record.total_steps = int(state.max_steps)
            write_run(record)

        def on_step_end(self, args, state, control, **kw):
            if stop_after is not None and state.global_step >= stop_after:
                control.should_save = True
                control.should_training_stop = True

        def on_save(self, args, state, control, **kw):
            # the checkpoint just saved is complete: the older ones are no longer what a resume starts from
            drop_resume_state(record.root, keep=f"checkpoint-{state.global_step}")
            write_run(record, state.log_history, resumed_at)
            if state.is_world_process_zero:
                keys = ("loss", "rewards/accuracies", "accuracy", "objective/kl", "objective/scores")
                last = next((h for h in reversed(state.log_history) if any(k in h for k in keys)), {})
                shown = {k: last[k] for k in keys if k in last}
                print(f"[{label}] step {state.global_step}/{state.max_steps} "
                      + " ".join(f"{k}={v:.4g}" for k, v in shown.items())
                      + f" ({time.perf_counter() - self.t0:.0f} s)", flush=True)
            if raise_on_stop and stop_after is not None and state.global_step >= stop_after:
                raise Interrupted

    return RunCallback()
