"""What the numbered notebooks call: one `Study` per notebook run, the runs it needs (trained only if
missing, scored through the cache), and where its figures, tables and key numbers go.

Paths resolve against the repository root (the nearest folder above the working directory whose
pyproject.toml is this project's), so a notebook behaves the same run from the root or notebooks/. Runs go
to `runs/` (or `runs_dir`, $VD_RUNS_DIR), figures and tables to `figures/<size>/` (or `figures_dir`,
$VD_FIGURES_DIR); `smoke=True` runs a few steps into `<runs>/smoke/` and `figures/<size>-smoke/`.

    study = setup("tiny", notebook="01_sft_drift", params={"sft_data": "alpaca"})
    sft = study.sft("alpaca")                      # RunResult: run_dir, profile, drift
    study.save_figure(figures.trajectories(sft.profile, study.title("SFT on alpaca", sft)), "trajectories")
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from vd import world
from vd.core.config import Config, ConfigError, load_config
from vd.core.io import atomic_write_csv, atomic_write_json, atomic_write_text, file_lock
from vd.core.overrides import parse_override
from vd.core.run import RunRecord, judge_label
from vd.core.stances import STANCES, TOPICS
from vd.data import synthetic_set
from vd.score import metrics
from vd.score.outputs import read_scores
from vd.score.scoring import score_run
from vd.study import figures, timelog
from vd.study.params import show_errors_as_one_line
from vd.study.preflight import check_judge_sees, preflight
from vd.study.quiet import quiet_notebook
from vd.train.runner import TrainRequestError, train_stage, variant_suffix
from vd.world import label as world_label

# The paper's probe budget (arXiv 2510.26707, §3): 50 prompts per topic, 5 samples, <= 256 new tokens.
PAPER_BUDGET = {"prompts_per_topic": 50, "samples_per_prompt": 5, "max_new_tokens": 256}

# Which SFT model feeds the preference stages (ours). Alpaca-SFT: the paper reports that Alpaca-SFT
# models turn supportive, so support is its high-prior stance and oppose its low-prior one; the two
# synthetic settings (support-aligned, oppose-aligned) then give the paper's high- vs low-prior contrast.
DEFAULT_SFT = "alpaca"

# Smoke budget: a few steps and 2 prompts per topic; every stage still leaves >= 2 checkpoints.
SMOKE_OVERRIDES = {
    "sft.max_steps": 4, "sft.save_every": 2, "dpo.max_steps": 2, "dpo.save_every": 1,
    "simpo.max_steps": 2, "simpo.save_every": 1, "reward.max_steps": 4, "reward.save_every": 4,
    "ppo.total_episodes": 16, "ppo.save_every": 1, "ppo.response_length": 12,
    "sft.batch_size": 8, "dpo.batch_size": 8, "simpo.batch_size": 8, "reward.batch_size": 8, "ppo.batch_size": 8,
    "probes.prompts_per_topic": 2, "probes.samples_per_prompt": 2, "probes.max_new_tokens": 20,
}
N_BOOT = 1000


# ----------------------------------------------------------------------------- environment
def repo_root(start: str | Path | None = None) -> Path:
    """The nearest folder at or above `start` (default: cwd) holding this project's pyproject.toml."""
    here = Path(start or os.getcwd()).resolve()
    return next((folder for folder in (here, *here.parents) if is_checkout(folder)), here)


def is_checkout(folder: Path) -> bool:
    pyproject = Path(folder) / "pyproject.toml"
    return pyproject.is_file() and 'name = "value-drifts"' in pyproject.read_text(errors="ignore")


def parse_overrides(text: str | dict | None) -> dict:
    """`"dpo.beta=0.2, probes.samples_per_prompt=2"` (the notebooks' `overrides` parameter) -> a dict.

    Items are split at the commas that start another `key=`, so a value may be a list:
    `lora.target_modules=[q_proj, v_proj], dpo.beta=0.2`.
    """
    if not text:
        return {}
    if isinstance(text, dict):
        return dict(text)
    items = filter(None, (s.strip() for s in re.split(r",(?=\s*[\w.-]+\s*=)", str(text))))
    return dict(parse_override(item, where="parameter overrides:") for item in items)


