"""The GenAI metrics through a real Prometheus (Debian's `prometheus`) scraping Envoy's admin
`/stats/prometheus` (Envoy fed by aimesh-xds, the build AIMESH_BUILD selects): after streamed and
non-streamed traffic, every panel query of the Grafana dashboard (deploy/grafana/aimesh.json)
returns data, and the histograms carry the GenAI attributes as labels, not one metric per model.
The native build defines them with real labels named as the Wasm builds' tags
(filters/native/src/metrics.rs), so the same queries hold."""
from __future__ import annotations

import json
import math
import time

import pytest
import requests

from harness import demo, paths, procs, prometheus, xds

KEY = "sk-aimesh-" + "d" * 64
FILTER_BUILD = paths.build()
DASHBOARD = paths.REPO / "deploy" / "grafana" / "aimesh.json"
# Panels use Grafana's rate window; Prometheus itself gets a fixed one covering both rounds.
RATE_WINDOW = "2m"


@pytest.fixture(scope="module")
def stack():
    mock = procs.MockLLM("mock")
    s = xds.XdsServer({
        "listener": {"address": "127.0.0.1", "port": 0, "route_timeout": "30s",
                     "access_log": "", "filter_build": FILTER_BUILD},
        "providers": [xds.mock_provider("local", mock, ["gpt-4o-mini"])],
        "default_provider": "local",
        "keys": [{"id": "alice", "hash": demo.key_hash(KEY), "team": "research"}],
        "prices": {"gpt-4o-mini": {"input": 0.15, "output": 0.6}},
    })
    e = procs.Envoy(xds.ads_bootstrap(s.port))
    prom = prometheus.Prometheus(e.admin.removeprefix("http://"))
    yield e, prom
    prom.stop()
    e.stop()
    s.stop()
    mock.stop()


def panel_queries() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in dash["panels"] for t in p["targets"]]


def traffic(e: procs.Envoy) -> int:
    """Two streamed and two plain chats; the number of requests."""
    for stream in (False, True, False, True):
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "one two three four"}],
                "stream": stream}
        r = requests.post(f"{e.url}/v1/chat/completions", json=body, timeout=10,
                          headers={"authorization": f"Bearer {KEY}"})
        assert r.status_code == 200, r.text
    return 4


def wait_count(prom: prometheus.Prometheus, n: int, timeout: float = 30.0) -> None:
    """Until Prometheus holds `n` requests in the duration histogram (Envoy merges histograms at
    its stats flush, every 5 s by default)."""
    expr = "sum(aimesh_gen_ai_server_request_duration_milliseconds_count)"
    deadline = time.time() + timeout
    while True:
        r = prom.query(expr)
        if r and float(r[0]["value"][1]) >= n:
            return
        assert time.time() < deadline, f"{expr} = {r}, want {n}"
        time.sleep(0.5)


def test_every_dashboard_panel_returns_data_after_traffic(stack):
    e, prom = stack
    # rate() needs two samples with the increase between them: one round, a scrape that has
    # it, another round, a scrape that has that.
    n = traffic(e)
    wait_count(prom, n)
    n += traffic(e)
    wait_count(prom, n)
    empty = []
    for title, expr in panel_queries():
        result = prom.query(expr.replace("$__rate_interval", RATE_WINDOW))
        values = [float(s["value"][1]) for s in result]
        if not values or not all(math.isfinite(v) for v in values):
            empty.append((title, expr, result))
    assert empty == [], empty


def test_histograms_are_labelled_by_the_genai_attributes(stack):
    e, prom = stack
    traffic(e)
    wait_count(prom, 4)
    [series] = prom.query('sum by (gen_ai_operation_name, gen_ai_provider_name, gen_ai_request_model, '
                          'gen_ai_response_model, gen_ai_token_type) '
                          '(aimesh_gen_ai_client_token_usage_tokens_count{gen_ai_token_type="output"})')
    assert series["metric"] == {"gen_ai_operation_name": "chat", "gen_ai_provider_name": "openai_compatible",
                                "gen_ai_request_model": "gpt-4o-mini", "gen_ai_response_model": "gpt-4o-mini",
                                "gen_ai_token_type": "output"}
    names = {s["metric"]["__name__"] for s in prom.query('{__name__=~"aimesh_gen_ai_.*_bucket"}')}
    assert names == {"aimesh_gen_ai_client_token_usage_tokens_bucket",
                     "aimesh_gen_ai_server_request_duration_milliseconds_bucket",
                     "aimesh_gen_ai_server_time_to_first_token_milliseconds_bucket",
                     "aimesh_gen_ai_server_time_per_output_token_microseconds_bucket",
                     "aimesh_gen_ai_client_operation_time_to_first_chunk_milliseconds_bucket"}, names
