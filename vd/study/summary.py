"""The results of a `vd reproduce`, summarised from what its notebooks recorded (`figures/<size>/*.json`),
and published where a reader sees them without running anything: `docs/<size>/` (the summary, the executed
notebooks, the README's figure) and, for the tiny size, the README's results block. Numbers in the README
come from here, never from a hand.

    vd reproduce --size tiny     # ends by writing figures/tiny/summary.json and summary.md
    vd publish --size tiny       # copies them, the executed notebooks and the figure to docs/tiny/
"""

from __future__ import annotations

import base64
import io
import json
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path

from vd.core.io import atomic_write_json, atomic_write_text
from vd.core.stances import STANCES

README_BEGIN = "<!-- results:begin (written by `vd publish` from docs/tiny/summary.json; do not edit) -->"
README_END = "<!-- results:end -->"
PLAN_BEGIN = "<!-- plan:begin (written by `vd publish` from `vd plan`; do not edit) -->"
PLAN_END = "<!-- plan:end -->"
README_FIGURE = "01_sft_drift-alpaca-trajectories.png"  # what the README shows: SFT on the Alpaca-like data
PUBLISHED = {"00_probes": "00_probes", "01_sft_drift": "01_sft_drift-alpaca",
             "02_preference_drift": "02_preference_drift-dpo-ultrafeedback", "03_value_gap": "03_value_gap-dpo-oppose",
             "04_dataset_value_gap": "04_dataset_value_gap", "05_ablations": "05_ablations",
             "06_paper_tables": "06_paper_tables", "07_capabilities": "07_capabilities"}


class SummaryError(FileNotFoundError):
    """What a summary needs was not recorded (a notebook did not run or failed): one line naming it."""


def commit(root: Path) -> str:
    """The checkout's commit, with "+changes" where files differ from it; "unknown" outside a git checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], cwd=root, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+changes" if dirty else "")


def machine() -> str:
    """The CPU, its cores and torch's version: the tiny numbers are bitwise stable on one machine, not across
    CPUs with other vector kernels, so a summary names where it was computed."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        from importlib.metadata import version
        torch = f", torch {version('torch')}"
    except Exception:
        torch = ""
    return f"{cpu}, {os.cpu_count()} cores{torch}"


def _record(figures: Path, notebook: str) -> dict:
    path = figures / f"{notebook}.json"
    if not path.is_file():
        raise SummaryError(f"{path}: not recorded; run the notebook (vd reproduce --only {notebook[:2]}) first")
    return json.loads(path.read_text())


def _m(record: dict, topic: str, stance: str) -> dict:
    return {k: record[c][topic][stance] for k, c in (("M", "M"), ("low", "M_ci_low"), ("high", "M_ci_high"))}


def summarize(figures: Path, root: Path, times: dict | None = None) -> dict:
    """The study's key numbers from its notebooks' records in `figures` (a figures/<size>/ folder)."""
    paper = next(iter(_record(figures, "06_paper_tables").values()))
    sft = _record(figures, "01_sft_drift")
    preference = _record(figures, "02_preference_drift")
    capabilities = next(iter(_record(figures, "07_capabilities").values()))
    shifts = {}
    for entry in sft.values():
        data, drift = entry["params"]["sft_data"], entry["sft"]
        stance = max(STANCES, key=lambda s: drift["M"]["overall"][s])
        shifts[data] = {"stance": stance, **_m(drift, "overall", stance)}
    standard = [abs(e["run"]["M"]["overall"][s]) for e in preference.values() for s in STANCES]
    return {
        "size": paper["params"]["size"], "commit": commit(root), "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "budget": paper["budget_note"],
        "seconds": times and times.get("total_s"), "peak_mb": times and max(
            (n["peak_rss_mb"] for n in times.get("notebooks", [])), default=None),
        "controls": [{k: c[k] for k in ("algo", "setting", "M", "ci_low", "ci_high", "verdict")}
                     for c in paper["controls"]],
        "verdicts": paper["verdicts"], "n_claims": len(paper["comparison"]),
        "sft": shifts, "standard_max_abs_M": max(standard) if standard else None,
        "n_standard_runs": len(preference),
        "capabilities": capabilities["verdict"],
    }


