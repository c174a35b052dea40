"""The edge through `aimesh-xds` (the listener it builds), in both filter builds: MCP routes on a
segment boundary, normalized paths, client `x-envoy-*` headers, `keys[].endpoints`,
`listener.trusted_hops`. Raw HTTP, so nothing is normalised away on the client side.
"""
from __future__ import annotations

import json
import time

import pytest

from harness import demo, procs, rawhttp, xds

OPEN, NARROW = "sk-edge-xds-open-0123456789", "sk-edge-xds-narrow-0123456789"


@pytest.fixture(params=["separate", "chain"])
def edge(request, mock):
    mcp = procs.MockLLM("mcp-docs")
    gw = {
        "listener": {"address": "127.0.0.1", "port": 0, "filter_build": request.param},
        "providers": [xds.mock_provider("local", mock)],
        "default_provider": "local",
        "mcp_servers": [{"name": "docs", "url": f"{mcp.url}/mcp"}],
        "keys": [{"id": "open", "hash": demo.key_hash(OPEN)},
                 {"id": "narrow", "hash": demo.key_hash(NARROW), "models": ["gpt-4o-mini"],
                  "endpoints": ["GET /v1/files", "/mcp/docs"]}],
    }
    server = xds.XdsServer(gw)
    envoy = procs.Envoy(xds.ads_bootstrap(server.port, delta=True))
    yield envoy, mcp, server, gw
    envoy.stop()
    server.stop()
    mcp.stop()


def get(port: int, path: str, key: str = OPEN, extra: bytes = b"") -> rawhttp.Reply:
    return rawhttp.http1(port, f"GET {path} HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {key}\r\n"
                         .encode() + extra + b"\r\n")


def code(r: rawhttp.Reply) -> tuple[int, str]:
    return r.status, json.loads(r.body)["error"]["code"]


def test_mcp_routes_match_on_a_segment_boundary(edge, mock):
    envoy, mcp, _, _ = edge
    assert code(get(envoy.port, "/mcp/docsX")) == (404, "not_found")
    assert code(get(envoy.port, "/mcp/docs-admin/x")) == (404, "not_found")
    assert mcp.records() == [] and mock.records() == []
    for path in ("/mcp/docs", "/mcp/docs/", "/mcp/docs?x=1", "/mcp/docs/sse"):
        assert get(envoy.port, path).headers.get("x-upstream-id") == "mcp-docs", path
    assert [r["path"] for r in mcp.records()] == ["/mcp", "/mcp/", "/mcp", "/mcp/sse"]


def test_dot_segments_never_reach_a_provider(edge, mock):
    envoy, mcp, _, _ = edge
    for path in ("/v1/../admin", "/v1/models/../../config_dump", "/v1/%2e%2e/admin",
                 "/mcp/docs/../../admin"):
        r = get(envoy.port, path)
        assert r.status == 404, (path, r.status, r.body)
    assert code(get(envoy.port, "/v1/files/a%2Fb")) == (400, "path_normalization_failed")
    assert mcp.records() == [] and mock.records() == []
    # What does reach it arrives normalized.
    assert get(envoy.port, "/v1//files/./x/../y").status == 200
    assert [r["path"] for r in mock.records()] == ["/v1/files/y"]


def test_client_x_envoy_headers_are_stripped_at_the_listener(edge, mock):
    envoy, _, _, _ = edge
    spoof = (b"x-envoy-original-path: /internal\r\nx-envoy-decorator-operation: op\r\n"
             b"x-envoy-external-address: 203.0.113.9\r\nx-envoy-internal: true\r\n"
             b"x-envoy-downstream-service-cluster: trusted\r\nx-envoy-max-retries: 5\r\n"
             b"x-envoy-retry-on: 5xx\r\nx-envoy-upstream-rq-timeout-ms: 1\r\nx_aimesh_key_id: admin\r\n")
    assert get(envoy.port, "/v1/files", extra=spoof).status == 200
    [rec] = mock.records()
    h = rec["headers"]
    for name in ("x-envoy-original-path", "x-envoy-decorator-operation", "x-envoy-internal",
                 "x-envoy-downstream-service-cluster", "x-envoy-max-retries", "x-envoy-retry-on",
                 "x-envoy-upstream-rq-timeout-ms", "x_aimesh_key_id"):
        assert name not in h, name
    assert h.get("x-envoy-external-address") != "203.0.113.9"


def test_key_endpoints_from_gateway_yaml(edge, mock):
    envoy, mcp, _, _ = edge
    assert get(envoy.port, "/v1/files", NARROW).status == 200
    assert get(envoy.port, "/mcp/docs", NARROW).status == 200
    assert code(get(envoy.port, "/v1/batches", NARROW)) == (403, "endpoint_not_allowed")
    r = rawhttp.http1(envoy.port, f"DELETE /v1/files/f1 HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {NARROW}\r\n"
                      "content-length: 0\r\n\r\n".encode())
    assert code(r) == (403, "endpoint_not_allowed")
    assert len(mock.records()) == 1 and len(mcp.records()) == 1


def test_trusted_hops_take_the_client_address_from_x_forwarded_for(edge, mock):
    envoy, _, server, gw = edge
    # Default: the address that connected, whatever the client claims.
    get(envoy.port, "/v1/files", extra=b"x-forwarded-for: 198.51.100.7\r\n")
    assert mock.records()[-1]["headers"]["x-envoy-external-address"] == "127.0.0.1"
    gw["listener"]["trusted_hops"] = 1
    server.write(gw)
    deadline = time.time() + 20
    seen = None
    while time.time() < deadline:
        mock.clear()
        get(envoy.port, "/v1/files", extra=b"x-forwarded-for: 198.51.100.7\r\n")
        seen = mock.records()[-1]["headers"].get("x-envoy-external-address")
        if seen == "198.51.100.7":
            break
        time.sleep(0.05)
    assert seen == "198.51.100.7", "with one trusted hop the client is the last x-forwarded-for entry"
