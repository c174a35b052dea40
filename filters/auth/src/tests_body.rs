//! Native tests of auth's request-body sequences: bodies split at odd places, trailers, empty
//! bodies, oversized and malformed bodies, requests that name no model.

use aimesh_host::memory::World;
use aimesh_host::Action;
use serde_json::json;

use crate::tests::{alice, chat, refused, request, root, BEARER};

#[test]
fn a_body_split_anywhere_is_held_until_complete_then_checked_once() {
    let w = World::default();
    let r = root(&w, alice(json!({"models": ["gpt-4o"]})));
    let body = chat("gpt-4o");
    for split in [1, 3, 17, body.len() - 1] {
        let mut ex = request(&w, r.as_ref(), "POST", "/v1/chat/completions", &[BEARER]);
        assert_eq!(ex.request_headers(false), Action::Pause);
        let (a, b) = body.split_at(split);
        assert_eq!(ex.request_chunk(a, false), Action::Pause);
        assert!(ex.host.facts.model.is_none(), "decided on a partial body");
        assert_eq!(ex.request_chunk(b, true), Action::Continue);
        assert_eq!(ex.sent_upstream, body, "split {split}");
        assert_eq!(ex.host.facts.model.as_deref(), Some("gpt-4o"));
        ex.log();
    }
    assert_eq!(w.metrics.counter("aimesh.auth.allowed"), 4);
}

#[test]
fn trailers_complete_the_body() {
    let w = World::default();
    let r = root(&w, alice(json!({"models": ["gpt-4o"]})));
    let body = chat("o1");
    let mut ex = request(&w, r.as_ref(), "POST", "/v1/chat/completions", &[BEARER]);
    ex.request_headers(false);
    assert_eq!(ex.request_chunk(&body, false), Action::Pause);
    assert_eq!(ex.request_trailers(), Action::Pause);
    assert_eq!(refused(&ex), Some((403, "model_not_allowed".into())));
    assert!(ex.sent_upstream.is_empty());

    let mut ex = request(&w, r.as_ref(), "POST", "/v1/chat/completions", &[BEARER]);
    ex.request_headers(false);
    ex.request_chunk(&chat("gpt-4o"), false);
    assert_eq!(ex.request_trailers(), Action::Continue);
    assert_eq!(ex.host.facts.model.as_deref(), Some("gpt-4o"));
}

#[test]
fn an_oversized_body_is_refused_as_it_arrives_before_it_is_complete() {
    let w = World::default();
    let mut c = alice(json!({}));
    c["max_body_bytes"] = json!(64);
    let r = root(&w, c);
    let mut ex = request(&w, r.as_ref(), "POST", "/v1/chat/completions", &[BEARER]);
    ex.request_headers(false);
    assert_eq!(ex.request_chunk(&[b' '; 40], false), Action::Pause);
    assert!(ex.reply().is_none());
    assert_eq!(ex.request_chunk(&[b' '; 40], false), Action::Pause);
    assert_eq!(refused(&ex), Some((413, "request_too_large".into())));
    // What Envoy still delivers after the reply passes through without a second reply.
    assert_eq!(ex.request_chunk(b"{}", true), Action::Continue);
    assert_eq!(ex.host.replies.len(), 1);
    assert_eq!(w.metrics.counter("aimesh.auth.denied.bad_request"), 1);
}

#[test]
fn malformed_bodies_get_400_in_openai_shape() {
    let w = World::default();
    let r = root(&w, alice(json!({})));
    for (body, code) in [
        (&b"{not json"[..], "invalid_json"),
        (&b"\xEF\xBB\xBF{\"model\":\"m\"}"[..], "invalid_json"),
        (&b"[1]"[..], "invalid_request_body"),
        (&b"{\"model\": \"\"}"[..], "missing_model"),
        (&b"{\"model\": 5}"[..], "invalid_request_body"),
    ] {
        let mut ex = request(&w, r.as_ref(), "POST", "/v1/chat/completions", &[BEARER]);
        ex.request(body);
        assert_eq!(refused(&ex), Some((400, code.into())), "{body:?}");
        let e = &ex.reply().map(|r| r.json()).unwrap_or_default()["error"];
        assert!(e["message"].is_string() && e["type"] == "invalid_request_error");
        assert!(ex.sent_upstream.is_empty() && ex.host.facts.model.is_none());
    }
    assert_eq!(w.metrics.counter("aimesh.auth.allowed"), 0);
}

#[test]
fn requests_naming_no_model_pass_only_on_the_keys_endpoint_grants() {
    let w = World::default();
    let r = root(
        &w,
        alice(json!({"models": ["gpt-4o"], "endpoints": ["GET /v1/files"]})),
    );
    let mut ex = request(&w, r.as_ref(), "GET", "/v1/files/abc", &[BEARER]);
    assert_eq!(ex.request_headers(true), Action::Continue);
    let mut ex = request(&w, r.as_ref(), "DELETE", "/v1/files/abc", &[BEARER]);
    ex.request_headers(true);
    assert_eq!(refused(&ex), Some((403, "endpoint_not_allowed".into())));
    // An inference POST without a body is never forwarded.
    let mut ex = request(&w, r.as_ref(), "POST", "/v1/chat/completions", &[BEARER]);
    ex.request_headers(true);
    assert_eq!(refused(&ex), Some((400, "missing_model".into())));
    // Files and batches name no model: decided on the grants at the headers, body or not (an
    // upload is never held).
    let mut ex = request(&w, r.as_ref(), "GET", "/v1/files", &[BEARER]);
    assert_eq!(ex.request_headers(false), Action::Continue);
    assert_eq!(ex.request_chunk(b"", true), Action::Continue);
    assert!(ex.reply().is_none());
    let mut ex = request(&w, r.as_ref(), "GET", "/v1/batches", &[BEARER]);
    ex.request_headers(false);
    assert_eq!(refused(&ex), Some((403, "endpoint_not_allowed".into())));
    // HTTP/2 may end a GET with an empty DATA frame: still a request without a body.
    let grants = alice(json!({"models": ["gpt-4o"], "endpoints": ["GET /v1/fine_tuning"]}));
    let r = root(&w, grants);
    let mut ex = request(&w, r.as_ref(), "GET", "/v1/fine_tuning/jobs", &[BEARER]);
    assert_eq!(ex.request_headers(false), Action::Pause);
    assert_eq!(ex.request_chunk(b"", true), Action::Continue);
    assert!(ex.reply().is_none());
    assert_eq!(
        w.metrics.counter("aimesh.auth.denied.endpoint_not_allowed"),
        2
    );
}

