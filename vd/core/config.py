"""Load and validate `params/<size>.yaml` into typed objects; apply overrides from notebooks or the CLI.

Every stage of the study reads one `Config`. A bad file fails here, before any model is loaded, with
an error that names the file, the key path and what was expected:

    ConfigError: params/tiny.yaml: dpo.beta: expected a number > 0, got -0.1

Overrides use dotted keys (`dpo.beta=0.2`, `probes.samples_per_prompt=2`); their values are parsed as
YAML, so `0.2` is a float, `true` a bool and `[q_proj, v_proj]` a list. An override that sets an entry of
a named mapping (`data.sft`, `data.preference`) to null removes it, e.g. `data.preference.ultrafeedback=null`
(so that nothing reads that dataset); elsewhere null is a value like any other. A value that an
override set and that fails validation is blamed on the override, not on the file:

    ConfigError: override dpo.beta=abc: expected a number, got 'abc'
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import yaml

from vd.core import overrides as override
from vd.core import registry
from vd.core.errors import ConfigError  # noqa: F401  (vd.core.config.ConfigError, as everyone imports it)
from vd.core.schema import *  # noqa: F401,F403  (the sections: vd.core.config.Config, StageConfig, ...)
from vd.core.schema import Config, DataConfig, StageConfig  # noqa: F401

PARAMS_DIR = Path(__file__).resolve().parents[2] / "params"


# --- loading ----------------------------------------------------------------------------------


def available_sizes(params_dir: Path | None = None) -> list[str]:
    return sorted(p.stem for p in Path(params_dir or PARAMS_DIR).glob("*.yaml"))


def params_path(size: str, params_dir: Path | None = None) -> Path:
    """The params file of `size`; `size` may also be a path to a YAML file."""
    if size.endswith((".yaml", ".yml")):
        return Path(size)
    return Path(params_dir or os.environ.get("VD_PARAMS_DIR") or PARAMS_DIR) / f"{size}.yaml"


def load_config(size: str = "tiny", overrides: dict[str, Any] | list[str] | None = None,
                params_dir: Path | None = None) -> Config:
    """Load `params/<size>.yaml`, apply `overrides` (dotted keys), validate, return a `Config`."""
    path = params_path(size, params_dir)
    if not path.is_file():
        sizes = ", ".join(available_sizes(params_dir)) or "(none found)"
        raise ConfigError(f"size: no params file {path} for size {size!r}; available sizes: {sizes}")
    return _validate(_read_yaml(path), path, overrides)


def load_stored_config(path: str | Path, overrides: dict[str, Any] | list[str] | None = None) -> Config:
    """The config a run was trained under (its `config.yaml`, as Config.to_dict wrote it), `overrides` on top."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file; a run folder made by `vd train` keeps the config it was trained "
                          "under here (vd score: pass --size to score under a params file instead)")
    raw = _read_yaml(path)
    raw.pop("source", None)  # the file the run's config was first loaded from; now it is this one
    return _validate(raw, path, overrides)


def _read_yaml(path: Path) -> dict:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a UTF-8 text file ({e.reason} at byte {e.start})") from None
    if raw is None:
        raise ConfigError(f"{path}: the file is empty; expected a params file with the sections "
                          f"{', '.join(_top_level_keys())} (copy one from {PARAMS_DIR})")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return raw


def _validate(raw: dict, path: Path, overrides) -> Config:
    """The Config of a params mapping with `overrides` applied; an invalid value an override set is blamed on it."""
    hints = get_type_hints(DataConfig)
    named = {f"data.{name}" for name, hint in hints.items() if get_origin(hint) is dict}  # data.sft, data.preference
    applied = override.apply(raw, override.parse(overrides), named)
    try:
        return _build_config(raw, str(path))
    except ConfigError as e:
        raise override.blame(e, str(path), applied) from None


def _build_config(raw: dict, path: str) -> Config:
    sections = {name: raw.pop(name) for name in list(raw) if name in registry.STAGES}
    for name in ("stages", "source"):  # set here, never read from a file
        if name in raw:
            raise ConfigError(f"{path}: {name}: unknown key; expected one of {', '.join(_top_level_keys())}")
    cfg = _build(Config, raw, path, "")
    for name in registry.STAGES:
        if name not in sections:
            raise ConfigError(f"{path}: {name}: missing required key (the {registry.STAGES[name].title} stage's section)")
        cfg.stages[name] = _build(StageConfig, sections[name], path, name)
    cfg.source = path
    _check_cross_fields(cfg, path)
    for check in registry.CONFIG_CHECKS:
        registry.resolve(check)(cfg, path)
    return cfg


def _top_level_keys() -> list[str]:
    """What a params file may hold at the top level: the sections of Config and one per stage."""
    return sorted({f.name for f in dataclasses.fields(Config)} - {"stages", "source"} | set(registry.STAGES))


def _build(cls, raw: Any, path: str, where: str):
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: {where or 'top level'}: expected a mapping, got {type(raw).__name__}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        expected = sorted(fields) if where else _top_level_keys()
        raise ConfigError(f"{path}: {key}: unknown key; expected one of {', '.join(expected)}")
    values = {}
    for name, f in fields.items():
        key = f"{where}.{name}" if where else name
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{path}: {key}: missing required key")
            continue
        value = _coerce(hints[name], raw[name], path, key)
        check = f.metadata.get("check")
        if check and value is not None and not check[0](value):
            expected = check[1](value) if callable(check[1]) else check[1]
            raise ConfigError(f"{path}: {key}: expected {expected}, got {value!r}")
        values[name] = value
    return cls(**values)


def _coerce(hint, value, path: str, key: str):
    origin, args = get_origin(hint), get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, path, key)
            except ConfigError as e:
                errors.append(str(e).split(": expected ", 1)[-1])
        raise ConfigError(f"{path}: {key}: expected {' or '.join(errors)}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{path}: {key}: expected one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: {key}: expected a mapping, got {value!r}")
        return {k: _coerce(args[1], v, path, f"{key}.{k}") for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{path}: {key}: expected a list, got {value!r}")
        return [_coerce(args[0], v, path, f"{key}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path, key)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: {key}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: {key}: expected an integer, got {value!r}")
        return value
    if hint is float:
        # YAML reads 1e-5 (no dot) as a string; accept it as the number the user meant.
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: {key}: expected a number, got {value!r}")
        if not math.isfinite(value):  # YAML reads .inf and .nan as floats; no setting takes either
            raise ConfigError(f"{path}: {key}: expected a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: {key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"config schema: unsupported type {hint} at {key}")  # a bug in this module


def _check_cross_fields(cfg: Config, path: str) -> None:
    for name in cfg.data.sft:
        if name not in registry.SFT_DATA:
            raise ConfigError(f"{path}: data.sft.{name}: unknown SFT dataset; expected one of "
                              f"{', '.join(registry.SFT_DATA)}")
    for name in cfg.data.preference:
        if name not in registry.PREFERENCE_DATA:
            raise ConfigError(f"{path}: data.preference.{name}: unknown preference dataset; expected one of "
                              f"{', '.join(registry.PREFERENCE_DATA)} (synthetic data are configured under data.synthetic)")


def check_choice(name: str, value: str, choices) -> str:
    """Validate a notebook/CLI parameter such as `algo` against its allowed values."""
    if value not in choices:
        raise ConfigError(f"parameter {name}: expected one of {', '.join(choices)}, got {value!r}")
    return value
