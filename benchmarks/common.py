"""What every benchmark records beside its numbers, and the one results file they share."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results.json"


def machine_info() -> dict:
    import torch

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=RESULTS.parent, check=False).stdout.strip()
    except OSError:
        commit = ""
    return {"date": datetime.date.today().isoformat(), "commit": commit, "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def merge_results(section: str, values: dict, path: Path = RESULTS) -> None:
    """Replace `section` of benchmarks/results.json (atomically), keeping the other sections."""
    from vd.core.io import atomic_write_json

    results = json.loads(path.read_text()) if path.is_file() else {}
    results[section] = values
    atomic_write_json(results, path)


MODEL_CONFIGS = Path(__file__).resolve().parent / "model_configs.json"


def real_sizes() -> list[str]:
    """The real sizes whose architectures model_configs.json holds."""
    return [k for k in json.loads(MODEL_CONFIGS.read_text()) if not k.startswith("_")]


def model_config(size: str, num_labels: int | None = None, **changes):
    """The transformers config of `size`'s base checkpoint, from model_configs.json (`changes` override fields)."""
    from transformers import AutoConfig

    entries = json.loads(MODEL_CONFIGS.read_text())
    if size not in entries or size.startswith("_"):
        raise SystemExit(f"{MODEL_CONFIGS}: no size {size!r}; expected one of {', '.join(real_sizes())}")
    fields = dict(entries[size]["config"]) | changes
    config = AutoConfig.for_model(fields.pop("model_type"), **fields)
    if num_labels is not None:
        config.num_labels = num_labels
    return config
