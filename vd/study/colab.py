"""What a notebook's first cell does on Colab once it has cloned and installed the repository: work in
the clone, keep the study's data on Google Drive (so a disconnect loses nothing), say what it runs on.

The first cell of every notebook clones and installs the repository (on Colab only: Colab keeps its own
torch) and calls `prepare()`; outside Colab `prepare()` only prints the environment report.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import sys

from vd.core.precision import native_bf16
from vd.study.notebook import repo_root
from vd.world import vd_home

# The public repository, used by every notebook's "Open in Colab" badge and Colab install cell.
# EDIT THIS (and rerun notebooks/_generate.py) when the repository is published or forked: the
# owner below is a placeholder, not a real account.
REPO_URL = "https://github.com/<owner>/value-drifts"
BRANCH = "main"
CLONE = "/content/value-drifts"  # where the first cell clones the repository on Colab
DRIVE_HOME = "/content/drive/MyDrive/value-drifts"


def prepare(drive: bool = True) -> None:
    """On Colab: stop if pip replaced a library the runtime had already imported, work in the clone's
    notebooks/, and with `drive` keep VD_HOME (the tiny world), runs/ and figures/ in MyDrive/value-drifts.
    Everywhere: print the report (versions, GPU, where data go)."""
    if "google.colab" in sys.modules:
        stale = [m for m in ("numpy", "pandas") if m in sys.modules and sys.modules[m].__version__ != md.version(m)]
        if stale:
            raise SystemExit(f"pip replaced {stale}: use Runtime > Restart session, then run the notebook again")
        os.chdir(f"{CLONE}/notebooks")
        if drive:
            from google.colab import drive as colab_drive

            colab_drive.mount("/content/drive")
            for var, path in (("VD_HOME", DRIVE_HOME), ("VD_RUNS_DIR", f"{DRIVE_HOME}/runs"),
                              ("VD_FIGURES_DIR", f"{DRIVE_HOME}/figures")):
                os.environ.setdefault(var, path)
    print(environment_report())


def environment_report() -> str:
    """Versions of the stack, the GPU (or none), and where data go: the notebooks' first output."""
    import platform

    import torch

    def version(pkg):
        try:
            return md.version(pkg)
        except md.PackageNotFoundError:
            return "not installed"

    pkgs = ("value-drifts", "torch", "transformers", "trl", "peft", "datasets", "bitsandbytes", "papermill")
    lines = [f"python {platform.python_version()}; " + ", ".join(f"{p} {version(p)}" for p in pkgs)]
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        lines.append(f"GPU: {props.name}, {props.total_memory / 2**30:.0f} GiB, "
                     f"bf16 {'yes' if native_bf16() else 'no (fp16 compute)'}")
    else:
        lines.append(f"GPU: none (CPU, {os.cpu_count()} cores)")
    lines.append(f"VD_HOME={vd_home()}; repository root {repo_root()}")
    return "\n".join(lines)
