"""The synthetic value-gap pairs as one dataset that every run on a setting shares (docs/method.md §5).

Built once per key (size, setting, seed, writer and its endpoint, what it is told, judge, the prompts
file's content, prompts_per_topic, min_confidence) into `<runs_dir>/<size>/synthetic/<setting>-<hash>/`:
`pairs.jsonl` (what runs train on), `judged.csv` (each kept pair's judged stances: its value gap) and
`manifest.json` (the key, what was left out, each file's sha256). The folder is built beside its place
and renamed into it whole, under a file lock: a kill leaves nothing half-written, two processes never
build it twice, and PPO, DPO and SimPO on one setting read byte-identical pairs, paid for once.

    pairs = ensure_pairs(cfg, "support", Path("runs") / cfg.size)   # built once, then read
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from vd import world
from vd.core.config import Config
from vd.core.io import atomic_write_csv, atomic_write_json, atomic_write_text, file_lock, read_csv
from vd.data import synthetic
from vd.data.synthetic import SyntheticDataError
from vd.judge.endpoint import endpoint_name
from vd.judge.hf import judge_identity

FOLDER = "synthetic"  # under <runs_dir>/<size>/
# judge settings that change how fast it answers, not what: left out of a set's key
JUDGE_RUNTIME = ("max_concurrency", "max_retries", "timeout_s", "batch_size")
PAIRS, JUDGED, MANIFEST = "pairs.jsonl", "judged.csv", "manifest.json"


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def pairs_key(cfg: Config, setting: str) -> dict:
    """What a setting's pairs are a function of: equal keys, equal pairs (a stochastic writer's are
    reused, never drawn again)."""
    syn, judge = cfg.data.synthetic, cfg.judge
    endpoint = judge.base_url or (os.environ.get("OPENAI_BASE_URL") if judge.kind == "openai" else None)
    key = {"size": cfg.size, "setting": setting, "seed": cfg.seed,
            "generator": syn.generator, "generator_model": syn.generator_model,
            "writer_endpoint": synthetic.writer_endpoint(cfg) if syn.generator == "openai" else None,
            "writer_version": world.writer_version(cfg), "instructions_sha256": synthetic.instructions_hash(),
            "judge": {**{k: v for k, v in dataclasses.asdict(judge).items() if k not in JUDGE_RUNTIME},
                      "base_url": endpoint_name(endpoint) if endpoint else None},
            "prompts_sha256": file_sha256(synthetic.prompts_path(cfg)), "prompts_per_topic": syn.prompts_per_topic,
            "min_confidence": syn.min_confidence}
    # a local model writes or judges by its content (weights, tokenizer), not by the folder's name; only
    # there, so that the keys of sets made by an API model stay what they were
    if syn.generator == "hf":
        key["generator_identity"] = judge_identity(syn.generator_model)
    if judge.kind == "hf":
        key["judge_identity"] = judge_identity(judge.model)
    return key


def key_hash(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class PairSet:
    """A stored set of synthetic pairs (its folder)."""

    root: Path

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def pairs_path(self) -> Path:
        return self.root / PAIRS

    @property
    def judged_path(self) -> Path:
        return self.root / JUDGED

    @property
    def relative_pairs(self) -> str:
        """The pairs file as a run records it: relative to `<runs_dir>/<size>/` (relocatable)."""
        return f"{FOLDER}/{self.name}/{PAIRS}"

    def manifest(self) -> dict:
        try:
            return json.loads((self.root / MANIFEST).read_text())
        except (OSError, ValueError) as e:
            raise SyntheticDataError(f"{self.root / MANIFEST}: unreadable ({e}); {self._remedy}") from None

    @property
    def _remedy(self) -> str:
        return f"delete {self.root} to build these pairs again"

    def sha256(self) -> str:
        return file_sha256(self.pairs_path)

    def check(self) -> PairSet:
        """SyntheticDataError unless both files still have the sha256 the manifest recorded."""
        manifest = self.manifest()
        for path, recorded in ((self.pairs_path, manifest.get("pairs_sha256")),
                               (self.judged_path, manifest.get("judged_sha256"))):
            if not path.is_file() or file_sha256(path) != recorded:
                what = "is missing" if not path.is_file() else "differs from the sha256 in manifest.json"
                raise SyntheticDataError(f"{path}: {what} (edited or damaged); {self._remedy}")
        return self

    def rows(self) -> list[dict]:
        return [json.loads(line) for line in self.pairs_path.read_text(encoding="utf-8").splitlines()]

    def judged(self) -> pd.DataFrame:
        return read_csv(self.judged_path)

    def report(self) -> dict:
        """What a run's data report says of these pairs: prompts read, pairs kept, pairs left out by reason."""
        m = self.manifest()
        return {"source": f"synthetic-{m['key']['setting']} ({self.relative_pairs})", "read": m["prompts"],
                "kept": m["pairs"], "skipped": m["skipped"]}


