"""The whole tiny reproduction (`vd reproduce --size tiny`, what `make reproduce` runs after installing):
wall time and peak memory, broken down by stage and by notebook.

Runs from nothing: a fresh VD_HOME (so the tiny world is built; --keep-world reuses the cached one),
fresh runs and figures folders in a temporary directory, every notebook over its grid. `vd reproduce`
itself measures each notebook's wall time and the peak resident memory of its process tree (the
kernel included), and the notebooks log the seconds spent training each stage and scoring
(`runs/tiny/stage_times.jsonl`); this script runs it once (the run is minutes long and has no
warm-up to amortize) and stores what it measured.
    python benchmarks/bench_reproduce.py [--keep-world] [--keep-outputs DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine_info, merge_results  # benchmarks/common.py (scripts run from this folder's path)

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep-world", action="store_true", help="reuse the cached tiny world (default: build it)")
    parser.add_argument("--keep-outputs", metavar="DIR", help="put runs/ and figures/ in DIR (empty or new) and keep "
                                                              "them (default: a temporary folder)")
    args = parser.parse_args()
    if args.keep_outputs and Path(args.keep_outputs).exists() and any(Path(args.keep_outputs).iterdir()):
        sys.exit(f"--keep-outputs {args.keep_outputs}: not empty; a from-nothing run needs an empty folder")
    with (contextlib.nullcontext(args.keep_outputs) if args.keep_outputs else tempfile.TemporaryDirectory()) as tmp:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        if not args.keep_world:
            env["VD_HOME"] = str(Path(tmp).resolve() / "vd_home")
        cmd = [sys.executable, "-m", "vd.cli", "reproduce", "--size", "tiny",
               "--runs-dir", str(Path(tmp).resolve() / "runs"), "--figures-dir", str(Path(tmp).resolve() / "figures")]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, cwd=ROOT, env=env)
        wall = time.perf_counter() - t0
        if done.returncode:
            sys.exit(f"vd reproduce failed (exit {done.returncode}); nothing recorded")
        times = json.loads((Path(tmp) / "runs" / "tiny" / "reproduce_times.json").read_text())
        n_figures = len(list((Path(tmp) / "figures" / "tiny").glob("*.png")))
        n_tables = len(list((Path(tmp) / "figures" / "tiny").glob("*.csv")))
    per_notebook: dict[str, dict] = {}
    for t in times["notebooks"]:
        entry = per_notebook.setdefault(t["notebook"], {"executions": 0, "seconds": 0.0, "peak_rss_mb": 0})
        entry["executions"] += 1
        entry["seconds"] = round(entry["seconds"] + t["wall_s"], 1)
        entry["peak_rss_mb"] = max(entry["peak_rss_mb"], t["peak_rss_mb"])
    peak = max([v["peak_rss_mb"] for v in per_notebook.values()]
               + [times["stages"].get("tiny world", {}).get("peak_rss_mb", 0)])
    stages = dict(times["stages"])
    accounted = sum(v["seconds"] for v in stages.values())
    stages["other (kernel start-up, loading, analysis, figures)"] = {"seconds": round(wall - accounted, 1)}
    result = {"total_seconds": round(wall, 1), "world_built": not args.keep_world, "peak_rss_mb": peak,
              "by_stage": stages, "by_notebook": per_notebook, "figures_png": n_figures,
              "tables_csv": n_tables, "failed": [t["notebook"] for t in times["notebooks"] if t["status"] != "ok"],
              "machine": machine_info()}
    print(json.dumps(result, indent=1))
    merge_results("reproduce", result)
    write_section(result)


BEGIN = "<!-- reproduce:begin (written by benchmarks/bench_reproduce.py from its run; do not edit) -->"
END = "<!-- reproduce:end -->"


def section(r: dict) -> str:
    """The RESULTS.md section of one run (what main() measured): the totals, then by stage and by notebook."""
    m = r["machine"]
    world = "the tiny world built" if r["world_built"] else "the tiny world cached"
    executions = sum(n["executions"] for n in r["by_notebook"].values())
    failed = "nothing failed" if not r["failed"] else "failed: " + ", ".join(r["failed"])
    lines = [f"Measured {m['date']} at commit {m['commit']} ({m['cpu_count']} cores, {m['processor']}; torch "
             f"{m['torch']}): `vd reproduce --size tiny` from nothing ({world}), fresh runs and figures folders. "
             f"**{r['total_seconds']:.0f} s ({r['total_seconds'] / 60:.1f} minutes), peak memory "
             f"{r['peak_rss_mb']:,} MB**, {executions} notebook executions, {r['figures_png']} figures, "
             f"{r['tables_csv']} tables, {failed}.",
             "", "| stage | wall time |", "|---|---|"]
    lines += [f"| {k} | {v['seconds']:.0f} s |" for k, v in r["by_stage"].items()]
    lines += ["", "| notebook | executions | wall time | peak memory (kernel + vd reproduce) |", "|---|---|---|---|"]
    lines += [f"| `{k}` | {v['executions']} | {v['seconds']:.0f} s | {v['peak_rss_mb']:,} MB |"
              for k, v in r["by_notebook"].items()]
    return "\n".join(lines)


def write_section(result: dict, path: Path = ROOT / "benchmarks" / "RESULTS.md") -> None:
    from vd.core.io import atomic_write_text

    head, begin, rest = path.read_text(encoding="utf-8").partition(BEGIN)
    _, end, tail = rest.partition(END)
    if begin and end:
        atomic_write_text(path, f"{head}{BEGIN}\n{section(result)}\n{END}{tail}")


if __name__ == "__main__":
    main()
