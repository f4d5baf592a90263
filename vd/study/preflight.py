"""What a notebook checks before its first training step, so that a run that cannot finish stops at once
and not after a training run on a GPU: the judge can run here (its key, its endpoint or model) and tells
stances apart (check_judge_sees), every local data and probe file the params name exists, and the stages
it will train (with PPO's reward model) and the scoring of their checkpoints fit this GPU by
vd.models.memory's estimate."""

from __future__ import annotations

from pathlib import Path

from vd import world
from vd.core.config import Config
from vd.data.files import is_local
from vd.data.synthetic import check_writer
from vd.judge import check_available
from vd.models.memory import check_gpu_fits
from vd.train.data import DataError
from vd.world import capability


def preflight(cfg: Config, stages=(), synthetic: bool = False) -> None:
    """Raise a ConfigError (one line: the key and what is wrong) for anything training `stages` (and, with
    `synthetic`, building the synthetic value-gap pairs) will need and lack."""
    check_available(cfg.judge, tiny_world=world.uses_world(cfg))
    for kind in ("sft", "preference"):
        for name, ds in getattr(cfg.data, kind).items():
            if ds.id != world.TINY and is_local(ds.id) and not Path(ds.id).exists():
                raise DataError(f"{cfg.source}: data.{kind}.{name}.id: {ds.id} does not exist (a local file in "
                                "the hub dataset's format, or a hub id)")
    for key, path in (("probes.file", cfg.probes.file),
                      ("data.synthetic.prompts_file", cfg.data.synthetic.prompts_file)):
        if path and path != world.TINY and not Path(path).is_file():
            raise DataError(f"{cfg.source}: {key}: {path} does not exist")
    if synthetic:
        check_writer(cfg)
    # every trained run is scored; on CPU or without 4-bit this returns at once
    check_gpu_fits(cfg, world.model_path(cfg), [*stages, "generate"] if stages else [])


def check_judge_sees(cfg: Config, runs_dir: str | Path) -> None:
    """The judge check scoring runs (vd.judge.sanity: JudgeCannotTell, one line, where the judge cannot tell
    stances apart), run before anything trains; its judgments go to the runs' cache, so scoring's own check
    reads them back without judging again."""
    from vd.score.scoring import build_judge, default_store, release_memory

    with default_store(cfg, runs_dir) as store:
        judge = build_judge(cfg, store)
    del judge  # a local (hf) judge leaves the GPU to training; scoring loads it again
    release_memory()


# ----------------------------------------------------------------------------- capability tasks' data
def check_capability_data(cfg: Config) -> None:
    """Before any run trains or model loads (notebooks 06 and 07): every capability task resolves in
    lm-eval; offline (HF_HUB_OFFLINE=1) each dataset it reads is in the datasets cache, which is all that
    `datasets` reads offline; online a gated dataset (GPQA) needs a token (HF_TOKEN or `hf auth login`)
    of an account that accepted its terms. The tiny world's task is built locally: nothing to check."""
    from huggingface_hub import constants, get_token

    from vd.score import capabilities

    tasks = [t for t in cfg.capabilities.tasks if t != capability.TASK]
    if not tasks:
        return
    capabilities.check_tasks(cfg)
    offline = constants.is_offline_mode()
    for task in tasks:
        needed: dict[str, list] = {}
        for repo, name in task_datasets(task):
            needed.setdefault(repo, []).append(name)
        for repo, names in needed.items():
            if offline:
                missing = [n for n in names if not dataset_cached(repo, n)]
                if missing:
                    what = (f"{len(missing)} of its {len(names)} configurations (e.g. {missing[0]}) are"
                            if len(names) > 1 else "it is")
                    raise DataError(f"{cfg.source}: capabilities.tasks.{task}: reads the dataset {repo}, and the hub "
                                    f"is offline (HF_HUB_OFFLINE=1): {what} not in the datasets cache "
                                    f"({_datasets_cache()}); run the task once online, or remove {task} from "
                                    "capabilities.tasks in the params file")
            elif repo in capabilities.GATED:
                if not get_token():
                    raise DataError(f"{cfg.source}: {capabilities.gated_message(task, repo)} (no token found)")
                try:
                    capabilities.check_access(task)
                except capabilities.DatasetAccessError as e:
                    raise DataError(f"{cfg.source}: {e}") from None


def task_datasets(task: str) -> list[tuple[str, str | None]]:
    """(hub dataset, configuration) of every task `task` runs (a group's or tag's members, recursively),
    from lm-eval's task index: nothing is loaded."""
    from lm_eval.tasks._index import Kind

    from vd.score.capabilities import lm_eval_task_manager

    index, out, seen = lm_eval_task_manager().task_index, [], set()

    def walk(item) -> None:
        if isinstance(item, dict):  # an inline task config inside a group
            if item.get("dataset_path"):
                out.append((item["dataset_path"], item.get("dataset_name")))
            elif isinstance(item.get("task"), str):
                walk(item["task"])
            return
        if item in seen or item not in index:
            return
        seen.add(item)
        entry = index[item]
        if entry.kind is Kind.TAG:
            for member in sorted(entry.tags):
                walk(member)
        elif entry.kind is Kind.GROUP:
            for member in (entry.cfg or {}).get("task") or []:
                walk(member)
        elif (entry.cfg or {}).get("dataset_path"):
            out.append((entry.cfg["dataset_path"], entry.cfg.get("dataset_name")))

    walk(task)
    return list(dict.fromkeys(out))


def _datasets_cache() -> Path:
    import datasets

    return Path(datasets.config.HF_DATASETS_CACHE)


def dataset_cached(repo: str, name: str | None) -> bool:
    """Whether `datasets` can load `repo` (configuration `name`) offline: its prepared copy in the
    datasets cache, where datasets.load's CachedDatasetModuleFactory looks for it."""
    from datasets.naming import camelcase_to_snakecase

    parts = repo.split("/")
    parts[-1] = camelcase_to_snakecase(parts[-1])
    root = _datasets_cache() / "___".join(parts)
    return any(p.is_dir() for p in root.glob(f"{name or '*'}/*/*"))
