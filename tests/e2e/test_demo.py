"""The gateway `make run` starts answers the official OpenAI SDK, streaming and not."""
from __future__ import annotations

import openai
import pytest

from harness import demo, procs


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