def _clean(x):
    """JSON-safe: NaN -> None, numpy scalars -> Python, Paths -> str, recursively."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        x = x.item()
    if isinstance(x, float) and math.isnan(x):
        return None
    return x


# ----------------------------------------------------------------------------- runs
@dataclass
class RunResult:
    """A trained and scored run: its folder, run.json, value profile and drift table (docs/method.md §2-§4),
    and the judge that scored it (its key; `judge_label` names it in titles)."""

    run_dir: Path
    record: RunRecord
    profile: pd.DataFrame
    drift: pd.DataFrame
    cfg: Config = field(repr=False)
    judge: str = ""

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def judge_label(self) -> str:
        """The judge that made these tables, for a figure's or table's title (e.g. `openai gpt-4o`)."""
        return judge_label(self.judge)

    def judgments(self) -> pd.DataFrame:
        """Every judged answer of the run by this judge (its scores' judgments.csv, checked against the set)."""
        return read_scores(self.record, self.judge, ("judgments",))["judgments"]

    @property
    def n_checkpoints(self) -> int:
        return int(self.profile["step"].nunique())

    def value(self, stance: str, topic: str = "overall", what: str = "M", reading: str = "extremum95") -> float:
        """M or eta of one (topic, stance) from the drift table."""
        row = self.drift[(self.drift["topic"] == topic) & (self.drift["stance"] == stance)
                         & (self.drift["eta_reading"] == reading)]
        return float(row[what].iloc[0]) if len(row) else float("nan")

    def at(self, step: str = "last", topic: str = "overall") -> dict[str, float]:
        """The profile of one topic at the first or last checkpoint: {stance: p}."""
        s = self.profile["step"].max() if step == "last" else self.profile["step"].min()
        part = self.profile[(self.profile["step"] == s) & (self.profile["topic"] == topic)]
        return {r.stance: float(r.p) for r in part.itertuples()}

    def drift_with_ci(self, reading: str = "extremum95") -> pd.DataFrame:
        """One η reading's rows of the drift table: topic, stance, M with its paired-bootstrap 95% CI
        (M_ci_low, M_ci_high), the topic's resolution, eta and eta_status (docs/method.md §3, §4, §6)."""
        d = self.drift[self.drift["eta_reading"] == reading]
        cols = ["topic", "stance", "M", "M_ci_low", "M_ci_high", "resolution", "eta", "eta_status"]
        return d[cols].reset_index(drop=True)

    def resolution(self) -> pd.DataFrame:
        """topic, resolution: the smallest |M| this run's probe budget resolves (docs/method.md §6)."""
        return metrics.resolution(self.drift)


def resolution_note(*runs: RunResult) -> str:
    """The line every drift figure and table states (docs/method.md §6): the smallest |M| the runs'
    probe budget resolves, overall and per topic (a range over topics, and over runs if several);
    "unknown" for what has no CI (docs/method.md §6), never left out."""
    res = pd.concat([r.resolution() for r in runs]) if runs else pd.DataFrame(columns=["topic", "resolution"])

    def span(x: pd.Series) -> str:
        known = x.dropna()
        lo, hi = f"{known.min():.2f}", f"{known.max():.2f}"
        text = "" if known.empty else lo if lo == hi else f"{lo}–{hi}"
        missing = len(x) - len(known)
        return text + ("" if not missing else "unknown" if known.empty else f" ({missing} unknown)")

    parts = [f"{what} {span(res.loc[mask, 'resolution'])}" for what, mask in
             (("overall", res["topic"] == "overall"), ("per topic", res["topic"] != "overall")) if mask.any()]
    return ("smallest |M| this budget resolves (95% CI half-width of M, max over stances): " + ", ".join(parts)
            if parts else "")


class Study:
    """One notebook run: its config, its folders, and the runs it trains/scores on demand."""

    def __init__(self, size: str, notebook: str, params: dict, overrides: dict, smoke: bool,
                 root: Path, runs_dir: str = "", figures_dir: str = ""):
        self.size, self.notebook, self.params, self.smoke = size, notebook, dict(params), smoke
        self.overrides = {**(SMOKE_OVERRIDES if smoke else {}), **overrides}
        # outputs made under the user's overrides are named apart from the params' own: `<key>~<hash>`
        self.tag = "" if not overrides else "~" + hashlib.sha1(
            json.dumps(sorted(overrides.items()), default=str).encode()).hexdigest()[:6]
        self.cfg = load_config(size, self.overrides)
        # filed under the config's own size (a params file's `size:` value, not its path)
        self.root = root
        self.runs_dir, self.figures_dir = output_dirs(root, self.cfg.size, smoke, runs_dir, figures_dir)
        # the config without the user's overrides: runs trained under other values get other folders
        self.base_cfg = load_config(size, SMOKE_OVERRIDES if smoke else {}) if overrides else self.cfg
        self._cache: dict[tuple, RunResult] = {}
        self._synthetic: dict[str, tuple[list[dict], pd.DataFrame]] = {}

    # -- naming ----------------------------------------------------------------------------------
    @property
    def key(self) -> str:
        """The parameters that distinguish this notebook run (file names, record keys): e.g. `dpo-support`."""
        return ("-".join(str(v) for v in self.params.values()) or "all") + self.tag

    def stem(self, name: str, key: str | None = None) -> str:
        """`<notebook>-<key>-<name>`; key None: this run's parameter key, "" or another: that one."""
        key = (self.key if self.params else self.tag) if key is None else key + self.tag
        return "-".join(p for p in (self.notebook, key, name) if p)

    @property
    def budget_note(self) -> str:
        """What this size shrank relative to the paper's probe budget (stated in every figure title)."""
        p = self.cfg.probes
        parts = ["SMOKE TEST (a few steps)"] if self.smoke else []
        parts += [f"{p.prompts_per_topic}/{PAPER_BUDGET['prompts_per_topic']} prompts per topic",
                  f"{p.samples_per_prompt}/{PAPER_BUDGET['samples_per_prompt']} samples",
                  f"≤ {p.max_new_tokens}/{PAPER_BUDGET['max_new_tokens']} new tokens"]
        shrunk = (p.prompts_per_topic < 50 or p.samples_per_prompt < 5 or p.max_new_tokens < 256)
        note = ("probe budget vs paper: " if shrunk else "paper's probe budget: ") + ", ".join(parts)
        return note + (f"; {self.cfg.budget_note}" if self.cfg.budget_note else "")

    def title(self, what: str, *runs: RunResult, note: str | None = None) -> str:
        """A figure title: what and size (short: legends sit at the top right); then the probe budget and
        the checkpoints per run, or `note` where probes play no part (dataset value gaps), and the judge
        that scored the runs; then, for runs, the smallest |M| their budget resolves (resolution_note)."""
        world = f" ({world_label(self.cfg)})" if world_label(self.cfg) else ""
        counts = sorted({r.n_checkpoints for r in runs})
        ck = ""
        if len(counts) == 1:
            ck = f"; {counts[0]} checkpoints" + (" per run" if len(runs) > 1 else "")
        elif counts:
            ck = "; checkpoints " + ", ".join(f"{r.name} {r.n_checkpoints}" for r in runs)
        second = note if note is not None else f"{self.budget_note}{ck}"
        # scores are kept per judge: a figure says whose they are
        judges = list(dict.fromkeys(r.judge_label for r in runs if r.judge_label))
        second += f"; judge: {', '.join(judges)}" if judges else ""
        resolved = resolution_note(*runs)
        return f"{what} — size {self.cfg.size}{world}\n{second}" + (f"\n{resolved}" if resolved else "")

    def preflight(self, stages=(), synthetic: bool = False) -> None:
        """Before the first training step: the judge (and that it tells stances apart), the data files and the
        GPU fit of `stages` (and the synthetic writer), each a one-line error now, not after training."""
        preflight(self.cfg, stages, synthetic)
        check_judge_sees(self.cfg, self.runs_dir)  # every run is scored: a blind judge stops it here
        extra = ["GPU fit"] * bool(stages) + ["synthetic writer"] * bool(synthetic)
        print("checked: " + ", ".join(["judge (tells stances apart)", "data files", *extra]), flush=True)
        from vd.study.plan import preflight_summary

        print(preflight_summary(self.cfg), flush=True)

    # -- runs -------------------------------------------------------------------------------------
    def variant(self, stage: str, data: str) -> str:
        """"" when the user's overrides leave this stage's training as the params have it; else a suffix
        "~<hash>" so that the run gets its own folder (a scoring-only override, e.g. probes.*, never does)."""
        return variant_suffix(self.cfg, self.base_cfg, stage, data)

    def _train_and_score(self, cfg: Config, stage: str, data: str, from_run: Path | None, run_name: str,
                         ) -> RunResult:
        run_dir = self.runs_dir / cfg.size / run_name
        key = (str(run_dir),)
        if key in self._cache:
            return self._cache[key]
        record = RunRecord.find(run_dir)
        t0 = time.perf_counter()
        trains = not (record and record.complete)
        if trains:
            print(f"training {run_name} …", flush=True)
        try:
            run_dir = train_stage(cfg, stage, data, from_run=from_run, run_name=run_name, runs_dir=self.runs_dir)
        except TrainRequestError as e:
            if "under other settings" not in str(e):
                raise
            raise TrainRequestError(f"{e}. Delete {run_dir} to train it again, or pass another runs_dir to keep "
                                    "both") from None
        t1 = time.perf_counter()
        scores = score_run(run_dir, cfg, progress=False, n_boot=N_BOOT)
        record = RunRecord.read(run_dir)
        t2 = time.perf_counter()
        print(f"{run_name}: {'trained in %.0f s, ' % (t1 - t0) if trains else ''}"
              f"{len(record.checkpoints)} checkpoints scored ({t2 - t1:.0f} s)", flush=True)
        self._log_times(run_name, stage, t1 - t0 if trains else 0.0, t2 - t1)
        result = RunResult(run_dir, record, scores.profile, scores.drift, cfg, scores.judge_key)
        self._cache[key] = result
        return result

    def _log_times(self, run_name: str, stage: str, train_s: float, score_s: float) -> None:
        """One line per run and notebook in `runs/<size>/stage_times.jsonl`: what `vd reproduce` breaks
        its wall time down by (a log: appended, never rewritten)."""
        timelog.append(self.runs_dir / self.cfg.size / "stage_times.jsonl",
                       {"time": round(time.time(), 1), "notebook": self.notebook, "run": run_name,
                        "stage": stage, "train_s": round(train_s, 2), "score_s": round(score_s, 2)})

    def run_name(self, stage: str, data: str, sft_data: str | None = None, overrides: dict | None = None
                 ) -> tuple[Config, str]:
        """(config, run folder name) of a run as sft() and preference() train it, without training it; an
        SFT run on data None (and a preference stage from sft_data None): the study's SFT data."""
        if stage == "sft":
            data = data or self.params.get("sft_data") or DEFAULT_SFT
            return self.cfg, f"sft-{data}{self.variant('sft', data)}"
        _, sft_name = self.run_name("sft", sft_data)
        cfg, suffix = self.cfg, ""
        changed = {k: v for k, v in (overrides or {}).items() if self.cfg.get(k) != v}
        if changed:
            cfg = load_config(self.size, {**self.overrides, **changed})
            suffix = "".join(f"-{k.split('.')[-1]}{v:g}" if isinstance(v, (int, float)) else f"-{k}{v}"
                             for k, v in sorted(changed.items()))
        return cfg, f"{stage}-{data}-from-{sft_name}{self.variant(stage, data)}{suffix}"

    def sft(self, sft_data: str | None = None) -> RunResult:
        """The SFT run on `sft_data` (wildchat | alpaca), trained if missing, scored."""
        sft_data = sft_data or self.params.get("sft_data") or DEFAULT_SFT
        return self._train_and_score(self.cfg, "sft", sft_data, None, self.run_name("sft", sft_data)[1])

    def preference(self, algo: str, pref_data: str, sft_data: str | None = None,
                   overrides: dict | None = None) -> RunResult:
        """A preference stage (ppo | dpo | simpo) on `pref_data` from the SFT run on `sft_data`.

        `overrides` (e.g. {"dpo.beta": 0.5}, the ablations) that differ from the config give the run
        its own folder, named after them; equal to the config, the main run is reused.
        """
        sft = self.sft(sft_data)
        cfg, name = self.run_name(algo, pref_data, sft_data, overrides)
        return self._train_and_score(cfg, algo, pref_data, sft.run_dir, name)

    def synthetic_pairs(self, setting: str) -> tuple[list[dict], pd.DataFrame]:
        """The synthetic value-gap pairs of `setting` and their judged stances: the stored set every run on
        that setting trains on (vd.data.synthetic_set, under the runs folder), built first if missing; at
        real sizes building costs API calls, paid once for the runs, notebook 04's gaps and its policy fit."""
        if setting not in self._synthetic:
            pairs = synthetic_set.ensure_pairs(self.cfg, setting, self.runs_dir / self.cfg.size).check()
            self._synthetic[setting] = pairs.rows(), pairs.judged()
        return self._synthetic[setting]

    # -- outputs ----------------------------------------------------------------------------------
    def save_figure(self, fig, name: str, key: str | None = None) -> None:
        """`figures/<size>/<notebook>[-params]-<name>.png` and `.pdf` (key: see `stem`)."""
        path = figures.save(fig, self.figures_dir, self.stem(name, key))[0]
        print(f"figure: {self.rel(path)} (+ .pdf)", flush=True)

    def save_table(self, df: pd.DataFrame, name: str, caption: str = "", latex: pd.DataFrame | None = None,
                   key: str | None = None) -> None:
        """The table as CSV (all digits) and LaTeX (`latex`, or df rounded to 2 decimals)."""
        stem = self.stem(name, key)
        csv = atomic_write_csv(df, self.figures_dir / f"{stem}.csv")
        tex = (latex if latex is not None else df).to_latex(
            index=False, float_format="%.2f", na_rep="--", escape=True, caption=caption or None,
            label=f"tab:{stem}")
        atomic_write_text(self.figures_dir / f"{stem}.tex", tex)
        print(f"table: {self.rel(csv)} (+ .tex)", flush=True)

    def record(self, values: dict) -> None:
        """Merge this run's key numbers into `figures/<size>/<notebook>.json` under its parameter key."""
        path = self.figures_dir / f"{self.notebook}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        entry = {"params": {"size": self.size, **self.params, "smoke": self.smoke},
                 "overrides": self.overrides, "budget_note": self.budget_note,
                 "recorded": time.strftime("%Y-%m-%d %H:%M:%S"), **values}
        with file_lock(path.parent / f".{path.stem}.lock"):  # notebooks recording at once merge, not clobber
            data = json.loads(path.read_text()) if path.is_file() else {}
            data[self.key] = _clean(entry)
            atomic_write_json(data, path)
        print(f"key numbers: {self.rel(path)} [{self.key}]", flush=True)

    def rel(self, path: Path) -> str:
        with contextlib.suppress(ValueError):
            return str(Path(path).resolve().relative_to(self.root))
        return str(path)


