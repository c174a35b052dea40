"""Helpers shared by the auth filter's end-to-end tests (test_auth*.py)."""
from __future__ import annotations

import http.client
import json
import secrets
from urllib.parse import urlparse

from harness import config, demo, procs

CHAT = "/v1/chat/completions"


def new_key() -> str:
    return "sk-aimesh-" + secrets.token_hex(32)


def entry(key_id: str, key: str, **fields) -> dict:
    """A key entry for the auth config: only the hash of `key` goes in."""
    return {"id": key_id, "hash": demo.key_hash(key), **fields}


def chat_body(model: str = "gpt-4o-mini", **extra) -> bytes:
    return json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}],
                       **extra}).encode()


def gateway(mock: procs.MockLLM, auth: dict, *, before: list[dict] | None = None,
            after: list[dict] | None = None, routes: list[dict] | None = None, access_log: str | None = None,
            access_fields: dict | None = None, concurrency: int = 2,
            log_level: str = "info", extra_args: list[str] | None = None) -> procs.Envoy:
    """Envoy with (optional filters, then) the auth filter in front of the fake upstream."""
    filters = (before or []) + [config.single_stage("auth", auth)] + (after or [])
    logs = [config.json_access_log(access_log, access_fields)] if access_log else None
    cfg = config.gateway(filters, [config.cluster("mock", mock.port)], routes=routes,
                         access_logs=logs)
    return procs.Envoy(cfg, concurrency=concurrency, log_level=log_level, extra_args=extra_args)


def request(envoy: procs.Envoy, method: str, path: str, body: bytes | None = None,
            headers: dict | None = None) -> tuple[int, dict, bytes]:
    """One request on a fresh connection: (status, lower-cased headers, body)."""
    u = urlparse(envoy.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        hs = {"content-type": "application/json", **(headers or {})}
        conn.request(method, path, body=body, headers=hs)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def bearer(key: str) -> dict:
    return {"authorization": f"Bearer {key}"}


def error_code(body: bytes) -> str:
    return json.loads(body)["error"]["code"]
