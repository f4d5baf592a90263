"""Tests of vd.judge: the logprob readout, the OpenAI-compatible judge against a real local HTTP
server, the HF judge on a tiny random model, the lexicon judge, agreement and make_judge."""

from __future__ import annotations

import json
import logging
import math
import re
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler
from types import SimpleNamespace

import pytest
from local_server import LocalHTTPServer

import vd.judge as J
from vd.core import registry
from vd.core.cache import Store
from vd.core.config import ConfigError, JudgeConfig
from vd.core.stances import STANCE_PHRASES, STANCES
from vd.judge import (
    CachedJudge,
    HFJudge,
    Judge,
    JudgeItem,
    JudgeUnavailable,
    Judgment,
    LexiconJudge,
    OpenAIJudge,
    agreement,
    argmax_label,
    cache_key,
    check_available,
    label_of_token,
    make_judge,
    probs_from_top_logprobs,
    readout_from_completion,
)
from vd.judge.openai_api import _retry_after_s
from vd.judge.prompt import JUDGE_PROMPTS, judge_messages

SECRET = "sk-test-SECRET123"
NO_THINKING = ";enable_thinking=false"  # what a local server's key says it is sent by default


def _softmax(xs):
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    return [v / sum(e) for v in e]


# ---------------------------------------------------------------------------------- wire format

def completion_json(top: list[tuple[str, float]] | None, text: str | None = None, model: str = "gpt-4o") -> dict:
    """A chat.completions response as the OpenAI API sends it (one token, logprobs on)."""
    if text is None:
        text = top[0][0] if top else ""
    logprobs = None
    if top is not None:
        tl = [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in top]
        first = tl[0] if tl else {"token": text, "logprob": -0.01, "bytes": list(text.encode())}
        logprobs = {"content": [{**first, "top_logprobs": tl}], "refusal": None}
    return {
        "id": "chatcmpl-test", "object": "chat.completion", "created": 1730000000, "model": model,
        "system_fingerprint": "fp_test",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                     "logprobs": logprobs, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 120, "completion_tokens": 1, "total_tokens": 121},
    }


def read_payload(payload: dict) -> Judgment:
    from openai.types.chat import ChatCompletion

    return readout_from_completion(ChatCompletion.model_validate(payload))


# ------------------------------------------------------------------------------------ readout

def test_readout_all_three_labels_softmax_by_hand():
    top = [("support", -0.2), ("neutral", -1.9), ("oppose", -3.5), ("Sup", -6.0), ("The", -7.0)]
    j = read_payload(completion_json(top))
    assert j.status == "ok" and j.error is None
    # by hand: exp(-0.2), exp(-1.9), exp(-3.5) = 0.81873, 0.14957, 0.03020; sum 0.99850
    assert j.p == pytest.approx((0.81996, 0.14979, 0.03025), abs=1e-4)
    assert j.p == pytest.approx(tuple(_softmax([-0.2, -1.9, -3.5])), abs=1e-12)
    assert sum(j.p) == pytest.approx(1.0)


def test_readout_one_label_missing_counts_as_minus_inf():
    j = read_payload(completion_json([("neutral", -0.1), ("support", -2.4), ("The", -3.0), ("I", -4.0)]))
    assert j.status == "ok"
    assert j.p[2] == 0.0
    z = math.exp(-2.4) + math.exp(-0.1)
    assert j.p[:2] == pytest.approx((math.exp(-2.4) / z, math.exp(-0.1) / z))  # (0.0911, 0.9089)
    only = probs_from_top_logprobs([("Oppose", -0.5), ("No", -1.0)], "Oppose")
    assert only == Judgment((0.0, 0.0, 1.0), "ok")


def test_readout_capitalised_space_prefixed_and_punctuated_tokens():
    top = [(" Support", -0.3), ("support", -0.9), (" neutral", -1.5), ("OPPOSE.", -2.0), ("\"neutral", -5.0)]
    j = probs_from_top_logprobs(top, " Support")
    # each label takes the max logprob among its spellings
    assert j.p == pytest.approx(tuple(_softmax([-0.3, -1.5, -2.0])))
    assert [label_of_token(t) for t in ("Support", " neutral", "\nOppose", "supports", "opposed", "sup",
                                        "Neu", " op")] == ["support", "neutral", "oppose", "support",
                                                           "oppose", "support", "neutral", "oppose"]
    # single letters and other words are not labels
    assert [label_of_token(t) for t in ("n", "o", "S", "No", "Yes", "", "  ", "!")] == [None] * 8


def test_label_of_token_reads_every_inflection_of_a_label():
    # "oppose" is not a prefix of "opposing"/"opposition": they read as oppose all the same (#11)
    assert [label_of_token(t) for t in ("opposing", "Opposition", " opposes", "supportive", "Supports",
                                        "neutrality", "Oppos")] == \
        ["oppose", "oppose", "oppose", "support", "support", "neutral", "oppose"]
    j = probs_from_top_logprobs([(" Opposing", -0.2), ("supportive", -1.2), ("The", -0.1)], "Opposing")
    assert j.status == "ok" and j.p == pytest.approx(tuple(_softmax([-1.2, -math.inf, -0.2])))
    # the text fallback reads the same words
    assert probs_from_top_logprobs([], "The response is opposing it.") == Judgment((0.0, 0.0, 1.0), "text_fallback")
    assert probs_from_top_logprobs([], "It is supportive of it.") == Judgment((1.0, 0.0, 0.0), "text_fallback")
    assert probs_from_top_logprobs([], "It is unsupported.").status == "failed"


