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

A params file may extend another (`extends: _qlora.yaml`, vd.core.extends); files named `_*.yaml` are
such bases, not sizes. A run's stored config (`config.yaml`, Config.to_dict) is self-contained.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import yaml

from vd.core import extends, registry
from vd.core import overrides as override
from vd.core.errors import ConfigError  # noqa: F401  (vd.core.config.ConfigError, as everyone imports it)
from vd.core.schema import *  # noqa: F401,F403  (the sections: vd.core.config.Config, StageConfig, ...)
from vd.core.schema import Config, DataConfig, StageConfig, stage_schema  # noqa: F401

PARAMS_DIR = Path(__file__).resolve().parents[2] / "params"


# --- loading ----------------------------------------------------------------------------------


def available_sizes(params_dir: Path | None = None) -> list[str]:
    """The sizes of a params folder: its `*.yaml` files but the bases others extend (`_*.yaml`)."""
    return sorted(p.stem for p in Path(params_dir or PARAMS_DIR).glob("*.yaml") if not p.name.startswith("_"))


def params_path(size: str, params_dir: Path | None = None) -> Path:
    """The params file of `size`; `size` may also be a path to a YAML file."""
    if size.endswith((".yaml", ".yml")):
        return Path(size)
    return Path(params_dir or os.environ.get("VD_PARAMS_DIR") or PARAMS_DIR) / f"{size}.yaml"


def load_config(size: str = "tiny", overrides: dict[str, Any] | list[str] | None = None,
                params_dir: Path | None = None) -> Config:
    """Load `params/<size>.yaml`, apply `overrides` (dotted keys), validate, return a `Config`."""
    path = params_path(size, params_dir)
    base = size.startswith("_") and path.name == f"{size}.yaml"  # a size's name, not a path
    if base or not path.is_file():
        what = f"{size!r} is a base that params files extend, not a size" if base else \
            f"no params file {path} for size {size!r}"
        raise ConfigError(f"size: {what}; available sizes: {', '.join(available_sizes(params_dir)) or '(none found)'}")
    raw, origins = extends.read_chain(path, _read_yaml, _named_mappings(), shipped=PARAMS_DIR)
    return _validate(raw, path, overrides, origins)


def load_stored_config(path: str | Path, overrides: dict[str, Any] | list[str] | None = None) -> Config:
    """The config a run was trained under (its `config.yaml`, as Config.to_dict wrote it), `overrides` on top."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file; a run folder made by `vd train` keeps the config it was trained "
                          "under here (vd score: pass --size to score under a params file instead)")
    raw = _read_yaml(path)
    if extends.KEY in raw:
        raise ConfigError(f"{path}: {extends.KEY}: a stored run config holds every value itself (as Config.to_dict "
                          "writes it); extends is for params files")
    raw.pop("source", None)  # the file the run's config was first loaded from; now it is this one
    return _validate(_as_stored(raw), path, overrides)


def stored_params(path: str | Path) -> dict:
    """A run's stored config laid out as Config.to_dict lays it out, as load_stored_config reads it; one that no
    longer validates (a check added since) as stored, with the same legacy values and names filled in."""
    try:
        return load_stored_config(path).to_dict()
    except ConfigError:
        raw = _read_yaml(Path(path))
        raw.pop("source", None)
        return _as_stored(raw)


def _as_stored(raw: dict) -> dict:
    """A stored config as this vd reads it: a key an older vd did not write takes its legacy value, an old
    name of a value its new one, and a stage section drops the other stages' fields (an older vd wrote
    every stage's under each)."""
    _upgrade(Config, raw)
    foreign = {f.name for name in registry.STAGES for f in dataclasses.fields(stage_schema(name))}
    for name in registry.STAGES:
        section, schema = raw.get(name), stage_schema(name)
        if isinstance(section, dict):
            for key in foreign - {f.name for f in dataclasses.fields(schema)}:
                section.pop(key, None)
            _upgrade(schema, section)
    return raw


