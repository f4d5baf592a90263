"""Every params file loads; each kind of bad input gives an error naming the file, key and expectation."""

import pytest
import yaml

from vd.core.config import ConfigError, available_sizes, check_choice, load_config, params_path

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
