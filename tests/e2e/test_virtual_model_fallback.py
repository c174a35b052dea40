"""Priority routing, retries and fallback between targets through real Envoy: the aggregate
cluster and `previous_priorities` move attempts between targets, and the upstream instance of the
filter rewrites `model` for each attempt's backend (the fake upstreams' records prove it)."""
from __future__ import annotations

import json
import subprocess
import time
from collections import Counter

import openai
import pytest

from harness import paths, procs, virtual_model
from harness.virtual_model import KeepAlive

MSG = [{"role": "user", "content": "one two three"}]
IDS = ("a", "b", "c")


@pytest.fixture
def mocks():
    ms = {i: procs.MockLLM(i) for i in IDS}
    yield ms
    for m in ms.values():
        m.stop()


def priority_vm(**extra):
    vm = {"name": "vm-chat", "strategy": "priority",
          "targets": [{"target": f"acct-{i}/model-{i}", "cluster": f"t-{i}", "priority": p}
                      for p, i in enumerate(IDS)]}
    vm.update(extra)
    return vm


def gateway(mocks, vm):
    return procs.Envoy(virtual_model.gateway([vm], {f"t-{i}": m.port for i, m in mocks.items()}))


def post(c, headers=None):
    return c.post("/v1/chat/completions", json.dumps({"model": "vm-chat", "messages": MSG}),
                  {"content-type": "application/json", **(headers or {})})


def served(c, n=5, headers=None):
    out = []
    for _ in range(n):
        r = post(c, headers)
        assert r.status_code == 200, r.text
        out.append(r.headers["x-upstream-id"])
    return out


def models_received(mock):
    return [json.loads(r["body"])["model"] for r in mock.records()]


