"""Token accounting through real Envoy: exact usage, untouched streams, audit log, estimates."""
from __future__ import annotations

import http.client
import json
import random

import openai
import pytest

from harness import tokens
from token_accounting_env import (audit_lines, auth, gateway, post, sse_events, sse_usage,
                                  token_stats, KEYS)

PRICES = {"gpt-4o-mini*": {"input": 0.15, "cached_input": 0.075, "output": 0.6},
          "text-embedding-3-small": {"input": 0.02, "output": 0}}


def cost(model: str, inp: int, out: int) -> int:
    """Micro-USD, rounded up per request, as the README specifies."""
    p = PRICES["text-embedding-3-small"] if model.startswith("text-") else PRICES["gpt-4o-mini*"]
    nanos = inp * round(p["input"] * 1000) + out * round(p["output"] * 1000)
    return -(-nanos // 1000)


WORDS = "alpha beta gamma delta épsilon 数据 zeta eta theta".split()


def request(kind: str, rng: random.Random) -> tuple[str, dict]:
    text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 30)))
    if kind == "embeddings":
        return "/v1/embeddings", {"model": "text-embedding-3-small", "input": [text, "x y"]}
    if kind == "completions":
        return "/v1/completions", {"model": "gpt-4o-mini", "prompt": text}
    body = {"model": "gpt-4o-mini", "messages": [{"role": "system", "content": "be brief"},
                                                 {"role": "user", "content": text}]}
    if kind != "chat":
        body["stream"] = True
    if kind == "stream_usage":
        body["stream_options"] = {"include_usage": True}
    return "/v1/chat/completions", body


@pytest.fixture
def log_path(tmp_path):
    return tmp_path / "audit.jsonl"


def test_mixed_requests_are_accounted_exactly(mock, log_path):
    envoy = gateway(mock, {"prices": PRICES}, log_path)
    rng = random.Random(4)
    kinds = ["chat", "stream_usage", "stream_plain", "completions", "embeddings"]
    want = {"alpha": [0, 0], "beta": [0, 0]}
    want_cost = 0
    n_plain = 0
    for i in range(40):
        kind = kinds[i % len(kinds)]
        kid = "alpha" if i % 3 else "beta"
        path, body = request(kind, rng)
        controls = {"x-mock-split": f"random:{i}:{rng.randint(1, 64)}",
                    "x-mock-completion-tokens": str(rng.randint(1, 50))}
        if i % 4 == 0:
            controls["x-mock-chunk-gap-ms"] = "2"
        status, headers, got = post(envoy.url, path, body, {**auth(kid), **controls})
        assert status == 200, got
        # What the provider reports, asked directly (with usage on for streams).
        ref_body = dict(body, stream_options={"include_usage": True}) if kind.startswith("stream") else body
        _, _, direct = post(mock.url, path, ref_body, controls)
        if kind.startswith("stream"):
            usage = sse_usage(direct)
            if kind == "stream_usage":
                assert got == direct, "stream must be byte-identical when the client asked for usage"
            else:
                n_plain += 1
                without = b"".join(e for e in sse_events(direct) if b'"choices":[]' not in e)
                assert got == without, "only the usage-only event may be removed"
                assert sse_usage(got) is None
                assert "content-length" not in headers or int(headers["content-length"]) == len(got)
        else:
            usage = json.loads(direct)["usage"]
            assert json.loads(got) == json.loads(direct)
        inp, out = usage["prompt_tokens"], usage.get("completion_tokens", 0)
        want[kid][0] += inp
        want[kid][1] += out
        want_cost += cost(body["model"], inp, out)
    assert n_plain == 8
    # The injected field reached the provider on the streams where the client omitted it.
    injected = [json.loads(r["body"]) for r in mock.records()
                if r["headers"].get("x-mock-split") and '"stream":true' in r["body"].replace(" ", "")]
    assert all(b["stream_options"]["include_usage"] is True for b in injected)

    stats = token_stats(envoy)
    for kid, (inp, out) in want.items():
        assert stats.get((kid, "input", "provider"), 0) == inp, stats
        assert stats.get((kid, "output", "provider"), 0) == out, stats
    assert not any(src == "estimated" for (_, _, src) in stats)
    cost_stats = envoy.stats("gen_ai.client.cost_micro_usd")
    assert sum(cost_stats.values()) == want_cost
    prom = envoy.admin_get("/stats?format=prometheus")
    assert 'aimesh_gen_ai_client_token_usage{gen_ai_response_model="gpt-4o-mini",' \
           'aimesh_backend="llm-mock",aimesh_key_id="alpha",gen_ai_token_type="input",' \
           'aimesh_usage_source="provider"}' in prom
    envoy.stop()  # flushes the access log

    lines = audit_lines(log_path)
    assert len(lines) == 40
    for kid, (inp, out) in want.items():
        mine = [l for l in lines if l["key_id"] == kid]
        assert sum(int(l["input_tokens"]) for l in mine) == inp
        assert sum(int(l["output_tokens"]) for l in mine) == out
        assert all(l["team"] == f"team-{kid}" for l in mine)
    assert sum(int(l["cost_micro_usd"]) for l in lines) == want_cost
    for l in lines:
        assert l["backend"] == "llm-mock" and l["usage_estimated"] is False and l["truncated"] is False
        assert l["model"] == l["model_served"] and l["status"] == 200
        assert l["duration_ms"] >= 0 and l["upstream_status"] == 200
    streamed = [l for l in lines if l["ttft_ms"] is not None]
    assert len(streamed) == 16
    text = log_path.read_text()
    assert "alpha beta" not in text and "mock0" not in text, "no prompt or completion text"
    assert not any(k in text for k in KEYS.values())


