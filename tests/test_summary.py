"""The results summary `vd reproduce` writes, and `vd publish`: numbers read from the notebooks' records,
never typed; the README's results block is the summary's excerpt."""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path

import nbformat
import pytest
from PIL import Image

from vd.study import summary

ROOT = Path(__file__).resolve().parent.parent


def drift(m: dict) -> dict:
    """A drift_record with overall M (and CIs of ±0.03) per stance."""
    return {"M": {"overall": m}, "M_ci_low": {"overall": {s: v - 0.03 for s, v in m.items()}},
            "M_ci_high": {"overall": {s: v + 0.03 for s, v in m.items()}}}


def write_records(figures: Path) -> None:
    figures.mkdir(parents=True)
    controls = [{"algo": a, "setting": s, "M": m, "ci_low": m - 0.03, "ci_high": m + 0.03, "verdict": v,
                 "requirement": "", "run": "x"}
                for a, s, m, v in (("ppo", "support", 0.13, "reported"), ("ppo", "oppose", 0.21, "reported"),
                                   ("dpo", "support", 0.18, "passes"), ("dpo", "oppose", 0.31, "passes"),
                                   ("simpo", "support", 0.18, "passes"), ("simpo", "oppose", 0.3, "passes"))]
    records = {
        "06_paper_tables": {"alpaca": {"params": {"size": "tiny"}, "budget_note": "probe budget vs paper: 20/50",
                                       "controls": controls, "comparison": [{}] * 18,
                                       "verdicts": {"agrees": 8, "differs": 7, "not resolved": 2, "n/a": 1}}},
        "01_sft_drift": {d: {"params": {"sft_data": d}, "sft": drift(m)} for d, m in (
            ("wildchat", {"support": -0.1, "neutral": 0.41, "oppose": -0.31}),
            ("alpaca", {"support": 0.22, "neutral": -0.05, "oppose": -0.17}))},
        "02_preference_drift": {f"{a}-uf": {"run": drift({"support": 0.004, "neutral": -0.012, "oppose": 0.008})}
                                for a in ("ppo", "dpo", "simpo")},
        "07_capabilities": {"all": {"verdict": {"kept": False, "n_pairs": 14, "n_lost": 2, "worst": None}}},
    }
    for name, data in records.items():
        (figures / f"{name}.json").write_text(json.dumps(data))


def test_the_summary_reads_every_number_from_the_records(tmp_path):
    write_records(tmp_path / "figures")
    s = summary.write_summary(tmp_path / "figures", tmp_path, {"total_s": 780.0,
                                                               "notebooks": [{"peak_rss_mb": 1536}]})
    assert s["sft"]["wildchat"] == pytest.approx({"stance": "neutral", "M": 0.41, "low": 0.38, "high": 0.44})
    assert s["sft"]["alpaca"]["stance"] == "support" and s["standard_max_abs_M"] == 0.012
    assert s["commit"] == "unknown"  # tmp_path is no git checkout
    text = summary.excerpt(s)
    assert "**Positive controls pass**" in text
    assert "DPO +0.18 [0.15, 0.21] (support) and +0.31 [0.28, 0.34] (oppose)" in text
    assert "wildchat-like → neutral +0.41 [0.38, 0.44]" in text and "at most 0.01 overall (3 runs)" in text
    assert "18 claims**: 8 agree, 7 differ, 2 not resolved, 1 n/a" in text
    assert "lost in 2 of 14 stage × task pairs" in text and "13 min on " in text and "peak 1.5 GB" in text
    assert s["machine"] in text and f"{os.cpu_count()} cores" in s["machine"]  # numbers say where they came from
    assert "13 min on this machine" in summary.excerpt({**s, "machine": None})  # a summary from before the field
    assert json.loads((tmp_path / "figures" / "summary.json").read_text()) == s
    assert text in (tmp_path / "figures" / "summary.md").read_text()


