"""Score every checkpoint of a run: sample answers to the probes, judge their stance, and write the
value profile and drift table (docs/method.md §2-§4, §6).

One process scores a run at a time (a lock in `<run>/scores/`). The run's inputs are checked first
(vd.score.checks); generations and judgments go through the SQLite cache as they are made, so an
interrupted run loses at most one chunk and a rerun redoes nothing stored; the judge is built once the
policy is freed; a judgment that fails after its retries is stored as failed, left out and counted, and
tried again next time. The tables (vd.score.outputs, one folder per judge) are recomputed only when
`outputs_key` changes. An SFT run's final step is scored from its `merged/` model, so v_end(SFT) and each
preference run's v_0 are the same answers (docs/method.md §9, `checkpoint_model`).

    profile, drift = score_run("runs/tiny/sft-wildchat", cfg)   # a Scores; .judge_key, .folder besides
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from vd.core import registry
from vd.core.cache import Store, checkpoint_fingerprint, prompt_hash
from vd.core.config import Config, load_stored_config
from vd.core.io import code_hash, file_lock
from vd.core.run import RunError, RunRecord, judge_label
from vd.data.probes import load_probes
from vd.judge import CachedJudge, JudgeItem, check_available, make_judge, sighted_judge
from vd.judge.base import JudgingFailed
from vd.models.generate import Sampling, chat_prompt_ids, context_length, generate_answers
from vd.models.loading import load_model, load_tokenizer, start_model_path
from vd.score import checks, outputs
from vd.score import metrics
from vd.score import resampling
from vd.world import uses_world

log = logging.getLogger(__name__)
GENERATION_CHUNK = 64  # prompts generated (and stored) at a time
N_BOOT = 1000


def read_run(run_dir: str | Path) -> RunRecord:
    """The run's record, which scoring needs to hold step 0 and at least one checkpoint list."""
    record = RunRecord.read(run_dir)
    if not record.checkpoints:
        raise RunError(f"{Path(run_dir) / 'run.json'}: checkpoints: expected a non-empty list (step 0 first)")
    return record


def default_store(cfg: Config, runs_dir: str | Path = "runs") -> Store:
    """The cache of a size's runs: `<runs_dir>/<size>/cache.sqlite`."""
    return Store(Path(runs_dir) / cfg.size / "cache.sqlite")


@dataclass
class Scores:
    """What score_run returns: the run's value profile and drift table, the judge that made them and the
    folder they are in. Unpacks as (profile, drift)."""

    profile: pd.DataFrame
    drift: pd.DataFrame
    judge_key: str
    folder: Path

    @property
    def judge_label(self) -> str:
        return judge_label(self.judge_key)

    def __iter__(self):
        return iter((self.profile, self.drift))

    def __getitem__(self, i):
        return (self.profile, self.drift)[i]


def score_run(run_dir: str | Path, cfg: Config | None = None, judge=None, store: Store | None = None,
              progress: bool = True, n_boot: int = N_BOOT) -> Scores:
    """Score all checkpoints of `run_dir` (step 0 included) with `judge` (default: the config's, built
    after generation); write its judgments, profile and drift tables to `<run>/scores/<judge>/`.

    drift: drift_table's columns (M with its paired-bootstrap CI, the topic's resolution, η and its
    status per reading) and `complete`, `end_fraction` (the fraction of the stage's steps M reaches).
    A run still training (run.json `complete: false`) is scored as far as it has saved, marked
    incomplete: M is the drift so far, and every fraction and η is over the stage's total steps.
    Generations and judgments are cached in `<runs>/<size>/cache.sqlite` (vd.core.cache.Store) as they are
    made; if every judgment fails, scoring stops with JudgingFailed and the judge's old tables are removed.
    """
    run = read_run(run_dir)
    total = stage_steps(run)
    cfg = cfg or load_stored_config(run.config_path)  # the config the run was trained under
    checks.check_size(run, cfg)
    if judge is None:  # one that cannot run here stops scoring now, not after generation
        check_available(cfg.judge, tiny_world=uses_world(cfg))
    probes = load_probes(cfg.probes.file, prompts_per_topic=cfg.probes.prompts_per_topic, seed=cfg.seed)
    sampling = Sampling.from_config(cfg)
    own_store = store is None
    cache = checks.run_cache_path(run) if own_store else store.path

    def waiting() -> None:
        print(f"{run.root}: another process is scoring this run; waiting for it", flush=True)

    with file_lock(run.scores_root / ".lock", on_wait=waiting):  # the second scorer finds everything cached
        store = store or Store(cache)
        try:
            answers = generate_checkpoints(run, cfg, probes, sampling, store, progress)
            release_memory()
            judge = judge or build_judge(cfg, store)
            judgments = judge_answers(answers, probes, judge, store, progress)
        finally:
            if own_store:
                store.close()
        return write_tables(run, judgments, judge, total, n_boot, cfg.seed, cache)


