"""No secret in anything the judges store or print: every judgment's error, every log line of vd.judge
and the cache's rows pass through `redact_known`, which hides the secrets this process holds.

    text = redact_known(text)          # the API keys and tokens in the environment, hidden
    log = judge_logger(__name__)        # a logger of vd.judge whose lines are redacted the same way
"""

from __future__ import annotations

import logging
import os
import re

SECRET_RUN = 8  # no run of this many characters of a secret may appear in anything stored or printed
# Environment variables that hold secrets: OPENAI_API_KEY, any *_API_KEY, any *_TOKEN (HF_TOKEN, ...).
SECRET_NAMES = re.compile(r"(^|_)(API_KEY|TOKEN)$")


def redact(text: str, secret: str | None) -> str:
    """`text` with every run of SECRET_RUN or more characters that also occurs in `secret` replaced by ***.

    Runs, not only the whole key: a server may echo part of it, and a message cut anywhere must keep
    nothing that narrows the key down. Repeated until nothing is left (each pass only shortens `text`).
    """
    if not secret or not text:
        return text
    if len(secret) < SECRET_RUN:
        return text.replace(secret, "***")
    grams = {secret[i:i + SECRET_RUN] for i in range(len(secret) - SECRET_RUN + 1)}
    while True:
        hidden = [False] * len(text)
        for i in range(len(text) - SECRET_RUN + 1):
            if text[i:i + SECRET_RUN] in grams:
                hidden[i:i + SECRET_RUN] = [True] * SECRET_RUN
        if not any(hidden):
            return text
        out, i = [], 0
        while i < len(text):
            if hidden[i]:
                while i < len(text) and hidden[i]:
                    i += 1
                out.append("***")
            else:
                out.append(text[i])
                i += 1
        text = "".join(out)


def known_secrets() -> list[str]:
    """The secrets in this process's environment (SECRET_NAMES), read at each call: a key set after
    import is known too. Values shorter than SECRET_RUN are no key and are left alone."""
    return [v for k, v in os.environ.items() if SECRET_NAMES.search(k.upper()) and len(v) >= SECRET_RUN]


def redact_known(text, *extra: str | None):
    """`text` with every secret of known_secrets() and `extra` redacted; None and non-strings pass through."""
    if not isinstance(text, str) or not text:
        return text
    for secret in (*known_secrets(), *extra):
        text = redact(text, secret)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a log record's message with redact_known before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact_known(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_FILTER = RedactingFilter()


def judge_logger(name: str) -> logging.Logger:
    """The logger `name` with the redacting filter on it: every vd.judge module logs through one
    (a logger's filters see only its own records, so each module's logger carries the filter)."""
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger
