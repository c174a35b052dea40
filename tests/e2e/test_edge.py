"""The listener as the edge, attacked with raw HTTP through the demo gateway (five filters, or the
one-filter chain with AIMESH_CHAIN=1): requests that name no model need an endpoint grant,
paths reach the provider normalized, client `x-envoy-*` control headers never reach it.
"""
from __future__ import annotations

import json

import pytest

from harness import demo, procs, rawhttp

OPEN, NARROW, FILES = "sk-edge-open-0123456789", "sk-edge-narrow-0123456789", "sk-edge-files-0123456789"


@pytest.fixture(scope="module")
def upstream():
    m = procs.MockLLM("edge-mock")
    yield m
    m.stop()


@pytest.fixture
def mock(upstream):
    """One gateway and upstream for the module (Envoy starts are slow); each test sees only the
    requests it made."""
    upstream.clear()
    return upstream


@pytest.fixture(scope="module")
def gw(upstream):
    cfg = demo.demo_config(OPEN, upstream.port)
    demo.set_stage_config(cfg, "auth", {"keys": [
        {"id": "open", "hash": demo.key_hash(OPEN)},
        {"id": "narrow", "hash": demo.key_hash(NARROW), "models": ["gpt-4o-mini"]},
        {"id": "files", "hash": demo.key_hash(FILES), "models": ["gpt-4o-mini"],
         "endpoints": ["GET /v1/files"]},
    ]})
    e = procs.Envoy(cfg)
    yield e
    e.stop()


def raw(port: int, method: str, path: str, key: str = OPEN, headers: dict | None = None,
        body: bytes | None = None, extra: bytes = b"") -> rawhttp.Reply:
    """One HTTP/1.1 request written byte for byte (`extra`: header lines as sent)."""
    lines = [f"{method} {path} HTTP/1.1", "host: localhost", f"authorization: Bearer {key}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body is not None:
        lines.append(f"content-length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n").encode() + extra + b"\r\n"
    return rawhttp.http1(port, head + (body or b""))


def error(reply: rawhttp.Reply) -> tuple[int, str]:
    return reply.status, json.loads(reply.body)["error"]["code"]


# -- requests that name no model ------------------------------------------------------------

@pytest.mark.parametrize("method,path", [
    ("GET", "/v1/files"), ("DELETE", "/v1/files/file-abc"), ("GET", "/v1/batches"),
    ("POST", "/v1/batches/batch_1/cancel"), ("GET", "/v1/fine_tuning/jobs"),
    ("DELETE", "/v1/models/ft:gpt-4o-mini:acme"), ("GET", "/admin"),
    ("GET", "/v1/files/../../admin"),
])
def test_a_key_with_a_model_list_is_refused_endpoints_that_name_no_model(gw, mock, method, path):
    r = raw(gw.port, method, path, NARROW, body=b"")
    assert error(r) == (403, "endpoint_not_allowed")
    assert json.loads(r.body)["error"]["type"] == "permission_error"
    assert mock.records() == [], "nothing reaches the provider with its credential"


def test_endpoint_grants_admit_exactly_what_they_name(gw, mock):
    assert raw(gw.port, "GET", "/v1/files?purpose=batch", FILES).status == 200
    assert raw(gw.port, "GET", "/v1/files/file-abc/content", FILES).status == 200
    assert [r["path"] for r in mock.records()] == ["/v1/files", "/v1/files/file-abc/content"]
    mock.clear()
    assert error(raw(gw.port, "DELETE", "/v1/files/file-abc", FILES)) == (403, "endpoint_not_allowed")
    assert error(raw(gw.port, "GET", "/v1/filesystem", FILES)) == (403, "endpoint_not_allowed")
    assert mock.records() == []


def test_model_requests_and_the_catalogue_need_no_grant(gw, mock):
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()
    assert raw(gw.port, "POST", "/v1/chat/completions", NARROW, {"content-type": "application/json"},
               body).status == 200
    assert raw(gw.port, "GET", "/v1/models", NARROW).status == 200


def test_a_key_allowing_every_model_keeps_every_endpoint(gw, mock):
    assert raw(gw.port, "DELETE", "/v1/files/file-abc", OPEN).status == 200
    assert mock.records()[0]["method"] == "DELETE"


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/embeddings", "/v1/responses"])
def test_an_inference_post_without_a_body_is_refused_not_forwarded(gw, mock, path):
    assert error(raw(gw.port, "POST", path, OPEN, body=b"")) == (400, "missing_model")
    # Chunked, ending at once: the body callback sees zero bytes.
    r = rawhttp.http1(gw.port, (f"POST {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {OPEN}\r\n"
                                "transfer-encoding: chunked\r\n\r\n0\r\n\r\n").encode())
    assert error(r) == (400, "missing_model")
    h2 = rawhttp.h2c(gw.port, "POST", path, [("authorization", f"Bearer {OPEN}")])
    assert (h2.status, json.loads(h2.body)["error"]["code"]) == (400, "missing_model")
    assert mock.records() == []


# -- paths --------------------------------------------------------------------------------------

@pytest.mark.parametrize("sent,arrives", [
    ("/v1/../admin", "/admin"),
    ("/v1/models/../../config_dump", "/config_dump"),
    ("/v1/%2e%2e/admin", "/admin"),
    ("/v1/%2E%2e/files/./x", "/files/x"),
    ("/v1//files///x", "/v1/files/x"),
])
def test_paths_reach_the_provider_normalized(gw, mock, sent, arrives):
    assert raw(gw.port, "GET", sent, OPEN).status == 200
    h2 = rawhttp.h2c(gw.port, "GET", sent, [("authorization", f"Bearer {OPEN}")])
    assert h2.status == 200
    assert [r["path"] for r in mock.records()] == [arrives, arrives]


@pytest.mark.parametrize("path", ["/v1/files/a%2Fb", "/v1/files/a%2f..%2fadmin", "/v1/a%5C..%5Cb"])
def test_encoded_slashes_are_refused_in_the_openai_shape(gw, mock, path):
    r = raw(gw.port, "GET", path, OPEN)
    assert error(r) == (400, "path_normalization_failed")
    assert "encoded slash" in json.loads(r.body)["error"]["message"]
    assert mock.records() == []


# -- x-envoy-* and other edge headers ----------------------------------------------------------

# What a client may try to steer Envoy or the next hop with.
SPOOFED = {
    "x-envoy-original-path": "/internal/admin",
    "x-envoy-decorator-operation": "spoofed-op",
    "x-envoy-downstream-service-cluster": "trusted-svc",
    "x-envoy-downstream-service-node": "trusted-node",
    "x-envoy-external-address": "203.0.113.9",
    "x-envoy-internal": "true",
    "x-envoy-retry-on": "5xx,reset",
    "x-envoy-retry-grpc-on": "cancelled",
    "x-envoy-max-retries": "7",
    "x-envoy-retriable-status-codes": "500",
    "x-envoy-upstream-rq-timeout-ms": "1",
    "x-envoy-upstream-rq-per-try-timeout-ms": "1",
    "x-envoy-expected-rq-timeout-ms": "5",
    "x-envoy-hedge-on-per-try-timeout": "true",
    "x-envoy-force-trace": "true",
    "x-envoy-ip-tags": "internal",
    "x-envoy-upstream-alt-stat-name": "spoofed",
}


def test_client_x_envoy_headers_never_reach_the_provider(gw, mock):
    r = raw(gw.port, "GET", "/v1/files", OPEN, SPOOFED, extra=b"x_aimesh_key_id: admin\r\n")
    assert r.status == 200
    h2 = rawhttp.h2c(gw.port, "GET", "/v1/files", [("authorization", f"Bearer {OPEN}"),
                                                   *SPOOFED.items()])
    assert h2.status == 200
    recs = mock.records()
    assert len(recs) == 2
    for rec in recs:
        h = rec["headers"]
        assert rec["path"] == "/v1/files"
        leaked = {k: h[k] for k, v in SPOOFED.items() if h.get(k) == v}
        assert leaked == {}, f"client values reached the provider: {leaked}"
        assert "x-envoy-original-path" not in h and "x-envoy-internal" not in h
        assert not any("_" in k for k in h), "x_aimesh_key_id is dropped, not forwarded"


def test_client_retry_and_timeout_headers_steer_nothing(gw, mock):
    r = raw(gw.port, "GET", "/v1/files", OPEN, {**SPOOFED, "x-mock-status": "500",
                                                 "x-mock-latency-ms": "50"})
    assert r.status == 500, "no client-set 1 ms timeout (504), the provider's own answer"
    assert len(mock.records()) == 1, "no client-set retries"
