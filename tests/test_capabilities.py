"""vd.score.capabilities, vd.study.capabilities and vd.world.capability: capability checks through
lm-evaluation-harness, offline.

The tiny world's task is evaluated for real through lm-eval (base model and a LoRA adapter); the cache
is shown to keep a second call out of lm-eval entirely; the real sizes' tasks are checked against
lm-eval's task registry and their 4-bit loading arguments built on CPU, without the hub; a gated or
unreachable dataset is simulated and must fail with what to do, not a hub traceback.
"""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch

from vd.core.config import ConfigError, load_config
from vd.core.stances import TOPICS
from vd.score import capabilities as C
from vd.study import capabilities as S
from vd.world import capability as T


@pytest.fixture(scope="module")
def task(tiny_cfg, tiny_world):
    return C.tiny_task(tiny_cfg)


@pytest.fixture(scope="module")
def adapter(tmp_path_factory, tiny_world):
    """A LoRA adapter with random weights on the tiny base: a checkpoint that has forgotten things."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_world.model_dir)
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    out = tmp_path_factory.mktemp("run") / "checkpoint-7"
    peft.save_pretrained(out)
    return out


def small(limit=110):
    return load_config("tiny", {"capabilities.limit": limit})


# --- the tiny world's task ----------------------------------------------------------------------------


def test_the_tiny_task_folder_is_built_from_the_world_with_yaml_data_readme(tiny_cfg, tiny_world, task):
    from transformers import AutoTokenizer

    assert task == tiny_world.root / "capability"
    assert {p.name for p in task.iterdir()} == {"vd_tiny_topics.yaml", "items.jsonl", "README.md", "manifest.json"}
    items = [json.loads(line) for line in (task / "items.jsonl").read_text().splitlines()]
    assert len(items) == T.PER_TOPIC * 11
    assert [it["topic"] for it in items[:11]] == list(TOPICS)  # topics in turn
    tok = AutoTokenizer.from_pretrained(tiny_world.tokenizer_dir)
    for it in items:
        assert len(it["choices"]) == T.N_CHOICES == len(set(it["choices"]))
        assert it["choice_topics"][it["label"]] == it["topic"] and len(set(it["choice_topics"])) == T.N_CHOICES
        assert it["context"] == tok.apply_chat_template([{"role": "user", "content": it["question"]}],
                                                        tokenize=False, add_generation_prompt=True)
    # written by the world's generators, deterministically: rebuilding gives the same items
    assert T.build_items(tiny_world, tiny_cfg.seed) == items
    assert str((task / "items.jsonl").resolve()) in (task / "vd_tiny_topics.yaml").read_text()
    manifest = json.loads((task / "manifest.json").read_text())
    assert manifest["chance"] == 0.25 and manifest["items"] == 440 and manifest["version"] == T.version(tiny_world)
    readme = (task / "README.md").read_text()
    assert "Chance level**: 0.25" in readme
    assert f"{manifest['base_score']['value']:.3f} ± {manifest['base_score']['stderr']:.3f}" in readme
    assert not list(tiny_world.root.glob(".capability-partial-*"))  # nothing left of the build


def test_the_base_model_scores_well_above_chance(task):
    base = json.loads((task / "manifest.json").read_text())["base_score"]
    assert base["n"] == 440 and base["metric"] == "acc"
    assert base["value"] - 10 * base["stderr"] > T.CHANCE  # ten standard errors above chance (1/4)
    assert base["value"] > 0.9


# --- evaluation through lm-eval, and the cache ----------------------------------------------------------


@pytest.mark.slow
def test_base_and_adapter_evaluate_through_lm_eval_and_a_second_call_never_reaches_it(
        monkeypatch, tmp_path, tiny_world, adapter, task):
    import lm_eval

    calls, loads = [], []
    real_evaluate, real_hflm = lm_eval.simple_evaluate, C._hflm
    monkeypatch.setattr(lm_eval, "simple_evaluate", lambda *a, **k: calls.append(k) or real_evaluate(*a, **k))
    monkeypatch.setattr(C, "_hflm", lambda *a: loads.append(a) or real_hflm(*a))
    cfg = small()
    base = str(tiny_world.model_dir)
    first = C.evaluate_checkpoint(cfg, base, None, cache_dir=tmp_path)
    damaged = C.evaluate_checkpoint(cfg, base, adapter, cache_dir=tmp_path)
    assert len(calls) == 2 and len(loads) == 2
    assert calls[0]["limit"] == 110 and calls[0]["num_fewshot"] == 0
    assert calls[0]["use_cache"] is None  # the tiny task: seconds, nothing to resume (the group test covers use_cache)
    (b,), (d,) = first, damaged
    assert b["task"] == "vd_tiny_topics" and b["n"] == 110 and not b["cached"] and b["metric"] == "acc"
    assert 0 <= b["stderr"] < 0.05 and len(b["per_item"]["vd_tiny_topics"]) == 110
    assert d["stderr"] > 0 and b["value"] == sum(b["per_item"]["vd_tiny_topics"]) / 110
    assert b["value"] > 0.9 and d["value"] < b["value"] - 0.2  # the random adapter has forgotten the topics
    assert b["key"]["model"] != d["key"]["model"]
    # again: from the result files, without lm-eval or a model
    again = C.evaluate_checkpoint(cfg, base, None, cache_dir=tmp_path) + \
        C.evaluate_checkpoint(cfg, base, adapter, cache_dir=tmp_path)
    assert len(calls) == 2 and len(loads) == 2
    assert [r["cached"] for r in again] == [True, True]
    for old, new in zip((b, d), again):
        assert {k: new[k] for k in ("value", "stderr", "n", "per_item")} == \
            {k: old[k] for k in ("value", "stderr", "n", "per_item")}
    assert len(list((tmp_path / "results").glob("vd_tiny_topics-*.json"))) == 2
    # another budget is another result: evaluated again
    C.evaluate_checkpoint(small(55), base, None, cache_dir=tmp_path)
    assert len(calls) == 3


def test_the_result_key_names_everything_the_result_depends_on(tiny_world, adapter, task):
    cfg = small()
    base = str(tiny_world.model_dir)
    key = C.result_key(cfg, "vd_tiny_topics", C.model_key(base, None))
    assert key["lm_eval"] == C.lm_eval_version() == "0.4.13"
    assert key["task_sha256"] == T.fingerprint(task) and key["limit"] == 110 and key["num_fewshot"] == 0
    assert C.model_key(base, adapter) != C.model_key(base, None)
    other = load_config("tiny", {"capabilities.tasks.vd_tiny_topics.num_fewshot": 2})
    assert C.result_key(other, "vd_tiny_topics", "m")["num_fewshot"] == 2
    assert C.result_key(small(55), "vd_tiny_topics", "m") != C.result_key(cfg, "vd_tiny_topics", "m")


@pytest.mark.slow
def test_a_stage_that_forgets_is_caught_by_the_paired_test(tmp_path, tiny_world, adapter, task):
    run = adapter.parent
    (run / "run.json").write_text(json.dumps({
        "stage": "dpo", "data": "ultrafeedback", "size": "tiny", "base_model": str(tiny_world.model_dir),
        "total_steps": 7, "complete": True,
        "checkpoints": [{"step": 0, "adapter": None}, {"step": 7, "adapter": adapter.name}]}))
    table = C.evaluate_run(run, small(), cache_dir=tmp_path)
    assert list(table["position"]) == ["start", "end"] and list(table["step"]) == [0, 7]
    assert list(table["fraction"]) == [0.0, 1.0] and set(table["chance"]) == {0.25}
    (row,) = S.stage_summary(table).to_dict("records")
    assert row["delta"] == pytest.approx(row["end"] - row["start"])
    assert row["lost"] is True and row["delta"] < -C.DROP_SE * row["delta_se"]
    v = S.verdict(S.stage_summary(table))
    assert v["kept"] is False and v["n_lost"] == 1 and v["worst"]["run"] == run.name


def test_stage_summary_and_verdict_on_hand_made_scores():
    def rows(run, start, end, se=0.02):
        return [{"run": run, "stage": "sft", "data": "x", "position": p, "step": s, "task": "t", "metric": "acc",
                 "value": v, "stderr": se, "n": 4, "chance": 0.25, "per_item": items}
                for p, s, v, items in (("start", 0, start[0], {"t": start[1]}), ("end", 9, end[0], {"t": end[1]}))]

    table = pd.DataFrame(rows("kept", (1.0, [1, 1, 1, 1]), (0.75, [1, 1, 1, 0]))
                         + rows("lost", (1.0, [1, 1, 1, 1]), (0.0, [0, 0, 0, 0]))
                         + rows("noisy", (0.5, [1, 0, 1, 0]), (0.5, [0, 1, 0, 1])))
    summary = S.stage_summary(table).set_index("run")
    assert summary.loc["kept", "delta_se"] == pytest.approx(0.25)  # sd of (0,0,0,-1) / sqrt(4)
    assert summary.loc["kept", "lost"] is False  # -0.25 is one SE
    assert summary.loc["lost", "lost"] is True  # every item lost: SE 0, delta -1
    assert summary.loc["noisy", "delta"] == 0 and summary.loc["noisy", "lost"] is False
    v = S.verdict(summary.reset_index())
    assert v == {"kept": False, "n_pairs": 3, "n_lost": 1,
                 "worst": {"run": "lost", "task": "t", "delta": -1.0, "delta_se": 0.0}}
    # without per-item scores the two stderrs combine as if independent
    plain = S.stage_summary(pd.DataFrame(rows("kept", (0.9, None), (0.8, None), se=0.03))).iloc[0]
    assert plain["delta_se"] == pytest.approx(math.sqrt(2) * 0.03) and plain["lost"] is True


def test_the_paper_comparison_has_a_capability_row():
    from vd.study.paper import paper_comparison

    def summary(delta):
        return pd.DataFrame([{"run": "sft-alpaca", "task": "mmlu", "delta": delta, "delta_se": 0.01,
                              "lost": delta < -0.02}])

    sft = pd.DataFrame(columns=["stage", "data", "topic", "stance", "M", "eta", "eta_ci95", "share_by_10pct", "run"])
    empty = {"sft": sft, "preference": pd.DataFrame(), "synthetic": pd.DataFrame()}
    claim = "post-training keeps capabilities (every stage, start vs end)"
    for delta, verdict in ((-0.01, "agrees"), (-0.05, "differs")):
        comp = paper_comparison(empty, capabilities=summary(delta)).set_index("claim")
        assert comp.loc[claim, "verdict"] == verdict and "MMLU" in comp.loc[claim, "ours"]
    assert claim not in set(paper_comparison(empty)["claim"])  # no capability table: no row


# --- real sizes, without the hub -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("size", ["llama3-3b", "llama3-8b", "qwen3-4b", "qwen3-8b"])
def test_real_sizes_check_the_papers_four_tasks_as_lm_eval_names_them(size):
    cfg = load_config(size)
    assert list(cfg.capabilities.tasks) == list(C.PAPER_TASKS) == ["mmlu", "hellaswag", "gpqa_diamond_zeroshot", "piqa"]
    shots = {t: s.num_fewshot for t, s in cfg.capabilities.tasks.items()}
    assert shots == {"mmlu": 5, "hellaswag": 10, "gpqa_diamond_zeroshot": 0, "piqa": 0}
    C.check_tasks(cfg)  # offline: lm-eval's registry knows every name
    known = C.lm_eval_task_manager().all_tasks
    assert set(cfg.capabilities.tasks) <= set(known)
    note = S.budget_note(cfg)
    assert "≤ 500 items per task (MMLU: per subject)" in note and "MMLU 5-shot acc" in note


@pytest.mark.slow
def test_an_unknown_task_name_is_a_config_error_with_suggestions():
    cfg = load_config("llama3-3b", {"capabilities.tasks": {"hellaswagg": {"num_fewshot": 0}}})
    with pytest.raises(ConfigError, match=r"capabilities.tasks.hellaswagg: not a task or group of lm-eval 0.4.13; "
                                          r"did you mean hellaswag"):
        C.check_tasks(cfg)


def _gated():
    import httpx
    from huggingface_hub.errors import GatedRepoError

    response = httpx.Response(401, request=httpx.Request("GET", "https://huggingface.co/api/datasets/Idavidrein/gpqa"))
    return GatedRepoError("401 Client Error: access to Idavidrein/gpqa is restricted", response=response)


@pytest.mark.slow
def test_a_gated_dataset_fails_with_what_to_do_not_a_hub_traceback(monkeypatch, tmp_path):
    import datasets
    from datasets.exceptions import DatasetNotFoundError

    cfg = load_config("llama3-3b")

    def gated(path, *a, **k):
        raise DatasetNotFoundError(f"Dataset '{path}' is a gated dataset on the Hub. "
                                   "You must be authenticated to access it.")

    monkeypatch.setattr(datasets, "load_dataset", gated)
    with pytest.raises(C.DatasetAccessError) as err:
        C.load_task(cfg, "gpqa_diamond_zeroshot")
    msg = str(err.value)
    for needed in ("Idavidrein/gpqa", "gated", "https://huggingface.co/datasets/Idavidrein/gpqa", "accept its terms",
                   "hf auth login", "huggingface-cli login", "HF_TOKEN", "capabilities.tasks"):
        assert needed in msg
    assert err.value.__cause__ is None and err.value.__suppress_context__  # the hub's traceback is not chained

    # online, the token is checked before the task (and any model) is loaded
    from huggingface_hub import HfApi, constants

    def auth_check(self, repo_id, **kw):
        raise _gated()

    monkeypatch.setattr(constants, "is_offline_mode", lambda: False)
    monkeypatch.setattr(HfApi, "auth_check", auth_check)
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("the dataset was read"))
    with pytest.raises(C.DatasetAccessError, match="accept its terms"):
        C.evaluate_checkpoint(cfg, "meta-llama/Llama-3.2-3B", None, tasks=["gpqa_diamond_zeroshot"], cache_dir=tmp_path)


def test_an_unreachable_dataset_offline_says_so(monkeypatch):
    import datasets

    def offline(path, *a, **k):
        raise ConnectionError(f"Couldn't reach '{path}' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(C.DatasetAccessError, match=r"piqa could not read the dataset baber/piqa from the Hugging "
                                                   r"Face hub: Couldn't reach .*HF_HUB_OFFLINE=1"):
        C.load_task(load_config("llama3-3b"), "piqa")


# --- the preflight: before any run trains -------------------------------------------------------------


def test_preflight_finds_an_uncached_capability_dataset_offline_before_anything_trains(monkeypatch, tmp_path):
    """Notebook 06 trained 9 ablation runs before lm-eval failed on cais/mmlu offline: the preflight reads
    lm-eval's task index (nothing loaded) and looks for each dataset where `datasets` looks offline."""
    from huggingface_hub import constants

    from vd.study import preflight as P
    from vd.train.data import DataError

    cfg = load_config("llama3-3b")
    monkeypatch.setattr(constants, "is_offline_mode", lambda: True)
    monkeypatch.setattr(P, "_datasets_cache", lambda: tmp_path)
    mmlu = P.task_datasets("mmlu")
    assert len(mmlu) == 57 and ("cais/mmlu", "abstract_algebra") in mmlu  # the group's subtasks, through its tags
    assert P.task_datasets("gpqa_diamond_zeroshot") == [("Idavidrein/gpqa", "gpqa_diamond")]
    with pytest.raises(DataError, match=r"params/llama3-3b.yaml: capabilities.tasks.mmlu: reads the dataset cais/mmlu, "
                                        r"and the hub is offline \(HF_HUB_OFFLINE=1\): 57 of its 57 configurations "
                                        r"\(e.g. abstract_algebra\) are not in the datasets cache"):
        P.check_capability_data(cfg)
    # cached as `datasets` prepares them (<namespace>___<name>/<configuration>/<version>/<hash>/): all pass
    from datasets.naming import camelcase_to_snakecase

    for task in cfg.capabilities.tasks:
        for repo, name in P.task_datasets(task):
            owner, data = repo.split("/")
            folder = tmp_path / f"{owner}___{camelcase_to_snakecase(data)}" / (name or "default") / "0.0.0" / "abc"
            folder.mkdir(parents=True)
    P.check_capability_data(cfg)
    (tmp_path / "cais___mmlu" / "virology" / "0.0.0" / "abc").rmdir()
    with pytest.raises(DataError, match=r"1 of its 57 configurations \(e.g. virology\)"):
        P.check_capability_data(cfg)


