"""The gateway `make run` starts answers the official OpenAI SDK, streaming and not."""
from __future__ import annotations

import json

import openai
import pytest

from harness import config, demo, procs


@pytest.fixture
def gateway(tmp_path, mock):
    key = demo.demo_key(tmp_path / "demo.env")
    envoy = procs.Envoy(demo.demo_config(key, mock.port))
    yield envoy, key
    envoy.stop()


def client(envoy, key):
    return openai.OpenAI(base_url=f"{envoy.url}/v1", api_key=key, max_retries=0)


def test_chat_completion_non_streaming(gateway, mock):
    envoy, key = gateway
    r = client(envoy, key).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "one two three"}])
    assert r.choices[0].message.content == " ".join(f"mock{i}" for i in range(8))
    assert r.usage.prompt_tokens == 3 and r.usage.completion_tokens == 8
    [rec] = mock.records()
    assert rec["path"] == "/v1/chat/completions"
    assert "authorization" not in rec["headers"], "client credential must not reach the provider"


def test_each_stage_counts_the_request_under_its_fixed_stat_names_in_every_build(gateway):
    envoy, key = gateway
    client(envoy, key).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "one two three"}])
    names = ["auth.allowed", "pii_redaction.requests", "virtual_model.requests",
             "header_auth.requests"]
    for n in names:
        envoy.wait_stat(f"wasmcustom.aimesh.{n}", lambda v: v == 1)
    # In Prometheus each is a metric of its own (the native module defines them up front), not a
    # label value of one family.
    prom = envoy.admin_get("/stats/prometheus")
    for n in names:
        metric = "aimesh_" + n.replace(".", "_")
        assert any(line.split("{")[0].endswith(metric) for line in prom.splitlines()
                   if not line.startswith("#")), metric
        assert f'aimesh="{n}"' not in prom


def test_chat_completion_streaming(gateway):
    envoy, key = gateway
    stream = client(envoy, key).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == " ".join(f"mock{i}" for i in range(8))
    assert chunks[-1].usage.completion_tokens == 8


def test_wrong_key_gets_openai_error(gateway, mock):
    envoy, _ = gateway
    with pytest.raises(openai.AuthenticationError) as e:
        client(envoy, "sk-wrong").chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 401
    assert e.value.code == "invalid_api_key"
    assert mock.records() == []


def test_spoofed_internal_header_never_reaches_upstream(gateway, mock):
    envoy, key = gateway
    c = openai.OpenAI(base_url=f"{envoy.url}/v1", api_key=key, max_retries=0,
                      default_headers={"x-aimesh-key-id": "admin", "X-Aimesh-Team": "root"})
    c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    [rec] = mock.records()
    assert rec["headers"].get("x-aimesh-key-id") in (None, "demo")
    assert rec["headers"].get("x-aimesh-team") in (None, "demo")


def test_virtual_model_is_routed_rewritten_and_audited(tmp_path, mock):
    key = demo.demo_key(tmp_path / "demo.env")
    log = tmp_path / "access.log"
    envoy = procs.Envoy(demo.demo_config(key, mock.port, access_log=str(log)))
    raw = client(envoy, key).chat.completions.with_raw_response.create(
        model="vm-demo", messages=[{"role": "user", "content": "one two three"}])
    assert raw.headers["x-aimesh-virtual-model"] == "vm-demo"
    assert raw.parse().usage.total_tokens == 11
    [rec] = mock.records()
    assert '"model":"gpt-4o-mini"' in rec["body"], "the provider gets the target's model name"
    assert not [h for h in rec["headers"] if h.startswith("x-aimesh-")]
    envoy.stop()  # the file access log is flushed on exit
    [line] = [json.loads(l) for l in log.read_text().splitlines()]
    assert line["key_id"] == "demo" and line["model_served"] == "gpt-4o-mini"
    assert int(line["input_tokens"]) == 3 and int(line["output_tokens"]) == 8
    # gpt-4o-mini: 3 x 0.15 + 8 x 0.6 micro-USD, rounded up.
    assert int(line["cost_micro_usd"]) == 6
    assert "one two three" not in log.read_text(), "the audit log carries no prompt text"


def test_openai_models_get_the_gateway_key_never_the_clients(tmp_path, mock, monkeypatch):
    provider = procs.MockLLM("openai-standin")
    key = demo.demo_key(tmp_path / "demo.env")
    cfg = demo.demo_config(key, mock.port, openai_key="sk-provider-secret")
    clusters = cfg["static_resources"]["clusters"]
    clusters[:] = [c for c in clusters if c["name"] != "openai"] + [config.cluster("openai", provider.port)]
    envoy = procs.Envoy(cfg, env={"OPENAI_API_KEY": "sk-provider-secret"})
    r = client(envoy, key).chat.completions.create(
        model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content
    [rec] = provider.records()
    assert rec["headers"]["authorization"] == "Bearer sk-provider-secret"
    assert '"model":"gpt-4o-mini"' in rec["body"]
    assert mock.records() == []
    assert key not in json.dumps(rec)


@pytest.mark.parametrize("limits, max_tokens, code", [
    ({"tpm": 300}, 1000, "request_exceeds_tpm_limit"),
    # gpt-4o-mini output: 0.6 micro-USD a token, so 1000 tokens may cost more than 500 micro-USD.
    ({"daily_usd": 0.0005}, 1000, "request_exceeds_budget"),
    ({"monthly_usd": 0.0005}, 1000, "request_exceeds_budget"),
])
def test_a_request_no_limit_can_ever_fit_is_a_400_not_a_retry(tmp_path, mock, limits, max_tokens, code):
    key = demo.demo_key(tmp_path / "demo.env")
    cfg = demo.demo_config(key, mock.port)
    ta = demo.stage_config(cfg, "token-accounting")
    ta["limits"] = {"default": limits}
    demo.set_stage_config(cfg, "token-accounting", ta)
    envoy = procs.Envoy(cfg)
    c = client(envoy, key)
    for _ in range(2):  # the same answer again: nothing was reserved by the first refusal
        with pytest.raises(openai.BadRequestError) as e:
            c.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", max_tokens=max_tokens, messages=[{"role": "user", "content": "hi"}])
        assert e.value.status_code == 400 and e.value.code == code
        assert e.value.body["type"] == "invalid_request_error"
        assert "can never be admitted" in e.value.body["message"]
        assert "retry-after" not in e.value.response.headers
    assert mock.records() == []
    # A request that fits is admitted: the refusals reserved nothing.
    r = c.chat.completions.create(model="gpt-4o-mini", max_tokens=100,
                                  messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content
