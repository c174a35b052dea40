"""PII redaction cannot be bypassed (issue 23): through the demo chain (auth first, so the stage
that decides on the body and the stage that redacts it both run), in both builds, with raw HTTP
so that no client library normalises the attack away.

1. A JSON body declared as `text/plain`, form data or nothing is redacted (and blocked) like
   `application/json`; a body the policy cannot read is refused, never passed.
2. Every string a person or tool could write is scanned, not a list of known fields.
3. Values hidden with zero-width characters, fullwidth or tag forms are found, masked where they
   stand, and restored in the streamed reply.
"""
from __future__ import annotations

import json

import pytest

from harness import demo, procs
from harness.rawhttp import h2c, http1

KEY = "sk-aimesh-piibypass-" + "2" * 40
CHAT = "/v1/chat/completions"
EMAIL, CARD = "jane.doe@example.com", "4111 1111 1111 1111"
PII_CONFIG = {
    "policies": {"default": {"restore": True},
                 "strict": {"actions": {"EMAIL": "block", "CREDIT_CARD": "block"}}},
    "rules": [{"header": {"name": "x-pii-policy", "value": "strict"}, "policy": "strict"}],
}


@pytest.fixture(scope="module")
def gateway():
    mock = procs.MockLLM("pii-bypass")
    cfg = demo.demo_config(KEY, mock.port)
    demo.set_stage_config(cfg, "pii-redaction", PII_CONFIG)
    envoy = procs.Envoy(cfg)
    yield envoy, mock
    envoy.stop()
    mock.stop()


def post(envoy, body: bytes, headers: dict[str, str], path: str = CHAT):
    hs = {"host": "localhost", "authorization": f"Bearer {KEY}", "content-length": str(len(body)),
          **headers}
    head = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hs.items()) + "\r\n"
    return http1(envoy.port, head.encode() + body, timeout=30)


def chat_body(**fields) -> bytes:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], **fields}
    return json.dumps(body, ensure_ascii=False).encode()


def arrived(mock) -> str:
    [rec] = mock.records()
    return rec["body"]


def error_code(reply) -> str:
    return json.loads(reply.body)["error"]["code"]


def pii_message(text: str) -> bytes:
    return chat_body(messages=[{"role": "user", "content": text}])


# --- 1. what the body is declared as does not decide whether it is scanned ---

DECLARED = [{"content-type": "text/plain"}, {"content-type": "application/x-www-form-urlencoded"},
            {"content-type": "application/xml"}, {}]


@pytest.mark.parametrize("declared", DECLARED, ids=lambda d: d.get("content-type", "none"))
def test_json_body_declared_as_anything_is_redacted(gateway, declared):
    envoy, mock = gateway
    mock.clear()
    reply = post(envoy, pii_message(f"mail {EMAIL}, card {CARD}"), declared)
    assert reply.status == 200, reply.body
    got = arrived(mock)
    assert EMAIL not in got and CARD not in got, got
    assert json.loads(got)["messages"][0]["content"] == "mail [EMAIL_1], card [CREDIT_CARD_1]"


@pytest.mark.parametrize("declared", DECLARED, ids=lambda d: d.get("content-type", "none"))
def test_json_body_declared_as_anything_is_blocked(gateway, declared):
    envoy, mock = gateway
    mock.clear()
    reply = post(envoy, pii_message(f"card {CARD}"), {**declared, "x-pii-policy": "strict"})
    assert (reply.status, error_code(reply)) == (400, "pii_detected")
    assert mock.records() == []


def test_http2_json_body_declared_as_text_is_redacted(gateway):
    envoy, mock = gateway
    mock.clear()
    reply = h2c(envoy.port, "POST", CHAT, [("authorization", f"Bearer {KEY}"),
                                           ("content-type", "text/plain")], pii_message(f"mail {EMAIL}"))
    assert reply.status == 200
    assert EMAIL not in arrived(mock)


@pytest.mark.parametrize("headers,status,code", [
    ({"content-type": "text/plain"}, 415, "unsupported_media_type"),
    ({"content-type": "application/json", "content-encoding": "gzip"}, 415, "unsupported_media_type"),
    ({"content-type": "application/json"}, 400, "invalid_json"),
])
def test_body_the_policy_cannot_read_is_refused(gateway, headers, status, code):
    """Off the model API (where auth reads no body) a body that is not JSON cannot be scanned:
    refused in OpenAI's error shape, never forwarded."""
    envoy, mock = gateway
    mock.clear()
    reply = post(envoy, f"to={EMAIL}&card={CARD}".encode(), headers, path="/mcp/tools")
    assert (reply.status, error_code(reply)) == (status, code), reply.body
    assert mock.records() == []


