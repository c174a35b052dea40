"""MCP governance through real Envoy (two workers) and aimesh-xds, in the build AIMESH_BUILD
selects: the official `mcp` SDK as client, FastMCP as server. Allow-lists per key, list replies
filtered (SSE split at every byte by a raw server), denied and schema-invalid calls refused with
JSON-RPC errors, a session carried across connections, a per-tool limit exact across workers, and
bad input over raw HTTP."""
from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import requests
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import McpError
from mcp.types import LATEST_PROTOCOL_VERSION

from harness import audit, demo, otlp, paths, procs, rawhttp, xds
from harness.mcp_demo import DEMO_ALLOWED, PROMPTS, RESOURCES, TEMPLATES, McpServer

FILTER_BUILD = paths.build()
ALICE = "sk-aimesh-" + "a" * 64
ADMIN = "sk-aimesh-" + "b" * 64
CAROL = "sk-aimesh-" + "c" * 64
LIMIT = 6
LIST_REPLY = {"jsonrpc": "2.0", "id": 1, "result": {"tools": [
    {"name": "add", "inputSchema": {"type": "object"}},
    {"name": "delete_all", "inputSchema": {"type": "object"}},
    {"name": "echo", "inputSchema": {"type": "object"}}]}}
SPLIT_STREAM = (": hello\n\nevent: message\nid: e1\ndata: " + json.dumps(LIST_REPLY) + "\n\n").encode()


