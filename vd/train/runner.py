"""Train one stage into its run folder: validate the request, take the run's lock, resume or restart,
train, finish. The stages are the modules vd.core.registry.STAGES names (vd.train.common.StageModule).

An interrupted run resumes from its last checkpoint (HF Trainer state) and ends where an uninterrupted
run ends, wherever the kill landed; a stage that cannot resume (TRL 1.12's PPO) restarts from step 0.
One process trains a run at a time (`<runs>/<size>/.<run name>.lock`; a second waits, then returns or
resumes the run). Nothing is written before the request, the params (vd.train.preflight) and the data
have passed; a folder vd did not make is never touched.

    run = train_stage(cfg, "sft", "wildchat")                   # runs/<size>/sft-wildchat/
    train_stage(cfg, "dpo", "synthetic-support", from_run=run)  # .../dpo-synthetic-support-from-sft-wildchat/
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import shutil
from pathlib import Path

import yaml

from vd.core import registry
from vd.core.config import Config, ConfigError, stored_params
from vd.core.io import atomic_write_text, file_lock
from vd.core.run import (
    RunError,
    RunRecord,
    check_run_name,
    damaged_checkpoint_file,
    discover_checkpoints,
    restartable,
    write_error,
)
from vd.models import loading
from vd.train.common import (
    STAGE_HOOKS,
    Interrupted,
    StageJob,
    StageModule,
    hide_progress_bars,
    is_main,
    quiet,
    run_callback,
    seal,
    wait_for_everyone,
    write_run,
)
from vd.train.data import count_dropped, describe, is_synthetic, shared_pairs, stage_rows
from vd.train.preflight import check_stage

# Config sections that determine every stage's training (plus the stage's own sections and its dataset's
# entry): a run folder is resumed, or returned as complete, only under the same values.
TRAINING_KEYS = ("seed", "model", "quantization", "lora", "tiny")


class TrainRequestError(ConfigError):
    """A stage/data/--from combination that cannot be trained (caught by the CLI like a config error)."""


def stage_module(stage: str) -> StageModule:
    """The module implementing `stage` (vd.core.registry.STAGES), with every hook of StageModule."""
    module = registry.resolve(registry.STAGES[stage].module)
    missing = [hook for hook in STAGE_HOOKS if not hasattr(module, hook)]
    if missing:
        raise TypeError(f"{module.__name__}: a stage module defines {', '.join(STAGE_HOOKS)} "
                        f"(vd.train.common.StageModule); it lacks {', '.join(missing)}")
    return module


def default_run_name(stage: str, data: str, from_run: Path | None = None) -> str:
    return f"{stage}-{data}" if from_run is None else f"{stage}-{data}-from-{Path(from_run).name}"


def resolve_run(ref: str | Path, size: str, runs_dir: str | Path = "runs") -> Path:
    """An SFT run given as a path to its folder, or as a run name under `<runs_dir>/<size>/`."""
    path = Path(ref)
    return path if (path / "run.json").is_file() or path.is_absolute() else Path(runs_dir) / size / path


def training_part(cfg_dict: dict, stage: str, data: str) -> dict:
    """What determines a run's training: a run folder is resumed (or returned) only under the same."""
    part = {k: cfg_dict.get(k) for k in TRAINING_KEYS}
    part.update({k: cfg_dict.get(k) for k in stage_module(stage).SECTIONS})
    d = cfg_dict.get("data") or {}
    part["data"] = d.get("synthetic") if is_synthetic(data) else \
        (d.get("sft" if registry.STAGES[stage].kind == "sft" else "preference") or {}).get(data)
    return part


def differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """`key: old -> new` for every dotted key whose value differs between two nested dicts."""
    out = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def check_request(cfg: Config, stage: str, data: str, from_run: str | Path | None,
                  runs_dir: str | Path = "runs") -> RunRecord | None:
    """Validate a stage/data/--from combination before anything is loaded; return the SFT run's record."""
    if stage not in registry.TRAINABLE:
        raise TrainRequestError(f"--stage {stage!r}: expected one of {', '.join(registry.TRAINABLE)}")
    if registry.STAGES[stage].kind == "sft":
        if data not in registry.SFT_DATA:
            raise TrainRequestError(f"--data {data!r}: SFT trains on one of {', '.join(registry.SFT_DATA)}")
        if from_run is not None:
            raise TrainRequestError("--from: SFT starts from the base model; --from is for preference stages")
        if data not in cfg.data.sft:
            raise TrainRequestError(f"{cfg.source}: data.sft.{data}: not configured for size {cfg.size!r}")
        return None
    if data not in registry.PREFERENCE_CHOICES:
        raise TrainRequestError(f"--data {data!r}: {stage} trains on one of {', '.join(registry.PREFERENCE_CHOICES)}")
    if not is_synthetic(data) and data not in cfg.data.preference:
        raise TrainRequestError(f"{cfg.source}: data.preference.{data}: not configured for size {cfg.size!r}")
    if from_run is None:
        raise TrainRequestError(f"--from: {stage} starts from a finished SFT run; name one (e.g. --from sft-wildchat)")
    run = resolve_run(from_run, cfg.size, runs_dir)
    try:
        src = RunRecord.find(run)
    except RunError as e:
        raise TrainRequestError(f"--from {from_run}: {e}") from None
    if src is None:
        raise TrainRequestError(f"--from {from_run}: no SFT run at {run} (no run.json)")
    if registry.STAGES.get(src.stage, registry.Stage("", "", "")).kind != "sft":
        raise TrainRequestError(f"--from {from_run}: {run} is a {src.stage} run, not an SFT run")
    if src.size != cfg.size:
        raise TrainRequestError(f"--from {from_run}: {run} was trained for size {src.size!r}, not {cfg.size!r}")
    if not src.complete or not (src.merged_dir / "config.json").is_file():
        raise TrainRequestError(f"--from {from_run}: the SFT run at {run} is not complete; finish it first "
                                f"(vd train --stage sft --data {src.data} resumes it)")
    if Path(runs_dir).resolve() / cfg.size != run.resolve().parent:
        raise TrainRequestError(f"--from {from_run}: {run} is not in {Path(runs_dir) / cfg.size}; a preference "
                                "run lives beside the SFT run it starts from (pass --runs-dir)")
    return src


@contextlib.contextmanager
def run_lock(run_dir: Path):
    """Hold the run's lock (main process only: other processes of one launch follow it at barriers)."""
    if not is_main():
        yield
        return
    say = lambda: print(f"[{run_dir.name}] another process is training this run; waiting for it …",  # noqa: E731
                        flush=True)
    with file_lock(run_dir.parent / f".{run_dir.name}.lock", on_wait=say):
        yield


