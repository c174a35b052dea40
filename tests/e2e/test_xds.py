"""One gateway.yaml drives real Envoys live through `aimesh-xds serve` (ADS, SotW and delta)."""
from __future__ import annotations

import json
import re
import time

import openai
import pytest
import requests

from harness import demo, procs, xds

KEY_A = "sk-aimesh-test-alice"
KEY_B = "sk-aimesh-test-bob"


def base_gateway(mock: procs.MockLLM, **extra) -> dict:
    gw = {
        "listener": {"address": "127.0.0.1", "port": 0, "route_timeout": "30s"},
        "providers": [xds.mock_provider("local", mock)],
        "default_provider": "local",
        "keys": [{"id": "alice", "hash": demo.key_hash(KEY_A), "team": "a"},
                 {"id": "bob", "hash": demo.key_hash(KEY_B), "team": "b"}],
    }
    gw.update(extra)
    return gw


def chat(envoy: procs.Envoy, key: str, **headers) -> requests.Response:
    return requests.post(f"{envoy.url}/v1/chat/completions", timeout=10,
                         headers={"authorization": f"Bearer {key}", **headers},
                         json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})


def get(envoy: procs.Envoy, path: str, key: str = KEY_A) -> requests.Response:
    return requests.get(f"{envoy.url}{path}", headers={"authorization": f"Bearer {key}"}, timeout=10)


def wait_until(cond, timeout: float = 10.0) -> float:
    """Polls `cond` until true; returns the seconds it took (the bench reports these)."""
    start = time.time()
    while time.time() - start < timeout:
        if cond():
            return time.time() - start
        time.sleep(0.02)
    raise AssertionError(f"condition not met within {timeout}s")


@pytest.fixture
def server(mock):
    s = xds.XdsServer(base_gateway(mock))
    yield s
    s.stop()


@pytest.fixture
def envoys(server):
    """Two Envoys on one server: one state-of-the-world, one delta."""
    es = [procs.Envoy(xds.ads_bootstrap(server.port, node_id="gw-sotw")),
          procs.Envoy(xds.ads_bootstrap(server.port, node_id="gw-delta", delta=True))]
    yield es
    for e in es:
        e.stop()


def test_both_envoys_serve_a_new_route_and_cluster_after_a_file_change(server, envoys, mock):
    for e in envoys:
        assert chat(e, KEY_A).status_code == 200
        assert get(e, "/proxy-api/endpoints/new/v1/models").status_code == 404
    other = procs.MockLLM("other", models=["m-other"])
    gw = base_gateway(mock, custom_endpoints=[{"name": "new", "url": other.url}])
    gw["providers"].append(xds.mock_provider("second", other))
    gw["default_provider"] = "second"
    server.write(gw)

    def served_everywhere() -> bool:
        return all(chat(e, KEY_A).headers.get("x-upstream-id") == "other"
                   and get(e, "/proxy-api/endpoints/new/v1/models").status_code == 200
                   for e in envoys)
    took = wait_until(served_everywhere)
    print(f"change served by both Envoys after {took:.3f}s")
    rec = other.records()[-1]
    assert rec["path"] == "/v1/models", "the /proxy-api/new prefix is replaced by the upstream's path"
    for e in envoys:
        assert e.stats("cluster_manager.cds.update_rejected").get("cluster_manager.cds.update_rejected") == 0


def test_both_envoys_serve_a_new_virtual_model(server, envoys, mock):
    clients = [openai.OpenAI(base_url=f"{e.url}/v1", api_key=KEY_A, max_retries=0) for e in envoys]

    def ask(c):
        return c.chat.completions.create(model="smart", messages=[{"role": "user", "content": "hi"}])
    before = len(mock.records())
    server.write(base_gateway(mock, virtual_models=[{"name": "smart", "targets": [
        {"provider": "local", "model": "gpt-4o-mini"}]}]))

    def served_everywhere() -> bool:
        return all(ask(c).model == "gpt-4o-mini" for c in clients)
    took = wait_until(served_everywhere)
    print(f"new virtual model served by both Envoys after {took:.3f}s")
    models = [json.loads(r["body"])["model"] for r in mock.records()[before:]]
    assert models[-1] == "gpt-4o-mini", "the provider gets the target's model, not 'smart'"


