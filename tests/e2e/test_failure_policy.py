"""What a client sees when a filter's VM dies, per Envoy `failure_policy`.

The probe filter traps (a Wasm `unreachable`) when a request carries `x-probe-trap`, so each
policy is shown on the real Envoy: FAIL_CLOSED keeps refusing, FAIL_OPEN bypasses the dead
filter, FAIL_RELOAD starts a fresh VM after a back-off. The demo gateway (FAIL_RELOAD, the
shipped default) recovers the same way with the `make build-trap` build of its own filters.
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from harness import config, demo, paths, procs, validate

# A Wasm VM's failure policy: the native build has no VM to trap or reload (a panic in a stage
# is caught at the ABI hook and the request goes on, see filters/native/README.md).
wasm_only = pytest.mark.skipif(paths.build() == "native", reason="Wasm VM failure policy; no VM in the native build")


def gateway_with_probe(mock, policy: str) -> procs.Envoy:
    probe = config.wasm_filter("probe", {"trap_when_header": "x-probe-trap"}, failure_policy=policy,
                               wasm_path=str(paths.PROBE_WASM))
    return procs.Envoy(config.gateway([probe], [config.cluster("m", mock.port)]), concurrency=1)


def status(envoy: procs.Envoy, trap: bool = False) -> int:
    req = urllib.request.Request(f"{envoy.url}/v1/models", headers={"x-probe-trap": "1"} if trap else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_fail_closed_refuses_everything_after_a_trap(mock):
    envoy = gateway_with_probe(mock, "FAIL_CLOSED")
    assert status(envoy) == 200
    assert status(envoy, trap=True) == 503
    before = len(mock.records())
    assert [status(envoy) for _ in range(3)] == [503, 503, 503]
    assert len(mock.records()) == before, "nothing may pass a failed closed filter"


def test_fail_open_bypasses_the_dead_filter(mock):
    envoy = gateway_with_probe(mock, "FAIL_OPEN")
    assert status(envoy, trap=True) == 503  # the request in flight when the VM died
    assert [status(envoy) for _ in range(3)] == [200, 200, 200]


def test_fail_reload_brings_the_filter_back(mock):
    envoy = gateway_with_probe(mock, "FAIL_RELOAD")
    assert status(envoy, trap=True) == 503
    deadline = time.time() + 10
    while status(envoy) != 200:
        assert time.time() < deadline, "VM was not reloaded"
        time.sleep(0.1)
    assert envoy.stats("vm_reload_success").get("wasm.aimesh.probe.vm_reload_success", 0) >= 1
    # The reloaded VM is a full filter again: it still traps on demand.
    assert status(envoy, trap=True) == 503


def wasm_filters(cfg: dict):
    """Every Wasm filter config anywhere in a bootstrap (listeners, clusters, ECDS)."""
    if isinstance(cfg, dict):
        if cfg.get("@type", "").endswith("filters.http.wasm.v3.Wasm"):
            yield cfg["config"]
        for v in cfg.values():
            yield from wasm_filters(v)
    elif isinstance(cfg, list):
        for v in cfg:
            yield from wasm_filters(v)


@wasm_only
def test_shipped_configs_run_every_filter_fail_reload():
    """FAIL_RELOAD everywhere we ship the filters: closed while a VM is down, back once reloaded."""
    configs = {"make run": demo.demo_config("k", 1), "make run (chain)": demo.demo_config("k", 1, chain=True)}
    configs.update({p.name: yaml.safe_load(p.read_text()) for p in validate.configs()})
    checked = set()
    for name, cfg in configs.items():
        for plugin in wasm_filters(cfg):
            if plugin.get("name", "").startswith("aimesh."):
                assert plugin.get("failure_policy") == "FAIL_RELOAD", (name, plugin["name"])
                checked.add(plugin["name"])
    assert {"aimesh.auth", "aimesh.chain", "aimesh.token-accounting"} <= checked


def use_trap_build(cfg: dict) -> dict:
    """Points the demo's token-accounting (or the chain) at its `make build-trap` build."""
    hcm = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    for f in hcm["http_filters"]:
        if f["name"] in ("aimesh.token-accounting", "aimesh.chain"):
            plugin = f["typed_config"]["config"]
            code = plugin["vm_config"]["code"]["local"]
            code["filename"] = str(paths.TRAP_WASM_DIR / Path(code["filename"]).name)
            assert Path(code["filename"]).exists(), "run `make build-trap`"
            return plugin
    raise KeyError("token-accounting")


def chat(envoy: procs.Envoy, key: str | None, **headers) -> int:
    if key:
        headers["authorization"] = f"Bearer {key}"
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()
    req = urllib.request.Request(f"{envoy.url}/v1/chat/completions", data=body, method="POST",
                                 headers={"content-type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


@wasm_only
def test_the_gateway_recovers_from_a_trapped_vm_and_fails_closed_meanwhile(tmp_path, mock):
    key = demo.demo_key(tmp_path / "demo.env")
    cfg = demo.demo_config(key, mock.port)
    assert use_trap_build(cfg)["failure_policy"] == "FAIL_RELOAD"  # the demo's own policy
    envoy = procs.Envoy(cfg, concurrency=1)  # one worker: its VM is the one that dies
    assert chat(envoy, key) == 200
    assert chat(envoy, key, **{"x-test-trap": "1"}) == 503
    served = len(mock.records())
    deadline = time.time() + 15
    while (status := chat(envoy, key)) != 200:
        assert status == 503 and time.time() < deadline, f"no fresh VM: {status}"
        # Closed while the VM is down: no key gets through either (401 from a live auth VM).
        assert chat(envoy, None) in (401, 503)
        time.sleep(0.1)
    assert len(mock.records()) == served + 1, "nothing reached the provider while the VM was down"
    assert chat(envoy, "sk-wrong") == 401, "auth is back"
    reloads = {k: v for k, v in envoy.stats("vm_reload_success").items() if v >= 1}
    assert reloads, envoy.stats("vm_reload")
