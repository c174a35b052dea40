"""Anthropic Messages in (`/v1/messages`, `/v1/messages/count_tokens`) through real Envoy with the
official `anthropic` SDK, to a `kind: anthropic` provider (the fake, in Anthropic's wire format):
pass-through fidelity, the client's key never upstream, typed errors, usage with cache tokens and
cost in the audit log, and token conservation over mixed traffic in both dialects.
"""
from __future__ import annotations

import http.client
import json
import os
import random
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import anthropic
import pytest

from harness import claude_code, demo, paths, procs, rawhttp
from token_accounting_env import audit_lines

LIMITED_KEY = "sk-aimesh-anth-limited-" + "l" * 30
HAIKU_ONLY_KEY = "sk-aimesh-anth-haiku-" + "h" * 30
WORDS = " ".join(f"mock{i}" for i in range(8))


def gateway_config(key: str, mock_port: int, log: str, max_body: int | None = None) -> dict:
    cfg = demo.demo_config(key, mock_port, access_log=log)
    auth = demo.stage_config(cfg, "auth")
    auth["keys"] += [
        {"id": "limited", "hash": demo.key_hash(LIMITED_KEY), "requests_per_minute": 1},
        {"id": "haiku-only", "hash": demo.key_hash(HAIKU_ONLY_KEY), "models": ["claude-haiku"]},
    ]
    if max_body:
        auth["max_body_bytes"] = max_body
    demo.set_stage_config(cfg, "auth", auth)
    demo.set_stage_config(cfg, "pii-redaction", {"policies": {"default": {"restore": True}}})
    return cfg


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    d = tmp_path_factory.mktemp("anthropic")
    key = demo.demo_key(d / "demo.env")
    mock = procs.MockLLM("anth")
    log = d / "audit.log"
    envoy = procs.Envoy(gateway_config(key, mock.port, str(log), max_body=64 * 1024))
    yield envoy, key, mock, log
    envoy.stop()
    mock.stop()


def client(envoy, key: str, **kw) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=envoy.url, api_key=key, max_retries=0, **kw)


def last_record(mock) -> dict:
    return mock.records()[-1]


def audit_line(log, pred, timeout: float = 10.0) -> dict:
    """The audit line matching `pred`, once Envoy has flushed it (its file log flushes every
    second)."""
    deadline = time.time() + timeout
    while True:
        lines = [l for l in audit_lines(log) if pred(l)] if log.exists() else []
        if lines or time.time() > deadline:
            assert lines, "no matching audit line"
            return lines[-1]
        time.sleep(0.2)


MSG = [{"role": "user", "content": "one two three"}]


def test_create_non_streamed_is_passed_through_with_the_providers_key(gw):
    envoy, key, mock, _ = gw
    r = client(envoy, key).messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=MSG,
                                           system="be brief")
    assert r.type == "message" and r.content[0].text == WORDS
    assert (r.usage.input_tokens, r.usage.output_tokens) == (5, 8)
    rec = last_record(mock)
    assert rec["path"] == "/v1/messages"
    assert rec["headers"]["x-api-key"] == demo.LOCAL_ANTHROPIC_KEY
    # The SDK's own version is forwarded (the raw-HTTP test pins an exact value).
    assert rec["headers"]["anthropic-version"][:2] == "20"
    assert key not in json.dumps(rec), "the client's key reached the provider"
    assert not [h for h in rec["headers"] if h.startswith("x-aimesh")]
    body = json.loads(rec["body"])
    assert "stream_options" not in body and body["system"] == "be brief"


def test_stream_with_cache_tokens_is_accounted_and_priced(gw):
    envoy, key, mock, log = gw
    c = client(envoy, key, default_headers={"x-mock-cache-read-tokens": "1000",
                                            "x-mock-cache-creation-tokens": "200",
                                            "x-mock-split": "1"})
    with c.messages.stream(model="claude-haiku", max_tokens=64, messages=MSG) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == WORDS
    u = final.usage
    assert (u.input_tokens, u.cache_read_input_tokens, u.cache_creation_input_tokens,
            u.output_tokens) == (3, 1000, 200, 8)
    assert final.model == "claude-haiku-4-5", "the virtual model's target served it"
    assert json.loads(last_record(mock)["body"])["model"] == "claude-haiku-4-5"
    line = audit_line(log, lambda l: l["model"] == "claude-haiku" and l["cache_write_input_tokens"] == 200)
    assert (line["input_tokens"], line["cached_input_tokens"], line["output_tokens"]) == (1203, 1000, 8)
    assert line["path"] == "/v1/messages" and line["usage_estimated"] is False
    # 3 x 1.0 + 1000 x 0.1 + 200 x 1.25 + 8 x 5.0 = 3 + 100 + 250 + 40 micro-USD
    assert line["cost_micro_usd"] == 393


