"""Every params file loads; each kind of bad input gives an error naming the file, key and expectation."""

from pathlib import Path

import pytest
import yaml

from vd.core.config import PARAMS_DIR, ConfigError, available_sizes, check_choice, load_config, params_path

SIZES = ["tiny", "llama3-3b", "llama3-8b", "qwen3-4b", "qwen3-8b"]


def test_every_size_is_shipped_and_loads():
    assert sorted(available_sizes()) == sorted(SIZES)
    for size in SIZES:
        cfg = load_config(size)
        assert cfg.size == size
        assert cfg.probes.temperature == 0.7  # the paper's sampling temperature at every size
        assert cfg.sft.save_every >= 1 and cfg.dpo.beta > 0


def test_gpu_sizes_use_4bit_nf4_and_the_paper_judge():
    for size in SIZES[1:]:
        cfg = load_config(size)
        assert cfg.quantization.load_in_4bit and cfg.quantization.quant_type == "nf4"
        assert cfg.quantization.double_quant and cfg.quantization.compute_dtype == "auto"
        assert cfg.judge.kind == "openai" and cfg.judge.model == "gpt-4o"
        assert cfg.probes.max_new_tokens == 256 and cfg.probes.prompts_per_topic == 50  # the paper's budget
        assert cfg.probes.samples_per_prompt == 5
        # SimPO: TRL's simpo_gamma is γ itself; our files keep γ/β = 0.5 as in the SimPO paper.
        assert cfg.simpo.gamma == pytest.approx(0.5 * cfg.simpo.beta)


def test_every_size_has_capability_checks():
    tiny = load_config("tiny").capabilities
    assert list(tiny.tasks) == ["vd_tiny_topics"] and tiny.limit == 220 and tiny.batch_size >= 1
    for size in SIZES[1:]:
        cap = load_config(size).capabilities
        assert list(cap.tasks) == ["mmlu", "hellaswag", "gpqa_diamond_zeroshot", "piqa"]  # the paper's four
        assert cap.limit == 500 and cap.batch_size >= 1
    assert load_config("tiny", {"capabilities.limit": None}).capabilities.limit is None  # null: every item


def test_overrides_apply_with_dotted_keys_and_yaml_values():
    cfg = load_config("tiny", ["dpo.beta=0.2", "probes.samples_per_prompt=2", "judge.kind=openai"])
    assert cfg.dpo.beta == 0.2 and cfg.probes.samples_per_prompt == 2 and cfg.judge.kind == "openai"
    cfg = load_config("tiny", {"sft.learning_rate": "1e-4"})  # YAML reads 1e-4 as a string; accepted
    assert cfg.sft.learning_rate == 1e-4


