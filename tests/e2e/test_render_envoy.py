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


def rendered(tmp_path, mock, target: str, gateway: dict | None = None) -> list[dict]:
    f = tmp_path / "gateway.yaml"
    xds.write_gateway(f, gateway or {
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
        if d["kind"] == "EnvoyFilter" and d["metadata"]["name"] == "aimesh-filters":
            return [p["patch"]["value"] for p in d["spec"]["configPatches"]]
        if d["kind"] == "EnvoyPatchPolicy":
            return [p["operation"]["value"] for p in d["spec"]["jsonPatches"]
                    if p["type"].endswith("Listener")]
    raise AssertionError("no filters rendered")


def fallbacks_of(docs: list[dict]) -> tuple[list[dict], dict]:
    """(clusters, route) the manifests add for virtual models with fallbacks."""
    clusters, routes = [], []
    for d in docs:
        if d["kind"] == "EnvoyFilter" and d["metadata"]["name"] == "aimesh-fallbacks":
            for p in d["spec"]["configPatches"]:
                (clusters if p["applyTo"] == "CLUSTER" else routes).append(p["patch"]["value"])
        if d["kind"] == "EnvoyPatchPolicy":
            for p in d["spec"]["jsonPatches"]:
                if p["type"].endswith("Cluster"):
                    clusters.append(p["operation"]["value"])
                elif p["type"].endswith("RouteConfiguration"):
                    routes.append(p["operation"]["value"])
    [route] = routes
    return clusters, route


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


def secret_env(docs: list[dict]) -> dict[str, str]:
    """The proxy environment the rendered Secrets give it (`envFrom`), virtual keys included."""
    return {k: v for d in docs if d["kind"] == "Secret" for k, v in d["stringData"].items() if v}


def envoy(filters: list[dict], routes: list[tuple[str, str, int]],
          extra_clusters: list[dict] = (), first_routes: list[dict] = (),
          env: dict | None = None) -> procs.Envoy:
    clusters = [{"name": f"{host}:{port}", "type": "STATIC", "connect_timeout": "2s",
                 "load_assignment": {"cluster_name": f"{host}:{port}", "endpoints": [{"lb_endpoints": [
                     {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}]}]}}
                for _, host, port in routes]
    vroutes = [{"match": {"prefix": "/", "headers": [{"name": "x-aimesh-cluster", "string_match": {"exact": c}}]},
                "route": {"cluster": f"{host}:{port}"}, "request_headers_to_remove": ["x-aimesh-cluster"]}
               for c, host, port in routes]
    hcm = {"@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
           "stat_prefix": "mesh", "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"],
                                                 "routes": [*first_routes, *vroutes]}]},
           "http_filters": filters + [{"name": "envoy.filters.http.router", "typed_config": {
               "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}
    return procs.Envoy({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [{"name": "mesh", "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                           "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                                           "typed_config": hcm}]}]}],
            "clusters": clusters + list(extra_clusters)}}, env=env)


def chat(e: procs.Envoy, key: str) -> requests.Response:
    return requests.post(f"{e.url}/v1/chat/completions", timeout=10, headers={"authorization": f"Bearer {key}"},
                         json={"model": "smart", "messages": [{"role": "user", "content": "hi"}]})


@pytest.mark.parametrize("target", ["istio", "envoy-gateway"])
def test_rendered_filters_route_a_virtual_model_by_its_body(tmp_path, mock, target):
    docs = rendered(tmp_path, mock, target)
    routes = istio_routes(rendered(tmp_path, mock, "istio"))
    assert routes == [("provider.local", "127.0.0.1", mock.port)]
    # The key hashes are in the Secret only; the filters read them from the proxy environment.
    env = secret_env(docs)
    assert demo.key_hash(KEY) in env["AIMESH_VIRTUAL_KEYS"]
    assert demo.key_hash(KEY) not in json.dumps([d for d in docs if d["kind"] != "Secret"])
    e = envoy(filters_of(docs), routes, env=env)
    assert demo.key_hash(KEY) not in e.admin_get("/config_dump")
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
    e = envoy(filters, istio_routes(docs), env=secret_env(docs))
    try:
        # Envoy sends the headers on unrouted (404), or the request stalls: never a success.
        assert chat(e, KEY).status_code != 200
    except requests.exceptions.ReadTimeout:
        pass
    assert mock.records() == []


@pytest.mark.skipif(FILTER_BUILD == "chain", reason="the chain build refuses fallbacks (docs/gateway-yaml.md)")
@pytest.mark.parametrize("target", ["istio", "envoy-gateway"])
def test_rendered_fallbacks_move_a_failed_request_to_the_next_target(tmp_path, mock, target):
    """The aimesh clusters and route the manifests add, loaded as they are: the target answers
    503, the router retries on the aggregate's next cluster, and the upstream virtual-model
    instance rewrites the body's model for the fallback."""
    failing = procs.MockLLM("failing")
    failing.set_defaults(status=503)
    gateway = {
        "providers": [xds.mock_provider("primary", failing, ["gpt-a"]),
                      xds.mock_provider("backup", mock, ["gpt-b"])],
        "virtual_models": [{"name": "smart", "targets": [{"provider": "primary", "model": "gpt-a"}],
                            "fallbacks": [{"provider": "backup", "model": "gpt-b"}]}],
        "keys": [{"id": "alice", "hash": demo.key_hash(KEY), "team": "a"}],
    }
    docs = rendered(tmp_path, mock, target, gateway)
    clusters, route = fallbacks_of(docs)
    names = [c["name"] for c in clusters]
    assert names == ["provider.primary", "provider.backup", "fallback.smart.0", "fallback.smart.1"]
    routes = istio_routes(rendered(tmp_path, mock, "istio", gateway))
    e = envoy(filters_of(docs), routes, clusters, [route], env=secret_env(docs))
    r = chat(e, KEY)
    assert r.status_code == 200, r.text
    [first] = failing.records()
    [second] = mock.records()
    assert json.loads(first["body"])["model"] == "gpt-a"
    assert json.loads(second["body"])["model"] == "gpt-b"
    failing.stop()


def test_without_the_keys_secret_the_filters_refuse_to_load(tmp_path, mock):
    """auth's `keys_env` is required once set: a proxy whose Secret is not mounted gets no
    half-configured filter that would refuse every key, Envoy rejects the config."""
    docs = rendered(tmp_path, mock, "istio")
    with pytest.raises(RuntimeError):
        envoy(filters_of(docs), istio_routes(docs), env={})
