"""The tiny world behind the hub's interfaces (vd.world): its datasets in the hub datasets' own formats
read by the real loaders, its model and data named by the id `tiny`, and its params rules."""

from __future__ import annotations

import pytest

from vd import world
from vd.core import registry
from vd.core.config import ConfigError, load_config
from vd.world.hub_format import HUB_FORMATS, LABELS

LOADERS = {**registry.SFT_DATA, **registry.PREFERENCE_DATA}


@pytest.mark.parametrize("name", HUB_FORMATS)
def test_the_hub_loaders_read_the_worlds_files_back_to_its_rows(tiny_world, name):
    """Each tiny dataset, written in its hub dataset's format, loads through that dataset's own loader to
    exactly the rows the world wrote (nothing skipped, no text changed), labels aside."""
    res = registry.resolve(LOADERS[name])(source=str(tiny_world.hub_path(name)))
    rows = [{k: v for k, v in r.items() if k not in LABELS} for r in tiny_world.load_rows(name)]
    assert not res.skipped and res.rows == rows


def test_tiny_ids_resolve_to_the_worlds_files_and_others_pass_through(tiny_cfg, tiny_world):
    assert world.data_source(tiny_cfg, "tiny", "alpaca") == str(tiny_world.hub_path("alpaca"))
    assert world.data_source(tiny_cfg, "tiny", "synthetic_prompts") == str(tiny_world.dataset_path("synthetic_prompts"))
    assert world.data_source(tiny_cfg, "tatsu-lab/alpaca", "alpaca") == "tatsu-lab/alpaca"
    assert world.model_path(tiny_cfg) == str(tiny_world.model_dir)
    real = load_config("llama3-3b")
    assert world.model_path(real) == "meta-llama/Llama-3.2-3B" and world.prepare(real) is None
    assert world.label(tiny_cfg) == "synthetic tiny world" and world.label(real) == ""


def test_the_worlds_params_rules(tmp_path):
    with pytest.raises(ConfigError, match=r"data.sft.alpaca.id(: |=tiny: )'tiny' names the tiny world's data"):
        load_config("llama3-3b", {"data.sft.alpaca.id": "tiny"})
    with pytest.raises(ConfigError, match=r"tiny.heads(: |=3: )expected a divisor of tiny.hidden_size"):
        load_config("tiny", {"tiny.heads": 3})


@pytest.mark.slow
def test_a_killed_build_leaves_nothing_behind_for_long(tiny_cfg, tiny_world, tmp_path):
    """A build killed (SIGKILL) mid-way leaves `.partial-<hash>-<pid>`; the next ensure_world removes it
    (and a build's lock keeps a running build's partial folder safe)."""
    import os
    import shutil
    import signal
    import subprocess
    import sys
    import time

    from vd.world import ensure_world

    home = tmp_path / "home"
    env = {**os.environ, "VD_HOME": str(home), "OMP_NUM_THREADS": "1"}
    build = subprocess.Popen([sys.executable, "-m", "vd.cli", "world", "--size", "tiny"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list((home / "tiny").glob(".partial-*/data/*.jsonl")) and time.time() < deadline:
        time.sleep(0.05)
    os.kill(build.pid, signal.SIGKILL)
    build.wait()
    assert list((home / "tiny").glob(".partial-*")), "the build was killed before it wrote anything"
    shutil.copytree(tiny_world.root, home / "tiny" / tiny_world.root.name)  # as if built since
    assert ensure_world(tiny_cfg, home=home).root == home / "tiny" / tiny_world.root.name
    assert not list((home / "tiny").glob(".partial-*"))
