"""Dataset loaders: hub ids (or local files in the hub's format) -> the row schemas TRL's trainers read.

WildChat or Alpaca for SFT (``{"messages": [...]}``), UltraFeedback or HH-RLHF for preference stages
(``{"prompt": [...], "chosen": [assistant turn], "rejected": [assistant turn]}``); the synthetic pairs
are built, not loaded (vd.data.synthetic). A source is a hub id or a local ``.json``, ``.jsonl``,
``.jsonl.gz`` or ``.parquet`` file in the hub's own format. A malformed row never crashes a load and is
never dropped silently: it is counted under one reason in ``LoadResult.skipped``; a file that is wholly
the wrong kind raises ValueError naming it. With ``max_samples=n`` (ours) rows are visited in an order
shuffled by ``random.Random(seed)`` and the first n valid rows kept.

    res = load_alpaca("tatsu-lab/alpaca", max_samples=1000)   # res.rows, res.skipped, res.summary()
"""

from __future__ import annotations

import logging
import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from vd.data.files import Unreadable, read_source

log = logging.getLogger(__name__)

ROLES = ("system", "user", "assistant")

# A row whose required fields are missing or of the wrong type is counted under a reason starting
# with one of these; when most rows of a file fail this way the file is the wrong kind and we raise.
_SCHEMA_PREFIXES = ("missing_field:", "bad_type:")
_UNREADABLE = ("invalid_json", "invalid_utf8", "not_an_object")  # not records at all
_WRONG_FILE_FRACTION = 0.5
_EARLY_CHECK = 500  # rows after which a wrong file is reported without reading on


def _n_schema(res: LoadResult) -> int:
    return sum(c for r, c in res.skipped.items() if r.startswith(_SCHEMA_PREFIXES))


def _n_unreadable(res: LoadResult) -> int:
    return sum(res.skipped[r] for r in _UNREADABLE)