#[test]
fn custom_endpoint_bodies_are_not_buffered_or_read() {
    let w = World::default();
    let r = root(&w, alice(json!({"models": []})));
    let mut ex = request(&w, r.as_ref(), "POST", "/proxy-api/upload", &[BEARER]);
    assert_eq!(ex.request_headers(false), Action::Continue);
    let binary = [0u8, 0xff, 0xfe, b'{'];
    assert_eq!(ex.request_chunk(&binary, false), Action::Continue);
    assert_eq!(ex.request_chunk(&binary, true), Action::Continue);
    assert_eq!(ex.sent_upstream.len(), 8);
    assert!(ex.reply().is_none() && ex.host.facts.model.is_none());
}

fn form(parts: &[(&str, &str)]) -> Vec<u8> {
    let mut b = Vec::new();
    for (name, value) in parts {
        b.extend_from_slice(
            format!("--b0\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                .as_bytes(),
        );
    }
    b.extend_from_slice(b"--b0--\r\n");
    b
}

const FORM: (&str, &str) = ("content-type", "multipart/form-data; boundary=b0");

#[test]
fn an_audio_upload_is_checked_on_its_model_form_field() {
    let w = World::default();
    let r = root(&w, alice(json!({"models": ["whisper-1"]})));
    let send = |ct: (&str, &str), body: &[u8]| {
        let mut ex = request(
            &w,
            r.as_ref(),
            "POST",
            "/v1/audio/transcriptions",
            &[BEARER, ct],
        );
        if ex.request_headers(false) == Action::Pause && ex.reply().is_none() {
            ex.request_chunk(body, true);
        }
        ex
    };
    let ok = send(FORM, &form(&[("file", "RIFF"), ("model", "whisper-1")]));
    assert_eq!(ok.host.facts.model.as_deref(), Some("whisper-1"));
    assert!(!ok.sent_upstream.is_empty());
    let other = send(FORM, &form(&[("model", "gpt-4o-transcribe")]));
    assert_eq!(refused(&other), Some((403, "model_not_allowed".into())));
    let two = send(FORM, &form(&[("model", "whisper-1"), ("model", "gpt-4o")]));
    assert_eq!(refused(&two), Some((400, "duplicate_model".into())));
    let json_body = send(FORM, br#"{"model":"whisper-1"}"#);
    assert_eq!(refused(&json_body), Some((400, "invalid_multipart".into())));
    let as_json = send(
        ("content-type", "application/json"),
        &form(&[("model", "whisper-1")]),
    );
    assert_eq!(
        refused(&as_json),
        Some((415, "unsupported_content_type".into()))
    );
    let no_boundary = send(("content-type", "multipart/form-data"), b"");
    assert_eq!(
        refused(&no_boundary),
        Some((400, "missing_boundary".into()))
    );
    for ex in [other, two, json_body, as_json, no_boundary] {
        assert!(ex.sent_upstream.is_empty());
    }
    // A JSON endpoint's body under a form type could name another model to a provider.
    let mut ex = request(
        &w,
        r.as_ref(),
        "POST",
        "/v1/chat/completions",
        &[BEARER, FORM],
    );
    ex.request_headers(false);
    assert_eq!(refused(&ex), Some((415, "unsupported_content_type".into())));
}

#[test]
fn file_uploads_and_batches_are_decided_by_endpoint_grants_unread() {
    let w = World::default();
    let r = root(
        &w,
        alice(json!({"models": ["gpt-4o"], "endpoints": ["/v1/files", "POST /v1/batches"]})),
    );
    let upload = form(&[("purpose", "batch"), ("file", "{\"model\":\"o1\"}")]);
    let mut ex = request(&w, r.as_ref(), "POST", "/v1/files", &[BEARER, FORM]);
    assert_eq!(ex.request_headers(false), Action::Continue);
    assert_eq!(ex.request_chunk(&upload, true), Action::Continue);
    assert_eq!(ex.sent_upstream, upload);
    let mut ex = request(&w, r.as_ref(), "POST", "/v1/batches", &[BEARER]);
    assert_eq!(ex.request_headers(false), Action::Continue);
    let mut ex = request(&w, r.as_ref(), "POST", "/v1/batches/b1/cancel", &[BEARER]);
    assert_eq!(ex.request_headers(false), Action::Continue);
    let narrow = root(&w, alice(json!({"models": ["gpt-4o"]})));
    let mut ex = request(&w, narrow.as_ref(), "POST", "/v1/files", &[BEARER, FORM]);
    ex.request_headers(false);
    assert_eq!(refused(&ex), Some((403, "endpoint_not_allowed".into())));
}
