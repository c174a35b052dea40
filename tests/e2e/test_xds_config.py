"""gateway.yaml and the filters share one config crate (aimesh-config): what a filter refuses,
`aimesh-xds validate` refuses with the field and line; what a filter accepts, the server serves.
Each case here was accepted by one side and refused by the other before."""
from __future__ import annotations

import subprocess

import pytest
import requests

from harness import demo, paths, procs, xds

KEY = "sk-aimesh-config-test-0123456789"


def validate(tmp_path, text: str) -> subprocess.CompletedProcess:
    f = tmp_path / "gateway.yaml"
    f.write_text(text)
    return subprocess.run([str(paths.XDS), "validate", "--skip-env", str(f)], capture_output=True,
                          text=True, timeout=30)


H = "sha256:" + "a" * 64


@pytest.mark.parametrize("text,error", [
    # header-auth's egress rule: a wildcard needs a domain of two labels.
    ("egress: {allow: ['*.com']}\n", "line 1: egress.allow[0]: wildcard must be"),
    # header-auth's URL parser: no dot segments, no '_' in host names.
    ("custom_endpoints:\n- {name: tts, url: 'https://tts.example.com/a/../b'}\n",
     "line 2: custom_endpoints[0].url"),
    ("providers:\n- {name: pa1, kind: openai_compatible, base_url: 'https://h_x.example.com'}\n",
     "line 2: providers[0].base_url"),
    # header-auth's endpoint-name rule: at most 62 characters.
    (f"custom_endpoints:\n- {{name: {'e' * 63}, url: 'https://tts.example.com'}}\n",
     "line 2: custom_endpoints[0].name: must be 2-62"),
    # token-accounting's price rule.
    ("prices:\n  m: {input: 2000000, output: 1}\n", "line 2: prices.m.input"),
    # auth refuses two keys with one hash.
    (f"keys:\n- {{id: a, hash: '{H}'}}\n- {{id: b, hash: '{H}'}}\n", "line 3: keys[1].hash: duplicate key hash"),
], ids=["egress wildcard", "url dot segment", "url host", "endpoint name length", "price", "key hash"])
def test_validate_refuses_what_a_filter_refuses(tmp_path, text, error):
    r = validate(tmp_path, text)
    assert r.returncode != 0, r.stdout
    assert error in r.stderr, r.stderr
    assert "a" * 64 not in r.stderr, "a key hash is never echoed"


@pytest.fixture(params=["separate", "chain"])
def build(request):
    return request.param


def test_names_and_networks_a_filter_accepts_are_served(mock, build):
    """A custom endpoint named by header-auth's rule (upper case), allowed by a network in
    `egress.allow`: refused by the old gateway.yaml checks, served now, in both builds."""
    gw = {
        "listener": {"address": "127.0.0.1", "port": 0, "filter_build": build},
        "providers": [xds.mock_provider("local", mock)],
        "default_provider": "local",
        "keys": [{"id": "k", "hash": demo.key_hash(KEY)}],
        "egress": {"allow": ["127.0.0.0/8"]},
        "custom_endpoints": [{"name": "Echo.v2", "url": f"{mock.url}/"}],
    }
    server = xds.XdsServer(gw)
    envoy = procs.Envoy(xds.ads_bootstrap(server.port, delta=True))
    try:
        url = f"{envoy.url}/proxy-api/endpoints/Echo.v2/v1/models"
        r = requests.get(url, headers={"authorization": f"Bearer {KEY}"}, timeout=10)
        assert r.status_code == 200, r.text
        assert mock.records()[-1]["path"] == "/v1/models"
        r = requests.get(url.replace("Echo.v2", "echo.v2"), headers={"authorization": f"Bearer {KEY}"},
                         timeout=10)
        assert r.status_code == 404 and r.json()["error"]["code"] == "endpoint_not_found", r.text
    finally:
        envoy.stop()
        server.stop()
