"""What a client sees when a filter's VM dies, per Envoy `failure_policy`.

The probe filter traps (a Wasm `unreachable`) when a request carries `x-probe-trap`, so each
policy is shown on the real Envoy: FAIL_CLOSED keeps refusing, FAIL_OPEN bypasses the dead
filter, FAIL_RELOAD starts a fresh VM after a back-off.
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import yaml

from harness import config, demo, paths, procs, validate


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


def test_shipped_configs_run_auth_fail_closed():
    """Auth must fail closed everywhere we ship it: a dead key check must not mean open doors."""
    configs = {"make run": demo.demo_config("k", 1)}
    configs.update({p.name: yaml.safe_load(p.read_text()) for p in validate.configs()})
    checked = 0
    for name, cfg in configs.items():
        for plugin in wasm_filters(cfg):
            if plugin.get("name") == "aimesh.auth":
                assert plugin.get("failure_policy") == "FAIL_CLOSED", name
                checked += 1
    assert checked >= 2
