//! The stage's request-side callback sequences on the in-memory host: what e2e reaches through
//! Envoy (rewrites, refusals, bodies split anywhere, trailers, policy selection), natively.

use aimesh_host::memory::{Exchange, World};
use aimesh_host::{Action, Stage, StageError};
use serde_json::{json, Value};

use crate::stage::STATE;
use crate::STAGE;

pub(crate) const CHAT: &str = "/v1/chat/completions";

/// A fresh stage configured with `cfg`.
pub(crate) fn stage(world: &World, cfg: &Value) -> Box<dyn Stage> {
    let raw = serde_json::to_vec(cfg).unwrap();
    let root = (STAGE.configure)(&raw, world).unwrap_or_else(|e| panic!("configure: {e}"));
    root.new_stream().unwrap()
}

/// A JSON chat request to `path` through a stage configured with `cfg`.
pub(crate) fn exchange(world: &World, cfg: &Value, extra: &[(&str, &str)]) -> Exchange {
    let mut hs = vec![
        (":method", "POST"),
        (":path", CHAT),
        ("content-type", "application/json"),
    ];
    hs.extend_from_slice(extra);
    Exchange::new(world, vec![stage(world, cfg)], &hs)
}

pub(crate) fn chat_body(text: &str) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}),
    )
    .unwrap()
}

pub(crate) fn sent_text(x: &Exchange) -> String {
    let v: Value = serde_json::from_slice(&x.sent_upstream).unwrap();
    v["messages"][0]["content"].as_str().unwrap().to_string()
}

fn counter(world: &World, name: &str) -> u64 {
    world
        .metrics
        .counter(&format!("aimesh.pii_redaction.{name}"))
}

#[test]
fn masks_numbering_per_type_and_sets_content_length_metrics_and_summary() {
    let w = World::default();
    let mut x = exchange(&w, &json!({}), &[]);
    let text = "Mail jane@example.com or john@example.org, again jane@example.com. Order 1234.";
    assert_eq!(x.request_headers(false), Action::Pause);
    assert_eq!(x.request_chunk(&chat_body(text), true), Action::Continue);
    assert_eq!(
        sent_text(&x),
        "Mail [EMAIL_1] or [EMAIL_2], again [EMAIL_1]. Order 1234."
    );
    let len = x.sent_upstream.len().to_string();
    assert_eq!(x.host.request().get("content-length"), Some(len.as_str()));
    assert_eq!(counter(&w, "requests"), 1);
    assert_eq!(counter(&w, "redacted_requests"), 1);
    assert_eq!(counter(&w, "found.email.mask"), 3);
    assert_eq!(x.host.state_text(STATE).as_deref(), Some("EMAIL:3"));
    x.log();
    assert!(x.host.replies.is_empty());
}

#[test]
fn a_clean_body_passes_byte_identical_and_untouched() {
    let w = World::default();
    let mut x = exchange(&w, &json!({}), &[("content-length", "999")]);
    let body = br#"{ "model":"gpt-4o-mini", "messages":[{"role":"user","content":"order 4111 1111"}],"seed":4111111111111111 }"#;
    assert_eq!(x.request(body), Action::Continue);
    assert_eq!(x.sent_upstream, body);
    assert_eq!(x.host.request().get("content-length"), Some("999"));
    assert_eq!(counter(&w, "redacted_requests"), 0);
    assert_eq!(x.host.state_text(STATE), None);
}

#[test]
fn block_answers_naming_types_never_values_and_forwards_nothing() {
    let w = World::default();
    let cfg = json!({"policies": {"default": {"actions": {"US_SSN": "block", "SECRET": "block"}}}});
    let mut x = exchange(&w, &cfg, &[]);
    let a = x.request(&chat_body(
        "my ssn is 123-45-6789 and key AKIA4KHVDGAJGXBENYJQ, mail a@example.com",
    ));
    assert_eq!(a, Action::Pause);
    assert!(x.sent_upstream.is_empty());
    let r = x.reply().unwrap();
    assert_eq!(r.status, 400);
    let e = &r.json()["error"];
    assert_eq!(e["code"], "pii_detected");
    let msg = e["message"].as_str().unwrap();
    assert!(msg.contains("US_SSN") && msg.contains("SECRET"), "{msg}");
    assert!(!msg.contains("6789") && !msg.contains("AKIA") && !msg.contains("example"));
    assert_eq!(counter(&w, "blocked"), 1);
    assert_eq!(counter(&w, "found.us_ssn.block"), 1);
    assert_eq!(counter(&w, "found.email.mask"), 1);
    assert_eq!(
        x.host.state_text(STATE).as_deref(),
        Some("EMAIL:1,SECRET:1,US_SSN:1")
    );
    x.log();
    assert_eq!(x.host.replies.len(), 1);
}

