"""Params files by inheritance: `extends: <file>` (a path relative to the file, else a file of the shipped
params/, so that a copied size file still finds `_qlora.yaml`) names a base whose values
this file's are merged over, before validation. Mappings merge key by key; lists and scalars replace; a
null on an entry of a named mapping (`data.sft`, `data.preference`) removes the inherited entry, as an
override does. A base may extend another. An invalid value is blamed on the file it came from.

    raw, origins = read_chain(Path("params/llama3-3b.yaml"), read_yaml, named)
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

from vd.core.errors import ConfigError

KEY = "extends"


def read_chain(path: Path, read_yaml: Callable[[Path], dict], named: set[str],
               shipped: Path | None = None) -> tuple[dict, dict[str, str]]:
    """The params of `path` merged over its bases, and the file each key was set by (dotted key -> file;
    the keys below one take its file). `shipped`: the folder of the project's own params files."""
    layers = [(path, read_yaml(path))]
    while KEY in layers[-1][1]:
        here, raw = layers[-1]
        target = raw.pop(KEY)
        if not isinstance(target, str) or not target.strip():
            raise ConfigError(f"{here}: {KEY}: expected the path of a params file (relative to this one), "
                              f"got {target!r}")
        base = here.parent / target
        if not base.is_file() and shipped is not None and (shipped / target).is_file():
            base = shipped / target  # a size file copied elsewhere extends the shipped base
        if not base.is_file():
            raise ConfigError(f"{here}: {KEY}: no such file {base}"
                              + (f" (nor {shipped / target})" if shipped is not None else ""))
        seen = [p for p, _ in layers]
        if base.resolve() in {p.resolve() for p in seen}:
            chain = " -> ".join(str(p) for p in [*seen, base])
            raise ConfigError(f"{here}: {KEY}: {target} makes a cycle ({chain})")
        layers.append((base, read_yaml(base)))
    merged: dict = {}
    origins: dict[str, str] = {}
    for file, raw in reversed(layers):
        _merge(merged, raw, origins, str(file), "", named)
    return merged, origins


def _merge(into: dict, raw: dict, origins: dict[str, str], file: str, prefix: str, named: set[str]) -> None:
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if value is None and prefix[:-1] in named:
            if key not in into:
                raise ConfigError(f"{file}: {dotted}: null removes an inherited entry, but {prefix[:-1]} "
                                  f"inherits none named {key!r}; it has {', '.join(map(str, into)) or 'none'}")
            del into[key]
            _forget(origins, dotted)
        elif isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value, origins, file, dotted + ".", named)
        else:
            into[key] = copy.deepcopy(value)
            _forget(origins, dotted)
            origins[dotted] = file


def _forget(origins: dict[str, str], dotted: str) -> None:
    for key in [k for k in origins if k == dotted or k.startswith(dotted + ".")]:
        del origins[key]


def blame(error: ConfigError, path: str, origins: dict[str, str]) -> ConfigError:
    """`error` ("<path>: <key>: <what>") restated as the inherited file's where that file set the key."""
    if not str(error).startswith(f"{path}: "):
        return error
    key, _, detail = str(error).removeprefix(f"{path}: ").partition(": ")
    parts = key.replace("[", ".[").split(".")
    for end in range(len(parts), 0, -1):  # the deepest key a file set at or above the bad one
        file = origins.get(".".join(parts[:end]).replace(".[", "["))
        if file is not None:
            return error if file == path else ConfigError(f"{file} (inherited by {path}): {key}: {detail}")
    return error
