"""Identity from a JWT that Envoy's own `jwt_authn` filter verified (local JWKS, HS256), in
every build: the native module reads the nested payload through its filter-state mirror
(`config.metadata_mirror`). Who auth took the caller for is read from the access log (auth's
filter state), which every build writes alike."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from pathlib import Path

import openai
import pytest

from harness import config
from auth_support import CHAT, bearer, chat_body, entry, error_code, gateway, new_key, request

SECRET = secrets.token_bytes(32)
ISSUER = "https://issuer.aimesh.test"
APIKEY = new_key()
JWT_NAMESPACE = "envoy.filters.http.jwt_authn"


def b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def sign(claims: dict, secret: bytes = SECRET) -> str:
    header = {"alg": "HS256", "typ": "JWT", "kid": "k1"}
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": "aimesh", "iat": now, "exp": now + 600, **claims}
    signing = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    sig = hmac.new(secret, signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{b64url(sig)}"


def jwt_authn() -> dict:
    jwks = {"keys": [{"kty": "oct", "alg": "HS256", "kid": "k1", "k": b64url(SECRET)}]}
    return {
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {"local": {
                "issuer": ISSUER,
                "audiences": ["aimesh"],
                "local_jwks": {"inline_string": json.dumps(jwks)},
                "payload_in_metadata": "jwt_payload",
            }},
            # No token or a token that fails: let the request on; the auth filter then wants an
            # API key, so a forged token is just an unknown key (401 from auth).
            "rules": [{"match": {"prefix": "/"}, "requires": {"allow_missing_or_failed": {}}}],
        },
    }


@pytest.fixture
def log(tmp_path) -> Path:
    return tmp_path / "access.jsonl"


def identities(log: Path, n: int, deadline_s: float = 5.0) -> list[tuple[str, str]]:
    """(key id, team) of the first `n` requests, as auth published them."""
    deadline = time.time() + deadline_s
    while time.time() < deadline:
        lines = log.read_text().splitlines() if log.exists() else []
        if len(lines) >= n:
            return [(e["key_id"], e["team"]) for e in map(json.loads, lines[:n])]
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} access-log lines after {deadline_s}s")


def upstream_model(mock) -> str:
    return json.loads(mock.records()[0]["body"])["model"]


@pytest.fixture
def envoy(mock, log):
    auth = {
        "keys": [entry("svc", APIKEY)],
        "jwt": {"payload_key": "jwt_payload", "rules": [
            {"id": "jwt-alice", "sub": "alice", "team": "research", "models": ["gpt-4o-mini"]},
            {"id": "jwt-ml", "group": "ml-team", "team": "ml", "models": ["ml/*"],
             "requests_per_minute": 2},
            {"id": "jwt-files", "sub": "dave", "models": ["gpt-4o-mini"],
             "endpoints": ["GET /v1/files"]},
        ]},
    }
    e = gateway(mock, auth, before=[jwt_authn(), *config.metadata_mirror(JWT_NAMESPACE, "jwt_payload")],
                access_log=str(log))
    yield e
    e.stop()


def test_sub_claim_maps_to_policy(envoy, mock, log):
    c = openai.OpenAI(base_url=f"{envoy.url}/v1", api_key=sign({"sub": "alice"}), max_retries=0)
    c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    h = mock.records()[0]["headers"]
    assert identities(log, 1) == [("jwt-alice", "research")]
    assert "authorization" not in h, "the token must not travel upstream"
    with pytest.raises(openai.PermissionDeniedError):
        c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])


def test_groups_claim_maps_to_policy_with_its_limits(envoy, mock, log):
    token = sign({"sub": "bob", "groups": ["staff", "ml-team"]})
    statuses = [request(envoy, "POST", CHAT, chat_body("ml/llama"), bearer(token))[0]
                for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert identities(log, 3) == [("jwt-ml", "ml")] * 3
    assert upstream_model(mock) == "ml/llama"


def test_single_string_group_claim(envoy, mock, log):
    token = sign({"sub": "carol", "groups": "ml-team"})
    assert request(envoy, "POST", CHAT, chat_body("ml/x"), bearer(token))[0] == 200
    assert identities(log, 1)[0][0] == "jwt-ml"


@pytest.mark.parametrize("token", [
    sign({"sub": "mallory"}),                      # valid, but no rule maps it
    sign({"sub": "alice"}, secret=b"x" * 32),      # forged signature
    sign({"sub": "alice", "exp": 1}),              # expired
], ids=["unmapped", "forged", "expired"])
def test_unmapped_or_invalid_tokens_are_401(envoy, mock, token):
    status, _, body = request(envoy, "POST", CHAT, chat_body(), bearer(token))
    assert (status, error_code(body)) == (401, "invalid_api_key")
    assert mock.records() == []


def test_api_keys_still_work_next_to_jwt(envoy, mock, log):
    assert request(envoy, "POST", CHAT, chat_body("gpt-4o"), bearer(APIKEY))[0] == 200
    assert identities(log, 1)[0][0] == "svc"


def test_rules_with_a_model_list_need_endpoint_grants(envoy, mock):
    """A JWT rule is a policy like a key: requests naming no model need its `endpoints`."""
    alice, dave = bearer(sign({"sub": "alice"})), bearer(sign({"sub": "dave"}))
    status, _, body = request(envoy, "GET", "/v1/files", None, alice)
    assert (status, error_code(body)) == (403, "endpoint_not_allowed")
    assert request(envoy, "GET", "/v1/files", None, dave)[0] == 200
    for method, path in (("DELETE", "/v1/files/file-1"), ("GET", "/v1/batches")):
        status, _, body = request(envoy, method, path, None, dave)
        assert (status, error_code(body)) == (403, "endpoint_not_allowed"), (method, path)
    assert [r["path"] for r in mock.records()] == ["/v1/files"]
