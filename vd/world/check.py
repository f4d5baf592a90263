"""Whether a cached tiny world is whole: what its build wrote (the model's weights, the tokenizer, every
dataset) against the sha256s its manifest recorded, checked wherever the world is loaded (vd.world's
ensure_world) and once per process for each state of its files. A damaged world (a truncated model file,
an edited dataset) is one line naming the file and what to do, never a model that loads wrong.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

from vd.core.errors import ConfigError
from vd.core.io import atomic_write_json
from vd.world.build import DATASETS, TinyWorld, weights_hash

VERIFIED = ".verified.json"  # the weight file's bytes whose tensors matched the manifest once
_checked: set[tuple] = set()  # (world folder, its files' sizes and mtimes) found whole in this process


class WorldDamaged(ConfigError):
    """A file of the cached tiny world does not match its manifest."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_world(world: TinyWorld) -> TinyWorld:
    """`world`, or WorldDamaged naming the first file that differs from what the manifest recorded."""
    remedy = f"the tiny world is damaged: delete {world.root} and run `vd world` to build it again (minutes)"
    try:
        manifest = json.loads((world.root / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        raise WorldDamaged(f"{world.root / 'manifest.json'}: unreadable ({e}); {remedy}") from None
    files = sorted(p for p in world.model_dir.iterdir() if p.is_file()) + [world.dataset_path(n) for n in DATASETS]
    try:
        state = (str(world.root), tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files))
    except FileNotFoundError as e:
        raise WorldDamaged(f"{e.filename}: missing; {remedy}") from None
    if state in _checked:
        return world
    expected = [(world.model_dir / "tokenizer.json", manifest.get("tokenizer_sha256"))]
    expected += [(world.dataset_path(n), d.get("sha256")) for n, d in manifest.get("datasets", {}).items()]
    for path, sha in expected:
        if _sha256(path) != sha:
            raise WorldDamaged(f"{path}: its sha256 differs from the manifest's; {remedy}")
    weights = next((p for p in files if p.suffix == ".safetensors"), world.model_dir / "model.safetensors")
    stamp = world.root / VERIFIED
    file_sha = _sha256(weights) if weights.is_file() else None
    verified = file_sha is not None and stamp.is_file() and json.loads(stamp.read_text()).get(weights.name) == file_sha
    if not verified:  # loading the model to hash its tensors costs seconds: once per state of the file
        if _model_hash(world.model_dir) != manifest.get("weights_sha256"):
            raise WorldDamaged(f"{weights}: the model's weights differ from the manifest's weights_sha256; {remedy}")
        with contextlib.suppress(OSError):  # a read-only cache is checked in full each time
            atomic_write_json({weights.name: file_sha}, stamp)
    _checked.add(state)
    return world


def _model_hash(model_dir: Path) -> str | None:
    """weights_hash of the model as transformers loads it (tied weights included); None if it does not load."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return weights_hash(AutoModelForCausalLM.from_pretrained(model_dir))
    except Exception:  # a truncated or garbled file: whatever the loader raises, the file is what is wrong
        return None
    finally:
        if shown:
            with contextlib.suppress(Exception):
                hf_logging.enable_progress_bar()
