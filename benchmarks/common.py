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


def real_sizes() -> list[str]:
    """The real sizes whose published architectures vd.models.architectures holds."""
    from vd.models.architectures import ARCHITECTURES

    return list(ARCHITECTURES)


def model_config(size: str, num_labels: int | None = None, **changes):
    """The transformers config of `size`'s base checkpoint (vd.models.architectures; `changes` override fields)."""
    from vd.models.architectures import ARCHITECTURES, published_config

    if size not in ARCHITECTURES:
        raise SystemExit(f"vd.models.architectures: no size {size!r}; expected one of {', '.join(real_sizes())}")
    config = published_config(ARCHITECTURES[size]["hub_id"], **changes)
    if num_labels is not None:
        config.num_labels = num_labels
    return config
