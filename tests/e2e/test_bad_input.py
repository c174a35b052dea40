"""Bad input through the full filter chain: a clear 4xx (or a pass, where the input is valid),
never a 5xx, a hang, or a trapped VM.

One gateway (all five filters, two workers) serves every case; after the suite a valid request
must still succeed on every worker and Envoy's log must show no Wasm panic, which is how a trap
under FAIL_CLOSED would show itself.
"""
from __future__ import annotations

import json
import os

import pytest

from harness import demo, procs
from harness.rawhttp import h2c, http1

# Set to a file path to get one JSON line per case with what it returned (for reports).
CASE_LOG = os.environ.get("AIMESH_CASE_LOG")
KEY = "sk-aimesh-badinput-" + "1" * 40
CHAT = "/v1/chat/completions"
VALID = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def body(**over) -> bytes:
    return json.dumps({**VALID, **over}).encode()


def deep(n: int) -> str:
    return "[" * n + "]" * n


# (id, body bytes, expectation): "ok" = 2xx, "4xx" = any 4xx, or an exact status.
BODIES = [
    ("empty", b"", "4xx"),
    ("whitespace", b"   \n ", "4xx"),
    ("open-brace", b"{", "4xx"),
    ("truncated", body()[:-5], "4xx"),
    ("array", b"[]", "4xx"),
    ("string", b'"hello"', "4xx"),
    ("null", b"null", "4xx"),
    ("number", b"123", "4xx"),
    ("model-int", body(model=123), "4xx"),
    ("model-null", body(model=None), "4xx"),
    ("model-list", body(model=[]), "4xx"),
    ("model-object", body(model={}), "4xx"),
    ("model-empty", body(model=""), "4xx"),
    ("model-missing", json.dumps({"messages": VALID["messages"]}).encode(), "4xx"),
    ("model-crlf", body(model="gpt-4o-mini\r\nx-injected: 1"), "4xx"),
    ("model-nul", body(model="gpt\u0000mini"), "4xx"),
    ("model-100kb", body(model="m" * 100_000), "4xx"),
    ("model-unicode", body(model="модель-🚀"), "4xx_or_ok"),
    ("messages-string", body(messages="hi"), "4xx_or_ok"),
    ("messages-int", body(messages=5), "4xx_or_ok"),
    ("messages-null", body(messages=None), "4xx_or_ok"),
    ("messages-ints", body(messages=[1, 2]), "4xx_or_ok"),
    ("message-role-int", body(messages=[{"role": 5, "content": "x"}]), "4xx_or_ok"),
    ("content-int", body(messages=[{"role": "user", "content": 5}]), "4xx_or_ok"),
    ("content-parts-bad", body(messages=[{"role": "user", "content": [{"type": "text", "text": 7}]}]), "4xx_or_ok"),
    ("stream-string", body(stream="yes"), "4xx"),
    ("stream-int", body(stream=1), "4xx"),
    ("stream-options-string", body(stream=True, stream_options="x"), "4xx"),
    ("include-usage-string", body(stream=True, stream_options={"include_usage": "yes"}), "4xx"),
    ("max-tokens-negative", body(max_tokens=-1), "4xx_or_ok"),
    ("max-tokens-string", body(max_tokens="10"), "4xx"),
    ("max-tokens-huge", b'{"model":"gpt-4o-mini","messages":[],"max_tokens":1e400}', "4xx"),
    ("deep-nesting-extra-field", f'{{"model":"gpt-4o-mini","messages":[],"x":{deep(10_000)}}}'.encode(), "4xx_or_ok"),
    ("deep-nesting-content", f'{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":{deep(10_000)}}}]}}'.encode(), "4xx"),
    ("non-utf8", b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"\xff\xfe"}]}', "4xx"),
    ("raw-nul", b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"a\x00b"}]}', "4xx"),
    ("escaped-nul", body(messages=[{"role": "user", "content": "a\u0000b"}]), "ok"),
    ("lone-surrogate", b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"\\ud800"}]}', "4xx_or_ok"),
    ("duplicate-model", b'{"model":"gpt-4o-mini","model":"gpt-4o","messages":[]}', "4xx"),
    ("bom", b"\xef\xbb\xbf" + body(), "4xx"),
    ("trailing-garbage", body() + b" xyz", "4xx"),
    ("two-objects", body() + body(), "4xx"),
    ("comments", b'{"model":"gpt-4o-mini", /* c */ "messages":[]}', "4xx"),
    ("single-quotes", b"{'model':'gpt-4o-mini'}", "4xx"),
    ("nan", b'{"model":"gpt-4o-mini","messages":[],"temperature":NaN}', "4xx"),
    ("10mb-string", body(messages=[{"role": "user", "content": "a" * 10_000_000}]), "4xx_or_ok"),
    ("million-tiny-messages", body(messages=[{"role": "user", "content": "a"}] * 1_000_000), "4xx_or_ok"),
]


