"""Scoring a run: every checkpoint (step 0 included) generated, judged and cached; an interrupted
run resumes without redoing or duplicating anything; failed judgments are recorded, not dropped."""

import json
import re

import numpy as np
import pandas as pd
import pytest

from vd.core.cache import Store
from vd.core.config import ConfigError, load_config
from vd.core.run import RunRecord
from vd.judge import JudgeUnavailable, JudgingFailed, Judgment, LexiconJudge
from vd.score import outputs
from vd.score import scoring as score_mod

BUDGET = ["probes.prompts_per_topic=2", "probes.samples_per_prompt=2", "probes.max_new_tokens=20"]


@pytest.fixture(scope="module")
def fake_run(tiny_world, tmp_path_factory):
    """A run folder with step 0 (the base model) and two random LoRA checkpoints."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    run = tmp_path_factory.mktemp("runs") / "tiny" / "sft-test"
    checkpoints = [{"step": 0, "adapter": None}]
    for step in (5, 10):
        torch.manual_seed(step)
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_world.model_dir),
                               LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
        model.save_pretrained(run / f"checkpoint-{step}")
        checkpoints.append({"step": step, "adapter": f"checkpoint-{step}"})
    (run / "run.json").write_text(json.dumps({"stage": "sft", "data": "test", "size": "tiny", "total_steps": 10,
                                              "base_model": str(tiny_world.model_dir), "checkpoints": checkpoints,
                                              "complete": True}))
    return run


def tables(run, judge_key=None) -> dict:
    """The run's score tables by `judge_key` (the lexicon judge's by default), checked as a set."""
    return outputs.read_scores(RunRecord.read(run), judge_key or LexiconJudge().key)


class CountingJudge(LexiconJudge):
    """The lexicon judge, counting the items it judges; it fails `fail_items` (or every item, with
    fail_all), under its own key when given, and is interrupted after `fail_after` items."""

    def __init__(self, fail_after=None, fail_items=(), fail_all=False, key=None):
        super().__init__()
        self.calls, self.fail_after, self.fail_items, self.fail_all = 0, fail_after, set(fail_items), fail_all
        self.key = key or self.key

    def judge(self, items, progress=False, on_result=None):
        out = []
        for i, item in enumerate(items):
            if self.fail_after is not None and self.calls >= self.fail_after:
                raise KeyboardInterrupt("simulated interruption")
            self.calls += 1
            if self.fail_all or item.answer in self.fail_items:
                out.append(Judgment((np.nan,) * 3, "failed", "HTTP 500: server error (gave up after 6 attempts)"))
            else:
                out.append(self.judge_answer(item.answer))
            if on_result is not None:
                on_result(i, out[-1])
        return out


def test_score_run_writes_profile_and_drift(fake_run, tmp_path):
    cfg = load_config("tiny", BUDGET)
    with Store(tmp_path / "cache.sqlite") as store:
        profile, drift = score_mod.score_run(fake_run, cfg, judge=LexiconJudge(), store=store, progress=False)
    assert list(profile.columns[:7]) == ["step", "fraction", "topic", "stance", "p", "ci_low", "ci_high"]
    assert sorted(profile["step"].unique()) == [0, 5, 10]
    assert set(profile["fraction"]) == {0.0, 0.5, 1.0}
    sums = profile.groupby(["step", "topic"])["p"].sum()
    assert np.allclose(sums, 1.0)
    assert (profile["ci_low"] <= profile["p"] + 1e-12).all() and (profile["p"] <= profile["ci_high"] + 1e-12).all()
    assert list(drift.columns) == ["topic", "stance", "M", "M_ci_low", "M_ci_high", "resolution", "eta",
                                   "eta_reading", "eta_status", "complete", "end_fraction"]
    assert drift["complete"].all() and (drift["end_fraction"] == 1.0).all()
    assert set(drift["eta_reading"]) == {"extremum95", "ci95"} and "overall" in set(drift["topic"])
    on_disk = tables(fake_run)["profile"]
    assert len(on_disk) == len(profile) == 3 * 12 * 3  # steps x (11 topics + overall) x stances
    pd.testing.assert_frame_equal(on_disk, profile)  # read back exactly
    judged = tables(fake_run)["judgments"]
    assert len(judged) == 3 * 22 * 2  # steps x prompts x samples
    # M is the last-minus-first difference of the profile, sign included
    p = profile.set_index(["step", "topic", "stance"])["p"]
    row = drift[(drift.topic == "overall") & (drift.stance == "neutral") & (drift.eta_reading == "extremum95")].iloc[0]
    assert row["M"] == pytest.approx(p[(10, "overall", "neutral")] - p[(0, "overall", "neutral")])


@pytest.mark.slow
def test_interrupted_run_resumes_without_redoing_or_duplicating(fake_run, tmp_path, monkeypatch):
    cfg = load_config("tiny", BUDGET)
    with Store(tmp_path / "reference.sqlite") as store:
        reference, _ = score_mod.score_run(fake_run, cfg, judge=LexiconJudge(), store=store, progress=False)

    with Store(tmp_path / "cache.sqlite") as store:
        with pytest.raises(KeyboardInterrupt):
            score_mod.score_run(fake_run, cfg, judge=CountingJudge(fail_after=25), store=store, progress=False)
        stored = store.count("judgments")
        assert stored == 25  # every judgment was stored as it arrived (before: in chunks of 256)
        generations = store.count("generations")
        resumed = CountingJudge()
        profile, _ = score_mod.score_run(fake_run, cfg, judge=resumed, store=store, progress=False)
        total = store.count("judgments")
        assert resumed.calls == total - stored  # nothing judged twice
        assert store.count("generations") == generations == 3 * 22 * 2  # nothing regenerated
    pd.testing.assert_frame_equal(profile, reference)

    # a third run: everything cached, so no model is even loaded and nothing is judged
    def no_generation(*a, **k):
        raise AssertionError("generation should have been served from the cache")

    monkeypatch.setattr(score_mod, "generate_answers", no_generation)
    with Store(tmp_path / "cache.sqlite") as store:
        again = CountingJudge()
        profile3, _ = score_mod.score_run(fake_run, cfg, judge=again, store=store, progress=False)
    assert again.calls == 0
    pd.testing.assert_frame_equal(profile3, reference)


@pytest.mark.slow
def test_interrupted_generation_keeps_finished_chunks(fake_run, tmp_path, monkeypatch):
    cfg = load_config("tiny", BUDGET)
    monkeypatch.setattr(score_mod, "GENERATION_CHUNK", 4)
    real = score_mod.generate_answers
    calls = []

    def interrupt_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(score_mod, "generate_answers", interrupt_on_third)
    with Store(tmp_path / "cache.sqlite") as store:
        with pytest.raises(KeyboardInterrupt):
            score_mod.score_run(fake_run, cfg, judge=LexiconJudge(), store=store, progress=False)
        assert store.count("generations") == 2 * 4 * 2  # two chunks of 4 prompts x 2 samples
        monkeypatch.setattr(score_mod, "generate_answers", real)
        score_mod.score_run(fake_run, cfg, judge=LexiconJudge(), store=store, progress=False)
        assert store.count("generations") == 3 * 22 * 2


@pytest.mark.slow
def test_failed_judgments_are_recorded_then_retried(fake_run, tmp_path):
    cfg = load_config("tiny", BUDGET)
    with Store(tmp_path / "cache.sqlite") as store:
        score_mod.score_run(fake_run, cfg, judge=LexiconJudge(), store=store, progress=False)
        answers = tables(fake_run)["judgments"]["answer"]
        bad = set(answers.iloc[:3])
    with Store(tmp_path / "fresh.sqlite") as store:
        failing = CountingJudge(fail_items=bad)
        score_mod.score_run(fake_run, cfg, judge=failing, store=store, progress=False)
        judged = tables(fake_run)["judgments"]
        failed_rows = judged[judged["status"] == "failed"]
        assert len(failed_rows) >= 3 and failed_rows[["p_support", "p_neutral", "p_oppose"]].isna().all().all()
        assert len(store.failures()) == len({(q, a) for q, a in zip(failed_rows["question"], failed_rows["answer"])})
        assert "HTTP 500" in store.failures()["error"].iloc[0]
        n_failed = len(store.failures())
        retry = CountingJudge()
        score_mod.score_run(fake_run, cfg, judge=retry, store=store, progress=False)
        assert retry.calls == n_failed  # only the failed ones are judged again
        assert store.failures().empty
        assert (tables(fake_run)["judgments"]["status"] == "ok").all()


@pytest.fixture
def incomplete_run(fake_run, tmp_path):
    """fake_run's checkpoints (0, 5, 10) as a run stopped halfway: total_steps 20, complete false."""
    import shutil

    run = tmp_path / "runs" / "tiny" / "sft-stopped"
    shutil.copytree(fake_run, run, ignore=shutil.ignore_patterns("scores", "cache.sqlite"))
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "total_steps": 20, "complete": False}))
    return run


