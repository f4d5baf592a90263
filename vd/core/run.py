"""A run folder, typed: the one reader and writer of `run.json`, the one checkpoint discovery, and the one
place that knows where a run keeps what. Relocatable: a record names its SFT run by folder name, its
synthetic pairs by a path under `<runs_dir>/<size>/` and their sha256, its start model by content.

    <runs_dir>/<size>/<run name>/
        config.yaml            the resolved config the run was trained under
        run.json               this record (RunRecord), rewritten atomically as checkpoints appear
        train_log.csv          the trainer's log history (loss, rewards/accuracies, KL, ...)
        checkpoint-<step>/     every saved LoRA adapter (all kept: adapters are small)
        merged/                SFT: the final adapter merged into the base (where preference stages start)
        reward/                PPO: its reward model, itself a run folder (stage "reward"; model in reward/model/)
        scores/<judge>/        judgments.csv, profile.csv, drift.csv and .scores-key (vd.score.outputs)
    <runs_dir>/<size>/synthetic/<setting>-<hash>/   synthetic pairs shared by the runs (vd.data.synthetic_set)
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import re
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from vd.core.cache import ADAPTER_WEIGHT_FILES
from vd.core.io import atomic_write_json

RUN_FILE = "run.json"
SCORES_DIR = "scores"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
RUN_NAME = re.compile(r"^[A-Za-z0-9_.~-]+$")
# What a run folder may hold before its run.json is written (its config, and the pair files of runs that
# keep their own synthetic pairs), besides the hidden temp files of atomic writes.
BEFORE_RECORD = ("config.yaml", "synthetic_pairs.jsonl", "synthetic_judged.csv")


def judge_label(judge_key: str) -> str:
    """A judge named for a reader (figure titles, messages): its kind and model, e.g. `openai gpt-4o`."""
    return " ".join(judge_key.split(":")[:2])


def judge_slug(judge_key: str) -> str:
    """The folder name of a judge's score tables: readable (kind and model) and a short hash of the whole
    key, so two judges never share a folder, e.g. `openai-gpt-4o-1a2b3c4d`."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", "-".join(judge_key.split(":")[:2]))[:40].strip("-._")
    return f"{readable or 'judge'}-{hashlib.sha256(judge_key.encode()).hexdigest()[:8]}"


class RunError(ValueError):
    """A run folder is unreadable or inconsistent; the message names the file and what is wrong."""


class RunNotFound(RunError, FileNotFoundError):
    """No run.json where a run folder was expected."""


@dataclass
class Checkpoint:
    step: int
    adapter: str | None  # folder name inside the run; None: the stage's start model itself (step 0)