def split_server() -> tuple[socket.socket, int]:
    """A raw MCP endpoint answering every POST with `SPLIT_STREAM`, one byte per send."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)

    def handle(c: socket.socket) -> None:
        with c:
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            data = b""
            while b"\r\n\r\n" not in data:
                data += c.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            n = int(next((l.split(b":")[1] for l in head.lower().split(b"\r\n")
                          if l.startswith(b"content-length:")), b"0"))
            while len(body) < n:
                body += c.recv(65536)
            c.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                      b"transfer-encoding: chunked\r\n\r\n")
            for b in SPLIT_STREAM:
                c.sendall(b"1\r\n" + bytes([b]) + b"\r\n")
            c.sendall(b"0\r\n\r\n")

    def loop() -> None:
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(c,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()
    return srv, srv.getsockname()[1]


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    log = tmp_path_factory.mktemp("mcp") / "audit.log"
    mock = procs.MockLLM("mock")
    server = McpServer()
    raw, raw_port = split_server()
    receiver = otlp.Receiver()
    s = xds.XdsServer({
        "listener": {"address": "127.0.0.1", "port": 0, "route_timeout": "30s",
                     "filter_build": FILTER_BUILD, "access_log": str(log)},
        "providers": [xds.mock_provider("local", mock)],
        "default_provider": "local",
        "keys": [{"id": "alice", "hash": demo.key_hash(ALICE), "team": "a"},
                 {"id": "admin", "hash": demo.key_hash(ADMIN),
                  "mcp": {"demo": {"tools": ["*"], "prompts": ["*"], "resources": ["*"]}}},
                 {"id": "carol", "hash": demo.key_hash(CAROL)}],
        "mcp_servers": [
            {"name": "demo", "url": server.url, "tools": DEMO_ALLOWED,
             "prompts": ["summarize"], "resources": ["docs://public/*"],
             "limits": [{"tool": "search_docs", "calls_per_minute": LIMIT}]},
            {"name": "split", "url": f"http://127.0.0.1:{raw_port}/mcp", "tools": ["add", "echo"]},
        ],
        # Default: redact and restore. `raw`: redact, replies untouched (the echo then shows what
        # the server received). `strict`: SSNs block the call.
        "pii": {"mode": "redact", "entities": ["email", "us_ssn"], "restore": True,
                "policies": {"raw": {"mode": "redact", "entities": ["email", "us_ssn"],
                                     "redact_responses": False},
                             "strict": {"mode": "block", "entities": ["us_ssn"]}},
                "rules": [{"header": {"name": "x-pii-policy", "value": p}, "policy": p}
                          for p in ("raw", "strict")]},
        "observability": {"otlp": {"endpoint": receiver.endpoint, "service_name": "aimesh-mcp"}},
    })
    e = procs.Envoy(xds.ads_bootstrap(s.port), concurrency=2)
    e.audit_log = log
    e.mcp_server, e.receiver = server, receiver
    yield e
    for p in (e, s, server, mock, receiver):
        p.stop()
    raw.close()


def run(coro):
    return asyncio.run(coro)


async def with_session(e: procs.Envoy, key: str, work, *, keep: bool = False):
    """Runs `work(session, session_id)` in an initialized SDK session; `keep`: the session is
    not ended on the way out (to resume it)."""
    client = httpx.AsyncClient(headers={"authorization": f"Bearer {key}"}, timeout=30)
    async with client, streamable_http_client(f"{e.url}/mcp/demo", http_client=client,
                                              terminate_on_close=not keep) as (r, w, sid):
        async with ClientSession(r, w) as s:
            await s.initialize()
            return await work(s, sid)


def tool_names(e: procs.Envoy, key: str) -> list[str]:
    async def work(s, _):
        return sorted(t.name for t in (await s.list_tools()).tools)
    return run(with_session(e, key, work))


def test_initialize_list_and_call_through_the_gateway(gw):
    async def work(s, _):
        tools = await s.list_tools()
        result = await s.call_tool("add", {"a": 2, "b": 40})
        return tools, result
    tools, result = run(with_session(gw, ALICE, work))
    assert sorted(t.name for t in tools.tools) == ["add", "echo", "search_docs"]
    assert not result.isError and result.content[0].text == "42"


def test_two_keys_see_different_tool_lists(gw):
    assert tool_names(gw, ALICE) == ["add", "echo", "search_docs"]
    assert tool_names(gw, ADMIN) == ["add", "delete_all", "echo", "search_docs"]


def test_a_denied_call_is_a_json_rpc_error_and_the_admin_may_make_it(gw):
    async def denied(s, _):
        with pytest.raises(McpError) as err:
            await s.call_tool("delete_all", {})
        return err.value.error
    error = run(with_session(gw, ALICE, denied))
    assert error.code == -32003 and "delete_all" in error.message
    assert error.data == {"code": "tool_not_allowed"}

    async def allowed(s, _):
        return await s.call_tool("delete_all", {})
    assert run(with_session(gw, ADMIN, allowed)).content[0].text == "everything deleted"


def test_a_schema_invalid_call_is_refused_before_the_server(gw):
    async def work(s, _):
        await s.list_tools()  # the gateway learns the schemas from the server's own list
        with pytest.raises(McpError) as err:
            await s.call_tool("add", {"a": 1, "b": "two"})
        ok = await s.call_tool("add", {"a": 1, "b": 2})
        return err.value.error, ok
    error, ok = run(with_session(gw, ALICE, work))
    assert error.code == -32602
    assert error.message == "invalid params: $.b: expected integer, got string"
    assert ok.content[0].text == "3"


def sse_data(text: str) -> list[dict]:
    # An empty `data:` is a priming event (it carries only an id to resume from).
    return [json.loads(l[len("data: "):]) for l in text.splitlines()
            if l.startswith("data: ") and l[len("data: "):].strip()]


def post(e: procs.Envoy, path: str, key: str, body, sid: str | None = None) -> requests.Response:
    headers = {"authorization": f"Bearer {key}", "accept": "application/json, text/event-stream",
               "content-type": "application/json", "mcp-protocol-version": LATEST_PROTOCOL_VERSION}
    if sid:
        headers["mcp-session-id"] = sid
    return requests.post(f"{e.url}{path}", headers=headers, data=json.dumps(body), timeout=10)


def test_an_sse_list_split_at_every_byte_never_shows_a_denied_tool(gw):
    r = post(gw, "/mcp/split", ALICE, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert "delete_all" not in r.text
    assert r.text.startswith(": hello\n\nevent: message\nid: e1\ndata: ")
    [msg] = sse_data(r.text)
    assert [t["name"] for t in msg["result"]["tools"]] == ["add", "echo"]


def test_a_session_is_resumed_on_a_new_connection_with_the_same_rules(gw):
    async def work(s, sid):
        return sid()
    sid = run(with_session(gw, ALICE, work, keep=True))
    assert sid
    r = post(gw, "/mcp/demo", ALICE, {"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                                      "params": {"name": "echo", "arguments": {"text": "again"}}}, sid)
    assert r.status_code == 200, r.text
    [msg] = sse_data(r.text) if r.headers["content-type"].startswith("text/event-stream") else [r.json()]
    assert msg["id"] == 5 and msg["result"]["content"][0]["text"] == "again"
    r = post(gw, "/mcp/demo", ALICE, {"jsonrpc": "2.0", "id": 6, "method": "tools/call",
                                      "params": {"name": "delete_all"}}, sid)
    assert r.json()["error"]["code"] == -32003
    r = post(gw, "/mcp/demo", ALICE, {"jsonrpc": "2.0", "id": 7, "method": "tools/list"}, sid)
    [msg] = sse_data(r.text) if r.headers["content-type"].startswith("text/event-stream") else [r.json()]
    assert "delete_all" not in json.dumps(msg)


def test_a_per_tool_limit_is_exact_across_workers(gw):
    async def work(s, sid):
        return sid()
    sid = run(with_session(gw, CAROL, work, keep=True))
    # Distinct ids: the server matches replies to requests of one session by id.
    def call(i: int) -> dict:
        return {"jsonrpc": "2.0", "id": i, "method": "tools/call",
                "params": {"name": "search_docs", "arguments": {"query": "q"}}}
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda i: post(gw, "/mcp/demo", CAROL, call(i), sid), range(3 * LIMIT)))
    limited = [r for r in replies if r.headers["content-type"].startswith("application/json")
               and r.json().get("error", {}).get("data", {}).get("code") == "tool_rate_limited"]
    served = [r for r in replies if r.headers["content-type"].startswith("text/event-stream")]
    assert all(r.status_code == 200 for r in replies)
    assert (len(served), len(limited)) == (LIMIT, 2 * LIMIT)
    # Another key's budget is its own.
    async def other(s, _):
        return await s.call_tool("search_docs", {"query": "q"})
    assert not run(with_session(gw, ALICE, other)).isError


@pytest.mark.parametrize("body,status,code", [
    (b"this is not json", 400, -32700),
    (b'{"jsonrpc": "2.0", "id": 1}', 400, -32600),
    (b'{"jsonrpc": "1.0", "id": 1, "method": "tools/list"}', 400, -32600),
    (json.dumps([{"jsonrpc": "2.0", "id": i, "method": "ping"} for i in range(33)]).encode(), 400, -32600),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": 3}}', 200, -32602),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "delete_all"}}', 200, -32003),
])
def test_bad_input_over_raw_http_gets_a_json_rpc_error_never_a_5xx(gw, body, status, code):
    raw = (b"POST /mcp/demo HTTP/1.1\r\nhost: x\r\nauthorization: Bearer " + ALICE.encode() +
           b"\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\n"
           b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    r = rawhttp.http1(gw.port, raw)
    assert r.status == status, r.body
    reply = json.loads(r.body)
    error = reply[0]["error"] if isinstance(reply, list) else reply["error"]
    assert error["code"] == code


def test_unknown_methods_reach_the_server_and_get_its_json_rpc_error(gw):
    async def work(s, sid):
        return sid()
    sid = run(with_session(gw, ALICE, work, keep=True))
    r = post(gw, "/mcp/demo", ALICE, {"jsonrpc": "2.0", "id": 1, "method": "vendor/unknown"}, sid)
    assert r.status_code == 200, r.text
    [msg] = sse_data(r.text) if r.headers["content-type"].startswith("text/event-stream") else [r.json()]
    # The server's own answer (the SDK refuses a method it does not know), not the gateway's.
    assert msg["id"] == 1 and msg["error"]["code"] in (-32601, -32602), msg
    assert not isinstance(msg["error"].get("data"), dict), msg


@pytest.mark.parametrize("chunked", [False, True])
def test_an_oversized_body_gets_413_with_a_json_rpc_error_never_envoys_plain_reply(gw, chunked):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                       "params": {"name": "echo", "arguments": {"text": "x" * (3 << 19)}}}).encode()
    head = (b"POST /mcp/demo HTTP/1.1\r\nhost: x\r\nauthorization: Bearer " + ALICE.encode() +
            b"\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\n")
    if chunked:
        # No length to refuse from: Envoy's own buffer limit answers, in the stage's shape.
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in
                          (body[i:i + 65536] for i in range(0, len(body), 65536)))
        raw = head + b"transfer-encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    else:
        raw = head + b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    r = rawhttp.http1(gw.port, raw)
    assert r.status == 413, (r.status, r.body[:300])
    reply = json.loads(r.body)
    assert reply["jsonrpc"] == "2.0" and reply["id"] is None
    assert (reply["error"]["code"], reply["error"]["data"]["code"]) == (-32600, "body_too_large")


def test_each_json_rpc_request_gets_an_audit_line_with_its_tool_and_refusal(gw):
    tool = "audit_probe"  # a name no other test uses, denied by the server's list
    headers = {"authorization": f"Bearer {ALICE}", "content-type": "application/json",
               "accept": "application/json, text/event-stream"}
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool}}
    r = requests.post(f"{gw.url}/mcp/demo", headers=headers, data=json.dumps(body), timeout=10)
    assert r.json()["error"]["code"] == -32003
    deadline = time.time() + 5
    line = None
    while line is None and time.time() < deadline:
        line = next((l for l in audit.check(gw.audit_log) if l["mcp_tool"] == tool), None)
        time.sleep(0.05)
    assert line is not None
    assert (line["mcp_server"], line["key_id"], line["team"]) == ("demo", "alice", "a")
    assert line["mcp_method"] == "tools/call"
    assert (line["mcp_error_code"], line["mcp_error"]) == (-32003, "tool_not_allowed")
    assert line["bytes_received"] == len(json.dumps(body)) and line["bytes_sent"] == len(r.content)
    assert isinstance(line["duration_ms"], int)


def test_a_resumed_stream_replays_the_list_filtered(gw):
    """A client that lost a stream resumes it with `Last-Event-ID` (GET): the server replays
    the list reply, and the gateway filters the replay like the original."""
    async def work(s, sid):
        return sid()
    sid = run(with_session(gw, ALICE, work, keep=True))
    r = post(gw, "/mcp/demo", ALICE, {"jsonrpc": "2.0", "id": 11, "method": "tools/list"}, sid)
    ids = [l[len("id: "):] for l in r.text.splitlines() if l.startswith("id: ")]
    [listed] = [m for m in sse_data(r.text) if m.get("id") == 11]
    assert "delete_all" not in json.dumps(listed) and len(ids) >= 2, r.text
    headers = {"authorization": f"Bearer {ALICE}", "accept": "text/event-stream",
               "mcp-session-id": sid, "last-event-id": ids[0]}
    with requests.get(f"{gw.url}/mcp/demo", headers=headers, stream=True, timeout=10) as g:
        assert g.status_code == 200 and g.headers["content-type"].startswith("text/event-stream")
        text = ""
        for line in g.iter_lines(decode_unicode=True):
            text += line + "\n"
            if line.startswith("data: ") and '"id":11' in line.replace(" ", ""):
                break
    [replayed] = [m for m in sse_data(text) if m.get("id") == 11]
    assert replayed == listed


PII_TEXT = "mail jane@example.com, ssn 123-45-6789"


def call_echo(e: procs.Envoy, text: str, policy: str | None = None):
    """The echo tool's result, or the McpError the call got."""
    headers = {"authorization": f"Bearer {ALICE}"}
    if policy:
        headers["x-pii-policy"] = policy

    async def go():
        client = httpx.AsyncClient(headers=headers, timeout=30)
        async with client, streamable_http_client(f"{e.url}/mcp/demo", http_client=client) as (r, w, _):
            async with ClientSession(r, w) as s:
                await s.initialize()
                try:
                    return await s.call_tool("echo", {"text": text})
                except McpError as err:
                    return err
    return run(go())


