"""`vd plan`: the runs `vd reproduce` trains, their steps and checkpoints, the probe passes and judge calls, the
API cost, disk and GPU hours, checked by hand for a small params override; the command for tiny and llama3-3b."""

import pytest

from vd.core.config import load_config
from vd.models import memory
from vd.models.architectures import published_config
from vd.study import plan as vp

SMALL = ["data.sft.wildchat.max_samples=160", "data.sft.alpaca.max_samples=160", "sft.save_every=10",
         "data.preference.ultrafeedback.max_samples=64", "data.preference.hh-rlhf.max_samples=64",
         "data.synthetic.prompts_per_topic=4", "probes.prompts_per_topic=2", "probes.samples_per_prompt=1",
         "probes.max_new_tokens=10", "prices.models.gpt-4o.usd_per_1m_input=0",
         "prices.models.gpt-4o.usd_per_1m_output=1000000"]


@pytest.fixture(scope="module")
def small():
    return vp.plan(load_config("llama3-3b", SMALL))


def test_runs_steps_and_checkpoints_by_hand(small):
    runs = {r["name"]: r for r in small["runs"]}
    # SFT: 160 rows, batch 4 x accumulation 4: ceil(ceil(160/4)/4) = 10 steps an epoch, 3 epochs = 30 steps;
    # checkpoints at 0, 10, 20, 30
    assert {k: (r["steps"], r["checkpoints"]) for k, r in runs.items() if r["stage"] == "sft"} == \
        {"sft-wildchat": (30, 4), "sft-alpaca": (30, 4)}
    # DPO on 64 pairs, batch 2 x 8: 4 steps, checkpoints at 0 and 4; synthetic: 4 x 11 = 44 prompts: 3 steps
    assert (runs["dpo-hh-rlhf-from-sft-alpaca"]["steps"], runs["dpo-hh-rlhf-from-sft-alpaca"]["checkpoints"]) == (4, 2)
    assert runs["dpo-synthetic-oppose-from-sft-alpaca"]["steps"] == 3
    # PPO: 64 episodes / (2 x 8) = 4 updates; its reward model: ceil(ceil(64/4)/4) = 4 steps
    assert runs["ppo-ultrafeedback-from-sft-alpaca"]["steps"] == 4
    assert runs["ppo-ultrafeedback-from-sft-alpaca/reward"]["steps"] == 4
    # notebooks 01-03 (2 + 6 + 6) and 05's ablations (3 knobs x 2 values besides the main run's)
    assert small["totals"]["runs"] == 20 and small["totals"]["reward models"] == 6
    assert "dpo-synthetic-support-from-sft-alpaca-beta0.05" in runs and \
        "simpo-synthetic-support-from-sft-alpaca-gamma0" in runs
    # trained tokens, every sequence at max_length: SFT 30 steps x 16 x 1024; DPO 4 x 16 pairs x 2 x 1024
    assert runs["sft-alpaca"]["tokens"] == 30 * 16 * 1024
    assert runs["dpo-hh-rlhf-from-sft-alpaca"]["tokens"] == 4 * 16 * 2 * 1024
    assert runs["ppo-hh-rlhf-from-sft-alpaca"]["tokens"] == 4 * 16 * (512 + 256)


def test_scoring_calls_and_cost_by_hand(small):
    # the base model once, then every checkpoint but step 0: 2 SFT runs x 3, 12 + 6 preference runs x 1
    assert small["scoring"]["checkpoints scored"] == 1 + 2 * 3 + 18 * 1
    assert small["scoring"]["generations"] == 25 * 22 * 1  # 2 probes per topic x 11 topics, 1 sample
    assert small["scoring"]["generated tokens"] == 25 * 22 * 10
    calls = small["calls"]
    assert calls["judge: probe answers"]["n"] == 550
    assert calls["judge: 04's standard pairs (at most)"]["n"] == 2 * (64 + 64)
    assert calls["judge: synthetic answers"]["n"] == calls["writer: synthetic answers"]["n"] == 2 * 2 * 44
    # priced at $1 per output token (one token a judgment) and nothing for input: the calls themselves
    assert calls["judge: probe answers"]["usd"] == 550
    writer = calls["writer: synthetic answers"]  # gpt-4o-mini at the params' price
    assert writer["output_tokens"] == 176 * 200
    assert writer["usd"] == pytest.approx(writer["input_tokens"] * 0.15e-6 + 176 * 200 * 0.60e-6, abs=0.01)
    assert small["usd"] == pytest.approx(sum(c["usd"] for c in calls.values()), abs=0.011)


def test_disk_by_hand(small):
    config = published_config("meta-llama/Llama-3.2-3B")
    causal, score = memory.weight_counts(config), memory.weight_counts(config, "score")
    # merged models: 2 SFT runs and 6 reward models, 2 bytes a parameter
    assert small["disk_gb"]["merged models"] == round((2 * 2 * causal["total"] + 6 * 2 * score["total"]) / 1e9, 1)
    lora = causal["lora_per_rank"] * 16
    # an fp32 adapter at every checkpoint but step 0: SFT 2 x 3, 18 preference runs x 1, 6 reward models x 1
    assert small["disk_gb"]["adapters"] == round((2 * 3 + 18 + 6) * lora * 4 / 1e9, 1)
    # one run's 8-bit Adam state at a time (2 bytes a trainable parameter), in its newest checkpoint
    assert small["disk_gb"]["optimizer state (while a run trains)"] == round(lora * 2 / 1e9, 1)
    assert small["disk_gb"]["base model (hub cache)"] == round(2 * causal["total"] / 1e9, 1)