def test_preflight_needs_a_token_for_gpqa_online_and_checks_nothing_for_the_tiny_task(monkeypatch, tiny_cfg):
    import huggingface_hub
    from huggingface_hub import HfApi, constants

    from vd.study import preflight as P
    from vd.train.data import DataError

    monkeypatch.setattr(constants, "is_offline_mode", lambda: False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(DataError, match=r"capability task gpqa_diamond_zeroshot reads the dataset Idavidrein/gpqa, "
                                        r"which is gated.*HF_TOKEN.* \(no token found\)"):
        P.check_capability_data(load_config("llama3-3b"))

    def auth_check(self, repo_id, **kw):
        raise _gated()

    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_not_a_real_token")
    monkeypatch.setattr(HfApi, "auth_check", auth_check)
    with pytest.raises(DataError, match="accept its terms") as err:
        P.check_capability_data(load_config("llama3-3b"))
    assert "hf_not_a_real_token" not in str(err.value)
    monkeypatch.setattr(C, "lm_eval_task_manager", lambda: pytest.fail("the tiny task needs no lm-eval index"))
    P.check_capability_data(tiny_cfg)


def test_4bit_loading_arguments_are_built_on_cpu(monkeypatch):
    """What a GPU would get, built here: a BitsAndBytesConfig (NF4, double quant, bf16 compute) to
    from_pretrained, the revision for a hub id, and an HFLM that is handed the loaded model."""
    import transformers
    from peft import PeftModel
    from transformers import BitsAndBytesConfig

    got = []

    class Fake:
        def eval(self):
            return self

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained",
                        lambda path, **kw: got.append((path, kw)) or Fake())
    monkeypatch.setattr(PeftModel, "from_pretrained", lambda model, path, **kw: got.append((path, kw)) or Fake())
    monkeypatch.setattr("vd.score.capabilities.load_tokenizer", lambda cfg, path=None, **kw: f"tokenizer of {path}")
    cfg = load_config("llama3-8b")
    model, tok = C.load_checkpoint(cfg, cfg.model.base, None)
    path, kw = got[-1]
    q = kw["quantization_config"]
    assert path == "meta-llama/Llama-3.1-8B" and "revision" in kw
    assert isinstance(q, BitsAndBytesConfig) and q.load_in_4bit and q.bnb_4bit_quant_type == "nf4"
    assert q.bnb_4bit_use_double_quant and q.bnb_4bit_compute_dtype == torch.bfloat16
    assert kw["dtype"] == torch.bfloat16 and kw["device_map"] == {"": 0}
    args = C.hflm_arguments(cfg, model, tok)
    assert args == {"pretrained": model, "tokenizer": "tokenizer of meta-llama/Llama-3.1-8B", "batch_size": 4}
    # a preference stage's start: the merged SFT folder, in 4-bit, no revision; an adapter on top
    C.load_checkpoint(cfg, "/runs/sft-alpaca/merged", "/runs/dpo/checkpoint-9")
    (merged, kw), (adapter, _) = got[-2:]
    assert merged == "/runs/sft-alpaca/merged" and "revision" not in kw and kw["quantization_config"].load_in_4bit
    assert adapter == "/runs/dpo/checkpoint-9"
    assert C.result_key(cfg, "mmlu", "m")["load_in_4bit"] is True


