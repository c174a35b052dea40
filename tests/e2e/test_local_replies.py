"""Envoy's own error replies reach clients in the OpenAI error shape."""
from __future__ import annotations

import json
import socket

import openai
import pytest

from harness import config, procs


@pytest.fixture
def envoy(mock):
    routes = [{"match": {"prefix": "/v1/"}, "route": {"cluster": "m"}}]
    e = procs.Envoy(config.gateway([], [config.cluster("m", mock.port)], routes=routes), concurrency=1)
    yield e
    e.stop()


def test_no_route_is_an_openai_404(envoy):
    client = openai.OpenAI(base_url=f"{envoy.url}/nope", api_key="k", max_retries=0)
    with pytest.raises(openai.NotFoundError) as e:
        client.models.list()
    assert e.value.code == "route_not_found"
    assert e.value.body["message"] == "no route for this path"


def test_codec_error_is_openai_json(envoy):
    with socket.create_connection(("127.0.0.1", envoy.port), timeout=5) as s:
        s.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
        raw = b""
        while b"\r\n\r\n" not in raw or not raw.rstrip().endswith(b"}"):
            chunk = s.recv(4096)
            if not chunk:
                break
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert b"content-type: application/json" in head.lower()
    assert json.loads(body)["error"]["code"] == "http1.codec_error"


def test_upstream_errors_pass_through_unchanged(envoy):
    client = openai.OpenAI(base_url=f"{envoy.url}/v1", api_key="k", max_retries=0,
                           default_headers={"x-mock-status": "429"})
    with pytest.raises(openai.RateLimitError) as e:
        client.models.list()
    assert e.value.code == "rate_limit_exceeded"
    assert "mock upstream returned 429" in e.value.message
