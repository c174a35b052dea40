"""Keys and their hashes never show in Envoy's log, stats or access log; failure policy."""
from __future__ import annotations

import hashlib
import json

import pytest

from auth_support import CHAT, bearer, chat_body, entry, gateway, new_key, request
from harness import config, procs

KEY, DISABLED = new_key(), new_key()
WRONG = new_key()


def secrets_of(key: str) -> list[str]:
    digest = hashlib.sha256(key.encode()).hexdigest()
    # The key, its hex digest, and a slice of each (a truncated print would still leak).
    return [key, key[10:40], digest, digest[:24]]


@pytest.fixture
def envoy(mock, tmp_path):
    auth = {"keys": [entry("k1", KEY, team="t1", requests_per_minute=100, max_concurrent=5),
                     entry("k2", DISABLED, disabled=True)]}
    fields = {
        "status": "%RESPONSE_CODE%",
        "key_id": "%REQ(x-aimesh-key-id)%",
        "team": "%REQ(x-aimesh-team)%",
        "state_key_id": "%FILTER_STATE(wasm.aimesh.key_id:PLAIN)%",
        "state_team": "%FILTER_STATE(wasm.aimesh.team:PLAIN)%",
        "authorization": "%REQ(authorization)%",
        "x_api_key": "%REQ(x-api-key)%",
    }
    log = tmp_path / "access.log"
    # Everything at debug except two Envoy components that print secrets themselves (see
    # filters/auth/README.md): `http` dumps every request header verbatim (the key), `config`
    # dumps the listener config (the hashes). Both are Envoy's own output, not the filter's.
    e = gateway(mock, auth, access_log=str(log), access_fields=fields, log_level="debug",
                extra_args=["--component-log-level", "http:info,http2:info,config:info"])
    yield e, log
    e.stop()


def test_keys_and_hashes_never_logged_or_counted(envoy, mock):
    e, log = envoy
    assert request(e, "POST", CHAT, chat_body(), bearer(KEY))[0] == 200
    assert request(e, "GET", "/v1/models", None, {"x-api-key": KEY})[0] == 200
    assert request(e, "POST", CHAT, chat_body(), bearer(WRONG))[0] == 401
    assert request(e, "POST", CHAT, chat_body(), {"api-key": DISABLED})[0] == 401
    assert request(e, "POST", CHAT, b"{bad", bearer(KEY))[0] == 400

    e.wait_stat("wasmcustom.aimesh.auth.allowed", lambda v: v == 2)
    assert e.stats("wasmcustom.aimesh.auth.denied.invalid_key")[
        "wasmcustom.aimesh.auth.denied.invalid_key"] == 2
    e.stop()  # flush the access log and the debug log

    entries = [json.loads(l) for l in log.read_text().splitlines()]
    assert len(entries) == 5
    assert entries[0]["key_id"] == "k1" and entries[0]["team"] == "t1"
    # Identity also reaches access logs through filter state, without a header.
    assert entries[0]["state_key_id"] == "k1" and entries[0]["state_team"] == "t1"
    assert entries[2]["state_key_id"] is None
    assert all(en["authorization"] is None and en["x_api_key"] is None for en in entries)

    haystacks = {"envoy log": e.log(), "access log": log.read_text()}
    assert "auth" in haystacks["envoy log"] and "wasm" in haystacks["envoy log"]
    for name, text in haystacks.items():
        for key in (KEY, WRONG, DISABLED):
            for s in secrets_of(key):
                assert s not in text, f"secret material in {name}"


