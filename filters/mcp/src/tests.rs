//! The stage through the in-memory host: refusals that never reach the server, list replies
//! filtered whole and split at every byte, arguments checked against learned schemas, per-tool
//! limits shared by "workers" (one store, many streams).

use aimesh_host::memory::{Exchange, World};
use aimesh_host::{Action, StageRoot};
use serde_json::{json, Value};

const CONFIG: &str = r#"{
  "servers": {"demo": {"tools": ["add", "echo", "search_*"]}},
  "callers": {"admin": {"demo": {"tools": ["*"]}}, "closed": {"demo": {"tools": [], "prompts": [], "resources": []}}},
  "limits": [{"server": "demo", "tool": "add", "calls_per_minute": 3, "max_concurrent": 2}],
  "known_callers": ["alice", "admin"],
  "max_body_bytes": 4096,
  "max_batch": 3
}"#;

fn root(world: &World) -> Box<dyn StageRoot> {
    (crate::STAGE.configure)(CONFIG.as_bytes(), world).unwrap()
}

fn exchange(world: &World, root: &dyn StageRoot, key: &str) -> Exchange {
    let mut ex = Exchange::new(
        world,
        vec![root.new_stream().unwrap()],
        &[
            (":method", "POST"),
            (":path", "/mcp/demo"),
            ("accept-encoding", "gzip"),
        ],
    );
    ex.host.facts.key_id = Some(key.into());
    ex
}

fn call(tool: &str, args: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
        "params": {"name": tool, "arguments": args}}))
    .unwrap()
}

/// Sends `body`; the local reply's (status, JSON) if the stage answered.
fn send(
    world: &World,
    root: &dyn StageRoot,
    key: &str,
    body: &[u8],
) -> (Exchange, Option<(u16, Value)>) {
    let mut ex = exchange(world, root, key);
    ex.request(body);
    let reply = ex.reply().map(|r| (r.status, r.json()));
    (ex, reply)
}

fn list_reply() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": [
        {"name": "add", "inputSchema": {"type": "object", "properties": {
            "a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}},
        {"name": "delete_all", "inputSchema": {"type": "object"}},
        {"name": "echo", "inputSchema": {"type": "object"}}]}})
}

fn names(v: &Value) -> Vec<String> {
    v["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn an_allowed_call_passes_untouched_and_compression_is_refused_upstream() {
    let world = World::default();
    let r = root(&world);
    let body = call("echo", json!({"text": "hi"}));
    let (ex, reply) = send(&world, r.as_ref(), "alice", &body);
    assert_eq!(reply, None);
    assert_eq!(ex.sent_upstream, body);
    assert!(!ex.host.request().has("accept-encoding"));
}

#[test]
fn a_denied_tool_gets_a_json_rpc_error_and_never_reaches_the_server() {
    let world = World::default();
    let r = root(&world);
    let (ex, reply) = send(&world, r.as_ref(), "alice", &call("delete_all", json!({})));
    let (status, v) = reply.unwrap();
    assert_eq!(
        (status, &v["id"], &v["error"]["code"]),
        (200, &json!(9), &json!(-32003))
    );
    assert_eq!(v["error"]["data"]["code"], "tool_not_allowed");
    assert!(ex.sent_upstream.is_empty());
    // The admin's own grant allows it.
    let (_, reply) = send(&world, r.as_ref(), "admin", &call("delete_all", json!({})));
    assert_eq!(reply, None);
}

#[test]
fn a_caller_with_nothing_allowed_gets_403_in_the_openai_shape() {
    let world = World::default();
    let r = root(&world);
    let mut ex = exchange(&world, r.as_ref(), "closed");
    assert_eq!(ex.request_headers(false), Action::Pause);
    let reply = ex.reply().unwrap();
    assert_eq!(reply.status, 403);
    assert_eq!(reply.json()["error"]["code"], "mcp_server_not_allowed");
}

#[test]
fn bad_bodies_get_json_rpc_errors_with_http_400_or_413() {
    let world = World::default();
    let r = root(&world);
    let cases: Vec<(Vec<u8>, u16, i64)> = vec![
        (b"not json".to_vec(), 400, -32700),
        (b"{\"id\": 1}".to_vec(), 400, -32600),
        (b"[]".to_vec(), 400, -32600),
        (
            serde_json::to_vec(&vec![
                json!({"jsonrpc": "2.0", "method": "ping", "id": 1});
                4
            ])
            .unwrap(),
            400,
            -32600,
        ),
        (vec![b' '; 5000], 413, -32600),
        (
            serde_json::to_vec(
                &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {}}),
            )
            .unwrap(),
            200,
            -32602,
        ),
    ];
    for (body, status, code) in cases {
        let (ex, reply) = send(&world, r.as_ref(), "alice", &body);
        let (s, v) = reply.unwrap_or_else(|| panic!("{} passed", String::from_utf8_lossy(&body)));
        let err = if v.is_array() {
            &v[0]["error"]
        } else {
            &v["error"]
        };
        assert_eq!((s, err["code"].as_i64()), (status, Some(code)), "{v}");
        assert!(ex.sent_upstream.is_empty());
    }
    // Unknown methods are the server's business.
    let unknown = br#"{"jsonrpc": "2.0", "id": 1, "method": "vendor/thing"}"#;
    assert_eq!(send(&world, r.as_ref(), "alice", unknown).1, None);
}