def _ci(x: dict) -> str:
    return f"{x['M']:+.2f} [{x['low']:.2f}, {x['high']:.2f}]"


def excerpt(s: dict) -> str:
    """The README's results block (a few lines; the whole summary is docs/<size>/summary.md)."""
    controls = {(c["algo"], c["setting"]): c for c in s["controls"]}
    algos = list(dict.fromkeys(c["algo"] for c in s["controls"]))
    failed = [c for c in s["controls"] if c["verdict"] == "FAILS"]

    def moves(algo):
        return " and ".join(f"{_ci({'M': c['M'], 'low': c['ci_low'], 'high': c['ci_high']})} ({setting})"
                            for setting in ("support", "oppose") if (c := controls.get((algo, setting))))

    plural = {"agrees": "agree", "differs": "differ"}  # "7 agree, 7 differ, 3 not resolved at this budget"
    verdicts = ", ".join(f"{n} {plural.get(v, v)}" for v, n in sorted(s["verdicts"].items(), key=lambda kv: -kv[1]))
    cap = s["capabilities"]
    kept = ("kept by every stage" if cap["kept"] else
            f"lost in {cap['n_lost']} of {cap['n_pairs']} stage × task pairs" if cap["kept"] is False else "not tested")
    when = f"commit `{s['commit']}`, {s['date']}"
    where = s.get("machine") or "this machine"  # summaries before the field was recorded
    cost = (f"; {s['seconds'] / 60:.0f} min on {where}, peak {s['peak_mb'] / 1024:.1f} GB"
            if s.get("seconds") and s.get("peak_mb") else "")
    lines = [
        f"From `vd reproduce --size {s['size']}` ({when}{cost}); {s['budget']}.",
        "",
        f"- **Positive controls {'pass' if not failed else 'FAIL'}**: on synthetic pairs of opposite stances the "
        "chosen stance moves under " + "; ".join(f"{a.upper() if a != 'simpo' else 'SimPO'} {moves(a)}"
                                                 for a in algos) + ".",
        "- **SFT** sets values after its data: " + ", ".join(
            f"{d}-like → {v['stance']} {_ci(v)}" for d, v in s["sft"].items()) + ".",
        f"- **Standard preference data** (pairs sharing a stance) move values by at most "
        f"{s['standard_max_abs_M']:.2f} overall ({s['n_standard_runs']} runs).",
        f"- **The paper's {s['n_claims']} claims**: {verdicts} (notebook 06, [docs/{s['size']}/06_paper_tables.ipynb]"
        f"(docs/{s['size']}/06_paper_tables.ipynb)).",
        f"- **Capabilities** (the tiny world's topic task): {kept}.",
    ]
    return "\n".join(lines)


def summary_markdown(s: dict) -> str:
    """docs/<size>/summary.md: the excerpt, then every control and verdict count."""
    rows = "\n".join(f"| {c['algo']} | {c['setting']} | {c['M']:+.3f} | [{c['ci_low']:.3f}, {c['ci_high']:.3f}] "
                     f"| {c['verdict']} |" for c in s["controls"])
    return (f"# What `vd reproduce --size {s['size']}` gave\n\n{excerpt(s)}\n\n## Positive controls\n\n"
            "| algorithm | setting | M (chosen stance, overall) | 95% CI | verdict |\n|---|---|---|---|---|\n"
            f"{rows}\n\nWritten by `vd reproduce` from the notebooks' records; `summary.json` holds the same.\n")


def write_summary(figures: Path, root: Path, times: dict | None = None) -> dict:
    """figures/<size>/summary.json and summary.md (what `vd reproduce` ends with)."""
    s = summarize(figures, root, times)
    atomic_write_json(s, figures / "summary.json")
    atomic_write_text(figures / "summary.md", summary_markdown(s))
    return s