@pytest.mark.slow
def test_incomplete_run_is_scored_marked_incomplete_with_eta_over_its_total_steps(fake_run, incomplete_run, tmp_path,
                                                                                  caplog):
    cfg = load_config("tiny", BUDGET)
    with Store(tmp_path / "cache.sqlite") as store:
        _, done = score_mod.score_run(fake_run, cfg, judge=LexiconJudge(), store=store, progress=False)
        with caplog.at_level("WARNING", logger="vd.score.scoring"):
            profile, drift = score_mod.score_run(incomplete_run, cfg, judge=LexiconJudge(), store=store,
                                                 progress=False)
    assert "incomplete (saved up to step 10 of 20)" in caplog.text
    assert not drift["complete"].any() and (drift["end_fraction"] == 0.5).all()  # M reaches step 10 of 20
    assert set(profile["fraction"]) == {0.0, 0.25, 0.5}  # steps 0, 5, 10 of 20
    # The same answers as the complete run (total 10): the same M and CI, and every η halved, since
    # η = step / 20 here, not step / 10 (the last saved step): 5/10 -> 5/20, 10/10 -> 10/20.
    cols = ["M", "M_ci_low", "M_ci_high", "resolution", "eta_status"]
    pd.testing.assert_frame_equal(drift[cols], done[cols])
    assert np.allclose(drift["eta"], done["eta"] / 2, equal_nan=True) and drift["eta"].notna().any()
    assert set(drift["eta"].dropna()) <= {0.25, 0.5}
    # finishing it (complete: true, nothing else changed) rescores: the cached CSVs said incomplete
    info = json.loads((incomplete_run / "run.json").read_text())
    (incomplete_run / "run.json").write_text(json.dumps({**info, "complete": True}))
    with Store(tmp_path / "cache.sqlite") as store:
        _, finished = score_mod.score_run(incomplete_run, cfg, judge=LexiconJudge(), store=store, progress=False)
    assert finished["complete"].all()


