"""Colab: the notebooks' shared first cells (the "Open in Colab" badge, the install cell) and what that
cell does once it has cloned and installed the repository: work in the clone, keep the study's data on
Google Drive (a disconnect loses nothing), say what it runs on. Outside Colab `prepare()` only reports.

    python -m vd.study.colab      # after editing REPO_URL: rewrite every notebook's badge and install cell
"""

from __future__ import annotations

import importlib.metadata as md
import os
import sys
from pathlib import Path

from vd.core.precision import native_bf16
from vd.study.notebook import repo_root
from vd.world import vd_home

# The public repository of every notebook's badge and install cell. Set it when the repository is published
# or forked, then run `python -m vd.study.colab`; "<owner>" marks it as not set yet.
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


# ----------------------------------------------------------------------------- the notebooks' shared cells
def repository_set(url: str = REPO_URL) -> bool:
    return "<owner>" not in url


def badge(notebook: str, url: str = REPO_URL) -> str:
    """The first line under a notebook's title: its "Open in Colab" badge, or, while the repository's
    address is not set, a line saying so (a badge would be a broken link)."""
    if not repository_set(url):
        return ("*Open in Colab: the repository's address is not set yet (`REPO_URL` in `vd/study/colab.py`; "
                "set it, then run `python -m vd.study.colab`).*")
    colab = url.replace("https://github.com/", "https://colab.research.google.com/github/")
    return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"({colab}/blob/{BRANCH}/notebooks/{notebook}.ipynb)")


def install_cell(url: str = REPO_URL) -> str:
    """The second cell of every notebook: on Colab, clone and install the repository, then `prepare()`."""
    guard = (['    raise SystemExit("no repository address yet: see REPO_URL in vd/study/colab.py")']
             if not repository_set(url) else [])
    return "\n".join([
        "# Colab only: clone and install this repository (Colab keeps its own torch); data go to Drive.",
        "import subprocess",
        "import sys",
        "from pathlib import Path",
        "",
        f'REPO = "{url}"  # the repository you opened this from',
        f'DIR = Path("{CLONE}")',
        'if "google.colab" in sys.modules and not DIR.is_dir():',
        *guard,
        f'    subprocess.run(["git", "clone", "--depth", "1", "-b", "{BRANCH}", REPO, str(DIR)], check=True)',
        '    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", f"{DIR}[gpu]"], check=True)',
        "    sys.path.insert(0, str(DIR))",
        "from vd.study.colab import prepare  # noqa: E402",
        "",
        "prepare(drive=True)  # Colab: work in the clone, data on Drive; everywhere: versions, GPU",
    ])


def is_badge_line(line: str) -> bool:
    return line.startswith(("[![Open In Colab]", "*Open in Colab:"))


def sync_notebooks(folder: Path | None = None, url: str = REPO_URL) -> list[Path]:
    """Rewrite the badge line and the install cell of every numbered notebook in `folder` (default: the
    repository's notebooks/) from REPO_URL; return the notebooks changed."""
    import nbformat

    changed = []
    for path in sorted(Path(folder or repo_root() / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        intro = nb.cells[0].source.split("\n")
        nb.cells[0].source = "\n".join(badge(path.stem, url) if is_badge_line(line) else line for line in intro)
        nb.cells[1].source = install_cell(url)
        if nb != nbformat.read(path, as_version=4):
            nbformat.write(nb, path)
            changed.append(path)
    return changed


if __name__ == "__main__":
    print("\n".join(f"rewrote {p}" for p in sync_notebooks()) or "every notebook is up to date")
