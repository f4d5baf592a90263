"""`vd reproduce --size <size>`: every numbered notebook through papermill, over its parameter grid.

Executed notebooks go to `runs/<size>/notebooks/<name>[-<params>].ipynb`, one line is printed per
notebook (name, parameters, wall time), and at the end where the figures and tables are and a table
of wall times (also written to `runs/<size>/reproduce_times.json`). The notebooks train and score
only what is missing, so a rerun after an interruption picks up where it stopped; a failed notebook
is reported (with the path of its executed copy, which shows the error) and the others still run.
At size `tiny` this is the whole study in minutes on a CPU; at a real size on a GPU, the whole study.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

from vd import world
from vd.core import registry
from vd.core.config import ConfigError, load_config
from vd.core.io import atomic_write_json
from vd.study import summary, timelog
from vd.study.notebook import output_dirs, params_argument, parse_overrides, repo_root, resolve_path

# The parameter grid of each notebook, in the order they run (later notebooks reuse earlier runs); the
# choices come from vd.core.registry.
GRID: dict[str, list[dict]] = {
    "00_probes": [{}],
    "01_sft_drift": [{"sft_data": d} for d in registry.SFT_DATA],
    "02_preference_drift": [{"algo": a, "pref_data": d} for a in registry.ALGORITHMS for d in registry.PREFERENCE_DATA],
    "03_value_gap": [{"algo": a, "setting": s} for a in registry.ALGORITHMS for s in registry.SYNTHETIC_SETTINGS],
    "04_dataset_value_gap": [{}],
    "05_ablations": [{}],
    "06_paper_tables": [{}],
    "07_capabilities": [{}],
}


def grid(only: list[str] | None = None, cfg=None) -> list[tuple[str, dict]]:
    """(notebook, parameters) pairs to run; `only` selects notebooks by name or number prefix (e.g. "03");
    with `cfg`, only executions on datasets its params name (one set to null is not run)."""
    names = [n for n in GRID if not only or any(n == o or n.startswith(o) for o in only)]
    if only and not names:
        raise ConfigError(f"--only {' '.join(only)}: no such notebook; expected names or prefixes of {', '.join(GRID)}")
    named = {"sft_data": cfg and cfg.data.sft, "pref_data": cfg and cfg.data.preference}
    return [(n, p) for n in names for p in GRID[n]
            if cfg is None or all(v in named[k] for k, v in p.items() if k in named)]


def output_name(name: str, params: dict) -> str:
    return "-".join([name, *map(str, params.values())]) + ".ipynb"


def reproduce(size: str = "tiny", only: list[str] | None = None, smoke: bool = False, overrides: str = "",
              runs_dir: str = "", figures_dir: str = "", log_output: bool = False) -> int:
    """Run the notebooks; return 0 if all succeeded, 1 otherwise."""
    import papermill  # here: papermill loads nbconvert and jupyter machinery that nothing else needs
    from papermill.exceptions import PapermillExecutionError

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    root = repo_root()
    nb_dir = root / "notebooks"
    if not nb_dir.is_dir():
        raise FileNotFoundError(f"{nb_dir}: no notebooks folder; run `vd reproduce` inside the repository")
    size = params_argument(size, root)  # a params file's path: absolute, for kernels started in notebooks/
    cfg = load_config(size, parse_overrides(overrides))  # a bad size or override fails here, not in a notebook
    runs, figures = output_dirs(root, cfg.size, smoke, runs_dir, figures_dir)
    out_dir = runs / cfg.size / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = grid(only, cfg)

    t_start, started_at = time.perf_counter(), time.time()
    world_s = world_mb = 0.0
    t0 = time.perf_counter()
    with PeakMemory() as memory:
        built = world.prepare(cfg)  # the tiny world, built once (None for a real model)
    if built is not None:
        world_s, world_mb = time.perf_counter() - t0, memory.peak_mb
        print(f"tiny world: {built.root} ({world_s:.0f} s)", flush=True)
    print(f"running {len(jobs)} notebook executions at size {size}{' (smoke budget)' if smoke else ''}; "
          f"executed notebooks go to {_rel(out_dir, root)}", flush=True)
    times, failed = [], []
    for name, params in jobs:
        out = out_dir / output_name(name, params)
        shown = " ".join(f"{k}={v}" for k, v in params.items()) or "-"
        parameters = {"size": size, **params, "smoke": smoke, "overrides": overrides,
                      "runs_dir": str(resolve_path(runs_dir, root)) if runs_dir else "",
                      "figures_dir": str(resolve_path(figures_dir, root)) if figures_dir else ""}
        t0 = time.perf_counter()
        status = "ok"
        kernel_log = out.with_suffix(".kernel.log")
        memory = PeakMemory()
        try:
            with memory, _stderr_to(None if log_output else kernel_log):
                papermill.execute_notebook(str(nb_dir / f"{name}.ipynb"), str(out), parameters=parameters,
                                           kernel_name="python3", cwd=str(nb_dir), log_output=log_output,
                                           progress_bar=False)
        except PapermillExecutionError as e:
            status = f"FAILED: {e.ename}: {str(e.evalue).splitlines()[0] if e.evalue else ''}"
            failed.append(name)
        except Exception as e:  # a dead kernel, a timeout: report it, go on with the others
            status = f"FAILED: {type(e).__name__}: {e} (kernel log: {_rel(kernel_log, root)})"
            failed.append(name)
        wall = time.perf_counter() - t0
        if status == "ok":
            kernel_log.unlink(missing_ok=True)  # only kept when something went wrong
        times.append({"notebook": name, "parameters": params, "wall_s": round(wall, 1),
                      "peak_rss_mb": round(memory.peak_mb), "status": status, "executed": _rel(out, root)})
        print(f"  {name:22s} {shown:36s} {wall:7.1f} s {memory.peak_mb:6.0f} MB  {status}", flush=True)

    total = time.perf_counter() - t_start

    stages = stage_breakdown(runs / cfg.size / "stage_times.jsonl", since=started_at)
    if world_s:
        stages = {"tiny world": {"seconds": round(world_s, 1), "peak_rss_mb": round(world_mb)}, **stages}
    record = {"size": size, "smoke": smoke, "total_s": round(total, 1), "stages": stages, "notebooks": times}
    atomic_write_json(record, runs / cfg.size / "reproduce_times.json")
    print(f"\nwall time (s) and peak memory (MB, the kernel and this process) per notebook, size {size}:")
    per: dict[str, list] = {}
    for t in times:
        s, mb, k = per.get(t["notebook"], (0.0, 0, 0))
        per[t["notebook"]] = (s + t["wall_s"], max(mb, t["peak_rss_mb"]), k + 1)
    for n, (s, mb, k) in per.items():
        print(f"  {n:22s} {s:7.1f} {mb:6.0f}  ({k} execution(s))")
    print(f"  {'total':22s} {total:7.1f}  (tiny world included)")
    if stages:
        print("by stage (s): " + ", ".join(f"{k} {v['seconds']:.0f}" for k, v in stages.items()))
    print(f"\nfigures (PNG, PDF), tables (CSV, LaTeX) and key numbers (JSON): {_rel(figures, root)}/")
    print(f"executed notebooks: {_rel(out_dir, root)}/; times: {_rel(runs / cfg.size / 'reproduce_times.json', root)}")
    if not failed and not only:  # the whole study ran: its summary (docs/tiny/ and the README come from it)
        try:
            summary.write_summary(figures, root, record)
            print(f"summary: {_rel(figures / 'summary.md', root)} (vd publish --size {cfg.size} copies it to docs/)")
        except summary.SummaryError as e:
            print(f"no summary: {e}")
    if failed:
        print(f"\n{len(failed)} notebook execution(s) failed: {', '.join(failed)}; open the executed copies above "
              "to see the error, fix it, and rerun (finished runs are reused).")
        return 1
    return 0


def stage_breakdown(log: Path, since: float) -> dict[str, dict]:
    """Seconds spent training each stage, and scoring, by the notebooks since `since` (vd.study.timelog;
    a damaged line is skipped with a warning)."""
    out: dict[str, float] = {}
    for entry in timelog.read(log):
        if entry["time"] < since:
            continue
        label = f"train {entry['stage']}" + (" (+ reward model)" if entry["stage"] == "ppo" else "")
        out[label] = out.get(label, 0.0) + entry["train_s"]
        out["scoring"] = out.get("scoring", 0.0) + entry["score_s"]
    return {k: {"seconds": round(v, 1)} for k, v in out.items() if v > 0}


class PeakMemory:
    """Peak resident memory (MB) of this process and all its children (the notebook kernels), polled
    every 0.2 s in a thread: the kernel is another process, so this process's own peak would miss it."""

    def __init__(self, interval_s: float = 0.2):
        import threading

        self.interval_s, self.peak_mb = interval_s, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _sample(self) -> float:
        import psutil

        me = psutil.Process()
        total = 0
        for proc in (me, *me.children(recursive=True)):
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total / 2**20

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, self._sample())
            self._stop.wait(self.interval_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self._sample())


@contextlib.contextmanager
def _stderr_to(path: Path | None):
    """Send this process's stderr (which the kernel inherits: its start-up warnings, a crash) to `path`."""
    if path is None:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "w") as f:
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def _rel(path: Path, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:
        return str(path)
