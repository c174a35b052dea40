"""Builds Envoy configs (as dicts) for tests: listener, filter chain, clusters, routes.

A route matches on `x-aimesh-cluster` (set by the virtual-model filter) through
`cluster_header`; requests without it go to the default cluster.
"""
from __future__ import annotations

import json

from . import audit, paths

WASM = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
STRING = "type.googleapis.com/google.protobuf.StringValue"


def wasm_filter(filter_name: str, config: dict | None = None, *, vm_id: str | None = None,
                failure_policy: str = "FAIL_RELOAD", wasm_path: str | None = None,
                env_keys: list[str] | None = None) -> dict:
    """One aimesh Wasm filter as an HTTP filter entry (downstream or upstream).

    `env_keys` names Envoy environment variables the VM may read (`${env:NAME}` in configs);
    passed by name, their values never appear in the config or `/config_dump`.
    """
    name = f"aimesh.{filter_name}"
    entry = {
        "name": name,
        "typed_config": {
            "@type": WASM,
            "config": {
                "name": name,
                "root_id": name,
                # Without this, a filter that pauses in on_request_headers to read the body
                # hangs the request (Envoy ignores StopIteration from Wasm headers callbacks).
                "allow_on_headers_stop_iteration": True,
                "failure_policy": failure_policy,
                "configuration": {"@type": STRING, "value": json.dumps(config or {})},
                "vm_config": {
                    "vm_id": vm_id or name,
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": wasm_path or str(paths.wasm(filter_name))}},
                },
            },
        },
    }
    if env_keys:
        entry["typed_config"]["config"]["vm_config"]["environment_variables"] = {"host_env_keys": env_keys}
    return entry


DYNAMIC_MODULE = "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter"


def native_filter(config: dict | None = None) -> dict:
    """The native build (`libaimesh.so`) as an HTTP filter entry: every stage of the chain
    configuration `config` in one dynamic-module filter, named `aimesh.chain` like the Wasm
    chain so tests that look a stage's config up find it in either."""
    return {
        "name": "aimesh.chain",
        "typed_config": {
            "@type": DYNAMIC_MODULE,
            "dynamic_module_config": {"name": "aimesh", "metrics_namespace": "wasmcustom"},
            "filter_name": "chain",
            "filter_config": {"@type": STRING, "value": json.dumps(config or {})},
        },
    }


def chain_filter(config: dict, *, env_keys: list[str] | None = None) -> dict:
    """The one-filter build `paths.build()` selects: the Wasm chain or the native module."""
    if paths.build() == "native":
        return native_filter(config)
    return wasm_filter("chain", config, env_keys=env_keys)


def metadata_mirror(namespace: str, key: str) -> list[dict]:
    """What the native build needs after a filter that writes a nested dynamic-metadata value
    (`jwt_authn`'s `payload_in_metadata`): Envoy's `set_filter_state` copying it as JSON into
    the filter state the module reads (the ABI reaches only top-level metadata values; see
    filters/native/src/mirror.rs). The Wasm builds read the metadata directly: nothing."""
    if paths.build() != "native":
        return []
    return [{
        "name": "envoy.filters.http.set_filter_state",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.set_filter_state.v3.Config",
            "on_request_headers": [{
                "object_key": f"aimesh.metadata.{namespace}.{key}",
                "factory_key": "envoy.string",
                "format_string": {"json_format": {"value": f"%DYNAMIC_METADATA({namespace}:{key})%"}},
            }],
        },
    }]


def single_stage(stage: str, cfg: dict) -> dict:
    """One stage as the build under test loads it: its own Wasm filter (five-filter build) or
    the only stage of the one-filter chain (Wasm or native)."""
    if paths.build() == "separate":
        return wasm_filter(stage, cfg)
    return chain_filter({stage: cfg})


def cluster(name: str, port: int, *, host: str = "127.0.0.1", http2: bool = False,
            upstream_filters: list[dict] | None = None, extra: dict | None = None) -> dict:
    """A static cluster to a local upstream."""
    c = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                "socket_address": {"address": host, "port_value": port}}}}]}],
        },
    }
    opts: dict = {}
    if http2:
        opts["explicit_http_config"] = {"http2_protocol_options": {}}
    else:
        opts["explicit_http_config"] = {"http_protocol_options": {}}
    if upstream_filters:
        opts["http_filters"] = upstream_filters + [{
            "name": "envoy.filters.http.upstream_codec",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec"},
        }]
    c["typed_extension_protocol_options"] = {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions", **opts},
    }
    if extra:
        c.update(extra)
    return c


def json_access_log(path: str, fields: dict[str, str] | None = None) -> dict:
    """A file access log writing one JSON object per request."""
    # Identity comes from auth's filter state: by log time header-auth has removed every
    # x-aimesh-* request header, so %REQ(x-aimesh-key-id)% would be empty.
    fmt = fields or {
        "status": "%RESPONSE_CODE%",
        "path": "%REQ(:PATH)%",
        "key_id": "%FILTER_STATE(wasm.aimesh.key_id:PLAIN)%",
        "team": "%FILTER_STATE(wasm.aimesh.team:PLAIN)%",
        "duration_ms": "%DURATION%",
    }
    if audit.is_audit_format(fmt):
        audit.register(path)
    return {
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": path,
            "log_format": {"json_format": fmt},
        },
    }


