"""The xDS server under test (`aimesh-xds serve`) and Envoys that boot from ADS.

`XdsServer(gateway_dict)` writes the gateway.yaml, starts the server on free ports and exposes
`.port` (ADS gRPC), `.admin` (health/metrics URL), `.write(gateway_dict)` to change the file
(the server picks changes up by polling) and `.metrics()`. `ads_bootstrap(server)` is the Envoy
bootstrap for it (`delta=True` for incremental xDS); pass it to `procs.Envoy`. With
`tls_args=pki.server_args()` (`harness.certs`) the server requires mutual TLS, and
`ads_bootstrap(..., tls=certs.upstream_tls(...))` is an Envoy that speaks it.
"""
from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from pathlib import Path

import yaml

from . import audit, demo, paths, procs


def write_gateway(path: Path, gateway: dict | str) -> None:
    """Writes a gateway.yaml atomically (rename), so the server never reads half a file."""
    text = gateway if isinstance(gateway, str) else yaml.safe_dump(gateway, sort_keys=False)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class XdsServer(procs._Proc):
    """`aimesh-xds serve` on free ports (or `port`, to restart on the same one)."""

    name = "xds"

    def __init__(self, gateway: dict | str | None = None, *, config_path: Path | None = None,
                 port: int = 0, admin_port: int = 0, env: dict | None = None,
                 poll_ms: int = 100, tls_args: list[str] | None = None,
                 wasm_dir: Path = paths.WASM_DIR, listener_port: int | None = None) -> None:
        super().__init__()
        self.config_path = config_path or self.dir / "gateway.yaml"
        if gateway is not None:
            write_gateway(self.config_path, gateway)
            if isinstance(gateway, dict) and gateway.get("listener", {}).get("access_log"):
                audit.register(gateway["listener"]["access_log"])
        cmd = [str(paths.XDS), "serve", "--config", str(self.config_path),
               "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin_port}",
               "--wasm-dir", str(wasm_dir), "--poll-ms", str(poll_ms)] + (tls_args or [])
        if listener_port is not None:
            cmd += ["--listener-port", str(listener_port)]
        log = open(self.log_path, "ab")
        # Own session, like the other processes: a terminal Ctrl-C reaches `make run`, which
        # stops its children in order.
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log,
                                     env={**os.environ, **(env or {})}, start_new_session=True)
        procs._LIVE.append(self)
        line = self.proc.stdout.readline().decode() if self.proc.stdout else ""
        if not line.startswith("LISTENING "):
            self.stop()
            raise RuntimeError(f"aimesh-xds did not start: {line!r} {self.log()}")
        _, p, a = line.split()
        self.port, self.admin_port = int(p), int(a)
        self.admin = f"http://127.0.0.1:{self.admin_port}"

    def write(self, gateway: dict | str) -> None:
        write_gateway(self.config_path, gateway)

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        text = urllib.request.urlopen(f"{self.admin}/metrics", timeout=5).read().decode()
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def version(self) -> str:
        return urllib.request.urlopen(f"{self.admin}/healthz", timeout=5).read().decode().split()[1]

    def wait_metric(self, name: str, predicate, timeout: float = 10.0) -> float:
        deadline = time.time() + timeout
        value = None
        while time.time() < deadline:
            value = self.metrics().get(name)
            if value is not None and predicate(value):
                return value
            time.sleep(0.05)
        raise AssertionError(f"metric {name} = {value} did not reach the expected value")