def test_openai_sdk_stream_without_usage_sees_no_usage_chunk(mock, log_path):
    envoy = gateway(mock, {"prices": PRICES}, log_path)
    client = openai.OpenAI(base_url=f"{envoy.url}/v1", api_key=KEYS["alpha"], max_retries=0)
    chunks = list(client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "one two three"}], stream=True,
        extra_headers={"x-mock-split": "random:9:5", "x-mock-completion-tokens": "12"}))
    assert all(c.usage is None and c.choices for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks).split() == [f"mock{i}" for i in range(12)]
    [rec] = mock.records()
    sent = json.loads(rec["body"])
    assert sent["stream_options"] == {"include_usage": True}
    assert {k: v for k, v in sent.items() if k != "stream_options"} == {
        "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "one two three"}], "stream": True}
    envoy.stop()
    [line] = audit_lines(log_path)
    assert (line["input_tokens"], line["output_tokens"]) == (3, 12)
    assert line["cost_micro_usd"] == cost("gpt-4o-mini", 3, 12)


def test_one_mib_response_is_accounted(mock, log_path):
    envoy = gateway(mock, {"prices": PRICES}, log_path)
    status, _, got = post(envoy.url, "/v1/chat/completions",
                          {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "big"}]},
                          {**auth("alpha"), "x-mock-response-bytes": str(1 << 20),
                           "x-mock-split": "random:3:65536"})
    assert status == 200 and len(got) >= 1 << 20
    usage = json.loads(got)["usage"]
    assert token_stats(envoy)[("alpha", "output", "provider")] == usage["completion_tokens"]
    envoy.stop()
    [line] = audit_lines(log_path)
    assert int(line["output_tokens"]) == usage["completion_tokens"] > 100_000


def test_usage_is_estimated_when_the_provider_omits_it(mock, log_path):
    envoy = gateway(mock, {"prices": PRICES, "estimate_prompt": True}, log_path)
    messages = [{"role": "system", "content": "Tu es concis."},
                {"role": "user", "content": "Combien de jetons — ou 令牌 — dans cette phrase ? 🤔"}]
    # The fake upstream echoes the last message as the completion.
    content = messages[-1]["content"]
    controls = {**auth("beta"), "x-mock-omit-usage": "true", "x-mock-echo": "true",
                "x-mock-split": "random:5:7"}
    body = {"model": "gpt-4o-mini", "messages": messages}
    s1, _, _ = post(envoy.url, "/v1/chat/completions", body, controls)
    s2, _, raw = post(envoy.url, "/v1/chat/completions", dict(body, stream=True), controls)
    assert s1 == s2 == 200 and sse_usage(raw) is None
    prompt = tokens.chat_prompt_tokens("o200k_base", messages)
    completion = tokens.count("o200k_base", content)
    stats = token_stats(envoy)
    assert stats[("beta", "input", "estimated")] == 2 * prompt
    assert stats[("beta", "output", "estimated")] == 2 * completion
    envoy.stop()
    lines = audit_lines(log_path)
    assert [(l["input_tokens"], l["output_tokens"], l["usage_estimated"]) for l in lines] == \
        [(prompt, completion, True)] * 2


