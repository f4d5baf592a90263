"""Score every checkpoint of a run: sample answers to the probes, judge their stance, and write the
value profile and drift table (DESIGN §2-§3).

    profile, drift = score_run("runs/tiny/sft-wildchat", cfg)

Generations and judgments go through the SQLite cache (`vd.core.cache.Store`) in chunks as they are made,
so an interrupted run loses at most one chunk and a rerun redoes nothing already stored. A judgment
that fails after its retries is stored as failed, reported, left out of the profile (counted), and
tried again on the next run. The run's profile.csv, drift.csv and judgments.csv are recomputed only
when something they depend on changed (`outputs_key`, kept in the run folder's `.scores-key`).

Where a stage ends and the next starts, one model is scored (ours): an SFT run's final step (step ==
total_steps of a complete run) is scored from its `merged/` model, loaded as every preference stage loads
its start (`load_model(cfg, path=merged)`, no adapter) and cached under the same fingerprint
(`checkpoint_fingerprint(identity of merged, no adapter, sampling)`), so v_end(SFT) and each preference
run's v_0 are the same answers by construction. Base + final adapter would differ from it at real sizes:
there the base is 4-bit and the merge is made in bf16, then re-quantized when a preference stage loads it.
An SFT run without `merged/` (not finished) is scored from its adapters.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from functools import lru_cache
from pathlib import Path

import pandas as pd

from vd.core import registry
from vd.score import metrics as drift
from vd.core.config import Config, load_config
from vd.core.run import RunError, RunRecord
from vd.models.loading import load_model, load_tokenizer, model_identity, start_model_path
from vd.models.generate import Sampling, generate_answers
from vd.core.cache import Store, checkpoint_fingerprint
from vd.core.io import atomic_write_csv, atomic_write_text, code_hash, text_hash

log = logging.getLogger(__name__)
GENERATION_CHUNK = 64  # prompts generated (and stored) at a time
JUDGE_CHUNK = 256  # answers judged (and stored) at a time
N_BOOT = 1000


def read_run(run_dir: str | Path) -> RunRecord:
    """The run's record, which scoring needs to hold step 0 and at least one checkpoint list."""
    record = RunRecord.read(run_dir)
    if not record.checkpoints:
        raise RunError(f"{Path(run_dir) / 'run.json'}: checkpoints: expected a non-empty list (step 0 first)")
    return record


def default_store(cfg: Config, runs_dir: str | Path = "runs") -> Store:
    return Store(Path(runs_dir) / cfg.size / "cache.sqlite")


def score_run(run_dir: str | Path, cfg: Config | None = None, judge=None, store: Store | None = None,
              progress: bool = True, n_boot: int = N_BOOT) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score all checkpoints of `run_dir` (step 0 included); write profile.csv, drift.csv, judgments.csv."""
    from vd.judge import make_judge
    from vd.data.probes import load_probes

    run_dir = Path(run_dir)
    run = read_run(run_dir)
    cfg = cfg or load_config(run.size)
    judge = judge or make_judge(cfg.judge)
    own_store = store is None
    store = store or default_store(cfg, run_dir.parent.parent)
    probes = load_probes(cfg.probes.file, prompts_per_topic=cfg.probes.prompts_per_topic, seed=cfg.seed)
    sampling = Sampling.from_config(cfg)
    try:
        answers = generate_checkpoints(run_dir, run, cfg, probes, sampling, store, progress)
        judgments = judge_answers(answers, probes, judge, store, progress)
    finally:
        if own_store:
            store.close()
    failed = int(judgments[["p_support", "p_neutral", "p_oppose"]].isna().any(axis=1).sum())
    if failed:
        log.warning("%s: %d of %d judgments failed after retries; they are left out of the profile and "
                    "retried on the next `vd score`", run_dir, failed, len(judgments))
    total = run.total_steps or run.last_saved_step or 1
    key = outputs_key(judgments, total, n_boot, cfg.seed)
    if _outputs_current(run_dir, key):  # nothing they depend on changed: the bootstrap is not redone
        return pd.read_csv(run_dir / "profile.csv"), pd.read_csv(run_dir / "drift.csv")
    profile = drift.value_profile(judgments, n_boot=n_boot, seed=cfg.seed)
    profile.insert(1, "fraction", profile["step"] / total)
    drift_rows = drift.drift_table(profile)
    atomic_write_csv(judgments, run_dir / "judgments.csv", index=False)
    atomic_write_csv(profile, run_dir / "profile.csv", index=False)
    atomic_write_csv(drift_rows, run_dir / "drift.csv", index=False)
    atomic_write_text(run_dir / OUTPUTS_KEY_FILE, key)  # last: it vouches for the three files above
    return profile, drift_rows


OUTPUTS = ("judgments.csv", "profile.csv", "drift.csv")
OUTPUTS_KEY_FILE = ".scores-key"


def outputs_key(judgments: pd.DataFrame, total_steps: int, n_boot: int, seed: int) -> str:
    """What a run's three CSVs are a function of: every judged answer (all columns written), the
    bootstrap's settings, the step count, and the code that computes them (vd.score.metrics, this module)."""
    h = hashlib.sha256(pd.util.hash_pandas_object(judgments, index=False).values.tobytes())
    h.update(json.dumps([total_steps, n_boot, seed]).encode())
    h.update(code_hash(drift, sys.modules[__name__]).encode())
    return h.hexdigest()