def test_revoked_key_is_refused_without_restart_and_open_stream_survives(server, envoys, mock):
    e = envoys[0]
    client = openai.OpenAI(base_url=f"{e.url}/v1", api_key=KEY_A, max_retries=0,
                           default_headers={"x-mock-chunk-gap-ms": "150", "x-mock-chunks": "12",
                                            "x-mock-completion-tokens": "12"})
    stream = client.chat.completions.create(model="gpt-4o-mini", stream=True,
                                            messages=[{"role": "user", "content": "hi"}])
    it = iter(stream)
    first = next(it)
    watched = ["listener_manager.listener_modified", "listener_manager.lds.update_success",
               "cluster_manager.cds.update_success"]
    before = [{n: x.stats(n).get(n) for n in watched} for x in envoys]
    gw = base_gateway(mock)
    gw["keys"] = [k for k in gw["keys"] if k["id"] != "alice"]
    server.write(gw)
    took = wait_until(lambda: all(chat(x, KEY_A).status_code == 401 for x in envoys))
    print(f"revoked key refused by both Envoys after {took:.3f}s")
    rest = list(it)
    text = "".join(c.choices[0].delta.content or "" for c in [first, *rest] if c.choices)
    assert text == " ".join(f"mock{i}" for i in range(12)), "the open stream must finish intact"
    assert chat(e, KEY_B).status_code == 200, "other keys keep working"
    after = [{n: x.stats(n).get(n) for n in watched} for x in envoys]
    assert after == before, "a key change re-sends only the auth filter config: no listener drain"
    r = chat(e, KEY_A)
    assert r.json()["error"]["code"] == "invalid_api_key"


def test_invalid_file_changes_nothing(server, envoys, mock):
    before = server.version()
    bad = base_gateway(mock, default_provider="nope")
    server.write(bad)
    server.wait_metric("aimesh_xds_rejected_total", lambda v: v >= 1)
    server.write("providers: [\n  {name: x, kind: openai, colour: blue}\n]\n")
    server.wait_metric("aimesh_xds_rejected_total", lambda v: v >= 2)
    assert server.version() == before
    for e in envoys:
        assert chat(e, KEY_A).status_code == 200
    assert "default_provider" in server.log() and "colour" in server.log()
    # The next valid file is applied as usual.
    gw = base_gateway(mock)
    gw["keys"] = gw["keys"][1:]
    server.write(gw)
    wait_until(lambda: all(chat(x, KEY_A).status_code == 401 for x in envoys))


def test_server_killed_and_restarted_leaves_traffic_flowing(server, envoys, mock):
    server.kill()
    for _ in range(5):
        for e in envoys:
            assert chat(e, KEY_A).status_code == 200
    # The restarted server serves a newer file; both Envoys resync to it.
    gw = base_gateway(mock)
    gw["keys"] = gw["keys"][1:]
    xds.write_gateway(server.config_path, gw)
    again = xds.XdsServer(config_path=server.config_path, port=server.port)
    took = wait_until(lambda: all(chat(x, KEY_A).status_code == 401 for x in envoys), timeout=20)
    print(f"resynced after restart in {took:.3f}s")
    for e in envoys:
        assert chat(e, KEY_B).status_code == 200
    again.wait_metric("aimesh_xds_streams", lambda v: v == 2)
    again.stop()


def self_hosted(mocks: list[procs.MockLLM], priorities: list[int]) -> dict:
    return {"name": "gpu", "kind": "vllm", "models": ["llama"],
            "endpoints": [{"url": m.url, "locality": f"region-{p}", "priority": p}
                          for m, p in zip(mocks, priorities)],
            "health_check": {"path": "/healthz", "interval": "200ms",
                             "timeout": "1s", "unhealthy_threshold": 1, "healthy_threshold": 1}}


