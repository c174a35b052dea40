"""Shared setup of the token-accounting tests: the gateway with the shipped audit log format."""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from harness import audit, config, demo, paths, procs, statnames

SHIPPED = paths.ENVOY_DIR / "token-accounting.yaml"
# Lets a developer point the tests at a wasm built elsewhere; unset in `make test`.
TA_WASM = os.environ.get("AIMESH_TOKEN_ACCOUNTING_WASM") or None

KEYS = {"alpha": "sk-test-alpha-" + "a" * 24, "beta": "sk-test-beta-" + "b" * 24}


def shipped() -> dict:
    return yaml.safe_load(SHIPPED.read_text())


def audit_fields() -> dict:
    hcm = shipped()["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return hcm["access_log"][0]["typed_config"]["log_format"]["json_format"]


def gateway(mock: procs.MockLLM, ta_config: dict, log_path: Path, *, auth: bool = True,
            concurrency: int = 2) -> procs.Envoy:
    filters = []
    if auth:
        filters.append(config.wasm_filter("auth", {"keys": [
            {"id": kid, "hash": demo.key_hash(key), "team": f"team-{kid}"} for kid, key in KEYS.items()]}))
    filters.append(config.wasm_filter("token-accounting", ta_config, wasm_path=TA_WASM))
    cfg = config.gateway(filters, [config.cluster("llm-mock", mock.port)],
                         access_logs=[config.json_access_log(str(log_path), audit_fields())])
    cfg["stats_config"] = shipped()["stats_config"]
    return procs.Envoy(cfg, concurrency=concurrency)


def post(url: str, path: str, body: dict, headers: dict | None = None) -> tuple[int, dict, bytes]:
    """Raw POST: status, headers (lower-case), the exact body bytes."""
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def auth(kid: str) -> dict:
    return {"authorization": f"Bearer {KEYS[kid]}"}


def audit_lines(log_path: Path) -> list[dict]:
    """The audit log's lines, each checked against docs/audit-log.schema.json."""
    return audit.check(log_path)


def token_stats(envoy: procs.Envoy) -> dict[tuple[str, str, str], int]:
    """(key_id, token_type, source) -> total, from the labelled counters."""
    out: dict[tuple[str, str, str], int] = {}
    for name, v in envoy.stats("gen_ai.client.token.usage").items():
        lab = statnames.labels(name, {"key_id", "token_type", "source"})
        k = (lab["key_id"], lab["token_type"], lab["source"])
        out[k] = out.get(k, 0) + v
    return out


def sse_events(raw: bytes) -> list[bytes]:
    return [e + b"\n\n" for e in raw.split(b"\n\n") if e]


def sse_usage(raw: bytes) -> dict | None:
    usage = None
    for e in sse_events(raw):
        data = e.strip()[len(b"data: "):]
        if data.startswith(b"{"):
            u = json.loads(data).get("usage")
            if u:
                usage = u
    return usage
