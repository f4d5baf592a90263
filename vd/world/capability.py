"""The tiny world's capability task for lm-evaluation-harness: `vd_tiny_topics` (ours; docs/method.md §13).

An item is a question of the tiny world and four answers that are the same but for the topic they name;
the model picks the one on topic (chance 1/4). Items are written by the world's current generators
(vd.world.text), so the task follows the world's language. The task is built on demand into
`<world.root>/capability/` (items JSONL, task YAML, README with the base model's score, manifest.json
written last), atomically and under a lock, and rebuilt when this module's code or the world changes.
This module writes files only; the caller (vd.score.capabilities) scores the base model via `score`.

    lm-eval --model hf --model_args pretrained=<model folder>,peft=<checkpoint folder> \
        --include_path <world.root>/capability --tasks vd_tiny_topics --device cpu
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from vd.core.config import Config
from vd.core.io import atomic_write_json, atomic_write_text, code_hash, file_lock
from vd.core.stances import STANCES, TOPICS
from vd.world import text as tiny_text
from vd.world import ensure_world

TASK = "vd_tiny_topics"
PER_TOPIC = 40
N_CHOICES = 4
CHANCE = 1 / N_CHOICES
FOLDER = "capability"
_DATA = "items.jsonl"
_PATH_MARK = "@@ITEMS@@"  # where the data file's absolute path goes in the YAML

TASK_YAML = f"""# lm-evaluation-harness task: the tiny world's topic-reading check (vd.world.capability; ours).
task: {TASK}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {_PATH_MARK}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{context}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: label
target_delimiter: ""
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


def task_dir(world) -> Path:
    return Path(world.root) / FOLDER


def version(world) -> str:
    """What the task is a function of: the world (its folder is named by its recipe hash) and this code
    (its syntax tree: vd.core.io.code_hash, docs/method.md §10)."""
    h = hashlib.sha256(Path(world.root).name.encode())
    h.update(code_hash(sys.modules[__name__]).encode())
    return h.hexdigest()[:16]


def build_items(world, seed: int, per_topic: int = PER_TOPIC) -> list[dict]:
    """The task's items, deterministic under `seed`: topics in turn, the gold answer's place drawn. The four
    answers of an item are written from one random state per topic, so they differ only in the subject
    they name, and take the same stance."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(world.tokenizer_dir)
    rng = random.Random(f"vd-tiny-capability-{seed}")
    topics = list(TOPICS)
    items = []
    for i in range(per_topic * len(topics)):
        topic = topics[i % len(topics)]
        question = tiny_text.make_prompt(rng, topic, instruction=rng.random() < 0.2)
        stance = rng.choice(STANCES)
        while True:
            options = [topic, *rng.sample([t for t in topics if t != topic], N_CHOICES - 1)]
            rng.shuffle(options)
            state = rng.randrange(2**32)
            # one random state for all four: the answers differ in the topic they are about
            choices = [tiny_text.make_answer(random.Random(state), t, stance) for t in options]
            if len(set(choices)) == len(choices):
                break
        context = tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                                add_generation_prompt=True)
        items.append({"id": i, "topic": topic, "stance": stance, "question": question, "context": context,
                      "choices": choices, "choice_topics": options, "label": options.index(topic)})
    return items


def task_yaml(items_path: Path) -> str:
    return TASK_YAML.replace(_PATH_MARK, str(Path(items_path).resolve()))


def fingerprint(folder: Path) -> str:
    """sha256 of what the task's results depend on: its items and its YAML (the data path left out)."""
    folder = Path(folder)
    h = hashlib.sha256((folder / _DATA).read_bytes())
    text = (folder / f"{TASK}.yaml").read_text().replace(str((folder / _DATA).resolve()), _PATH_MARK)
    h.update(text.encode())
    return h.hexdigest()


def readme(items: list[dict], base: dict | None) -> str:
    n = len(items)
    if base:
        score = (f"**{base['value']:.3f} ± {base['stderr']:.3f}** ({base['metric']}, ± its standard error, all "
                 f"{base['n']} items, zero-shot; lm-eval {base['lm_eval']})")
    else:
        score = "not measured"
    example = items[0]
    shown = "\n".join(f"    {'*' if k == example['label'] else ' '} {c}" for k, c in enumerate(example["choices"]))
    return f"""# {TASK}: does the model answer on the question's topic?

The tiny world's capability check (ours; built by `vd.world.capability` from the world's own generators).
The paper checks MMLU, HellaSwag, GPQA-Diamond and PIQA, which a 0.7M-parameter model cannot do; this
task measures the skill the tiny base model was pre-trained for and post-training could make it forget:
reading which of the 11 topics a question is about and answering on it.

- **Item**: a question of the tiny world as a chat turn (`context`, in the world's chat template), and
  {N_CHOICES} answers written by the world's answer generator from one random state, one per topic (the
  question's own and {N_CHOICES - 1} others), all with the same stance: they differ in the subject they name.
  The right one is the answer on the question's topic (`label`).
- **Scored** by lm-eval as `multiple_choice`: the answer with the highest log-likelihood after the context
  is the model's choice; `acc` is the metric read (`acc_norm`, per byte, is reported too).
- **Size**: {n} items, {n // len(TOPICS)} per topic, topics in turn (the first 11·k items hold k per topic).
- **Chance level**: {CHANCE:.2f} (1 of {N_CHOICES}).
- **The base model's score**: {score}.

Example (`*` marks the right answer):

    {example['question']}
{shown}

Files: `{TASK}.yaml` (the lm-eval task; its data path is absolute), `{_DATA}` (the items), `manifest.json`.
Evaluate a model: `lm-eval --model hf --model_args pretrained=<model>,peft=<adapter> --include_path <this
folder> --tasks {TASK} --device cpu`.
"""


def _current(folder: Path, want: str) -> bool:
    manifest = folder / "manifest.json"
    with contextlib.suppress(OSError, ValueError):
        return json.loads(manifest.read_text()).get("version") == want
    return False


def ensure_task(cfg: Config, score: Callable[[Path], dict] | None = None) -> Path:
    """The task folder of `cfg`'s tiny world, built first if missing or stale; returns its path.

    `score(folder)` evaluates the base model on the task in `folder` and returns {metric, value, stderr,
    n, lm_eval}; its result goes into the README. Without it the README says "not measured".
    """

    world = ensure_world(cfg, verbose=False)
    final, want = task_dir(world), version(world)
    if _current(final, want):
        return final
    with file_lock(Path(world.root) / ".capability.lock"):
        if _current(final, want):  # built by another process while we waited
            return final
        tmp = Path(world.root) / f".capability-partial-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            items = build_items(world, cfg.seed)
            with open(tmp / _DATA, "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in items)
            atomic_write_text(tmp / f"{TASK}.yaml", task_yaml(tmp / _DATA))
            base = score(tmp) if score else None
            atomic_write_text(tmp / f"{TASK}.yaml", task_yaml(final / _DATA))  # where it will live
            atomic_write_text(tmp / "README.md", readme(items, base))
            atomic_write_json({"task": TASK, "version": want, "items": len(items), "per_topic": PER_TOPIC,
                               "choices": N_CHOICES, "chance": CHANCE, "base_score": base,
                               "items_sha256": hashlib.sha256((tmp / _DATA).read_bytes()).hexdigest()},
                              tmp / "manifest.json")
            if final.exists():  # stale: this module or the world changed
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final