@pytest.mark.parametrize("priorities", [[0, 0], [0, 1]], ids=["same-priority", "regional-failover"])
def test_self_hosted_backend_failing_health_check_stops_receiving_traffic(mock, priorities):
    a, b = procs.MockLLM("gpu-a"), procs.MockLLM("gpu-b")
    gw = base_gateway(mock, providers=[self_hosted([a, b], priorities)], default_provider="gpu")
    s = xds.XdsServer(gw)
    e = procs.Envoy(xds.ads_bootstrap(s.port))
    e.wait_stat("cluster.provider.gpu.membership_healthy", lambda v: v == 2)
    served = {chat(e, KEY_A).headers.get("x-upstream-id") for _ in range(20)}
    assert served == ({"gpu-a", "gpu-b"} if priorities == [0, 0] else {"gpu-a"})
    a.set_defaults(health_status=503)
    e.wait_stat("cluster.provider.gpu.membership_healthy", lambda v: v == 1)
    served = [chat(e, KEY_A).headers.get("x-upstream-id") for _ in range(20)]
    assert set(served) == {"gpu-b"}


def test_config_envoy_rejects_is_nacked_counted_and_old_config_keeps_serving(server, envoys, mock):
    """header-auth refuses a provider whose `${env:...}` key is unset in Envoy's environment."""
    gw = base_gateway(mock)
    gw["providers"][0]["api_key"] = "${env:AIMESH_TEST_UNSET_VARIABLE}"
    good = server.version()
    server.write(gw)
    server.wait_metric("aimesh_xds_nacks_total", lambda v: v >= 2)  # one per Envoy
    log = server.log()
    assert "NACK from gw-sotw" in log and "NACK from gw-delta" in log
    [rejected] = [k.split('"')[1] for k in server.metrics() if k.startswith("aimesh_xds_snapshot_info")]
    # The NACK line names the rejected snapshot, what the Envoy keeps and where the reason is.
    assert f"of snapshot {rejected}: Unable to create Wasm plugin aimesh.header-auth" in log
    assert f"keeps snapshot {good}" in log and "wasm log aimesh." in log
    # /healthz is not ok while an Envoy rejects the config, and names what still serves.
    r = requests.get(f"{server.admin}/healthz", timeout=5)
    assert r.status_code == 503, r.text
    assert f"rejected {rejected} by gw-" in r.text and f"last good {good}" in r.text
    for e in envoys:
        fails = {k: v for k, v in e.stats("header-auth").items() if k.endswith("config_fail")}
        assert fails and all(v >= 1 for v in fails.values()), fails
        assert chat(e, KEY_A).status_code == 200, "the last good filter config keeps serving"
    server.write(base_gateway(mock))
    for e in envoys:
        assert chat(e, KEY_A).status_code == 200
    wait_until(lambda: requests.get(f"{server.admin}/healthz", timeout=5).status_code == 200)


def test_graceful_shutdown(server, envoys):
    server.stop()
    assert server.proc.returncode == 0, "SIGTERM ends the server cleanly (streams closed, exit 0)"
    assert "shutting down" in server.log()


@pytest.fixture
def mcp_gateway(mock):
    mcp = procs.MockLLM("mcp-docs")
    s = xds.XdsServer(base_gateway(mock, mcp_servers=[{"name": "docs", "url": f"{mcp.url}/mcp"}]))
    e = procs.Envoy(xds.ads_bootstrap(s.port, delta=True))
    yield e, mcp


def test_mcp_server_is_proxied_under_its_name(mcp_gateway):
    e, mcp = mcp_gateway
    auth = {"authorization": f"Bearer {KEY_A}"}
    r = requests.get(f"{e.url}/mcp/docs", headers=auth, timeout=10)
    assert r.headers.get("x-upstream-id") == "mcp-docs"
    [rec] = mcp.records()
    assert rec["path"] == "/mcp", "/mcp/docs is rewritten to the server's own path"
    r = requests.get(f"{e.url}/mcp/nope", headers=auth, timeout=10)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert requests.get(f"{e.url}/mcp/docs", timeout=10).status_code == 401