/// Extra request headers, and the refusal they should get.
type Refusal = (&'static [(&'static str, &'static str)], u16, &'static str);

#[test]
fn a_body_that_is_not_json_is_refused_by_what_its_headers_declared() {
    let cases: [Refusal; 4] = [
        (&[], 400, "invalid_json"),
        (
            &[("content-type", "text/plain")],
            415,
            "unsupported_media_type",
        ),
        (
            &[("content-encoding", "gzip")],
            415,
            "unsupported_media_type",
        ),
        (&[("content-encoding", "identity")], 400, "invalid_json"),
    ];
    for (extra, status, code) in cases {
        let w = World::default();
        let mut hs = vec![(":method", "POST"), (":path", CHAT)];
        hs.extend_from_slice(extra);
        if !extra.iter().any(|(k, _)| *k == "content-type") {
            hs.push(("content-type", "application/json"));
        }
        let mut x = Exchange::new(&w, vec![stage(&w, &json!({}))], &hs);
        x.request(b"{\"messages\": [not json");
        let r = x.reply().unwrap_or_else(|| panic!("{extra:?}: no reply"));
        assert_eq!(
            (r.status, r.json()["error"]["code"].as_str()),
            (status, Some(code))
        );
        assert!(x.sent_upstream.is_empty(), "{extra:?}");
        assert_eq!(counter(&w, code), 1, "{extra:?}");
    }
}

#[test]
fn json_declared_as_text_plain_is_scanned_all_the_same() {
    let w = World::default();
    let mut x = exchange(&w, &json!({}), &[("content-type", "text/plain")]);
    x.request(&chat_body("mail jane@example.com"));
    assert!(x.reply().is_none());
    assert_eq!(sent_text(&x), "mail [EMAIL_1]");
}

#[test]
fn a_body_split_anywhere_is_buffered_and_redacted_whole() {
    let body = chat_body("card 4111 1111 1111 1111 and jane@example.com");
    for split in 1..body.len() {
        let w = World::default();
        let mut x = exchange(&w, &json!({}), &[]);
        assert_eq!(x.request_headers(false), Action::Pause);
        assert_eq!(x.request_chunk(&body[..split], false), Action::Pause);
        assert!(x.sent_upstream.is_empty());
        assert_eq!(x.request_chunk(&body[split..], true), Action::Continue);
        assert_eq!(
            sent_text(&x),
            "card [CREDIT_CARD_1] and [EMAIL_1]",
            "split {split}"
        );
    }
}

#[test]
fn a_body_ended_by_trailers_is_checked_at_the_trailers() {
    let w = World::default();
    let cfg = json!({"policies": {"default": {"actions": {"US_SSN": "block"}}}});
    let mut x = exchange(&w, &cfg, &[]);
    x.request_headers(false);
    x.request_chunk(&chat_body("ssn 123-45-6789"), false);
    assert!(x.reply().is_none());
    assert_eq!(x.request_trailers(), Action::Pause);
    assert_eq!(x.reply().unwrap().json()["error"]["code"], "pii_detected");
    assert!(x.sent_upstream.is_empty());

    let mut x = exchange(&w, &json!({}), &[]);
    x.request_headers(false);
    x.request_chunk(&chat_body("mail jane@example.com"), false);
    assert_eq!(x.request_trailers(), Action::Continue);
    assert_eq!(sent_text(&x), "mail [EMAIL_1]");
}

#[test]
fn headers_only_and_empty_bodies_pass() {
    let w = World::default();
    let mut x = exchange(&w, &json!({}), &[]);
    assert_eq!(x.request_headers(true), Action::Continue);
    let mut x = exchange(&w, &json!({}), &[]);
    assert_eq!(x.request_headers(false), Action::Pause);
    assert_eq!(x.request_chunk(b"", true), Action::Continue);
    assert!(x.reply().is_none());
    assert_eq!(counter(&w, "requests"), 2);
}