def test_pii_in_tool_arguments_is_redacted_for_the_server_and_restored_for_the_client(gw):
    seen = call_echo(gw, PII_TEXT, "raw")
    assert seen.content[0].text == "mail [EMAIL_1], ssn [US_SSN_1]"
    got = call_echo(gw, PII_TEXT)
    assert got.content[0].text == PII_TEXT
    assert got.structuredContent == {"result": PII_TEXT}


def test_a_blocked_type_in_tool_arguments_is_a_json_rpc_error_before_the_server(gw):
    err = call_echo(gw, PII_TEXT, "strict")
    assert isinstance(err, McpError), err
    assert err.error.code == -32003
    assert "US_SSN" in err.error.message and "123-45-6789" not in str(err.error)


def test_prompt_and_resource_lists_follow_each_keys_grant_and_denied_names_never_appear(gw):
    async def lists(s, _):
        return ((await s.list_tools()).model_dump_json(), (await s.list_prompts()).model_dump_json(),
                (await s.list_resources()).model_dump_json(),
                (await s.list_resource_templates()).model_dump_json())
    tools, prompts, resources, templates = run(with_session(gw, ALICE, lists))
    assert [p["name"] for p in json.loads(prompts)["prompts"]] == ["summarize"]
    assert [r["uri"] for r in json.loads(resources)["resources"]] == [
        u for u in RESOURCES if u.startswith("docs://public/")]
    assert [t["uriTemplate"] for t in json.loads(templates)["resourceTemplates"]] == [
        "docs://public/{name}"]
    # A denied name appears in no list reply at all.
    for reply in (tools, prompts, resources, templates):
        for denied in ("delete_all", "internal_playbook", "docs://internal"):
            assert denied not in reply
    _, prompts, resources, templates = run(with_session(gw, ADMIN, lists))
    assert sorted(p["name"] for p in json.loads(prompts)["prompts"]) == sorted(PROMPTS)
    assert sorted(r["uri"] for r in json.loads(resources)["resources"]) == sorted(RESOURCES)
    assert sorted(t["uriTemplate"] for t in json.loads(templates)["resourceTemplates"]) == sorted(TEMPLATES)


