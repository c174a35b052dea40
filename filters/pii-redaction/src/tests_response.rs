//! The stage's response-side sequences on the in-memory host: restore and redact in JSON and in
//! SSE streams split at every byte, and the responses it must leave alone.

use aimesh_host::memory::{Exchange, World};
use aimesh_host::Action;
use serde_json::{json, Value};

use crate::stage::STATE;
use crate::tests::{chat_body, exchange};

const JSON: &[(&str, &str)] = &[
    (":status", "200"),
    ("content-type", "application/json"),
    ("content-length", "1"),
];
const SSE: &[(&str, &str)] = &[(":status", "200"), ("content-type", "text/event-stream")];

fn restoring() -> Value {
    json!({"policies": {"default": {"restore": true}}})
}

/// An exchange whose request (with `text`) has gone upstream.
fn sent(world: &World, cfg: &Value, text: &str) -> Exchange {
    let mut x = exchange(world, cfg, &[]);
    assert_eq!(x.request(&chat_body(text)), Action::Continue);
    x
}

fn completion(content: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}))
    .unwrap()
}

fn completion_text(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap();
    v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `content` as an SSE stream of `piece`-character deltas, ended by `[DONE]`.
fn stream(content: &str, piece: usize) -> Vec<u8> {
    let chars: Vec<char> = content.chars().collect();
    let mut out = String::new();
    for c in chars.chunks(piece) {
        let d =
            json!({"choices": [{"index": 0, "delta": {"content": c.iter().collect::<String>()}}]});
        out.push_str(&format!("data: {d}\n\n"));
    }
    out.push_str("data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n");
    out.push_str("data: [DONE]\n\n");
    out.into_bytes()
}

fn stream_text(body: &[u8]) -> String {
    let text = std::str::from_utf8(body).unwrap();
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}

#[test]
fn restores_placeholders_in_a_json_response_and_drops_its_length() {
    let w = World::default();
    let text = "I am jane@example.com call +1 415 555 0123 ok";
    let mut x = sent(&w, &restoring(), text);
    assert_eq!(
        crate::tests::sent_text(&x),
        "I am [EMAIL_1] call [PHONE_1] ok"
    );
    let echo = completion("I am [EMAIL_1] call [PHONE_1] ok");
    for split in [1, 7, echo.len()] {
        let mut y = sent(&w, &restoring(), text);
        y.response(JSON, &echo, split);
        assert_eq!(completion_text(&y.sent_downstream), text, "split {split}");
        assert!(!y.host.response().has("content-length"));
    }
    x.response(JSON, &echo, 5);
    x.log();
    assert!(x.host.replies.is_empty());
}

#[test]
fn restores_a_stream_split_at_every_byte() {
    let text = "Reach jane.doe@example.com or +44 20 7946 0958 and card 4111 1111 1111 1111 today";
    let w = World::default();
    let masked = "Reach [EMAIL_1] or [PHONE_1] and card [CREDIT_CARD_1] today";
    for piece in [1, 3, 20] {
        let body = stream(masked, piece);
        for split in (1..body.len()).step_by(7).chain([1, 2, 3, 5]) {
            let mut x = sent(&w, &restoring(), text);
            x.response(SSE, &body, split);
            assert_eq!(
                stream_text(&x.sent_downstream),
                text,
                "piece {piece} split {split}"
            );
        }
    }
}

#[test]
fn model_pii_is_masked_in_json_and_in_streams_split_anywhere() {
    let value = "jane.doe@example.com";
    let w = World::default();
    let content = format!("x value {value} end");
    let mut x = sent(&w, &json!({}), "hello");
    x.response(JSON, &completion(&content), 3);
    assert_eq!(completion_text(&x.sent_downstream), "x value [EMAIL_1] end");
    let body = stream(&content, 4);
    for split in 1..40 {
        let mut x = sent(&w, &json!({}), "hello");
        x.response(SSE, &body, split);
        let out = stream_text(&x.sent_downstream);
        assert_eq!(out, "x value [EMAIL_1] end", "split {split}");
        assert_eq!(x.host.state_text(STATE).as_deref(), Some("EMAIL:1"));
    }
    assert_eq!(
        w.metrics.counter("aimesh.pii_redaction.found.email.mask"),
        40
    );
}

#[test]
fn findings_of_request_and_response_add_up_in_the_summary() {
    let w = World::default();
    let mut x = sent(&w, &json!({}), "mail jane@example.com");
    x.response(
        JSON,
        &completion("call +1 415 555 0123 or a@b.example.org"),
        4,
    );
    assert_eq!(x.host.state_text(STATE).as_deref(), Some("EMAIL:2,PHONE:1"));
    assert_eq!(
        w.metrics.counter("aimesh.pii_redaction.found.email.mask"),
        2
    );
}

#[test]
fn compressed_and_non_json_responses_pass_untouched() {
    let w = World::default();
    let body = completion("mail jane@example.com");
    let cases: [&[(&str, &str)]; 3] = [
        &[
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
            ("content-length", "9"),
        ],
        &[("content-type", "text/plain"), ("content-length", "9")],
        &[("content-length", "9")],
    ];
    for hs in cases {
        let mut x = sent(&w, &json!({}), "hello");
        assert_eq!(x.response(hs, &body, 6), Action::Continue);
        assert_eq!(x.sent_downstream, body, "{hs:?}");
        assert_eq!(x.host.response().get("content-length"), Some("9"));
    }
}

#[test]
fn restore_alone_reads_no_response_when_no_placeholder_went_out() {
    let w = World::default();
    let cfg = json!({"policies": {"default": {"restore": true, "redact_responses": false}}});
    let mut x = sent(&w, &cfg, "nothing personal");
    let body = completion("[EMAIL_1] jane@example.com");
    x.response(JSON, &body, 4);
    assert_eq!(x.sent_downstream, body);
    assert_eq!(x.host.response().get("content-length"), Some("1"));
    // With a placeholder out, the same policy restores and leaves other text alone.
    let mut x = sent(&w, &cfg, "I am jane@example.com");
    x.response(JSON, &completion("[EMAIL_1] and bob@example.com"), 4);
    assert_eq!(
        completion_text(&x.sent_downstream),
        "jane@example.com and bob@example.com"
    );
}

#[test]
fn a_json_response_is_held_until_its_end() {
    let w = World::default();
    let mut x = sent(&w, &json!({}), "hello");
    x.response_headers(JSON, false);
    assert_eq!(
        x.response_chunk(b"{\"choices\":[{\"message\":", false),
        Action::Pause
    );
    assert!(x.sent_downstream.is_empty());
    let a = x.response_chunk(b"{\"content\":\"jane@example.com\"}}]}", true);
    assert_eq!(a, Action::Continue);
    assert_eq!(completion_text(&x.sent_downstream), "[EMAIL_1]");
}
