//! The stage through the in-memory host: one attempt per exchange, its endpoint's cluster in
//! the host metadata, bodies split anywhere.

use aimesh_host::memory::{Exchange, World};
use aimesh_host::{Action, StageRoot};
use serde_json::{json, Value};

use crate::HOST_CLUSTER;

fn root(world: &World) -> Box<dyn StageRoot> {
    let cfg = json!({"clusters": {"provider.claude": "anthropic", "provider.vllm": "openai"},
        "default_max_tokens": 321});
    (crate::STAGE.configure)(cfg.to_string().as_bytes(), world).expect("config")
}

fn attempt(world: &World, r: &dyn StageRoot, path: &str, cluster: Option<&str>) -> Exchange {
    let mut ex = Exchange::new(
        world,
        vec![r.new_stream().expect("stream")],
        &[
            (":method", "POST"),
            (":path", path),
            ("content-length", "1"),
            ("accept-encoding", "gzip"),
            ("anthropic-beta", "x"),
        ],
    );
    if let Some(c) = cluster {
        ex.host
            .state
            .insert(HOST_CLUSTER.join("."), c.as_bytes().to_vec());
    }
    ex
}

fn json_of(b: &[u8]) -> Value {
    serde_json::from_slice(b).expect("json")
}

const OPENAI_REQ: &str = r#"{"model":"claude-x","stream":false,"messages":[{"role":"system","content":"s"},{"role":"user","content":"hi"}]}"#;

#[test]
fn openai_client_to_anthropic_provider_whole() {
    let world = World::default();
    let r = root(&world);
    let mut ex = attempt(
        &world,
        r.as_ref(),
        "/v1/chat/completions",
        Some("provider.claude"),
    );
    assert_eq!(ex.request_headers(false), Action::Pause);
    let body = OPENAI_REQ.as_bytes();
    assert_eq!(ex.request_chunk(&body[..7], false), Action::Pause);
    assert_eq!(ex.request_chunk(&body[7..], true), Action::Continue);
    let sent = json_of(&ex.sent_upstream);
    assert_eq!(sent["max_tokens"], 321);
    assert_eq!(sent["system"], json!([{"type": "text", "text": "s"}]));
    let hs = ex.host.request();
    assert_eq!(hs.get(":path"), Some("/v1/messages"));
    assert_eq!(hs.get("anthropic-version"), Some("2023-06-01"));
    assert_eq!(hs.get("accept-encoding"), None);
    // A beta feature the client asked Anthropic for still reaches Anthropic.
    assert_eq!(hs.get("anthropic-beta"), Some("x"));
    let len = ex.sent_upstream.len().to_string();
    assert_eq!(hs.get("content-length"), Some(len.as_str()));
    let reply = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [{"type": "text", "text": "hello"}], "stop_reason": "end_turn",
        "usage": {"input_tokens": 5, "output_tokens": 2}});
    ex.response(
        &[
            (":status", "200"),
            ("content-type", "application/json"),
            ("content-length", "99"),
        ],
        reply.to_string().as_bytes(),
        10,
    );
    let out = json_of(&ex.sent_downstream);
    assert_eq!(out["object"], "chat.completion");
    assert_eq!(out["choices"][0]["message"]["content"], "hello");
    assert_eq!(out["usage"]["total_tokens"], 7);
    assert_eq!(ex.host.response().get("content-length"), None);
    assert_eq!(world.metrics.counter("aimesh.translate.requests"), 1);
}