def restart_on_port(mock: procs.MockLLM) -> subprocess.Popen:
    """The same upstream back on its old port (MockLLM itself always binds a new one)."""
    p = subprocess.Popen([str(paths.MOCK_LLM), "--id", mock.id, "--port", str(mock.port)],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    line = p.stdout.readline().decode()
    assert line.startswith("LISTENING"), line
    return p


def test_priority_falls_back_on_503_and_returns(mocks):
    envoy = gateway(mocks, priority_vm())
    with KeepAlive(envoy.url) as c:
        assert served(c) == ["a"] * 5
        mocks["a"].set_defaults(status=503)
        r = post(c)
        assert r.headers["x-upstream-id"] == "b"
        assert r.headers["x-aimesh-target"] == "acct-b/model-b"
        assert r.headers["x-aimesh-backend"] == "acct-b"
        assert "x-aimesh-served-cluster" not in r.headers
        assert r.json()["model"] == "model-b"
        assert served(c) == ["b"] * 5
        # Two targets down: the filter's x-envoy-max-retries (targets - 1) reaches the third,
        # although the route's own policy allows one retry.
        mocks["b"].set_defaults(status=503)
        assert served(c, 3) == ["c"] * 3
        mocks["a"].set_defaults()
        mocks["b"].set_defaults()
        assert served(c) == ["a"] * 5
    # Every attempt got its own target's model name.
    for i in IDS:
        assert set(models_received(mocks[i])) == {f"model-{i}"}
    assert envoy.stats("aimesh").get("wasmcustom.aimesh.virtual_model.fallbacks", 0) >= 9


def test_non_retriable_status_is_returned_as_is(mocks):
    envoy = gateway(mocks, priority_vm())
    with KeepAlive(envoy.url) as c:
        r = post(c, {"x-mock-status": "400", "x-mock-target": "a"})
    assert r.status_code == 400 and r.headers["x-upstream-id"] == "a"
    assert mocks["b"].records() == []


def test_priority_falls_back_when_primary_is_down_and_returns(mocks):
    envoy = gateway(mocks, priority_vm())
    a = mocks["a"]
    with KeepAlive(envoy.url) as c:
        assert served(c, 3) == ["a"] * 3
        a.stop()
        assert served(c) == ["b"] * 5
        back = restart_on_port(a)
        try:
            deadline = time.time() + 10
            while served(c, 1) != ["a"] and time.time() < deadline:
                time.sleep(0.1)
            assert served(c) == ["a"] * 5
        finally:
            back.terminate()
            back.wait(5)


def test_streaming_429_served_by_fallback_with_its_model(mocks):
    envoy = gateway(mocks, priority_vm())
    client = openai.OpenAI(base_url=f"{envoy.url}/v1", api_key="unused", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="vm-chat", messages=MSG, stream=True, stream_options={"include_usage": True},
        extra_headers={"x-mock-status": "429", "x-mock-target": "a"})
    assert raw.headers["x-upstream-id"] == "b"
    assert raw.headers["x-aimesh-target"] == "acct-b/model-b"
    chunks = list(raw.parse())
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == " ".join(f"mock{i}" for i in range(8))
    assert {ch.model for ch in chunks} == {"model-b"}
    assert models_received(mocks["a"]) == ["model-a"]
    [rec] = mocks["b"].records()
    body = json.loads(rec["body"])
    assert body["model"] == "model-b" and body["stream"] is True
    assert body["messages"] == MSG


def test_sla_marks_slow_primary_unhealthy(mocks):
    """Real replies' time per token, shared by both workers, moves traffic off a primary over
    its SLA. Its recovery once the slow samples leave the window is clock arithmetic, tested on
    the fake clock (virtual-model's strategy_tests), so no multi-second sleep here."""
    vm = priority_vm(sla={"max_ms_per_token": 5, "window_s": 600})
    envoy = gateway(mocks, vm)
    a = mocks["a"]
    with KeepAlive(envoy.url) as c:
        a.set_defaults(latency_ms=120)  # 8 tokens: 15 ms per token, over the 5 ms SLA
        first = served(c, 5)
        assert first[0] == "a"
        time.sleep(0.3)  # workers cache the shared figures for 200 ms
        later = Counter(served(c, 40))
        # a still gets a probe share to show recovery, the bulk goes to b.
        assert later["b"] >= 24 and later["c"] == 0, later


def test_behind_auth_with_the_sdk(mocks):
    """Chain order auth -> virtual-model: auth publishes x-aimesh-model, so the downstream
    instance routes from the header; the fallback still gets its own model name."""
    from harness import config, demo
    key = "sk-aimesh-vm-" + "7" * 40
    auth = config.wasm_filter("auth", demo.filter_configs(key)["auth"])
    envoy = procs.Envoy(virtual_model.gateway(
        [priority_vm()], {f"t-{i}": m.port for i, m in mocks.items()}, filters_before=[auth]))
    client = openai.OpenAI(base_url=f"{envoy.url}/v1", api_key=key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="vm-chat", messages=MSG, extra_headers={"x-mock-status": "503", "x-mock-target": "a"})
    assert raw.headers["x-upstream-id"] == "b"
    assert raw.headers["x-aimesh-virtual-model"] == "vm-chat"
    assert raw.parse().model == "model-b"
    assert models_received(mocks["a"]) == ["model-a"]
    assert models_received(mocks["b"]) == ["model-b"]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{envoy.url}/v1", api_key="sk-wrong", max_retries=0) \
            .chat.completions.create(model="vm-chat", messages=MSG)


def test_slow_primary_falls_back_on_per_try_timeout(mocks):
    envoy = procs.Envoy(virtual_model.gateway(
        [priority_vm()], {f"t-{i}": m.port for i, m in mocks.items()}, per_try_timeout="0.3s"))
    mocks["a"].set_defaults(latency_ms=3000)
    with KeepAlive(envoy.url) as c:
        r = post(c)
    assert r.status_code == 200, r.text
    assert r.headers["x-upstream-id"] == "b" and r.json()["model"] == "model-b"
    assert models_received(mocks["a"]) == ["model-a"]


@pytest.mark.parametrize("status", [401, 403, 404, 429, 500, 502])
def test_each_fallback_status_moves_to_the_next_target(mocks, status):
    envoy = gateway(mocks, priority_vm())
    with KeepAlive(envoy.url) as c:
        r = post(c, {"x-mock-status": str(status), "x-mock-target": "a"})
    assert r.status_code == 200 and r.headers["x-upstream-id"] == "b", (status, r.text)


def test_each_attempt_gets_its_backends_credentials(mocks):
    """Full chain auth -> virtual-model -> header-auth, with header-auth also upstream after the
    virtual-model upstream instance: each attempt carries the credentials of its own account."""
    import secrets as pysecrets

    from harness import config, demo
    key = "sk-aimesh-vm-" + "8" * 40
    creds = {i: f"sk-prov-{i}-" + pysecrets.token_hex(8) for i in IDS}
    env = {f"VM_T_{i.upper()}": v for i, v in creds.items()}
    ha_cfg = {"accounts": {f"acct-{i}": {"auth": {"type": "openai", "api_key": f"${{env:VM_T_{i.upper()}}}"}}
                           for i in IDS}}

    def header_auth(role):
        entry = config.wasm_filter("header-auth", {**ha_cfg, "role": role},
                                   vm_id=f"aimesh.header-auth.{role}")
        entry["typed_config"]["config"]["vm_config"]["environment_variables"] = {"key_values": env}
        return entry

    auth = config.wasm_filter("auth", demo.filter_configs(key)["auth"])
    envoy = procs.Envoy(virtual_model.gateway(
        [priority_vm()], {f"t-{i}": m.port for i, m in mocks.items()}, filters_before=[auth],
        filters_after=[header_auth("downstream")], upstream_after=[header_auth("upstream")]))
    client = openai.OpenAI(base_url=f"{envoy.url}/v1", api_key=key, max_retries=0)
    r = client.chat.completions.create(model="vm-chat", messages=MSG,
                                       extra_headers={"x-mock-status": "503", "x-mock-target": "a"})
    assert r.model == "model-b"
    [ra], [rb] = mocks["a"].records(), mocks["b"].records()
    assert ra["headers"]["authorization"] == f"Bearer {creds['a']}"
    assert rb["headers"]["authorization"] == f"Bearer {creds['b']}"
    for rec in (ra, rb):
        assert not [h for h in rec["headers"] if h.startswith("x-aimesh-") and h != "x-aimesh-cluster"]
        assert key not in json.dumps(rec)
