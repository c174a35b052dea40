"""Shared setup of the header-auth tests: a gateway with auth + header-auth in front of two fakes.

`provider` plays the LLM provider accounts, `speech` the custom endpoints. Secrets come from the
Wasm VM's environment: most through `host_env_keys` (Envoy's own environment, set per test), one
through `key_values`, so both ways `${env:NAME}` resolves are exercised for real.
"""
from __future__ import annotations

import base64
import secrets
import socket

from harness import config, demo, procs

KEYS = {  # plaintext gateway key -> (id, team)
    "sk-gw-app1-" + "a" * 20: ("app-1", "voice"),
    "sk-gw-app2-" + "b" * 20: ("app-2", "ops"),
    "sk-gw-app3-" + "c" * 20: ("app-3", "voice"),
}
APP1, APP2, APP3 = list(KEYS)

# Simulates the virtual-model filter (another crate) choosing a provider account: copies a test
# header into x-aimesh-backend after auth has stripped client-sent internal headers.
BACKEND_PICKER = {
    "name": "envoy.filters.http.lua",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
        "default_source_code": {"inline_string": (
            "function envoy_on_request(h)\n"
            "  local b = h:headers():get('x-test-backend')\n"
            "  if b then h:headers():replace('x-aimesh-backend', b) end\n"
            "end\n")},
    },
}


class Secrets:
    """Fresh random provider secrets per gateway."""

    def __init__(self) -> None:
        self.openai = "sk-prov-oa-" + secrets.token_hex(16)
        self.azure = "az-prov-" + secrets.token_hex(16)
        self.anthropic = "sk-ant-prov-" + secrets.token_hex(16)
        self.speech_pw = "pw-" + secrets.token_hex(16)
        self.stt_key = "stt-" + secrets.token_hex(16)  # from key_values

    def host_env(self) -> dict[str, str]:
        return {"AIMESH_T_OA": self.openai, "AIMESH_T_AZ": self.azure,
                "AIMESH_T_AN": self.anthropic, "AIMESH_T_SPEECH_PW": self.speech_pw}

    def all(self) -> list[str]:
        return [self.openai, self.azure, self.anthropic, self.speech_pw, self.stt_key,
                base64.b64encode(f"svc-user:{self.speech_pw}".encode()).decode()]


def header_auth_config() -> dict:
    return {
        "default_account": "openai-main",
        "egress": {"hosts": ["api.openai.com", "*.example.com"], "cidrs": ["10.0.0.0/8"]},
        "accounts": {
            "openai-main": {"auth": {"type": "openai", "api_key": "${env:AIMESH_T_OA}"},
                            "headers": {"OpenAI-Organization": "org-aimesh"}},
            "azure-east": {"auth": {"type": "azure", "api_key": "${env:AIMESH_T_AZ}"}},
            "claude": {"auth": {"type": "anthropic", "api_key": "${env:AIMESH_T_AN}"}},
            "speech": {
                "auth": {"type": "basic", "username": "svc-user", "password": "${env:AIMESH_T_SPEECH_PW}"},
                "headers": {"x-tenant": "acme", "x-shared": "from-account"},
                "endpoints": {
                    "tts": {
                        "base_url": "https://tts.speech.example.com/cognitiveservices/v1",
                        "cluster": "speech-tts",
                        "headers": {"x-shared": "from-endpoint", "x-format": "riff-24khz"},
                        "allow": {"key_ids": ["app-1"], "teams": ["voice"]},
                    },
                    "stt.v2": {
                        "base_url": "http://10.20.30.40:8080",
                        "cluster": "speech-stt",
                        "auth": {"type": "header", "name": "Ocp-Apim-Subscription-Key",
                                 "value": "${env:AIMESH_T_STT}"},
                    },
                },
            },
        },
    }


def with_env(filter_entry: dict, host_env_keys: list[str], key_values: dict[str, str]) -> dict:
    vm = filter_entry["typed_config"]["config"]["vm_config"]
    vm["environment_variables"] = {"host_env_keys": host_env_keys, "key_values": key_values}
    return filter_entry


ROUTES = [
    # x-aimesh-cluster picks the cluster, then the route removes it: route-level header removal
    # runs in the router after the route (and its cluster) were chosen.
    {"match": {"prefix": "/", "headers": [{"name": "x-aimesh-cluster", "present_match": True}]},
     "route": {"cluster_header": "x-aimesh-cluster", "timeout": "30s"},
     "request_headers_to_remove": ["x-aimesh-cluster"]},
    {"match": {"prefix": "/"}, "route": {"cluster": "provider", "timeout": "30s"}},
]


def lua(source: str) -> dict:
    return {"name": "envoy.filters.http.lua", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
        "default_source_code": {"inline_string": source}}}


# Simulates virtual-model's upstream instance naming the account of one attempt.
ATTEMPT_BACKEND = lua(
    "function envoy_on_request(h)\n"
    "  local b = h:headers():get('x-test-attempt-backend')\n"
    "  if b then h:headers():replace('x-aimesh-backend', b) end\n"
    "end\n")


def gateway_config(s: Secrets, provider_port: int, speech_port: int,
                   ha_config: dict | None = None, access_log: str | None = None,
                   upstream_role: bool = False, normalize: bool = True) -> dict:
    auth = config.wasm_filter("auth", {"keys": [
        {"id": kid, "team": team, "hash": demo.key_hash(k)} for k, (kid, team) in KEYS.items()]})
    ha = with_env(config.wasm_filter("header-auth", ha_config or header_auth_config()),
                  list(s.host_env()), {"AIMESH_T_STT": s.stt_key})
    upstream = None
    if upstream_role:
        ha_up = with_env(config.wasm_filter("header-auth", {**header_auth_config(), "role": "upstream"},
                                            vm_id="aimesh.header-auth.upstream"),
                         list(s.host_env()), {"AIMESH_T_STT": s.stt_key})
        upstream = [ATTEMPT_BACKEND, ha_up]
    clusters = [config.cluster("provider", provider_port, upstream_filters=upstream),
                config.cluster("speech-tts", speech_port),
                config.cluster("speech-stt", speech_port)]
    logs = [config.json_access_log(access_log)] if access_log else None
    return config.gateway([auth, BACKEND_PICKER, ha], clusters, routes=ROUTES, access_logs=logs,
                          extra_hcm=None if normalize else config.PATHS_AS_SENT)


def start(s: Secrets, provider: procs.MockLLM, speech: procs.MockLLM, **kw) -> procs.Envoy:
    return procs.Envoy(gateway_config(s, provider.port, speech.port, **kw), env=s.host_env())


def raw_request(port: int, request_line_target: bytes, headers: list[bytes] | None = None,
                method: bytes = b"GET", timeout: float = 5.0) -> int:
    """Sends bytes exactly as given (no client-side normalisation); returns the status code."""
    lines = [method + b" " + request_line_target + b" HTTP/1.1", b"Host: gateway",
             b"Connection: close"] + (headers or [])
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    parts = data.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