def test_a_denied_prompt_or_resource_is_a_json_rpc_error_and_never_reaches_the_server(gw):
    async def work(s, _):
        errors = []
        for go in (lambda: s.get_prompt("internal_playbook"),
                   lambda: s.read_resource("docs://internal/keys"),
                   lambda: s.read_resource("docs://internal/anything")):
            with pytest.raises(McpError) as err:
                await go()
            errors.append(err.value.error)
        ok = await s.read_resource("docs://public/readme"), await s.get_prompt("summarize", {"text": "t"})
        return errors, ok
    errors, (readme, prompt) = run(with_session(gw, ALICE, work))
    assert [(e.code, e.data["code"]) for e in errors] == [
        (-32003, "prompt_not_allowed"), (-32003, "resource_not_allowed"), (-32003, "resource_not_allowed")]
    assert readme.contents[0].text == "public readme"
    assert prompt.messages[0].content.text == "Summarize: t"

    async def admin(s, _):
        return (await s.get_prompt("internal_playbook")).messages[0].content.text
    assert run(with_session(gw, ADMIN, admin)) == "the internal incident playbook"


def test_pii_in_prompt_messages_and_resource_text_is_restored_or_masked(gw):
    async def work(s, _):
        return (await s.get_prompt("summarize", {"text": PII_TEXT}),
                await s.read_resource("docs://public/contact"))

    def go(policy: str | None):
        headers = {"authorization": f"Bearer {ALICE}", **({"x-pii-policy": policy} if policy else {})}

        async def session():
            client = httpx.AsyncClient(headers=headers, timeout=30)
            async with client, streamable_http_client(f"{gw.url}/mcp/demo", http_client=client) as (r, w, _):
                async with ClientSession(r, w) as s:
                    await s.initialize()
                    return await work(s, None)
        return run(session())
    # `raw`: the server got placeholders and its reply passes as it came.
    prompt, _ = go("raw")
    assert prompt.messages[0].content.text == "Summarize: mail [EMAIL_1], ssn [US_SSN_1]"
    # Default: restored for the caller; PII the server adds on its own is masked.
    prompt, contact = go(None)
    assert prompt.messages[0].content.text == f"Summarize: {PII_TEXT}"
    assert contact.contents[0].text == "write to [EMAIL_1]"