@pytest.mark.parametrize("override, message", [
    ("sft.learning_rate=-0.001", "sft.learning_rate: expected a number > 0, got -0.001"),
    ("probes.temperature=-0.5", "probes.temperature: expected a number >= 0, got -0.5"),
    ("probes.samples_per_prompt=0", "probes.samples_per_prompt: expected an integer >= 1, got 0"),
    ("probes.samples_per_prompt=2.5", "probes.samples_per_prompt: expected an integer, got 2.5"),
    ("judge.kind=gpt", "judge.kind: expected one of 'openai', 'hf', 'lexicon', got 'gpt'"),
    ("dpo.bta=0.1", "dpo.bta: unknown key; expected one of"),
    ("sft.batch_size=lots", "sft.batch_size: expected an integer, got 'lots'"),
    ("lora.dropout=1.5", "lora.dropout: expected a number in [0, 1], got 1.5"),
    ("quantization.load_in_4bit=maybe", "quantization.load_in_4bit: expected true or false"),
    ("data.sft.sharegpt={id: x}", "data.sft.sharegpt: unknown SFT dataset; expected one of wildchat, alpaca"),
    ("data.preference.shp={id: x}", "data.preference.shp: unknown preference dataset"),
    ("probes.prompts_per_topic=80", "probes.prompts_per_topic: expected an integer in [2, 50], got 80"),
    ("probes.prompts_per_topic=1", "probes.prompts_per_topic: expected an integer in [2, 50], got 1"),
    ("capabilities.limit=0", "capabilities.limit: expected an integer >= 1, got 0"),
    ("capabilities.batch_size=0", "capabilities.batch_size: expected an integer >= 1, got 0"),
    ("capabilities.tasks.vd_tiny_topics.num_fewshot=-1",
     "capabilities.tasks.vd_tiny_topics.num_fewshot: expected an integer >= 0, got -1"),
    ("capabilities.tasks.vd_tiny_topics.metric=f1",
     "capabilities.tasks.vd_tiny_topics.metric: expected one of 'acc', 'acc_norm', got 'f1'"),
    ("capabilities.tasks.mmlu={shots: 5}",
     "capabilities.tasks.mmlu.shots: unknown key; expected one of metric, num_fewshot"),
    ("capabilities.budget=3", "capabilities.budget: unknown key; expected one of batch_size, limit, tasks"),
])
def test_bad_values_name_file_key_and_expectation(override, message, tmp_path):
    """The same bad value is blamed on the override that set it, or on the file that holds it."""
    with pytest.raises(ConfigError) as err:
        load_config("tiny", [override])
    key, _, text = override.partition("=")
    # the key is named again only where the bad value sits below what the override set
    blamed, rest = message.split(": ", 1)
    assert str(err.value).startswith(f"override {override}: {rest if blamed == key else message}")
    assert "params/tiny.yaml" not in str(err.value)
    raw = yaml.safe_load(params_path("tiny").read_text())
    *parents, last = key.split(".")
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = yaml.safe_load(text)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as err:
        load_config(str(tmp_path / "bad.yaml"))
    assert str(err.value).startswith(f"{tmp_path / 'bad.yaml'}: {message}")


def test_an_override_is_blamed_for_what_it_created_and_a_file_for_the_rest():
    with pytest.raises(ConfigError, match=r"^override data.sft.new.split=x: data.sft.new.id: missing required key$"):
        load_config("tiny", ["data.sft.new.split=x"])
    with pytest.raises(ConfigError, match=r"^override lora=\{r: 0\}: lora.r: expected an integer >= 1, got 0$"):
        load_config("tiny", ["lora={r: 0}"])
    with pytest.raises(ConfigError, match=r"^override dpo.beta=abc: expected a number, got 'abc'$"):
        load_config("tiny", {"dpo.beta": "abc"})  # a notebook's overrides, parsed into a dict


def test_an_override_that_is_not_yaml_names_itself():
    with pytest.raises(ConfigError, match=r"^override 'dpo.beta=\[0.1': the value is not valid YAML \(.+\); quote"):
        load_config("tiny", ["dpo.beta=[0.1"])


def test_non_finite_numbers_are_rejected(tmp_path):
    for text in (".inf", "-.inf", ".nan", "nan", "inf"):
        with pytest.raises(ConfigError,
                           match=rf"^override dpo.beta={text}: expected a finite number, got -?(inf|nan)$"):
            load_config("tiny", [f"dpo.beta={text}"])
    (tmp_path / "inf.yaml").write_text(params_path("tiny").read_text().replace("  beta: 0.1\n", "  beta: .inf\n"))
    with pytest.raises(ConfigError, match=r"inf.yaml: dpo.beta: expected a finite number, got inf"):
        load_config(str(tmp_path / "inf.yaml"))


def test_an_empty_params_file_says_so(tmp_path):
    for text in ("", "# only a comment\n"):
        (tmp_path / "empty.yaml").write_text(text)
        with pytest.raises(ConfigError,
                           match=r"empty.yaml: the file is empty; expected a params file with the sections "):
            load_config(str(tmp_path / "empty.yaml"))
    (tmp_path / "binary.yaml").write_bytes(b"size: \xff\n")
    with pytest.raises(ConfigError, match=r"binary.yaml: not a UTF-8 text file"):
        load_config(str(tmp_path / "binary.yaml"))


