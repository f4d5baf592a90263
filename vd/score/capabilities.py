"""Capability checks through lm-evaluation-harness: does post-training keep what the model could do?

Every stage's start and end is evaluated through `lm_eval.simple_evaluate`, with an `HFLM` around the
model vd.models.loading loads (docs/decisions.md says why), on the params' `capabilities` tasks; each
(checkpoint, task) result is cached, so a re-executed notebook evaluates nothing. Tasks, verdict and
caching: docs/method.md §13.

    rows = evaluate_checkpoint(cfg, base, adapter)      # any checkpoint: base model + adapter folder
    table = evaluate_run("runs/tiny/sft-alpaca", cfg)   # start and end of one stage
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import io
import logging
import math
import time
import warnings
from pathlib import Path

import pandas as pd

from vd.core.cache import checkpoint_fingerprint
from vd.core.config import Config, ConfigError
from vd.core.io import atomic_write_json
from vd.core.run import RunRecord
from vd.models.loading import base_model_path, load_model, load_tokenizer, model_identity, use_4bit
from vd.score.checks import start_identity
from vd.score.scoring import checkpoint_model
from vd.world import capability

log = logging.getLogger(__name__)

# The paper's tasks as lm-eval names them, and the hub dataset each one reads (lm-eval 0.4.13's YAMLs).
PAPER_TASKS = {"mmlu": "MMLU", "hellaswag": "HellaSwag", "gpqa_diamond_zeroshot": "GPQA-Diamond", "piqa": "PIQA"}
HUB_DATASETS = {"mmlu": "cais/mmlu", "hellaswag": "Rowan/hellaswag", "gpqa": "Idavidrein/gpqa", "piqa": "baber/piqa"}
GATED = {"Idavidrein/gpqa"}
CHANCE = {"mmlu": 0.25, "hellaswag": 0.25, "gpqa": 0.25, "piqa": 0.5}
PAPER_STATEMENT = ("The paper reports that its post-trained models keep their capabilities on MMLU, HellaSwag, "
                   "GPQA-Diamond and PIQA (from secondary sources: the claim is reported, its numbers and "
                   "settings were not found).")
DROP_SE = 2.0  # a drop larger than this many standard errors of the paired difference is a loss (ours)
BOOTSTRAP_ITERS = 1000  # lm-eval's stderr of a mean is closed-form; this only matters for other aggregations


class DatasetAccessError(RuntimeError):
    """A capability task's dataset cannot be read (gated, offline and not cached); says what to do."""


def lm_eval_version() -> str:
    return importlib.metadata.version("lm-eval")


# ----------------------------------------------------------------------------- tasks
def hub_dataset(task: str) -> str | None:
    """The hub dataset a paper task reads (by lm-eval's task name or its prefix), or None."""
    for prefix, repo in HUB_DATASETS.items():
        if task == prefix or task.startswith(prefix + "_"):
            return repo
    return None


def chance(task: str) -> float:
    if task == capability.TASK:
        return capability.CHANCE
    return next((c for p, c in CHANCE.items() if task == p or task.startswith(p + "_")), math.nan)


def task_label(task: str) -> str:
    return PAPER_TASKS.get(task, "tiny world topics" if task == capability.TASK else task)


def _task_names(cfg: Config) -> list[str]:
    names = list(cfg.capabilities.tasks)
    if not names:
        raise ConfigError(f"{cfg.source}: capabilities.tasks: empty; name at least one lm-eval task "
                          "(params/llama3-3b.yaml lists the paper's four)")
    return names


@functools.lru_cache(maxsize=1)
def lm_eval_task_manager():
    """lm-eval's TaskManager over its own tasks (slow to index them: built once per process)."""
    from lm_eval.tasks import TaskManager

    with _quiet():
        return TaskManager()


@functools.lru_cache(maxsize=4)
def _local_task_manager(include_path: str):
    from lm_eval.tasks import TaskManager

    with _quiet():
        return TaskManager(include_path=include_path, include_defaults=False)