#[test]
fn a_batch_with_a_denied_call_is_answered_whole_and_not_forwarded() {
    let world = World::default();
    let r = root(&world);
    let body = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo"}},
        {"jsonrpc": "2.0", "method": "notifications/progress"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "delete_all"}}]);
    let (ex, reply) = send(
        &world,
        r.as_ref(),
        "alice",
        &serde_json::to_vec(&body).unwrap(),
    );
    let (status, v) = reply.unwrap();
    assert_eq!(status, 200);
    assert_eq!(v[0]["error"]["data"]["code"], "batch_refused");
    assert_eq!(v[1]["error"]["data"]["code"], "tool_not_allowed");
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert!(ex.sent_upstream.is_empty());
}

#[test]
fn a_json_list_reply_is_filtered_and_teaches_the_schemas() {
    let world = World::default();
    let r = root(&world);
    let list = br#"{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}"#;
    let (mut ex, _) = send(&world, r.as_ref(), "alice", list);
    let body = serde_json::to_vec(&list_reply()).unwrap();
    ex.response(
        &[
            (":status", "200"),
            ("content-type", "application/json"),
            ("content-length", "999"),
        ],
        &body,
        7,
    );
    let out: Value = serde_json::from_slice(&ex.sent_downstream).unwrap();
    assert_eq!(names(&out), ["add", "echo"]);
    assert!(!ex.host.response().has("content-length"));
    // The schema learned from the list now refuses bad arguments before the server sees them.
    let (ex, reply) = send(
        &world,
        r.as_ref(),
        "alice",
        &call("add", json!({"a": 1, "b": "x"})),
    );
    let (status, v) = reply.unwrap();
    assert_eq!((status, v["error"]["code"].as_i64()), (200, Some(-32602)));
    assert_eq!(
        v["error"]["message"],
        "invalid params: $.b: expected integer, got string"
    );
    assert!(ex.sent_upstream.is_empty());
    assert_eq!(
        send(
            &world,
            r.as_ref(),
            "alice",
            &call("add", json!({"a": 1, "b": 2}))
        )
        .1,
        None
    );
}

#[test]
fn an_sse_list_reply_split_at_every_byte_never_shows_a_denied_tool() {
    let world = World::default();
    let r = root(&world);
    let data = serde_json::to_string(&list_reply()).unwrap();
    let stream = format!(": ping\n\nevent: message\nid: ev-1\ndata: {data}\n\nid: ev-2\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}}\n\n");
    let mut outputs = Vec::new();
    for cut in 0..=stream.len() {
        let (mut ex, _) = send(
            &world,
            r.as_ref(),
            "alice",
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
        );
        ex.response_headers(
            &[(":status", "200"), ("content-type", "text/event-stream")],
            false,
        );
        ex.response_chunk(&stream.as_bytes()[..cut], false);
        ex.response_chunk(&stream.as_bytes()[cut..], true);
        let out = String::from_utf8(ex.sent_downstream.clone()).unwrap();
        assert!(!out.contains("delete_all"), "cut {cut}: {out}");
        outputs.push(out);
    }
    assert!(outputs.windows(2).all(|w| w[0] == w[1]));
    let out = &outputs[0];
    assert!(
        out.starts_with(": ping\n\nevent: message\nid: ev-1\ndata: {"),
        "{out}"
    );
    assert!(out.ends_with(
        "id: ev-2\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}\n\n"
    ));
    let event = out.split("\n\n").nth(1).unwrap();
    let v: Value = serde_json::from_str(event.split("data: ").nth(1).unwrap()).unwrap();
    assert_eq!(names(&v), ["add", "echo"]);
}