def _outputs_current(run_dir: Path, key: str) -> bool:
    stamp = run_dir / OUTPUTS_KEY_FILE
    return stamp.is_file() and stamp.read_text() == key and all((run_dir / f).is_file() for f in OUTPUTS)


def generate_checkpoints(run_dir: Path, run: RunRecord, cfg: Config, probes: pd.DataFrame, sampling: Sampling,
                         store: Store, progress: bool) -> pd.DataFrame:
    """Answers of every checkpoint: from the cache where present, generated (and cached) otherwise."""
    keys = [(pid, i) for pid in probes["id"] for i in range(sampling.samples_per_prompt)]
    questions = dict(zip(probes["id"], probes["question"]))
    frames, model, model_path, tokenizers = [], None, None, {}
    for ckpt in sorted(run.checkpoints, key=lambda c: c.step):
        path, adapter, identity = _checkpoint_model(run, cfg, ckpt)
        fingerprint = checkpoint_fingerprint(identity, adapter, sampling.as_dict())
        cached = store.get_generations(fingerprint, keys)
        missing = [k for k in keys if k not in cached]
        if missing:
            if path not in tokenizers:
                tokenizers[path] = load_tokenizer(cfg, path, padding_side="left")
            if model_path != path:  # one model in memory at a time: the last is released before the next loads
                model, model_path = None, path
            model = _model_for(cfg, path, adapter, model)
            wanted_prompts = list(dict.fromkeys(pid for pid, _ in missing))
            wanted = set(missing)
            for start in range(0, len(wanted_prompts), GENERATION_CHUNK):
                chunk = [(pid, questions[pid]) for pid in wanted_prompts[start:start + GENERATION_CHUNK]]
                rows = generate_answers(model, tokenizers[path], chunk, sampling, cfg.probes.batch_size,
                                        progress=False, wanted=wanted)
                store.put_generations(fingerprint, rows)
                if progress:
                    done = min(start + GENERATION_CHUNK, len(wanted_prompts))
                    print(f"  step {ckpt.step}: generated answers for {done}/{len(wanted_prompts)} prompts",
                          flush=True)
            cached = store.get_generations(fingerprint, keys)
        frame = pd.DataFrame([(ckpt.step, pid, i, *cached[(pid, i)]) for pid, i in keys],
                             columns=["step", "prompt_id", "sample_index", "answer", "n_new_tokens"])
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _checkpoint_model(run: RunRecord, cfg: Config, ckpt) -> tuple[str, Path | None, str]:
    """(model path, adapter, model identity) a checkpoint is generated with: the stage's start model plus
    the checkpoint's adapter; for a complete SFT run's final step, its merged model (see above)."""
    merged, stage = run.merged_dir, registry.STAGES.get(run.stage)
    if (stage is not None and stage.kind == "sft" and run.complete and ckpt.step == run.total_steps
            and ckpt.adapter is not None and (merged / "config.json").is_file()):
        return str(merged), None, run.extra.get("merged_identity") or model_identity(str(merged))
    base = start_model_path(run, cfg)
    return base, run.adapter_dir(ckpt), run.start_identity or model_identity(base)


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
    """p(support, neutral, oppose) for every answer: cached judgments reused, the rest judged and cached."""
    from vd.judge import JudgeItem

    by_id = probes.set_index("id")
    answers = answers.assign(topic=answers["prompt_id"].map(by_id["topic"]),
                             question=answers["prompt_id"].map(by_id["question"]))
    answers["key"] = [(text_hash(q), text_hash(a), t) for q, a, t in
                      zip(answers["question"], answers["answer"], answers["topic"])]
    unique = list(dict.fromkeys(answers["key"]))
    known = store.get_judgments(judge.key, unique)
    todo = [k for k in unique if k not in known]
    if todo:
        first = answers.drop_duplicates("key").set_index("key")
        for start in range(0, len(todo), JUDGE_CHUNK):
            chunk = todo[start:start + JUDGE_CHUNK]
            items = [JudgeItem(first.at[k, "question"], first.at[k, "answer"], k[2]) for k in chunk]
            results = judge.judge(items)
            store.put_judgments(judge.key, [
                {"question_hash": k[0], "answer_hash": k[1], "topic": k[2], "p_support": r.p[0],
                 "p_neutral": r.p[1], "p_oppose": r.p[2], "status": r.status, "error": r.error}
                for k, r in zip(chunk, results)])
            if progress:
                print(f"  judged {min(start + JUDGE_CHUNK, len(todo))}/{len(todo)} answers", flush=True)
        known = store.get_judgments(judge.key, unique, include_failed=True)
    for column in ("p_support", "p_neutral", "p_oppose", "status"):
        answers[column] = [known[k][column] if k in known else None for k in answers["key"]]
    return answers.drop(columns=["key"])[["step", "topic", "prompt_id", "sample_index", "p_support", "p_neutral",
                                          "p_oppose", "status", "question", "answer", "n_new_tokens"]]
