"""A notebook's output without the libraries' noise: transformers' "Loading weights" bars (the hub's
download bars stay: a download of gigabytes is a wait the user should see), TRL's experimental notices,
and the warnings below about the libraries' internals, which a user cannot act on. Every other warning
still shows (a chat template without its end-of-turn token, for one, is the user's to fix).

    quiet_notebook()   # vd.setup calls it
"""

from __future__ import annotations

import logging
import warnings

# The libraries' own wording of warnings about their internals (ours to choose; each one seen in a
# notebook's output): TRL's PPO passes a generation config and generation arguments together.
UNACTIONABLE = ("Passing `generation_config` together with generation-related arguments",)
# Python warnings of the same kind: tqdm.auto in a kernel without ipywidgets (progress here is printed lines).
UNACTIONABLE_WARNINGS = ("IProgress not found",)


class DropUnactionable(logging.Filter):
    """A logging filter that drops the records whose message starts with one of UNACTIONABLE."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(message.startswith(text) for text in UNACTIONABLE)


def quiet_warnings() -> None:
    """Python warnings in UNACTIONABLE_WARNINGS ignored (before the libraries that raise them import)."""
    for text in UNACTIONABLE_WARNINGS:
        warnings.filterwarnings("ignore", message=text)


def quiet_notebook() -> None:
    """Everything the module docstring says, once per process (idempotent)."""
    import huggingface_hub.utils
    from transformers.utils import logging as hf_logging

    from vd.train.cli import quiet_environment

    quiet_environment()  # TRL's experimental notice: read when TRL is imported, which training does later
    quiet_warnings()
    hub_bars = not huggingface_hub.utils.are_progress_bars_disabled()
    hf_logging.disable_progress_bar()  # transformers' own bars ("Loading weights", "Writing model shards")
    if hub_bars:  # transformers turns the hub's off with its own; downloads keep theirs
        huggingface_hub.utils.enable_progress_bars()
    for handler in logging.getLogger("transformers").handlers:
        if not any(isinstance(f, DropUnactionable) for f in handler.filters):
            handler.addFilter(DropUnactionable())
