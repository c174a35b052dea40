"""The OpenAI endpoints beyond chat completions through real Envoy and aimesh-xds, in the build
AIMESH_BUILD / AIMESH_CHAIN selects (issue 19, part C), with the official `openai` SDK where a
user would use it: Responses (streamed and not), completions, embeddings, images, audio
(multipart uploads and speech), moderations, rerank, files and batches. Each gets auth, usage in
the audit log equal to the provider's, PII where user or tool text travels; multipart uploads are
checked on their `model` form field, and the attacks on that parse are sent as raw HTTP.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import openai
import pytest
import requests

from harness import audit, demo, paths, procs, rawhttp, statnames, xds

ALICE = "sk-aimesh-" + "a" * 64   # every model, every endpoint
NARROW = "sk-aimesh-" + "n" * 64  # a few models, no endpoint grants
NARROW_MODELS = ["whisper-1", "gpt-4o-mini", "text-embedding-3-small"]
EMAIL = "jane.doe@example.com"
MAX_BODY = 3 * 1024 * 1024


class Gateway:
    def __init__(self, log: Path) -> None:
        self.log = log
        self.mock = procs.MockLLM("mock")
        self.server = xds.XdsServer({
            "listener": {"address": "127.0.0.1", "port": 0, "route_timeout": "30s",
                         "access_log": str(log), "filter_build": paths.build(),
                         "max_body_bytes": MAX_BODY},
            "providers": [xds.mock_provider("local", self.mock)],
            "default_provider": "local",
            "keys": [{"id": "alice", "hash": demo.key_hash(ALICE), "team": "t"},
                     {"id": "narrow", "hash": demo.key_hash(NARROW), "models": NARROW_MODELS}],
            "pii": {"mode": "redact", "entities": ["email"], "restore": True},
            "metadata": {"keys": ["project", "feature"], "labels": ["feature"], "max_value_bytes": 32},
        })
        self.envoy = procs.Envoy(xds.ads_bootstrap(self.server.port))
        deadline = time.time() + 10
        while self.post("/v1/embeddings", {"model": "m", "input": "x"}).status != 200:
            assert time.time() < deadline, "the gateway never answered"
            time.sleep(0.05)

    def client(self, key: str = ALICE) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.envoy.url}/v1", api_key=key, max_retries=0)

    def raw(self, method: str, path: str, body: bytes, content_type: str, key: str = ALICE,
            extra: str = "") -> rawhttp.Reply:
        head = (f"{method} {path} HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {key}\r\n"
                f"content-type: {content_type}\r\ncontent-length: {len(body)}\r\n{extra}"
                "connection: close\r\n\r\n").encode()
        return rawhttp.http1(self.envoy.port, head + body)

    def post(self, path: str, body: dict, key: str = ALICE) -> rawhttp.Reply:
        return self.raw("POST", path, json.dumps(body).encode(), "application/json", key)

    def lines(self) -> list[dict]:
        return audit.check(self.log) if self.log.exists() else []

    def line_of(self, n_before: int, path: str) -> dict:
        """The audit line of the request sent after `n_before` lines were written, to `path`."""
        deadline = time.time() + 5
        while time.time() < deadline:
            new = [l for l in self.lines()[n_before:] if l["path"].startswith(path)]
            if new:
                return new[-1]
            time.sleep(0.05)
        raise AssertionError(f"no audit line for {path}")

    def lines_since(self, n_before: int, paths: tuple[str, ...], count: int) -> list[dict]:
        """The `count` audit lines to `paths` written after `n_before` lines."""
        deadline = time.time() + 5
        while True:
            new = [l for l in self.lines()[n_before:] if l["path"].startswith(paths)]
            if len(new) >= count or time.time() > deadline:
                return new
            time.sleep(0.05)

    def stop(self) -> None:
        for p in (self.envoy, self.server, self.mock):
            p.stop()


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    g = Gateway(tmp_path_factory.mktemp("endpoints") / "audit.log")
    yield g
    g.stop()


def last_record(g: Gateway, path: str) -> dict:
    return [r for r in g.mock.records() if r["path"] == path][-1]


def tokens(line: dict) -> tuple:
    return line["input_tokens"], line["cached_input_tokens"], line["output_tokens"]


def error(r: rawhttp.Reply) -> tuple[int, str]:
    return r.status, json.loads(r.body)["error"]["code"]


# --- Responses -----------------------------------------------------------------------------

def test_responses_usage_with_cached_tokens_and_pii_in_input_items(gw):
    n = len(gw.lines())
    r = gw.client().responses.create(
        model="gpt-4o", instructions=f"reply to {EMAIL}",
        input=[{"role": "user", "content": [{"type": "input_text", "text": f"write to {EMAIL} now"}]},
               {"type": "function_call_output", "call_id": "c1", "output": f"sent to {EMAIL}"}],
        extra_headers={"x-mock-cached-tokens": "3", "x-mock-echo": "1"})
    # The provider saw placeholders; the client reads its own address back (restored).
    sent = last_record(gw, "/v1/responses")["body"]
    assert EMAIL not in sent and "[EMAIL_1]" in sent, sent
    assert "stream_options" not in sent
    assert r.output_text == f"sent to {EMAIL}"
    line = gw.line_of(n, "/v1/responses")
    u = r.usage
    assert tokens(line) == (u.input_tokens, 3, u.output_tokens) and u.input_tokens_details.cached_tokens == 3
    assert (line["key_id"], line["model"], line["usage_estimated"]) == ("alice", "gpt-4o", False)


def test_a_streamed_response_is_accounted_from_response_completed(gw):
    n = len(gw.lines())
    events = list(gw.client().responses.create(model="gpt-4o", input="one two three", stream=True,
                                               extra_headers={"x-mock-cached-tokens": "2"}))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == events[-1].response.output_text
    sent = json.loads(last_record(gw, "/v1/responses")["body"])
    assert "stream_options" not in sent, "no chat-only field in another API's body"
    line = gw.line_of(n, "/v1/responses")
    u = events[-1].response.usage
    assert tokens(line) == (u.input_tokens, 2, u.output_tokens) and u.output_tokens == 8
    assert line["usage_estimated"] is False and isinstance(line["ttft_ms"], int)


def test_a_streamed_response_has_its_placeholders_restored_at_any_split(gw):
    for split in ("3", "random:7:11"):
        stream = gw.client().responses.create(
            model="gpt-4o", input=f"forward this to {EMAIL} please", stream=True,
            extra_headers={"x-mock-echo": "1", "x-mock-split": split})
        events = list(stream)
        assert "[EMAIL_1]" in last_record(gw, "/v1/responses")["body"]
        text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        want = f"forward this to {EMAIL} please"
        assert text == want, split
        assert events[-1].type == "response.completed" and events[-1].response.output_text == want


# --- completions, embeddings, images, audio, moderations, rerank ----------------------------

def test_completions_streamed_and_not(gw):
    c = gw.client()
    n = len(gw.lines())
    plain = c.completions.create(model="gpt-4o-mini", prompt=f"say hi to {EMAIL}")
    assert EMAIL not in last_record(gw, "/v1/completions")["body"]
    line = gw.line_of(n, "/v1/completions")
    assert tokens(line) == (plain.usage.prompt_tokens, 0, plain.usage.completion_tokens)
    n = len(gw.lines())
    chunks = list(c.completions.create(model="gpt-4o-mini", prompt="one two", stream=True))
    # The gateway asked for usage; the client, which did not, gets no usage chunk.
    assert json.loads(last_record(gw, "/v1/completions")["body"])["stream_options"] == {"include_usage": True}
    assert all(ch.usage is None for ch in chunks)
    assert tokens(gw.line_of(n, "/v1/completions")) == (2, 0, 8)


def test_embeddings_of_a_list_are_accounted_and_redacted(gw):
    n = len(gw.lines())
    r = gw.client().embeddings.create(model="text-embedding-3-small",
                                      input=["one two", f"mail {EMAIL}", "three"])
    assert len(r.data) == 3
    sent = json.loads(last_record(gw, "/v1/embeddings")["body"])
    assert sent["input"][1] == "mail [EMAIL_1]"
    line = gw.line_of(n, "/v1/embeddings")
    assert tokens(line) == (r.usage.prompt_tokens, 0, 0) and r.usage.prompt_tokens == 5


def test_images_are_accounted(gw):
    n = len(gw.lines())
    r = gw.client().images.generate(model="gpt-image-1", prompt="a red fox", n=2)
    assert len(r.data) == 2
    assert tokens(gw.line_of(n, "/v1/images/generations")) == (3, 0, 200)


def test_audio_uploads_are_read_as_forms(gw):
    c = gw.client()
    n = len(gw.lines())
    audio = b"RIFF" + bytes(range(256)) * 4
    t = c.audio.transcriptions.create(model="whisper-1", file=("a.wav", audio, "audio/wav"),
                                      prompt="names: Ann")
    assert t.text.startswith("heard0")
    got = last_record(gw, "/v1/audio/transcriptions")
    assert got["headers"]["content-type"].startswith("multipart/form-data")
    line = gw.line_of(n, "/v1/audio/transcriptions")
    assert line["model"] == "whisper-1"
    assert (line["input_tokens"], line["output_tokens"]) == (11 + 2, 5)
    tr = c.audio.translations.create(model="whisper-1", file=("a.wav", audio, "audio/wav"))
    assert tr.text.startswith("heard0")
    speech = c.audio.speech.create(model="tts-1", voice="alloy", input="hello there")
    assert speech.content.startswith(b"ID3") and speech.content.endswith(b"hello there")


def test_moderations_and_rerank(gw):
    m = gw.client().moderations.create(model="omni-moderation-latest", input=["fine", "violence"])
    assert [r.flagged for r in m.results] == [False, True]
    n = len(gw.lines())
    r = gw.post("/v1/rerank", {"model": "rerank-1", "query": "red fox",
                               "documents": ["a red fox", "a blue whale", "fox"]})
    assert r.status == 200, r.body
    body = json.loads(r.body)
    assert [x["index"] for x in body["results"]] == [0, 2, 1]
    assert gw.line_of(n, "/v1/rerank")["input_tokens"] == body["usage"]["total_tokens"] == 9


# --- files and batches ----------------------------------------------------------------------

def test_files_and_batches_pass_through_with_identity(gw):
    c = gw.client()
    n = len(gw.lines())
    jsonl = b'{"custom_id":"1","method":"POST","url":"/v1/chat/completions","body":{"model":"o1"}}\n'
    f = c.files.create(file=("in.jsonl", jsonl), purpose="batch")
    assert f.bytes == len(jsonl) and f.purpose == "batch"
    assert last_record(gw, "/v1/files")["body"].count(jsonl.decode().strip()) == 1, "forwarded as sent"
    assert f.id in [x.id for x in c.files.list()]
    assert c.files.content(f.id).content == jsonl
    b = c.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert c.batches.retrieve(b.id).input_file_id == f.id
    assert c.batches.cancel(b.id).status == "cancelling"
    assert c.files.delete(f.id).deleted
    lines = gw.lines_since(n, ("/v1/files", "/v1/batches"), 7)
    assert len(lines) == 7 and all(l["key_id"] == "alice" and l["team"] == "t" for l in lines)
    assert all(l["input_tokens"] is None for l in lines)
    # A key limited to some models has no endpoint grants: it cannot upload a batch whose
    # requests name any model.
    with pytest.raises(openai.PermissionDeniedError):
        gw.client(NARROW).files.create(file=("in.jsonl", jsonl), purpose="batch")


# --- multipart: the model allow-list and attacks on the parse -------------------------------

BOUNDARY = "aimeshB0undary"
FORM = f"multipart/form-data; boundary={BOUNDARY}"


def form(*parts: tuple[str, bytes], filename: str | None = None) -> bytes:
    out = b""
    for name, value in parts:
        fn = f'; filename="{filename}"' if name == "file" and filename else ""
        out += (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"{fn}\r\n\r\n").encode()
        out += value + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


def test_the_model_form_field_meets_the_allow_list(gw):
    narrow = gw.client(NARROW)
    assert narrow.audio.transcriptions.create(model="whisper-1", file=("a.wav", b"RIFF")).text
    with pytest.raises(openai.PermissionDeniedError) as e:
        narrow.audio.transcriptions.create(model="gpt-4o-transcribe", file=("a.wav", b"RIFF"))
    assert e.value.code == "model_not_allowed"


ATTACKS = {
    "json body under a multipart type": (FORM, b'{"model":"whisper-1"}', 400, "invalid_multipart"),
    "a form under a json type": ("application/json", form(("model", b"whisper-1")), 415, "unsupported_content_type"),
    "two model fields": (FORM, form(("model", b"whisper-1"), ("model", b"gpt-4o-transcribe")), 400, "duplicate_model"),
    "no boundary": ("multipart/form-data", form(("model", b"whisper-1")), 400, "missing_boundary"),
    "forbidden model in a later part": (FORM, form(("file", b"RIFF" * 20000), ("model", b"gpt-4o-transcribe")),
                                        403, "model_not_allowed"),
    "model as a file": (FORM, form(("file", b"gpt-4o-transcribe")).replace(b'name="file"', b'name="model"; filename="m"'),
                        400, "invalid_model"),
    "no model": (FORM, form(("file", b"RIFF")), 400, "missing_model"),
}


@pytest.mark.parametrize("case", ATTACKS, ids=list(ATTACKS))
def test_attacks_on_the_form_parse_get_a_clear_4xx_and_never_reach_the_provider(gw, case):
    ct, body, status, code = ATTACKS[case]
    gw.mock.clear()
    r = gw.raw("POST", "/v1/audio/transcriptions", body, ct, NARROW)
    assert error(r) == (status, code), r.body
    assert json.loads(r.body)["error"]["type"] == "invalid_request_error" or status == 403
    assert gw.mock.records() == []


def test_a_json_endpoint_refuses_a_form_type(gw):
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()
    gw.mock.clear()
    assert error(gw.raw("POST", "/v1/chat/completions", body, FORM)) == (415, "unsupported_content_type")
    assert gw.mock.records() == []


# --- body size ------------------------------------------------------------------------------

def test_a_2_mib_request_passes_and_one_over_the_limit_gets_413(gw):
    big = "word " * (2 * 1024 * 1024 // 5)
    r = gw.post("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": big}]})
    assert r.status == 200, r.body[:300]
    too_big = "word " * (MAX_BODY // 5 + 1000)
    r = gw.post("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": too_big}]})
    assert error(r) == (413, "request_too_large")


# --- custom metadata ------------------------------------------------------------------------

def test_custom_metadata_lands_in_the_audit_log_and_on_the_genai_metrics(gw):
    n = len(gw.lines())
    meta = json.dumps({"project": "apollo", "feature": "summarise"})
    r = gw.client().embeddings.create(model="text-embedding-3-small", input="one",
                                      extra_headers={"x-gateway-metadata": meta})
    assert r.usage.prompt_tokens == 1
    line = gw.line_of(n, "/v1/embeddings")
    assert json.loads(line["metadata"]) == {"feature": "summarise", "project": "apollo"}
    assert "x-gateway-metadata" not in last_record(gw, "/v1/embeddings")["headers"]
    stats = gw.envoy.admin_get("/stats?filter=meta_feature")
    series = [statnames.labels(l.split(":")[0]) for l in stats.splitlines()]
    assert {"operation_name": "embeddings", "meta_feature": "summarise"}.items() <= \
        next((s for s in series if s.get("meta_feature") == "summarise"), {}).items(), stats
    # Without the header the line has null, and the label is `unknown`.
    n = len(gw.lines())
    gw.client().embeddings.create(model="text-embedding-3-small", input="two")
    assert gw.line_of(n, "/v1/embeddings")["metadata"] is None
    assert ".meta_feature.unknown" in gw.envoy.admin_get("/stats?filter=meta_feature")


@pytest.mark.parametrize("value,problem", [
    ("[1]", "must be a JSON object"),
    ('{"other": "x"}', "'other' is not allowed"),
    ('{"project": 7}', "must be a string"),
    ('{"project": "' + "v" * 40 + '"}', "longer than 32 bytes"),
    ('{"project": "a", "project": "b"}', "appears twice"),
])
def test_bad_metadata_gets_a_400_naming_the_problem(gw, value, problem):
    gw.mock.clear()
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()
    r = gw.raw("POST", "/v1/chat/completions", body, "application/json", extra=f"x-gateway-metadata: {value}\r\n")
    assert error(r) == (400, "invalid_metadata"), r.body
    assert problem in json.loads(r.body)["error"]["message"]
    assert gw.mock.records() == []