@dataclass
class RunRecord:
    """What `run.json` holds. `root` is where the folder is now (not stored)."""

    root: Path
    stage: str
    data: str
    size: str
    from_run: str | None = None  # the SFT run it started from: a folder name beside this one
    start_model: str = ""  # how step 0 is named: a hub id, "tiny", or "<from_run>/merged" (for reading)
    start_identity: str = ""  # the start model by content (vd.models.loading.model_identity)
    total_steps: int | None = None
    checkpoints: list[Checkpoint] = field(default_factory=list)
    complete: bool = False
    # synthetic data: the pairs trained on, relative to <runs_dir>/<size>/, and the file's sha256
    synthetic_pairs: str | None = None
    synthetic_sha256: str | None = None
    extra: dict = field(default_factory=dict)  # stage-specific facts (reward accuracy, merged weights' identity)

    # -- layout -------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.root.name

    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    @property
    def log_path(self) -> Path:
        return self.root / "train_log.csv"

    @property
    def merged_dir(self) -> Path:
        return self.root / "merged"

    def merged_identity(self) -> str:
        """merged/'s identity as recorded when it was written (vd.core.weights.model_identity otherwise)."""
        from vd.core.weights import model_identity

        return self.extra.get("merged_identity") or model_identity(str(self.merged_dir))

    @property
    def synthetic_pairs_path(self) -> Path | None:
        """The shared synthetic pairs file this run trained on (None: not trained on synthetic pairs)."""
        return None if self.synthetic_pairs is None else self.root.parent / self.synthetic_pairs

    @property
    def reward_dir(self) -> Path:
        return self.root / "reward"

    def from_run_dir(self) -> Path | None:
        """The folder of the run this one started from (a sibling), or None."""
        return None if self.from_run is None else self.root.parent / self.from_run

    def adapter_dir(self, checkpoint: Checkpoint) -> Path | None:
        return None if checkpoint.adapter is None else self.root / checkpoint.adapter

    @property
    def scores_root(self) -> Path:
        """Where scoring keeps its tables (one folder per judge) and its lock."""
        return self.root / SCORES_DIR

    def scores_dir(self, judge_key: str) -> Path:
        """The score tables of this run by the judge `judge_key`: every reader and writer finds them here."""
        return self.scores_root / judge_slug(judge_key)

    @property
    def last_saved_step(self) -> int:
        return max((c.step for c in self.checkpoints), default=0)

    # -- reading and writing -----------------------------------------------------------------------
    @classmethod
    def read(cls, root: str | Path) -> RunRecord:
        """The record of the run folder `root`; a missing, truncated or malformed run.json is a RunError."""
        root = Path(root)
        path = root / RUN_FILE
        if not path.is_file():
            raise RunNotFound(f"{path}: no run.json; is {root} a run folder made by `vd train`?")
        try:
            raw = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RunError(f"{path}: not valid JSON ({e}); the file is damaged: retrain the run "
                           "(vd train ... --overwrite) or restore it from a copy") from None
        if not isinstance(raw, dict):
            raise RunError(f"{path}: expected a JSON object, got {type(raw).__name__}")
        missing = [k for k in ("stage", "data", "size") if not isinstance(raw.get(k), str)]
        if missing:
            raise RunError(f"{path}: {missing[0]}: missing (a run.json names its stage, data and size)")
        known = {f.name for f in dataclasses.fields(cls)} - {"root", "checkpoints", "extra"}
        try:
            checkpoints = [Checkpoint(int(c["step"]), c.get("adapter")) for c in raw.get("checkpoints") or []]
        except (TypeError, KeyError, ValueError):
            raise RunError(f"{path}: checkpoints: expected a list of {{step, adapter}} objects") from None
        values = {k: raw[k] for k in known if k in raw}
        pairs = values.get("synthetic_pairs")
        if pairs is not None and (not isinstance(pairs, str) or PurePosixPath(pairs).is_absolute()
                                  or ".." in PurePosixPath(pairs).parts):
            raise RunError(f"{path}: synthetic_pairs: expected a path under the run's <runs_dir>/<size>/, "
                           f"got {pairs!r}")
        extra = {k: v for k, v in raw.items() if k not in known and k != "checkpoints"}
        return cls(root=root, checkpoints=checkpoints, extra=extra, **values)

    @classmethod
    def find(cls, root: str | Path) -> RunRecord | None:
        """The record if `root` holds a run.json, else None (a damaged one still raises)."""
        return cls.read(root) if (Path(root) / RUN_FILE).is_file() else None

    def to_json(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("root", "extra")}
        out["checkpoints"] = [dataclasses.asdict(c) for c in self.checkpoints]
        clash = sorted(set(out) & set(self.extra))
        if clash:
            raise ValueError(f"RunRecord.extra may not hold the record's own fields: {clash}")  # a bug, not the user's
        return {**out, **self.extra}

    def write(self) -> None:
        """Discover the checkpoints on disk, then write run.json atomically."""
        self.checkpoints = discover_checkpoints(self.root)
        atomic_write_json(self.to_json(), self.root / RUN_FILE)


