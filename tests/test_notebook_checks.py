"""What a notebook checks and says before it trains, without executing one (tests/test_notebooks.py executes
them): parameters coerced to their annotations or refused in one line, user errors shown as that line in a
kernel, the runs it will train listed from the datasets the params name, the tiny world's readings only at
tiny, the libraries' noise silenced, the stage-time log robust to damage, the synthetic build's progress."""

from __future__ import annotations

import ast
import json
import re
import time
from pathlib import Path

import nbformat
import pytest

from vd.core.config import ConfigError, load_config
from vd.core.run import RunRecord
from vd.study import notebook as study
from vd.study import notes, params, schedule, timelog

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


# --- parameters ------------------------------------------------------------------------------------


def test_bools_ints_and_choices_are_coerced_or_refused_in_one_line():
    for text in ("false", "False", "0", "no", " FALSE "):
        assert params.check_value("smoke", text) is False
    for text in ("true", "True", "1", "yes"):
        assert params.check_value("smoke", text) is True
    assert params.check_value("smoke", 0) is False and params.check_value("include_ablations", True) is True
    with pytest.raises(params.ParameterError, match=r"^parameter smoke: expected true or false .*, got 'maybe'$"):
        params.check_value("smoke", "maybe")
    assert params.check_value("max_pairs", "12") == 12 and params.check_value("max_pairs", 3.0) == 3
    with pytest.raises(params.ParameterError,
                       match=r"^parameter max_pairs: expected an integer >= 0 \(0: all\), got -5$"):
        params.check_value("max_pairs", -5)
    with pytest.raises(params.ParameterError, match=r"^parameter max_pairs: expected an integer, got 'ten'$"):
        params.check_value("max_pairs", "ten")
    with pytest.raises(params.ParameterError, match=r"^parameter max_pairs: expected an integer, got True$"):
        params.check_value("max_pairs", True)
    with pytest.raises(params.ParameterError, match=r"^parameter algo: expected one of ppo, dpo, simpo, got 'rlhf'$"):
        params.check_value("algo", "rlhf")
    with pytest.raises(params.ParameterError, match=r"^parameter algos: expected 'all' or a comma-separated"):
        params.check_value("algos", "dpo,kto")
    with pytest.raises(params.ParameterError, match=r"^parameter datasets: 'alpaca' is not a preference dataset"):
        params.check_value("datasets", "hh-rlhf, alpaca")
    assert params.check_value("runs_dir", 2024) == "2024"  # papermill reads `-p runs_dir 2024` as a number
    with pytest.raises(params.ParameterError, match=r"^parameter figures_dir: expected text, got None$"):
        params.check_value("figures_dir", None)
    assert isinstance(params.ParameterError("x"), ConfigError)


def test_check_parameters_coerces_a_notebooks_namespace_in_place_by_its_annotations():
    namespace = {"__annotations__": {"size": str, "smoke": bool, "max_pairs": int, "mine": float},
                 "size": "tiny", "smoke": "false", "max_pairs": "5", "mine": "0.5", "other": "untouched"}
    checked = params.check_parameters(namespace)
    assert namespace["smoke"] is False and namespace["max_pairs"] == 5 and namespace["mine"] == 0.5
    assert checked == {"size": "tiny", "smoke": False, "max_pairs": 5, "mine": 0.5}
    assert namespace["other"] == "untouched"
    with pytest.raises(params.ParameterError, match="parameter max_pairs"):
        params.check_parameters({"__annotations__": {"max_pairs": int}, "max_pairs": -5})
    # without annotations (a Python that defers them) the declared types still apply
    namespace = {"smoke": "0", "algo": "dpo"}
    params.check_parameters(namespace)
    assert namespace["smoke"] is False


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_parameter_is_declared_as_the_checks_expect(path):
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    for node in ast.parse(cell.source).body:
        assert node.target.id in params.SPEC, f"{path.stem}: {node.target.id} has no entry in vd.study.params.SPEC"
        assert ast.unparse(node.annotation) == params.SPEC[node.target.id].kind.__name__
        value = ast.literal_eval(node.value)
        assert params.check_value(node.target.id, value) == value  # every default passes its own check
    setup = nb.cells[4].source
    assert "vd.check_parameters(globals())" in setup.splitlines()[-5] or "vd.check_parameters(globals())" in setup
    assert setup.index("vd.check_parameters") < setup.index("vd.setup(") < setup.index("vd.schedule.check(")