def test_a_tool_call_is_an_execute_tool_span_and_its_trace_context_reaches_the_server(gw):
    async def work(s, sid):
        return sid()
    sid = run(with_session(gw, ALICE, work, keep=True))
    trace_id, client_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    headers = {"authorization": f"Bearer {ALICE}", "accept": "application/json, text/event-stream",
               "content-type": "application/json", "mcp-protocol-version": LATEST_PROTOCOL_VERSION,
               "mcp-session-id": sid, "traceparent": f"00-{trace_id}-{client_span}-01"}
    body = {"jsonrpc": "2.0", "id": 21, "method": "tools/call",
            "params": {"name": "add", "arguments": {"a": 1, "b": 1}}}
    r = requests.post(f"{gw.url}/mcp/demo", headers=headers, data=json.dumps(body), timeout=10)
    assert r.status_code == 200, r.text
    spans = gw.receiver.wait_spans(lambda ss: any(s["trace_id"] == trace_id for s in ss))
    [span] = [s for s in spans if s["trace_id"] == trace_id]
    assert span["parent_span_id"] == client_span
    a = span["attributes"]
    assert (a.get("gen_ai.operation.name"), a.get("gen_ai.tool.name")) == ("execute_tool", "add"), a
    assert a["aimesh.key.id"] == "alice"
    # The server got the same trace, its parent now Envoy's span.
    seen = [tp.split("-") for tp in gw.mcp_server.traceparents()]
    assert ["00", trace_id, span["span_id"], "01"] in seen, seen


def test_tool_calls_are_counted_as_execute_tool_operations(gw):
    async def work(s, _):
        return await s.call_tool("add", {"a": 1, "b": 2})
    run(with_session(gw, ALICE, work))
    # Envoy merges the workers' histogram samples at its stats flush (every 5 s): poll.
    deadline = time.time() + 12
    while True:
        prom = gw.admin_get("/stats?format=prometheus")
        series = [l for l in prom.splitlines()
                  if l.startswith("aimesh_gen_ai_client_operation_duration_milliseconds_count{")
                  and 'gen_ai_operation_name="execute_tool"' in l and 'gen_ai_tool_name="add"' in l]
        if (series and int(series[0].rsplit(" ", 1)[1]) >= 1) or time.time() > deadline:
            break
        time.sleep(0.2)
    assert series and int(series[0].rsplit(" ", 1)[1]) >= 1, prom