def release_memory() -> None:
    """Free what the policy held (its last reference is gone once generation returns), GPU memory too."""
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def build_judge(cfg: Config, store: Store):
    """The config's judge, built once the policy is freed (score_run), and checked on labelled examples
    before it judges anything (vd.judge.sanity: a judge that cannot tell stances apart is refused)."""
    return sighted_judge(make_judge(cfg.judge, tiny_world=uses_world(cfg)), store)


def write_tables(run: RunRecord, judgments: pd.DataFrame, judge, total: int, n_boot: int, seed: int,
                 cache: Path) -> Scores:
    """The profile and drift tables from `judgments`, written with them as one set into the judge's folder
    (vd.score.outputs); read back instead where nothing they depend on changed."""
    folder = run.scores_dir(judge.key)
    errors = judgments.pop("error")
    failed = int(judgments[["p_support", "p_neutral", "p_oppose"]].isna().any(axis=1).sum())
    if failed == len(judgments):  # nothing to profile; the old tables would pass for this run's
        outputs.remove_scores(folder)
        raise JudgingFailed(
            f"{run.root}: all {failed} judgments failed (judge {judge.key}); first error: "
            f"{errors.dropna().iloc[0] if errors.notna().any() else 'none given'}; they are stored as failed in "
            f"{cache} and judged again on the next `vd score`; the run's old tables in {folder} were removed")
    if failed:
        log.warning("%s: %d of %d judgments failed after retries; they are left out of the profile and "
                    "retried on the next `vd score`", run.root, failed, len(judgments))
    key = outputs_key(judgments, total, n_boot, seed, run.complete)
    if outputs.scores_key(folder) == key:  # nothing they depend on changed: the bootstrap is not redone
        tables = outputs.read_scores(run, judge.key, ("profile", "drift"))
        return Scores(tables["profile"], tables["drift"], judge.key, folder)
    profile = metrics.value_profile(judgments, n_boot=n_boot, seed=seed)
    profile.insert(1, "fraction", profile["step"] / total)
    drift_rows = metrics.drift_table(profile, judgments=judgments, n_boot=n_boot, seed=seed, total_steps=total)
    drift_rows["complete"] = run.complete
    drift_rows["end_fraction"] = profile["step"].max() / total
    outputs.write_scores(folder, key, {"judgments": judgments, "profile": profile, "drift": drift_rows})
    remove_unkept_tables(run)
    return Scores(profile, drift_rows, judge.key, folder)


LEGACY_TABLES = ("judgments.csv", "profile.csv", "drift.csv", ".scores-key")


def remove_unkept_tables(run: RunRecord) -> None:
    """Tables an older vd wrote into the run folder itself (by an unnamed judge): nothing reads them now."""
    for name in LEGACY_TABLES:
        (run.root / name).unlink(missing_ok=True)


def stage_steps(run: RunRecord) -> int:
    """The stage's total steps, over which every fraction and η is measured (docs/method.md §4).

    An incomplete run is scored as far as it has saved (ours: scoring is cached, so scoring a run
    while it trains costs nothing later, and a stopped run can still be inspected), but only where
    run.json knows the planned total: η over the steps saved so far would overstate every drift time.
    """
    where = run.root / "run.json"
    if run.complete:
        return run.total_steps or run.last_saved_step or 1
    if not run.total_steps:
        raise RunError(f"{where}: the run is incomplete and has no total_steps, so its drift time cannot be "
                       "measured over the stage's steps; resume training (`vd train` with the same arguments)")
    if run.last_saved_step <= 0:
        raise RunError(f"{where}: the run is incomplete and has saved no checkpoint after step 0 yet: "
                       "there is no drift to score")
    log.warning("%s is incomplete (saved up to step %d of %d): scoring it as far as it goes; drift.csv marks "
                "it complete=False, and its M is the drift so far", run.root, run.last_saved_step, run.total_steps)
    return run.total_steps


def outputs_key(judgments: pd.DataFrame, total_steps: int, n_boot: int, seed: int, complete: bool = True) -> str:
    """What a run's three CSVs are a function of: every judged answer (all columns written), the
    bootstrap's settings, the step count, whether the run is complete, and the code that computes them
    (vd.score.metrics, vd.score.resampling, this module)."""
    h = hashlib.sha256(pd.util.hash_pandas_object(judgments, index=False).values.tobytes())
    h.update(json.dumps([total_steps, n_boot, seed, bool(complete)]).encode())
    h.update(code_hash(metrics, resampling, sys.modules[__name__]).encode())
    return h.hexdigest()