#[test]
fn a_policy_that_allows_every_type_streams_the_body_unread() {
    let w = World::default();
    let cfg = json!({
        "policies": {"default": {}, "open": {"default_action": "allow", "redact_responses": false}},
        "rules": [{"path_prefix": "/upload", "policy": "open"}],
    });
    let mut x = Exchange::new(
        &w,
        vec![stage(&w, &cfg)],
        &[
            (":path", "/upload/x"),
            ("content-type", "application/octet-stream"),
        ],
    );
    assert_eq!(x.request_headers(false), Action::Continue);
    assert_eq!(
        x.request_chunk(b"\x00\x01 jane@example.com", false),
        Action::Continue
    );
    assert_eq!(x.sent_upstream, b"\x00\x01 jane@example.com");
    assert_eq!(x.request_chunk(b"\xff", true), Action::Continue);
    assert!(x.reply().is_none());
}

#[test]
fn policies_are_picked_by_route_name_path_prefix_and_header() {
    let cfg = json!({
        "policies": {
            "default": {},
            "strict": {"actions": {"EMAIL": "block"}},
            "open": {"default_action": "allow"},
        },
        "rules": [
            {"route_name": "self-hosted", "policy": "open"},
            {"path_prefix": "/strict/", "policy": "strict"},
            {"header": {"name": "x-tier", "value": "internal"}, "policy": "open"},
        ],
    });
    let body = chat_body("mail jane@example.com");
    let run = |route: Option<&str>, path: &str, extra: &[(&str, &str)]| {
        let w = World::default();
        if let Some(r) = route {
            w.properties
                .borrow_mut()
                .insert("xds.route_name".into(), r.as_bytes().to_vec());
        }
        let mut hs = vec![(":path", path), ("content-type", "application/json")];
        hs.extend_from_slice(extra);
        let mut x = Exchange::new(&w, vec![stage(&w, &cfg)], &hs);
        x.request(&body);
        match x.reply() {
            Some(r) => r.json()["error"]["code"].as_str().unwrap().to_string(),
            None => sent_text(&x),
        }
    };
    assert_eq!(run(None, CHAT, &[]), "mail [EMAIL_1]");
    assert_eq!(run(Some("self-hosted"), CHAT, &[]), "mail jane@example.com");
    assert_eq!(run(Some("other"), "/strict/x", &[]), "pii_detected");
    assert_eq!(
        run(None, CHAT, &[("x-tier", "internal")]),
        "mail jane@example.com"
    );
    assert_eq!(run(None, CHAT, &[("x-tier", "external")]), "mail [EMAIL_1]");
}

#[test]
fn accept_encoding_is_removed_only_when_responses_are_read() {
    let w = World::default();
    let reads = json!({"policies": {"default": {"restore": true, "redact_responses": false}}});
    let x = {
        let mut x = exchange(&w, &reads, &[("accept-encoding", "gzip")]);
        x.request_headers(false);
        x
    };
    assert!(!x.host.request().has("accept-encoding"));
    let blind = json!({"policies": {"default": {"redact_responses": false}}});
    let mut x = exchange(&w, &blind, &[("accept-encoding", "gzip")]);
    x.request_headers(false);
    assert_eq!(x.host.request().get("accept-encoding"), Some("gzip"));
}

#[test]
fn a_reset_before_the_response_logs_without_a_reply() {
    let w = World::default();
    let mut x = exchange(&w, &json!({}), &[]);
    x.request_headers(false);
    x.request_chunk(b"{\"messages\":[{\"content\":\"jane@", false);
    x.log();
    x.log();
    assert!(x.host.replies.is_empty() && x.sent_upstream.is_empty());
    assert_eq!(counter(&w, "requests"), 1);
    assert_eq!(counter(&w, "found.email.mask"), 0);
}

#[test]
fn bad_configurations_are_refused_naming_the_field() {
    let w = World::default();
    let err = |cfg: Value| match (STAGE.configure)(&serde_json::to_vec(&cfg).unwrap(), &w) {
        Err(StageError::Config(m)) => m,
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("accepted {cfg}"),
    };
    assert!(err(json!({"polices": {}})).contains("polices"));
    assert!(err(json!({"policies": {"default": {"default_action": "hash"}}})).contains("hash_key"));
    let m = err(json!({"patterns": [{"name": "BAD", "regex": "("}]}));
    assert!(m.contains("BAD") || m.contains("patterns"), "{m}");
    assert!(
        (STAGE.configure)(b"", &w).is_ok(),
        "an empty configuration is the default"
    );
    assert_eq!(STAGE.name, "pii-redaction");
}