#[test]
fn per_tool_limits_are_shared_by_every_stream_and_released_at_the_end() {
    let world = World::default();
    let r = root(&world);
    let body = call("add", json!({"a": 1, "b": 2}));
    // Two in flight at once: the third waits for one to end.
    let (mut first, a) = send(&world, r.as_ref(), "alice", &body);
    let (_second, b) = send(&world, r.as_ref(), "alice", &body);
    let (_, c) = send(&world, r.as_ref(), "alice", &body);
    assert_eq!((a, b), (None, None));
    assert_eq!(c.unwrap().1["error"]["data"]["code"], "tool_rate_limited");
    first.log();
    // The refused call took no minute budget: one call of the three per minute is left.
    let (mut third, d) = send(&world, r.as_ref(), "alice", &body);
    assert_eq!(d, None);
    third.log();
    let (_, e) = send(&world, r.as_ref(), "alice", &body);
    let v = e.unwrap().1;
    assert_eq!(
        (v["error"]["code"].as_i64(), &v["error"]["data"]["code"]),
        (Some(-32029), &json!("tool_rate_limited"))
    );
    assert!(v["error"]["data"]["retry_after_ms"].as_u64().unwrap() > 0);
    // Another caller and another tool have their own budgets.
    assert_eq!(send(&world, r.as_ref(), "admin", &body).1, None);
    assert_eq!(
        send(&world, r.as_ref(), "alice", &call("echo", json!({}))).1,
        None
    );
    world.advance(std::time::Duration::from_secs(20));
    assert_eq!(send(&world, r.as_ref(), "alice", &body).1, None);
}

#[test]
fn other_paths_and_unknown_servers_pass_untouched() {
    let world = World::default();
    let r = root(&world);
    for path in ["/v1/chat/completions", "/mcp/other", "/mcp/demox"] {
        let mut ex = Exchange::new(
            &world,
            vec![r.new_stream().unwrap()],
            &[(":method", "POST"), (":path", path)],
        );
        assert_eq!(ex.request(b"not json"), Action::Continue, "{path}");
        assert!(ex.reply().is_none());
    }
    assert_eq!(crate::stage::server_of("/mcp/demo/x?y"), Some("demo"));
    assert_eq!(crate::stage::server_of("/mcp/demo?y"), Some("demo"));
    assert_eq!(crate::stage::server_of("/mcp/"), None);
}

#[test]
fn every_request_is_counted_with_its_server_tool_and_outcome() {
    let world = World::default();
    let r = root(&world);
    let (mut ex, _) = send(&world, r.as_ref(), "alice", &call("delete_all", json!({})));
    ex.log();
    let (mut ex, _) = send(&world, r.as_ref(), "alice", &call("echo", json!({})));
    ex.log();
    let m = &world.metrics;
    assert_eq!(m.counter("aimesh.mcp.requests.server.demo.tool.delete_all.method.tools_call.outcome.tool_not_allowed"), 1);
    assert_eq!(
        m.counter("aimesh.mcp.requests.server.demo.tool.echo.method.tools_call.outcome.forwarded"),
        1
    );
    assert_eq!(
        m.samples("aimesh.mcp.duration_ms.server.demo.tool.echo")
            .len(),
        1
    );
    use aimesh_core::accounting::audit::{encode_struct, Value as V};
    let want = encode_struct(&[
        ("method", V::Str("tools/call")),
        ("tool", V::Str("echo")),
        ("error_code", V::Null),
        ("error", V::Null),
    ]);
    assert_eq!(ex.host.state["aimesh.mcp"], want);
}

#[test]
fn a_json_reply_to_a_call_streams_through_unread() {
    let world = World::default();
    let r = root(&world);
    let (mut ex, _) = send(&world, r.as_ref(), "alice", &call("echo", json!({})));
    // Shaped like a list, but the request asked for none: not held, not parsed.
    let body = serde_json::to_vec(&list_reply()).unwrap();
    assert_eq!(
        ex.response_headers(
            &[(":status", "200"), ("content-type", "application/json")],
            false
        ),
        Action::Continue
    );
    assert_eq!(ex.response_chunk(&body[..10], false), Action::Continue);
    ex.response_chunk(&body[10..], true);
    assert_eq!(ex.sent_downstream, body);
}