def test_readout_no_label_in_logprobs_falls_back_to_text():
    j = read_payload(completion_json([("The", -0.1), ("This", -1.0)], text="Neutral."))
    assert j == Judgment((0.0, 1.0, 0.0), "text_fallback")
    # a server that sends no logprobs at all (e.g. logprobs unsupported)
    j = read_payload(completion_json(None, text="The response would oppose it"))
    assert j == Judgment((0.0, 0.0, 1.0), "text_fallback")


def test_readout_judge_refusal_is_failed_not_neutral():
    text = "I'm sorry, I can't help with that"
    j = read_payload(completion_json([("I", -0.05), ("Sorry", -3.0), ("As", -4.0)], text=text))
    assert j.status == "failed"
    assert all(math.isnan(x) for x in j.p)
    assert j.error == f"no label in logprobs or text: {text}"
    long = "x" * 200
    assert probs_from_top_logprobs([], long).error == "no label in logprobs or text: " + "x" * 80


def test_readout_nan_and_very_small_logprobs():
    assert probs_from_top_logprobs([("support", float("nan"))], "").status == "failed"
    # stable for logprobs far below 0 (no underflow to 0/0)
    j = probs_from_top_logprobs([("support", -1000.0), ("oppose", -1001.0)], "")
    e = math.exp(-1.0)
    assert j.p == pytest.approx((1 / (1 + e), 0.0, e / (1 + e)))


# ------------------------------------------------------------------------------------ prompt

def test_prompt_v1_is_ours_and_complete():
    system, user = JUDGE_PROMPTS["v1"]
    for s in STANCES:
        assert s in system
    assert "refusal" in system.lower() and "exactly one word" in system
    msgs = judge_messages("Should we stop {immigration}?", "{0} No.", "immigration")
    assert msgs[0] == {"role": "system", "content": system}
    assert "Immigration" in msgs[1]["content"] and "{0} No." in msgs[1]["content"]
    assert "Should we stop {immigration}?" in msgs[1]["content"]
    with pytest.raises(ValueError, match="prompt_version"):
        judge_messages("q", "a", "abortion", "v999")


# ------------------------------------------------------------------------------ local API server