def test_identity_as_dynamic_metadata_for_access_logs(mock, tmp_path):
    """Envoy's header_to_metadata after auth turns the trusted headers into dynamic metadata."""
    to_metadata = {
        "name": "envoy.filters.http.header_to_metadata",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.header_to_metadata.v3.Config",
            "request_rules": [
                {"header": h, "on_header_present": {"metadata_namespace": "aimesh", "key": k,
                                                    "type": "STRING"}}
                for h, k in (("x-aimesh-key-id", "key_id"), ("x-aimesh-team", "team"))],
        },
    }
    log = tmp_path / "access.log"
    fields = {"key_id": "%DYNAMIC_METADATA(aimesh:key_id)%",
              "team": "%DYNAMIC_METADATA(aimesh:team)%"}
    auth = {"keys": [entry("k1", KEY, team="t1"), entry("k2", WRONG)]}
    e = gateway(mock, auth, after=[to_metadata], access_log=str(log), access_fields=fields)
    assert request(e, "POST", CHAT, chat_body(), bearer(KEY))[0] == 200
    # A client cannot plant metadata: its x-aimesh-* headers are gone before the rule runs.
    spoof = {**bearer(WRONG), "x-aimesh-key-id": "admin", "x-aimesh-team": "root"}
    assert request(e, "POST", CHAT, chat_body(), spoof)[0] == 200
    e.stop()
    entries = [json.loads(l) for l in log.read_text().splitlines()]
    assert entries == [{"key_id": "k1", "team": "t1"}, {"key_id": "k2", "team": None}]


def test_stats_never_contain_keys(envoy):
    e, _ = envoy
    assert request(e, "POST", CHAT, chat_body(), bearer(KEY))[0] == 200
    assert request(e, "POST", CHAT, chat_body(), bearer(WRONG))[0] == 401
    for fmt in ("/stats", "/stats?format=json", "/stats/prometheus"):
        text = e.admin_get(fmt)
        assert "aimesh.auth" in text or "aimesh_auth" in text
        for key in (KEY, WRONG):
            for s in secrets_of(key):
                assert s not in text, fmt


def test_invalid_config_is_refused_at_startup_naming_the_field(mock):
    bad = {"keys": [{"id": "x", "hash": "sha256:" + "ab" * 31 + "zz"}]}
    with pytest.raises(RuntimeError) as e:
        gateway(mock, bad)
    text = str(e.value)
    assert "keys[0].hash" in text
    assert "ab" * 31 not in text


def test_fail_closed_vm_failure_never_reaches_upstream(mock):
    """A trapped Wasm VM under FAIL_CLOSED (the policy auth runs with) answers 503 locally.

    The probe filter traps on demand and sits in front of auth with the same failure policy (a
    filter that never panics cannot be crashed on purpose). Envoy 1.40 does not restart a
    crashed VM under FAIL_CLOSED: every later request on that worker gets the same 503, and none
    reaches the provider, with or without a valid key.
    """
    probe = config.wasm_filter("probe", {"trap_when_header": "x-probe-trap"}, failure_policy="FAIL_CLOSED",
                               wasm_path=str(config.paths.wasm("probe")))
    auth = {"keys": [entry("k1", KEY)]}
    cfg = config.gateway([probe, config.wasm_filter("auth", auth, failure_policy="FAIL_CLOSED")],
                         [config.cluster("mock", mock.port)])
    e = procs.Envoy(cfg, concurrency=1)
    assert request(e, "POST", CHAT, chat_body(), bearer(KEY))[0] == 200
    status, hs, body = request(e, "POST", CHAT, chat_body(), {**bearer(KEY), "x-probe-trap": "1"})
    assert status == 503
    assert json.loads(body)["error"]["code"] == "wasm_fail_stream"
    for headers in ({}, bearer(KEY), bearer(WRONG)):
        assert request(e, "POST", CHAT, chat_body(), headers)[0] == 503
    assert len(mock.records()) == 1


def test_auth_runs_fail_reload_in_the_demo_config():
    """FAIL_RELOAD fails closed until a fresh VM runs (test_failure_policy shows the recovery)."""
    from harness import demo
    cfg = demo.demo_config(new_key(), 1)
    hcm = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    auth = hcm["http_filters"][0]
    assert auth["name"] == "aimesh.auth"
    assert auth["typed_config"]["config"]["failure_policy"] == "FAIL_RELOAD"