def ads_bootstrap(server_port: int, *, node_id: str = "gw-1", delta: bool = False,
                  tls: dict | None = None, initial_fetch_timeout: str | None = None) -> dict:
    """Envoy bootstrap that takes everything from the xDS server on `server_port`; `tls`: the
    `transport_socket` of its cluster (`certs.upstream_tls`); `initial_fetch_timeout`: how long
    Envoy waits for its first config before it reports ready without one."""
    boot = {
        "node": {"id": node_id, "cluster": "aimesh"},
        # The audit stats' tags (model, backend, key id, ...), as in envoy/token-accounting.yaml.
        "stats_config": demo.shipped_accounting()["stats_config"],
        "layered_runtime": demo.shipped_accounting()["layered_runtime"],
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "DELTA_GRPC" if delta else "GRPC",
                "transport_api_version": "V3",
                "set_node_on_first_message_only": True,
                "grpc_services": [{"envoy_grpc": {
                    "cluster_name": "aimesh-xds",
                    "retry_policy": {"retry_back_off": {"base_interval": "0.2s", "max_interval": "1s"}},
                }}],
            },
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
        },
        "static_resources": {"clusters": [{
            "name": "aimesh-xds",
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": {"cluster_name": "aimesh-xds", "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {
                    "address": "127.0.0.1", "port_value": server_port}}}}]}]},
            "typed_extension_protocol_options": {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "explicit_http_config": {"http2_protocol_options": {}}}},
        }]},
    }
    if tls is not None:
        boot["static_resources"]["clusters"][0]["transport_socket"] = tls
    if initial_fetch_timeout is not None:
        for source in ("cds_config", "lds_config"):
            boot["dynamic_resources"][source]["initial_fetch_timeout"] = initial_fetch_timeout
    return boot


def mock_provider(name: str, mock: procs.MockLLM, models: list[str] | None = None) -> dict:
    """An openai_compatible provider pointing at a mock-llm."""
    return {"name": name, "kind": "openai_compatible", "base_url": mock.url, "models": models or []}


#: The second fake provider of `make run`: a private backend serving `PRIVATE_MODEL` only.
PRIVATE_PROVIDER = "local-private"
# The fake provider again, as a `kind: anthropic` provider (`make run`'s claude-* models).
ANTHROPIC_PROVIDER = "anthropic-local"
PRIVATE_MODEL = "private-llm"
#: Tools of the demo MCP server the demo key may call (all but `delete_all`).
DEMO_MCP_TOOLS = ("add", "echo", "search_*")


def demo_gateway(key_hash: str, mock_url: str, *, port: int = 10000, openai: bool = False,
                 access_log: str = "/dev/stdout", private_url: str | None = None,
                 mcp_url: str | None = None, anthropic_key_file: str | None = None) -> dict:
    """The gateway.yaml equivalent of `demo.demo_config` (for `make run` over xDS): the fake
    upstream as default provider with the virtual model `vm-demo`, the demo key, prices, limits,
    the audit log, optionally a second fake provider at `private_url` that serves
    `PRIVATE_MODEL` (routed by `providers[].models`), and optionally OpenAI's models as
    `openai/<model>` with the key from Envoy's `OPENAI_API_KEY` (header-auth resolves it in
    Envoy's environment)."""
    ta = demo.filter_configs("", openai=False)["token-accounting"]
    limits = ta["limits"]["default"]
    gw: dict = {
        "listener": {"address": "127.0.0.1", "port": port, "route_timeout": "120s",
                     "access_log": access_log},
        "providers": [{"name": "local-mock", "kind": "openai_compatible", "base_url": mock_url}],
        "default_provider": "local-mock",
        "virtual_models": [{"name": "vm-demo", "targets": [{"provider": "local-mock", "model": "gpt-4o-mini"}]}],
        "keys": [{"id": "demo", "team": "demo", "hash": key_hash, "requests_per_minute": 6000}],
        "limits": [{"tokens_per_minute": limits["tpm"]}],
        "budgets": [{"usd": limits["daily_usd"], "period": "day"}],
        "prices": ta["prices"],
        "pii": {"mode": "redact"},
    }
    if private_url:
        gw["providers"].append({"name": PRIVATE_PROVIDER, "kind": "openai_compatible",
                                "base_url": private_url, "models": [PRIVATE_MODEL]})
    if anthropic_key_file:
        # The same fake provider in Anthropic's wire format: `claude-*` over `/v1/messages`,
        # signed with `x-api-key` from a file (gateway.yaml takes no literal keys).
        gw["providers"].append({"name": ANTHROPIC_PROVIDER, "kind": "anthropic", "base_url": mock_url,
                                "api_key": f"${{file:{anthropic_key_file}}}"})
        gw["virtual_models"] += [{"name": name, "targets": [{"provider": ANTHROPIC_PROVIDER, "model": served}]}
                                 for name, served in demo.CLAUDE_MODELS.items()]
    if mcp_url:
        # The demo MCP server (harness.mcp_demo): the demo key may not call `delete_all`.
        gw["mcp_servers"] = [{"name": "demo", "url": mcp_url, "tools": list(DEMO_MCP_TOOLS)}]
    if openai:
        gw["providers"].append({"name": "openai", "kind": "openai", "api_key": "${env:OPENAI_API_KEY}"})
        gw["virtual_models"] += [{"name": f"openai/{m}", "targets": [{"provider": "openai", "model": m}]}
                                 for m in demo.OPENAI_MODELS]
    return gw