# Envoy refuses a path with an encoded `/` or `\\` (`path_with_escaped_slashes_action`) and one
# it cannot normalize, with an empty body of its own.
PATH_REFUSED = "the request path has an encoded slash or backslash, or cannot be normalized"


def openai_local_replies() -> dict:
    """HCM `local_reply_config` giving Envoy's own local replies (no route, 413 past buffer limits,
    codec errors, no healthy upstream, timeouts) the OpenAI error shape the SDKs parse.

    Replies sent by the aimesh filters are already OpenAI-shaped and must keep their codes. They
    are told apart by their response code details: Envoy's own replies always carry one
    (`route_not_found`, `http1.codec_error`, ...), proxy-wasm local replies carry none and the native
    build's carry `dynamic_module`. (A mapper's
    `header_filter` would test the *request* headers, so it cannot look at the reply.)
    """
    def cel(expr: str) -> dict:
        return {"extension_filter": {"name": "envoy.access_loggers.extension_filters.cel", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter",
            "expression": expr}}}

    def body(message: str) -> dict:
        return {"json_format": {"error": {"message": message, "type": "gateway_error", "param": None,
                                          "code": "%RESPONSE_CODE_DETAILS%"}},
                "content_type": "application/json"}

    return {"mappers": [
        {"filter": cel("response.code_details == 'route_not_found'"),
         "body_format_override": body("no route for this path")},
        {"filter": cel("response.code_details == 'path_normalization_failed'"),
         "body_format_override": body(PATH_REFUSED)},
        {"filter": cel("response.code_details != '' && response.code_details != 'direct_response' && response.code_details != 'dynamic_module'"),
         "body_format_override": body("%LOCAL_REPLY_BODY%")},
    ]}


def edge_options(trusted_hops: int = 0) -> dict:
    """HCM settings of a listener that faces untrusted clients (Envoy's edge-proxy guidance);
    the same as `envoy/*.yaml` and the listener `aimesh-xds` builds (`resources::edge`).

    - Paths are normalized before any filter or route sees them (RFC 3986 dot segments, `%2e`
      included; `//` merged), and a path with an encoded `/` or `\\` is refused: what auth,
      header-auth and the routes check is what the upstream gets.
    - `use_remote_address`: the client is whoever connected (or, behind `trusted_hops` proxies,
      what they put in `x-forwarded-for`), so every request is external and Envoy strips the
      client's `x-envoy-*` control headers (retries, timeouts, original path, ...).
    - `skip_xff_append`: the provider is a third party; client addresses are not appended for it.
    - Header names with `_` are dropped: some servers read `x_aimesh_key_id` as
      `x-aimesh-key-id`, which auth strips only in its `-` spelling. (Refusing them would reset
      HTTP/2 streams without an answer.)
    - `strip_any_host_port`: `Host: x:1234` matches routes as `x`.
    """
    return {
        "normalize_path": True,
        "merge_slashes": True,
        "path_with_escaped_slashes_action": "REJECT_REQUEST",
        "use_remote_address": True,
        "xff_num_trusted_hops": trusted_hops,
        "skip_xff_append": True,
        "strip_any_host_port": True,
        "common_http_protocol_options": {"headers_with_underscores_action": "DROP_HEADER"},
    }


# A listener that passes paths as sent, like a mesh HCM configured without the edge options:
# for tests of the filters' own path checks, which must hold there too.
PATHS_AS_SENT = {"normalize_path": False, "merge_slashes": False,
                 "path_with_escaped_slashes_action": "KEEP_UNCHANGED"}


def gateway(filters: list[dict], clusters: list[dict], *, default_cluster: str | None = None,
            routes: list[dict] | None = None, access_logs: list[dict] | None = None,
            route_timeout: str = "30s", retry_policy: dict | None = None,
            extra_hcm: dict | None = None) -> dict:
    """A bootstrap with one HTTP listener on a free port running `filters` then the router."""
    default_cluster = default_cluster or clusters[0]["name"]
    action = {"timeout": route_timeout}
    if retry_policy:
        action["retry_policy"] = retry_policy
    route_list = routes or [
        # The router applies `request_headers_to_remove` after it picked the cluster, so the
        # internal header steers routing but never reaches the provider.
        {"match": {"prefix": "/", "headers": [{"name": "x-aimesh-cluster", "present_match": True}]},
         "route": {"cluster_header": "x-aimesh-cluster", **action},
         "request_headers_to_remove": ["x-aimesh-cluster"]},
        {"match": {"prefix": "/"}, "route": {"cluster": default_cluster, **action}},
    ]
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "aimesh",
        "codec_type": "AUTO",
        "route_config": {"name": "gateway", "virtual_hosts": [
            {"name": "all", "domains": ["*"], "routes": route_list}]},
        "local_reply_config": openai_local_replies(),
        **edge_options(),
        "http_filters": filters + [{
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
        }],
    }
    if access_logs:
        hcm["access_log"] = access_logs
    if extra_hcm:
        hcm.update(extra_hcm)
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [{
                "name": "gateway",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": hcm,
                }]}],
            }],
            "clusters": clusters,
        },
    }