def task_manager(cfg: Config, task: str):
    """The TaskManager that knows `task`: the tiny world's task folder (built if needed) or lm-eval's own."""
    if task == capability.TASK:
        return _local_task_manager(str(tiny_task(cfg)))
    return lm_eval_task_manager()


def check_tasks(cfg: Config) -> None:
    """Every configured task resolves in lm-eval's task registry (offline: no dataset is read)."""
    import difflib

    for task in _task_names(cfg):
        if task == capability.TASK:
            continue
        known = lm_eval_task_manager().all_tasks
        if task not in known:
            close = difflib.get_close_matches(task, known, n=3)
            raise ConfigError(f"{cfg.source}: capabilities.tasks.{task}: not a task or group of lm-eval "
                              f"{lm_eval_version()}" + (f"; did you mean {', '.join(close)}?" if close else ""))


def gated_message(task: str, repo: str) -> str:
    return (f"capability task {task} reads the dataset {repo}, which is gated on the Hugging Face hub. To use it: "
            f"sign in at https://huggingface.co/datasets/{repo} and accept its terms of access; then log in on "
            "this machine with `hf auth login` (older huggingface_hub: `huggingface-cli login`) or set HF_TOKEN "
            "to a token of that account. Offline (HF_HUB_OFFLINE=1) it must already be in the datasets cache "
            f"(run once online). Or remove {task} from capabilities.tasks in the params file.")


def check_access(task: str) -> None:
    """Before any model is loaded: a gated dataset the current token cannot read fails with what to do.

    Offline nothing can be checked here; loading the task then fails clearly (`load_task`)."""
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    repo = hub_dataset(task)
    if repo not in GATED or constants.is_offline_mode():
        return
    try:
        HfApi().auth_check(repo, repo_type="dataset")
    except (GatedRepoError, RepositoryNotFoundError):
        raise DatasetAccessError(gated_message(task, repo)) from None
    except (HfHubHTTPError, OSError) as e:  # the hub unreachable: loading will say so
        log.info("could not check access to %s: %s", repo, e)


def load_task(cfg: Config, task: str):
    """lm-eval's Task (or Group, e.g. mmlu) object of `task`, its dataset read; a gated or unreachable
    dataset raises DatasetAccessError with what to do instead of the hub's traceback."""
    from datasets.exceptions import DatasetNotFoundError

    manager = task_manager(cfg, task)
    check_access(task)
    try:
        with _quiet():
            loaded = manager.load([task])
    except (DatasetNotFoundError, ConnectionError, FileNotFoundError) as e:
        repo = hub_dataset(task)
        said = str(e).splitlines()[0] if str(e) else type(e).__name__
        if repo in GATED or "gated" in str(e).lower():
            raise DatasetAccessError(f"{gated_message(task, repo or '?')} (datasets said: {said})") from None
        where = f"the dataset {repo} from the Hugging Face hub" if repo else "its dataset"
        raise DatasetAccessError(
            f"capability task {task} could not read {where}: {said}. Offline (HF_HUB_OFFLINE=1) a dataset must "
            "already be in the datasets cache: run it once online, or remove the task from capabilities.tasks "
            "in the params file.") from None
    return loaded["groups"].get(task) or loaded["tasks"][task]


def tiny_task(cfg: Config) -> Path:
    """The tiny world's task folder (vd.world.capability), built with its README's base-model score."""

    def score(folder: Path) -> dict:
        task = capability.TASK
        manager = _local_task_manager(str(folder))
        with _quiet():
            obj = manager.load([task])["tasks"][task]
        lm = _hflm(cfg, base_model_path(cfg), None)
        result = _run(lm, obj, manager, task, "acc", limit=None, num_fewshot=0, cache_db=None)
        return {k: result[k] for k in ("metric", "value", "stderr", "n")} | {"lm_eval": lm_eval_version()}

    return capability.ensure_task(cfg, score=score)


