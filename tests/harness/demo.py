"""The gateway `make run` starts: all five filters in front of the fake upstream.

The same function builds the config for `make run`, for `make validate` and for the end-to-end
test of the demo, so what the README promises is what the tests exercise.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
from pathlib import Path

import yaml

from . import audit, config, paths

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
            name, _, value = line.removeprefix("export ").partition("=")
            if name == "AIMESH_DEMO_KEY" and value.strip():
                return value.strip()
    key = "sk-aimesh-" + secrets.token_hex(32)
    write_demo_env(key, path=path)
    return key


def write_demo_env(key: str, base_url: str | None = None, path: Path = DEMO_ENV) -> None:
    """`.aimesh/demo.env`: exported, so `source` hands the key (and the gateway's URL, once
    `make run` knows its port) to the programs started from that shell, the README's included."""
    lines = [f"export AIMESH_DEMO_KEY={key}"]
    if base_url:
        lines.append(f"export AIMESH_BASE_URL={base_url}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)


OPENAI_MODELS = ["gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-4.1"]
# Claude model names clients use -> the model the (fake) Anthropic provider serves.
CLAUDE_MODELS = {"claude-sonnet-4-5": "claude-sonnet-4-5", "claude-haiku": "claude-haiku-4-5"}
# The key header-auth presents to the local fake Anthropic provider: not a secret (the fake
# accepts anything); it shows that the client's key is replaced.
LOCAL_ANTHROPIC_KEY = "sk-ant-local-fake-provider"


def filter_configs(key: str, *, openai: bool = False, unlimited: bool = False) -> dict[str, dict]:
    """Per-filter configuration of the demo chain.

    `vm-demo` is a virtual model served by the local fake provider; with `openai`, the OpenAI
    models are reachable as `openai/<model>` and header-auth signs them with the key it reads
    from the VM's environment (`OPENAI_API_KEY`), which the client never sees. `unlimited`
    (benchmarks) keeps every limit check running but with limits no load reaches.
    """
    rpm, tpm, daily = (10**9, 10**12, 10**9) if unlimited else (6000, 1_000_000, 25)
    virtual = [{"name": "vm-demo", "targets": [{"target": "local/gpt-4o-mini", "cluster": "local-mock"}]}]
    accounts: dict = {"local": {}}
    # Claude models on the same fake provider, in Anthropic's wire format (`/v1/messages`):
    # header-auth signs them as Anthropic would be signed (`x-api-key`, `anthropic-version`).
    virtual += [{"name": name, "targets": [{"target": f"anthropic-local/{served}", "cluster": "local-mock"}]}
                for name, served in CLAUDE_MODELS.items()]
    accounts["anthropic-local"] = {"auth": {"type": "anthropic", "api_key": LOCAL_ANTHROPIC_KEY}}
    if openai:
        virtual += [{"name": f"openai/{m}", "targets": [{"target": f"openai/{m}", "cluster": "openai"}]}
                    for m in OPENAI_MODELS]
        accounts["openai"] = {"auth": {"type": "openai", "api_key": "${env:OPENAI_API_KEY}"}}
    return {
        "auth": {"keys": [{"id": "demo", "hash": key_hash(key), "team": "demo", "requests_per_minute": rpm}]},
        "pii-redaction": {},
        "virtual-model": {"virtual_models": virtual},
        "token-accounting": {
            "prices": {"gpt-4o-mini*": {"input": 0.15, "cached_input": 0.075, "output": 0.6},
                       "gpt-4o*": {"input": 2.5, "cached_input": 1.25, "output": 10.0},
                       "gpt-4.1-mini*": {"input": 0.4, "cached_input": 0.1, "output": 1.6},
                       "gpt-4.1*": {"input": 2.0, "cached_input": 0.5, "output": 8.0},
                       "claude-sonnet-4-5*": {"input": 3.0, "cached_input": 0.3, "cache_write": 3.75,
                                              "output": 15.0},
                       "claude-haiku-4-5*": {"input": 1.0, "cached_input": 0.1, "cache_write": 1.25,
                                             "output": 5.0}},
            "limits": {"default": {"tpm": tpm, "daily_usd": daily}},
        },
        "header-auth": {"accounts": accounts, "default_account": "local"},
    }


def demo_config(key: str, mock_port: int, *, port: int = 0, admin_port: int = 0,
                openai_key: str | None = None, access_log: str | None = None,
                unlimited: bool = False, chain: bool | None = None) -> dict:
    """Envoy bootstrap of the demo gateway.

    `chain` loads the five filters as stages of one filter (`aimesh_chain.wasm`, one config
    section per filter) instead of five; by default the `AIMESH_CHAIN=1` environment variable
    decides, so a test module runs against either build unchanged.
    """
    cfgs = filter_configs(key, openai=bool(openai_key), unlimited=unlimited)
    env = {"header-auth": ["OPENAI_API_KEY"]} if openai_key else {}
    if chain is None:
        chain = paths.one_filter()
    if chain:
        filters = [config.chain_filter({name: cfgs[name] for name in paths.FILTERS},
                                       env_keys=env.get("header-auth"))]
    else:
        filters = [config.wasm_filter(name, cfgs[name], env_keys=env.get(name)) for name in paths.FILTERS]
    clusters = [config.cluster("local-mock", mock_port)]
    if openai_key:
        clusters.append(openai_cluster())
    logs = [config.json_access_log(access_log, audit_fields())] if access_log else None
    cfg = config.gateway(filters, clusters, access_logs=logs, route_timeout="120s")
    cfg["stats_config"] = shipped_accounting()["stats_config"]
    cfg["layered_runtime"] = shipped_accounting()["layered_runtime"]
    cfg["admin"]["address"]["socket_address"]["port_value"] = admin_port
    cfg["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"] = port
    return cfg


def build_config(build: str, key: str, mock_port: int) -> dict:
    """The demo gateway (limits never reached) in a given build, whatever `AIMESH_BUILD` says:
    benchmarks put the builds side by side."""
    cfg = demo_config(key, mock_port, unlimited=True, chain=False)
    if build == "separate":
        return cfg
    cfgs = {name: stage_config(cfg, name) for name in paths.FILTERS}
    one = config.native_filter(cfgs) if build == "native" else config.wasm_filter("chain", cfgs)
    hcm = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["http_filters"] = [one] + [f for f in hcm["http_filters"] if not f["name"].startswith("aimesh.")]
    return cfg


def _wasm_entry(cfg: dict, stage: str) -> tuple[dict, bool]:
    """The http_filters entry that runs `stage`, and whether it is the one-filter chain."""
    hcm = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    for f in hcm["http_filters"]:
        if f["name"] in (f"aimesh.{stage}", "aimesh.chain"):
            tc = f["typed_config"]
            # The native module's config is its `filter_config`; a Wasm filter's, `configuration`.
            holder = tc["filter_config"] if "filter_config" in tc else tc["config"]["configuration"]
            return holder, f["name"] == "aimesh.chain"
    raise KeyError(stage)


def stage_config(cfg: dict, stage: str) -> dict:
    """The configuration of one filter in a gateway config, whichever build loads it."""
    holder, chained = _wasm_entry(cfg, stage)
    value = json.loads(holder["value"])
    return value[stage] if chained else value


def set_stage_config(cfg: dict, stage: str, value: dict) -> None:
    """Replaces one filter's configuration in a gateway config, whichever build loads it."""
    holder, chained = _wasm_entry(cfg, stage)
    if chained:
        whole = json.loads(holder["value"])
        whole[stage] = value
        value = whole
    holder["value"] = json.dumps(value)


def set_chain_option(cfg: dict, name: str, value) -> None:
    """Sets a top-level option of the one-filter chain's configuration (`stage_timings`)."""
    holder, chained = _wasm_entry(cfg, "auth")
    if not chained:
        raise ValueError("not a one-filter chain config")
    whole = json.loads(holder["value"])
    whole[name] = value
    holder["value"] = json.dumps(whole)


def shipped_accounting() -> dict:
    """`envoy/token-accounting.yaml`: the one definition of the audit-log line and stat tags."""
    return yaml.safe_load((paths.ENVOY_DIR / "token-accounting.yaml").read_text())


def audit_fields() -> dict:
    """One JSON line per request: who, which model, tokens, cost, timings. No prompt text."""
    hcm = shipped_accounting()["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    fields = hcm["access_log"][0]["typed_config"]["log_format"]["json_format"]
    return audit.native_fields(fields) if paths.build() == "native" else fields


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