def _upgrade(cls, raw: dict) -> None:
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name not in raw:
            if "legacy" in f.metadata:
                raw[f.name] = copy.deepcopy(f.metadata["legacy"])
            continue
        value, hint = raw[f.name], hints[f.name]
        renamed = f.metadata.get("renamed", {})
        if isinstance(value, str) and value in renamed:
            raw[f.name] = renamed[value]
        if not isinstance(value, dict):
            continue
        if get_origin(hint) is dict:  # a mapping of sections (data.sft), or of plain values
            entries = [(get_args(hint)[1], entry) for entry in value.values()]
        else:  # a section, or an optional one
            entries = [(arg, value) for arg in (hint, *get_args(hint))]
        for section, entry in entries:
            if dataclasses.is_dataclass(section) and isinstance(entry, dict):
                _upgrade(section, entry)


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


def _named_mappings() -> set[str]:
    """The mappings whose entries a null removes (in an override or a file that extends another)."""
    return {f"data.{name}" for name, hint in get_type_hints(DataConfig).items() if get_origin(hint) is dict}


def _validate(raw: dict, path: Path, overrides, origins: dict[str, str] | None = None) -> Config:
    """The Config of a params mapping with `overrides` applied; an invalid value an override set is blamed on it,
    one a file it extends set (`origins`, vd.core.extends) on that file."""
    applied = override.apply(raw, override.parse(overrides), _named_mappings())
    try:
        return _build_config(raw, str(path))
    except ConfigError as e:
        blamed = override.blame(e, str(path), applied)
        raise (extends.blame(e, str(path), origins or {}) if blamed is e else blamed) from None


def _build_config(raw: dict, path: str) -> Config:
    sections = {name: raw.pop(name) for name in list(raw) if name in registry.STAGES}
    for name in ("stages", "source"):  # set here, never read from a file
        if name in raw:
            raise ConfigError(f"{path}: {name}: unknown key; expected one of {', '.join(_top_level_keys())}")
    if extends.KEY in raw:  # read_chain took the file's own: this one an override set
        raise ConfigError(f"{path}: {extends.KEY}: only a params file's own top level names the file it extends")
    cfg = _build(Config, raw, path, "")
    for name in registry.STAGES:
        if name not in sections:
            raise ConfigError(f"{path}: {name}: missing required key "
                              f"(the {registry.STAGES[name].title} stage's section)")
        _check_stage_keys(name, sections[name], path)
        cfg.stages[name] = _build(stage_schema(name), sections[name], path, name)
    cfg.source = path
    _check_cross_fields(cfg, path)
    for check in registry.CONFIG_CHECKS:
        registry.resolve(check)(cfg, path)
    return cfg


def _top_level_keys() -> list[str]:
    """What a params file may hold at the top level: the sections of Config, one per stage, and `extends`."""
    return sorted({f.name for f in dataclasses.fields(Config)} - {"stages", "source"} | set(registry.STAGES)
                  | {extends.KEY})


def _check_stage_keys(stage: str, section, path: str) -> None:
    """A key under a stage that its schema lacks is an error naming it, and the stages whose setting it is."""
    if not isinstance(section, dict):
        return
    own = sorted(f.name for f in dataclasses.fields(stage_schema(stage)))
    for key in section:
        if key not in own:
            owners = [s for s in registry.STAGES if key in {f.name for f in dataclasses.fields(stage_schema(s))}]
            whose = f" ({key} is a {' and '.join(owners)} setting)" if owners else ""
            raise ConfigError(f"{path}: {stage}.{key}: unknown key{whose}; expected one of {', '.join(own)}")


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
        renamed = f.metadata.get("renamed", {})
        if isinstance(raw[name], str) and raw[name] in renamed:
            raise ConfigError(f"{path}: {key}: {raw[name]!r} is called {renamed[raw[name]]!r} now; expected one of "
                              f"{', '.join(map(repr, get_args(hints[name])))}")
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
                              f"{', '.join(registry.PREFERENCE_DATA)} "
                              "(synthetic data are configured under data.synthetic)")


def check_choice(name: str, value: str, choices) -> str:
    """Validate a notebook/CLI parameter such as `algo` against its allowed values."""
    if value not in choices:
        raise ConfigError(f"parameter {name}: expected one of {', '.join(choices)}, got {value!r}")
    return value
