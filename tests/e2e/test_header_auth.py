"""Header-auth through real Envoy: provider credentials, custom endpoints, access control."""
from __future__ import annotations

import base64
import json
import secrets
import urllib.request

import openai
import pytest
import yaml

from harness import config, demo, paths, procs, virtual_model

from header_auth_setup import (APP1, APP2, APP3, KEYS, ROUTES, Secrets, header_auth_config, start,
                               with_env)


@pytest.fixture
def speech():
    m = procs.MockLLM("speech")
    yield m
    m.stop()


@pytest.fixture
def gw(mock, speech, tmp_path):
    s = Secrets()
    envoy = start(s, mock, speech, access_log=str(tmp_path / "access.jsonl"))
    yield envoy, s
    envoy.stop()


CHAT = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'


def internal(headers: dict) -> list[str]:
    return [h for h in headers if h.lower().startswith("x-aimesh-")]


def call(envoy, path, *, key=APP1, method="GET", body=None, headers=None):
    req = urllib.request.Request(f"{envoy.url}{path}", data=body, method=method,
                                 headers={"authorization": f"Bearer {key}", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_llm_request_carries_only_the_configured_credentials(gw, mock):
    envoy, s = gw
    client = openai.OpenAI(base_url=f"{envoy.url}/v1", api_key=APP1, max_retries=0,
                           default_headers={"x-api-key": "client-x", "api-key": "client-az",
                                            "x-aimesh-backend": "claude"})
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    [rec] = mock.records()
    h = rec["headers"]
    assert h["authorization"] == f"Bearer {s.openai}"
    assert h["openai-organization"] == "org-aimesh"
    assert "x-api-key" not in h and "api-key" not in h
    assert internal(h) == [], "no internal header may reach the provider"
    assert APP1 not in json.dumps(rec)


@pytest.mark.parametrize("backend", ["azure-east", "claude", "openai-main"])
def test_backend_header_selects_the_account(gw, mock, backend):
    envoy, s = gw
    expect = {
        "azure-east": {"api-key": s.azure},
        "claude": {"x-api-key": s.anthropic, "anthropic-version": "2023-06-01"},
        "openai-main": {"authorization": f"Bearer {s.openai}", "openai-organization": "org-aimesh"},
    }[backend]
    status, _, _ = call(envoy, "/v1/chat/completions", method="POST",
                        body=CHAT,
                        headers={"content-type": "application/json", "x-test-backend": backend,
                                 "x-api-key": "client-secret", "api-key": "client-secret"})
    assert status == 200
    [rec] = mock.records()
    h = rec["headers"]
    assert {k: h.get(k) for k in expect} == expect
    for name in {"authorization", "x-api-key", "api-key"} - expect.keys():
        assert name not in h
    assert internal(h) == []


def test_client_anthropic_version_is_kept(gw, mock):
    envoy, _ = gw
    status, _, _ = call(envoy, "/v1/messages", method="POST", body=CHAT,
                        headers={"x-test-backend": "claude", "anthropic-version": "2099-01-01"})
    assert status == 200
    [rec] = mock.records()
    assert rec["headers"]["anthropic-version"] == "2099-01-01"


def test_unknown_backend_is_refused_without_reaching_upstream(gw, mock):
    envoy, _ = gw
    status, _, body = call(envoy, "/v1/chat/completions", method="POST", body=CHAT,
                           headers={"x-test-backend": "nobody"})
    assert status == 500
    assert json.loads(body)["error"]["code"] == "backend_not_configured"
    assert mock.records() == []


def test_custom_endpoint_binary_body_path_query_method_unchanged(gw, mock, speech):
    envoy, s = gw
    audio = bytes(range(256)) * 64 + b"\x00\xff\r\n"  # not UTF-8, has NUL and CR/LF
    status, headers, body = call(
        envoy, "/proxy-api/speech/tts/voices/synth%20x.wav?voice=en-US&rate=%2B10%25&a=1&a=2",
        method="PUT", body=audio,
        headers={"content-type": "audio/wav", "x-mock-echo-body": "1", "x-api-key": "client-x",
                 "x-shared": "from-client"})
    assert status == 200
    assert body == audio, "the body must come back byte for byte"
    assert headers.get("x-upstream-id") == "speech"
    [rec] = speech.records()
    assert mock.records() == []
    assert rec["method"] == "PUT"
    assert rec["path"] == "/cognitiveservices/v1/voices/synth%20x.wav"
    assert rec["query"] == "voice=en-US&rate=%2B10%25&a=1&a=2"
    assert base64.b64decode(rec["body_b64"]) == audio
    h = rec["headers"]
    assert h["host"] == "tts.speech.example.com"
    want_basic = "Basic " + base64.b64encode(f"svc-user:{s.speech_pw}".encode()).decode()
    assert h["authorization"] == want_basic
    # Account headers merged with the endpoint's; the endpoint wins on the same name.
    assert h["x-tenant"] == "acme"
    assert h["x-shared"] == "from-endpoint"
    assert h["x-format"] == "riff-24khz"
    assert h["content-type"] == "audio/wav"
    assert "x-api-key" not in h
    assert internal(h) == []


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE", "PATCH"])
def test_custom_endpoint_methods_pass_through(gw, speech, method):
    envoy, _ = gw
    body = b"<speak>hi</speak>" if method in ("POST", "PATCH") else None
    status, _, _ = call(envoy, "/proxy-api/speech/tts/v1/x?y=1", method=method, body=body)
    assert status == 200
    [rec] = speech.records()
    assert (rec["method"], rec["path"], rec["query"]) == (method, "/cognitiveservices/v1/v1/x", "y=1")


def test_endpoint_auth_replaces_account_auth(gw, speech):
    envoy, s = gw
    status, _, _ = call(envoy, "/proxy-api/speech/stt.v2/recognize?lang=de", method="POST",
                        body=b"\x01\x02", headers={"content-type": "application/octet-stream"})
    assert status == 200
    [rec] = speech.records()
    h = rec["headers"]
    assert h["ocp-apim-subscription-key"] == s.stt_key, "key_values secret resolved in the VM"
    assert "authorization" not in h, "the account's Basic auth must not leak to this endpoint"
    assert h["host"] == "10.20.30.40:8080"
    assert (rec["path"], rec["query"]) == ("/recognize", "lang=de")
    assert h["x-shared"] == "from-account"


def test_empty_upstream_path_goes_to_base_path(gw, speech):
    envoy, _ = gw
    assert call(envoy, "/proxy-api/speech/tts")[0] == 200
    assert call(envoy, "/proxy-api/speech/stt.v2?x=1")[0] == 200
    assert [(r["path"], r["query"]) for r in speech.records()] == [
        ("/cognitiveservices/v1", None), ("/", "x=1")]


def test_access_control_by_key_id_or_team(gw, speech):
    envoy, _ = gw
    status, _, body = call(envoy, "/proxy-api/speech/tts/v1/x", key=APP2)
    assert status == 403
    err = json.loads(body)["error"]
    assert (err["code"], err["type"]) == ("endpoint_not_allowed", "permission_error")
    assert speech.records() == []
    assert call(envoy, "/proxy-api/speech/tts/v1/x", key=APP1)[0] == 200  # by key id
    assert call(envoy, "/proxy-api/speech/tts/v1/x", key=APP3)[0] == 200  # by team
    assert call(envoy, "/proxy-api/speech/stt.v2/x", key=APP2)[0] == 200  # no allow-list
    assert len(speech.records()) == 3
    assert call(envoy, "/proxy-api/speech/tts/v1/x", key="sk-unknown")[0] == 401
    assert len(speech.records()) == 3


def test_unknown_endpoint_is_404(gw, mock, speech):
    envoy, _ = gw
    for path in ["/proxy-api/speech/nope/x", "/proxy-api/nobody/tts/x", "/proxy-api/claude/tts/x"]:
        status, _, body = call(envoy, path)
        assert status == 404, path
        assert json.loads(body)["error"]["code"] == "endpoint_not_found"
    assert mock.records() == [] and speech.records() == []


def test_credentials_never_in_responses_logs_stats_or_config_dump(gw, mock, speech, tmp_path):
    envoy, s = gw
    seen = []
    for path, kw in [
        ("/v1/chat/completions", {"method": "POST", "body": CHAT}),
        ("/proxy-api/speech/tts/v1/x", {}),
        ("/proxy-api/speech/stt.v2/x", {}),
        ("/proxy-api/speech/tts/v1/x", {"key": APP2}),
        ("/proxy-api/speech/tts/%2e%2e/x", {}),
    ]:
        status, headers, body = call(envoy, path, **kw)
        seen.append(json.dumps(headers) + body.decode(errors="replace"))
    assert len(speech.records()) == 2 and len(mock.records()) == 1
    stats = envoy.admin_get("/stats")
    dump = envoy.admin_get("/config_dump")
    logs = envoy.log() + (tmp_path / "access.jsonl").read_text()
    for secret in s.all()[:4] + s.all()[5:]:  # stt_key comes from key_values, which the dump shows
        for where, text in [("response", "\n".join(seen)), ("stats", stats), ("log", logs),
                            ("config_dump", dump)]:
            assert secret not in text, f"credential leaked into {where}"
    assert s.stt_key not in "\n".join(seen) + stats + logs
    assert envoy.stats("header_auth")  # the filter's counters exist
    assert any(k.endswith("aimesh.header_auth.proxied") and v == 2
               for k, v in envoy.stats("header_auth").items())


def test_upstream_role_rekeys_each_attempt_for_its_account(mock, speech):
    s = Secrets()
    envoy = start(s, mock, speech, upstream_role=True)
    # The downstream instance injects the default account; the attempt goes to azure-east.
    status, _, _ = call(envoy, "/v1/chat/completions", method="POST", body=CHAT,
                        headers={"x-test-attempt-backend": "azure-east"})
    assert status == 200
    # No account named for the attempt: the downstream decision stands.
    status, _, _ = call(envoy, "/v1/chat/completions", method="POST", body=CHAT)
    assert status == 200
    first, second = mock.records()
    assert first["headers"].get("api-key") == s.azure
    for name in ["authorization", "openai-organization", "x-api-key"]:
        assert name not in first["headers"], name
    assert second["headers"]["authorization"] == f"Bearer {s.openai}"
    assert second["headers"]["openai-organization"] == "org-aimesh"
    assert internal(first["headers"]) == [] and internal(second["headers"]) == []


def test_shipped_example_proxies_ssml_to_speech_and_returns_audio(mock, speech):
    """envoy/custom-endpoint.yaml as shipped, with its clusters pointed at the fakes."""
    cfg = yaml.safe_load((paths.ENVOY_DIR / "custom-endpoint.yaml").read_text())
    sr = cfg["static_resources"]
    sr["listeners"][0]["address"]["socket_address"]["port_value"] = 0
    cfg["admin"]["address"]["socket_address"]["port_value"] = 0
    hcm = sr["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    for f in hcm["http_filters"]:
        code = f["typed_config"].get("config", {}).get("vm_config", {}).get("code")
        if code:
            code["local"]["filename"] = str(paths.REPO / code["local"]["filename"])
    fakes = {"openai": mock.port, "speech-tts": speech.port, "local-tts": speech.port}
    for c in sr["clusters"]:
        c.pop("transport_socket", None)
        c.update({"type": "STATIC", "load_assignment": {"cluster_name": c["name"], "endpoints": [
            {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                "address": "127.0.0.1", "port_value": fakes[c["name"]]}}}}]}]}})
    env = {"OPENAI_API_KEY": "sk-" + secrets.token_hex(8),
           "AZURE_SPEECH_KEY": "az-" + secrets.token_hex(8)}  # LOCAL_TTS_PASSWORD unset
    envoy = procs.Envoy(cfg, env=env)
    key = "sk-aimesh-example-do-not-use"
    ssml = b'<speak version="1.0" xml:lang="en-US"><voice name="en-US-AvaNeural">Hello</voice></speak>'
    status, headers, body = call(envoy, "/proxy-api/speech/tts", key=key, method="POST", body=ssml,
                                 headers={"content-type": "application/ssml+xml", "x-mock-echo-body": "1"})
    assert (status, body) == (200, ssml)
    [rec] = speech.records()
    assert rec["path"] == "/cognitiveservices/v1"
    h = rec["headers"]
    assert h["ocp-apim-subscription-key"] == env["AZURE_SPEECH_KEY"]
    assert h["x-microsoft-outputformat"] == "riff-24khz-16bit-mono-pcm"
    assert h["host"] == "westeurope.tts.speech.microsoft.com"
    assert "authorization" not in h and internal(h) == []
    # The account whose secret is unset is disabled, not sent unsigned.
    status, _, body = call(envoy, "/proxy-api/voice/local-tts/api/tts?text=hi", key=key)
    assert status == 503 and json.loads(body)["error"]["code"] == "account_unavailable"
    assert len(speech.records()) == 1
    call(envoy, "/v1/chat/completions", key=key, method="POST", body=CHAT)
    [llm] = mock.records()
    assert llm["headers"]["authorization"] == f"Bearer {env['OPENAI_API_KEY']}"


