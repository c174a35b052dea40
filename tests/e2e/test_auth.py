"""Auth filter through real Envoy: keys, identity headers, allow-lists, body checks, /v1/models."""
from __future__ import annotations

import json

import openai
import pytest

from auth_support import CHAT, bearer, chat_body, entry, error_code, gateway, new_key, request

ALICE, BOB, OLD, OFF = new_key(), new_key(), new_key(), new_key()


@pytest.fixture
def envoy(mock):
    auth = {
        "max_body_bytes": 4096,
        "keys": [
            entry("alice", ALICE, team="research", owner="alice@example.com",
                  models=["gpt-4o-mini", "team-a/*"], metadata={"env": "test"}),
            entry("bob", BOB),
            entry("old", OLD, expires_at="2020-01-01T00:00:00Z"),
            entry("off", OFF, disabled=True),
        ],
    }
    e = gateway(mock, auth)
    yield e
    e.stop()


def sdk(envoy, key, **kw):
    return openai.OpenAI(base_url=f"{envoy.url}/v1", api_key=key, max_retries=0, **kw)


def test_valid_key_reaches_upstream_with_identity_and_facts(envoy, mock):
    r = sdk(envoy, ALICE).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "one two"}])
    assert r.usage.prompt_tokens == 2
    [rec] = mock.records()
    h = rec["headers"]
    assert "authorization" not in h
    assert h["x-aimesh-key-id"] == "alice"
    assert h["x-aimesh-team"] == "research"
    assert h["x-aimesh-model"] == "gpt-4o-mini"
    assert h["x-aimesh-stream"] == "false"
    assert h["x-aimesh-include-usage"] == "false"
    assert "x-aimesh-max-tokens" not in h  # the body set no limit
    # The body is forwarded byte for byte.
    assert json.loads(rec["body"])["messages"][0]["content"] == "one two"


def test_streaming_facts_are_published(envoy, mock):
    chunks = list(sdk(envoy, ALICE).chat.completions.create(
        model="team-a/fast", messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True}, max_completion_tokens=42, max_tokens=7))
    assert chunks[-1].usage.completion_tokens > 0
    h = mock.records()[0]["headers"]
    assert (h["x-aimesh-model"], h["x-aimesh-stream"], h["x-aimesh-include-usage"]) == \
        ("team-a/fast", "true", "true")
    # max_completion_tokens wins over the legacy max_tokens (token-accounting admits on it).
    assert h["x-aimesh-max-tokens"] == "42"


@pytest.mark.parametrize("key", [None, "sk-wrong", OLD, OFF, ""],
                         ids=["missing", "wrong", "expired", "disabled", "empty"])
def test_bad_keys_get_one_401(envoy, mock, key):
    headers = bearer(key) if key is not None else {}
    status, hs, body = request(envoy, "POST", CHAT, chat_body(), headers)
    assert status == 401
    assert hs["content-type"] == "application/json"
    err = json.loads(body)["error"]
    assert err == {"message": "Incorrect API key provided.", "type": "authentication_error",
                   "param": None, "code": "invalid_api_key"}
    assert mock.records() == []


def test_sdk_wrong_and_expired_keys_raise_authentication_error(envoy, mock):
    for key in ("sk-wrong", OLD):
        with pytest.raises(openai.AuthenticationError) as e:
            sdk(envoy, key).chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert e.value.status_code == 401 and e.value.code == "invalid_api_key"
    assert mock.records() == []


@pytest.mark.parametrize("header", ["x-api-key", "api-key", "Authorization"])
def test_all_credential_styles_work_and_are_stripped(envoy, mock, header):
    value = f"Bearer {BOB}" if header == "Authorization" else BOB
    status, _, _ = request(envoy, "POST", CHAT, chat_body(), {header: value})
    assert status == 200
    h = mock.records()[0]["headers"]
    assert h["x-aimesh-key-id"] == "bob"
    for cred in ("authorization", "x-api-key", "api-key"):
        assert cred not in h


def test_model_outside_allow_list_is_403(envoy, mock):
    with pytest.raises(openai.PermissionDeniedError) as e:
        sdk(envoy, ALICE).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 403 and e.value.code == "model_not_allowed"
    # `team-a/*` does not match the bare prefix or a look-alike.
    for model in ("team-a", "team-ab/x"):
        status, _, body = request(envoy, "POST", CHAT, chat_body(model), bearer(ALICE))
        assert (status, error_code(body)) == (403, "model_not_allowed")
    assert mock.records() == []