def resolve_path(path: str | os.PathLike, root: Path) -> Path:
    path = Path(path).expanduser()
    return path if path.is_absolute() else root / path


def output_dirs(root: Path, size: str, smoke: bool, runs_dir: str = "", figures_dir: str = "") -> tuple[Path, Path]:
    """(runs folder, figures folder of `size`) as the module docstring describes; smoke runs apart.
    `size` is a config's `size` (cfg.size), the name its runs are filed under, never a params file's path."""
    if Path(size).name != size or size in ("", ".", ".."):
        raise ConfigError(f"size {size!r}: expected the name a config gives itself (cfg.size), not a path")
    runs = resolve_path(runs_dir or os.environ.get("VD_RUNS_DIR") or "runs", root)
    figures_root = resolve_path(figures_dir or os.environ.get("VD_FIGURES_DIR") or "figures", root)
    return (runs / "smoke" if smoke else runs), figures_root / (f"{size}-smoke" if smoke else size)


def params_argument(size: str, root: Path) -> str:
    """A notebook's or `vd reproduce`'s `size` as load_config takes it: a size name as given; a params file's
    path made absolute (relative to the working directory where it exists there, else to the repository
    root), so that a notebook kernel started in notebooks/ finds it too; a path found nowhere as given."""
    if not size.endswith((".yaml", ".yml")):
        return size
    path = Path(size).expanduser()
    if path.is_absolute() or path.exists():
        return str(path.resolve())
    return str(root / path) if (root / path).is_file() else size