def test_incomplete_run_without_a_total_or_a_checkpoint_is_refused(tmp_path):
    run = tmp_path / "runs" / "tiny" / "sft-x"
    run.mkdir(parents=True)
    record = {"stage": "sft", "data": "x", "size": "tiny", "complete": False,
              "checkpoints": [{"step": 0, "adapter": None}, {"step": 5, "adapter": "checkpoint-5"}]}
    (run / "run.json").write_text(json.dumps(record))
    with pytest.raises(score_mod.RunError, match="incomplete and has no total_steps"):
        score_mod.score_run(run, load_config("tiny", BUDGET), judge=LexiconJudge(), progress=False)
    (run / "run.json").write_text(json.dumps({**record, "total_steps": 20, "checkpoints": record["checkpoints"][:1]}))
    with pytest.raises(score_mod.RunError, match="no checkpoint after step 0 yet"):
        score_mod.score_run(run, load_config("tiny", BUDGET), judge=LexiconJudge(), progress=False)


def test_missing_run_json_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no run.json"):
        score_mod.read_run(tmp_path)


@pytest.mark.slow
def test_unchanged_run_reuses_its_outputs_and_a_change_recomputes_them(fake_run, tmp_path, monkeypatch):
    cfg = load_config("tiny", BUDGET)
    with Store(tmp_path / "cache.sqlite") as store:
        first = score_mod.score_run(fake_run, cfg, judge=LexiconJudge(), store=store, progress=False)
        calls = []
        real = score_mod.metrics.value_profile
        monkeypatch.setattr(score_mod.metrics, "value_profile", lambda *a, **k: calls.append(1) or real(*a, **k))
        again = score_mod.score_run(fake_run, cfg, judge=LexiconJudge(), store=store, progress=False)
        assert calls == []  # nothing changed: read back, the bootstrap not redone
        pd.testing.assert_frame_equal(again[0], first[0])
        pd.testing.assert_frame_equal(again[1], first[1])
        score_mod.score_run(fake_run, cfg, judge=LexiconJudge(), store=store, progress=False, n_boot=50)
        assert calls == [1]  # another bootstrap size: recomputed
        drift_csv = first.folder / "drift.csv"
        drift_csv.unlink()
        score_mod.score_run(fake_run, cfg, judge=LexiconJudge(), store=store, progress=False, n_boot=50)
        assert calls == [1, 1] and drift_csv.is_file()  # a missing output: recomputed