def test_the_top_level_keys_offered_are_the_files_own(tmp_path):
    """`stages` and `source` are set by load_config, never read from a file: an error never offers them."""
    text = params_path("tiny").read_text()
    for extra in ("colour: red\n", "source: x\n", "stages: {}\n"):
        (tmp_path / "extra.yaml").write_text(text + extra)
        with pytest.raises(ConfigError) as err:
            load_config(str(tmp_path / "extra.yaml"))
        offered = str(err.value).split("expected one of ")[1].split(", ")
        assert "source" not in offered and "stages" not in offered
        assert {"size", "model", "data", "sft", "dpo", "ppo", "tiny"} <= set(offered)


def test_null_removes_an_entry_of_a_named_mapping_only():
    cfg = load_config("tiny", ["data.preference.ultrafeedback=null"])
    assert list(cfg.data.preference) == ["hh-rlhf"] and list(cfg.data.sft) == ["wildchat", "alpaca"]
    assert list(load_config("tiny", {"data.sft.wildchat": None}).data.sft) == ["alpaca"]
    with pytest.raises(ConfigError, match=r"data.preference has no entry 'ultrafeedbak' to remove; it has "
                                          r"ultrafeedback, hh-rlhf"):
        load_config("tiny", ["data.preference.ultrafeedbak=null"])
    assert load_config("tiny", ["probes.file=null"]).probes.file is None  # elsewhere null is a value
    with pytest.raises(ConfigError, match=r"^override dpo.beta=null: expected a number, got None$"):
        load_config("tiny", ["dpo.beta=null"])


def test_a_stored_config_loads_back_with_overrides_on_top(tmp_path):
    from vd.core.config import load_stored_config

    cfg = load_config("tiny", ["probes.samples_per_prompt=1", "data.preference.ultrafeedback=null"])
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))  # as vd train writes it
    stored = load_stored_config(tmp_path / "config.yaml")
    assert {**stored.to_dict(), "source": ""} == {**cfg.to_dict(), "source": ""}
    assert stored.source == str(tmp_path / "config.yaml")
    assert load_stored_config(tmp_path / "config.yaml", ["probes.samples_per_prompt=3"]).probes.samples_per_prompt == 3
    with pytest.raises(ConfigError, match=r"nope.yaml: no such file"):
        load_stored_config(tmp_path / "nope.yaml")


def test_missing_size_lists_the_available_ones():
    with pytest.raises(ConfigError, match=r"no params file .*llama3-70b.yaml.*available sizes: llama3-3b, llama3-8b"):
        load_config("llama3-70b")


def test_bad_files(tmp_path):
    (tmp_path / "broken.yaml").write_text("size: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: not valid YAML"):
        load_config("broken", params_dir=tmp_path)
    text = (load_config("tiny").source and open(load_config("tiny").source).read())
    (tmp_path / "nosize.yaml").write_text(text.replace("size: tiny\n", ""))
    with pytest.raises(ConfigError, match=r"nosize.yaml: size: missing required key"):
        load_config("nosize", params_dir=tmp_path)
    (tmp_path / "notiny.yaml").write_text(text.split("# ---- the tiny world's own recipe")[0])
    with pytest.raises(ConfigError, match=r"notiny.yaml: tiny: model.base is 'tiny' but the file has no `tiny:`"):
        load_config("notiny", params_dir=tmp_path)


def test_malformed_override_and_parameter_choice():
    with pytest.raises(ConfigError, match=r"override 'dpo.beta': expected key=value"):
        load_config("tiny", ["dpo.beta"])
    with pytest.raises(ConfigError, match=r"parameter algo: expected one of sft, dpo, simpo, ppo, got 'rlhf'"):
        check_choice("algo", "rlhf", ("sft", "dpo", "simpo", "ppo"))