@pytest.fixture(scope="module")
def gateway():
    mock = procs.MockLLM("bad-input")
    envoy = procs.Envoy(demo.demo_config(KEY, mock.port), concurrency=2)
    yield envoy, mock
    envoy.stop()
    mock.stop()


def check(reply, expect: str, case: str) -> None:
    if CASE_LOG:
        code = ""
        if reply.status >= 400:
            try:
                code = json.loads(reply.body)["error"]["code"]
            except (ValueError, KeyError, TypeError):
                code = "(not json)"
        with open(CASE_LOG, "a") as f:
            f.write(json.dumps({"case": case, "status": reply.status, "code": code}) + "\n")
    assert reply.status != 0, f"{case}: connection closed without a response"
    assert reply.status < 500, f"{case}: {reply.status} {reply.body[:300]!r}"
    if expect == "ok":
        assert 200 <= reply.status < 300, f"{case}: {reply.status} {reply.body[:300]!r}"
    elif expect == "4xx":
        assert 400 <= reply.status < 500, f"{case}: {reply.status} {reply.body[:300]!r}"
    elif isinstance(expect, int):
        assert reply.status == expect, f"{case}: {reply.status} {reply.body[:300]!r}"
    if reply.status >= 400:
        err = json.loads(reply.body)["error"]
        assert err["code"] and err["message"] is not None, f"{case}: {err}"


def post(port: int, payload: bytes, headers: dict | None = None) -> bytes:
    hs = {"host": "localhost", "authorization": f"Bearer {KEY}", "content-type": "application/json",
          "content-length": str(len(payload)), **(headers or {})}
    head = f"POST {CHAT} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hs.items()) + "\r\n"
    return head.encode() + payload


@pytest.mark.parametrize("case,payload,expect", BODIES, ids=[b[0] for b in BODIES])
def test_body_http1(gateway, case, payload, expect):
    envoy, _ = gateway
    check(http1(envoy.port, post(envoy.port, payload), timeout=30), expect, f"h1 {case}")


@pytest.mark.parametrize("case,payload,expect", [b for b in BODIES if len(b[1]) < 1_000_000],
                         ids=[b[0] for b in BODIES if len(b[1]) < 1_000_000])
def test_body_http2(gateway, case, payload, expect):
    envoy, _ = gateway
    reply = h2c(envoy.port, "POST", CHAT, [("authorization", f"Bearer {KEY}"),
                                           ("content-type", "application/json")], payload, timeout=30)
    check(reply, expect, f"h2 {case}")


def chunked(parts: list[bytes], ext: str = "") -> bytes:
    return b"".join(f"{len(p):x}{ext}\r\n".encode() + p + b"\r\n" for p in parts) + b"0\r\n\r\n"


def raw_head(extra: str = "", path: str = CHAT, method: str = "POST", version: str = "HTTP/1.1") -> bytes:
    return (f"{method} {path} {version}\r\nhost: localhost\r\nauthorization: Bearer {KEY}\r\n"
            f"content-type: application/json\r\n{extra}").encode()