def test_gpu_hours_measured_where_the_benchmark_has_them(monkeypatch):
    speeds = {s: {"tokens_per_s": 1000.0} for s in ("sft", "dpo", "simpo", "reward", "ppo", "generate")}
    monkeypatch.setattr(vp, "_results", lambda: {"gpu": {"machine": {"gpu": "NVIDIA H200", "date": "2026-12-04"},
                                                         "sizes": {"llama3-3b": speeds}}})
    p = vp.plan(load_config("llama3-3b", SMALL), cuts=False)
    tokens = sum(r["tokens"] for r in p["runs"]) + p["scoring"]["generated tokens"]
    measured = p["gpu_hours"]["measured: NVIDIA H200"]
    assert measured["basis"] == "measured" and measured["hours"] == round(tokens / 1000 / 3600, 1)
    assert all(h["basis"] == "estimate" for k, h in p["gpu_hours"].items() if not k.startswith("measured"))
    assert p["gpu_hours"]["T4"]["hours"] > p["gpu_hours"]["A100-80GB"]["hours"] > p["gpu_hours"]["H200"]["hours"]


def test_cuts_cut(small):
    full = vp.plan(load_config("llama3-3b"))
    cuts = full["cuts"]
    assert set(cuts) == set(vp.CUTS)
    for c in cuts.values():
        assert c["generations"] <= full["scoring"]["generations"] and c["usd"] < full["usd"]
    assert 100 < full["usd"] < 5000  # hundreds of dollars of GPT-4o judgments, as the issue reads it
    assert cuts["save_every x2 (half the checkpoints)"]["checkpoints"] < full["totals"]["checkpoints"]
    # a local judge is not free: its prompts' prefill (2N FLOPs a token, N its parameters) is GPU time
    local = next(c for label, c in cuts.items() if label.startswith("a local judge"))
    judge_tokens = sum(c["input_tokens"] for k, c in full["calls"].items() if k.startswith("judge"))
    t4 = memory.CARDS["T4"]
    extra = 2 * vp.LOCAL_JUDGE[1] * judge_tokens / (t4.tflops * 1e12 * vp.TRAIN_MFU) / 3600
    assert local["hours"]["T4"] == pytest.approx(full["gpu_hours"]["T4"]["hours"] + extra, abs=0.1)
    assert extra > 50  # about 330 million prompt tokens through a 7.6 B judge


def test_an_hf_judge_is_sized_from_its_config():
    assert vp.judge_params(load_config("llama3-3b")) == 0  # an API judge: no GPU time here
    known = load_config("llama3-3b", {"judge.kind": "hf", "judge.model": "Qwen/Qwen3-8B-Base"})
    assert vp.judge_params(known) == memory.counts_of(published_config("Qwen/Qwen3-8B-Base"), "causal")["total"]
    unknown = load_config("llama3-3b", {"judge.kind": "hf", "judge.model": "someone/judge"})
    assert vp.judge_params(unknown) == vp.LOCAL_JUDGE[1]  # offline and unknown: the documented preset's size


def test_runs_are_what_vd_reproduce_trains():
    """The notebooks' grid (vd.study.reproduce.GRID) and their SFT start are the plan's."""
    from vd.study.notebook import DEFAULT_SFT
    from vd.study.reproduce import GRID

    assert vp.DEFAULT_SFT == DEFAULT_SFT
    names = {r.name for r in vp.study_runs(load_config("llama3-3b"))}
    grid = ({f"sft-{p['sft_data']}" for p in GRID["01_sft_drift"]}
            | {f"{p['algo']}-{p['pref_data']}-from-sft-{DEFAULT_SFT}" for p in GRID["02_preference_drift"]}
            | {f"{p['algo']}-synthetic-{p['setting']}-from-sft-{DEFAULT_SFT}" for p in GRID["03_value_gap"]})
    assert grid <= names and len(names - grid) == 6 + 6  # 05's ablations and the PPO runs' reward models


def test_unknown_dataset_size_is_one_clear_error():
    cfg = load_config("llama3-3b", ["data.sft.alpaca.id=someone/else", "data.sft.alpaca.max_samples=null"])
    with pytest.raises(vp.ConfigError, match=r"data\.sft\.alpaca\.max_samples: vd plan does not know how many rows"):
        vp.study_runs(cfg)


@pytest.mark.parametrize("size,expected", [
    ("tiny", ["size tiny", "20 runs + 6 reward models", "lexicon judge", "tiny reproduction took"]),
    ("llama3-3b", ["size llama3-3b", "sft-alpaca", "20,000 rows", "3,750 steps", "39 checkpoints", "gpt-4o",
                   "prices as of 2024-08", "sized for the T4", "how to cut it", "H200"]),
])
def test_vd_plan_command(size, expected, tiny_world, capsys):
    from vd.cli import main

    assert main(["plan", "--size", size]) == 0
    out = capsys.readouterr().out
    for text in expected:
        assert text in out, (text, out)


def test_every_notebook_preflight_prints_the_plan(tiny_world, tmp_path, capsys):
    from vd.study.notebook import setup

    study = setup("tiny", notebook="01_sft_drift", params={"sft_data": "alpaca"}, runs_dir=str(tmp_path / "runs"),
                  figures_dir=str(tmp_path / "figures"))
    study.preflight(["sft"])
    out = capsys.readouterr().out
    assert "the whole study at size tiny: 20 runs, 136 checkpoints" in out and "vd plan --size tiny" in out
    unknown = load_config("llama3-3b", ["model.base=someone/unknown-model"])
    assert vp.preflight_summary(unknown).startswith("vd plan: no estimate of the whole study here (")