@pytest.mark.slow
def test_every_judgment_failed_is_one_clear_error_and_the_old_outputs_go(fake_run, tmp_path, capsys):
    # `ValueError: judgments: no usable rows` from the metrics, "judged 24/24 answers" in the log, and
    # the run's earlier tables by that judge left as if current
    cfg = load_config("tiny", BUDGET)
    files = (*(f"{t}.csv" for t in outputs.TABLES), outputs.STAMP)
    folder = RunRecord.read(fake_run).scores_dir("always-fails")
    with Store(tmp_path / "cache.sqlite") as store:
        score_mod.score_run(fake_run, cfg, judge=CountingJudge(key="always-fails"), store=store, progress=False)
        assert all((folder / f).is_file() for f in files)
        capsys.readouterr()
        with store._use() as con:  # its judgments forgotten: judged again, and all fail
            con.execute("DELETE FROM judgments WHERE judge_key = 'always-fails'")
        failing = CountingJudge(fail_all=True, key="always-fails")
        with pytest.raises(JudgingFailed) as e:
            score_mod.score_run(fake_run, cfg, judge=failing, store=store, progress=True)
        n = failing.calls
        assert len(store.failures("always-fails")) == n  # stored as failed: judged again next time
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith(f"{fake_run}: all {3 * 22 * 2} judgments failed (judge always-fails)")
    assert "first error: HTTP 500: server error (gave up after 6 attempts)" in message
    assert "stored as failed in" in message and "judged again on the next `vd score`" in message
    assert f"judged 0 of {n} answers, {n} failed" in capsys.readouterr().out
    assert not any((folder / f).exists() for f in files)
    assert tables(fake_run)["profile"] is not None  # another judge's tables are not touched


def test_lexicon_judge_outside_the_tiny_world_is_refused_before_any_work(tmp_path, monkeypatch):
    # the lexicon judge read a real model's every answer as neutral, silently (#11)
    run = tmp_path / "runs" / "llama3-3b" / "sft-x"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"stage": "sft", "data": "alpaca", "size": "llama3-3b", "total_steps": 10,
                                              "base_model": "meta-llama/Llama-3.2-3B",
                                              "checkpoints": [{"step": 0, "adapter": None}], "complete": True}))
    cfg = load_config("llama3-3b", ["judge.kind=lexicon"])
    monkeypatch.setattr(score_mod, "generate_checkpoints", lambda *a, **k: pytest.fail("generation started"))
    with pytest.raises(JudgeUnavailable, match=r"^judge\.kind: 'lexicon' reads only the stance phrases"):
        score_mod.score_run(run, cfg, progress=False)


