"""`runs/<size>/stage_times.jsonl`: one line per run a notebook trained or scored (seconds of each), what
`vd reproduce` breaks its wall time down by. A log, appended and never rewritten; a damaged line (a kill
mid-write, an edit by hand) is skipped with a warning, never a reason to fail.

    append(path, {"notebook": "01_sft_drift", "run": "sft-alpaca", "stage": "sft", "train_s": 5.0, ...})
    entries = read(path)
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path


def append(path: Path, entry: dict) -> None:
    """Append `entry` as one JSON line: one write() of the whole line to a file opened with O_APPEND, so
    that lines of notebooks logging at once never interleave."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(entry) + "\n").encode()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":  # a line cut short by a kill: only it is lost
            data = b"\n" + data
        os.write(fd, data)
    finally:
        os.close(fd)


def _valid(entry) -> bool:
    def number(x):
        return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)

    return (isinstance(entry, dict) and isinstance(entry.get("stage"), str)
            and all(number(entry.get(k)) for k in ("time", "train_s", "score_s")))


def read(path: Path) -> list[dict]:
    """The log's entries; lines that are not a whole entry are skipped, with one warning naming them."""
    path = Path(path)
    if not path.is_file():
        return []
    entries, bad = [], []
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            entry = None
        if _valid(entry):
            entries.append(entry)
        else:
            bad.append(n)
    if bad:
        print(f"warning: {path}: skipped {len(bad)} damaged line(s) ({', '.join(map(str, bad[:10]))}"
              f"{', ...' if len(bad) > 10 else ''}); their times are left out", file=sys.stderr, flush=True)
    return entries