const LISTS: &str = r#"{
  "servers": {"demo": {"prompts": ["summarize", "public_*"], "resources": ["docs://public/*"]}},
  "callers": {"admin": {"demo": {"prompts": ["*"], "resources": ["*"]}}},
  "jwt_rules": {"alice": {"demo": {"tools": ["add"], "prompts": [], "resources": ["docs://*"]}}}
}"#;

fn lists_root(world: &World) -> Box<dyn StageRoot> {
    (crate::STAGE.configure)(LISTS.as_bytes(), world).unwrap()
}

fn rpc(id: u64, method: &str, params: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
        .unwrap()
}

#[test]
fn denied_prompts_and_resources_get_json_rpc_errors_and_never_reach_the_server() {
    let world = World::default();
    let r = lists_root(&world);
    let cases = [
        (
            "prompts/get",
            json!({"name": "leak_secrets"}),
            "prompt_not_allowed",
        ),
        (
            "resources/read",
            json!({"uri": "docs://internal/keys"}),
            "resource_not_allowed",
        ),
        (
            "resources/subscribe",
            json!({"uri": "file:///etc/passwd"}),
            "resource_not_allowed",
        ),
    ];
    for (method, params, code) in cases {
        let (ex, reply) = send(&world, r.as_ref(), "alice", &rpc(4, method, params.clone()));
        let (status, v) = reply.unwrap_or_else(|| panic!("{method} passed"));
        assert_eq!(
            (status, &v["id"], &v["error"]["code"]),
            (200, &json!(4), &json!(-32003))
        );
        assert_eq!(v["error"]["data"]["code"], code);
        assert!(ex.sent_upstream.is_empty());
        // The admin's grant opens them.
        assert_eq!(
            send(&world, r.as_ref(), "admin", &rpc(4, method, params)).1,
            None
        );
    }
    for (method, params) in [
        ("prompts/get", json!({"name": "public_faq"})),
        ("resources/read", json!({"uri": "docs://public/readme"})),
    ] {
        let body = rpc(5, method, params);
        let (ex, reply) = send(&world, r.as_ref(), "alice", &body);
        assert_eq!((reply, ex.sent_upstream), (None, body));
    }
}

#[test]
fn a_jwt_rule_gets_its_own_grant_never_the_key_of_the_same_id() {
    let world = World::default();
    let r = lists_root(&world);
    let jwt = |body: &[u8]| {
        let mut ex = exchange(&world, r.as_ref(), "alice");
        ex.host.facts.subject = Some("user-7".into());
        ex.request(body);
        ex.reply()
            .map(|r| r.json()["error"]["data"]["code"].clone())
    };
    // The rule: only `add`, no prompt, every docs:// resource.
    assert_eq!(jwt(&call("add", json!({}))), None);
    assert_eq!(
        jwt(&call("echo", json!({}))),
        Some(json!("tool_not_allowed"))
    );
    let prompt = rpc(1, "prompts/get", json!({"name": "summarize"}));
    assert_eq!(jwt(&prompt), Some(json!("prompt_not_allowed")));
    let internal = rpc(1, "resources/read", json!({"uri": "docs://internal/keys"}));
    assert_eq!(jwt(&internal), None);
    // The key `alice` (no JWT) has the server's defaults.
    assert_eq!(
        send(&world, r.as_ref(), "alice", &call("echo", json!({}))).1,
        None
    );
    assert_eq!(send(&world, r.as_ref(), "alice", &prompt).1, None);
}

/// Every list kind of the lists config, one reply each, with the allowed entries first.
fn list_replies() -> Vec<(&'static str, Value, Vec<&'static str>)> {
    vec![
        (
            "prompts/list",
            json!({"jsonrpc": "2.0", "id": 1, "result": {"prompts": [
                {"name": "summarize"}, {"name": "leak_secrets"}, {"name": "public_faq"}]}}),
            vec!["summarize", "public_faq"],
        ),
        (
            "resources/list",
            json!({"jsonrpc": "2.0", "id": 1, "result": {"resources": [
                {"uri": "docs://public/readme", "name": "r"},
                {"uri": "docs://internal/keys", "name": "k"}]}}),
            vec!["docs://public/readme"],
        ),
        (
            "resources/templates/list",
            json!({"jsonrpc": "2.0", "id": 1, "result": {"resourceTemplates": [
                {"uriTemplate": "docs://public/{name}", "name": "p"},
                {"uriTemplate": "docs://internal/{name}", "name": "i"}]}}),
            vec!["docs://public/{name}"],
        ),
    ]
}