def test_mcp_json_rpc_post_reaches_the_server(mcp_gateway):
    e, mcp = mcp_gateway
    r = requests.post(f"{e.url}/mcp/docs", headers={"authorization": f"Bearer {KEY_A}"}, timeout=10,
                      json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert r.headers.get("x-upstream-id") == "mcp-docs"



def test_mcp_servers_get_their_own_credential_and_never_a_providers(mock, tmp_path):
    """`mcp_servers[].api_key` is what the MCP server gets; a server without one gets no
    credential at all: neither the client's gateway key nor the default provider's key (the
    route to an MCP server is not a provider route)."""
    pkey, mkey = tmp_path / "provider.key", tmp_path / "mcp.key"
    pkey.write_text("sk-provider-secret-0123456789")
    mkey.write_text("mcp-token-0123456789")
    docs, open_ = procs.MockLLM("mcp-docs"), procs.MockLLM("mcp-open")
    provider = {**xds.mock_provider("local", mock), "api_key": f"${{file:{pkey}}}"}
    s = xds.XdsServer(base_gateway(mock, providers=[provider], mcp_servers=[
        {"name": "docs", "url": f"{docs.url}/mcp", "api_key": f"${{file:{mkey}}}"},
        {"name": "open", "url": f"{open_.url}/mcp"}]))
    e = procs.Envoy(xds.ads_bootstrap(s.port, delta=True))
    assert get(e, "/mcp/docs").headers.get("x-upstream-id") == "mcp-docs"
    assert get(e, "/mcp/open").headers.get("x-upstream-id") == "mcp-open"
    [d], [o] = docs.records(), open_.records()
    assert d["headers"].get("authorization") == "Bearer mcp-token-0123456789", d["headers"]
    assert "authorization" not in o["headers"], o["headers"]
    for rec in (d, o):
        assert "sk-provider-secret" not in json.dumps(rec["headers"])
        assert KEY_A not in json.dumps(rec["headers"])
    assert chat(e, KEY_A).status_code == 200
    assert mock.records()[-1]["headers"].get("authorization") == "Bearer sk-provider-secret-0123456789"


PII_PROMPT = "mail me at jane.doe@example.com or call +1 415 555 0100"


def chat_text(envoy: procs.Envoy, text: str) -> requests.Response:
    return requests.post(f"{envoy.url}/v1/chat/completions", timeout=10,
                         headers={"authorization": f"Bearer {KEY_A}"},
                         json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]})


def test_pii_policy_from_gateway_yaml_applies_live(server, envoys, mock):
    e = envoys[0]
    assert chat_text(e, PII_PROMPT).status_code == 200
    assert "jane.doe@example.com" in mock.records()[-1]["body"], "pii.mode off (default) changes nothing"
    server.write(base_gateway(mock, pii={"mode": "redact", "entities": ["email"]}))

    def masked() -> bool:
        assert chat_text(e, PII_PROMPT).status_code == 200
        return "jane.doe@example.com" not in mock.records()[-1]["body"]
    wait_until(masked)
    body = json.loads(mock.records()[-1]["body"])["messages"][0]["content"]
    assert "[EMAIL_1]" in body and "415 555 0100" in body, "only the listed entity is masked"
    server.write(base_gateway(mock, pii={"mode": "block"}))
    wait_until(lambda: chat_text(e, PII_PROMPT).status_code == 400)
    before = len(mock.records())
    r = chat_text(e, PII_PROMPT)
    assert r.json()["error"]["code"] == "pii_detected"
    assert len(mock.records()) == before, "a blocked prompt never reaches the provider"
    assert chat_text(e, "nothing personal here").status_code == 200


def test_priced_request_cost_is_in_the_audit_log(mock, tmp_path):
    log = tmp_path / "audit.log"
    gw = base_gateway(mock, prices={"gpt-4o-mini*": {"input": 10, "output": 20}, "other": {"input": 1, "output": 1}})
    gw["listener"]["access_log"] = str(log)
    s = xds.XdsServer(gw)
    e = procs.Envoy(xds.ads_bootstrap(s.port))
    c = openai.OpenAI(base_url=f"{e.url}/v1", api_key=KEY_A, max_retries=0)
    r = c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "one two three"}])
    e.stop()  # the file access log is flushed on exit
    s.stop()
    [line] = [json.loads(l) for l in log.read_text().splitlines()]
    assert line["key_id"] == "alice" and line["team"] == "a" and line["model_served"] == "gpt-4o-mini"
    assert int(line["input_tokens"]) == r.usage.prompt_tokens
    assert int(line["output_tokens"]) == r.usage.completion_tokens
    # USD per million tokens = micro-USD per token.
    assert int(line["cost_micro_usd"]) == 10 * r.usage.prompt_tokens + 20 * r.usage.completion_tokens
    assert "one two three" not in log.read_text(), "no prompt text in the audit log"