def test_each_size_loads_to_the_same_values_as_before():
    """Each size's effective config equals the snapshot taken before the real sizes shared _qlora.yaml
    (tests/fixtures/effective_params/<size>.json), but for two changes made on purpose: model.chat_template's
    value is named for what it is, and a stage's section holds only its own schema's fields (the snapshot's
    single StageConfig gave every stage every field; the dropped ones are named here, none is read)."""
    import json
    from pathlib import Path

    renamed = {"chatml": "project", "own": "model"}
    own = {"sft": set(), "dpo": {"beta"}, "simpo": {"beta", "gamma"}, "reward": {"full_finetune"},
           "ppo": {"kl_coef", "response_length", "num_ppo_epochs", "num_mini_batches", "total_episodes",
                   "missing_eos_penalty", "rollout_batch_size"}}
    every_stage_field = set().union(*own.values())
    for size in SIZES:
        before = json.loads((Path(__file__).parent / "fixtures" / "effective_params" / f"{size}.json").read_text())
        now = load_config(size).to_dict()
        now.pop("source")
        before["model"]["chat_template"] = renamed[before["model"]["chat_template"]]
        for stage, extra in own.items():
            shared = set(before[stage]) - every_stage_field
            assert set(now[stage]) == shared | extra, (size, stage)
            before[stage] = {k: v for k, v in before[stage].items() if k in shared | extra}
        assert now == before, size
        assert json.dumps(now) == json.dumps(before), size  # the same types and key order too


# --- recipes by inheritance (`extends:`, vd.core.extends) --------------------------------------


def _chain(tmp_path, **files) -> dict:
    """Params files in tmp_path: `_base.yaml` is a copy of tiny.yaml (self-contained); the others as given."""
    (tmp_path / "_base.yaml").write_text(params_path("tiny").read_text())
    for name, text in files.items():
        (tmp_path / f"{name}.yaml").write_text(text)
    return {name: tmp_path / f"{name}.yaml" for name in ("_base", *files)}


def test_a_params_file_extends_a_base_and_sets_only_what_differs(tmp_path):
    """Mappings merge key by key, lists and scalars replace, null removes an inherited dataset (elsewhere it
    is a value), a base may extend another, and what is loaded is flat: no `extends` in a stored config."""
    paths = _chain(tmp_path, _mid="extends: _base.yaml\nlora: {target_modules: [q_proj, v_proj]}\n",
                   mine="extends: _mid.yaml\nsize: mine\ndpo: {beta: 0.3}\nlora: {target_modules: [o_proj]}\n"
                        "data: {preference: {ultrafeedback: null}, sft: {alpaca: {max_samples: 7}}}\n"
                        "probes: {file: null, samples_per_prompt: 1}\n")
    tiny, cfg = load_config("tiny"), load_config("mine", params_dir=tmp_path)
    assert cfg.source == str(paths["mine"]) and cfg.size == "mine"
    assert cfg.dpo.beta == 0.3 and cfg.dpo.max_steps == tiny.dpo.max_steps  # the rest of dpo: inherited
    assert cfg.lora.target_modules == ["o_proj"]  # a list replaces the inherited one, never extends it
    assert list(cfg.data.preference) == ["hh-rlhf"]
    assert cfg.data.sft["alpaca"].max_samples == 7 and cfg.data.sft["alpaca"].id == "tiny"
    expected = tiny.to_dict()
    expected.update(size="mine", source=str(paths["mine"]))
    expected["dpo"]["beta"], expected["lora"]["target_modules"] = 0.3, ["o_proj"]
    del expected["data"]["preference"]["ultrafeedback"]
    expected["data"]["sft"]["alpaca"]["max_samples"], expected["probes"]["samples_per_prompt"] = 7, 1
    assert cfg.to_dict() == expected and "extends" not in cfg.to_dict()
    assert available_sizes(tmp_path) == ["mine"]  # _base and _mid are bases, not sizes
    with pytest.raises(ConfigError, match=r"^size: '_base' is a base that params files extend, not a size; "
                                          r"available sizes: mine$"):
        load_config("_base", params_dir=tmp_path)


def test_the_real_sizes_extend_one_base_and_tiny_stands_alone():
    assert "_qlora" not in available_sizes()
    per_size = {"extends", "size", "target_gpu", "model", "sft", "dpo", "simpo", "reward", "ppo", "capabilities"}
    for size in SIZES[1:]:
        text = params_path(size).read_text()
        raw = yaml.safe_load(text)
        assert raw["extends"] == "_qlora.yaml" and set(raw) <= per_size, size
        assert len(text.splitlines()) <= 25, size
    assert "extends" not in yaml.safe_load(params_path("tiny").read_text())