fn listed(v: &Value) -> Vec<String> {
    let r = &v["result"];
    let (items, key) = if let Some(p) = r["prompts"].as_array() {
        (p, "name")
    } else if let Some(p) = r["resources"].as_array() {
        (p, "uri")
    } else {
        (r["resourceTemplates"].as_array().unwrap(), "uriTemplate")
    };
    items
        .iter()
        .map(|i| i[key].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn prompt_resource_and_template_lists_are_filtered_json_and_sse_split_at_every_byte() {
    let world = World::default();
    let r = lists_root(&world);
    for (method, reply, want) in list_replies() {
        let doc = serde_json::to_string(&reply).unwrap();
        let sse = format!("id: 3\nevent: message\ndata: {doc}\n\n");
        let json_hs = [(":status", "200"), ("content-type", "application/json")];
        let sse_hs = [(":status", "200"), ("content-type", "text/event-stream")];
        for (hs, body) in [(&json_hs, doc.as_str()), (&sse_hs, sse.as_str())] {
            for split in 1..=body.len() {
                let (mut ex, reply) = send(&world, r.as_ref(), "alice", &rpc(1, method, json!({})));
                assert_eq!(reply, None);
                ex.response(hs, body.as_bytes(), split);
                let out = String::from_utf8(ex.sent_downstream.clone()).unwrap();
                let data = match out.strip_prefix("id: 3\nevent: message\ndata: ") {
                    Some(rest) => rest.trim_end().to_string(),
                    None => out.clone(),
                };
                let v: Value = serde_json::from_str(&data).unwrap_or_else(|e| panic!("{e}: {out}"));
                assert_eq!(listed(&v), want, "{method} split {split}");
            }
        }
        // The admin sees the whole list.
        let (mut ex, _) = send(&world, r.as_ref(), "admin", &rpc(1, method, json!({})));
        ex.response(
            &[(":status", "200"), ("content-type", "application/json")],
            doc.as_bytes(),
            7,
        );
        assert_eq!(ex.sent_downstream, doc.as_bytes());
    }
}

#[test]
fn a_declared_length_over_the_limit_is_refused_before_any_body_is_buffered() {
    let world = World::default();
    let r = root(&world);
    let mut ex = Exchange::new(
        &world,
        vec![r.new_stream().unwrap()],
        &[
            (":method", "POST"),
            (":path", "/mcp/demo"),
            ("content-length", "4097"),
        ],
    );
    ex.host.facts.key_id = Some("alice".into());
    assert_eq!(ex.request_headers(false), Action::Pause);
    let reply = ex.reply().unwrap();
    let v = reply.json();
    assert_eq!((reply.status, &v["error"]["code"]), (413, &json!(-32600)));
    assert_eq!(
        (&v["id"], &v["error"]["data"]["code"]),
        (&Value::Null, &json!("body_too_large"))
    );
    // At the limit it is read and checked as usual.
    let body = call("echo", json!({"text": "x".repeat(4000)}));
    let len = body.len().to_string();
    let mut ex = Exchange::new(
        &world,
        vec![r.new_stream().unwrap()],
        &[
            (":method", "POST"),
            (":path", "/mcp/demo"),
            ("content-length", len.as_str()),
        ],
    );
    ex.host.facts.key_id = Some("alice".into());
    assert_eq!(ex.request(&body), Action::Continue);
    assert_eq!(ex.sent_upstream, body);
}

#[test]
fn a_tool_call_is_an_execute_tool_operation_and_its_record_is_out_before_the_response() {
    let world = World::default();
    let r = root(&world);
    let (mut ex, _) = send(&world, r.as_ref(), "alice", &call("echo", json!({})));
    // Envoy finalizes the span before `log`: the record is there once the request is decided.
    assert!(ex.host.state.contains_key("aimesh.mcp"));
    ex.log();
    let (mut ex, _) = send(
        &world,
        r.as_ref(),
        "alice",
        &rpc(2, "tools/list", json!({})),
    );
    ex.log();
    let m = &world.metrics;
    let name = "aimesh.gen_ai.client.operation.duration.milliseconds.operation_name.execute_tool";
    assert_eq!(m.samples(&format!("{name}.tool_name.echo")).len(), 1);
    assert_eq!(m.samples(&format!("{name}.tool_name.none")).len(), 0);
}