#[test]
fn anthropic_client_to_openai_provider_streamed_at_odd_splits() {
    let world = World::default();
    let r = root(&world);
    let mut ex = attempt(
        &world,
        r.as_ref(),
        "/v1/messages?beta=true",
        Some("provider.vllm"),
    );
    assert_eq!(ex.request_headers(false), Action::Pause);
    let req = json!({"model": "qwen", "max_tokens": 64, "stream": true,
        "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(
        ex.request_chunk(req.to_string().as_bytes(), true),
        Action::Continue
    );
    let sent = json_of(&ex.sent_upstream);
    assert_eq!(sent["stream_options"], json!({"include_usage": true}));
    let hs = ex.host.request();
    assert_eq!(hs.get(":path"), Some("/v1/chat/completions?beta=true"));
    assert_eq!(hs.get("anthropic-beta"), None);
    let chunks = "data: {\"id\":\"chatcmpl-1\",\"model\":\"qwen\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n\
data: {\"id\":\"chatcmpl-1\",\"model\":\"qwen\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n\
data: {\"id\":\"chatcmpl-1\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\ndata: [DONE]\n\n";
    ex.response(
        &[(":status", "200"), ("content-type", "text/event-stream")],
        chunks.as_bytes(),
        7,
    );
    let out = String::from_utf8(ex.sent_downstream.clone()).expect("utf-8");
    assert!(out.starts_with("event: message_start\n"), "{out}");
    assert!(out.contains("\"text\":\"Hi\""), "{out}");
    assert!(out.contains("\"usage\":{\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"input_tokens\":3,\"output_tokens\":1}"), "{out}");
    assert!(
        out.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"),
        "{out}"
    );
}

#[test]
fn same_dialect_other_paths_and_unknown_clusters_pass_untouched() {
    let world = World::default();
    let r = root(&world);
    for (path, cluster) in [
        ("/v1/chat/completions", Some("provider.vllm")),
        ("/v1/messages", Some("provider.claude")),
        ("/v1/embeddings", Some("provider.claude")),
        ("/v1/chat/completions", Some("provider.other")),
        ("/v1/chat/completions", None),
    ] {
        let mut ex = attempt(&world, r.as_ref(), path, cluster);
        assert_eq!(
            ex.request_headers(false),
            Action::Continue,
            "{path} {cluster:?}"
        );
        assert_eq!(
            ex.request_chunk(b"{\"model\":\"m\"}", true),
            Action::Continue
        );
        assert_eq!(ex.sent_upstream, b"{\"model\":\"m\"}");
        assert_eq!(ex.host.request().get(":path"), Some(path));
    }
    assert_eq!(world.metrics.counter("aimesh.translate.requests"), 0);
}

#[test]
fn bad_requests_are_refused_in_the_client_dialect() {
    let world = World::default();
    let r = root(&world);
    let mut ex = attempt(&world, r.as_ref(), "/v1/messages", Some("provider.vllm"));
    ex.request_headers(false);
    ex.request_chunk(
        b"{\"model\":\"m\",\"max_tokens\":1,\"messages\":[{\"role\":\"robot\",\"content\":\"x\"}]}",
        true,
    );
    let reply = ex.reply().expect("refused").clone();
    assert_eq!(reply.status, 400);
    let v = reply.json();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("messages[0].role"));
    let mut ex = attempt(
        &world,
        r.as_ref(),
        "/v1/chat/completions",
        Some("provider.claude"),
    );
    ex.request_headers(false);
    ex.request_chunk(b"not json", true);
    let reply = ex.reply().expect("refused").clone();
    assert_eq!(
        (reply.status, reply.json()["error"]["code"].as_str()),
        (400, Some("invalid_json"))
    );
    assert_eq!(world.metrics.counter("aimesh.translate.request_errors"), 2);
}

#[test]
fn provider_errors_reach_the_client_in_its_dialect() {
    let world = World::default();
    let r = root(&world);
    let mut ex = attempt(
        &world,
        r.as_ref(),
        "/v1/chat/completions",
        Some("provider.claude"),
    );
    ex.request_headers(false);
    ex.request_chunk(OPENAI_REQ.as_bytes(), true);
    let err = br#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#;
    ex.response(
        &[(":status", "429"), ("content-type", "application/json")],
        err,
        5,
    );
    let v = json_of(&ex.sent_downstream);
    assert_eq!(v["error"]["message"], "slow down");
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert_eq!(v["error"]["code"], "rate_limit_error");
}

#[test]
fn configuration_is_validated() {
    let world = World::default();
    for bad in [
        r#"{"clusters": {"a": "gemini"}}"#,
        r#"{"default_max_tokens": 0}"#,
        r#"{"x": 1}"#,
    ] {
        assert!(
            (crate::STAGE.configure)(bad.as_bytes(), &world).is_err(),
            "{bad}"
        );
    }
    assert!((crate::STAGE.configure)(b"", &world).is_ok());
}
