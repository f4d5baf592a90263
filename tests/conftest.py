"""Shared fixtures. The tiny world is built once per machine (in $VD_HOME, default
~/.cache/value-drifts) and reused by every test and by `make reproduce`."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


@pytest.fixture(scope="session")
def tiny_cfg():
    from vd.core.config import load_config

    return load_config("tiny")


@pytest.fixture(scope="session")
def tiny_world(tiny_cfg):
    from vd.world.build import ensure_world

    return ensure_world(tiny_cfg)


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for a module (`pytestmark = pytest.mark.usefixtures("one_thread")`): its small
    models gain nothing from a second, which the other test process of `make test` is using (2 spinning
    OpenMP threads made them several times slower: benchmarks/RESULTS.md)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
