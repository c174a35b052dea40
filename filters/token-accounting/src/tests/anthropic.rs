//! Anthropic Messages: usage from `message_start` and `message_delta`, cache tokens priced
//! apart, no `stream_options` injected, the body untouched.

use aimesh_core::accounting::audit::Record;
use aimesh_host::memory::Exchange;
use aimesh_host::{Action, Facts};

use super::*;

/// claude-x: 3 input, 0.3 cache read, 3.75 cache write, 15 output (USD per million).
const PRICES: &str =
    r#"{"prices":{"claude-x":{"input":3,"cached_input":0.3,"cache_write":3.75,"output":15}}}"#;

const BODY: &str = r#"{"model":"claude-x","max_tokens":64,"stream":true,"system":"s","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"x_unknown":1}"#;

const STREAM: &str = concat!(
    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"claude-x-1\",\"content\":[],",
    "\"usage\":{\"input_tokens\":100,\"cache_creation_input_tokens\":2000,\"cache_read_input_tokens\":10000,\"output_tokens\":1}}}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: ping\ndata: {\"type\": \"ping\"}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":300}}\n\n",
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
);

fn facts() -> Facts {
    Facts {
        model: Some("claude-x".into()),
        stream: Some(true),
        dialect: Some(aimesh_core::Dialect::Anthropic),
        ..auth_facts()
    }
}

fn messages(w: &aimesh_host::memory::World, root: &dyn aimesh_host::StageRoot) -> Exchange {
    let len = BODY.len().to_string();
    let hs = [
        (":method", "POST"),
        (":path", "/v1/messages"),
        ("content-length", len.as_str()),
    ];
    let mut ex = Exchange::new(w, vec![root.new_stream().expect("stage")], &hs);
    ex.host.facts = facts();
    ex
}

fn expected(ttft: Option<u64>) -> Record {
    let mut r = Record {
        key_id: Some("k1".into()),
        team: Some("ml".into()),
        model: Some("claude-x".into()),
        model_served: Some("claude-x-1".into()),
        backend: Some("llm".into()),
        upstream_status: Some(200),
        input_tokens: Some(12_100),
        cached_input_tokens: Some(10_000),
        cache_write_input_tokens: Some(2_000),
        output_tokens: Some(300),
        usage_estimated: Some(false),
        truncated: Some(false),
        // 100 x 3 + 10000 x 0.3 + 2000 x 3.75 + 300 x 15 = 300 + 3000 + 7500 + 4500
        cost_micro_usd: Some(15_300),
        ttft_ms: ttft,
        ..Record::default()
    };
    r.set_path("/v1/messages");
    r
}

#[test]
fn a_messages_stream_is_accounted_at_every_split_without_injecting() {
    let w = world();
    let root = root(&w, PRICES);
    for cut in [1, 2, 5, 17, 64, STREAM.len()] {
        let mut ex = messages(&w, root.as_ref());
        // Nothing to inject: the body is not even held.
        assert_eq!(ex.request_headers(false), Action::Continue);
        ex.request_chunk(BODY.as_bytes(), true);
        assert_eq!(ex.sent_upstream, BODY.as_bytes());
        ex.response_headers(
            &[(":status", "200"), ("content-type", "text/event-stream")],
            false,
        );
        let parts: Vec<&[u8]> = STREAM.as_bytes().chunks(cut).collect();
        for (i, c) in parts.iter().enumerate() {
            ex.response_chunk(c, i + 1 == parts.len());
        }
        assert_eq!(ex.sent_downstream, STREAM.as_bytes(), "cut {cut}");
        assert_eq!(
            audit_bytes(&ex),
            Some(&expected(Some(0)).encode()),
            "cut {cut}"
        );
    }
}

#[test]
fn a_messages_body_is_accounted_with_cache_tokens() {
    let w = world();
    let root = root(&w, PRICES);
    let mut ex = messages(&w, root.as_ref());
    ex.host.facts.stream = Some(false);
    ex.request(BODY.as_bytes());
    let reply = r#"{"id":"m","type":"message","role":"assistant","model":"claude-x-1","content":[{"type":"text","text":"Hello"}],"stop_reason":"end_turn","usage":{"input_tokens":100,"cache_creation_input_tokens":2000,"cache_read_input_tokens":10000,"output_tokens":300}}"#;
    ex.response(
        &[(":status", "200"), ("content-type", "application/json")],
        reply.as_bytes(),
        7,
    );
    assert_eq!(ex.sent_upstream, BODY.as_bytes());
    assert_eq!(audit_bytes(&ex), Some(&expected(None).encode()));
}