def _error(call) -> str:
    with pytest.raises(ConfigError) as err:
        call()
    assert "\n" not in str(err.value)  # one line
    return str(err.value)


def test_a_bad_extends_is_one_line_naming_the_file(tmp_path):
    paths = _chain(tmp_path, lost="extends: _nope.yaml\n", a="extends: b.yaml\n", b="extends: a.yaml\n",
                   me="extends: me.yaml\n", num="extends: 3\n",
                   drop="extends: _base.yaml\ndata: {preference: {shp: null}}\n")
    assert _error(lambda: load_config(str(paths["lost"]))) == (
        f"{paths['lost']}: extends: no such file {tmp_path / '_nope.yaml'} (nor {PARAMS_DIR / '_nope.yaml'})")
    assert _error(lambda: load_config(str(paths["a"]))) == (
        f"{paths['b']}: extends: a.yaml makes a cycle ({paths['a']} -> {paths['b']} -> {paths['a']})")
    assert "me.yaml makes a cycle" in _error(lambda: load_config(str(paths["me"])))
    assert _error(lambda: load_config(str(paths["num"]))) == (
        f"{paths['num']}: extends: expected the path of a params file (relative to this one), got 3")
    assert _error(lambda: load_config(str(paths["drop"]))) == (
        f"{paths['drop']}: data.preference.shp: null removes an inherited entry, but data.preference inherits "
        "none named 'shp'; it has ultrafeedback, hh-rlhf")
    assert _error(lambda: load_config("tiny", ["extends=_qlora.yaml"])) == (
        "override extends=_qlora.yaml: only a params file's own top level names the file it extends")


def test_an_error_in_an_inherited_value_names_the_file_it_came_from(tmp_path):
    paths = _chain(tmp_path, child="extends: _base.yaml\nsize: child\n")
    paths["_base"].write_text(paths["_base"].read_text().replace("  beta: 0.1\n", "  beta: -1\n"))
    base, child = paths["_base"], paths["child"]
    assert _error(lambda: load_config(str(child))) == (
        f"{base} (inherited by {child}): dpo.beta: expected a number > 0, got -1.0")
    child.write_text(child.read_text() + "dpo: {beta: -2}\n")  # the child's own value is the child's
    assert _error(lambda: load_config(str(child))) == f"{child}: dpo.beta: expected a number > 0, got -2.0"
    assert _error(lambda: load_config(str(child), ["dpo.beta=-3"])) == (
        "override dpo.beta=-3: expected a number > 0, got -3.0")
    child.write_text("extends: _base.yaml\nsize: child\ndpo: null\n")  # a section replaced wholesale
    assert _error(lambda: load_config(str(child))) == f"{child}: dpo: expected a mapping, got NoneType"


def test_a_stored_config_is_self_contained(tmp_path):
    stored = {"extends": "params/_qlora.yaml", **load_config("tiny").to_dict()}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(stored))
    from vd.core.config import load_stored_config

    assert _error(lambda: load_stored_config(tmp_path / "config.yaml")) == (
        f"{tmp_path / 'config.yaml'}: extends: a stored run config holds every value itself (as Config.to_dict "
        "writes it); extends is for params files")


# --- per-stage schemas ---------------------------------------------------------------------------


def test_a_key_of_another_stage_under_a_stage_is_an_error_naming_it(tmp_path):
    shared = ("activation_checkpointing, batch_size, epochs, grad_accum, learning_rate, log_every, lr_scheduler, "
              "max_length, max_steps, optimizer, save_every, warmup_ratio")
    assert _error(lambda: load_config("tiny", ["sft.kl_coef=0.1"])) == (
        f"override sft.kl_coef=0.1: unknown key (kl_coef is a ppo setting); expected one of {shared}")
    path = tmp_path / "x.yaml"
    path.write_text(params_path("tiny").read_text().replace("  log_every: 1\n", "  log_every: 1\n  kl_coef: 0.1\n", 1))
    assert _error(lambda: load_config(str(path))) == (
        f"{path}: sft.kl_coef: unknown key (kl_coef is a ppo setting); expected one of {shared}")
    assert "sft.beta=1: unknown key (beta is a dpo and simpo setting)" in _error(
        lambda: load_config("tiny", ["sft.beta=1"]))
    assert "dpo.gamma=1: unknown key (gamma is a simpo setting)" in _error(lambda: load_config("tiny", ["dpo.gamma=1"]))
    assert "ppo.full_finetune=true: unknown key (full_finetune is a reward setting)" in _error(
        lambda: load_config("tiny", ["ppo.full_finetune=true"]))
    assert _error(lambda: load_config("tiny", ["sft.bta=1"])).startswith(
        "override sft.bta=1: unknown key; expected one of")