# ----------------------------------------------------------------------------- models and keys
def model_key(base: str, adapter: str | Path | None) -> str:
    """The base model's identity (a local folder by its weights' hash) and the adapter's weights."""
    return checkpoint_fingerprint(model_identity(str(base)), adapter, {"what": "capabilities"})


def result_key(cfg: Config, task: str, model: str) -> dict:
    """Everything a capability result depends on (its file is named by this dict's hash)."""
    spec = cfg.capabilities.tasks[task]
    key = {"model": model, "task": task, "limit": cfg.capabilities.limit, "num_fewshot": spec.num_fewshot,
           "lm_eval": lm_eval_version(), "load_in_4bit": use_4bit(cfg),
           "quantization": cfg.quantization.quant_type if use_4bit(cfg) else None}
    if task == capability.TASK:
        key["task_sha256"] = capability.fingerprint(tiny_task(cfg))
    return key


def _hash(obj: dict) -> str:
    import json

    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def hflm_arguments(cfg: Config, model, tokenizer) -> dict:
    """The arguments of lm-eval's HFLM: the loaded model (quantized by vd.models on CUDA), the project's
    tokenizer, the params' batch size. Nothing here asks lm-eval to load or quantize anything itself."""
    return {"pretrained": model, "tokenizer": tokenizer, "batch_size": cfg.capabilities.batch_size}


def load_checkpoint(cfg: Config, base: str, adapter: str | Path | None):
    """(model, tokenizer) of base + adapter, loaded as scoring loads them: `vd.models.load_model` (4-bit
    NF4 with double quantization through a BitsAndBytesConfig on CUDA, fp32 on CPU) and the project's
    tokenizer with its chat template and pad token."""
    path = None if base == cfg.model.base else base  # a hub id keeps the params' revision
    with _quiet():
        return load_model(cfg, path=path, adapter=adapter), load_tokenizer(cfg, base)


def _hflm(cfg: Config, base: str, adapter: str | Path | None):
    """lm-eval's HFLM around base + adapter (see load_checkpoint and hflm_arguments)."""
    from lm_eval.models.huggingface import HFLM

    model, tokenizer = load_checkpoint(cfg, base, adapter)
    with _quiet():
        return HFLM(**hflm_arguments(cfg, model, tokenizer))