def ensure_pairs(cfg: Config, setting: str, size_dir: str | Path, judge=None,
                 say: Callable[[str], None] | None = print) -> PairSet:
    """The stored pairs of `setting` under `size_dir` (`<runs_dir>/<size>`), built first if missing.

    A set with no verified pair is not stored (SyntheticDataError, naming the writer and judge): a run
    cannot train on it, and a judge that failed for a while should be asked again next time."""
    key = pairs_key(cfg, setting)
    final = Path(size_dir) / FOLDER / f"{setting}-{key_hash(key)}"
    if (final / MANIFEST).is_file():
        return PairSet(final)
    home = final.parent
    busy = lambda: say and say(f"[synthetic] another process is building {final.name}; waiting for it …")  # noqa: E731
    with file_lock(home / f".{final.name}.lock", on_wait=busy):
        if (final / MANIFEST).is_file():  # built by another process while we waited
            return PairSet(final)
        for stale in [*home.glob(f".partial-{final.name}-*"), final]:  # we hold the lock: dead processes' leftovers
            shutil.rmtree(stale, ignore_errors=True)
        tmp = home / f".partial-{final.name}-{os.getpid()}"
        try:
            _build(cfg, setting, key, tmp, judge, say)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return PairSet(final)


def _build(cfg: Config, setting: str, key: dict, out: Path, judge, say) -> None:
    syn, j = cfg.data.synthetic, cfg.judge
    if say:
        say(f"[synthetic] building synthetic-{setting} pairs ({syn.prompts_per_topic} prompts per topic, a supporting "
            f"and an opposing answer each, by {syn.generator} {syn.generator_model}; checked by the {j.kind} judge) …")
    res, judged = synthetic.build_from_config(cfg, setting, judge)
    if not res.rows:
        left = ", ".join(f"{k}: {v}" for k, v in res.skipped.most_common())
        raise SyntheticDataError(
            f"synthetic-{setting}: no pair passed the stance check: judge {j.kind!r} (model {j.model!r}) did not "
            f"confirm, with p >= data.synthetic.min_confidence ({syn.min_confidence}), the stances that generator "
            f"{syn.generator!r} (model {syn.generator_model!r}) was told to write ({left or 'no prompts'})")
    out.mkdir(parents=True)
    pairs = atomic_write_text(out / PAIRS, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in res.rows))
    table = pd.DataFrame(judged)
    atomic_write_csv(table, out / JUDGED)
    atomic_write_json({"key": key, "prompts": res.n_read, "pairs": len(res.rows), "skipped": dict(res.skipped),
                       "pairs_sha256": file_sha256(pairs), "judged_sha256": file_sha256(out / JUDGED)},
                      out / MANIFEST)
    if say:
        gap = {s: table[f"chosen_p_{s}"].mean() - table[f"rejected_p_{s}"].mean() for s in ("support", "oppose")}
        say(f"[synthetic] synthetic-{setting}: {len(res.rows)} pairs of {res.n_read} prompts; value gap (chosen - "
            "rejected) " + ", ".join(f"{k} {v:+.2f}" for k, v in gap.items()))