def test_holds_on_its_own_without_auth_in_front(mock, speech):
    """Credential and internal-header removal does not rely on the auth filter."""

    s = Secrets()
    ha = with_env(config.wasm_filter("header-auth", header_auth_config()), list(s.host_env()),
                  {"AIMESH_T_STT": s.stt_key})
    cfg = config.gateway([ha], [config.cluster("provider", mock.port),
                                config.cluster("speech-tts", speech.port),
                                config.cluster("speech-stt", speech.port)], routes=ROUTES)
    envoy = procs.Envoy(cfg, env=s.host_env())
    status, _, _ = call(envoy, "/v1/chat/completions", key="client-own-key", method="POST", body=CHAT,
                        headers={"x-api-key": "client-x", "api-key": "client-az",
                                 "Proxy-Authorization": "Basic Y2xpZW50", "x-aimesh-key-id": "admin",
                                 "X-Aimesh-Team": "root", "ocp-apim-subscription-key": "client-sub"})
    assert status == 200
    [rec] = mock.records()
    h = rec["headers"]
    assert h["authorization"] == f"Bearer {s.openai}"
    for name in ["x-api-key", "api-key", "proxy-authorization", "ocp-apim-subscription-key"]:
        assert name not in h, name
    assert internal(h) == []
    # No identity at all: an endpoint with an allow-list refuses the caller.
    assert call(envoy, "/proxy-api/speech/tts/x", key="client-own-key")[0] == 403
    assert speech.records() == []