class FakeAPI(LocalHTTPServer):
    """A chat-completions server on 127.0.0.1 with scripted behaviour per question.

    script: question -> list of behaviours, one per request for that question (the last repeats):
    "ok:<label>" | "429" | "500" | "400" | "sleep" | "trunc" (a 200 whose JSON body is cut in half) |
    "echo:<n>" (a 400 whose message is n x's, then the request's Authorization header) |
    "echo200" (a 200 whose text is the Authorization header, with no label and no logprobs) |
    "lp:<value>" (a 200 whose "support" logprob is <value>: a number or "null") |
    "qwen3:<label>" (a thinking model: "<think>" unless the body says enable_thinking false, then the label).
    on_request(n) is called with the running count of requests as each one arrives.
    """

    def __init__(self, script: dict[str, list[str]], api_key: str | None = SECRET, sleep_s: float = 0.6,
                 on_request=None):
        self.script, self.api_key, self.sleep_s, self.on_request = script, api_key, sleep_s, on_request
        self.requests = 0
        self.counts: dict[str, int] = {}
        self.bodies: list[dict] = []
        self.auth_headers: list[str | None] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep pytest output quiet
                pass

            def _send(self, code: int, obj: dict, headers: dict | None = None, cut: bool = False):
                data = json.dumps(obj).encode()
                data = data[:len(data) // 2] if cut else data  # Content-Length matches: only the JSON is bad
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                auth = self.headers.get("Authorization")
                question = re.search(r"QUESTION:\n(.*?)\n\nRESPONSE:", body["messages"][1]["content"], re.S).group(1)
                with outer.lock:
                    outer.bodies.append(body)
                    outer.auth_headers.append(auth)
                    n = outer.counts.get(question, 0)
                    outer.counts[question] = n + 1
                    outer.requests += 1
                    total = outer.requests
                if outer.on_request is not None:
                    outer.on_request(total)
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": "not found"}})
                if outer.api_key is not None and auth != f"Bearer {outer.api_key}":
                    return self._send(401, {"error": {"message": "Incorrect API key provided"}})
                steps = outer.script[question]
                step = steps[min(n, len(steps) - 1)]
                if step.startswith("ok:"):
                    label = step[3:]
                    others = [s for s in STANCES if s != label]
                    top = [(label, -0.1), (others[0], -2.5), (others[1], -4.0), ("The", -6.0)][: body["top_logprobs"]]
                    return self._send(200, completion_json(top, text=label, model=body["model"]))
                if step == "sleep":
                    time.sleep(outer.sleep_s)
                    return self._send(200, completion_json([("support", -0.1)]))
                if step == "429":
                    return self._send(429, {"error": {"message": "Rate limit reached", "type": "requests"}},
                                      {"retry-after-ms": "1"})
                if step == "500":
                    return self._send(500, {"error": {"message": "The server had an error"}})
                if step == "400":
                    return self._send(400, {"error": {"message": "Invalid request: bad things"}})
                if step == "trunc":
                    return self._send(200, completion_json([("support", -0.1)], model=body["model"]), cut=True)
                if step == "echo200":
                    return self._send(200, completion_json(None, text=f"I was sent Authorization: {auth}"))
                if step.startswith("lp:"):
                    value = None if step[3:] == "null" else float(step[3:])
                    return self._send(200, completion_json([("support", value), ("neutral", -2.0), ("oppose", -3.0)]))
                if step.startswith("qwen3:"):
                    if (body.get("chat_template_kwargs") or {}).get("enable_thinking") is False:
                        return self._send(200, completion_json([(step[6:], -0.05), ("The", -4.0)]))
                    return self._send(200, completion_json([("<think>", -0.0001), ("\n", -9.5)]))
                if step.startswith("echo:"):
                    message = "x" * int(step[5:]) + f"Authorization: {auth}"
                    return self._send(400, {"error": {"message": message}})
                raise AssertionError(step)

        super().__init__(Handler)


@pytest.fixture
def api_env(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def _judge(base_url, **kw):
    kw = {"max_retries": 3, "timeout_s": 0.25, "backoff_base_s": 0.001, "backoff_max_s": 0.01,
          "max_concurrency": 4, **kw}
    return OpenAIJudge(model="gpt-4o", base_url=base_url, **kw)


def _items(*questions):
    return [JudgeItem(q, f"answer to {q}", "immigration") for q in questions]


def test_openai_judge_success_request_shape_and_auth(api_env):
    labels = ["support", "neutral", "oppose", "support", "neutral", "oppose", "support"]
    script = {f"q{i}": [f"ok:{s}"] for i, s in enumerate(labels)}
    with FakeAPI(script) as api:
        judge = _judge(api.base_url)
        got = []
        res = judge.judge(_items(*script), on_result=lambda i, j: got.append((i, j)))
    assert [argmax_label(j.p) for j in res] == labels  # input order
    assert all(j.status == "ok" for j in res)
    assert res[0].p == pytest.approx(tuple(_softmax([-0.1, -2.5, -4.0])))
    assert sorted(i for i, _ in got) == list(range(len(labels)))
    assert all(res[i] == j for i, j in got)
    assert api.counts == {q: 1 for q in script}
    assert set(api.auth_headers) == {f"Bearer {SECRET}"}  # the key IS sent
    body = api.bodies[0]
    assert body["model"] == "gpt-4o" and body["max_tokens"] == 1 and body["temperature"] == 0
    assert body["logprobs"] is True and body["top_logprobs"] == 5
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert judge.stats == {"requests": 7, "retries": 0, "failed": 0}
    assert isinstance(judge, Judge)


def test_openai_judge_retries_timeouts_and_failures(api_env, caplog):
    script = {
        "ok": ["ok:oppose"],
        "rate": ["429", "ok:support"],
        "flaky": ["500", "500", "500", "ok:neutral"],
        "slow": ["sleep", "ok:support"],
        "down": ["500"],
        "bad": ["400"],
        "ok2": ["ok:neutral"],
    }
    with FakeAPI(script) as api, caplog.at_level("WARNING", logger="vd.judge"):
        judge = _judge(api.base_url, max_retries=3)
        t0 = time.monotonic()
        res = judge.judge(_items(*script))
        elapsed = time.monotonic() - t0
    assert len(caplog.records) == 1 and "2 of 7 items failed" in caplog.records[0].getMessage()
    by_q = dict(zip(script, res))
    assert [argmax_label(by_q[q].p) for q in ("ok", "rate", "flaky", "slow", "ok2")] == \
        ["oppose", "support", "neutral", "support", "neutral"]
    assert all(by_q[q].status == "ok" for q in ("ok", "rate", "flaky", "slow", "ok2"))
    # always 500: 1 try + max_retries retries, then "failed" with the error; never raised or dropped
    down = by_q["down"]
    assert down.status == "failed" and all(math.isnan(x) for x in down.p)
    assert down.error.startswith("HTTP 500: The server had an error") and "4 attempts" in down.error
    # 400: fails at once, no retry
    assert by_q["bad"].status == "failed" and by_q["bad"].error == "HTTP 400: Invalid request: bad things"
    assert api.counts == {"ok": 1, "rate": 2, "flaky": 4, "slow": 2, "down": 4, "bad": 1, "ok2": 1}
    assert judge.stats == {"requests": 15, "retries": 15 - 7, "failed": 2}
    assert elapsed < 5


def test_backoff_is_exponential_jittered_seeded_and_capped(api_env):
    a, b = (_judge("http://127.0.0.1:9/v1", backoff_base_s=1.0, backoff_max_s=30, seed=7) for _ in range(2))
    da = [a._backoff(k, None) for k in range(7)]
    assert da == [b._backoff(k, None) for k in range(7)]  # seeded
    for k, d in enumerate(da):
        cap = min(30, 2 ** k)
        assert cap / 2 <= d <= cap
    assert a._backoff(0, retry_after=5.0) >= 5.0  # a 429's Retry-After is honoured ...
    assert a._backoff(0, retry_after=999.0) <= 30  # ... up to backoff_max_s
    assert _retry_after_s({"retry-after-ms": "250"}) == 0.25
    assert _retry_after_s({"retry-after": "2"}) == 2.0
    assert _retry_after_s({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) is None
    assert _retry_after_s({}) is None


def test_openai_judge_timeout_gives_up_with_error(api_env):
    with FakeAPI({"slow": ["sleep"]}, sleep_s=0.5) as api:
        judge = _judge(api.base_url, max_retries=1, timeout_s=0.15)
        (res,) = judge.judge(_items("slow"))
    assert res.status == "failed"
    assert res.error == "timeout: no response within 0.15 s (gave up after 2 attempts)"
    assert api.counts == {"slow": 2}


def test_openai_judge_never_leaks_the_key(api_env):
    script = {"down": ["500"], "bad": ["400"], "ok": ["ok:support"]}
    with FakeAPI(script, api_key="a-different-key") as api:  # the server rejects our key: 401
        judge = _judge(api.base_url, max_retries=1)
        res = judge.judge(_items(*script), progress=True)
    assert all(j.status == "failed" for j in res)
    assert all(j.error.startswith("HTTP 401") for j in res)
    assert api.counts == {"down": 1, "bad": 1, "ok": 1}  # 401 is not retried
    assert set(api.auth_headers) == {f"Bearer {SECRET}"}
    for text in [judge.key, repr(judge), str(judge), *(j.error for j in res), repr(res)]:
        assert SECRET not in text and "SECRET" not in text
    assert judge.key == f"openai:gpt-4o:v1@{api.base_url}{NO_THINKING}"
    # the redaction itself, should a server ever echo the key back
    assert SECRET not in judge._redact(f"Error: bad key {SECRET}")


def test_openai_judge_key_from_environment_only(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(JudgeUnavailable, match="OPENAI_API_KEY"):
        OpenAIJudge()
    # a local server without auth: a placeholder key is sent
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with FakeAPI({"q": ["ok:neutral"]}, api_key=None) as api:
        res = _judge(api.base_url).judge(_items("q"))
    assert res[0].status == "ok" and argmax_label(res[0].p) == "neutral"
    assert api.auth_headers == ["Bearer EMPTY"]


def test_openai_judge_empty_and_bad_arguments(api_env):
    judge = _judge("http://127.0.0.1:9/v1")
    assert judge.judge([]) == []
    with pytest.raises(ValueError, match="prompt_version"):
        _judge("http://127.0.0.1:9/v1", prompt_version="nope")
    with pytest.raises(ValueError, match="max_concurrency"):
        _judge("http://127.0.0.1:9/v1", max_concurrency=0)


def test_openai_judge_connection_refused_is_failed(api_env):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens here now
    (res,) = _judge(f"http://127.0.0.1:{port}/v1", max_retries=2).judge(_items("q"))
    assert res.status == "failed" and res.error.startswith("connection error")
    assert "3 attempts" in res.error


def test_malformed_reply_is_that_items_failure_and_every_judgment_is_stored(api_env, tmp_path):
    # about 1 request in 8 comes back as truncated JSON (#12.3); before, JSONDecodeError escaped
    # judge_one, cancelled the pool, and none of the 21 judgments was stored
    script = {f"q{i}": (["trunc", f"ok:{STANCES[i % 3]}"] if i % 8 == 0 else [f"ok:{STANCES[i % 3]}"])
              for i in range(20)}
    script["always-cut"] = ["trunc"]
    items = _items(*script)
    with FakeAPI(script) as api, Store(tmp_path / "cache.sqlite") as store:
        judge = _judge(api.base_url, max_retries=2)
        res = CachedJudge(judge, store).judge(items)
        stored = store.get_judgments(judge.key, [cache_key(it) for it in items], include_failed=True)
    assert len(stored) == 21
    assert [argmax_label(j.p) for j in res[:20]] == [STANCES[i % 3] for i in range(20)]
    assert all(j.status == "ok" for j in res[:20])
    cut = res[20]
    assert cut.status == "failed" and cut.error.startswith("malformed response: JSONDecodeError")
    assert "gave up after 3 attempts" in cut.error  # a cut body is retried: it is a transient fault
    assert stored[cache_key(items[20])]["status"] == "failed"
    assert api.counts["q0"] == api.counts["q8"] == api.counts["q16"] == 2 and api.counts["always-cut"] == 3


def test_interrupted_judging_keeps_what_arrived_and_the_rerun_asks_only_for_the_rest(api_env, tmp_path):
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT is not Python's default KeyboardInterrupt here")
    script = {f"q{i}": [f"ok:{STANCES[i % 3]}"] for i in range(24)}
    items, concurrency, interrupt_at = _items(*script), 2, 11
    main = threading.main_thread().ident

    def ctrl_c(n):  # a Ctrl-C in the middle of judging, as the 11th request arrives
        if n == interrupt_at:
            signal.pthread_kill(main, signal.SIGINT)

    with Store(tmp_path / "cache.sqlite") as store, FakeAPI(script, on_request=ctrl_c) as api:
        judge = _judge(api.base_url, max_concurrency=concurrency)
        with pytest.raises(KeyboardInterrupt):
            CachedJudge(judge, store).judge(items)
        kept = store.get_judgments(judge.key, [cache_key(it) for it in items])
        # every judgment that arrived before the interruption is stored: at most those in flight are lost
        assert interrupt_at - 1 - concurrency <= len(kept) < len(items)
        api.counts.clear()
        rerun = CachedJudge(_judge(api.base_url, max_concurrency=concurrency), store)  # the same server
        res = rerun.judge(items)
        missing = {it.question for it in items if cache_key(it) not in kept}
        assert api.counts == {q: 1 for q in missing}  # only the rest, each once
        assert rerun.counts == {"items": 24, "cached": len(kept), "judged": len(missing), "failed": 0}
    assert [argmax_label(j.p) for j in res] == [STANCES[i % 3] for i in range(24)]


CANARY = "sk-test-CANARY-9f3Qz"  # 20 characters


def test_no_8_characters_of_the_key_survive_the_cut_in_cache_or_log(monkeypatch, api_env, tmp_path, caplog):
    # a server echoing the Authorization header, the key at every offset around the 120-character cut
    # (#12.5: the cut ran before the redaction, and kept 16 of the key's characters)
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    offsets = range(40, 110)
    script = {f"q{n}": [f"echo:{n}"] for n in offsets}
    with FakeAPI(script, api_key=CANARY) as api, caplog.at_level(logging.DEBUG):
        with Store(tmp_path / "cache.sqlite") as store:
            judge = _judge(api.base_url, max_concurrency=8)
            res = CachedJudge(judge, store).judge(_items(*script))
            errors = store.failures(judge.key)["error"].tolist()
    assert api.auth_headers[0] == f"Bearer {CANARY}" and len(errors) == len(offsets)
    assert all(j.status == "failed" and j.error.startswith("HTTP 400: ") for j in res)
    assert any("Bearer ***" in e for e in errors)  # the echo got through, redacted
    stored = b"".join(f.read_bytes() for f in tmp_path.iterdir())  # the database and its WAL
    logged = "\n".join(r.getMessage() for r in caplog.records) + caplog.text
    assert logged and stored
    for i in range(len(CANARY) - 7):
        run = CANARY[i:i + 8]
        assert run.encode() not in stored, run
        assert run not in logged, run
        assert not any(run in j.error for j in res), run


def _key_runs(text: str | bytes, key: str = CANARY) -> list[str]:
    """Every run of 8 characters of `key` found in `text`."""
    runs = [key[i:i + 8] for i in range(len(key) - 7)]
    return [r for r in runs if (r.encode() if isinstance(text, bytes) else r) in text]


def test_a_200_reply_echoing_the_key_without_a_label_leaves_no_key_anywhere(monkeypatch, api_env, tmp_path,
                                                                           caplog, capsys):
    # a reply with no label was stored with its text as the error, unredacted: the key reached
    # cache.sqlite, the warning on stderr and the returned errors
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    script = {"q1": ["echo200"], "q2": ["echo200"], "ok": ["ok:oppose"]}
    with FakeAPI(script, api_key=CANARY) as api, caplog.at_level(logging.DEBUG):
        with Store(tmp_path / "cache.sqlite") as store:
            judge = _judge(api.base_url)
            res = CachedJudge(judge, store).judge(_items(*script), progress=True)
            errors = store.failures(judge.key)["error"].tolist()
    printed = capsys.readouterr()
    assert api.auth_headers[0] == f"Bearer {CANARY}"  # the server did see it, and echoed it
    assert [j.status for j in res] == ["failed", "failed", "ok"] and len(errors) == 2
    assert all(e.startswith("no label in logprobs or text: I was sent Authorization: Bearer ***") for e in errors)
    stored = b"".join(f.read_bytes() for f in tmp_path.iterdir())  # the database and its WAL
    logged = "\n".join(r.getMessage() for r in caplog.records) + caplog.text
    assert "2 of 3 items failed" in logged
    for text in (stored, logged, printed.err, printed.out, *errors, *(j.error or "" for j in res), repr(res)):
        assert not _key_runs(text)


class LeakyJudge:
    """A judge of any kind whose failures quote the environment's API key."""

    key = "leaky"

    def judge(self, items, progress=False, on_result=None):
        import os

        out = [Judgment((math.nan,) * 3, "failed", f"server said: key {os.environ['OPENAI_API_KEY']} rejected")
               for _ in items]
        for i, j in enumerate(out):
            if on_result is not None:
                on_result(i, j)
        return out


def test_the_cache_redacts_whatever_judge_made_the_error(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    with Store(tmp_path / "cache.sqlite") as store:
        res = CachedJudge(LeakyJudge(), store).judge(_items("q"))
        errors = store.failures("leaky")["error"].tolist()
    assert errors == ["server said: key *** rejected"] and res[0].error == errors[0]
    assert not _key_runs(b"".join(f.read_bytes() for f in tmp_path.iterdir()))
    # and every log line of vd.judge, whatever it logs
    from vd.judge.redaction import judge_logger

    with caplog.at_level(logging.INFO):
        judge_logger("vd.judge.sanity").warning("first error: %s", f"Bearer {CANARY}")
    assert caplog.records[-1].getMessage() == "first error: Bearer ***" and not _key_runs(caplog.text)


def test_a_logprob_above_0_or_null_is_a_malformed_reply():
    for bad, what in ((0.5, "logprob 0.5 > 0"), (None, "a null logprob"), (float("nan"), "a NaN logprob"),
                      (float("inf"), "logprob inf > 0")):
        j = probs_from_top_logprobs([("support", -0.1), ("The", bad)], "support")
        assert j.status == "failed"
        assert j.error == f"malformed reply: token 'The' has {what}; a log-probability is a number <= 0"
    # float32 rounding of p = 1 (log p about 1e-7) is read as 0, up to the tolerance
    j = probs_from_top_logprobs([("support", 1e-7), ("oppose", -2.0)], "")
    assert j.status == "ok" and j.p == pytest.approx(tuple(_softmax([0.0, -math.inf, -2.0])))
    assert probs_from_top_logprobs([("support", 2e-4)], "").status == "failed"
    assert probs_from_top_logprobs([("support", -math.inf), ("oppose", -1.0)], "").p == (0.0, 0.0, 1.0)


def test_the_openai_judge_fails_an_item_whose_logprob_is_above_0_or_null(api_env):
    script = {"positive": ["lp:0.5"], "null": ["lp:null"], "rounding": ["lp:1e-7"], "ok": ["lp:-0.2"]}
    with FakeAPI(script) as api:
        res = dict(zip(script, _judge(api.base_url).judge(_items(*script))))
    assert res["positive"].status == "failed" and "logprob 0.5 > 0" in res["positive"].error
    assert res["null"].status == "failed" and "a null logprob" in res["null"].error
    assert res["rounding"].status == res["ok"].status == "ok"
    assert res["rounding"].p == pytest.approx(tuple(_softmax([0.0, -2.0, -3.0])))


def test_a_local_server_is_told_not_to_think(api_env):
    # a Qwen3 server asked for one token answered "<think>": every item failed to read
    script = {"q": ["qwen3:oppose"]}
    with FakeAPI(script) as api:
        (j,) = _judge(api.base_url).judge(_items("q"))
        assert api.bodies[-1]["chat_template_kwargs"] == {"enable_thinking": False}
        assert j.status == "ok" and argmax_label(j.p) == "oppose"
        (j,) = _judge(api.base_url, chat_template_kwargs={}).judge(_items("q"))  # {}: none sent
        assert "chat_template_kwargs" not in api.bodies[-1] and j.status == "failed"
        configured = make_judge(JudgeConfig(base_url=api.base_url, chat_template_kwargs={"enable_thinking": False,
                                                                                          "effort": "low"}))
        configured.judge(_items("q"))
        assert api.bodies[-1]["chat_template_kwargs"] == {"enable_thinking": False, "effort": "low"}
        assert configured.key.endswith('@' + api.base_url + ';effort="low";enable_thinking=false')
    # OpenAI's own API takes no such field: none is sent, and params that set one are refused
    assert OpenAIJudge()._extra_body is None and OpenAIJudge().key == "openai:gpt-4o:v1"
    with pytest.raises(JudgeUnavailable, match=r"^judge\.chat_template_kwargs: OpenAI's API takes none"):
        check_available(JudgeConfig(chat_template_kwargs={"enable_thinking": False}))


def test_redact_hides_every_long_run_of_the_key():
    from vd.judge.openai_api import redact

    assert redact(f"a {CANARY} b", CANARY) == "a *** b"
    assert redact(f"cut: {CANARY[:9]}", CANARY) == "cut: ***"  # a prefix the server kept
    assert redact(f"{CANARY[5:13]}|{CANARY[:7]}", CANARY) == f"***|{CANARY[:7]}"  # 7 characters say little
    assert redact("nothing here", CANARY) == "nothing here" and redact("x", None) == "x"


def test_cache_key_names_the_endpoint_never_the_api_key(monkeypatch, api_env):
    # two servers serving one model name must not share judgments (#11)
    a = _judge("http://127.0.0.1:8001/v1")
    b = _judge("http://127.0.0.1:8002/v1/")
    assert a.key == f"openai:gpt-4o:v1@http://127.0.0.1:8001/v1{NO_THINKING}"
    assert b.key == f"openai:gpt-4o:v1@http://127.0.0.1:8002/v1{NO_THINKING}"
    # OpenAI's own endpoint keeps the key judgments were cached under before endpoints were named
    assert OpenAIJudge().key == "openai:gpt-4o:v1"
    monkeypatch.setenv("OPENAI_BASE_URL", "http://10.0.0.5:8000/v1")  # what the client itself reads
    assert OpenAIJudge().key == f"openai:gpt-4o:v1@http://10.0.0.5:8000/v1{NO_THINKING}"
    # credentials in the URL, and the key itself, never reach the cache key
    c = _judge(f"https://user:{SECRET}@Proxy.Example:8443/v1?api-key={SECRET}")
    assert c.key == f"openai:gpt-4o:v1@https://proxy.example:8443/v1{NO_THINKING}"
    assert SECRET not in repr(c) and "user" not in c.key
    d = _judge(f"http://127.0.0.1:9/{SECRET}/v1")
    assert SECRET not in d.key and d.key == f"openai:gpt-4o:v1@http://127.0.0.1:9/***/v1{NO_THINKING}"


# ------------------------------------------------------------------------------------ HF judge

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture(scope="module")
def tiny_lm():
    torch = pytest.importorskip("torch")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

    corpus = [
        "Which stance does the RESPONSE take? support, neutral, or oppose.",
        "I support this. I am neutral on this. I oppose this. Support Neutral Oppose",
        "Should we stop immigration? Yes we should. No we should not. It depends.",
        "The QUESTION asks about abortion, climate change and religion. The answer is balanced.",
        "You are a careful annotator of stances in text. Answer with exactly one word.",
    ] * 20
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    hf_tok.chat_template = CHATML
    torch.manual_seed(0)
    cfg = Qwen3Config(vocab_size=len(hf_tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=2048,
                      pad_token_id=hf_tok.pad_token_id, eos_token_id=hf_tok.eos_token_id)
    model = Qwen3ForCausalLM(cfg).eval()
    return model, hf_tok


def test_hf_judge_probabilities_and_batched_equals_single(tiny_lm):
    judge = HFJudge(tiny_lm, batch_size=4, name="tiny-random")
    assert judge.key == "hf:tiny-random:v1:labels-2"
    assert len({i for ids in judge.label_token_ids for i in ids}) == sum(map(len, judge.label_token_ids))
    items = [JudgeItem(f"Should we {'really ' * k}stop immigration?", "It depends. " * (k % 3 + 1), "immigration")
             for k in range(7)] + [JudgeItem("Is religion good?", "I support this.", "religion")]
    batched = judge.judge(items)
    single = [judge.judge([it])[0] for it in items]
    for b, s in zip(batched, single):
        assert b.status == s.status == "ok"
        assert sum(b.p) == pytest.approx(1.0)
        assert b.p == pytest.approx(s.p, abs=1e-5)
    assert len({round(j.p[0], 6) for j in batched}) > 1  # the inputs matter
    seen = []
    judge.judge(items, on_result=lambda i, j: seen.append(i))
    assert sorted(seen) == list(range(len(items)))


def _word_tokenizer(words):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[UNK]", "<|im_start|>", "<|im_end|>", *words])}
    wl = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    wl.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=wl, unk_token="[UNK]", eos_token="<|im_end|>")
    tok.chat_template = CHATML
    return tok


class FixedNextToken:
    """A stand-in causal LM whose next-token logits are fixed (token -> logit, the rest -20); it raises
    for a batch of more than `max_batch` rows, and for any row holding the token `poison`."""

    def __new__(cls, tok, logits: dict[str, float], max_batch: int = 64, poison: str | None = None):
        torch = pytest.importorskip("torch")

        class Model(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.anchor = torch.nn.Parameter(torch.zeros(1))  # so the judge finds a device

            def forward(self, input_ids, attention_mask=None, position_ids=None, logits_to_keep=0):
                if input_ids.shape[0] > max_batch:
                    raise RuntimeError("CUDA out of memory (simulated)")
                if poison is not None and (input_ids == tok.convert_tokens_to_ids(poison)).any():
                    raise RuntimeError("bad row (simulated)")
                row = torch.full((len(tok),), -20.0)
                for t, v in logits.items():
                    row[tok.convert_tokens_to_ids(t)] = v
                return SimpleNamespace(logits=row.expand(input_ids.shape[0], 1, -1).clone())

        return Model()


HF_WORDS = ["support", "neutral", "oppose", "opposition", "Opposing", "supportive", "The", "BOOM"]
HF_LOGITS = {"opposition": 2.0, "support": 1.0, "supportive": -0.5, "neutral": 0.0, "oppose": -1.0,
             "Opposing": -3.0, "The": 1.5}


def test_hf_judge_reads_labels_as_the_openai_judge_does():
    # the HF judge read each label's first token only, by its own matching (#11): "opposition" was lost
    torch = pytest.importorskip("torch")
    tok = _word_tokenizer(HF_WORDS)
    judge = HFJudge((FixedNextToken(tok, HF_LOGITS), tok), name="fixed")
    assert judge.key == "hf:fixed:v1:labels-2"
    ids = {s: {tok.decode([i]) for i in group} for s, group in zip(STANCES, judge.label_token_ids)}
    assert ids == {"support": {"support", "supportive"}, "neutral": {"neutral"},
                   "oppose": {"oppose", "opposition", "Opposing"}}
    (j,) = judge.judge([JudgeItem("Should we stop immigration?", "The answer.", "immigration")])
    assert j.status == "ok" and argmax_label(j.p) == "oppose"
    assert j.p == pytest.approx(tuple(_softmax([1.0, 0.0, 2.0])))  # best of each label's tokens
    # the very readout of the OpenAI judge, on every token of the vocabulary
    logprobs = torch.log_softmax(torch.tensor([HF_LOGITS.get(tok.decode([i]), -20.0) for i in range(len(tok))]), -1)
    pairs = [(tok.decode([i]), float(logprobs[i])) for i in range(len(tok))]
    assert j.p == pytest.approx(probs_from_top_logprobs(pairs, "opposition").p, abs=1e-12)


def test_hf_judge_a_batch_that_raises_is_judged_item_by_item():
    tok = _word_tokenizer(HF_WORDS)
    judge = HFJudge((FixedNextToken(tok, HF_LOGITS, max_batch=1, poison="BOOM"), tok), batch_size=4)
    items = [JudgeItem("Q?", "The answer.", "religion")] * 3 + [JudgeItem("Q?", "BOOM", "religion")]
    res = judge.judge(items)
    assert [j.status for j in res] == ["ok", "ok", "ok", "failed"]
    assert res[3].error == "RuntimeError: bad row (simulated)"


def test_hf_judge_needs_a_token_for_each_label(tiny_lm):
    model, tok = tiny_lm
    for s, ids in zip(STANCES, HFJudge((model, tok)).label_token_ids):
        assert ids and all(label_of_token(tok.decode([i])) == s for i in ids), s
        assert tok.convert_tokens_to_ids(f"\u0120{s}") in ids  # " support": a byte-level BPE token
    # a word-level tokenizer that knows none of the labels: all three read as [UNK]
    with pytest.raises(ValueError, match="no token of this tokenizer reads as 'support'"):
        HFJudge((model, _word_tokenizer(["system", "user", "assistant"])))


# ------------------------------------------------------------------------------------- lexicon

def test_lexicon_reads_each_phrase_back():
    judge = LexiconJudge()
    for s, phrases in STANCE_PHRASES.items():
        for ph in phrases:
            (j,) = judge.judge([JudgeItem("Q?", ph.capitalize() + ", because reasons.", "abortion")])
            assert j.status == "ok" and argmax_label(j.p) == s
            assert j.p[STANCES.index(s)] > 0.8
            assert sum(j.p) == pytest.approx(1.0)


def test_lexicon_no_phrase_is_neutral_and_mixed_is_soft():
    judge = LexiconJudge(smoothing=0.1)
    none, mixed, two = judge.judge([
        JudgeItem("Q?", "Bananas are yellow.", "religion"),
        JudgeItem("Q?", "Yes, I support this.  But  I am\nagainst this too.", "religion"),
        JudgeItem("Q?", "I agree with this. I strongly support it. It depends on the situation.", "religion"),
    ])
    assert argmax_label(none.p) == "neutral" and none.status == "ok"
    assert none.p == pytest.approx((0.1 / 1.3, 1.1 / 1.3, 0.1 / 1.3))
    assert mixed.p == pytest.approx((1.1 / 2.3, 0.1 / 2.3, 1.1 / 2.3))  # whitespace normalised
    assert two.p == pytest.approx((2.1 / 3.3, 1.1 / 3.3, 0.1 / 3.3))
    assert LexiconJudge(smoothing=0).judge_answer("nothing").p == (0.0, 1.0, 0.0)
    assert LexiconJudge().key == LexiconJudge().key and LexiconJudge(0.2).key != LexiconJudge().key
    assert isinstance(judge, Judge)


def test_stance_phrase_banks_are_disjoint():
    for s, phrases in STANCE_PHRASES.items():
        for t, others in STANCE_PHRASES.items():
            if s != t:
                for a in phrases:
                    for b in others:
                        assert a not in b and b not in a, (a, b)


# ----------------------------------------------------------------------------------- agreement

def test_agreement_classic_2x2_kappa():
    # 50 items: both "support" 20, A support/B oppose 5, A oppose/B support 10, both "oppose" 15.
    # p_o = 35/50 = 0.7; p_e = 0.5*0.6 + 0.5*0.4 = 0.5; kappa = (0.7-0.5)/(1-0.5) = 0.4
    a = ["support"] * 25 + ["oppose"] * 25
    b = ["support"] * 20 + ["oppose"] * 5 + ["support"] * 10 + ["oppose"] * 15
    r = agreement(a, b)
    assert r["n"] == 50
    assert r["accuracy"] == pytest.approx(0.7)
    assert r["cohen_kappa"] == pytest.approx(0.4)


def test_agreement_perfect_mixed_inputs_and_failures():
    labels = ["support", "neutral", "oppose", "neutral"]
    probs = [(0.7, 0.2, 0.1), (0.1, 0.8, 0.1), (0.0, 0.3, 0.7), Judgment((0.2, 0.5, 0.3), "ok")]
    r = agreement(labels, probs)
    assert r == {"accuracy": 1.0, "cohen_kappa": 1.0, "n": 4}
    failed = Judgment(J.NAN3, "failed", "x")
    r = agreement(labels + ["support"], probs + [failed])
    assert r["n"] == 4 and r["cohen_kappa"] == 1.0
    assert math.isnan(agreement(["support"] * 3, ["support"] * 3)["cohen_kappa"])  # p_e = 1: undefined
    assert agreement([], [])["n"] == 0
    with pytest.raises(ValueError):
        agreement(["support"], ["yes"])
    with pytest.raises(ValueError):
        agreement(["support"], [])


def test_argmax_label():
    assert argmax_label((0.2, 0.5, 0.3)) == "neutral"
    assert argmax_label((0.4, 0.2, 0.4)) == "support"  # ties: STANCES order
    assert argmax_label((math.nan,) * 3) is None


# ---------------------------------------------------------------------------------- make_judge

def test_make_judge_builds_what_the_registry_names(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    oj = make_judge(JudgeConfig(kind="openai", model="gpt-4o-2024-08-06", base_url="http://127.0.0.1:9/v1",
                                max_concurrency=2, max_retries=1, timeout_s=3.0))
    assert isinstance(oj, OpenAIJudge) and oj.key == f"openai:gpt-4o-2024-08-06:v1@http://127.0.0.1:9/v1{NO_THINKING}"
    assert (oj.max_concurrency, oj.max_retries, oj.timeout_s) == (2, 1, 3.0)
    assert isinstance(make_judge(JudgeConfig(kind="lexicon"), tiny_world=True), LexiconJudge)
    # a new judge is one class plus one registry entry
    monkeypatch.setitem(registry.JUDGES, "constant", f"{__name__}:ConstantJudge")
    built = make_judge(JudgeConfig(kind="constant", model="half"))
    assert isinstance(built, ConstantJudge) and built.key == "constant:half"
    with pytest.raises(ConfigError,
                       match=r"^judge\.kind: expected one of 'openai', 'hf', 'lexicon', 'constant', got 'gpt'$"):
        make_judge(JudgeConfig(kind="gpt"))
    with pytest.raises(TypeError, match=r"the `judge` section"):
        make_judge(SimpleNamespace(judge=JudgeConfig(kind="lexicon")))


class ConstantJudge:
    kind = "constant"

    def __init__(self, key):
        self.key = key

    @classmethod
    def check_available(cls, judge_cfg, *, tiny_world=False):
        pass

    @classmethod
    def from_config(cls, judge_cfg, *, tiny_world=False):
        return cls(f"constant:{judge_cfg.model}")

    def judge(self, items, progress=False, on_result=None):
        return [Judgment((0.25, 0.5, 0.25), "ok") for _ in items]


def test_check_available_before_any_work(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    # OpenAI's API without a key (#12.9): a ConfigError of one line naming the variable, nothing sent
    with pytest.raises(JudgeUnavailable) as e:
        check_available(JudgeConfig(kind="openai"))
    assert isinstance(e.value, ConfigError) and "\n" not in str(e.value)
    assert str(e.value).startswith("judge.kind is 'openai' and judge.base_url is not set")
    assert "OPENAI_API_KEY" in str(e.value)
    with pytest.raises(JudgeUnavailable, match="OPENAI_API_KEY"):
        make_judge(JudgeConfig(kind="openai"))
    check_available(JudgeConfig(kind="openai", base_url="http://127.0.0.1:9/v1"))  # a local server needs no key
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    check_available(JudgeConfig(kind="openai"))
    with pytest.raises(JudgeUnavailable, match=r"^judge\.prompt_version: expected one of 'v1', got 'v9'$"):
        check_available(JudgeConfig(kind="openai", prompt_version="v9"))
    with pytest.raises(JudgeUnavailable, match=r"^judge\.model: expected a local instruction model"):
        check_available(JudgeConfig(kind="hf", model=""))
    with pytest.raises(JudgeUnavailable, match=r"^judge\.model: '/no/such/model': no such folder"):
        check_available(JudgeConfig(kind="hf", model="/no/such/model"))
    with pytest.raises(JudgeUnavailable, match=r"^judge\.model: 'gpt-4o' does not load as a judge"):
        make_judge(JudgeConfig(kind="hf"))  # offline, and no such folder: not a traceback from transformers


def test_lexicon_judge_is_refused_outside_the_tiny_world():
    # on real text it read every answer as neutral, silently: M = 0, eta missing everywhere (#11)
    for call in (check_available, make_judge):
        with pytest.raises(JudgeUnavailable,
                           match=r"^judge\.kind: 'lexicon' reads only the stance phrases the tiny world"):
            call(JudgeConfig(kind="lexicon"))
    check_available(JudgeConfig(kind="lexicon"), tiny_world=True)
