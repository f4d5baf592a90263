"""A run folder stored by an older vd: its config.yaml lacks keys added since, holds old value names and
every stage's fields under each stage. Training compares today's config with it as load_stored_config
reads it (keys added since hold the values such a run was trained with), so a run trained under the same
settings is reused, and one trained without a feature is never taken for one trained with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from vd.core.config import load_config, stored_params
from vd.train.runner import TrainRequestError, differences, train_stage, training_part

OLD_STORED = Path(__file__).parent / "fixtures" / "stored_configs" / "tiny-db5d9a2.yaml"  # as vd wrote it at db5d9a2


def as_older_vd_wrote(cfg) -> dict:
    """`cfg` laid out as the vd of db5d9a2 wrote it: that vd's keys and value names, today's values."""
    old, now = yaml.safe_load(OLD_STORED.read_text()), cfg.to_dict()

    def overlay(into: dict, values: dict) -> None:
        for key in into:
            if isinstance(into[key], dict) and isinstance(values.get(key), dict):
                overlay(into[key], values[key])
            elif key in values and key != "chat_template":
                into[key] = values[key]

    overlay(old, now)
    return old


def _stored_run(root: Path, stored: dict, cfg) -> Path:
    """A complete SFT run folder holding `stored` as its config.yaml, started from the tiny world's base."""
    from vd.models.loading import base_model_path, model_identity

    run = root / "tiny" / "sft-wildchat"
    run.mkdir(parents=True)
    identity = model_identity(base_model_path(cfg), cfg.model.revision)
    (run / "run.json").write_text(json.dumps({"stage": "sft", "size": "tiny", "data": "wildchat", "complete": True,
                                              "checkpoints": [], "from_run": None, "start_identity": identity}))
    (run / "config.yaml").write_text(yaml.safe_dump(stored, sort_keys=False))
    return run


def test_a_run_stored_by_an_older_vd_under_the_same_settings_is_reused(tiny_world, tmp_path, monkeypatch):
    import vd.train.sft

    cfg = load_config("tiny")
    stored = as_older_vd_wrote(cfg)
    assert "train_chat_tokens" not in stored["lora"] and "rollout_batch_size" not in stored["sft"]
    assert stored["model"]["chat_template"] == "chatml" and "kl_coef" in stored["sft"]
    run = _stored_run(tmp_path, stored, cfg)
    before = (run / "run.json").read_text()
    monkeypatch.setattr(vd.train.sft, "build_trainer", lambda *a, **k: pytest.fail("retrained a complete run"))
    assert train_stage(cfg, "sft", "wildchat", runs_dir=tmp_path) == run
    assert (run / "run.json").read_text() == before and yaml.safe_load((run / "config.yaml").read_text()) == stored


def test_a_run_stored_without_a_feature_is_not_taken_for_one_with_it(tiny_world, tmp_path):
    cfg = load_config("tiny", ["lora.train_chat_tokens=true"])
    _stored_run(tmp_path, as_older_vd_wrote(load_config("tiny")), cfg)
    with pytest.raises(TrainRequestError, match=r"a complete run trained under other settings than these: "
                                                r"lora\.train_chat_tokens: False -> True\. Use another"):
        train_stage(cfg, "sft", "wildchat", runs_dir=tmp_path)


@pytest.mark.parametrize("stage, data", [("ppo", "hh-rlhf"), ("reward", "hh-rlhf"), ("dpo", "synthetic-support"),
                                         ("simpo", "ultrafeedback")])
def test_every_stage_trains_as_the_older_vd_stored_it(tmp_path, stage, data):
    cfg = load_config("tiny")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(as_older_vd_wrote(cfg)))
    stored = stored_params(tmp_path / "config.yaml")
    assert differences(training_part(stored, stage, data), training_part(cfg.to_dict(), stage, data)) == []


def test_keys_added_since_hold_what_an_older_run_was_trained_with(tmp_path):
    """A real size's run stored without the keys: trained without chat-token rows and with TRL's default
    rollout chunk then, whatever today's params say."""
    cfg = load_config("llama3-3b")
    old = cfg.to_dict()
    del old["lora"]["train_chat_tokens"], old["ppo"]["rollout_batch_size"], old["data"]["synthetic"]["base_url"]
    old["model"]["chat_template"] = "chatml"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old))
    stored = stored_params(tmp_path / "config.yaml")
    assert differences(training_part(stored, "ppo", "synthetic-oppose"), training_part(cfg.to_dict(), "ppo",
                                                                                      "synthetic-oppose")) == [
        "lora.train_chat_tokens: False -> True", "ppo.rollout_batch_size: 64 -> 4"]


def test_a_stored_config_that_no_longer_validates_is_compared_as_stored(tmp_path):
    """A value a check added since refuses (one prompt per topic) is no reason to retrain: it shapes no training."""
    stored = as_older_vd_wrote(load_config("tiny"))
    stored["probes"]["prompts_per_topic"] = 1
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(stored))
    read = stored_params(tmp_path / "config.yaml")
    assert read["probes"]["prompts_per_topic"] == 1 and read["lora"]["train_chat_tokens"] is False
    assert read["model"]["chat_template"] == "project" and "kl_coef" not in read["sft"]
