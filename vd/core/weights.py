"""A model by what it is, not where it is: the digest of a folder's weight files, or a hub id and revision.

Training models (vd.models.loading), the start of every run and the `hf` judge (vd.judge.hf) are all
identified here, so a model replaced in place gets a new identity and a copy elsewhere keeps its own.

    model_identity("runs/tiny/sft-x/merged")   # "sha256:<16 hex>"
    model_identity("Qwen/Qwen2.5-7B-Instruct")  # "hub:Qwen/Qwen2.5-7B-Instruct@main"
    tokenizer_digest("judges/qwen")             # "<16 hex>": what turns text into the model's input
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

_BLOCK = 1 << 20  # bytes per read
# What a folder's tokenizer reads: its vocabulary, merges, special tokens and chat template (where present).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "chat_template.json",
                   "special_tokens_map.json", "added_tokens.json", "tokenizer.model", "vocab.json", "merges.txt")


def weight_files(folder: str | Path) -> list[Path]:
    """The weight files of a model folder: its *.safetensors (shards included), else its *.bin, sorted."""
    folder = Path(folder)
    return sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))


@lru_cache(maxsize=64)
def _digest(folder: str, stamp: tuple, named: bool = False) -> str:
    # `stamp` (name, size, mtime of every file) is only the memo's key: a file rewritten in place re-hashes.
    h = hashlib.sha256()
    for name, _, _ in stamp:
        if named:  # files that may be absent: a file's bytes moved to another name is another tokenizer
            h.update(f"{name}\0".encode())
        with open(Path(folder) / name, "rb") as f:
            for block in iter(lambda: f.read(_BLOCK), b""):
                h.update(block)
    return h.hexdigest()[:16]


def weights_digest(folder: str | Path) -> str:
    """sha256 (16 hex digits) of the bytes of a folder's weight files (weight_files), in name order;
    memoised per process while no file's size or modification time changes."""
    files = weight_files(folder)
    if not files:
        raise FileNotFoundError(f"{folder}: no model weights (*.safetensors or *.bin)")
    return _digest(str(Path(folder).resolve()), _stamp(files))


def _stamp(files: list[Path]) -> tuple:
    return tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files)


def tokenizer_digest(folder: str | Path) -> str:
    """sha256 (16 hex digits) of a folder's tokenizer files (TOKENIZER_FILES present, their names and
    bytes): a replaced chat template or vocabulary is another digest; memoised as weights_digest is."""
    files = [Path(folder) / name for name in TOKENIZER_FILES if (Path(folder) / name).is_file()]
    return _digest(str(Path(folder).resolve()), _stamp(files), named=True)


def model_identity(model: str, revision: str | None = None) -> str:
    """A local folder by the digest of its weight files ("sha256:..."), so a copy elsewhere is the same
    model and a retrained model saved to the same path is not; a hub id by its id and revision
    ("hub:<id>@<revision or main>"). Keys cached generations and judgments, and tells whether a run
    folder still matches its params."""
    if not Path(model).is_dir():
        return f"hub:{model}@{revision or 'main'}"
    return f"sha256:{weights_digest(model)}"