@pytest.mark.parametrize("stream", [False, True])
def test_tool_use_round_trips(gw, stream):
    envoy, key, mock, _ = gw
    tools = [{"name": "lookup", "description": "find", "input_schema": {
        "type": "object", "properties": {"query": {"type": "string"}}}}]
    c = client(envoy, key, default_headers={"x-mock-tool-use": "lookup"})
    if stream:
        with c.messages.stream(model="claude-sonnet-4-5", max_tokens=64, tools=tools,
                               messages=MSG) as s:
            m = s.get_final_message()
    else:
        m = c.messages.create(model="claude-sonnet-4-5", max_tokens=64, tools=tools, messages=MSG)
    assert m.stop_reason == "tool_use"
    call = [b for b in m.content if b.type == "tool_use"][0]
    assert (call.name, call.input) == ("lookup", {"query": "one two three"})
    # The tool result goes back as a user turn with a `tool_result` block.
    follow = MSG + [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in m.content]},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                                  "content": "found it"}]}]
    r = client(envoy, key).messages.create(model="claude-sonnet-4-5", max_tokens=64, tools=tools,
                                           messages=follow)
    assert r.stop_reason == "end_turn"
    assert json.loads(last_record(mock)["body"])["messages"][2]["content"][0]["type"] == "tool_result"


@pytest.mark.parametrize("stream", [False, True])
def test_pii_is_redacted_upstream_and_restored_in_text_and_tool_input(gw, stream):
    envoy, key, mock, _ = gw
    tools = [{"name": "mail", "input_schema": {"type": "object"}}]
    # Streamed, the provider's events come one byte per transport frame: placeholders are cut
    # at every byte, in text and in the tool input's JSON.
    headers = {"x-mock-echo": "1", "x-mock-tool-use": "mail", "x-mock-split": "1"}
    kw = dict(model="claude-sonnet-4-5", max_tokens=64, tools=tools,
              system=[{"type": "text", "text": "the admin is root@corp.example"}],
              messages=[{"role": "user", "content": [
                  {"type": "tool_result", "tool_use_id": "t0", "content": "phone 415-555-0123"},
                  {"type": "text", "text": "write to alice@example.com"}]}])
    c = client(envoy, key, default_headers=headers)
    if stream:
        with c.messages.stream(**kw) as s:
            m = s.get_final_message()
    else:
        m = c.messages.create(**kw)
    sent = last_record(mock)["body"]
    for secret in ("root@corp.example", "alice@example.com", "415-555-0123"):
        assert secret not in sent, f"{secret} reached the provider"
    assert m.content[0].text == "phone 415-555-0123 write to alice@example.com"
    assert m.content[1].input == {"query": "phone 415-555-0123 write to alice@example.com"}


def test_count_tokens(gw):
    envoy, key, mock, _ = gw
    n = client(envoy, key).messages.count_tokens(model="claude-sonnet-4-5", messages=MSG, system="hi")
    assert n.input_tokens == 4
    assert last_record(mock)["path"] == "/v1/messages/count_tokens"


