//! Native tests of auth's limits on the fake clock: the per-minute bucket refills as the clock
//! moves, in-flight slots are released however the stream ends, refused requests spend nothing,
//! and keys expire at their instant.

use std::time::{Duration, UNIX_EPOCH};

use aimesh_host::memory::World;
use aimesh_host::Action;
use serde_json::json;

use crate::tests::{alice, chat, refused, request, root, BEARER, KEY};

#[test]
fn the_rate_bucket_refuses_past_its_burst_and_refills_on_the_clock() {
    let w = World::default();
    let r = root(&w, alice(json!({"requests_per_minute": 2})));
    for remaining in ["1", "0"] {
        let mut ex = request(&w, r.as_ref(), "GET", "/v1/files", &[BEARER]);
        assert_eq!(ex.request_headers(true), Action::Continue);
        ex.response(&[(":status", "200")], b"{}", 2);
        let hs = ex.host.response();
        assert_eq!(hs.get("x-ratelimit-limit-requests"), Some("2"));
        assert_eq!(hs.get("x-ratelimit-remaining-requests"), Some(remaining));
        ex.log();
    }
    let mut ex = request(&w, r.as_ref(), "GET", "/v1/files", &[BEARER]);
    ex.request_headers(true);
    assert_eq!(refused(&ex), Some((429, "rate_limit_exceeded".into())));
    let reply = ex.reply().cloned().unwrap_or_else(|| panic!("no reply"));
    let header = |n: &str| {
        reply
            .headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header("retry-after").as_deref(), Some("30"));
    assert_eq!(
        header("x-ratelimit-remaining-requests").as_deref(),
        Some("0")
    );
    // One request every 30 s comes back: not one millisecond early.
    w.advance(Duration::from_millis(29_990));
    let mut ex = request(&w, r.as_ref(), "GET", "/v1/files", &[BEARER]);
    ex.request_headers(true);
    assert_eq!(refused(&ex).map(|r| r.0), Some(429));
    w.advance(Duration::from_millis(10));
    let mut ex = request(&w, r.as_ref(), "GET", "/v1/files", &[BEARER]);
    assert_eq!(ex.request_headers(true), Action::Continue);
    assert_eq!(w.metrics.counter("aimesh.auth.denied.rate_limited"), 2);
}

#[test]
fn refused_requests_never_spend_the_keys_budget() {
    let w = World::default();
    let r = root(
        &w,
        alice(json!({"models": ["gpt-4o"], "requests_per_minute": 1, "max_concurrent": 1})),
    );
    for (method, path, body) in [
        ("POST", "/v1/chat/completions", chat("o1")),
        ("POST", "/v1/chat/completions", b"{bad".to_vec()),
        ("DELETE", "/v1/files/x", Vec::new()),
    ] {
        let mut ex = request(&w, r.as_ref(), method, path, &[BEARER]);
        ex.request(&body);
        assert!(ex.reply().is_some_and(|r| r.status != 429), "{path}");
        ex.log();
    }
    let mut ex = request(&w, r.as_ref(), "POST", "/v1/chat/completions", &[BEARER]);
    assert_eq!(ex.request(&chat("gpt-4o")), Action::Continue);
}

#[test]
fn in_flight_slots_are_released_however_the_stream_ends() {
    let w = World::default();
    let r = root(&w, alice(json!({"max_concurrent": 2})));
    let start = |w: &World| {
        let mut ex = request(w, r.as_ref(), "POST", "/v1/chat/completions", &[BEARER]);
        ex.request(&chat("gpt-4o"));
        ex
    };
    // Completed with a response, and reset before any response (log only).
    let mut done = start(&w);
    let mut reset = start(&w);
    assert!(done.reply().is_none() && reset.reply().is_none());
    let mut third = start(&w);
    assert_eq!(refused(&third), Some((429, "rate_limit_exceeded".into())));
    third.log();
    done.response(&[(":status", "200")], b"{}", 1);
    done.log();
    reset.log();
    // Log twice (a host calling stream-done after on_log) releases once.
    reset.log();
    let a = start(&w);
    let b = start(&w);
    assert!(a.reply().is_none() && b.reply().is_none());
    let c = start(&w);
    assert_eq!(refused(&c).map(|r| r.0), Some(429));
}

#[test]
fn a_catalogue_answer_is_a_request_and_takes_the_limits() {
    let w = World::default();
    let mut c = alice(json!({"requests_per_minute": 1}));
    c["catalogue"] = json!({"models": []});
    let r = root(&w, c);
    let mut ex = request(&w, r.as_ref(), "GET", "/v1/models", &[BEARER]);
    ex.request_headers(true);
    assert_eq!(ex.reply().map(|r| r.status), Some(200));
    let mut ex = request(&w, r.as_ref(), "GET", "/v1/models/x", &[BEARER]);
    ex.request_headers(true);
    assert_eq!(refused(&ex).map(|r| r.0), Some(429));
}

#[test]
fn a_key_expires_at_its_instant_and_a_disabled_key_never_works() {
    let w = World::default();
    w.set_now(UNIX_EPOCH + Duration::from_secs(1_798_761_599)); // 2026-12-31T23:59:59Z
    let r = root(&w, alice(json!({"expires_at": "2027-01-01"})));
    let mut ex = request(&w, r.as_ref(), "GET", "/v1/files", &[BEARER]);
    assert_eq!(ex.request_headers(true), Action::Continue);
    w.advance(Duration::from_secs(1));
    let mut ex = request(&w, r.as_ref(), "GET", "/v1/files", &[BEARER]);
    ex.request_headers(true);
    assert_eq!(refused(&ex), Some((401, "invalid_api_key".into())));

    let r = root(&w, alice(json!({"disabled": true})));
    let mut ex = request(&w, r.as_ref(), "GET", "/v1/files", &[("x-api-key", KEY)]);
    ex.request_headers(true);
    assert_eq!(refused(&ex).map(|r| r.0), Some(401));
}
