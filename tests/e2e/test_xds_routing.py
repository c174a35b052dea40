"""Model routing and the model catalogue through `aimesh-xds` (issue 16, items 1 and 2), in both
builds (`listener.filter_build: separate` and `chain`).

A provider's `models` must reach that provider, with that provider's credentials, and a prompt
for a private backend must never reach another provider (the default one included), whatever
the client sends. `GET /v1/models` is the gateway's own catalogue, answered without a provider.
"""
from __future__ import annotations

import json
import time

import openai
import pytest
import requests

from harness import demo, procs, rawhttp, xds

ALICE = "sk-aimesh-test-alice"     # every model
VM_ONLY = "sk-aimesh-test-vm-only"  # only the virtual model
SECRETS = {"AIMESH_TEST_KEY_PUBLIC": "sk-public-secret", "AIMESH_TEST_KEY_PRIVATE": "sk-private-secret"}
PRIVATE_MODELS = ["private-llm", "private-llm-2"]


def gateway(build: str, public: procs.MockLLM | None, private: procs.MockLLM,
            private_key: bool = True) -> dict:
    providers = [xds.mock_provider("private-gpu", private, PRIVATE_MODELS)]
    if private_key:
        providers[0]["api_key"] = "${env:AIMESH_TEST_KEY_PRIVATE}"
    gw: dict = {
        "listener": {"address": "127.0.0.1", "port": 0, "route_timeout": "30s", "filter_build": build},
        "providers": providers,
        "virtual_models": [{"name": "vm-demo", "targets": [{"provider": "private-gpu", "model": "private-llm"}]}],
        "keys": [{"id": "alice", "hash": demo.key_hash(ALICE)},
                 {"id": "vm-only", "hash": demo.key_hash(VM_ONLY), "models": ["vm-demo"]}],
    }
    if public:
        providers.insert(0, {**xds.mock_provider("pub-cloud", public, ["public-model"]),
                             "api_key": "${env:AIMESH_TEST_KEY_PUBLIC}"})
        gw["default_provider"] = "pub-cloud"
    return gw


class Gateway:
    def __init__(self, build: str, with_default: bool, private_key: bool = True) -> None:
        self.public = procs.MockLLM("public") if with_default else None
        self.private = procs.MockLLM("private")
        self.server = xds.XdsServer(gateway(build, self.public, self.private, private_key))
        self.envoy = procs.Envoy(xds.ads_bootstrap(self.server.port), env=SECRETS)
        # The filters' configs (ECDS) may land a moment after the listener.
        deadline = time.time() + 10
        while requests.get(f"{self.envoy.url}/v1/models", timeout=10,
                           headers={"authorization": f"Bearer {ALICE}"}).status_code != 200:
            assert time.time() < deadline, "the gateway never answered"
            time.sleep(0.05)

    def client(self, key: str = ALICE) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.envoy.url}/v1", api_key=key, max_retries=0)

    def stop(self) -> None:
        for p in (self.envoy, self.server, self.private, self.public):
            if p:
                p.stop()


@pytest.fixture(scope="module", params=["separate", "chain"])
def gw(request):
    g = Gateway(request.param, with_default=True)
    yield g
    g.stop()
    # Whatever the module sent, no prompt for a private model reached the default provider.
    leaked = [r for r in g.public.records() if any(m in r.get("body", "") for m in PRIVATE_MODELS)]
    assert not leaked, leaked


def ask(c: openai.OpenAI, model: str, **kw):
    return c.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "hi"}], **kw)


def test_provider_models_reach_their_provider_with_its_own_credentials(gw):
    c = gw.client()
    for model in PRIVATE_MODELS:
        before = len(gw.private.records())
        r = ask(c, model)
        assert r.headers["x-upstream-id"] == "private", f"{model} went to {r.headers['x-upstream-id']}"
        [rec] = gw.private.records()[before:]
        assert json.loads(rec["body"])["model"] == model
        assert rec["headers"]["authorization"] == "Bearer sk-private-secret"
        assert not [h for h in rec["headers"] if h.startswith("x-aimesh-")], rec["headers"]
    stream = c.chat.completions.create(model="private-llm", stream=True,
                                       messages=[{"role": "user", "content": "hi"}])
    assert "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices)
    assert gw.private.records()[-1]["headers"]["authorization"] == "Bearer sk-private-secret"
    # Other models: the listed public one and an unlisted one go to the default provider.
    for model in ["public-model", "gpt-4o-mini"]:
        assert ask(c, model).headers["x-upstream-id"] == "public"
        assert gw.public.records()[-1]["headers"]["authorization"] == "Bearer sk-public-secret"
    # A virtual model still goes where virtual-model sends it.
    assert ask(c, "vm-demo").headers["x-upstream-id"] == "private"


