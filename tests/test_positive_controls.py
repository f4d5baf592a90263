"""Positive controls (docs/method.md §8; ours): in the tiny world, with its own params (params/tiny.yaml), a
preference stage on data with a large value gap must move the chosen stance.

From the Alpaca-SFT model, on both synthetic settings (chosen = support, the high-prior stance;
chosen = oppose, the low-prior one): DPO must raise the chosen stance's overall share by M >= 0.10,
SimPO by M > 0 with the 95% bootstrap CI of M above 0. PPO has no requirement (its KL anchor is the
paper's point). And the preference data the stages train on must sit on the SFT policy's support
(vd.score.policy_fit; docs/decisions.md: data far off it are separated without moving what the policy says).
The numbers these tests have seen: benchmarks/RESULTS.md.
"""

import warnings

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def study(tmp_path_factory, tiny_world):
    from vd.study import setup

    root = tmp_path_factory.mktemp("positive-controls")
    return setup("tiny", notebook="positive-controls", params={}, runs_dir=str(root / "runs"),
                 figures_dir=str(root / "figures"))


def _overall(run, stance):
    table = run.drift_with_ci()
    return table[(table["topic"] == "overall") & (table["stance"] == stance)].iloc[0]


@pytest.mark.parametrize("setting", ["support", "oppose"])
def test_dpo_moves_the_chosen_stance_by_at_least_0_10(study, setting):
    row = _overall(study.preference("dpo", f"synthetic-{setting}", "alpaca"), setting)
    assert row.M >= 0.10, row.to_dict()
    assert row.M_ci_low > 0, row.to_dict()


@pytest.mark.parametrize("setting", ["support", "oppose"])
def test_simpo_moves_the_chosen_stance_beyond_its_ci(study, setting):
    row = _overall(study.preference("simpo", f"synthetic-{setting}", "alpaca"), setting)
    assert row.M > 0 and row.M_ci_low > 0, row.to_dict()


def test_the_controls_table_of_notebook_06_applies_the_same_requirements(study):
    """vd.study.controls (what notebook 06 shows first): a verdict per algorithm and setting, from the
    same runs; DPO and SimPO pass, PPO is reported without a requirement."""
    from vd.study.controls import DPO_MIN_M, positive_controls

    table = positive_controls(study, "alpaca").set_index(["algo", "setting"])
    assert DPO_MIN_M == 0.10 and len(table) == 6
    for (algo, setting), row in table.iterrows():
        assert row["verdict"] == ("reported" if algo == "ppo" else "passes"), (algo, setting, row.to_dict())
        assert row["ci_low"] <= row["M"] <= row["ci_high"]


def test_preference_data_sit_on_the_sft_policys_support(study):
    """Every tiny preference set, chosen and rejected, within NEAR_NATS per token of the Alpaca-SFT
    policy's own answers to the probes."""
    from vd.data.probes import load_probes
    from vd.data.synthetic import build_from_config
    from vd.models.loading import load_model, load_tokenizer
    from vd.score import policy_fit as pf
    from vd.world import ensure_world

    cfg = study.cfg
    merged = str(study.sft("alpaca").run_dir / "merged")
    model, tok = load_model(cfg, path=merged), load_tokenizer(cfg, merged)
    world = ensure_world(cfg, verbose=False)
    data = {name: world.load_rows(name) for name in ("ultrafeedback", "hh-rlhf")}
    data |= {f"synthetic-{s}": build_from_config(cfg, s)[0].rows for s in ("support", "oppose")}
    questions = load_probes(prompts_per_topic=cfg.probes.prompts_per_topic, seed=cfg.seed)["question"].tolist()
    with warnings.catch_warnings():
        warnings.simplefilter("error", pf.OffPolicyWarning)
        table = pf.policy_fit(model, tok, data, questions=questions)
    print(table.round(3).to_string())
    assert len(table) == 1 + 2 * len(data)
    assert (table["verdict"].iloc[1:] == "on policy").all(), table
