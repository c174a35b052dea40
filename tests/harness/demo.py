"""The gateway `make run` starts: all five filters in front of the fake upstream.

The same function builds the config for `make run`, for `make validate` and for the end-to-end
test of the demo, so what the README promises is what the tests exercise.
"""
from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

from . import config, paths

# Where `make run` keeps its demo key and access log; tests point it elsewhere.
STATE_DIR = Path(os.environ.get("AIMESH_STATE_DIR") or paths.REPO / ".aimesh")
DEMO_ENV = STATE_DIR / "demo.env"


def key_hash(key: str) -> str:
    """The `sha256:` form the auth filter's config takes."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def demo_key(path: Path = DEMO_ENV) -> str:
    """The demo API key, generated on first use and kept in `.aimesh/demo.env`."""
    if path.exists():
        for line in path.read_text().splitlines():
            if line.startswith("AIMESH_DEMO_KEY="):
                return line.split("=", 1)[1].strip()
    key = "sk-aimesh-" + secrets.token_hex(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"AIMESH_DEMO_KEY={key}\n")
    path.chmod(0o600)
    return key


def filter_configs(key: str) -> dict[str, dict]:
    """Per-filter configuration of the demo chain."""
    return {
        "auth": {"keys": [{"id": "demo", "hash": key_hash(key), "team": "demo"}]},
        "pii-redaction": {},
        "virtual-model": {},
        "token-accounting": {},
        "header-auth": {},
    }


def demo_config(key: str, mock_port: int, *, port: int = 0, admin_port: int = 0,
                openai_key: str | None = None, access_log: str | None = None) -> dict:
    """Envoy bootstrap of the demo gateway."""
    cfgs = filter_configs(key)
    filters = [config.wasm_filter(name, cfgs[name]) for name in paths.FILTERS]
    clusters = [config.cluster("local-mock", mock_port)]
    routes = None
    if openai_key:
        clusters.append(openai_cluster())
        # Until header-auth injects provider credentials (issue 6), the demo route adds the key.
        routes = [
            {"match": {"prefix": "/openai/"},
             "route": {"cluster": "openai", "prefix_rewrite": "/", "timeout": "120s",
                       "host_rewrite_literal": "api.openai.com"},
             "request_headers_to_add": [{"header": {"key": "authorization",
                                                    "value": f"Bearer {openai_key}"},
                                         "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]},
            {"match": {"prefix": "/"}, "route": {"cluster": "local-mock", "timeout": "120s"}},
        ]
    logs = [config.json_access_log(access_log)] if access_log else None
    cfg = config.gateway(filters, clusters, routes=routes, access_logs=logs, route_timeout="120s")
    cfg["admin"]["address"]["socket_address"]["port_value"] = admin_port
    cfg["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"] = port
    return cfg


def openai_cluster() -> dict:
    """api.openai.com over TLS with SNI."""
    return {
        "name": "openai",
        "type": "LOGICAL_DNS",
        "dns_lookup_family": "V4_ONLY",
        "connect_timeout": "5s",
        "load_assignment": {"cluster_name": "openai", "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": {"socket_address": {"address": "api.openai.com", "port_value": 443}}}}]}]},
        "transport_socket": {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": "api.openai.com",
            },
        },
    }


def env_port(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default