def generate_checkpoints(run: RunRecord, cfg: Config, probes: pd.DataFrame, sampling: Sampling, store: Store,
                         progress: bool) -> pd.DataFrame:
    """Answers of every checkpoint: from the cache where present, generated (and cached) otherwise.

    An answer is keyed by its checkpoint's fingerprint, the hash of the prompt's token ids (as the chat
    template renders the question) and its probe id and sample index. Everything is checked before
    anything is generated: the start model, every prompt's length, every adapter that will be loaded."""
    questions = dict(zip(probes["id"], probes["question"]))
    start = checks.start_identity(run, cfg)
    plans, tokenizers, hashes = [], {}, {}
    for ckpt in sorted(run.checkpoints, key=lambda c: c.step):
        path, adapter, identity = checkpoint_model(run, cfg, ckpt, start)
        if path not in tokenizers:
            tokenizers[path] = load_tokenizer(cfg, path, padding_side="left")
            ids = {pid: chat_prompt_ids(tokenizers[path], q) for pid, q in questions.items()}
            checks.check_prompt_lengths(ids, context_length(path, cfg.model.revision), cfg)
            hashes[path] = {pid: prompt_hash(v) for pid, v in ids.items()}
        keys = [(pid, hashes[path][pid], i) for pid in probes["id"] for i in range(sampling.samples_per_prompt)]
        fingerprint = checkpoint_fingerprint(identity, adapter, sampling.as_dict())
        cached = store.get_generations(fingerprint, keys)
        missing = [k for k in keys if k not in cached]
        if missing and adapter is not None:
            checks.check_adapter(adapter)
        plans.append((ckpt, path, adapter, fingerprint, keys, cached, missing))
    frames, model, model_path = [], None, None
    for ckpt, path, adapter, fingerprint, keys, cached, missing in plans:
        if missing:
            if model_path != path:  # one model in memory at a time: the last is released before the next loads
                model, model_path = None, path
            model = _model_for(cfg, path, adapter, model)
            wanted_prompts = list(dict.fromkeys(pid for pid, _, _ in missing))
            wanted = {(pid, i) for pid, _, i in missing}
            for begin in range(0, len(wanted_prompts), GENERATION_CHUNK):
                chunk = [(pid, questions[pid]) for pid in wanted_prompts[begin:begin + GENERATION_CHUNK]]
                rows = generate_answers(model, tokenizers[path], chunk, sampling, cfg.probes.batch_size,
                                        progress=False, wanted=wanted)
                store.put_generations(fingerprint, rows)
                if progress:
                    done = min(begin + GENERATION_CHUNK, len(wanted_prompts))
                    print(f"  step {ckpt.step}: generated answers for {done}/{len(wanted_prompts)} prompts",
                          flush=True)
            cached = store.get_generations(fingerprint, keys)
        frame = pd.DataFrame([(ckpt.step, pid, i, *cached[(pid, h, i)]) for pid, h, i in keys],
                             columns=["step", "prompt_id", "sample_index", "answer", "n_new_tokens"])
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def checkpoint_model(run: RunRecord, cfg: Config, ckpt, start: str) -> tuple[str, Path | None, str]:
    """(model path, adapter, model identity) a checkpoint is generated with: the stage's start model (of
    identity `start`: vd.score.checks.start_identity) plus the checkpoint's adapter; for a complete SFT
    run's final step, its merged model, loaded as every preference stage loads its start and cached under
    the same fingerprint (ours: base + final adapter would differ from it at real sizes, where the base is
    4-bit and the merge is made in bf16, then re-quantized when a preference stage loads it)."""
    merged, stage = run.merged_dir, registry.STAGES.get(run.stage)
    if (stage is not None and stage.kind == "sft" and run.complete and ckpt.step == run.total_steps
            and ckpt.adapter is not None and (merged / "config.json").is_file()):
        return str(merged), None, run.merged_identity()
    return start_model_path(run, cfg), run.adapter_dir(ckpt), start


def _model_for(cfg: Config, path: str, adapter: Path | None, model):
    """The model at `path` with `adapter`: `model` (loaded from `path`, or None) reused with the adapter
    swapped, so a model is loaded once per path (a 4-bit 8B base takes a while to load)."""
    from peft import PeftModel

    if model is None or (adapter is None and isinstance(model, PeftModel)):
        model = load_model(cfg, path=path)  # the bare model: LoRA layers once injected stay injected
    if adapter is None:
        return model
    name = f"adapter-{adapter.name}"
    if not isinstance(model, PeftModel):
        return PeftModel.from_pretrained(model, str(adapter), adapter_name=name).eval()
    previous = model.active_adapter
    model.load_adapter(str(adapter), adapter_name=name)
    model.set_adapter(name)
    model.delete_adapter(previous)
    return model.eval()


def judge_answers(answers: pd.DataFrame, probes: pd.DataFrame, judge, store: Store, progress: bool) -> pd.DataFrame:
    """p(support, neutral, oppose) for every answer, through the cache (vd.judge.CachedJudge): stored
    judgments reused, the rest judged and each stored as it arrives; `error` holds a failure's message."""
    by_id = probes.set_index("id")
    answers = answers.assign(topic=answers["prompt_id"].map(by_id["topic"]),
                             question=answers["prompt_id"].map(by_id["question"]))
    items = [JudgeItem(q, a, t) for q, a, t in zip(answers["question"], answers["answer"], answers["topic"])]
    results = CachedJudge(judge, store).judge(items, progress=progress)
    for k, column in enumerate(("p_support", "p_neutral", "p_oppose")):
        answers[column] = [r.p[k] for r in results]
    answers["status"] = [r.status for r in results]
    answers["error"] = [r.error for r in results]
    return answers[["step", "topic", "prompt_id", "sample_index", "p_support", "p_neutral", "p_oppose", "status",
                    "question", "answer", "n_new_tokens", "error"]]