def plan_table() -> str:
    """The README's table of what the whole study costs at each real size (`vd plan`, estimates)."""
    from vd import world
    from vd.core.config import available_sizes, load_config
    from vd.study.plan import plan

    lines = ["| size | sized for | runs | checkpoints | generations | API (GPT-4o judge) | disk | GPU hours |",
             "|---|---|---|---|---|---|---|---|"]
    cuts: list[str] = []
    for size in available_sizes():
        cfg = load_config(size)
        if world.uses_world(cfg):
            continue
        p = plan(cfg, cuts=True)
        t, card = p["totals"], p["target_gpu"]
        lines.append(f"| `{size}` | {card} | {t['runs']} + {t['reward models']} reward models | {t['checkpoints']:,} "
                     f"| {p['scoring']['generations']:,} | ${p['usd']:,.0f} | {p['disk_gb']['total']:,.0f} GB "
                     f"| {p['gpu_hours'][card]['hours']:,.0f} h on the {card} ({p['gpu_hours'][card]['basis']}) |")
        if not cuts:
            cuts = ["| size | " + " | ".join(label.split(" (")[0] for label in p["cuts"]) + " |",
                    "|---|" + "---|" * len(p["cuts"])]
        cuts.append(f"| `{size}` | " + " | ".join(f"${c['usd']:,.0f}, {c['hours'][card]:,.0f} h"
                                                   for c in p["cuts"].values()) + " |")
    intro = "How to cut it (each alone; API cost and GPU hours on the card it is sized for):"
    return "\n".join(lines) + f"\n\n{intro}\n\n" + "\n".join(cuts)


def replace_block(readme: str, block: str, begin_marker: str = README_BEGIN, end_marker: str = README_END) -> str:
    """`readme` with the text between a pair of its markers replaced by `block`."""
    head, begin, rest = readme.partition(begin_marker)
    _, end, tail = rest.partition(end_marker)
    if not begin or not end:
        raise SummaryError(f"README.md: no block ({begin_marker} ... {end_marker}) to write into")
    return f"{head}{begin_marker}\n{block}\n{end_marker}{tail}"


PUBLISHED_WIDTH = 900  # pixels: a figure in a published notebook is read on a page, not printed


def small_png(data: str, width: int = PUBLISHED_WIDTH) -> str:
    """A base64 PNG at most `width` pixels wide, in 256 colours (the published notebooks stay small)."""
    from PIL import Image

    image = Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")
    if image.width > width:
        image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
    out = io.BytesIO()
    image.quantize(colors=256).save(out, format="PNG", optimize=True)
    return base64.b64encode(out.getvalue()).decode()


def publish(size: str, root: Path, figures: Path, executed: Path, readme: bool = False) -> Path:
    """Copy the summary, one executed notebook per notebook (its default parameters, with the commit named)
    and the README's figure to docs/<size>/; with `readme` (the shipped tiny study) rewrite the README's
    results and cost blocks."""
    import nbformat

    s = json.loads((figures / "summary.json").read_text()) if (figures / "summary.json").is_file() else None
    if s is None:
        raise SummaryError(f"{figures / 'summary.json'}: not written; run `vd reproduce --size {size}` first")
    out = root / "docs" / size
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(figures / "summary.json", out / "summary.json")
    atomic_write_text(out / "summary.md", summary_markdown(s))  # in this vd's words, from the same numbers
    for notebook, stem in PUBLISHED.items():
        source = executed / f"{stem}.ipynb"
        if not source.is_file():
            raise SummaryError(f"{source}: no executed notebook; run `vd reproduce --size {size}` first")
        nb = nbformat.read(source, as_version=4)
        for cell in nb.cells:
            for output in cell.get("outputs", []):
                if "image/png" in output.get("data", {}):
                    output["data"]["image/png"] = small_png(output["data"]["image/png"])
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(
            f"*Executed by `vd reproduce --size {size}` at commit `{s['commit']}` on {s['date']}; "
            f"the source is `notebooks/{notebook}.ipynb`.*"))
        nbformat.write(nb, out / f"{notebook}.ipynb")
    figure = base64.b64encode((figures / README_FIGURE).read_bytes()).decode()
    (out / "sft-trajectories.png").write_bytes(base64.b64decode(small_png(figure, width=1200)))
    if readme:
        path = root / "README.md"
        text = replace_block(path.read_text(encoding="utf-8"), excerpt(s))
        atomic_write_text(path, replace_block(text, plan_table(), PLAN_BEGIN, PLAN_END))
    return out
