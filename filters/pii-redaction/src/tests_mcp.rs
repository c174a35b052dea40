//! MCP traffic on `/mcp/<server>`: strings inside `tools/call` arguments are redacted (or the
//! call blocked) before the server sees them, and tool results (`result.content[].text`) are
//! restored and masked in JSON replies and in SSE streams split at every byte.

use aimesh_host::memory::{Exchange, World};
use aimesh_host::Action;
use serde_json::{json, Value};

use crate::stage::STATE;
use crate::tests::stage;

const JSON: &[(&str, &str)] = &[(":status", "200"), ("content-type", "application/json")];
const SSE: &[(&str, &str)] = &[(":status", "200"), ("content-type", "text/event-stream")];

fn call(args: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "echo", "arguments": args}}))
    .unwrap()
}

fn mcp(world: &World, cfg: &Value) -> Exchange {
    let hs = [
        (":method", "POST"),
        (":path", "/mcp/demo"),
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
    ];
    Exchange::new(world, vec![stage(world, cfg)], &hs)
}

fn result(text: &str) -> String {
    json!({"jsonrpc": "2.0", "id": 7, "result": {"content": [{"type": "text", "text": text}],
        "isError": false}})
    .to_string()
}

fn result_text(doc: &[u8]) -> String {
    let v: Value = serde_json::from_slice(doc).unwrap();
    v["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The data of the one `data:` event in an SSE body.
fn sse_data(body: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(body).unwrap();
    let line = text.lines().find(|l| l.starts_with("data: ")).unwrap();
    line.as_bytes()["data: ".len()..].to_vec()
}

const USER: &str = "mail jane@example.com, ssn 123-45-6789, card 4111 1111 1111 1111";

fn restoring() -> Value {
    json!({"policies": {"default": {"restore": true}}})
}

#[test]
fn strings_inside_arguments_are_masked_keys_and_numbers_kept() {
    let w = World::default();
    let mut x = mcp(&w, &json!({}));
    let args = json!({"text": USER, "n": 4111111111111111u64,
        "nested": {"list": ["call +1 415 555 0123"]}, "jane@example.com": true});
    assert_eq!(x.request(&call(&args)), Action::Continue);
    let sent: Value = serde_json::from_slice(&x.sent_upstream).unwrap();
    let a = &sent["params"]["arguments"];
    assert_eq!(
        a["text"],
        "mail [EMAIL_1], ssn [US_SSN_1], card [CREDIT_CARD_1]"
    );
    assert_eq!(a["n"], 4111111111111111u64);
    assert_eq!(a["nested"]["list"][0], "call [PHONE_1]");
    assert_eq!(a["[EMAIL_1]"], true);
    assert_eq!(sent["method"], "tools/call");
    assert_eq!(sent["params"]["name"], "echo");
}

#[test]
fn a_blocked_type_in_arguments_refuses_the_call() {
    let w = World::default();
    let cfg = json!({"policies": {"default": {"actions": {"US_SSN": "block"}}}});
    let mut x = mcp(&w, &cfg);
    assert_eq!(x.request(&call(&json!({"text": USER}))), Action::Pause);
    assert!(x.sent_upstream.is_empty());
    let reply = &x.host.replies[0];
    assert_eq!(reply.status, 200);
    let v: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(v["id"], 7);
    assert_eq!(v["error"]["code"], -32003);
    assert_eq!(v["error"]["data"]["code"], "pii_detected");
    assert!(!String::from_utf8_lossy(&reply.body).contains("123-45-6789"));
    assert_eq!(w.metrics.counter("aimesh.pii_redaction.blocked"), 1);
}

#[test]
fn tool_result_text_is_restored_in_a_json_reply() {
    let w = World::default();
    let mut x = mcp(&w, &restoring());
    x.request(&call(&json!({"text": USER})));
    // The server echoes what it received, placeholders included.
    let echoed: Value = serde_json::from_slice(&x.sent_upstream).unwrap();
    let reply = result(echoed["params"]["arguments"]["text"].as_str().unwrap());
    for split in [1, 5, reply.len()] {
        let mut y = mcp(&w, &restoring());
        y.request(&call(&json!({"text": USER})));
        y.response(JSON, reply.as_bytes(), split);
        assert_eq!(result_text(&y.sent_downstream), USER, "split {split}");
    }
}

#[test]
fn tool_result_text_is_restored_and_masked_in_sse_split_at_every_byte() {
    let w = World::default();
    let reply = result("got [EMAIL_1] and [US_SSN_1]; also bob@example.org");
    let body = format!("event: message\nid: 3_0\ndata: {reply}\n\n");
    let want = "got jane@example.com and 123-45-6789; also [EMAIL_2]";
    for split in 1..=body.len() {
        let mut x = mcp(&w, &restoring());
        x.request(&call(&json!({"text": USER})));
        x.response(SSE, body.as_bytes(), split);
        let out = std::str::from_utf8(&x.sent_downstream).unwrap();
        assert!(
            out.starts_with("event: message\nid: 3_0\n"),
            "split {split}"
        );
        assert_eq!(
            result_text(&sse_data(out.as_bytes())),
            want,
            "split {split}"
        );
    }
    let mut x = mcp(&w, &restoring());
    x.request(&call(&json!({"text": USER})));
    x.response(SSE, body.as_bytes(), 9);
    assert_eq!(
        x.host.state_text(STATE).as_deref(),
        Some("CREDIT_CARD:1,EMAIL:2,US_SSN:1")
    );
}

#[test]
fn other_replies_and_other_paths_keep_their_bytes() {
    let w = World::default();
    // A tools/list reply: descriptions are the server's, not a tool result.
    let list = br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"t","description":"jane@example.com"}]}}"#;
    let mut x = mcp(&w, &json!({}));
    x.request(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
    x.response(JSON, list, 4);
    assert_eq!(x.sent_downstream, list);
    // A tool result that holds no PII passes byte for byte, event lines included.
    let body = format!("id: 1\ndata: {}\r\n\r\n: ping\n\n", result("hello"));
    let mut x = mcp(&w, &json!({}));
    x.request(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
    x.response(SSE, body.as_bytes(), 3);
    assert_eq!(x.sent_downstream, body.as_bytes());
}

/// A `prompts/get` reply (message text and an embedded resource), a tool result embedding a
/// resource and a `resources/read` reply: each restored and masked, JSON and SSE, split at every
/// byte.
#[test]
fn prompt_messages_and_embedded_resources_are_restored_and_masked_split_at_every_byte() {
    let w = World::default();
    let replies = [
        json!({"jsonrpc": "2.0", "id": 7, "result": {"description": "d", "messages": [
            {"role": "user", "content": {"type": "text", "text": "to [EMAIL_1], cc bob@example.org"}},
            {"role": "user", "content": {"type": "resource", "resource": {
                "uri": "mem://a", "text": "ssn [US_SSN_1] and bob@example.org"}}}]}}),
        json!({"jsonrpc": "2.0", "id": 7, "result": {"content": [{"type": "resource",
            "resource": {"uri": "mem://a", "text": "ssn [US_SSN_1] and bob@example.org"}}]}}),
        json!({"jsonrpc": "2.0", "id": 7, "result": {"contents": [
            {"uri": "mem://a", "text": "ssn [US_SSN_1] and bob@example.org"}]}}),
    ];
    let texts = |v: &Value| -> Vec<String> {
        let r = &v["result"];
        let mut out = Vec::new();
        for m in r["messages"].as_array().into_iter().flatten() {
            let c = &m["content"];
            out.push(
                c["text"]
                    .as_str()
                    .or(c["resource"]["text"].as_str())
                    .unwrap()
                    .into(),
            );
        }
        for c in r["content"].as_array().into_iter().flatten() {
            out.push(c["resource"]["text"].as_str().unwrap().into());
        }
        for c in r["contents"].as_array().into_iter().flatten() {
            out.push(c["text"].as_str().unwrap().into());
        }
        out
    };
    let want_text = "to jane@example.com, cc [EMAIL_2]";
    let want_resource = "ssn 123-45-6789 and [EMAIL_2]";
    for reply in &replies {
        let doc = reply.to_string();
        let sse = format!("event: message\nid: 9\ndata: {doc}\n\n");
        for (headers, body) in [(JSON, doc.as_str()), (SSE, sse.as_str())] {
            for split in 1..=body.len() {
                let mut x = mcp(&w, &restoring());
                x.request(&call(&json!({"text": USER})));
                x.response(headers, body.as_bytes(), split);
                let out = if headers == SSE {
                    sse_data(&x.sent_downstream)
                } else {
                    x.sent_downstream.clone()
                };
                let v: Value = serde_json::from_slice(&out).unwrap();
                let got = texts(&v);
                let want: Vec<&str> = if reply["result"]["messages"].is_array() {
                    vec![want_text, want_resource]
                } else {
                    vec![want_resource]
                };
                assert_eq!(got, want, "split {split} of {body}");
                assert_eq!(v["id"], 7);
            }
        }
    }
}