RAW = [
    ("chunked-1-byte", raw_head("transfer-encoding: chunked\r\n\r\n") + chunked([bytes([b]) for b in body()]), "ok"),
    ("chunked-extensions", raw_head("transfer-encoding: chunked\r\n\r\n") + chunked([body()], ";foo=bar"), "ok"),
    ("chunked-bad-size", raw_head("transfer-encoding: chunked\r\n\r\n") + b"zz\r\nabc\r\n0\r\n\r\n", "4xx"),
    ("length-and-chunked", raw_head(f"content-length: 5\r\ntransfer-encoding: chunked\r\n\r\n") + chunked([body()]), "4xx_or_ok"),
    ("two-content-lengths", raw_head(f"content-length: {len(body())}\r\ncontent-length: 3\r\n\r\n") + body(), "4xx"),
    ("header-name-space", raw_head("bad header: 1\r\n" f"content-length: {len(body())}\r\n\r\n") + body(), "4xx"),
    ("header-flood", raw_head("".join(f"x-h{i}: v\r\n" for i in range(200)) + f"content-length: {len(body())}\r\n\r\n") + body(), "4xx"),
    ("header-100kb", raw_head("x-big: " + "a" * 100_000 + f"\r\ncontent-length: {len(body())}\r\n\r\n") + body(), "4xx"),
    ("path-64kb", raw_head(f"content-length: {len(body())}\r\n\r\n", path="/v1/" + "a" * 65_536) + body(), "4xx"),
    ("path-nul", raw_head(f"content-length: {len(body())}\r\n\r\n", path="/v1/chat/completions%00") + body(), "4xx_or_ok"),
    ("absolute-uri", raw_head(f"content-length: {len(body())}\r\n\r\n", path="http://evil.example/v1/chat/completions") + body(), "4xx_or_ok"),
    ("http10", raw_head(f"content-length: {len(body())}\r\n\r\n", version="HTTP/1.0") + body(), "4xx_or_ok"),
    ("expect-continue", raw_head(f"expect: 100-continue\r\ncontent-length: {len(body())}\r\n\r\n") + body(), "4xx_or_ok"),
    ("bogus-gzip", raw_head(f"content-encoding: gzip\r\ncontent-length: {len(body())}\r\n\r\n") + body(), "4xx_or_ok"),
    ("wrong-method", raw_head("content-length: 0\r\n\r\n", method="DELETE"), "4xx_or_ok"),
    ("auth-basic-scheme", b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Basic Zm9vOmJhcg==\r\n"
     + f"content-length: {len(body())}\r\n\r\n".encode() + body(), 401),
    ("auth-empty-bearer", b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer \r\n"
     + f"content-length: {len(body())}\r\n\r\n".encode() + body(), 401),
    ("auth-non-ascii", "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nx-api-key: ключ\r\n".encode()
     + f"content-length: {len(body())}\r\n\r\n".encode() + body(), 401),
    # Latin-1 (obs-text) bytes are legal in HTTP/1.1 header values but not UTF-8: proxy-wasm's
    # String getters unwrap from_utf8 and would trap the VM (503 for the rest of the worker).
    ("auth-latin1", b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer sk-caf\xe9\r\n"
     + f"content-length: {len(body())}\r\n\r\n".encode() + body(), 401),
    ("header-latin1", b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nx-note: caf\xe9\r\n"
     + f"authorization: Bearer {KEY}\r\n".encode()
     + f"content-length: {len(body())}\r\n\r\n".encode() + body(), 200),
    ("no-content-type", b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n" + f"authorization: Bearer {KEY}\r\n".encode()
     + f"content-length: {len(body())}\r\n\r\n".encode() + body(), "4xx_or_ok"),
]


@pytest.mark.parametrize("case,raw,expect", RAW, ids=[r[0] for r in RAW])
def test_raw_http1(gateway, case, raw, expect):
    envoy, _ = gateway
    check(http1(envoy.port, raw, timeout=30), expect, f"raw {case}")


def test_bare_cr_in_a_header_never_reaches_the_provider(gateway):
    """Envoy strips a bare CR inside a header value (RFC 9110 allows rejecting or replacing it)."""
    envoy, mock = gateway
    raw = raw_head("x-smuggle: a\rb\r\n" f"content-length: {len(body())}\r\n\r\n") + body()
    reply = http1(envoy.port, raw)
    assert reply.status < 500
    seen = [r["headers"].get("x-smuggle") for r in mock.records() if "x-smuggle" in r["headers"]]
    assert all("\r" not in v and "\n" not in v for v in seen), seen


def test_chain_is_healthy_after_the_suite(gateway):
    """Runs last in this module: every worker still serves, and no VM panicked."""
    envoy, _ = gateway
    for _ in range(8):
        check(http1(envoy.port, post(envoy.port, body())), "ok", "valid after suite")
    log = envoy.log()
    for marker in ["panicked", "Function: proxy_on", "wasm trap", "Uncaught"]:
        assert marker not in log, f"{marker!r} in Envoy log"