def test_anthropic_beta_and_version_and_unknown_fields_are_forwarded_byte_for_byte(gw):
    envoy, key, mock, _ = gw
    c = client(envoy, key)
    c.beta.messages.create(model="claude-sonnet-4-5", max_tokens=16, messages=MSG,
                           betas=["prompt-caching-2024-07-31", "context-1m-2025-08-07"])
    h = last_record(mock)["headers"]
    assert h["anthropic-beta"] == "prompt-caching-2024-07-31,context-1m-2025-08-07"
    # Raw bytes: odd spacing, unknown fields and a client's own anthropic-version all survive.
    body = ('{ "model" :"claude-sonnet-4-5","max_tokens":16,  "metadata":{"user_id":"u-1"},'
            '"x_future_field":[1,2,{"k":null}],"thinking":{"type":"enabled","budget_tokens":1024},'
            '"messages":[{"role":"user","content":[{"type":"text","text":"héllo",'
            '"cache_control":{"type":"ephemeral"}}]}]}').encode()
    raw = (b"POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
           b"x-api-key: " + key.encode() + b"\r\nanthropic-version: 2099-01-01\r\n"
           b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    r = rawhttp.http1(envoy.port, raw)
    assert r.status == 200, r.body
    rec = last_record(mock)
    assert rec["body"].encode() == body
    assert rec["headers"]["anthropic-version"] == "2099-01-01"


def test_both_key_headers_with_different_values_never_reach_the_provider(gw):
    envoy, key, mock, _ = gw
    other = "sk-ant-client-own-" + "z" * 20
    body = json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 8, "messages": MSG}).encode()
    for headers in ([b"authorization: Bearer " + key.encode(), b"x-api-key: " + other.encode()],
                    [b"x-api-key: " + key.encode(), b"authorization: Bearer " + other.encode()]):
        raw = (b"POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
               + b"\r\n".join(headers) + b"\r\ncontent-length: " + str(len(body)).encode()
               + b"\r\n\r\n" + body)
        r = rawhttp.http1(envoy.port, raw)
        rec = json.dumps(last_record(mock)) if r.status == 200 else ""
        # Whichever header carried it, the gateway's key is what authenticates; neither value
        # the client sent is ever forwarded.
        assert r.status in (200, 401), r.body
        if r.status == 401:
            assert json.loads(r.body)["error"]["type"] == "authentication_error"
        assert key not in rec and other not in rec
    # Authorization carrying the gateway key is always accepted.
    assert rawhttp.http1(envoy.port, b"POST /v1/messages HTTP/1.1\r\nhost: x\r\n"
                         b"authorization: Bearer " + key.encode() + b"\r\ncontent-length: "
                         + str(len(body)).encode() + b"\r\n\r\n" + body).status == 200


def test_errors_are_anthropic_shaped_and_the_sdk_raises_typed_exceptions(gw):
    envoy, key, mock, _ = gw
    n = len(mock.records())
    with pytest.raises(anthropic.AuthenticationError) as e:
        client(envoy, "sk-wrong").messages.create(model="claude-sonnet-4-5", max_tokens=8, messages=MSG)
    assert e.value.status_code == 401
    assert e.value.body["type"] == "error"
    assert e.value.body["error"]["details"]["error_code"] == "invalid_api_key"
    with pytest.raises(anthropic.PermissionDeniedError) as e:
        client(envoy, HAIKU_ONLY_KEY).messages.create(model="claude-sonnet-4-5", max_tokens=8,
                                                      messages=MSG)
    assert e.value.body["error"]["type"] == "permission_error"
    assert len(mock.records()) == n, "refused requests never reached the provider"
    # A provider's own error passes through in its shape (404 here).
    with pytest.raises(anthropic.NotFoundError) as e:
        client(envoy, key, default_headers={"x-mock-status": "404"}).messages.create(
            model="claude-sonnet-4-5", max_tokens=8, messages=MSG)
    assert e.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.InternalServerError):
        client(envoy, key, default_headers={"x-mock-status": "529"}).messages.create(
            model="claude-sonnet-4-5", max_tokens=8, messages=MSG)
    c = client(envoy, LIMITED_KEY)
    c.messages.create(model="claude-haiku", max_tokens=8, messages=MSG)
    with pytest.raises(anthropic.RateLimitError) as e:
        c.messages.create(model="claude-haiku", max_tokens=8, messages=MSG)
    assert e.value.body["error"]["type"] == "rate_limit_error"
    assert e.value.response.headers.get("retry-after")
    big = [{"role": "user", "content": "x" * (70 * 1024)}]
    with pytest.raises(anthropic.RequestTooLargeError) as e:
        client(envoy, key).messages.create(model="claude-haiku", max_tokens=8, messages=big)
    assert e.value.body["error"]["type"] == "request_too_large"
    # Not JSON at all: a 400 in Anthropic's shape, from raw HTTP.
    r = rawhttp.http1(envoy.port, b"POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: "
                      + key.encode() + b"\r\ncontent-length: 5\r\n\r\n{nope")
    assert r.status == 400
    err = json.loads(r.body)
    assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error"