def test_spoofed_internal_headers_never_reach_upstream(envoy, mock):
    spoof = {"x-aimesh-key-id": "admin", "X-Aimesh-Team": "root", "x-aimesh-model": "gpt-4o-mini",
             "x-aimesh-cluster": "evil", "x-aimesh-anything": "1"}
    # Spoofing a permitted model header does not unlock a forbidden body model.
    status, _, _ = request(envoy, "POST", CHAT, chat_body("gpt-4o"), {**bearer(ALICE), **spoof})
    assert status == 403
    status, _, _ = request(envoy, "POST", CHAT, chat_body(), {**bearer(ALICE), **spoof})
    assert status == 200
    # Body-less requests too.
    status, _, _ = request(envoy, "GET", "/v1/models", None, {**bearer(BOB), **spoof})
    assert status == 200
    recs = mock.records()
    assert len(recs) == 2
    for rec in recs:
        h = rec["headers"]
        assert h.get("x-aimesh-cluster") is None and h.get("x-aimesh-anything") is None
        assert h["x-aimesh-key-id"] in ("alice", "bob")
        assert h.get("x-aimesh-team") in (None, "research")
    assert recs[0]["headers"]["x-aimesh-model"] == "gpt-4o-mini"
    assert "x-aimesh-model" not in recs[1]["headers"]


def test_models_list_is_filtered_to_the_allow_list(mock, envoy):
    ids = sorted(m.id for m in sdk(envoy, ALICE).models.list())
    assert ids == ["gpt-4o-mini"]
    everything = sorted(m.id for m in sdk(envoy, BOB).models.list())
    assert everything == ["gpt-4o", "gpt-4o-mini", "text-embedding-3-small"]
    # The rewritten body is consistent with its framing (no stale content-length).
    status, hs, body = request(envoy, "GET", "/v1/models?x=1", None, bearer(ALICE))
    assert status == 200
    assert [m["id"] for m in json.loads(body)["data"]] == ["gpt-4o-mini"]
    assert "content-length" not in hs or int(hs["content-length"]) == len(body)
    with pytest.raises(openai.AuthenticationError):
        sdk(envoy, "sk-nope").models.list()


def test_body_over_limit_is_413(envoy, mock):
    big = json.dumps(
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 5000}]}).encode()
    status, _, body = request(envoy, "POST", CHAT, big, bearer(BOB))
    assert (status, error_code(body)) == (413, "request_too_large")
    assert json.loads(body)["error"]["type"] == "invalid_request_error"
    assert mock.records() == []


@pytest.mark.parametrize("body,code", [
    (b"{not json", "invalid_json"),
    (b'{"messages": []}', "missing_model"),
    (b'{"model": 42}', "invalid_request_body"),
    (b"[1,2]", "invalid_request_body"),
    (b'{"model": "gpt-4o-mini"', "invalid_json"),
])
def test_bad_bodies_are_400(envoy, mock, body, code):
    status, _, out = request(envoy, "POST", CHAT, body, bearer(BOB))
    assert (status, error_code(out)) == (400, code)
    assert mock.records() == []


def test_sdk_missing_model_is_bad_request(envoy):
    with pytest.raises(openai.BadRequestError) as e:
        sdk(envoy, BOB).post(CHAT, body={"messages": []}, cast_to=object)
    assert e.value.code == "missing_model"


def test_unauthenticated_bad_body_still_gets_401(envoy, mock):
    status, _, body = request(envoy, "POST", CHAT, b"{not json", bearer("sk-nope"))
    assert (status, error_code(body)) == (401, "invalid_api_key")


def test_custom_endpoint_paths_pass_on_key_alone_without_body_parsing(envoy, mock):
    binary = bytes(range(256)) * 8
    path = "/proxy-api/acct/speech/v1/audio"
    headers = {**bearer(ALICE), "content-type": "application/octet-stream"}
    status, _, _ = request(envoy, "POST", path, binary, headers)
    assert status == 200
    [rec] = mock.records()
    assert rec["path"] == path and rec["headers"]["x-aimesh-key-id"] == "alice"
    assert "x-aimesh-model" not in rec["headers"]
    status, _, body = request(envoy, "POST", path, binary, {"content-type": "audio/wav"})
    assert (status, error_code(body)) == (401, "invalid_api_key")


def test_chunked_bodies_are_assembled_before_the_check(envoy, mock):
    import http.client
    from urllib.parse import urlparse

    def send(parts):
        u = urlparse(envoy.url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        conn.request("POST", CHAT, body=iter(parts), encode_chunked=True,
                     headers={**bearer(ALICE), "content-type": "application/json"})
        r = conn.getresponse()
        out = (r.status, r.read())
        conn.close()
        return out

    body = chat_body("team-a/x")
    status, _ = send([body[i:i + 7] for i in range(0, len(body), 7)])
    assert status == 200
    assert mock.records()[0]["headers"]["x-aimesh-model"] == "team-a/x"
    assert mock.records()[0]["body"] == body.decode()
    big = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "y" * 6000}]})
    status, out = send([big[i:i + 1000].encode() for i in range(0, len(big), 1000)])
    assert (status, error_code(out)) == (413, "request_too_large")
    assert len(mock.records()) == 1