def test_each_stage_has_its_own_schema():
    from dataclasses import fields

    from vd.core import registry
    from vd.core.config import StageConfig, stage_schema

    own = {name: {f.name for f in fields(stage_schema(name))} - {f.name for f in fields(StageConfig)}
           for name in registry.STAGES}
    assert own == {"sft": set(), "dpo": {"beta"}, "simpo": {"beta", "gamma"}, "reward": {"full_finetune"},
                   "ppo": {"kl_coef", "response_length", "num_ppo_epochs", "num_mini_batches", "total_episodes",
                           "missing_eos_penalty", "rollout_batch_size"}}
    cfg = load_config("tiny")
    assert all(isinstance(cfg.stage(name), stage_schema(name)) for name in registry.STAGES)


# --- model.chat_template's values, and stored configs from an older vd ---------------------------


def test_the_old_chat_template_names_say_what_they_are_called_now(tmp_path):
    assert load_config("tiny").model.chat_template == "project"
    assert load_config("tiny", ["model.chat_template=model"]).model.chat_template == "model"
    assert _error(lambda: load_config("tiny", ["model.chat_template=own"])) == (
        "override model.chat_template=own: 'own' is called 'model' now; expected one of 'project', 'model'")
    path = tmp_path / "old.yaml"
    path.write_text(params_path("tiny").read_text().replace("chat_template: project", "chat_template: chatml"))
    assert _error(lambda: load_config(str(path))) == (
        f"{path}: model.chat_template: 'chatml' is called 'project' now; expected one of 'project', 'model'")


OLD_STORED = Path(__file__).parent / "fixtures" / "stored_configs" / "tiny-db5d9a2.yaml"  # as vd wrote it at db5d9a2


def test_a_stored_config_from_an_older_vd_loads_as_it_was_trained():
    """Keys added since hold the values such a run was trained with (not today's defaults); old names are
    read as the new ones; the single StageConfig's other-stage fields are dropped from each stage."""
    from vd.core.config import load_stored_config

    text = OLD_STORED.read_text()
    assert "train_chat_tokens" not in text and "rollout_batch_size" not in text and "chat_template: chatml" in text
    cfg = load_stored_config(OLD_STORED)
    assert cfg.lora.train_chat_tokens is False  # that vd trained no chat-token rows (today's default: true)
    assert cfg.ppo.rollout_batch_size == 64 and cfg.data.synthetic.base_url is None
    assert cfg.model.chat_template == "project" and not hasattr(cfg.sft, "kl_coef")
    assert cfg.judge.chat_template_kwargs is None  # scoring only: today's default


def test_a_real_size_file_copied_elsewhere_still_extends_the_shipped_base(tmp_path):
    """docs/usage.md: copy a params file, give it its own size; its `extends: _qlora.yaml` finds the shipped
    base when the copy's folder has none."""
    mine = tmp_path / "mine.yaml"
    mine.write_text((PARAMS_DIR / "llama3-3b.yaml").read_text().replace("size: llama3-3b", "size: mine"))
    cfg, shipped = load_config(str(mine)), load_config("llama3-3b")
    assert cfg.size == "mine" and {**cfg.to_dict(), "size": "llama3-3b", "source": ""} == \
        {**shipped.to_dict(), "source": ""}


def test_the_names_accepted_without_transformers_are_transformers_own():
    """Loading params never imports transformers for the names the shipped files use; those are its own."""
    from vd.core import schema

    optimizers, schedulers = schema._transformers_names()
    assert schema.COMMON_OPTIMIZERS <= optimizers and schema.COMMON_SCHEDULERS <= schedulers