def _mixed(rng: random.Random) -> list[tuple[str, dict, dict]]:
    reqs = []
    for _ in range(1000):
        words = " ".join(f"w{j}" for j in range(rng.randint(1, 30)))
        headers = {"x-mock-completion-tokens": str(rng.randint(1, 20))}
        stream = rng.random() < 0.5
        if stream and rng.random() < 0.3:
            headers["x-mock-split"] = f"random:{rng.randint(1, 10**6)}:48"
        if rng.random() < 0.5:
            body = {"model": rng.choice(list(demo.CLAUDE_MODELS)), "max_tokens": 64,
                    "messages": [{"role": "user", "content": words}], "stream": stream}
            if rng.random() < 0.3:
                headers["x-mock-cache-read-tokens"] = str(rng.randint(0, 500))
                headers["x-mock-cache-creation-tokens"] = str(rng.randint(0, 50))
            reqs.append(("/v1/messages", body, headers))
        else:
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": words}],
                    "stream": stream}
            reqs.append(("/v1/chat/completions", body, headers))
    return reqs


def test_audit_totals_equal_the_providers_over_mixed_dialects(tmp_path):
    key = demo.demo_key(tmp_path / "demo.env")
    mock = procs.MockLLM("mixed", record=False)
    log = tmp_path / "audit.log"
    cfg = gateway_config(key, mock.port, str(log))
    limits = demo.stage_config(cfg, "token-accounting")
    limits.pop("limits", None)
    demo.set_stage_config(cfg, "token-accounting", limits)
    envoy = procs.Envoy(cfg)
    reqs = _mixed(random.Random(19))

    def one(req) -> int:
        path, body, headers = req
        conn = http.client.HTTPConnection("127.0.0.1", envoy.port, timeout=30)
        auth = {"x-api-key": key} if path == "/v1/messages" else {"authorization": f"Bearer {key}"}
        conn.request("POST", path, body=json.dumps(body),
                     headers={"content-type": "application/json", **auth, **headers})
        r = conn.getresponse()
        r.read()
        conn.close()
        return r.status

    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(one, reqs))
    assert statuses.count(200) == len(reqs), sorted(set(statuses))
    served = mock.served()
    envoy.stop()  # flushes the access log
    lines = [l for l in audit_lines(log) if l["status"] == 200]
    assert len(lines) == len(reqs)
    assert not [l for l in lines if l["usage_estimated"]], "every reply carried usage"
    assert sum(l["input_tokens"] for l in lines) == served["prompt_tokens"]
    assert sum(l["output_tokens"] for l in lines) == served["completion_tokens"]
    assert sum(l["cached_input_tokens"] for l in lines) == served["cache_read_tokens"]
    assert sum(l["cache_write_input_tokens"] or 0 for l in lines) == served["cache_creation_tokens"]
    assert served["cache_read_tokens"] > 0


@pytest.mark.skipif(shutil.which("npm") is None and shutil.which("claude") is None,
                    reason="npm is missing: Claude Code cannot be installed")
def test_claude_code_runs_through_the_gateway(tmp_path):
    """The real Claude Code CLI (`make claude-code` installs it) in print mode, with the two
    variables the banner of `make run` prints, against the fake provider behind the demo
    gateway (its default body limit: Claude Code's requests are larger than `gw`'s 64 KiB)."""
    claude = claude_code.cli()
    assert claude, "npm is present, yet `make claude-code` installed no CLI"
    key = demo.demo_key(tmp_path / "demo.env")
    mock = procs.MockLLM("claude")
    envoy = procs.Envoy(demo.demo_config(key, mock.port))
    n = 0
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "ANTHROPIC_BASE_URL": envoy.url,
           "ANTHROPIC_API_KEY": key, "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
           "DISABLE_AUTOUPDATER": "1"}
    out = subprocess.run([claude, "-p", "say hello", "--model", "claude-sonnet-4-5"],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out
    assert WORDS in out.stdout, out
    recs = [r for r in mock.records()[n:] if r["path"].startswith("/v1/messages")]
    assert recs, "Claude Code never reached the provider"
    for r in recs:
        assert r["headers"]["x-api-key"] == demo.LOCAL_ANTHROPIC_KEY
        assert key not in json.dumps(r)
    biggest = max(len(r["body"]) for r in recs)
    print(f"\nClaude Code: {len(recs)} Messages requests, largest body {biggest} bytes")
