"""OpenTelemetry traces through real Envoy fed by aimesh-xds (the build AIMESH_BUILD / AIMESH_CHAIN selects):
`observability.otlp` makes Envoy export one span per request to a real OTLP/gRPC receiver, with
the GenAI attributes, streamed or not, and the W3C `traceparent` of that span reaches the
provider. Models and token counts come from token-accounting's audit record, which it publishes
when the response ends (Envoy finalizes the span before `on_log`)."""
from __future__ import annotations

import os

import pytest
import requests

from harness import demo, otlp, paths, procs, xds
from token_accounting_env import sse_usage

KEY = "sk-aimesh-" + "e" * 64
FILTER_BUILD = paths.build()


@pytest.fixture
def gw(mock):
    receiver = otlp.Receiver()
    s = xds.XdsServer({
        "listener": {"address": "127.0.0.1", "port": 0, "route_timeout": "30s",
                     "access_log": "", "filter_build": FILTER_BUILD},
        "providers": [xds.mock_provider("local", mock, ["gpt-4o-mini"])],
        "default_provider": "local",
        "keys": [{"id": "alice", "hash": demo.key_hash(KEY), "team": "research"}],
        "observability": {"otlp": {"endpoint": receiver.endpoint, "service_name": "aimesh-test"}},
    })
    e = procs.Envoy(xds.ads_bootstrap(s.port))
    yield e, receiver
    e.stop()
    s.stop()
    receiver.stop()


def chat(e: procs.Envoy, **body) -> requests.Response:
    return requests.post(f"{e.url}/v1/chat/completions", timeout=10,
                         headers={"authorization": f"Bearer {KEY}"},
                         json={"model": "gpt-4o-mini",
                               "messages": [{"role": "user", "content": "one two three"}], **body})


def genai_span(receiver: otlp.Receiver, trace_id: str) -> dict:
    spans = receiver.wait_spans(lambda ss: any(s["trace_id"] == trace_id for s in ss))
    mine = [s for s in spans if s["trace_id"] == trace_id]
    assert len(mine) == 1, mine
    return mine[0]


def traceparent(mock: procs.MockLLM) -> tuple[str, str]:
    """(trace id, parent span id) of the last request the provider got."""
    headers = {k.lower(): v for k, v in mock.records()[-1]["headers"].items()}
    version, trace_id, span_id, _flags = headers["traceparent"].split("-")
    assert version == "00"
    return trace_id, span_id


@pytest.mark.parametrize("stream", [False, True])
def test_a_span_carries_the_genai_attributes_and_its_context_reaches_the_provider(gw, mock, stream):
    e, receiver = gw
    r = chat(e, stream=stream, **({"stream_options": {"include_usage": True}} if stream else {}))
    assert r.status_code == 200, r.text
    trace_id, _ = traceparent(mock)
    span = genai_span(receiver, trace_id)
    a = span["attributes"]
    assert span["resource"]["service.name"] == "aimesh-test"
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "openai_compatible"
    assert (a["aimesh.key.id"], a["aimesh.team"]) == ("alice", "research")
    assert a["http.status_code"] == "200"


@pytest.mark.parametrize("stream", [False, True])
def test_a_span_carries_the_models_and_token_counts(gw, mock, stream):
    e, receiver = gw
    r = chat(e, stream=stream, **({"stream_options": {"include_usage": True}} if stream else {}))
    assert r.status_code == 200, r.text
    trace_id, _ = traceparent(mock)
    a = genai_span(receiver, trace_id)["attributes"]
    assert a.get("gen_ai.request.model") == "gpt-4o-mini"
    assert a.get("gen_ai.response.model") == "gpt-4o-mini"
    if stream:
        usage = sse_usage(r.content)
    else:
        usage = r.json()["usage"]
    assert int(a["gen_ai.usage.input_tokens"]) == usage["prompt_tokens"] > 0
    assert int(a["gen_ai.usage.output_tokens"]) == usage["completion_tokens"] > 0


def test_a_refused_request_is_traced_without_model_facts(gw, mock):
    e, receiver = gw
    r = requests.post(f"{e.url}/v1/chat/completions", timeout=10,
                      headers={"authorization": "Bearer sk-aimesh-wrong", "x-client-trace-id": "x"},
                      json={"model": "gpt-4o-mini", "messages": []})
    assert r.status_code == 401
    [span] = receiver.wait_spans(lambda ss: len(ss) >= 1)
    a = span["attributes"]
    assert a["http.status_code"] == "401" and a["gen_ai.operation.name"] == "chat"
    for absent in ("aimesh.key.id", "gen_ai.provider.name", "gen_ai.usage.input_tokens"):
        assert absent not in a, a
    assert mock.records() == []