def test_env_secret_reaches_header_auth_through_host_env_keys(mock):
    gw = base_gateway(mock)
    gw["providers"][0]["api_key"] = "${env:AIMESH_TEST_PROVIDER_KEY}"
    s = xds.XdsServer(gw)
    e = procs.Envoy(xds.ads_bootstrap(s.port), env={"AIMESH_TEST_PROVIDER_KEY": "sk-provider-secret"})
    assert chat(e, KEY_A).status_code == 200
    assert mock.records()[-1]["headers"]["authorization"] == "Bearer sk-provider-secret"
    e.stop()
    s.stop()


def test_virtual_model_falls_back_to_the_next_provider_with_its_own_credentials(mock):
    bad, good = procs.MockLLM("bad"), procs.MockLLM("good")
    bad.set_defaults(status=503)
    gw = base_gateway(mock, providers=[
        {**xds.mock_provider("bad", bad), "api_key": "${env:AIMESH_TEST_KEY_BAD}"},
        {**xds.mock_provider("good", good), "api_key": "${env:AIMESH_TEST_KEY_GOOD}"},
        xds.mock_provider("local", mock)])
    gw["virtual_models"] = [{"name": "smart", "targets": [{"provider": "bad", "model": "m-bad"}],
                             "fallbacks": [{"provider": "good", "model": "m-good"}]}]
    s = xds.XdsServer(gw)
    e = procs.Envoy(xds.ads_bootstrap(s.port),
                    env={"AIMESH_TEST_KEY_BAD": "sk-bad-secret", "AIMESH_TEST_KEY_GOOD": "sk-good-secret"})
    c = openai.OpenAI(base_url=f"{e.url}/v1", api_key=KEY_A, max_retries=0)
    raw = c.chat.completions.with_raw_response.create(
        model="smart", messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["x-upstream-id"] == "good"
    assert raw.parse().model == "m-good"
    [b], [g] = bad.records(), good.records()
    assert json.loads(b["body"])["model"] == "m-bad" and json.loads(g["body"])["model"] == "m-good"
    assert b["headers"]["authorization"] == "Bearer sk-bad-secret"
    assert g["headers"]["authorization"] == "Bearer sk-good-secret", "each attempt is re-keyed"
    assert not [h for h in g["headers"] if h.startswith("x-aimesh-")]
    assert mock.records() == []
    # Without a failure the primary answers; plain models are unaffected.
    bad.set_defaults(status=200)
    assert c.chat.completions.with_raw_response.create(
        model="smart", messages=[{"role": "user", "content": "hi"}]).headers["x-upstream-id"] == "bad"
    assert chat(e, KEY_A).headers["x-upstream-id"] == "mock"
    e.stop()
    s.stop()


def test_no_internal_header_reaches_a_provider_through_xds_routes(mock):
    """Every route the server builds strips `x-aimesh-cluster` after picking the cluster: a
    plain virtual model (no fallback, so no upstream header-auth) must not leak it."""
    gw = base_gateway(mock)
    gw["virtual_models"] = [{"name": "plain", "targets": [{"provider": "local", "model": "m-local"}]}]
    s = xds.XdsServer(gw)
    e = procs.Envoy(xds.ads_bootstrap(s.port))
    c = openai.OpenAI(base_url=f"{e.url}/v1", api_key=KEY_A, max_retries=0)
    c.chat.completions.create(model="plain", messages=[{"role": "user", "content": "hi"}])
    [rec] = mock.records()
    assert json.loads(rec["body"])["model"] == "m-local"
    assert not [h for h in rec["headers"] if h.startswith("x-aimesh-")], rec["headers"]


def test_envoy_errors_are_openai_shaped_through_xds(mock):
    """The listener the server builds has the same local-reply mapping as the static configs."""
    gw = base_gateway(mock)
    gw["listener"]["route_timeout"] = "1s"
    s = xds.XdsServer(gw)
    e = procs.Envoy(xds.ads_bootstrap(s.port))
    slow = chat(e, KEY_A, **{"x-mock-latency-ms": "2500"})
    assert slow.status_code == 504
    assert slow.json()["error"]["code"] == "response_timeout"
    assert slow.headers["content-type"] == "application/json"
    # A filter's own reply keeps its code.
    denied = chat(e, "sk-not-a-key")
    assert denied.status_code == 401 and denied.json()["error"]["code"] == "invalid_api_key"


def test_a_served_gateway_recovers_from_a_trapped_vm(mock):
    """aimesh-xds sends FAIL_RELOAD: the chain (its `make build-trap` build) comes back."""
    from harness import paths
    assert (paths.TRAP_WASM_DIR / "aimesh_chain.wasm").exists(), "run `make build-trap`"
    gw = base_gateway(mock)
    gw["listener"]["filter_build"] = "chain"
    server = xds.XdsServer(gw, wasm_dir=paths.TRAP_WASM_DIR)
    e = procs.Envoy(xds.ads_bootstrap(server.port, node_id="gw-trap"), concurrency=1)
    assert chat(e, KEY_A).status_code == 200
    assert chat(e, KEY_A, **{"x-test-trap": "1"}).status_code == 503
    wait_until(lambda: chat(e, KEY_A).status_code == 200, timeout=15)
    assert chat(e, "sk-wrong").status_code == 401


def test_pii_hash_restore_patterns_and_per_request_policies_from_gateway_yaml(mock, tmp_path):
    """Every pii feature gateway.yaml exposes reaches the filter through aimesh-xds."""
    key_file = tmp_path / "pii-key"
    key_file.write_text("a-pii-hash-key-of-32-bytes-000000\n")
    gw = base_gateway(mock, pii={
        "mode": "redact", "restore": True,
        "actions": {"email": "hash", "phone": "off"},
        "hash_key": f"${{file:{key_file}}}",
        "patterns": [{"name": "EMPLOYEE_ID", "regex": r"\bE\d{6}\b"}],
        "policies": {"strict": {"mode": "block"}},
        "rules": [{"header": {"name": "X-Pii-Policy", "value": "strict"}, "policy": "strict"}],
    })
    server = xds.XdsServer(gw)
    e = procs.Envoy(xds.ads_bootstrap(server.port, node_id="gw-pii"))
    text = "I am E123456, mail jane@example.com, call +1 415 555 0123"
    r = requests.post(f"{e.url}/v1/chat/completions", timeout=10,
                      headers={"authorization": f"Bearer {KEY_A}", "x-mock-echo": "true"},
                      json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]})
    assert r.status_code == 200, r.text
    sent = json.loads(mock.records()[-1]["body"])["messages"][0]["content"]
    assert "E123456" not in sent and "jane@example.com" not in sent
    assert "[EMPLOYEE_ID_1]" in sent, sent                      # own pattern, masked by mode
    assert re.search(r"\[EMAIL_[0-9a-f]{12}\]", sent), sent      # actions: hash, keyed
    assert "+1 415 555 0123" in sent, sent                       # actions: off
    assert "E123456" in r.json()["choices"][0]["message"]["content"], "restore puts it back"
    r = chat(e, KEY_A, **{"x-pii-policy": "strict"})
    assert r.status_code == 200, "no PII in this one"
    r = requests.post(f"{e.url}/v1/chat/completions", timeout=10,
                      headers={"authorization": f"Bearer {KEY_A}", "x-pii-policy": "strict"},
                      json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]})
    assert r.status_code == 400 and r.json()["error"]["code"] == "pii_detected"
    dump = requests.get(f"{e.admin}/config_dump?include_eds", timeout=10).text
    assert "a-pii-hash-key" not in dump, "the hash key is a secret: redacted in the dump"

