"""The filters `aimesh-xds render` puts in an EnvoyFilter / EnvoyPatchPolicy, loaded into real
Envoy as they are (with the real .wasm files, the Wasm build AIMESH_CHAIN selects) behind routes made
from the rendered VirtualService: a virtual model is routed by the request body, which works only
because the rendered config carries `allow_on_headers_stop_iteration` (without it, shown here,
the router runs before the body is read and nothing routes)."""
from __future__ import annotations

import json
import os
import subprocess

import pytest
import requests
import yaml

from harness import demo, paths, procs, xds

# A mesh loads the Wasm builds; `aimesh-xds render` refuses `native` (unit-tested in render).
pytestmark = pytest.mark.skipif(paths.build() == "native", reason="meshes load the Wasm builds, not the native module")

KEY = "sk-aimesh-" + "f" * 64
FILTER_BUILD = paths.build()


def rendered(tmp_path, mock, target: str) -> list[dict]:
    f = tmp_path / "gateway.yaml"
    xds.write_gateway(f, {
        "listener": {"filter_build": FILTER_BUILD},
        "providers": [xds.mock_provider("local", mock, ["gpt-4o-mini"])],
        "virtual_models": [{"name": "smart", "targets": [{"provider": "local", "model": "gpt-4o-mini"}]}],
        "keys": [{"id": "alice", "hash": demo.key_hash(KEY), "team": "a"}],
    })
    r = subprocess.run([str(paths.XDS), "render", "--target", target, "--wasm-dir", str(paths.WASM_DIR),
                        str(f)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def filters_of(docs: list[dict]) -> list[dict]:
    for d in docs:
        if d["kind"] == "EnvoyFilter":
            return [p["patch"]["value"] for p in d["spec"]["configPatches"]]
        if d["kind"] == "EnvoyPatchPolicy":
            return [p["operation"]["value"] for p in d["spec"]["jsonPatches"]]
    raise AssertionError("no filters rendered")


def istio_routes(docs: list[dict]) -> list[tuple[str, str, int]]:
    """(x-aimesh-cluster value, host, port) of the VirtualService's header routes."""
    [vs] = [d for d in docs if d["kind"] == "VirtualService"]
    out = []
    for r in vs["spec"]["http"]:
        h = r["match"][0].get("headers", {}).get("x-aimesh-cluster")
        if h:
            d = r["route"][0]["destination"]
            out.append((h["exact"], d["host"], d["port"]["number"]))
    return out


def envoy(filters: list[dict], routes: list[tuple[str, str, int]]) -> procs.Envoy:
    clusters = [{"name": f"{host}:{port}", "type": "STATIC", "connect_timeout": "2s",
                 "load_assignment": {"cluster_name": f"{host}:{port}", "endpoints": [{"lb_endpoints": [
                     {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}]}]}}
                for _, host, port in routes]
    vroutes = [{"match": {"prefix": "/", "headers": [{"name": "x-aimesh-cluster", "string_match": {"exact": c}}]},
                "route": {"cluster": f"{host}:{port}"}, "request_headers_to_remove": ["x-aimesh-cluster"]}
               for c, host, port in routes]
    hcm = {"@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
           "stat_prefix": "mesh", "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": vroutes}]},
           "http_filters": filters + [{"name": "envoy.filters.http.router", "typed_config": {
               "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}
    return procs.Envoy({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [{"name": "mesh", "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                           "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                                           "typed_config": hcm}]}]}],
            "clusters": clusters}})


def chat(e: procs.Envoy, key: str) -> requests.Response:
    return requests.post(f"{e.url}/v1/chat/completions", timeout=10, headers={"authorization": f"Bearer {key}"},
                         json={"model": "smart", "messages": [{"role": "user", "content": "hi"}]})


@pytest.mark.parametrize("target", ["istio", "envoy-gateway"])
def test_rendered_filters_route_a_virtual_model_by_its_body(tmp_path, mock, target):
    docs = rendered(tmp_path, mock, target)
    routes = istio_routes(rendered(tmp_path, mock, "istio"))
    assert routes == [("provider.local", "127.0.0.1", mock.port)]
    e = envoy(filters_of(docs), routes)
    r = chat(e, KEY)
    assert r.status_code == 200, r.text
    [rec] = mock.records()
    assert json.loads(rec["body"])["model"] == "gpt-4o-mini"
    assert chat(e, "sk-aimesh-" + "0" * 64).status_code == 401
    assert len(mock.records()) == 1


def test_without_the_pause_setting_nothing_routes(tmp_path, mock):
    """Why render patches the filter itself: the same filters as WasmPlugin or
    EnvoyExtensionPolicy would build them, without `allow_on_headers_stop_iteration`."""
    docs = rendered(tmp_path, mock, "istio")
    filters = filters_of(docs)
    for f in filters:
        del f["typed_config"]["config"]["allow_on_headers_stop_iteration"]
    e = envoy(filters, istio_routes(docs))
    try:
        # Envoy sends the headers on unrouted (404), or the request stalls: never a success.
        assert chat(e, KEY).status_code != 200
    except requests.exceptions.ReadTimeout:
        pass
    assert mock.records() == []
