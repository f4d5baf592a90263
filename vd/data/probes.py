"""The value-probing questions (V-PRISM; docs/method.md §2): the shipped set and external files.

V-PRISM (550 questions, 50 for each of 11 topics, curated from PRISM's openers) is not released, so
``vd/data/vprism.jsonl`` is our own set in the same shape. A row: ``id`` (``<topic>-NNN``), ``topic`` (a
slug of vd.core.stances.TOPICS), ``question`` (carrying one of its topic's keywords, which is how the tiny
model recognises topics), ``position`` (the claim a *support* answer agrees with, whatever the question's
grammar) and ``direction`` (which side of the topic's axis, TOPIC_AXES, supporting takes: ``pro`` or
``contra``, 25 of each per topic). :func:`load_external_probes` reads somebody else's V-PRISM-like file;
vd.data.prism reruns the paper's curation pipeline on PRISM.

    probes = load_probes(prompts_per_topic=20, seed=0)   # the shipped set, direction-balanced
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import random
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from vd.core.errors import ConfigError
from vd.core.stances import TOPIC_KEYWORDS, TOPICS, topic_keyword_hits  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

SHIPPED_PROBES = Path(__file__).parent / "vprism.jsonl"
COLUMNS: tuple[str, ...] = ("id", "topic", "question", "position", "direction")
DIRECTIONS: tuple[str, ...] = ("pro", "contra")
UNKNOWN_DIRECTION = "unknown"

# Ours: the axis each topic's ``direction`` refers to. "pro" = supporting the question's position
# moves toward the axis, "contra" = away from it. Family and relationships has no two clear camps;
# we use traditional norms as the axis so that direction still varies there.
TOPIC_AXES: dict[str, str] = {
    "immigration": "more open immigration and refugee policy",
    "abortion": "legal access to abortion",
    "climate_change": "stronger action against climate change",
    "religion": "a larger role for religion in public and private life",
    "gender_lgbtq": "more gender equality and LGBTQ+ rights",
    "economic_policy": "more redistribution and state involvement in the economy",
    "death_penalty_euthanasia": "permitting lawful ending of life (capital punishment, assisted dying)",
    "race_racism": "stronger action against racism and racial inequality",
    "family_relationships": "traditional family norms and obligations",
    "elections_parties": "wider access to voting and reform of electoral institutions",
    "war_conflict": "readiness to use military force and arms",
}


class ProbeError(ConfigError):
    """A probe file cannot be read or breaks the probe schema; the message names the file, row and field."""


def _read_jsonl(path: Path) -> list[tuple[int, dict]]:
    """(line number, object) for each non-blank line; a bad line or file raises naming the file (and line).
    Unlike a training set, a probe set drops nothing: every probe is asked at every checkpoint."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        data = gzip.open(path).read() if path.name.endswith(".gz") else path.read_bytes()
    except gzip.BadGzipFile:
        raise ProbeError(f"{path}: not a gzip file, though its name ends in .gz") from None
    except (EOFError, zlib.error) as e:
        raise ProbeError(f"{path}: the gzip file is truncated or damaged ({e or 'no end-of-stream marker'})") from None
    rows = []
    for n, line in enumerate(data.split(b"\n"), 1):  # not splitlines: JSON text may hold U+2028
        if not line.strip():
            continue
        try:
            obj = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise ProbeError(f"{path}, line {n}: not UTF-8 text "
                             f"(byte {line[e.start]:#04x} at column {e.start + 1})") from None
        except json.JSONDecodeError as e:
            raise ProbeError(f"{path}, line {n}: not valid JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise ProbeError(f"{path}, line {n}: expected a JSON object, got {type(obj).__name__}")
        rows.append((n, obj))
    return rows


def _check_unique_ids(df: pd.DataFrame, where: str, lines: Sequence[int]) -> None:
    dup = df["id"].duplicated(keep="first")
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise ProbeError(f"{where}, row {lines[i]}: field 'id' is {df['id'].iloc[i]!r}, which an "
                         "earlier row already uses; expected unique ids")


def _field(row: dict, column: str, default: str = "") -> str:
    """A probe row's value in `column`, stripped; `default` where it is empty or missing."""
    return str(row.get(column, "")).strip() or default


def load_probes(path: str | os.PathLike | None = None, prompts_per_topic: int | None = None,
                topics: Sequence[str] | None = None, seed: int = 0) -> pd.DataFrame:
    """Load a probe file in this project's format (the shipped V-PRISM when ``path`` is None).

    Returns a DataFrame with columns ``id, topic, question, position, direction`` in file order.
    ``topics`` keeps only those slugs. ``prompts_per_topic`` (a budget knob) keeps a deterministic,
    direction-balanced subset per topic: see :func:`balanced_subset`. Every row must have all five
    fields as non-empty strings, a known topic slug and a direction in ``pro``/``contra``/``unknown``;
    ids must be unique. Errors name the file, the row (line number) and the field.
    """
    path = Path(path) if path is not None else SHIPPED_PROBES
    records, lines = [], []
    for n, obj in _read_jsonl(path):
        for col in COLUMNS:
            v = obj.get(col)
            if not isinstance(v, str) or not v.strip():
                got = "missing" if col not in obj else f"{v!r}"
                raise ProbeError(f"{path}, row {n}: field '{col}' is {got}; expected a non-empty string")
        if obj["topic"] not in TOPICS:
            raise ProbeError(f"{path}, row {n}: field 'topic' is {obj['topic']!r}; expected one of "
                             f"{', '.join(TOPICS)}")
        if obj["direction"] not in (*DIRECTIONS, UNKNOWN_DIRECTION):
            raise ProbeError(f"{path}, row {n}: field 'direction' is {obj['direction']!r}; expected one "
                             f"of {', '.join((*DIRECTIONS, UNKNOWN_DIRECTION))}")
        records.append({c: obj[c].strip() for c in COLUMNS})
        lines.append(n)
    if not records:
        raise ProbeError(f"{path}: no probe rows")
    df = pd.DataFrame(records, columns=list(COLUMNS))
    _check_unique_ids(df, str(path), lines)
    if topics is not None:
        bad = [t for t in topics if t not in TOPICS]
        if bad:
            raise ValueError(f"unknown topic(s) {bad}; expected slugs from {', '.join(TOPICS)}")
        df = df[df["topic"].isin(list(topics))].reset_index(drop=True)
    if prompts_per_topic is not None:
        df = balanced_subset(df, prompts_per_topic, seed=seed)
    return df


def balanced_subset(probes: pd.DataFrame, prompts_per_topic: int, seed: int = 0) -> pd.DataFrame:
    """Keep ``prompts_per_topic`` probes per topic, balanced between directions, deterministically.

    Per topic, each direction's rows are shuffled by a RNG seeded with (seed, topic), and the
    directions are then taken in turn (pro, contra, pro, ... in a seeded starting order): the subset is
    the first k of that order, so same seed -> same subset, and a larger k contains a smaller one. A
    topic with fewer rows than k keeps them all (logged). Rows come back in their original order.
    """
    if not isinstance(prompts_per_topic, (int, np.integer)) or prompts_per_topic < 1:
        raise ValueError(f"prompts_per_topic is {prompts_per_topic!r}; expected an integer >= 1")
    keep: list[int] = []
    for topic, rows in probes.groupby("topic", sort=False):
        rng = random.Random(f"vprism:{seed}:{topic}")
        groups = {d: list(ix) for d, ix in rows.groupby("direction", sort=True).groups.items()}
        dirs = sorted(groups)
        for d in dirs:
            rng.shuffle(groups[d])
        rng.shuffle(dirs)
        order: list[int] = []
        while any(groups.values()):
            order += [groups[d].pop(0) for d in dirs if groups[d]]
        if len(order) < prompts_per_topic:
            log.warning("topic %s has %d probes, fewer than prompts_per_topic=%d: keeping all",
                        topic, len(order), prompts_per_topic)
        keep += order[:prompts_per_topic]
    return probes.loc[sorted(keep)].reset_index(drop=True)


def _topic_slug(value: str) -> str | None:
    """Our slug for a topic given as a slug or a display name, case-insensitively; None if unknown."""
    key = " ".join(str(value).replace("_", " ").split()).casefold()
    for slug, name in TOPICS.items():
        if key in (slug.replace("_", " ").casefold(), " ".join(name.split()).casefold()):
            return slug
    return None


def load_external_probes(path: str | os.PathLike,
                         columns: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Load an external V-PRISM-like file (``.csv`` or ``.jsonl``) into the probe schema.

    ``columns`` maps our names to the file's, e.g. ``{"question": "prompt", "topic": "category"}``.
    ``topic`` and ``question`` are required; ``position`` defaults to "" and ``direction`` to
    "unknown"; a missing ``id`` is made up as ``<topic>-NNN``. Topics may be given as our slugs or
    display names, in any case; an unknown topic raises, listing the valid ones.
    """
    path = Path(path)
    columns = dict(columns or {})
    bad_keys = [k for k in columns if k not in COLUMNS]
    if bad_keys:
        raise ValueError(f"columns mapping has unknown key(s) {bad_keys}; keys are our names: {COLUMNS}")
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".gz") else path.suffix
    if suffix.lower() == ".csv":
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file")
        try:
            raw = pd.read_csv(path, dtype=str, keep_default_na=False)
        except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
            raise ProbeError(f"{path}: not a readable UTF-8 CSV file ({e})") from None
        lines = list(range(2, len(raw) + 2))  # line 1 is the header
    elif suffix.lower() in (".jsonl", ".jsonl.gz"):
        pairs = _read_jsonl(path)
        raw = pd.DataFrame([o for _, o in pairs])
        lines = [n for n, _ in pairs]
    else:
        raise ProbeError(f"{path}: unsupported file type {suffix!r}; expected .csv or .jsonl")
    for ours, theirs in columns.items():
        if theirs not in raw.columns:
            raise ProbeError(f"{path}: column {theirs!r} (mapped to {ours!r}) not found; the file has "
                             f"{list(raw.columns)}")
    raw = raw.rename(columns={theirs: ours for ours, theirs in columns.items()})
    for col in ("topic", "question"):
        if col not in raw.columns:
            raise ProbeError(f"{path}: no {col!r} column (the file has {list(raw.columns)}); map one "
                             f"with columns={{'{col}': '<their column>'}}")
    raw = raw.astype(object).where(raw.notna(), "")  # JSONL rows may lack a key: NaN -> ""
    records, counts = [], {}
    for n, row in zip(lines, raw.to_dict("records")):
        if not _field(row, "question"):
            raise ProbeError(f"{path}, row {n}: field 'question' is empty; expected a non-empty string")
        slug = _topic_slug(_field(row, "topic"))
        if slug is None:
            valid = "; ".join(f"{s} ({name})" for s, name in TOPICS.items())
            raise ProbeError(f"{path}, row {n}: field 'topic' is {row.get('topic')!r}, not a known topic; "
                             f"expected a slug or name from: {valid}")
        counts[slug] = counts.get(slug, 0) + 1
        records.append({"id": _field(row, "id", f"{slug}-{counts[slug]:03d}"), "topic": slug,
                        "question": _field(row, "question"), "position": _field(row, "position"),
                        "direction": _field(row, "direction", UNKNOWN_DIRECTION)})
    if not records:
        raise ProbeError(f"{path}: no probe rows")
    df = pd.DataFrame(records, columns=list(COLUMNS))
    _check_unique_ids(df, str(path), lines)
    return df