def check_steps(max_steps: int | None, stop_after: int | None) -> None:
    """--max-steps and --stop-after count steps: 0 (a full epoch to TRL) or fewer is refused."""
    for flag, value in (("--max-steps", max_steps), ("--stop-after", stop_after)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise TrainRequestError(f"{flag} {value!r}: expected a whole number of steps >= 1")


def train_stage(cfg: Config, stage: str, data: str, from_run: str | Path | None = None, run_name: str | None = None,
                runs_dir: str | Path = "runs", resume: bool = True, max_steps: int | None = None,
                overwrite: bool = False, stop_after: int | None = None) -> Path:
    """Train one stage and return its run folder `<runs_dir>/<size>/<run name>/` (RunRecord.read reads it).

    from_run: the SFT run a preference stage starts from (a folder, or a run name under runs_dir/size).
    resume: continue an unfinished run from its last checkpoint (False: start it again from step 0).
    max_steps: the stage's total steps (overrides the params; for PPO, PPO updates of one batch each).
    overwrite: retrain a run that is already complete (a complete run is otherwise returned at once).
    stop_after: stop (checkpointing) once this global step is reached, leaving the run resumable: an
    interruption on purpose, e.g. to train a long stage in several notebook sessions.
    """
    data = data.replace("_", "-")
    check_steps(max_steps, stop_after)
    if run_name is not None:
        check_run_name(run_name)
    src = check_request(cfg, stage, data, from_run, runs_dir)
    cfg = copy.deepcopy(cfg)
    module = stage_module(stage)
    if max_steps is not None:
        module.set_total_steps(cfg.stage(stage), max_steps)
    run_dir = Path(runs_dir) / cfg.size / (run_name or default_run_name(stage, data, src and src.root))
    try:
        with run_lock(run_dir):  # first: a second process waits here, not after its own preflight
            start = _start(cfg, src)
            check_stage(cfg, stage, data, start[0])
            return _train_locked(cfg, stage, data, src, start, run_dir, module, resume, overwrite, stop_after).root
    except OSError as e:  # a full disk, a folder not writable: one line naming the file
        error = write_error(e, run_dir)
        if error is None:
            raise
        raise error from None


def _start(cfg: Config, src: RunRecord | None) -> tuple[str, str, str]:
    """(path, name, identity) of step 0: the SFT run's merged model, or the base model."""
    if src is None:
        path = loading.base_model_path(cfg)
        return path, cfg.model.base, loading.model_identity(path, cfg.model.revision)
    return str(src.merged_dir), f"{src.name}/merged", src.merged_identity()


def _existing_record(run_dir: Path, overwrite: bool) -> tuple[RunRecord | None, bool]:
    """The record of the folder at `run_dir`, and whether the folder is to be cleared before training
    (left by a run stopped before its record, or damaged and --overwrite); refuses a folder vd did not make."""
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        return None, False
    if restartable(run_dir):
        if is_main():
            print(f"[{run_dir.name}] {run_dir} has no run.json (a run stopped before it began training): "
                  "starting it again", flush=True)
        return None, True
    if not (run_dir / "run.json").is_file():
        raise TrainRequestError(f"{run_dir}: exists and is not a run folder (no run.json, and files vd does not "
                                "write); choose another --run-name")
    try:
        record = RunRecord.read(run_dir)
        if not record.config_path.is_file():
            raise RunError(f"{record.config_path}: missing; the run folder is damaged: retrain it (--overwrite)")
    except RunError:
        if overwrite:  # a folder vd made: --overwrite always retrains it
            return None, True
        raise
    return record, False


def _stored_config(record: RunRecord, overwrite: bool = False) -> dict:
    """The config `record` was trained under, as this vd reads it (vd.core.config.stored_params: a key an
    older vd did not write holds the value it was trained as); {} where it cannot be read and is retrained."""
    try:
        return stored_params(record.config_path)
    except ConfigError as e:
        if overwrite:
            return {}
        raise TrainRequestError(f"{e}. Use another --run-name, or --overwrite to train {record.root} again") from None


def _train_locked(cfg, stage, data, src, start, run_dir, module, resume, overwrite, stop_after) -> RunRecord:
    start_path, start_name, identity = start
    record, clear = _existing_record(run_dir, overwrite)
    if record is not None:
        mine = {**training_part(cfg.to_dict(), stage, data), "start": identity,
                "stage": stage, "data": data, "from_run": src and src.name}
        theirs = {**training_part(_stored_config(record, overwrite), stage, data),
                  "start": record.start_identity, "stage": record.stage, "data": record.data,
                  "from_run": record.from_run}
        changed = differences(theirs, mine)
        if changed and not overwrite:
            state = "a complete" if record.complete else "an unfinished"
            what = "; ".join(c.replace("start:", "start model (by content):") for c in changed[:4])
            raise TrainRequestError(f"{run_dir}: {state} run trained under other settings than these: {what}"
                                    f"{' …' if len(changed) > 4 else ''}. Use another --run-name, or "
                                    "--overwrite to train it again")
        if record.complete and not overwrite:
            return record
    # the data before the folder: bad data, or synthetic pairs that fail to build, leave no folder behind
    pairs = shared_pairs(cfg, data, run_dir.parent)
    rows, report = stage_rows(cfg, stage, data, pairs)
    if record is not None and pairs is not None and resume and not overwrite:
        _check_same_pairs(record, pairs)
    resumable = module.RESUMABLE
    if record is not None and (overwrite or not resume or not resumable):
        keep = module.KEEP_ON_RESTART if resume and not overwrite else ()
        if keep and is_main():
            print(f"[{run_dir.name}] this stage cannot resume: restarting it from step 0 "
                  f"(keeping {', '.join(keep)})", flush=True)
        _clear(run_dir, keep)
        record = None
    elif clear:
        _clear(run_dir, ())
    wait_for_everyone()
    if record is None:
        record = RunRecord(root=run_dir, stage=stage, data=data, size=cfg.size, from_run=src and src.name,
                           start_model=start_name, start_identity=identity,
                           synthetic_pairs=pairs and pairs.relative_pairs, synthetic_sha256=pairs and pairs.sha256())
        if is_main():
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(record.config_path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    record.extra["data_report"] = report
    write_run(record)
    wait_for_everyone()
    with quiet(hide_progress_bars(cfg)):
        return _train(cfg, stage, data, module, record, start_path, rows, report, resumable, stop_after)


def _clear(run_dir: Path, keep) -> None:
    if is_main():
        for d in run_dir.iterdir():
            if d.name not in keep:
                shutil.rmtree(d) if d.is_dir() else d.unlink()


def _check_same_pairs(record: RunRecord, pairs) -> None:
    """An unfinished run continues only on the synthetic pairs it began on (name and sha256)."""
    now = (pairs.relative_pairs, pairs.sha256())
    if (record.synthetic_pairs, record.synthetic_sha256) != now:
        old = f"{record.synthetic_pairs} (sha256 {str(record.synthetic_sha256)[:12]}…)"
        raise TrainRequestError(f"{record.root}: this unfinished run trained on the synthetic pairs {old}, but these "
                                f"settings read {now[0]} (sha256 {now[1][:12]}…): resuming would mix two datasets. "
                                "Use --no-resume (or --overwrite) to train it again from step 0 on the pairs read now")


def _train(cfg, stage, data, module, record: RunRecord, start_path, rows, report, resumable, stop_after):
    from transformers import set_seed

    last = discover_checkpoints(record.root)[-1]
    resume_from = record.root / last.adapter if last.adapter and resumable else None
    damaged = resume_from and damaged_checkpoint_file(resume_from)
    if damaged:
        raise RunError(f"{damaged[0]}: {damaged[1]}, so {last.adapter} cannot be resumed from: delete {resume_from} "
                       "to resume from the checkpoint before it, or rerun with --no-resume to start from step 0")
    job = StageJob(cfg, stage, data, record, start_path, [], report)
    if resume_from is not None and record.total_steps and last.step >= record.total_steps:
        # killed after its last checkpoint: finish it (training on would add a step past the end)
        history = json.loads((resume_from / "trainer_state.json").read_text()).get("log_history", [])
        return _finish(job, module, history, record.extra.get("resumed_at"))
    if resume_from is not None:
        record.extra["resumed_at"] = last.step
        print(f"[{record.name}] resuming from {last.adapter}", flush=True)
    job.callbacks.append(run_callback(record, record.name, stop_after, raise_on_stop=not resumable,
                                      resumed_at=record.extra.get("resumed_at")))
    set_seed(cfg.seed)  # the LoRA init happens before the Trainer seeds itself
    trainer = module.build_trainer(job, rows)
    dataset = getattr(trainer, "train_dataset", None)
    if dataset is not None and hasattr(dataset, "__len__"):  # TRL's length limits (PPO: our prompt limit)
        count_dropped(report, f"longer_than_{stage}.max_length", len(rows) - len(dataset))
    if is_main():
        print(f"[{record.name}] {describe(report)}", flush=True)
    try:
        trainer.train(resume_from_checkpoint=str(resume_from)) if resume_from else trainer.train()
    except Interrupted:
        pass
    record.total_steps = int(trainer.state.max_steps)
    if trainer.state.global_step < trainer.state.max_steps:  # stopped on purpose (stop_after)
        write_run(record, trainer.state.log_history, record.extra.get("resumed_at"))
        wait_for_everyone()
        return record
    return _finish(job, module, trainer.state.log_history, record.extra.get("resumed_at"))


def _finish(job: StageJob, module: StageModule, history: list, resumed_at: int | None) -> RunRecord:
    record = job.record
    record.checkpoints = discover_checkpoints(record.root)
    seal(record, job.stage)  # finite final weights, no optimizer state kept
    module.finish(job)
    record.complete = True
    write_run(record, history, resumed_at)
    wait_for_everyone()
    return record


def variant_suffix(cfg: Config, base_cfg: Config, stage: str, data: str) -> str:
    """"" when `cfg` trains `stage` on `data` as `base_cfg` does; else "~<hash>" naming the changed training,
    so that a run trained under other values gets its own folder (a scoring-only change never does)."""
    mine = training_part(cfg.to_dict(), stage, data)
    if mine == training_part(base_cfg.to_dict(), stage, data):
        return ""
    return "~" + hashlib.sha1(json.dumps(mine, sort_keys=True, default=str).encode()).hexdigest()[:6]


def build_trainer(cfg: Config, stage: str, data: str, from_run: str | Path | None, run_dir: Path, callbacks=()):
    """The trainer of a stage as train_stage builds it, without the run folder's bookkeeping (for tests and
    benchmarks: e.g. to read a trainer's reference log-probabilities)."""
    from transformers import set_seed

    src = check_request(cfg, stage, data, from_run, Path(from_run).parent.parent if from_run else "runs")
    start_path, start_name, identity = _start(cfg, src)
    pairs = shared_pairs(cfg, data, Path(run_dir).parent)
    record = RunRecord(root=Path(run_dir), stage=stage, data=data, size=cfg.size, from_run=src and src.name,
                       start_model=start_name, start_identity=identity,
                       synthetic_pairs=pairs and pairs.relative_pairs, synthetic_sha256=pairs and pairs.sha256())
    rows, report = stage_rows(cfg, stage, data, pairs)
    set_seed(cfg.seed)
    with quiet(hide_progress_bars(cfg)):
        return stage_module(stage).build_trainer(StageJob(cfg, stage, data, record, start_path, list(callbacks),
                                                         report), rows)