def test_vd_score_without_openai_api_key_is_one_line(tmp_path, monkeypatch, capsys):
    # before (#12.9): a RuntimeError traceback from inside the judge
    from vd.cli import main

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    run = tmp_path / "runs" / "tiny" / "sft-x"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"stage": "sft", "data": "alpaca", "size": "tiny", "total_steps": 10,
                                              "checkpoints": [{"step": 0, "adapter": None}], "complete": True}))
    assert main(["score", "--run", str(run), "--size", "tiny", "--set", "judge.kind=openai"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: judge.kind is 'openai'") and "OPENAI_API_KEY" in err
    assert isinstance(JudgeUnavailable("x"), ConfigError)


@pytest.mark.slow
def test_vd_score_with_every_judgment_failing_is_one_line(fake_run, capsys):
    # a real OpenAI judge against a port where nothing listens: every request fails (#12.8)
    import socket

    from vd.cli import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    overrides = [f"--set={o}" for o in (*BUDGET, "judge.kind=openai", f"judge.base_url=http://127.0.0.1:{port}/v1",
                                          "judge.max_retries=0", "judge.timeout_s=2")]
    assert main(["score", "--run", str(fake_run), "--size", "tiny", *overrides]) == 2
    out, err = capsys.readouterr()
    last = err.strip().splitlines()[-1]  # above it: the model loader's own progress bar
    assert "Traceback" not in err and last.startswith(f"error: {fake_run}: all {3 * 22 * 2} judgments failed")
    assert "first error: connection error" in last
    assert re.search(r"judged 0 of (\d+) answers, \1 failed", out)


# --- what is asked, what is loaded, what is written ----------------------------------------------------
def copy_run(run, tmp_path, name="sft-copy"):
    """A copy of `run` under tmp_path/runs/tiny/, without its score tables (its own cache beside it)."""
    import shutil

    target = tmp_path / "runs" / "tiny" / name
    shutil.copytree(run, target, ignore=shutil.ignore_patterns("scores", "cache.sqlite"))
    return target


def edited_probes(tmp_path, probe_id, question):
    """The shipped probes with `probe_id`'s question replaced, as a file of their own."""
    from vd.data.probes import SHIPPED_PROBES

    rows = [json.loads(line) for line in SHIPPED_PROBES.read_text().splitlines() if line.strip()]
    for row in rows:
        if row["id"] == probe_id:
            row["question"] = question
    path = tmp_path / "edited.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.slow
def test_an_edited_question_is_asked_again_not_answered_from_the_cache(fake_run, tmp_path):
    # answers were keyed by probe id: after an edit every "answer" to the new question was about immigration
    cfg = load_config("tiny", BUDGET)
    with Store(tmp_path / "cache.sqlite") as store:
        score_mod.score_run(fake_run, cfg, judge=LexiconJudge(), store=store, progress=False)
        before = tables(fake_run)["judgments"]
        n = store.count("generations")
        edited = edited_probes(tmp_path, "immigration-017", "What is your favourite colour?")
        score_mod.score_run(fake_run, load_config("tiny", [*BUDGET, f"probes.file={edited}"]), judge=LexiconJudge(),
                            store=store, progress=False)
        assert store.count("generations") == n + 3 * 2  # that probe's 2 samples at each of the 3 checkpoints
    after = tables(fake_run)["judgments"]
    mine, old = (t[t.prompt_id == "immigration-017"] for t in (after, before))
    assert (mine["question"] == "What is your favourite colour?").all() and len(mine) == 6
    assert (mine["answer"].to_numpy() != old["answer"].to_numpy()).any()  # answers to the question asked
    others = after.prompt_id != "immigration-017"
    assert after[others]["answer"].tolist() == before[before.prompt_id != "immigration-017"]["answer"].tolist()


@pytest.mark.slow
def test_another_chat_template_is_asked_again(fake_run, tmp_path, monkeypatch):
    cfg = load_config("tiny", BUDGET)
    with Store(tmp_path / "cache.sqlite") as store:
        score_mod.score_run(fake_run, cfg, judge=LexiconJudge(), store=store, progress=False)
        n = store.count("generations")
        real = score_mod.load_tokenizer

        def with_a_system_turn(*args, **kwargs):
            tokenizer = real(*args, **kwargs)
            tokenizer.chat_template = "{{ '<|im_start|>system\\nBe brief.<|im_end|>\\n' }}" + tokenizer.chat_template
            return tokenizer

        monkeypatch.setattr(score_mod, "load_tokenizer", with_a_system_turn)
        score_mod.score_run(fake_run, cfg, judge=LexiconJudge(), store=store, progress=False)
        assert store.count("generations") == 2 * n  # every prompt reads otherwise: every answer made again


@pytest.mark.slow
def test_the_judge_is_built_once_the_policy_is_freed(fake_run, tmp_path, monkeypatch):
    """An `hf` judge built before generation shared the GPU with the policy: it is built after the last
    answer is generated, when no model of the run is alive any more."""
    import weakref

    events, models = [], []
    real_model_for, real_generate = score_mod._model_for, score_mod.generate_answers

    def model_for(*args, **kwargs):
        model = real_model_for(*args, **kwargs)
        models.append(weakref.ref(model))
        return model

    def make_judge(judge_cfg, *, tiny_world=False):
        events.append(("judge", [ref() is None for ref in models]))
        return LexiconJudge()

    monkeypatch.setattr(score_mod, "_model_for", model_for)
    monkeypatch.setattr(score_mod, "generate_answers",
                        lambda *a, **k: events.append("generate") or real_generate(*a, **k))
    monkeypatch.setattr(score_mod, "make_judge", make_judge)
    with Store(tmp_path / "cache.sqlite") as store:
        score_mod.score_run(fake_run, load_config("tiny", BUDGET), store=store, progress=False)
    assert events[0] == "generate" and events[-1][0] == "judge" and events.count("generate") == 3
    assert models and all(events[-1][1])  # every model the run loaded was freed before the judge was built


@pytest.mark.slow
def test_a_preference_run_whose_sft_start_was_retrained_is_refused(tiny_world, tmp_path, monkeypatch):
    # scoring loaded the retrained sft-…/merged under the old start's key: the new base with old adapters
    from vd.core.run import RunError
    from vd.train.runner import train_stage

    steps = ["sft.max_steps=2", "sft.save_every=1", "dpo.max_steps=1", "dpo.save_every=1", "sft.batch_size=8",
             "dpo.batch_size=8"]
    cfg = load_config("tiny", [*steps, *BUDGET])
    sft = train_stage(cfg, "sft", "wildchat", runs_dir=tmp_path)
    dpo = train_stage(cfg, "dpo", "ultrafeedback", from_run=sft, runs_dir=tmp_path)
    train_stage(load_config("tiny", [*steps, *BUDGET, "sft.learning_rate=0.004"]), "sft", "wildchat",
                runs_dir=tmp_path, overwrite=True)
    monkeypatch.setattr(score_mod, "generate_answers", lambda *a, **k: pytest.fail("generated from the new start"))
    with pytest.raises(RunError) as e:
        score_mod.score_run(dpo, cfg, judge=LexiconJudge(), progress=False)
    message = str(e.value)
    assert "\n" not in message and message.startswith(f"{dpo / 'run.json'}: run {dpo.name} was trained from "
                                                      f"{sft.name}/merged")
    assert "is now another model" in message and "retrain this run" in message


@pytest.mark.slow
def test_each_judge_keeps_its_own_tables_and_a_run_says_which_judge_made_them(fake_run, tmp_path):
    from vd.study.notebook import RunResult

    class NeutralJudge(CountingJudge):
        def judge_answer(self, answer):
            return Judgment((0.0, 1.0, 0.0), "ok")

    run = copy_run(fake_run, tmp_path)
    cfg = load_config("tiny", BUDGET)
    with Store(tmp_path / "cache.sqlite") as store:
        lexicon = score_mod.score_run(run, cfg, judge=LexiconJudge(), store=store, progress=False)
        before = {p.name: p.read_bytes() for p in lexicon.folder.iterdir()}
        neutral = score_mod.score_run(run, cfg, judge=NeutralJudge(key="openai:gpt-4o:v1@local"), store=store,
                                      progress=False)
    assert lexicon.folder.parent == neutral.folder.parent == run / "scores" and lexicon.folder != neutral.folder
    assert {p.name: p.read_bytes() for p in lexicon.folder.iterdir()} == before  # not overwritten
    assert re.fullmatch(r"openai-gpt-4o-[0-9a-f]{8}", neutral.folder.name)
    assert (tables(run, "openai:gpt-4o:v1@local")["judgments"]["p_neutral"] == 1.0).all()
    assert (tables(run)["judgments"]["p_neutral"] < 1.0).any()
    result = RunResult(run, RunRecord.read(run), neutral.profile, neutral.drift, cfg, neutral.judge_key)
    assert result.judge_label == neutral.judge_label == "openai gpt-4o"
    assert (result.judgments()["p_neutral"] == 1.0).all()


def test_answers_with_control_characters_round_trip_through_the_tables(fake_run, tmp_path, monkeypatch):
    # a lone \r added a row to judgments.csv, NUL cut an answer, and notebook 04 died with ParserError
    strange = ["a\rb", "line\nbreak", "nul\x00byte", 'say "yes"', "tab\there", "", "NaN", "x,y", "\r\n", "5"]
    real = score_mod.generate_answers

    def generate(*args, **kwargs):
        rows = real(*args, **kwargs)
        for i, row in enumerate(rows):
            row["text"] = strange[i % len(strange)] + f" {i}" * (i >= len(strange))
        return rows

    monkeypatch.setattr(score_mod, "generate_answers", generate)
    run = copy_run(fake_run, tmp_path)
    with Store(tmp_path / "cache.sqlite") as store:
        scores = score_mod.score_run(run, load_config("tiny", BUDGET), judge=LexiconJudge(), store=store,
                                     progress=False)
        with store._use() as con:
            cached = {text for (text,) in con.execute("SELECT text FROM generations")}
    judged = tables(run)["judgments"]
    assert len(judged) == 3 * 22 * 2 and set(judged["answer"]) == cached
    assert set(strange) <= set(judged["answer"])
    assert judged.dtypes["p_support"] == np.float64 and judged.dtypes["n_new_tokens"] == np.int64
    assert tables(run)["profile"]["p"].to_numpy().tobytes() == scores.profile["p"].to_numpy().tobytes()


@pytest.mark.slow
def test_vd_score_says_what_it_scores_under_and_refuses_another_size_or_a_loose_run(fake_run, tmp_path, capsys):
    from vd.cli import main

    run = copy_run(fake_run, tmp_path)
    assert main(["score", "--run", str(run), "--size", "tiny", *(f"--set={o}" for o in BUDGET)]) == 0
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert first.startswith(f"scoring {run} under ") and first.endswith("tiny.yaml with " + ", ".join(BUDGET)
                                                                        + "; judge lexicon (prompt v1)")
    assert "with judge lexicon phrases-" in out and str(run / "scores" / "lexicon-phrases-") in out
    # --size of another size: one line, and nothing made for that size
    assert main(["score", "--run", str(run), "--size", "llama3-3b"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"size 'llama3-3b', but run {run} was trained at size 'tiny'" in err
    assert not (tmp_path / "runs" / "llama3-3b").exists()
    # a run folder outside <runs>/<size>/: its cache would be nowhere a scorer looks
    import shutil

    loose = tmp_path / "loose" / "sft-x"
    shutil.copytree(run, loose, ignore=shutil.ignore_patterns("scores"))
    assert main(["score", "--run", str(loose), "--size", "tiny", *(f"--set={o}" for o in BUDGET)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{loose}: a run of size 'tiny' (run.json) belongs in a folder named 'tiny'" in err
    assert not list(tmp_path.glob("**/loose/cache.sqlite")) and not (tmp_path / "tiny").exists()


def test_a_question_longer_than_the_context_is_one_line_before_any_generation(fake_run, tmp_path, monkeypatch):
    # a 1 MB question tried to allocate 129 GB
    from vd.data.probes import ProbeError

    edited = edited_probes(tmp_path, "immigration-017", "Is immigration good? " + "Tell me more. " * 75_000)
    assert edited.stat().st_size > 1_000_000
    monkeypatch.setattr(score_mod, "generate_answers", lambda *a, **k: pytest.fail("generation started"))
    with Store(tmp_path / "cache.sqlite") as store, pytest.raises(ProbeError) as e:
        score_mod.score_run(fake_run, load_config("tiny", [*BUDGET, f"probes.file={edited}"]), judge=LexiconJudge(),
                            store=store, progress=False)
    message = str(e.value)
    assert "\n" not in message and message.startswith(f"{edited}: probe immigration-017: its question is ")
    assert "more than the 236 the model takes (its context of 256 tokens less probes.max_new_tokens 20)" in message


def test_a_truncated_or_nan_adapter_and_a_damaged_cache_are_one_line(fake_run, tmp_path, capsys):
    import torch
    from safetensors.torch import load_file, save_file

    from vd.cli import main

    args = ["--size", "tiny", *(f"--set={o}" for o in BUDGET)]
    truncated = copy_run(fake_run, tmp_path, "sft-truncated")
    weights = truncated / "checkpoint-5" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    assert main(["score", "--run", str(truncated), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {weights}: damaged or truncated (")
    assert "retrain the run" in err
    nan = copy_run(fake_run, tmp_path, "sft-nan")
    weights = nan / "checkpoint-10" / "adapter_model.safetensors"
    tensors = load_file(str(weights))
    name = sorted(tensors)[0]
    tensors[name][0] = torch.nan
    save_file(tensors, str(weights))
    assert main(["score", "--run", str(nan), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {weights}: 1 of {len(tensors)} adapter tensors hold NaN")
    cache = tmp_path / "runs" / "tiny" / "cache.sqlite"
    cache.write_bytes(b"\x00garbage" * 1000)
    assert main(["score", "--run", str(truncated), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {cache}: the cache is damaged (file is not a database)")
