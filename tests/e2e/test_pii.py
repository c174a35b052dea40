"""PII redaction through the real Envoy with the real .wasm: block, hash, mask, restore (streamed
and not, values split at every byte), JSON-awareness, per-route policies, metrics, access log."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import openai
import pytest

from harness import config, procs

HASH_KEY = "test-hash-key-0123456789"


def pii_gateway(mock, cfg: dict | None = None, *, routes=None, access_log: str | None = None):
    logs = None
    if access_log:
        logs = [config.json_access_log(access_log, {
            "status": "%RESPONSE_CODE%", "pii": "%FILTER_STATE(wasm.aimesh.pii:PLAIN)%"})]
    return procs.Envoy(config.gateway([config.wasm_filter("pii-redaction", cfg or {})],
                                      [config.cluster("m", mock.port)], routes=routes,
                                      access_logs=logs))


def client(envoy, headers: dict | None = None, prefix: str = "/v1"):
    return openai.OpenAI(base_url=f"{envoy.url}{prefix}", api_key="unused", max_retries=0,
                         default_headers=headers or {})


def chat(envoy, text: str, headers: dict | None = None, **kw):
    return client(envoy, headers).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": text}], **kw)


def sent_text(mock, i: int = -1) -> str:
    return json.loads(mock.records()[i]["body"])["messages"][-1]["content"]


def post_raw(envoy, body: bytes, path: str = "/v1/chat/completions") -> tuple[int, bytes]:
    req = urllib.request.Request(f"{envoy.url}{path}", data=body,
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_mask_numbers_placeholders_and_keeps_the_rest(mock):
    envoy = pii_gateway(mock)
    chat(envoy, "Mail jane@example.com or john@example.org, again jane@example.com. Order 1234.")
    assert sent_text(mock) == "Mail [EMAIL_1] or [EMAIL_2], again [EMAIL_1]. Order 1234."
    body = json.loads(mock.records()[-1]["body"])
    assert body["model"] == "gpt-4o-mini" and body["messages"][0]["role"] == "user"


def test_clean_body_reaches_upstream_byte_identical(mock):
    envoy = pii_gateway(mock)
    body = b'{ "model":"gpt-4o-mini", "messages":[{"role":"user","content":"order 4111 1111"}],"seed":4111111111111111 }'
    status, _ = post_raw(envoy, body)
    assert status == 200
    assert mock.records()[-1]["body"].encode() == body


def test_block_names_types_never_values(mock):
    envoy = pii_gateway(mock, {"policies": {"default": {"actions": {"US_SSN": "block", "SECRET": "block"}}}})
    with pytest.raises(openai.BadRequestError) as e:
        chat(envoy, "my ssn is 123-45-6789 and key AKIA4KHVDGAJGXBENYJQ")
    assert e.value.status_code == 400
    assert e.value.code == "pii_detected"
    msg = e.value.body["message"]
    assert "US_SSN" in msg and "SECRET" in msg
    assert "6789" not in msg and "AKIA" not in msg
    assert mock.records() == []
    # Other types are still masked, not blocked.
    chat(envoy, "mail a@example.com")
    assert sent_text(mock) == "mail [EMAIL_1]"


def test_hash_is_stable_and_keyed(mock):
    cfg = {"hash_key": HASH_KEY, "policies": {"default": {"default_action": "hash"}}}
    envoy = pii_gateway(mock, cfg)
    chat(envoy, "from jane@example.com to jane@example.com")
    chat(envoy, "jane@example.com again")
    first, second = sent_text(mock, 0), sent_text(mock, 1)
    assert "jane@example.com" not in first + second
    token = first.split()[1]
    assert token.startswith("[EMAIL_") and len(token) == len("[EMAIL_]") + 12
    assert first == f"from {token} to {token}"
    assert second == f"{token} again"


def test_restore_non_streaming(mock):
    envoy = pii_gateway(mock, {"policies": {"default": {"restore": True}}})
    text = "I am jane@example.com call +1 415 555 0123 ok"
    r = chat(envoy, text, headers={"x-mock-echo": "true"})
    assert sent_text(mock) == "I am [EMAIL_1] call [PHONE_1] ok"
    assert r.choices[0].message.content == text


def stream_text(envoy, text, headers) -> str:
    chunks = chat(envoy, text, headers=headers, stream=True)
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_restore_streaming_every_split(mock):
    envoy = pii_gateway(mock, {"policies": {"default": {"restore": True}}})
    text = "Reach jane.doe@example.com or +44 20 7946 0958 and card 4111 1111 1111 1111 today"
    seen = set()
    for split in ["1", "2", "3", "5", "7", "11", "random:1:9", "random:2:30"]:
        for chunks in ["1", "3", "20"]:
            out = stream_text(envoy, text, {"x-mock-echo": "true", "x-mock-split": split,
                                            "x-mock-chunks": chunks})
            assert out == text, (split, chunks)
            seen.add(sent_text(mock))
    assert seen == {"Reach [EMAIL_1] or [PHONE_1] and card [CREDIT_CARD_1] today"}


@pytest.mark.parametrize("value", ["jane.doe@example.com", "4111-1111-1111-1111", "AKIA4KHVDGAJGXBENYJQ",
                                   "+1 415 555 0123", "GB82 WEST 1234 5698 7654 32"])
def test_streamed_model_pii_split_at_every_byte_never_leaks(mock, value):
    """The model itself returns PII; every byte position of the value falls on a frame boundary
    in one of the runs (the prefix shifts the value across fixed 8-byte frames)."""
    envoy = pii_gateway(mock)
    placeholders = set()
    for shift in range(8):
        content = "x" * (shift + 1) + " value " + value + " end"
        for chunks in ["1", "9"]:
            out = stream_text(envoy, "hi", {"x-mock-content": content, "x-mock-split": "8",
                                            "x-mock-chunks": chunks})
            assert value not in out
            assert out.startswith("x" * (shift + 1) + " value [") and out.endswith("] end"), out
            placeholders.add(out.split(" value ")[1].rsplit(" end", 1)[0])
    assert len(placeholders) == 1 and placeholders.pop().endswith("_1]")


def test_tool_call_arguments_and_tool_messages(mock):
    envoy = pii_gateway(mock)
    args = json.dumps({"to": "jane@example.com", "amount": 4111111111111111, "note": "ip 10.1.2.3"})
    client(envoy).chat.completions.create(model="gpt-4o-mini", messages=[
        {"role": "user", "content": [{"type": "text", "text": "send to jane@example.com"}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "send", "arguments": args}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sent to jane@example.com"}])
    body = json.loads(mock.records()[-1]["body"])
    m = body["messages"]
    assert m[0]["content"][0]["text"] == "send to [EMAIL_1]"
    inner = json.loads(m[1]["tool_calls"][0]["function"]["arguments"])
    assert inner == {"to": "[EMAIL_1]", "amount": 4111111111111111, "note": "ip [IP_ADDRESS_1]"}
    assert m[2]["content"] == "sent to [EMAIL_1]"


def test_legacy_prompt_and_embeddings_input(mock):
    envoy = pii_gateway(mock)
    c = client(envoy)
    c.completions.create(model="gpt-3.5-turbo-instruct", prompt="ssn 123-45-6789")
    assert json.loads(mock.records()[-1]["body"])["prompt"] == "ssn [US_SSN_1]"
    c.embeddings.create(model="text-embedding-3-small", input=["a@example.com", "plain"])
    assert json.loads(mock.records()[-1]["body"])["input"] == ["[EMAIL_1]", "plain"]


def test_invalid_json_is_refused_not_forwarded(mock):
    envoy = pii_gateway(mock)
    status, body = post_raw(envoy, b'{"model":"m","messages":[{"content":"a@example.com"')
    assert status == 400 and json.loads(body)["error"]["code"] == "invalid_json"
    assert mock.records() == []


def test_a_policy_that_allows_every_type_streams_the_body_unread(mock):
    """Nothing to look for, nothing buffered: a 2 MiB body passes Envoy's 1 MiB buffer limit
    (a buffering filter would get 413), PII and all, and no JSON is checked."""
    envoy = pii_gateway(mock, {"policies": {"default": {"default_action": "allow",
                                                        "redact_responses": False}}})
    text = "jane@example.com " * (2 * 1024 * 1024 // 17)
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": text}]}).encode()
    status, _ = post_raw(envoy, body)
    assert status == 200
    assert sent_text(mock) == text
    status, _ = post_raw(envoy, b'{"model":"m","messages":[')
    assert mock.records()[-1]["body"] == '{"model":"m","messages":['


def test_policy_per_route(mock):
    cfg = {"policies": {"internal": {"default_action": "allow"},
                        "external": {"actions": {"EMAIL": "block"}}},
           "default_policy": "internal",
           "rules": [{"route_name": "to-external", "policy": "external"}]}
    routes = [
        {"name": "to-external", "match": {"prefix": "/external/"},
         "route": {"cluster": "m", "prefix_rewrite": "/"}},
        {"name": "to-internal", "match": {"prefix": "/"}, "route": {"cluster": "m"}},
    ]
    envoy = pii_gateway(mock, cfg, routes=routes)
    chat(envoy, "internal sees jane@example.com")
    assert sent_text(mock) == "internal sees jane@example.com"
    with pytest.raises(openai.BadRequestError) as e:
        client(envoy, prefix="/external/v1").chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "jane@example.com"}])
    assert e.value.code == "pii_detected"
    assert len(mock.records()) == 1


def test_metrics_and_access_log_carry_types_and_counts_only(mock, tmp_path):
    log = tmp_path / "access.log"
    envoy = pii_gateway(mock, access_log=str(log))
    chat(envoy, "jane@example.com bob@example.com 123-45-6789")
    envoy.wait_stat("wasmcustom.aimesh.pii_redaction.found.email.mask", lambda v: v == 2)
    ssn = "wasmcustom.aimesh.pii_redaction.found.us_ssn.mask"
    assert envoy.stats(ssn)[ssn] == 1
    envoy.stop()
    lines = [json.loads(l) for l in log.read_text().splitlines()]
    assert lines[-1]["pii"] == "EMAIL:2,US_SSN:1"
    assert "example.com" not in log.read_text() and "6789" not in log.read_text()


@pytest.mark.parametrize("char", ["1", "@", "a"])
def test_pathological_half_megabyte_is_answered(mock, char):
    envoy = pii_gateway(mock)
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": char * 500_000}]}).encode()
    status, _ = post_raw(envoy, body)
    assert status == 200


def test_model_pii_masked_in_non_streamed_response(mock):
    envoy = pii_gateway(mock)
    r = chat(envoy, "hi", headers={"x-mock-content": "Sure, write to bob@example.org or 10.0.0.7 today"})
    assert r.choices[0].message.content == "Sure, write to [EMAIL_1] or [IP_ADDRESS_1] today"