def test_full_chain_passes_binary_body_to_custom_endpoint(mock, speech):
    """All five filters in chain order: with a PII policy that reads nothing for the endpoint's
    path (the operator's opt-out), the others leave /proxy-api/ bodies alone. Without it the
    body, which PII cannot scan, is refused, never passed unread."""

    s = Secrets()
    cfgs = demo.filter_configs(APP1)
    cfgs["pii-redaction"] = {
        "policies": {"default": {}, "binary": {"default_action": "allow", "redact_responses": False}},
        "rules": [{"path_prefix": "/proxy-api/speech/tts/", "policy": "binary"}],
    }
    cfgs["auth"] = {"keys": [{"id": kid, "team": team, "hash": demo.key_hash(k)}
                             for k, (kid, team) in KEYS.items()]}
    cfgs["header-auth"] = header_auth_config()
    filters = [config.wasm_filter(n, cfgs[n]) for n in paths.FILTERS]
    with_env(filters[-1], list(s.host_env()), {"AIMESH_T_STT": s.stt_key})
    cfg = config.gateway(filters, [config.cluster("provider", mock.port),
                                   config.cluster("speech-tts", speech.port),
                                   config.cluster("speech-stt", speech.port)], routes=ROUTES)
    envoy = procs.Envoy(cfg, env=s.host_env())
    audio = bytes(range(256)) * 512  # 128 KiB, not JSON, not UTF-8
    status, _, body = call(envoy, "/proxy-api/speech/tts/v1/synth?fmt=wav", method="POST", body=audio,
                           headers={"content-type": "application/octet-stream", "x-mock-echo-body": "1"})
    assert (status, body[:300]) == (200, audio[:300]) and body == audio
    status, _, body = call(envoy, "/proxy-api/speech/stt.v2/recognize", method="POST", body=audio,
                           headers={"content-type": "application/octet-stream"})
    assert status == 415 and json.loads(body)["error"]["code"] == "unsupported_media_type", body[:200]
    [rec] = speech.records()
    assert rec["path"] == "/cognitiveservices/v1/v1/synth" and rec["query"] == "fmt=wav"
    assert internal(rec["headers"]) == []
    # And an LLM request through the same chain still gets the provider credentials.
    client = openai.OpenAI(base_url=f"{envoy.url}/v1", api_key=APP1, max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    [llm] = mock.records()
    assert llm["headers"]["authorization"] == f"Bearer {s.openai}"
    assert internal(llm["headers"]) == []


def test_virtual_model_picks_the_account_header_auth_signs_for(mock, speech):
    """The real virtual-model filter names the account (`x-aimesh-backend` = the account part of
    its target) and the cluster; header-auth signs for that account and nothing internal leaks."""

    s = Secrets()
    auth = config.wasm_filter("auth", {"keys": [
        {"id": kid, "team": team, "hash": demo.key_hash(k)} for k, (kid, team) in KEYS.items()]})
    vm = config.wasm_filter("virtual-model", {"pass_through": True, "virtual_models": [
        {"name": "smart", "strategy": "weighted",
         "targets": [{"target": "azure-east/gpt-4o-azure", "cluster": "azure-cluster"}]}]})
    ha = with_env(config.wasm_filter("header-auth", header_auth_config()), list(s.host_env()),
                  {"AIMESH_T_STT": s.stt_key})
    cfg = config.gateway([auth, vm, ha], [config.cluster("provider", mock.port),
                                          config.cluster("azure-cluster", mock.port),
                                          config.cluster("speech-tts", speech.port),
                                          config.cluster("speech-stt", speech.port)], routes=ROUTES)
    envoy = procs.Envoy(cfg, env=s.host_env())
    client = openai.OpenAI(base_url=f"{envoy.url}/v1", api_key=APP1, max_retries=0)
    client.chat.completions.create(model="smart", messages=[{"role": "user", "content": "hi"}])
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    routed, passed = mock.records()
    assert json.loads(routed["body"])["model"] == "gpt-4o-azure"
    assert routed["headers"].get("api-key") == s.azure and "authorization" not in routed["headers"]
    assert passed["headers"]["authorization"] == f"Bearer {s.openai}", "default account"
    assert internal(routed["headers"]) == [] and internal(passed["headers"]) == []


def test_fallback_to_another_account_carries_only_that_accounts_credentials(mock):
    """virtual-model's aggregate cluster falls back from azure-east (503) to openai-main; the
    upstream header-auth instance re-signs the retried request for openai-main."""
    failing = procs.MockLLM("failing")
    failing.set_defaults(status=503)
    s = Secrets()
    auth = config.wasm_filter("auth", {"keys": [
        {"id": kid, "team": team, "hash": demo.key_hash(k)} for k, (kid, team) in KEYS.items()]})
    down = with_env(config.wasm_filter("header-auth", header_auth_config()), list(s.host_env()),
                    {"AIMESH_T_STT": s.stt_key})
    up = with_env(config.wasm_filter("header-auth", {**header_auth_config(), "role": "upstream"},
                                     vm_id="aimesh.header-auth.upstream"),
                  list(s.host_env()), {"AIMESH_T_STT": s.stt_key})
    vm = {"name": "smart", "strategy": "priority", "targets": [
        {"target": "azure-east/gpt-az", "cluster": "azure-primary", "priority": 0},
        {"target": "openai-main/gpt-oa", "cluster": "openai-fallback", "priority": 1}]}
    cfg = virtual_model.gateway([vm], {"azure-primary": failing.port, "openai-fallback": mock.port},
                                filters_before=[auth], filters_after=[down], upstream_after=[up])
    envoy = procs.Envoy(cfg, env=s.host_env())
    client = openai.OpenAI(base_url=f"{envoy.url}/v1", api_key=APP1, max_retries=0)
    client.chat.completions.create(model="smart", messages=[{"role": "user", "content": "hi"}])
    [first] = failing.records()
    [second] = mock.records()
    assert json.loads(first["body"])["model"] == "gpt-az"
    assert first["headers"].get("api-key") == s.azure and "authorization" not in first["headers"]
    assert json.loads(second["body"])["model"] == "gpt-oa"
    assert second["headers"]["authorization"] == f"Bearer {s.openai}"
    assert "api-key" not in second["headers"], "the first account's key must not follow the retry"
    assert internal(first["headers"]) == [] and internal(second["headers"]) == []