def test_a_missing_record_is_one_line_naming_it(tmp_path):
    write_records(tmp_path / "figures")
    (tmp_path / "figures" / "07_capabilities.json").unlink()
    with pytest.raises(summary.SummaryError, match=r"07_capabilities.json: not recorded; run the notebook "
                                                   r"\(vd reproduce --only 07\)"):
        summary.summarize(tmp_path / "figures", tmp_path)


def test_publish_copies_the_summary_notebooks_and_figure_and_rewrites_the_readme_block(tmp_path):
    figures, executed = tmp_path / "figures", tmp_path / "executed"
    write_records(figures)
    summary.write_summary(figures, tmp_path)
    small = io.BytesIO()
    Image.new("RGB", (300, 200), (20, 30, 200)).save(small, format="PNG")
    (figures / summary.README_FIGURE).write_bytes(small.getvalue())
    executed.mkdir()
    big = io.BytesIO()
    Image.new("RGB", (2000, 1000), (200, 30, 30)).save(big, format="PNG")
    figure = nbformat.v4.new_output("display_data", data={"image/png": base64.b64encode(big.getvalue()).decode()})
    for stem in summary.PUBLISHED.values():
        cell = nbformat.v4.new_code_cell("1 + 1", outputs=[figure])
        nbformat.write(nbformat.v4.new_notebook(cells=[cell]), executed / f"{stem}.ipynb")
    (tmp_path / "README.md").write_text(f"# x\n\n{summary.README_BEGIN}\nold numbers\n{summary.README_END}\n\n"
                                        f"{summary.PLAN_BEGIN}\nold plan\n{summary.PLAN_END}\n\nrest\n")
    out = summary.publish("tiny", tmp_path, figures, executed, readme=True)
    readme = (tmp_path / "README.md").read_text()
    s = json.loads((out / "summary.json").read_text())
    assert f"{summary.README_BEGIN}\n{summary.excerpt(s)}\n{summary.README_END}" in readme
    assert "old numbers" not in readme and readme.endswith("\n\nrest\n")
    assert f"{summary.PLAN_BEGIN}\n{summary.plan_table()}\n{summary.PLAN_END}" in readme
    nb = nbformat.read(out / "03_value_gap.ipynb", as_version=4)
    assert "at commit `unknown`" in nb.cells[0].source and nb.cells[1].source == "1 + 1"
    shown = Image.open(io.BytesIO(base64.b64decode(nb.cells[1].outputs[0]["data"]["image/png"])))
    assert shown.size == (summary.PUBLISHED_WIDTH, summary.PUBLISHED_WIDTH // 2)  # read on a page: smaller
    assert Image.open(out / "sft-trajectories.png").size == (300, 200)
    with pytest.raises(summary.SummaryError, match="no block"):
        summary.replace_block("# no markers\n", "x")


def test_the_readme_shows_what_the_last_reproduction_and_the_params_give():
    """The README's results block is the excerpt of the committed docs/tiny/summary.json, and its cost
    table is what `vd plan` gives for today's params: neither is typed by hand (`vd publish` writes both)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    s = json.loads((ROOT / "docs" / "tiny" / "summary.json").read_text())
    assert f"{summary.README_BEGIN}\n{summary.excerpt(s)}\n{summary.README_END}" in readme, "run `vd publish`"
    assert f"{summary.PLAN_BEGIN}\n{summary.plan_table()}\n{summary.PLAN_END}" in readme, "run `vd publish`"
    for name in summary.PUBLISHED:
        nb = nbformat.read(ROOT / "docs" / "tiny" / f"{name}.ipynb", as_version=4)
        assert f"at commit `{s['commit']}`" in nb.cells[0].source


def test_the_readme_stays_short_and_the_licence_and_citation_match_the_package():
    """A README a newcomer reads to the end (details live in docs/usage.md and CONTRIBUTING.md), and the
    licence and citation files saying what pyproject.toml says."""
    import tomllib

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 150
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert (ROOT / "LICENSE").read_text().startswith(f"{project['license']} License")
    citation = (ROOT / "CITATION.cff").read_text()
    assert f"license: {project['license']}" in citation and f"version: {project['version']}" in citation
    assert "2510.26707" in citation