def chat_raw(port: int, body: bytes, extra: bytes = b"") -> rawhttp.Reply:
    return rawhttp.http1(port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                         b"Authorization: Bearer " + ALICE.encode() + b"\r\n"
                         b"Content-Type: application/json\r\n" + extra
                         + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def test_a_client_cannot_steer_a_private_prompt_to_another_provider(gw):
    port = gw.envoy.port
    spoof = (b"x-aimesh-cluster: provider.pub-cloud\r\nX-AIMESH-BACKEND: pub-cloud\r\n"
             b"x-aimesh-model: gpt-4o-mini\r\nX-Aimesh-Cluster: provider.pub-cloud\r\n")
    body = b'{"model":"private-llm","messages":[{"role":"user","content":"secret plan"}]}'
    r = chat_raw(port, body, spoof)
    assert r.status == 200 and r.headers["x-upstream-id"] == "private", r
    # The name as the provider decodes it decides, escapes included.
    r = chat_raw(port, b'{"model":"priv\\u0061te-llm","messages":[{"role":"user","content":"x"}]}')
    assert r.status == 200 and r.headers["x-upstream-id"] == "private", r
    # Two `model` keys would let the gateway and the provider read different names: refused.
    before = (len(gw.public.records()), len(gw.private.records()))
    r = chat_raw(port, b'{"model":"gpt-4o-mini","model":"private-llm","messages":[]}')
    assert r.status == 400 and json.loads(r.body)["error"]["type"] == "invalid_request_error"
    assert (len(gw.public.records()), len(gw.private.records())) == before


def test_models_list_is_the_gateways_catalogue_per_key(gw):
    before = len(gw.public.records()) + len(gw.private.records())
    models = gw.client().models.list()
    assert [(m.id, m.owned_by) for m in models.data] == [
        ("public-model", "pub-cloud"), ("private-llm", "private-gpu"),
        ("private-llm-2", "private-gpu"), ("vm-demo", "aimesh")]
    assert all(m.object == "model" and isinstance(m.created, int) for m in models.data)
    vm_only = gw.client(VM_ONLY)
    assert [m.id for m in vm_only.models.list().data] == ["vm-demo"]
    assert vm_only.models.retrieve("vm-demo").id == "vm-demo"
    for hidden in ["private-llm", "no-such-model"]:
        with pytest.raises(openai.NotFoundError) as e:
            vm_only.models.retrieve(hidden)
        assert e.value.code == "model_not_found" and hidden in e.value.message
    assert gw.client().models.retrieve("private-llm").owned_by == "private-gpu"
    assert len(gw.public.records()) + len(gw.private.records()) == before, \
        "the catalogue is answered by the gateway, never by a provider"


def test_models_endpoint_answers_raw_requests_in_openai_shape(gw):
    auth = {"authorization": f"Bearer {ALICE}"}
    r = requests.get(f"{gw.envoy.url}/v1/models/private%2Dllm?x=1", headers=auth, timeout=10)
    assert r.status_code == 200 and r.json() == {
        "id": "private-llm", "object": "model", "created": 0, "owned_by": "private-gpu"}
    assert r.headers["content-type"] == "application/json"
    r = requests.get(f"{gw.envoy.url}/v1/models/%ff", headers=auth, timeout=10)
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    r = requests.delete(f"{gw.envoy.url}/v1/models/private-llm", headers=auth, timeout=10)
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    assert requests.get(f"{gw.envoy.url}/v1/models", timeout=10).status_code == 401
    r = rawhttp.h2c(gw.envoy.port, "GET", "/v1/models", [("authorization", f"Bearer {VM_ONLY}")])
    assert r.status == 200 and [m["id"] for m in json.loads(r.body)["data"]] == ["vm-demo"]


@pytest.mark.parametrize("build", ["separate", "chain"])
def test_without_a_default_provider_listed_models_route_and_others_are_not_found(build):
    g = Gateway(build, with_default=False)
    try:
        c = g.client()
        for model in PRIVATE_MODELS + ["vm-demo"]:
            assert ask(c, model).headers["x-upstream-id"] == "private"
        with pytest.raises(openai.NotFoundError) as e:
            ask(c, "gpt-4o-mini")
        assert e.value.code == "model_not_found" and "gpt-4o-mini" in e.value.message
        # A /v1/ request no filter routes gets the route table's 404, never some provider.
        before = len(g.private.records())
        r = requests.get(f"{g.envoy.url}/v1/files", headers={"authorization": f"Bearer {ALICE}"}, timeout=10)
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
        assert len(g.private.records()) == before
    finally:
        g.stop()


@pytest.mark.parametrize("build", ["separate", "chain"])
def test_a_keyless_private_provider_never_gets_the_default_providers_key(build):
    """A self-hosted backend often needs no key: its requests must carry none, not the default
    (external) provider's, which header-auth used to inject for every request it had no
    provider for."""
    g = Gateway(build, with_default=True, private_key=False)
    try:
        assert ask(g.client(), "private-llm").headers["x-upstream-id"] == "private"
        [rec] = g.private.records()
        assert "authorization" not in rec["headers"], rec["headers"]
        assert ask(g.client(), "gpt-4o-mini").headers["x-upstream-id"] == "public"
        assert g.public.records()[-1]["headers"]["authorization"] == "Bearer sk-public-secret"
    finally:
        g.stop()