def test_user_errors_show_as_one_line_in_a_kernel_and_others_keep_their_traceback(capsys):
    """IPython's custom exception handler: a ConfigError (or any of vd's user errors) is the one line
    `error: ...` and the cell still fails; a bug of ours still shows where it happened."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        assert params.show_errors_as_one_line()
        result = shell.run_cell("from vd.core.config import ConfigError\nraise ConfigError('parameter x: bad')")
        out = capsys.readouterr().out
        assert not result.success and isinstance(result.error_in_exec, ConfigError)
        assert out.strip() == "error: parameter x: bad"
        result = shell.run_cell("def inner():\n    raise RuntimeError('a bug')\ninner()")
        out = re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out)
        assert not result.success and "inner()" in out and "RuntimeError: a bug" in out and len(out.splitlines()) > 5
    finally:
        InteractiveShell.clear_instance()
    assert params.show_errors_as_one_line() is False  # outside a kernel: nothing to install


# --- the runs a notebook trains ----------------------------------------------------------------------


def _study(tmp_path, notebook, params_=None, overrides=""):
    return study.setup("tiny", notebook=notebook, params=params_ or {}, overrides=overrides, smoke=True,
                       runs_dir=str(tmp_path / "runs"), figures_dir=str(tmp_path / "figures"))


def _names(s, **kw):
    return [s.run_name(p.stage, p.data, p.sft_data, dict(p.overrides) or None)[1]
            for p in schedule.notebook_runs(s, **kw)]


def test_each_notebook_lists_the_runs_it_trains_from_the_datasets_the_params_name(tmp_path):
    s = _study(tmp_path, "01_sft_drift", {"sft_data": "alpaca"})
    assert _names(s) == ["sft-wildchat", "sft-alpaca"]
    s = _study(tmp_path, "01_sft_drift", {"sft_data": "alpaca"}, overrides="data.sft.wildchat=null")
    assert _names(s) == ["sft-alpaca"]
    s = _study(tmp_path, "03_value_gap", {"algo": "simpo", "setting": "oppose", "sft_data": "alpaca"})
    assert _names(s) == ["sft-alpaca", "simpo-synthetic-support-from-sft-alpaca",
                         "simpo-synthetic-oppose-from-sft-alpaca"]
    s = _study(tmp_path, "05_ablations", {"ablation_data": "synthetic-support", "sft_data": "alpaca"})
    names = _names(s)
    assert len(names) == 1 + 9 and "dpo-synthetic-support-from-sft-alpaca-beta0.05" in names
    assert "dpo-synthetic-support-from-sft-alpaca" in names  # the 1x values are the main runs
    s = _study(tmp_path, "06_paper_tables", {"sft_data": "alpaca"}, overrides="data.preference.hh-rlhf=null")
    names = _names(s, include_ablations=False, include_capabilities=False)
    assert names[:2] == ["sft-wildchat", "sft-alpaca"] and not any("hh-rlhf" in n for n in names)
    assert len(names) == 2 + 3 + 6  # SFT, each algorithm on ultrafeedback, each on both synthetic sets
    assert len(_names(s)) == 2 + 3 + 6 + 6  # and the ablations' non-default runs
    s = _study(tmp_path, "07_capabilities", {"sft_data": "alpaca", "algos": "dpo"})
    assert _names(s, algos="dpo") == ["sft-wildchat", "sft-alpaca", "dpo-ultrafeedback-from-sft-alpaca",
                                      "dpo-hh-rlhf-from-sft-alpaca", "dpo-synthetic-support-from-sft-alpaca",
                                      "dpo-synthetic-oppose-from-sft-alpaca"]
    assert _names(_study(tmp_path, "00_probes")) == []


def test_check_lists_the_runs_says_what_it_skips_once_and_refuses_a_removed_dataset(tmp_path, capsys, monkeypatch):
    s = _study(tmp_path, "01_sft_drift", {"sft_data": "alpaca"}, overrides="data.sft.wildchat=null")
    monkeypatch.setattr(study.Study, "preflight",
                        lambda self, stages=(), synthetic=False: calls.append((stages, synthetic)))
    calls: list = []
    run_dir = s.runs_dir / "tiny" / "sft-alpaca"
    run_dir.mkdir(parents=True)
    RunRecord(root=run_dir, stage="sft", data="alpaca", size="tiny", total_steps=4, complete=True).write()
    capsys.readouterr()
    assert [p.data for p in schedule.check(s)] == ["alpaca"]
    out = capsys.readouterr().out
    assert "runs this notebook uses: 1 (complete: 1, to train or finish: 0)" in out
    assert "sft-alpaca (exists)" in out and out.count("skipped, as the params remove them: data.sft.wildchat") == 1
    assert calls == [([], False)]  # nothing left to train: no stage's GPU fit to check
    s = _study(tmp_path, "01_sft_drift", {"sft_data": "wildchat"}, overrides="data.sft.wildchat=null")
    with pytest.raises(params.ParameterError, match=r"^parameter sft_data: 'wildchat' is not among the sft datasets "
                                                    r"of size tiny .*; expected one of alpaca$"):
        schedule.check(s)
    s = _study(tmp_path, "02_preference_drift", {"algo": "dpo", "pref_data": "hh-rlhf", "sft_data": "alpaca"},
               overrides="data.preference.hh-rlhf=null")
    with pytest.raises(params.ParameterError, match=r"^parameter pref_data: 'hh-rlhf' is not among"):
        schedule.check(s)
    s = _study(tmp_path, "03_value_gap", {"algo": "dpo", "setting": "support", "sft_data": "alpaca"})
    built: list = []
    monkeypatch.setattr(study.Study, "synthetic_pairs", lambda self, setting: built.append((setting, calls[-1])))
    schedule.check(s)
    assert calls[-1] == (["dpo"], True) and "dpo-synthetic-oppose-from-sft-alpaca (to train)" in capsys.readouterr().out
    # the shared pairs are built after the preflight and before any run trains, once per setting
    assert built == [("support", (["dpo"], True)), ("oppose", (["dpo"], True))]


def test_a_judge_that_cannot_tell_stances_apart_is_refused_before_anything_trains(tmp_path, monkeypatch):
    """p = 1/3 everywhere: the judge check refuses it in the notebook's preflight (one line), not after a run
    trained and its answers were generated; a sighted judge's check is cached, so scoring's is free."""
    from vd.judge import JudgeCannotTell, Judgment, LexiconJudge
    from vd.judge.sanity import LABELLED_EXAMPLES
    from vd.score import scoring

    class Flat:
        key, calls = "flat", 0

        def judge(self, items, progress=False, on_result=None):
            Flat.calls += len(items)
            return [Judgment((1 / 3,) * 3, "ok") for _ in items]

    trained: list = []
    monkeypatch.setattr(study, "train_stage", lambda *a, **k: trained.append(a))
    monkeypatch.setattr(scoring, "make_judge", lambda *a, **k: Flat())
    s = _study(tmp_path, "01_sft_drift", {"sft_data": "alpaca"})
    with pytest.raises(JudgeCannotTell) as e:
        schedule.check(s)
    assert "\n" not in str(e.value) and str(e.value).startswith("judge flat: accuracy")
    assert trained == [] and Flat.calls == len(LABELLED_EXAMPLES)

    class Counted(LexiconJudge):
        calls = 0

        def judge(self, items, progress=False, on_result=None):
            Counted.calls += len(items)
            return super().judge(items, progress, on_result)

    monkeypatch.setattr(scoring, "make_judge", lambda *a, **k: Counted())
    s.preflight(stages=["sft"])
    with scoring.default_store(s.cfg, s.runs_dir) as store:
        scoring.build_judge(s.cfg, store)  # what score_run does: every example read back from the cache
    assert Counted.calls == len(LABELLED_EXAMPLES) and trained == []


# --- what the notebooks say ------------------------------------------------------------------------


def test_tiny_world_readings_appear_only_at_tiny():
    tiny, real = load_config("tiny"), load_config("llama3-3b")
    shown = set()
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "markdown":  # what holds at every size
                assert "In the tiny world" not in cell.source and "OPENAI_API_KEY" not in cell.source, path.stem
            for name in re.findall(r'vd\.notes\.show\(study, "(\w+)"\)', cell.source):
                shown.add(f"{path.stem}.{name}")
                assert notes.world_note(tiny, path.stem, name).startswith("**In the tiny world.** ")
                assert notes.world_note(real, path.stem, name) == ""
    assert shown == set(notes.TINY_WORLD)  # every reading is shown, none is missing
    assert "20 prompts per topic" in notes.world_note(tiny, "00_probes", "counts")


def test_the_setup_line_names_the_root_its_relative_paths_start_from(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(ROOT / "notebooks")
    monkeypatch.delenv("VD_RUNS_DIR", raising=False)
    monkeypatch.delenv("VD_FIGURES_DIR", raising=False)
    study.setup("tiny", notebook="00_probes")
    assert f"runs in runs/tiny, figures and tables in figures/tiny (relative paths: from the repository root {ROOT})" \
        in capsys.readouterr().out
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    study.setup(str(ROOT / "params" / "tiny.yaml"), notebook="00_probes")
    assert f"from the working folder {tmp_path / 'work'} (no checkout above it)" in capsys.readouterr().out


def test_notebooks_silence_loading_bars_and_unactionable_warnings_but_keep_the_rest(monkeypatch):
    import logging
    import os

    import huggingface_hub.utils
    from transformers.utils import logging as hf_logging

    from vd.study.quiet import DropUnactionable, quiet_notebook

    hf_logging.enable_progress_bar()
    monkeypatch.delenv("TRL_EXPERIMENTAL_SILENCE", raising=False)  # a kernel started without it
    quiet_notebook()
    assert os.environ["TRL_EXPERIMENTAL_SILENCE"] == "1"  # TRL reads it when training imports it
    assert not hf_logging.is_progress_bar_enabled()  # "Loading weights"
    assert not huggingface_hub.utils.are_progress_bars_disabled()  # a download still shows its progress
    handlers = logging.getLogger("transformers").handlers
    assert handlers and all(any(isinstance(f, DropUnactionable) for f in h.filters) for h in handlers)

    def passes(message):
        record = logging.LogRecord("transformers.generation.utils", logging.WARNING, __file__, 1, message, None, None)
        return all(h.filter(record) for h in handlers)

    assert not passes("Passing `generation_config` together with generation-related arguments=({'x'}) is deprecated")
    assert passes("The chat template does not include the assistant turn's end-of-turn token")


# --- the stage-time log -----------------------------------------------------------------------------


def test_a_damaged_stage_time_log_loses_only_its_damaged_lines(tmp_path, capsys):
    log = tmp_path / "stage_times.jsonl"
    entry = {"time": 20.0, "notebook": "01", "run": "sft-a", "stage": "sft", "train_s": 10.0, "score_s": 2.0}
    log.write_text(json.dumps(entry) + "\n" + '{"time": 21.0, "notebook": "02", "run": "dpo-x", "st')  # a kill mid-line
    timelog.append(log, {**entry, "time": 22.0, "stage": "dpo", "train_s": 5.0})  # starts on a fresh line
    with open(log, "a") as f:
        f.write("not json\n\n[1, 2]\n" + json.dumps({**entry, "train_s": "ten"}) + "\n")
    entries = timelog.read(log)
    assert [e["time"] for e in entries] == [20.0, 22.0]
    err = capsys.readouterr().err
    assert f"warning: {log}: skipped 4 damaged line(s) (2, 4, 6, 7)" in err
    from vd.study.reproduce import stage_breakdown

    assert stage_breakdown(log, since=0) == {"train sft": {"seconds": 10.0}, "scoring": {"seconds": 4.0},
                                             "train dpo": {"seconds": 5.0}}


def test_vd_reproduce_survives_a_damaged_stage_time_log(tmp_path, monkeypatch, capsys):
    import papermill

    from vd.study import reproduce

    def execute_notebook(source, out, parameters, **kw):  # a notebook that logs one run, then is killed mid-line
        log = tmp_path / "runs" / "tiny" / "stage_times.jsonl"
        study.Study._log_times(_study_for_log(tmp_path), "sft-alpaca", "sft", 3.0, 1.0)
        with open(log, "a") as f:
            f.write('{"time": ')
        Path(out).write_text("{}")

    monkeypatch.setattr(papermill, "execute_notebook", execute_notebook)
    monkeypatch.chdir(ROOT)
    for _ in range(2):  # the damage stays in the log: the next run reads past it too
        time.sleep(0.2)  # the log's times are rounded to 0.1 s: the second run must start after the first's entry
        assert reproduce.reproduce("tiny", only=["00"], runs_dir=str(tmp_path / "runs"),
                                   figures_dir=str(tmp_path / "figures")) == 0
    times = json.loads((tmp_path / "runs" / "tiny" / "reproduce_times.json").read_text())
    assert times["stages"]["train sft"]["seconds"] == 3.0
    assert "skipped 1 damaged line(s)" in capsys.readouterr().err


def _study_for_log(tmp_path):
    return study.setup("tiny", notebook="00_probes", runs_dir=str(tmp_path / "runs"),
                       figures_dir=str(tmp_path / "figures"))


@pytest.mark.slow
def test_two_processes_append_whole_lines(tmp_path):
    """O_APPEND and one write per line: lines of notebooks logging at once never interleave."""
    import subprocess
    import sys

    log = tmp_path / "stage_times.jsonl"
    code = ("import sys; from vd.study import timelog\n"
            "for i in range(300): timelog.append(sys.argv[1], {'time': float(i), 'stage': 'sft', 'train_s': 1.0, "
            "'score_s': 1.0, 'pad': 'x' * 500})")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(log)], cwd=ROOT) for _ in range(2)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    assert len(timelog.read(log)) == 600


# --- the synthetic build says how far it is -----------------------------------------------------------


def test_the_synthetic_build_reports_progress_per_batch_of_prompts(monkeypatch, capsys):
    from vd.data import synthetic

    class Judge:
        def judge(self, items):
            return [type("J", (), {"p": (0.9, 0.05, 0.05) if "support" in it.answer else (0.05, 0.05, 0.9),
                                   "status": "ok"})() for it in items]

    prompts = [{"prompt": f"Should {i} be allowed?", "topic": "immigration"} for i in range(60)]
    lines: list[str] = []
    res, _ = synthetic.build_synthetic_pairs(prompts, lambda q, t, s: f"I {s} this", Judge(), progress=lines.append)
    assert len(res.rows) == 60
    assert lines == ["synthetic-support: answers written for 25/60 prompts",
                     "synthetic-support: answers written for 50/60 prompts",
                     "synthetic-support: judged 25/60 written pairs", "synthetic-support: judged 50/60 written pairs",
                     "synthetic-support: judged 60/60 written pairs"]
    clock = iter([0.0, 3.0, 11.0, 11.0, 12.0, 30.0, 30.0])  # start, then the calls: printed when 10 s have passed
    monkeypatch.setattr(synthetic.time, "monotonic", lambda: next(clock))
    show = synthetic.progress_printer(min_interval_s=10.0)
    for message in ("a", "b", "c", "d"):
        show(message)
    assert capsys.readouterr().out == "b\nd\n"


def test_vd_reproduce_runs_no_execution_on_a_dataset_the_params_remove():
    from vd.study import reproduce

    cfg = load_config("tiny", {"data.sft.wildchat": None, "data.preference.hh-rlhf": None})
    jobs = reproduce.grid(cfg=cfg)
    assert ("01_sft_drift", {"sft_data": "alpaca"}) in jobs and ("01_sft_drift", {"sft_data": "wildchat"}) not in jobs
    assert [p for n, p in jobs if n == "02_preference_drift"] == [{"algo": a, "pref_data": "ultrafeedback"}
                                                                   for a in ("ppo", "dpo", "simpo")]
    assert len(jobs) == len(reproduce.grid()) - 1 - 3
