"""OpenAI <-> Anthropic translation through real Envoy (issue 19): the official `openai` SDK
against an Anthropic-format fake provider, the official `anthropic` SDK against an OpenAI-format
one, tool calls checked field by field against what each fake provider recorded, streams, a
virtual model whose fallback speaks the other dialect, and provider errors in the client's
dialect. One gateway (aimesh-xds + Envoy) per module, in the build `AIMESH_BUILD` selects."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import anthropic
import openai
import pytest
import requests

from harness import claude_code, demo, paths, procs, xds

KEY = "sk-aimesh-test-translate"
SECRETS = {"AIMESH_TEST_CLAUDE_KEY": "sk-ant-provider-secret"}
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}},
                   "required": ["query"]}}}


class Gateway:
    def __init__(self) -> None:
        self.claude = procs.MockLLM("claude")
        self.vllm = procs.MockLLM("vllm")
        gw = {
            "listener": {"address": "127.0.0.1", "port": 0, "route_timeout": "30s",
                         "filter_build": paths.build()},
            "providers": [
                {"name": "claude", "kind": "anthropic", "base_url": self.claude.url,
                 "api_key": "${env:AIMESH_TEST_CLAUDE_KEY}", "models": ["claude-mock"]},
                {"name": "vllm", "kind": "vllm", "endpoints": [{"url": self.vllm.url}],
                 "models": ["qwen-mock"]},
            ],
            "virtual_models": [
                {"name": "vm-mixed", "targets": [{"provider": "claude", "model": "claude-mock"},
                                                 {"provider": "vllm", "model": "qwen-mock"}]},
            ],
            "keys": [{"id": "t", "hash": demo.key_hash(KEY)}],
        }
        if not paths.one_filter():
            # Fallbacks need the per-attempt upstream filters of the five-filter build
            # (aimesh-xds refuses them with `chain` and `native`).
            gw["virtual_models"] += [
                {"name": "vm-claude-first", "targets": [{"provider": "claude", "model": "claude-mock"}],
                 "fallbacks": [{"provider": "vllm", "model": "qwen-mock"}]},
                {"name": "vm-vllm-first", "targets": [{"provider": "vllm", "model": "qwen-mock"}],
                 "fallbacks": [{"provider": "claude", "model": "claude-mock"}]},
            ]
        self.server = xds.XdsServer(gw)
        self.envoy = procs.Envoy(xds.ads_bootstrap(self.server.port), env=SECRETS)
        deadline = time.time() + 15
        while requests.get(f"{self.envoy.url}/v1/models", timeout=10,
                           headers={"authorization": f"Bearer {KEY}"}).status_code != 200:
            assert time.time() < deadline, "the gateway never answered"
            time.sleep(0.05)

    def openai(self, **headers) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.envoy.url}/v1", api_key=KEY, max_retries=0,
                             default_headers=headers or None)

    def anthropic(self, **headers) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.envoy.url, api_key=KEY, max_retries=0,
                                   default_headers=headers or None)

    def stop(self) -> None:
        for p in (self.envoy, self.server, self.claude, self.vllm):
            p.stop()


@pytest.fixture(scope="module")
def gw():
    g = Gateway()
    yield g
    g.stop()


def last(mock: procs.MockLLM) -> dict:
    recs = mock.records()
    assert recs, "the provider received nothing"
    return recs[-1]


def body(rec: dict) -> dict:
    return json.loads(rec["body"])


def test_openai_sdk_to_anthropic_provider(gw):
    r = gw.openai().chat.completions.with_raw_response.create(
        model="claude-mock", max_tokens=50, temperature=0.3, stop=["END"], user="u-1",
        messages=[{"role": "system", "content": "be brief"},
                  {"role": "user", "content": "one two three"}])
    c = r.parse()
    assert c.object == "chat.completion"
    assert c.choices[0].message.content.startswith("mock0")
    assert c.choices[0].finish_reason == "stop"
    # The fake provider counts words: system (2) + user (3) in, 8 out.
    assert (c.usage.prompt_tokens, c.usage.completion_tokens, c.usage.total_tokens) == (5, 8, 13)
    rec = last(gw.claude)
    assert rec["path"] == "/v1/messages"
    assert rec["headers"]["anthropic-version"] == "2023-06-01"
    assert rec["headers"]["x-api-key"] == SECRETS["AIMESH_TEST_CLAUDE_KEY"]
    assert body(rec) == {
        "model": "claude-mock", "max_tokens": 50, "temperature": 0.3,
        "stop_sequences": ["END"], "metadata": {"user_id": "u-1"},
        "system": [{"type": "text", "text": "be brief"}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "one two three"}]}]}


def test_openai_tool_calls_round_trip_field_by_field(gw):
    client = gw.openai(**{"x-mock-tool-use": "get_weather"})
    msgs = [{"role": "user", "content": "Paris"}]
    c = client.chat.completions.create(model="claude-mock", messages=msgs, tools=[WEATHER],
                                       tool_choice="required", parallel_tool_calls=False)
    [call] = c.choices[0].message.tool_calls
    assert c.choices[0].finish_reason == "tool_calls"
    assert (call.id, call.type, call.function.name) == ("toolu_mock01", "function", "get_weather")
    assert json.loads(call.function.arguments) == {"query": "Paris"}
    sent = body(last(gw.claude))
    assert sent["tools"] == [{"name": "get_weather", "description": "Weather of a city",
                              "input_schema": WEATHER["function"]["parameters"]}]
    assert sent["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    # The answer goes back with the call and its result: Anthropic gets tool_use and tool_result.
    msgs += [c.choices[0].message.model_dump(exclude_none=True),
             {"role": "tool", "tool_call_id": call.id, "content": "18C"}]
    gw.openai().chat.completions.create(model="claude-mock", messages=msgs, tools=[WEATHER])
    sent = body(last(gw.claude))
    assert sent["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Paris"}]},
        {"role": "assistant", "content": [
            {"type": "text", "text": c.choices[0].message.content},
            {"type": "tool_use", "id": "toolu_mock01", "name": "get_weather", "input": {"query": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_mock01", "content": "18C"}]},
    ]


def test_openai_stream_from_anthropic_provider_with_cache_tokens(gw):
    client = gw.openai(**{"x-mock-cache-read-tokens": "100", "x-mock-tool-use": "get_weather"})
    stream = client.chat.completions.create(
        model="claude-mock", messages=[{"role": "user", "content": "Rome please"}], stream=True,
        stream_options={"include_usage": True}, tools=[WEATHER])
    text, args, names, finish, usage = "", "", [], None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for ch in chunk.choices:
            text += ch.delta.content or ""
            for tc in ch.delta.tool_calls or []:
                names += [tc.function.name] if tc.function and tc.function.name else []
                args += (tc.function.arguments or "") if tc.function else ""
            finish = ch.finish_reason or finish
    assert text.startswith("mock0") and names == ["get_weather"]
    assert json.loads(args) == {"query": "Rome please"}
    assert finish == "tool_calls"
    # Cached tokens are inside prompt_tokens, as OpenAI counts them, and reported apart.
    assert usage.prompt_tokens == 2 + 100
    assert usage.prompt_tokens_details.cached_tokens == 100
    sent = body(last(gw.claude))
    assert sent["stream"] is True and "stream_options" not in sent


def test_provider_errors_arrive_in_the_client_dialect(gw):
    with pytest.raises(openai.RateLimitError) as e:
        gw.openai(**{"x-mock-status": "429"}).chat.completions.create(
            model="claude-mock", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 429
    assert isinstance(e.value.body, dict) and e.value.body.get("message")
    # A request that cannot be translated is refused by the gateway, naming the field.
    with pytest.raises(openai.BadRequestError) as e:
        gw.openai().chat.completions.create(
            model="claude-mock", n=2, messages=[{"role": "user", "content": "hi"}])
    assert "`n`" in str(e.value)


def test_mixed_dialect_virtual_model_targets_each_get_their_dialect(gw):
    gw.claude.clear()
    gw.vllm.clear()
    client = gw.openai()
    served = set()
    for i in range(20):
        r = client.chat.completions.with_raw_response.create(
            model="vm-mixed", messages=[{"role": "user", "content": f"q{i} x"}])
        c = r.parse()
        assert c.object == "chat.completion" and c.choices[0].message.content.startswith("mock0")
        assert c.usage.prompt_tokens == 2
        served.add(r.headers["x-upstream-id"])
    assert served == {"claude", "vllm"}
    assert {r["path"] for r in gw.claude.records()} == {"/v1/messages"}
    assert {body(r)["model"] for r in gw.claude.records()} == {"claude-mock"}
    assert {r["path"] for r in gw.vllm.records()} == {"/v1/chat/completions"}
    assert {body(r)["model"] for r in gw.vllm.records()} == {"qwen-mock"}


def test_mixed_dialect_virtual_model_falls_back_across_dialects(gw):
    if paths.one_filter():
        pytest.skip("fallbacks run only in the five-filter build (aimesh-xds refuses them in chain/native)")
    gw.claude.clear()
    gw.vllm.clear()
    # The Anthropic primary 503s; the vLLM fallback answers, untranslated.
    r = gw.openai(**{"x-mock-status": "503", "x-mock-target": "claude"}).chat.completions \
        .with_raw_response.create(model="vm-claude-first", messages=[{"role": "user", "content": "a b"}])
    assert r.headers["x-upstream-id"] == "vllm"
    assert r.parse().model == "qwen-mock"
    [first] = gw.claude.records()
    assert first["path"] == "/v1/messages" and body(first)["model"] == "claude-mock"
    [second] = gw.vllm.records()
    assert second["path"] == "/v1/chat/completions"
    assert body(second)["messages"] == [{"role": "user", "content": "a b"}]
    # The other way round: the fallback attempt is translated from the client's original body.
    r = gw.openai(**{"x-mock-status": "503", "x-mock-target": "vllm"}).chat.completions \
        .with_raw_response.create(model="vm-vllm-first", messages=[{"role": "user", "content": "c d"}])
    assert r.headers["x-upstream-id"] == "claude"
    c = r.parse()
    assert c.object == "chat.completion" and c.model == "claude-mock"
    assert c.usage.prompt_tokens == 2
    rec = last(gw.claude)
    assert rec["path"] == "/v1/messages"
    assert body(rec)["messages"] == [{"role": "user", "content": [{"type": "text", "text": "c d"}]}]


def test_anthropic_sdk_to_openai_provider(gw):
    client = gw.anthropic()
    m = client.messages.create(model="qwen-mock", max_tokens=64, system="be brief",
                               stop_sequences=["END"],
                               messages=[{"role": "user", "content": "one two three"}])
    assert m.type == "message" and m.role == "assistant"
    assert m.content[0].type == "text" and m.content[0].text.startswith("mock0")
    assert m.stop_reason == "end_turn"
    assert (m.usage.input_tokens, m.usage.output_tokens) == (5, 8)
    rec = last(gw.vllm)
    assert rec["path"] == "/v1/chat/completions"
    assert "anthropic-version" not in rec["headers"]
    assert body(rec) == {"model": "qwen-mock", "max_tokens": 64, "stop": ["END"],
                         "messages": [{"role": "system", "content": "be brief"},
                                      {"role": "user", "content": "one two three"}]}


def test_anthropic_sdk_stream_and_tool_results_to_openai_provider(gw):
    client = gw.anthropic()
    msgs = [{"role": "user", "content": "read it"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Reading."},
                {"type": "tool_use", "id": "toolu_9", "name": "Read", "input": {"path": "a.rs"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_9", "content": "fn main() {}"},
                {"type": "text", "text": "explain"}]}]
    tools = [{"name": "Read", "description": "read a file",
              "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}}]
    with client.messages.stream(model="qwen-mock", max_tokens=64, messages=msgs, tools=tools) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text.startswith("mock0")
    assert final.stop_reason == "end_turn"
    # Input tokens arrive with message_delta (an OpenAI stream reports usage at its end).
    assert final.usage.output_tokens == 8 and final.usage.input_tokens > 0
    sent = body(last(gw.vllm))
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["tools"] == [{"type": "function", "function": {
        "name": "Read", "description": "read a file", "parameters": tools[0]["input_schema"]}}]
    assert sent["messages"] == [
        {"role": "user", "content": "read it"},
        {"role": "assistant", "content": "Reading.", "tool_calls": [{"id": "toolu_9", "type": "function",
            "function": {"name": "Read", "arguments": json.dumps({"path": "a.rs"}, separators=(",", ":"))}}]},
        {"role": "tool", "tool_call_id": "toolu_9", "content": "fn main() {}"},
        {"role": "user", "content": "explain"},
    ]
    with pytest.raises(anthropic.APIStatusError) as e:
        gw.anthropic(**{"x-mock-status": "503"}).messages.create(
            model="qwen-mock", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 503
    assert e.value.body["type"] == "error" and e.value.body["error"]["type"] == "overloaded_error"


@pytest.mark.skipif(shutil.which("npm") is None and claude_code.cli() is None,
                    reason="Claude Code is not installed and npm is missing")
def test_claude_code_on_a_self_hosted_openai_compatible_model(gw, tmp_path):
    """Claude Code, pointed at the gateway, served by the vLLM-kind fake: no byte of it leaves
    in Anthropic's dialect."""
    gw.vllm.clear()
    gw.claude.clear()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE"))}
    env.update({
        "HOME": str(tmp_path), "ANTHROPIC_BASE_URL": gw.envoy.url, "ANTHROPIC_API_KEY": KEY,
        "ANTHROPIC_MODEL": "qwen-mock", "ANTHROPIC_SMALL_FAST_MODEL": "qwen-mock",
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": "qwen-mock",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1", "DISABLE_ERROR_REPORTING": "1"})
    p = subprocess.run([claude_code.cli(), "-p", "say hello", "--model", "qwen-mock"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert "mock0" in p.stdout, (p.stdout, p.stderr)
    recs = gw.vllm.records()
    assert recs and {r["path"] for r in recs} == {"/v1/chat/completions"}
    asked = [body(r) for r in recs if "say hello" in r["body"]]
    assert asked, [r["body"][:200] for r in recs]
    main = asked[-1]
    assert main["model"] == "qwen-mock" and main["messages"][0]["role"] == "system"
    # Claude Code's own tools reach the backend as OpenAI function tools.
    assert main.get("tools") and all(t["type"] == "function" for t in main["tools"])
    assert gw.claude.records() == []