def test_works_without_auth_headers(mock, log_path):
    """Without the auth filter the body is parsed here; key id is then unknown."""
    envoy = gateway(mock, {"prices": PRICES}, log_path, auth=False)
    status, _, got = post(envoy.url, "/v1/chat/completions",
                          {"model": "gpt-4o-mini", "stream": True,
                           "messages": [{"role": "user", "content": "a b"}]},
                          {"x-mock-completion-tokens": "5", "x-mock-split": "3"})
    assert status == 200 and sse_usage(got) is None
    assert token_stats(envoy)[("unknown", "output", "provider")] == 5
    assert token_stats(envoy)[("unknown", "input", "provider")] == 2


@pytest.mark.parametrize("controls", [
    {"x-mock-reset": "after-bytes:700", "x-mock-split": "random:2:40"},
    {"x-mock-malformed-sse": "true", "x-mock-split": "random:8:3"},
    {"x-mock-status": "503"},
], ids=["reset-mid-stream", "malformed-sse", "upstream-503"])
def test_broken_upstreams_never_break_the_filter(mock, log_path, controls):
    envoy = gateway(mock, {"prices": PRICES, "limits": {"keys": {"alpha": {"tpm": 100_000}}}},
                    log_path, concurrency=1)
    body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "a b c"}]}
    for _ in range(3):
        try:
            post(envoy.url, "/v1/chat/completions", body, {**auth("alpha"), **controls})
        except (OSError, http.client.HTTPException):
            pass  # a reset reaches the client as a broken response
    if "x-mock-malformed-sse" in controls:
        _, _, got = post(envoy.url, "/v1/chat/completions", body, {**auth("alpha"), **controls})
        _, _, direct = post(mock.url, "/v1/chat/completions",
                            dict(body, stream_options={"include_usage": True}), controls)
        assert got == b"".join(e for e in sse_events(direct) if b'"choices":[]' not in e)
    # The VM survived and accounting still works afterwards.
    status, _, got = post(envoy.url, "/v1/chat/completions", dict(body, stream=False), auth("alpha"))
    assert status == 200
    assert token_stats(envoy)[("alpha", "output", "provider")] >= 8
    envoy.stop()
    lines = audit_lines(log_path)
    assert len(lines) >= 4 and lines[-1]["output_tokens"] == 8
    if "x-mock-status" in controls:
        assert [l["output_tokens"] for l in lines[:3]] == [0] * 3
    if "x-mock-reset" in controls:
        # Cut before the usage chunk: accounted from what was seen, marked estimated.
        for l in lines[:3]:
            assert l["usage_estimated"] is True and l["output_tokens"] > 0
            assert int(l["input_tokens"]) == tokens.chat_prompt_tokens("o200k_base", body["messages"])


def test_served_model_and_backend_come_from_the_virtual_model_headers(mock, log_path):
    """The virtual-model filter publishes what it chose; accounting labels and prices by it.

    Without auth in the chain nothing strips client `x-aimesh-*` headers, so the test plays the
    virtual-model filter's part by sending them.
    """
    envoy = gateway(mock, {"prices": PRICES}, log_path, auth=False)
    status, _, got = post(envoy.url, "/v1/chat/completions",
                          {"model": "fast", "messages": [{"role": "user", "content": "a b c d"}]},
                          {"x-aimesh-model": "fast", "x-aimesh-model-served": "gpt-4o-mini-2024-07-18",
                           "x-aimesh-backend": "azure.east", "x-aimesh-key-id": "k9"})
    assert status == 200
    stats = envoy.stats("gen_ai.client.cost_micro_usd")
    assert stats == {"wasmcustom.aimesh.gen_ai.client.cost_micro_usd.model.gpt-4o-mini-2024-07-18"
                     ".backend.azure_east.key_id.k9": cost("gpt-4o-mini", 4, 8)}
    envoy.stop()
    [line] = audit_lines(log_path)
    assert (line["model"], line["model_served"], line["backend"]) == \
        ("fast", "gpt-4o-mini-2024-07-18", "azure.east")