# --- 2. every string a person or tool could write is scanned ---

def test_every_written_field_is_scanned(gateway):
    envoy, mock = gateway
    mock.clear()
    n = iter(range(100))

    def mail() -> str:
        return f"person{next(n)}@example.com"

    body = chat_body(
        user=mail(),
        messages=[
            {"role": "user", "name": mail(), "content": [{"type": "text", "text": "hi"}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "send", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "ok"}],
        prediction={"type": "content", "content": mail()},
        tools=[{"type": "function", "function": {
            "name": "send", "description": f"mails {mail()}",
            "parameters": {"type": "object", "properties": {
                "to": {"type": "string", "description": f"e.g. {mail()}", "enum": [mail()]}}}}}],
        metadata={"owner": mail(), mail(): "vip"},
        stop=[mail()],
        response_format={"type": "json_schema", "json_schema": {
            "name": "r", "description": f"for {mail()}", "schema": {"type": "object"}}},
    )
    reply = post(envoy, body, {"content-type": "application/json"})
    assert reply.status == 200, reply.body
    got = arrived(mock)
    assert "@example.com" not in got, got
    sent = json.loads(got)
    assert sent["model"] == "gpt-4o-mini" and sent["messages"][0]["role"] == "user"
    assert sent["tools"][0]["function"]["parameters"]["type"] == "object"


def test_written_field_cannot_skip_block(gateway):
    envoy, mock = gateway
    mock.clear()
    reply = post(envoy, chat_body(user=EMAIL), {"content-type": "application/json",
                                               "x-pii-policy": "strict"})
    assert (reply.status, error_code(reply)) == (400, "pii_detected")
    assert mock.records() == []


# --- 3. what a model would read, detectors read ---

ZW = "\u200b"
HIDDEN = {
    "zero-width email": f"jane{ZW}.doe@{ZW}example.com",
    "joiner email": "jane.doe\u2060@example\u200d.com",
    "fullwidth at": "jane.doe\uff20example.com",
    "fullwidth email": "ｊａｎｅ．ｄｏｅ＠ｅｘａｍｐｌｅ．ｃｏｍ",
    "fullwidth card": "４１１１ １１１１ １１１１ １１１１",
    "zero-width card": f"4111{ZW}1111{ZW}1111{ZW}1111",
    "tag email": "".join(chr(0xE0000 + ord(c)) for c in EMAIL),
}


@pytest.mark.parametrize("value", HIDDEN.values(), ids=HIDDEN.keys())
def test_hidden_values_are_masked_where_they_stand(gateway, value):
    envoy, mock = gateway
    mock.clear()
    reply = post(envoy, pii_message(f"reach {value} today"), {"content-type": "application/json"})
    assert reply.status == 200, reply.body
    content = json.loads(arrived(mock))["messages"][0]["content"]
    assert content.startswith("reach [") and content.endswith("_1] today"), content


@pytest.mark.parametrize("value", HIDDEN.values(), ids=HIDDEN.keys())
def test_hidden_values_cannot_skip_block(gateway, value):
    envoy, mock = gateway
    mock.clear()
    reply = post(envoy, pii_message(f"reach {value}"), {"content-type": "text/plain",
                                                         "x-pii-policy": "strict"})
    assert (reply.status, error_code(reply)) == (400, "pii_detected")
    assert mock.records() == []


def test_hidden_value_is_restored_in_the_streamed_reply(gateway):
    """The placeholder the model echoes comes back as exactly what the client sent, invisible
    characters included, whatever the frame boundaries."""
    envoy, mock = gateway
    text = f"I am {HIDDEN['zero-width email']} with {HIDDEN['fullwidth card']} ok"
    for split in ["1", "3", "random:1:9"]:
        mock.clear()
        body = chat_body(messages=[{"role": "user", "content": text}], stream=True)
        reply = post(envoy, body, {"content-type": "application/json", "x-mock-echo": "true",
                                   "x-mock-split": split})
        assert reply.status == 200
        assert json.loads(arrived(mock))["messages"][0]["content"] == \
            "I am [EMAIL_1] with [CREDIT_CARD_1] ok"
        deltas = [json.loads(line[6:]) for line in reply.body.decode().splitlines()
                  if line.startswith("data: {")]
        out = "".join(c["choices"][0]["delta"].get("content") or "" for c in deltas if c["choices"])
        assert out == text, split