def test_budget_note_and_labels_of_the_tiny_size(tiny_cfg):
    note = S.budget_note(tiny_cfg)
    assert note.startswith("capability budget: ≤ 220 of 440 items per task (paper: full test sets)")
    assert "tiny world topics 0-shot acc" in note and S.budget_note(tiny_cfg, smoke=True).startswith("SMOKE")
    assert C.chance("vd_tiny_topics") == 0.25 and C.chance("piqa") == 0.5 and C.chance("mmlu") == 0.25
    with pytest.raises(ConfigError, match="parameter algos"):
        S.parse_algos("dpo,rlhf")
    assert S.parse_algos("all") == ("ppo", "dpo", "simpo") and S.parse_algos("dpo, simpo") == ("dpo", "simpo")


@pytest.mark.slow
def test_a_group_task_like_mmlu_gives_its_aggregate_and_per_subtask_items(monkeypatch, tmp_path, tiny_cfg, tiny_world,
                                                                          task):
    """mmlu is a group of 57 subtasks in lm-eval; the same code path on a local group of two tiny subtasks."""
    lines = (task / "items.jsonl").read_text().splitlines()
    for name, part in (("a", lines[:22]), ("b", lines[22:55])):
        (tmp_path / f"{name}.jsonl").write_text("\n".join(part) + "\n")
        yaml = T.task_yaml(tmp_path / f"{name}.jsonl").replace("task: vd_tiny_topics", f"task: tiny_part_{name}")
        (tmp_path / f"tiny_part_{name}.yaml").write_text(yaml)
    (tmp_path / "group.yaml").write_text("group: tiny_group\ntask: [tiny_part_a, tiny_part_b]\n"
                                         "aggregate_metric_list:\n  - metric: acc\n    weight_by_size: true\n"
                                         "metadata:\n  version: 1\n")
    manager = C._local_task_manager(str(tmp_path))
    obj = manager.load(["tiny_group"])["groups"]["tiny_group"]
    lm = C._hflm(tiny_cfg, str(tiny_world.model_dir), None)
    out = C._run(lm, obj, manager, "tiny_group", "acc", limit=None, num_fewshot=0, cache_db=None)
    assert out["n"] == 55 and set(out["per_item"]) == {"tiny_part_a", "tiny_part_b"}
    assert [len(v) for v in out["per_item"].values()] == [22, 33]
    flat = [x for v in out["per_item"].values() for x in v]
    assert out["value"] == pytest.approx(sum(flat) / 55)  # the micro average, as mmlu's weight_by_size
    # lm-eval's request cache (use_cache, as for the hub tasks): a second run is served without the model
    db = str(tmp_path / "lm-eval" / "model")
    first = C._run(lm, obj, manager, "tiny_group", "acc", limit=None, num_fewshot=0, cache_db=db)
    assert (tmp_path / "lm-eval" / "model_rank0.db").is_file()
    monkeypatch.setattr(type(lm), "_loglikelihood_tokens", lambda *a, **k: pytest.fail("the model was called"))
    obj = manager.load(["tiny_group"])["groups"]["tiny_group"]
    again = C._run(lm, obj, manager, "tiny_group", "acc", limit=None, num_fewshot=0, cache_db=db)
    assert again["per_item"] == first["per_item"] == out["per_item"]