def shipped_bootstrap(server_port: int, *, admin_port: int = 0, mtls: dict[str, str] | None = None) -> dict:
    """`envoy/ads-bootstrap.yaml` (what `make run` boots from), pointed at `server_port`.
    `mtls`: its commented-out `transport_socket` turned on, each documented certificate path
    (`/etc/aimesh/certs/gateway.crt`, ...) replaced by the file given for its name."""
    text = (paths.ENVOY_DIR / "ads-bootstrap.yaml").read_text()
    if mtls is not None:
        head, sep, block = text.partition("    # transport_socket:\n")
        assert sep, "ads-bootstrap.yaml documents the mTLS transport_socket"
        lines = [sep.replace("# ", "", 1).rstrip("\n")]
        for line in block.splitlines():
            if not line.startswith("    #   "):
                break
            lines.append(line.replace("    # ", "    ", 1))
        text = head + "\n".join(lines) + "\n"
        for name, path in mtls.items():
            text = text.replace(f"/etc/aimesh/certs/{name}", path)
    boot = yaml.safe_load(text)
    boot["admin"]["address"]["socket_address"]["port_value"] = admin_port
    [cluster] = boot["static_resources"]["clusters"]
    cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"][
        "socket_address"]["port_value"] = server_port
    return boot


def demo_state(path: Path, key: str, mock_url: str, *, port: int, openai: bool,
               access_log: str, private_url: str | None = None, mcp_url: str | None = None) -> dict:
    """`make run`'s gateway.yaml at `path`: written on first run; later runs keep the user's
    file and only make sure the demo key is in it and the fake providers' (new) addresses are."""
    key_h = demo.key_hash(key)
    key_file = path.parent / "fake-anthropic.key"
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text(demo.LOCAL_ANTHROPIC_KEY)
    key_file.chmod(0o600)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        text = ("# aimesh `make run`: edit this file while the gateway runs; valid changes apply live\n"
                "# (reference: docs/gateway-yaml.md). Delete it to start over from the demo.\n"
                + yaml.safe_dump(demo_gateway(key_h, mock_url, port=port, openai=openai,
                                              access_log=access_log, private_url=private_url,
                                              mcp_url=mcp_url,
                                              anthropic_key_file=str(key_file.resolve())),
                                 sort_keys=False))
        write_gateway(path, text)
    text = path.read_text()
    gw = yaml.safe_load(text) or {}
    # The fake providers listen on new ports each run: swap their addresses in the text, so the
    # user's comments and layout survive.
    urls = {"local-mock": mock_url, PRIVATE_PROVIDER: private_url, ANTHROPIC_PROVIDER: mock_url}
    for p in gw.get("providers") or []:
        new = urls.get(p.get("name"))
        if new and p.get("base_url") and p["base_url"] != new:
            text = text.replace(p["base_url"], new)
    for m in gw.get("mcp_servers") or []:
        if mcp_url and m.get("name") == "demo" and m.get("url") and m["url"] != mcp_url:
            text = text.replace(m["url"], mcp_url)
    gw = yaml.safe_load(text) or {}
    # `AIMESH_BUILD=native make run` (or chain, separate): the filter build this run uses.
    build = os.environ.get("AIMESH_BUILD")
    if build and (gw.get("listener") or {}).get("filter_build", "separate") != build:
        gw.setdefault("listener", {})["filter_build"] = build
        text = yaml.safe_dump(gw, sort_keys=False)
    keys = gw.setdefault("keys", []) or []
    if not any(k.get("hash") == key_h for k in keys):
        gw["keys"] = [k for k in keys if k.get("id") != "demo"] + [
            {"id": "demo", "team": "demo", "hash": key_h, "requests_per_minute": 6000}]
        text = yaml.safe_dump(gw, sort_keys=False)
    if text != path.read_text():
        write_gateway(path, text)
    return gw