def discover_checkpoints(root: str | Path) -> list[Checkpoint]:
    """Step 0 (the stage's start model, no adapter) and every finished adapter checkpoint, by step.

    A checkpoint counts once its save finished: the Trainer writes trainer_state.json after the weights.
    (transformers' get_last_checkpoint finds only the newest folder, finished or not; scoring needs all.)
    """
    found = []
    for folder in Path(root).iterdir() if Path(root).is_dir() else ():
        m = _CHECKPOINT.match(folder.name)
        if m and (folder / "trainer_state.json").is_file() and any(
                (folder / f).is_file() for f in ADAPTER_WEIGHT_FILES):
            found.append(Checkpoint(int(m.group(1)), folder.name))
    return [Checkpoint(0, None)] + sorted(found, key=lambda c: c.step)


def check_run_name(name: str) -> str:
    """A run name is one folder name: letters, digits and -_.~, not `.` or `..` (RunError otherwise)."""
    if not RUN_NAME.match(name) or name in (".", ".."):
        raise RunError(f"--run-name {name!r}: expected one folder name of letters, digits and -_.~ "
                       "(not . or ..), e.g. dpo-mine")
    return name


def restartable(root: Path) -> bool:
    """Whether a folder without run.json holds only what a run writes before its record (a run stopped before
    it began training): safe to clear and start again."""
    return not (root / RUN_FILE).exists() and all(
        p.name in BEFORE_RECORD or (p.name.startswith(".") and p.name.endswith(".tmp")) for p in root.iterdir())


_TORCH_FILES = ("optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state*.pth", "training_args.bin")


def damaged_checkpoint_file(folder: Path) -> tuple[Path, str] | None:
    """The first file of a Trainer checkpoint that cannot be read whole, and why (None: all read).

    Reads headers only: trainer_state.json parses; each torch.save file is a zip archive whose central
    directory is there (a cut file loses it); a safetensors file is as long as its header says."""
    state = folder / "trainer_state.json"
    try:
        json.loads(state.read_text())
    except (OSError, ValueError) as e:
        return state, f"unreadable ({type(e).__name__})"
    for path in sorted(p for pattern in _TORCH_FILES for p in folder.glob(pattern)):
        try:
            with zipfile.ZipFile(path) as archive:
                end = max((i.header_offset + i.compress_size for i in archive.infolist()), default=0)
            if end > path.stat().st_size:
                return path, "cut short"
        except (OSError, zipfile.BadZipFile) as e:
            return path, f"cut short or damaged ({e})"
    for path in sorted(folder.glob("*.safetensors")):
        try:
            with open(path, "rb") as f:
                (n,) = struct.unpack("<Q", f.read(8))
                header = json.loads(f.read(n))
            end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
            if 8 + n + end > path.stat().st_size:
                return path, "cut short"
        except (OSError, ValueError, KeyError, struct.error) as e:
            return path, f"cut short or damaged ({type(e).__name__})"
    return None


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


RERUN_RESUMES = "what was saved is kept: the run resumes from its last checkpoint"
WRITE_ELSEWHERE = "pass another --runs-dir"


def write_error(e: OSError, where: Path, rerun: str | None = RERUN_RESUMES,
                elsewhere: str = WRITE_ELSEWHERE) -> RunError | None:
    """One line for an OSError that writing meets and the user can act on (a full disk, a folder that is
    not writable), naming the file (`where` if the error names none), what a rerun keeps (`rerun`) and
    how to write elsewhere (`elsewhere`); None for any other error."""
    file = e.filename or where
    if e.errno in _NO_SPACE:
        return RunError(f"{file}: no space left on the device: free some space, then run the same command again"
                        + (f" ({rerun})" if rerun else ""))
    if e.errno in _NOT_WRITABLE:
        return RunError(f"{file}: cannot write here ({e.strerror or 'permission denied'}): make the folder writable, "
                        f"or {elsewhere}")
    return None
