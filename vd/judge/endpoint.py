"""What every caller of an OpenAI-compatible endpoint shares (the judge, the probe builder vd.data.prism,
the synthetic writer vd.data.synthetic): the API key for a base URL, the endpoint's name, and the
request fields a local server needs.

    client = OpenAI(api_key=api_key_for(base_url), base_url=base_url)
    resp = client.chat.completions.create(..., extra_body=extra_body_for(base_url))  # Qwen3: no <think>
    text = reply_text(resp)  # a reply's text, every secret redacted: it is stored and printed
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

from vd.judge.base import JudgeUnavailable
from vd.judge.redaction import redact_known

OPENAI_ENDPOINT = "https://api.openai.com/v1"  # the client's default
PLACEHOLDER_KEY = "EMPTY"  # sent to a local server without auth (the client refuses no key at all)
# What a local server's chat template is given unless the params say otherwise (ours): a thinking
# model (Qwen3) asked for one token would otherwise answer "<think>". vLLM and llama.cpp read
# `chat_template_kwargs` from the request body; templates without the variable ignore it.
LOCAL_CHAT_TEMPLATE_KWARGS = {"enable_thinking": False}
MISSING_KEY = ("this calls the OpenAI API (no base URL is set), which needs the environment variable "
               "OPENAI_API_KEY: set it in the environment (never in a file), or give the base URL of a local "
               "OpenAI-compatible server (vLLM, llama.cpp), which needs no key")


class MissingAPIKey(JudgeUnavailable):
    """OpenAI's API is called and OPENAI_API_KEY is not set."""


def api_key_for(base_url: str | None, missing: str = MISSING_KEY) -> str:
    """The API key to send to `base_url`: $OPENAI_API_KEY (from the environment only); without it,
    PLACEHOLDER_KEY where a local server answers (base_url, or the client's own $OPENAI_BASE_URL);
    else MissingAPIKey with the message `missing` (OpenAI's API needs a key)."""
    key = os.environ.get("OPENAI_API_KEY")
    if key:
        return key
    if base_url or os.environ.get("OPENAI_BASE_URL"):
        return PLACEHOLDER_KEY
    raise MissingAPIKey(missing)


def endpoint_name(url: str) -> str:
    """The server a base URL names, for the cache key: scheme, host, port and path; user, password,
    query and fragment dropped (they can hold credentials and do not change which model answers)."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower() + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme.lower(), host, parts.path.rstrip("/"), "", ""))


def endpoint_of(base_url: str | None) -> str:
    """The endpoint the openai client calls for `base_url`: it, else $OPENAI_BASE_URL, else OpenAI's."""
    return endpoint_name(base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_ENDPOINT)


def chat_template_kwargs_for(base_url: str | None, configured: dict | None = None) -> dict:
    """The chat template arguments to send: `configured` where the params set them ({} sends none),
    else LOCAL_CHAT_TEMPLATE_KWARGS for a server other than OpenAI's and none for OpenAI's, which
    takes no such field (JudgeUnavailable where the params set some for it)."""
    openai = endpoint_of(base_url) == OPENAI_ENDPOINT
    if configured is None:
        return {} if openai else dict(LOCAL_CHAT_TEMPLATE_KWARGS)
    if openai and configured:
        raise JudgeUnavailable(f"judge.chat_template_kwargs: OpenAI's API takes none (it rejects the field); "
                               f"expected null or {{}} without judge.base_url, got {configured!r}")
    return dict(configured)


def extra_body_for(base_url: str | None, configured: dict | None = None) -> dict | None:
    """The `extra_body` of a chat.completions request (fields the openai client merges into the JSON):
    {"chat_template_kwargs": ...} where chat_template_kwargs_for gives any, else None."""
    kwargs = chat_template_kwargs_for(base_url, configured)
    return {"chat_template_kwargs": kwargs} if kwargs else None


def reply_text(resp) -> str:
    """A chat completion's text, stripped, with every secret of the environment redacted
    (vd.judge.redaction): a server may echo the Authorization header, and the text is stored and printed."""
    return redact_known((resp.choices[0].message.content or "").strip())
