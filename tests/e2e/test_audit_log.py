"""The audit log through real Envoy and aimesh-xds (the build AIMESH_BUILD / AIMESH_CHAIN selects): one typed
line per request, written at once, refused or not, with the path the client sent and the MCP
server or custom endpoint it went to. Every line is checked against docs/audit-log.schema.json."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import requests

from harness import audit, demo, paths, procs, xds

KEY = "sk-aimesh-" + "d" * 64
FILTER_BUILD = paths.build()


@pytest.fixture
def gw(mock, tmp_path):
    mcp = procs.MockLLM("mcp-docs")
    other = procs.MockLLM("custom")
    log = tmp_path / "audit.log"
    s = xds.XdsServer({
        "listener": {"address": "127.0.0.1", "port": 0, "route_timeout": "30s",
                     "access_log": str(log), "filter_build": FILTER_BUILD},
        "providers": [xds.mock_provider("local", mock)],
        "default_provider": "local",
        "keys": [{"id": "alice", "hash": demo.key_hash(KEY), "team": "a"}],
        "prices": {"gpt-4o-mini*": {"input": 10, "output": 20}},
        "mcp_servers": [{"name": "docs", "url": f"{mcp.url}/mcp"}],
        "custom_endpoints": [{"name": "new", "url": other.url}],
    })
    e = procs.Envoy(xds.ads_bootstrap(s.port))
    yield e, log
    e.stop()
    s.stop()
    mcp.stop()
    other.stop()


def lines_soon(log: Path, n: int, deadline_s: float = 5.0) -> list[dict]:
    """The first `n` audit lines, read while Envoy runs (no flush on exit to wait for)."""
    deadline = time.time() + deadline_s
    while time.time() < deadline:
        text = log.read_text() if log.exists() else ""
        if len(text.splitlines()) >= n:
            return audit.check(log)
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} audit lines after {deadline_s}s: {log.read_text() if log.exists() else ''}")


def post(e: procs.Envoy, headers: dict, **body) -> requests.Response:
    return requests.post(f"{e.url}/v1/chat/completions", headers=headers, timeout=10,
                         json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "one two three"}],
                               **body})


BEARER = {"authorization": f"Bearer {KEY}"}


def test_an_accounted_line_is_typed_and_written_at_once(gw):
    e, log = gw
    r = post(e, BEARER)
    assert r.status_code == 200
    [line] = lines_soon(log, 1)
    u = r.json()["usage"]
    assert (line["input_tokens"], line["output_tokens"]) == (u["prompt_tokens"], u["completion_tokens"])
    assert line["cost_micro_usd"] == 10 * u["prompt_tokens"] + 20 * u["completion_tokens"]
    assert (line["status"], line["upstream_status"]) == (200, 200)
    assert (line["usage_estimated"], line["truncated"], line["ttft_ms"]) == (False, False, None)
    assert (line["key_id"], line["team"], line["model_served"]) == ("alice", "a", "gpt-4o-mini")
    assert line["path"] == "/v1/chat/completions" and line["mcp_server"] is None
    assert isinstance(line["duration_ms"], int)


def test_a_stream_has_a_time_to_first_token(gw):
    e, log = gw
    r = post(e, BEARER, stream=True)
    assert r.status_code == 200 and r.text.endswith("data: [DONE]\n\n")
    [line] = lines_soon(log, 1)
    assert isinstance(line["ttft_ms"], int) and line["output_tokens"] > 0


def test_refused_requests_have_nulls_and_a_real_duration(gw):
    e, log = gw
    before = time.time()
    assert post(e, {}).status_code == 401
    assert post(e, {"authorization": "Bearer sk-wrong"}).status_code == 401
    lines = lines_soon(log, 2)
    took_ms = (time.time() - before) * 1000
    for line in lines:
        assert line["status"] == 401 and line["path"] == "/v1/chat/completions"
        # Envoy's own duration: never the epoch timestamp a filter's unset start gave.
        assert 0 <= line["duration_ms"] <= took_ms
        for absent in ("key_id", "team", "model_served", "backend", "upstream_status", "input_tokens",
                       "output_tokens", "cost_micro_usd", "usage_estimated", "truncated", "ttft_ms"):
            assert line[absent] is None, absent


def test_mcp_and_custom_endpoint_lines_name_their_target_and_keep_the_clients_path(gw):
    e, log = gw
    r = requests.get(f"{e.url}/mcp/docs/sse?session=1", headers=BEARER, timeout=10)
    assert r.headers.get("x-upstream-id") == "mcp-docs"
    r = requests.get(f"{e.url}/proxy-api/endpoints/new/v1/models", headers=BEARER, timeout=10)
    assert r.headers.get("x-upstream-id") == "custom"
    assert requests.get(f"{e.url}/mcp/nope", headers=BEARER, timeout=10).status_code == 404
    mcp, custom, unknown = lines_soon(log, 3)
    assert (mcp["path"], mcp["mcp_server"], mcp["account"]) == ("/mcp/docs/sse?session=1", "docs", None)
    assert mcp["key_id"] == "alice" and mcp["input_tokens"] is None
    assert (custom["path"], custom["account"], custom["endpoint"]) == \
        ("/proxy-api/endpoints/new/v1/models", "endpoints", "new")
    assert custom["mcp_server"] is None
    assert (unknown["status"], unknown["mcp_server"]) == (404, "nope")
