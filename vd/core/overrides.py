"""Overrides of a params file (`--set key=value`, the notebooks' `overrides` parameter): parsed, applied to
the raw params before validation, and blamed for what they break (vd.core.config documents the rules)."""

from __future__ import annotations

import json
from typing import Any

import yaml

from vd.core.errors import ConfigError


def parse_override(item: str, where: str = "override") -> tuple[str, Any]:
    """`"dpo.beta=0.2"` -> ("dpo.beta", 0.2), the value read as YAML; a malformed item is a ConfigError
    naming it (`where`: what it came from, e.g. the notebooks' `overrides` parameter)."""
    key, eq, text = item.partition("=")
    if not eq or not key.strip():
        raise ConfigError(f"{where} {item!r}: expected key=value, e.g. dpo.beta=0.2")
    try:
        return key.strip(), yaml.safe_load(text)
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{where} {item!r}: the value is not valid YAML ({problem}); quote a value "
                          "meant as text, e.g. key='[x'") from None


def parse(overrides: dict[str, Any] | list[str] | None) -> list[tuple[str, Any, str]]:
    """(dotted key, value, the override as the user wrote it) of each override: `key=value` items or a dict."""
    if not overrides:
        return []
    if isinstance(overrides, dict):
        return [(k, v, f"{k}={v if isinstance(v, str) else json.dumps(v)}") for k, v in overrides.items()]
    return [(*parse_override(item), item.strip()) for item in overrides]


def apply(raw: dict, parsed: list[tuple[str, Any, str]], named_mappings: set[str]) -> list[tuple[str, str]]:
    """Set each override in the raw params; null on an entry of one of `named_mappings` removes the entry.

    Returns (the override as written, what it owns) per override: the dotted key of the shallowest
    section or value it put there, which errors at or below that key are blamed on.
    """
    applied = []
    for key, value, shown in parsed:
        node, parts, created = raw, key.split("."), None
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
                created = created or ".".join(parts[:i + 1])
            if not isinstance(child, dict):
                raise ConfigError(f"override {shown}: {'.'.join(parts[:i + 1])} is not a section")
            node = child
        parent = ".".join(parts[:-1])
        if value is None and parent in named_mappings:
            if parts[-1] not in node:
                raise ConfigError(f"override {shown}: {parent} has no entry {parts[-1]!r} to remove; "
                                  f"it has {', '.join(map(str, node)) or 'none'}")
            del node[parts[-1]]
        else:
            node[parts[-1]] = value
        applied.append((shown, created or key))
    return applied


def blame(error: ConfigError, path: str, applied: list[tuple[str, str]]) -> ConfigError:
    """`error` ("<path>: <key>: <what>") restated as the override's when an override set that key."""
    key, _, detail = str(error).removeprefix(f"{path}: ").partition(": ")
    for shown, owned in applied:
        if key == owned or key.startswith((owned + ".", owned + "[")):
            where = "" if key == shown.partition("=")[0].strip() else f"{key}: "
            return ConfigError(f"override {shown}: {where}{detail}")
    return error
