"""The tiny world: the whole study in miniature, built locally (tokenizer, base model, datasets), offline.

This package is its only home. The rest of `vd` meets it through the interfaces of a hub model and hub
data: a params file names it with the id `tiny` (`model.base`, `data.*.<name>.id`,
`data.synthetic.prompts_file`, `data.synthetic.generator`), and the functions below turn those ids into
a model folder, dataset files in the hub datasets' formats, and an answer writer; any other id passes
through, so the same code serves every size. A cached world is checked against its manifest wherever it
is loaded (vd.world.check).

    world.model_path(cfg)                          # the base model's folder (built once) or the hub id
    world.data_source(cfg, "tiny", "alpaca")      # a local file in tatsu-lab/alpaca's format
"""

from __future__ import annotations

from pathlib import Path

from vd.core.config import Config, ConfigError
from vd.world import build
from vd.world.build import TinyWorld, vd_home  # noqa: F401  (the package's interface)
from vd.world.check import WorldDamaged, check_world  # noqa: F401
from vd.world.text import answer_writer

TINY = "tiny"  # the id that names the tiny world's model and data in a params file


def uses_world(cfg: Config) -> bool:
    """Whether `cfg` studies the tiny world's model."""
    return cfg.model.base == TINY


def check_config(cfg: Config, path: str) -> None:
    """The params rules the tiny world sets (run by vd.core.config.load_config)."""
    if cfg.tiny is not None and cfg.tiny.hidden_size % cfg.tiny.heads:
        raise ConfigError(f"{path}: tiny.heads: expected a divisor of tiny.hidden_size ({cfg.tiny.hidden_size})")
    if cfg.tiny is not None:
        return
    if uses_world(cfg):
        raise ConfigError(f"{path}: tiny: model.base is 'tiny' but the file has no `tiny:` recipe section")
    named = [f"data.{kind}.{name}.id" for kind in ("sft", "preference")
             for name, ds in getattr(cfg.data, kind).items() if ds.id == TINY]
    named += ["data.synthetic.prompts_file"] if cfg.data.synthetic.prompts_file == TINY else []
    if named:
        raise ConfigError(f"{path}: {named[0]}: 'tiny' names the tiny world's data, which needs the "
                          "`tiny:` recipe section (and model.base: tiny)")


def ensure_world(cfg: Config, home: Path | None = None, verbose: bool = True) -> TinyWorld:
    """The tiny world of `cfg`, built first if it is not cached, and found whole (WorldDamaged if not)."""
    return check_world(build.ensure_world(cfg, home, verbose))


def model_path(cfg: Config) -> str:
    """Where the base model of `cfg` is: the tiny world's model folder (built if needed) or the hub id."""
    return str(ensure_world(cfg).model_dir) if uses_world(cfg) else cfg.model.base


def data_source(cfg: Config, source: str, name: str) -> str:
    """A dataset id as the loaders take it: `tiny` becomes the tiny world's file of `name` in its hub
    dataset's format (the synthetic prompts: the world's own prompt file); any other id is returned."""
    if source != TINY:
        return source
    world = ensure_world(cfg, verbose=False)
    return str(world.dataset_path(name) if name == "synthetic_prompts" else world.hub_path(name))


def answer_writer_from_config(cfg: Config):
    """The tiny world's writer of stance-taking answers for the synthetic value-gap pairs (generator `tiny`)."""
    return answer_writer(cfg.seed)


def writer_version(cfg: Config) -> str | None:
    """What the tiny world's answer writer is (its world's recipe hash, which hashes the writer's code) where
    `cfg` writes the synthetic pairs with it (generator `tiny`); None for any other writer."""
    return ensure_world(cfg, verbose=False).manifest["recipe_hash"] if cfg.data.synthetic.generator == TINY else None


def label(cfg: Config) -> str:
    """How figure titles name what was studied: "synthetic tiny world" for it, "" for a real model."""
    return "synthetic tiny world" if uses_world(cfg) else ""


def prepare(cfg: Config, verbose: bool = True) -> TinyWorld | None:
    """Build the tiny world if `cfg` studies it (None otherwise) and run its model on one CPU thread: its
    matrices gain nothing from a second thread, which on a busy machine makes every op wait
    (docs/decisions.md). The world is built first, since its pre-training sets its own threads."""
    if not uses_world(cfg):
        return None
    import torch

    world = ensure_world(cfg, verbose=verbose)
    torch.set_num_threads(1)
    return world