@contextlib.contextmanager
def _quiet():
    """lm-eval's and datasets' progress bars and info logs off (tqdm floods a notebook's log)."""
    loggers = [logging.getLogger(n) for n in ("lm_eval", "lm-eval", "datasets")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


# ----------------------------------------------------------------------------- evaluation
def _run(lm, task_obj, manager, task: str, metric: str, limit: int | None, num_fewshot: int,
         cache_db: str | None) -> dict:
    """One lm_eval.simple_evaluate call on one task (or group): its metric, stderr, items and per-item
    scores (for the paired difference between a stage's start and end)."""
    import lm_eval

    with _quiet():
        out = lm_eval.simple_evaluate(
            model=lm, tasks=[task_obj], task_manager=manager, num_fewshot=num_fewshot, limit=limit,
            use_cache=cache_db, log_samples=True, bootstrap_iters=BOOTSTRAP_ITERS,
            random_seed=None, numpy_random_seed=None, torch_random_seed=None)  # leave the kernel's RNGs alone
    res = out["results"][task]
    stderr = res.get(f"{metric}_stderr,none")
    samples = out.get("samples") or {}
    per_item = {name: [float(s[metric]) for s in sorted(rows, key=lambda s: s["doc_id"])]
                for name, rows in sorted(samples.items())}
    shots = sorted({int(v) for v in out.get("n-shot", {}).values()})
    if shots and shots != [num_fewshot]:
        warnings.warn(f"capability task {task}: lm-eval ran it with {shots} shots, not {num_fewshot} "
                      "(its config fixes the count); the result records what lm-eval ran", stacklevel=2)
    return {"metric": metric, "value": float(res[f"{metric},none"]),
            "stderr": float(stderr) if isinstance(stderr, (int, float)) else math.nan,
            "n": int(sum(v["effective"] for v in out["n-samples"].values())), "n_shot_run": shots,
            "all_metrics": {k: v for k, v in res.items() if "," in k}, "per_item": per_item}


def evaluate_checkpoint(cfg: Config, base: str, adapter: str | Path | None = None, tasks: list[str] | None = None,
                        cache_dir: str | Path = "runs/capabilities") -> list[dict]:
    """Evaluate base + adapter (None: the base itself) on `tasks` (default: the params' tasks).

    One dict per task: task, metric, value, stderr, n, num_fewshot, limit, cached, seconds, key (and the
    per-item scores). A result already in `cache_dir` is returned without calling into lm-eval; the model
    is loaded only if some task needs evaluating, once for all of them."""
    import json

    cache_dir = Path(cache_dir)
    tasks = tasks or _task_names(cfg)
    mkey = model_key(base, adapter)
    rows, lm = [], None
    for task in tasks:
        if task not in cfg.capabilities.tasks:
            raise ConfigError(f"{cfg.source}: capabilities.tasks: no entry for {task!r}")
        spec = cfg.capabilities.tasks[task]
        key = result_key(cfg, task, mkey)
        path = cache_dir / "results" / f"{task}-{_hash(key)[:24]}.json"
        if path.is_file():
            rows.append({**json.loads(path.read_text()), "cached": True})
            continue
        t0 = time.perf_counter()
        task_obj = load_task(cfg, task)  # the dataset first: a gated one fails before a model is loaded
        if lm is None:
            lm = _hflm(cfg, base, adapter)
        cache_db = None if task == capability.TASK else str(cache_dir / "lm-eval" / mkey[:24])
        result = _run(lm, task_obj, task_manager(cfg, task), task, spec.metric, cfg.capabilities.limit,
                      spec.num_fewshot, cache_db)
        row = {"task": task, **result, "num_fewshot": spec.num_fewshot, "limit": cfg.capabilities.limit,
               "base": str(base), "adapter": str(adapter) if adapter else None, "key": key,
               "seconds": round(time.perf_counter() - t0, 2)}
        atomic_write_json(row, path)
        rows.append({**row, "cached": False})
    return rows


def stage_checkpoints(record: RunRecord, cfg: Config) -> list[tuple[str, int, str, Path | None]]:
    """(position, step, model, adapter) of a run's start (step 0) and end (last step), each the model its
    probes are scored with (vd.score.scoring.checkpoint_model: a complete SFT run ends at its merged model,
    which every preference stage starts from)."""
    ckpts = sorted(record.checkpoints, key=lambda c: c.step)
    start = start_identity(record, cfg)  # a retrained start is refused here as in scoring
    return [(position, c.step, *checkpoint_model(record, cfg, c, start)[:2])
            for position, c in (("start", ckpts[0]), ("end", ckpts[-1]))]


def evaluate_run(run_dir: str | Path, cfg: Config, cache_dir: str | Path | None = None) -> pd.DataFrame:
    """The capability tasks at a stage's start and end: one row per (position, task)."""
    run_dir = Path(run_dir)
    record = RunRecord.read(run_dir)
    cache_dir = Path(cache_dir) if cache_dir else run_dir.parent / "capabilities"
    total = record.total_steps or record.last_saved_step or 1
    rows = []
    for position, step, base, adapter in stage_checkpoints(record, cfg):
        for r in evaluate_checkpoint(cfg, base, adapter, cache_dir=cache_dir):
            rows.append({"run": run_dir.name, "stage": record.stage, "data": record.data, "position": position,
                         "step": step, "fraction": step / total, "task": r["task"], "metric": r["metric"],
                         "value": r["value"], "stderr": r["stderr"], "n": r["n"], "num_fewshot": r["num_fewshot"],
                         "chance": chance(r["task"]), "cached": r["cached"], "seconds": r.get("seconds", 0.0),
                         "per_item": r.get("per_item")})
    return pd.DataFrame(rows)