def setup(size: str = "tiny", notebook: str = "", params: dict | None = None, overrides: str | dict | None = "",
          smoke: bool = False, runs_dir: str = "", figures_dir: str = "") -> Study:
    """The Study of one notebook run (see the module docstring for where things go). `size` names
    params/<size>.yaml or is the path of a params file; its runs and figures are filed under the
    file's own `size:` value."""
    show_errors_as_one_line()
    quiet_notebook()
    root = repo_root()
    size, overrides = params_argument(size, root), parse_overrides(overrides)
    study = Study(size, notebook, params or {}, overrides, smoke, root, runs_dir, figures_dir)
    world.prepare(study.cfg)  # the tiny world: built, its model on one thread (a real model: nothing)
    print(setup_line(study), flush=True)
    return study


def setup_line(study: Study) -> str:
    """Where this study's runs, figures and tables go, and what the relative paths printed below are
    relative to: the repository root (or, outside a checkout, the working folder)."""
    name, root = study.cfg.size, study.root
    base = f"the repository root {root}" if is_checkout(root) else f"the working folder {root} (no checkout above it)"
    return (f"size {name}: runs in {study.rel(study.runs_dir / name)}, figures and tables in "
            f"{study.rel(study.figures_dir)} (relative paths: from {base})\n{study.budget_note}")


__all__ = ["DEFAULT_SFT", "PAPER_BUDGET", "SMOKE_OVERRIDES", "RunResult", "Study", "setup",
           "resolution_note", "repo_root", "parse_overrides", "STANCES", "TOPICS"]