# --- result --------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    """What a loader returns: the kept rows, and an account of every row it skipped.

    ``n_read`` counts the raw rows visited; ``len(rows) + sum(skipped.values()) == n_read``. Each skipped
    row counts under exactly one reason: ``invalid_json`` or ``invalid_utf8`` for a line that cannot be
    read, else the first check it fails, in the order each loader documents.
    """

    rows: list[dict]
    skipped: Counter = field(default_factory=Counter)
    n_read: int = 0
    source: str = ""
    name: str = ""

    def __len__(self) -> int:
        return len(self.rows)

    def summary(self) -> str:
        return f"{self.name or 'data'} from {self.source}: {self.counts()}"

    def counts(self) -> str:
        """`read n, kept k, skipped s (reason: count, ...)`."""
        n_skip = sum(self.skipped.values())
        head = f"read {self.n_read}, kept {len(self.rows)}, skipped {n_skip}"
        if not n_skip:
            return head
        reasons = ", ".join(f"{r}: {c}" for r, c in sorted(self.skipped.items(), key=lambda kv: (-kv[1], kv[0])))
        return f"{head} ({reasons})"

    def to_dataset(self):
        """The rows as a ``datasets.Dataset`` (what TRL's trainers take)."""
        import datasets

        return datasets.Dataset.from_list(self.rows)


class _Skip(Exception):
    """Raised by a row parser: the row is skipped and counted under ``reason``."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# --- the shared loop -----------------------------------------------------------------------------


def _run(
    name: str,
    source: str,
    records: Sequence,
    parse: Callable[[dict], dict],
    required: Sequence[str],
    max_samples: int | None,
    seed: int,
) -> LoadResult:
    """Parse `records` in file order, or, with `max_samples` (ours), in an order shuffled by
    random.Random(seed) up to the max_samples-th valid row: n_read and skipped then describe only the rows
    visited, and the same seed and file give the same sample. A file that is wholly the wrong kind (most
    rows lack the required fields, or are not JSON, or none is left) raises ValueError naming it."""
    if max_samples is not None and (not isinstance(max_samples, int) or max_samples < 0):
        raise ValueError(f"max_samples must be None or an integer >= 0, got {max_samples!r}")
    if len(records) == 0:
        raise ValueError(f"{source}: no rows to read")
    order = list(range(len(records)))
    if max_samples is not None:
        random.Random(seed).shuffle(order)
    res = LoadResult(rows=[], skipped=Counter(), n_read=0, source=str(source), name=name)
    first_keys: list[str] | None = None
    for i in order:
        if max_samples is not None and len(res.rows) >= max_samples:
            break
        rec = records[i]
        res.n_read += 1
        if isinstance(rec, Unreadable):
            res.skipped[rec.reason] += 1
            continue
        if not isinstance(rec, dict):
            res.skipped["not_an_object"] += 1
            continue
        if first_keys is None:
            first_keys = sorted(rec)
        try:
            missing = [f for f in required if rec.get(f) is None]
            if missing:
                raise _Skip("missing_field:" + ",".join(missing))
            res.rows.append(parse(rec))
        except _Skip as s:
            res.skipped[s.reason] += 1
        except Exception as e:  # a row we did not foresee: counted and logged, never fatal
            reason = f"parse_error:{type(e).__name__}"
            if not res.skipped[reason]:
                log.warning("%s: row %d could not be parsed (%s: %s)", source, i, type(e).__name__, e)
            res.skipped[reason] += 1
        if res.n_read == _EARLY_CHECK and max(_n_schema(res), _n_unreadable(res)) > _WRONG_FILE_FRACTION * res.n_read:
            break  # a wrong file: say so now rather than after a million rows

    if _n_unreadable(res) > _WRONG_FILE_FRACTION * res.n_read:
        reasons = ", ".join(f"{r}: {res.skipped[r]}" for r in _UNREADABLE if res.skipped[r])
        raise ValueError(f"{source}: not {name} data: {_n_unreadable(res)} of {res.n_read} rows read are not JSON "
                         f"objects ({reasons}); expected a JSON list of records or one JSON object per line, in UTF-8")
    if _n_schema(res) > _WRONG_FILE_FRACTION * res.n_read:
        def fields(prefix: str) -> list[str]:
            return sorted({f for r in res.skipped if r.startswith(prefix) for f in r[len(prefix):].split(",")})

        what = []
        if fields("missing_field:"):
            what.append("lack the fields " + ", ".join(fields("missing_field:")))
        if fields("bad_type:"):
            what.append("have the wrong type for " + ", ".join(fields("bad_type:")))
        raise ValueError(
            f"{source}: does not look like {name} data: {_n_schema(res)} of {res.n_read} rows read "
            f"{' or '.join(what)}. "
            f"load_{name.replace('-', '_')} needs the fields {', '.join(required)}; the first row has: "
            f"{', '.join(first_keys or [])}."
        )
    if not res.rows and max_samples != 0:
        raise ValueError(f"{source}: no usable {name} rows: {res.counts()}")
    if max_samples is not None and len(res.rows) < max_samples:
        log.warning("%s: asked for %d rows, only %d valid rows exist", source, max_samples, len(res.rows))
    log.info(res.summary())
    return res


def _text(rec: dict, key: str) -> str:
    v = rec.get(key)
    if v is None:
        raise _Skip(f"missing_field:{key}")
    if not isinstance(v, str):
        raise _Skip(f"bad_type:{key}")
    return v


def _messages(value: Any, key: str) -> list[dict]:
    """A hub message list -> [{"role", "content"}] (extra per-turn fields dropped)."""
    if not isinstance(value, (list, tuple)) or not all(isinstance(m, dict) for m in value):
        raise _Skip(f"bad_type:{key}")
    out = []
    for m in value:
        role, content = m.get("role"), m.get("content")
        if role not in ROLES or not isinstance(content, str):
            raise _Skip("bad_message")
        out.append({"role": role, "content": content})
    return out


def _check_conversation(msgs: list[dict]) -> None:
    """Optional system messages first, then user/assistant alternating from a user turn, ending in an
    assistant turn, with no empty text."""
    n_sys = 0
    while n_sys < len(msgs) and msgs[n_sys]["role"] == "system":
        n_sys += 1
    body = msgs[n_sys:]
    if not body:
        raise _Skip("no_turns")
    for k, m in enumerate(body):
        if m["role"] != ("user" if k % 2 == 0 else "assistant"):
            raise _Skip("roles_not_alternating")
    if body[-1]["role"] != "assistant":
        raise _Skip("not_ending_in_assistant")
    if any(not m["content"].strip() for m in msgs):
        raise _Skip("empty_text")


def _split_pair(chosen: list[dict], rejected: list[dict]) -> dict:
    """Two full conversations -> prompt (their shared prefix) + the two final assistant answers."""
    _check_conversation(chosen)
    _check_conversation(rejected)
    if chosen[:-1] != rejected[:-1]:
        raise _Skip("prefix_mismatch")
    if chosen[-1]["content"].strip() == rejected[-1]["content"].strip():
        raise _Skip("chosen_equals_rejected")
    return {"prompt": chosen[:-1], "chosen": [chosen[-1]], "rejected": [rejected[-1]]}


# --- SFT loaders ---------------------------------------------------------------------------------


def load_wildchat(
    source: str = "allenai/WildChat-1M",
    split: str = "train",
    max_samples: int | None = None,
    turns: str = "first",
    language: str | None = "English",
    drop_toxic: bool = True,
    drop_redacted: bool = True,
    seed: int = 0,
) -> LoadResult:
    """WildChat conversations -> SFT rows.

    ``turns="first"``: the first user message and the assistant reply to it; ``turns="all"``: the whole
    conversation (user/assistant alternating, ending in an assistant turn). ``language`` keeps rows
    whose conversation-level ``language`` field matches (case-insensitive); ``None`` keeps every
    language. Checks, in order (a row counts under the first it fails): ``missing_field:conversation``,
    ``bad_type:conversation``, ``wrong_language``, ``toxic``, ``redacted``, ``bad_message``,
    ``no_assistant_reply`` / ``roles_not_alternating`` / ``not_ending_in_assistant``, ``empty_text``.
    """
    if turns not in ("first", "all"):
        raise ValueError(f"turns must be 'first' or 'all', got {turns!r}")

    def parse(rec: dict) -> dict:
        conv = _messages(rec["conversation"], "conversation")
        if language is not None and str(rec.get("language") or "").casefold() != language.casefold():
            raise _Skip("wrong_language")
        if drop_toxic and rec.get("toxic"):
            raise _Skip("toxic")
        if drop_redacted and rec.get("redacted"):
            raise _Skip("redacted")
        if turns == "first":
            if not conv or conv[0]["role"] != "user":
                raise _Skip("roles_not_alternating")
            if len(conv) < 2 or conv[1]["role"] != "assistant":
                raise _Skip("no_assistant_reply")
            conv = conv[:2]
        _check_conversation(conv)
        return {"messages": conv}

    records = read_source(source, split, columns=("conversation", "language", "toxic", "redacted"))
    return _run("wildchat", source, records, parse, ("conversation",), max_samples, seed)


def alpaca_user_message(instruction: str, input: str | None) -> str:
    """Alpaca's instruction and input as one user message: the instruction, a blank line, the input
    (the input only when it is non-empty)."""
    if input and input.strip():
        return f"{instruction}\n\n{input}"
    return instruction


def load_alpaca(
    source: str = "tatsu-lab/alpaca",
    split: str = "train",
    max_samples: int | None = None,
    seed: int = 0,
) -> LoadResult:
    """Alpaca ``{instruction, input, output}`` -> SFT rows (user: instruction [+ blank line + input];
    assistant: output). A missing ``input`` is read as empty. Checks, in order: ``missing_field:…``
    (instruction, output), ``bad_type:…``, ``empty_text`` (empty instruction or output)."""

    def parse(rec: dict) -> dict:
        instruction, output = _text(rec, "instruction"), _text(rec, "output")
        inp = rec.get("input") or ""
        if not isinstance(inp, str):
            raise _Skip("bad_type:input")
        if not instruction.strip() or not output.strip():
            raise _Skip("empty_text")
        return {
            "messages": [
                {"role": "user", "content": alpaca_user_message(instruction, inp)},
                {"role": "assistant", "content": output},
            ]
        }

    records = read_source(source, split)
    return _run("alpaca", source, records, parse, ("instruction", "output"), max_samples, seed)


# --- preference loaders --------------------------------------------------------------------------


def load_ultrafeedback(
    source: str = "HuggingFaceH4/ultrafeedback_binarized",
    split: str = "train_prefs",
    max_samples: int | None = None,
    seed: int = 0,
) -> LoadResult:
    """UltraFeedback (binarized): ``chosen`` / ``rejected`` are full message lists; their shared prefix
    becomes ``prompt`` and the final assistant messages ``chosen`` / ``rejected``. Checks, in order:
    ``missing_field:…``, ``bad_type:…``, ``bad_message``, ``no_turns`` / ``roles_not_alternating`` /
    ``not_ending_in_assistant``, ``empty_text``, ``prefix_mismatch``, ``chosen_equals_rejected``."""

    def parse(rec: dict) -> dict:
        return _split_pair(_messages(rec["chosen"], "chosen"), _messages(rec["rejected"], "rejected"))

    records = read_source(source, split)
    return _run("ultrafeedback", source, records, parse, ("chosen", "rejected"), max_samples, seed)


_HH_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):")
_HH_ROLE = {"Human": "user", "Assistant": "assistant"}


def parse_hh_transcript(text: str) -> list[dict]:
    """An HH-RLHF transcript ("\\n\\nHuman: … \\n\\nAssistant: …") -> messages, each turn's text
    stripped. Raises ``_Skip`` with ``no_turns`` / ``text_before_first_turn`` / ``roles_not_alternating``
    / ``not_ending_in_assistant`` / ``empty_text`` when it does not parse into a conversation."""
    parts = _HH_TURN.split(text)
    if len(parts) < 3:
        raise _Skip("no_turns")
    if parts[0].strip():
        raise _Skip("text_before_first_turn")
    msgs = [{"role": _HH_ROLE[r], "content": c.strip()} for r, c in zip(parts[1::2], parts[2::2])]
    _check_conversation(msgs)
    return msgs


def load_hh_rlhf(
    source: str = "Anthropic/hh-rlhf",
    data_dir: str | None = "harmless-base",
    split: str = "train",
    max_samples: int | None = None,
    seed: int = 0,
) -> LoadResult:
    """Anthropic HH-RLHF ``{chosen, rejected}`` transcripts -> preference rows: both are parsed into
    messages (``parse_hh_transcript``); the prompt is their shared prefix of turns (a 2-turn transcript
    gives user/assistant/user), chosen/rejected the two final assistant answers. Checks, in order:
    ``missing_field:…``, ``bad_type:…``, the transcript checks of ``parse_hh_transcript`` (chosen, then
    rejected), ``prefix_mismatch``, ``chosen_equals_rejected``."""

    def parse(rec: dict) -> dict:
        chosen, rejected = _text(rec, "chosen"), _text(rec, "rejected")
        return _split_pair(parse_hh_transcript(chosen), parse_hh_transcript(rejected))

    records = read_source(source, split, data_dir)
    return _run("hh-rlhf", source, records, parse, ("chosen", "rejected"), max_samples, seed)
