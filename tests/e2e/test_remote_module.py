"""Envoy loading the filters from a `remote` HTTP source with their sha256 (`vm_config.code.remote`),
here the registry's own blob URL of the `make oci` image's module layer: the layer digest is the
module's sha256, so the digest the build printed is the one Envoy checks.

Runs against either build (AIMESH_CHAIN=1: the one-filter chain), like the demo suites.
"""
from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from harness import config, demo, paths, procs, registry

pytestmark = pytest.mark.skipif(paths.build() == "native",
                                reason="Wasm modules from a remote source; the native build is a local .so")

KEY = "sk-aimesh-remote-test-" + "r" * 32
CHAIN = os.environ.get("AIMESH_CHAIN") == "1"
STAGES = ["chain"] if CHAIN else paths.FILTERS
# Envoy is ready once every remote module is fetched and compiled: a deadline, not a timing.
READY_S = 180


def module(stage: str) -> Path:
    return paths.CHAIN_WASM if stage == "chain" else paths.wasm(stage)


@pytest.fixture
def pushed(tmp_path):
    """The registry with this build's images pushed; stage -> (blob URL, module sha256 hex)."""
    reg = registry.Registry()
    images = registry.build_images(tmp_path / "oci", [module(s) for s in STAGES])
    out = {}
    for stage in STAGES:
        image = images[module(stage).stem.replace("_", "-")]
        repo = f"aimesh/{image['name']}"
        registry.push(Path(image["layout"]), image["tag"], reg, repo)
        out[stage] = (reg.blob_url(repo, image["module"]), image["module"].removeprefix("sha256:"))
    return reg, out


def remote_config(mock_port: int, reg: registry.Registry, modules: dict, *, wrong: str | None = None) -> dict:
    """The demo gateway with every aimesh filter's code fetched from the registry instead of a file."""
    cfg = demo.demo_config(KEY, mock_port, chain=CHAIN)
    hcm = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    for f in hcm["http_filters"]:
        if not f["name"].startswith("aimesh."):
            continue
        url, sha = modules[f["name"].removeprefix("aimesh.")]
        if f["name"] == wrong:
            sha = hashlib.sha256(b"another module").hexdigest()
        f["typed_config"]["config"]["vm_config"]["code"] = {"remote": {
            # Generous: a 7 MB module on a loaded 2-core machine (no timing is asserted).
            "http_uri": {"uri": url, "cluster": "oci-registry", "timeout": "60s"},
            "sha256": sha,
            # A wrong sha256 is retried like a failed fetch: short backoff, so the refusal is quick.
            "retry_policy": {"num_retries": 3,
                             "retry_back_off": {"base_interval": "0.1s", "max_interval": "0.5s"}},
        }}
    cfg["static_resources"]["clusters"].append(config.cluster("oci-registry", reg.port))
    return cfg


def post(envoy: procs.Envoy, body: bytes, key: str | None = KEY) -> tuple[int, dict]:
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    req = urllib.request.Request(f"{envoy.url}/v1/chat/completions", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def answers(envoy: procs.Envoy) -> list:
    """What the gateway does with a few requests: served (virtual model, PII), refused (no key,
    wrong key, bad JSON), each reduced to what does not vary between runs."""
    out = []
    status, body = post(envoy, json.dumps({"model": "vm-demo", "messages": [
        {"role": "user", "content": "mail a@b.example"}]}).encode())
    out.append((status, body.get("model"), body.get("usage", {}).get("total_tokens")))
    for body_bytes, key in [(b'{"model":"vm-demo","messages":[]}', None),
                            (b'{"model":"vm-demo","messages":[]}', KEY + "x"),
                            (b'{"model": ', KEY)]:
        status, body = post(envoy, body_bytes, key)
        out.append((status, body["error"]["code"]))
    return out


def test_envoy_loads_the_modules_from_the_registry_by_sha256(mock, pushed):
    reg, modules = pushed
    local = procs.Envoy(demo.demo_config(KEY, mock.port, chain=CHAIN), timeout=READY_S)
    expected = answers(local)
    local.stop()
    upstream_before = [r["body"] for r in mock.records()]
    mock.clear()

    envoy = procs.Envoy(remote_config(mock.port, reg, modules), timeout=READY_S)
    assert envoy.stats("wasm.remote_load_fetch_successes").get("wasm.remote_load_fetch_successes") == len(STAGES)
    got = answers(envoy)
    assert got == expected
    # The filters ran: the key was checked, the virtual model routed, the PII redacted upstream.
    assert got[0][0] == 200 and got[1][0] == 401 and got[3][0] == 400, got
    assert [r["body"] for r in mock.records()] == upstream_before
    assert "a@b.example" not in json.dumps(mock.records())


def test_a_wrong_sha256_is_refused_and_the_filter_fails_closed(mock, pushed):
    reg, modules = pushed
    wrong = "aimesh.chain" if CHAIN else "aimesh.auth"
    envoy = procs.Envoy(remote_config(mock.port, reg, modules, wrong=wrong), timeout=READY_S)
    stats = envoy.stats("wasm.remote_load")
    assert stats["wasm.remote_load_fetch_failures"] == 1, stats
    assert stats["wasm.remote_load_fetch_successes"] == len(STAGES) - 1, stats
    # Fetched (the registry served the blob), then refused for its hash.
    blob_path = modules[wrong.removeprefix("aimesh.")][0].split(str(reg.port), 1)[1]
    assert f'"GET {blob_path} HTTP/1.1" 200' in reg.log()
    assert f"Plugin {wrong} failed to load" in envoy.log()
    # Without its module the filter is not skipped: a request with a valid key is refused, in the
    # OpenAI error shape, and nothing reaches the provider.
    status, body = post(envoy, b'{"model":"vm-demo","messages":[{"role":"user","content":"hi"}]}')
    assert status == 503 and body["error"]["code"] == "wasm_fail_stream", body
    assert mock.records() == []
