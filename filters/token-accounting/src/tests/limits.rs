//! Limits: admission from headers or body, refusals, settlement, and time on the fake clock.

use std::time::Duration;

use aimesh_core::accounting::admission::day_and_month;
use aimesh_core::accounting::estimate::prompt_from_size;
use aimesh_core::host::SharedStore;
use aimesh_host::memory::Reply;
use aimesh_host::{Action, Env, Facts};

use super::*;

fn facts(key: &str, max_tokens: u64) -> Facts {
    Facts {
        key_id: Some(key.into()),
        max_tokens: Some(max_tokens),
        ..auth_facts()
    }
}

fn header<'a>(r: &'a Reply, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn code(r: &Reply) -> String {
    r.json()["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .into()
}

/// Tokens one `chat("")` request with `max_tokens` reserves.
fn need(max_tokens: u64) -> u64 {
    prompt_from_size(chat("").len() as u64) + max_tokens
}

const OK: &[(&str, &str)] = &[(":status", "200")];
const USAGE_10: &[u8] = br#"{"usage":{"prompt_tokens":5,"completion_tokens":5}}"#;

#[test]
fn tpm_admits_from_headers_settles_exactly_and_refills_with_time() {
    let w = world();
    let need = need(40);
    let tpm = 2 * need + 5;
    let root = root(
        &w,
        &format!(r#"{{"limits":{{"keys":{{"k1":{{"tpm":{tpm}}}}}}}}}"#),
    );
    let body = chat("");
    let send = |expect: Action| {
        let mut ex = exchange(&w, root.as_ref(), facts("k1", 40), &body, false);
        assert_eq!(
            ex.request_headers(false),
            expect,
            "admitted without the body"
        );
        ex
    };
    let mut first = send(Action::Continue);
    first.request_chunk(body.as_bytes(), true);
    first.response(OK, USAGE_10, 7);
    let left = first.host.response().get("x-ratelimit-remaining-tokens");
    assert_eq!(left, Some((tpm - need).to_string().as_str()));
    first.log();

    // Settled at 10 tokens: the refund is what lets this one in.
    let mut second = send(Action::Continue);
    second.response_headers(OK, false);
    let left = second.host.response().get("x-ratelimit-remaining-tokens");
    assert_eq!(left, Some((need - 5).to_string().as_str()));

    let mut third = send(Action::Pause);
    let reply = third.reply().cloned().expect("refused");
    assert_eq!(
        (reply.status, code(&reply).as_str()),
        (429, "rate_limit_exceeded")
    );
    let left = (need - 5).to_string();
    assert_eq!(
        header(&reply, "x-ratelimit-remaining-tokens"),
        Some(left.as_str())
    );
    let retry: u64 = header(&reply, "retry-after").unwrap().parse().unwrap();
    third.log();
    let mut refused = unaccounted(&facts("k1", 40));
    refused.upstream_status = Some(429);
    assert_eq!(audit_bytes(&third), Some(&refused.encode()));
    let stat = "aimesh.token_accounting.rejected.reason.tpm.key_id.k1";
    assert_eq!(w.metrics.counter(stat), 1);

    // The bucket refills with time, not with retries.
    send(Action::Pause);
    w.advance(Duration::from_secs(retry));
    send(Action::Continue);
}

#[test]
fn a_request_larger_than_the_tpm_is_refused_for_good_from_headers_or_body() {
    let w = world();
    let root = root(&w, r#"{"limits":{"keys":{"k1":{"tpm":100}}}}"#);
    let body = chat("");
    let mut ex = exchange(&w, root.as_ref(), facts("k1", 1000), &body, false);
    assert_eq!(ex.request_headers(false), Action::Pause);
    let reply = ex.reply().cloned().expect("refused");
    assert_eq!(
        (reply.status, code(&reply).as_str()),
        (400, "request_exceeds_tpm_limit")
    );
    assert_eq!(
        header(&reply, "retry-after"),
        None,
        "a retry can never pass"
    );

    // Chunked: no size before the body, so admission waits for it.
    let mut ex = exchange(&w, root.as_ref(), facts("k1", 1000), &body, true);
    assert_eq!(ex.request_headers(false), Action::Pause);
    assert!(ex.reply().is_none());
    let (a, b) = body.as_bytes().split_at(5);
    assert_eq!(ex.request_chunk(a, false), Action::Pause);
    assert_eq!(ex.request_chunk(b, true), Action::Pause);
    assert_eq!(ex.reply().map(|r| r.status), Some(400));
    assert!(ex.sent_upstream.is_empty(), "nothing reached the upstream");

    let mut ex = exchange(&w, root.as_ref(), facts("k1", 10), &body, true);
    ex.request_headers(false);
    assert_eq!(ex.request_chunk(body.as_bytes(), true), Action::Continue);
    assert_eq!(ex.sent_upstream, body.as_bytes());
}

#[test]
fn a_daily_budget_resets_at_utc_midnight_and_the_tick_creates_tomorrows_keys() {
    let w = world();
    // One request reserves 16 x 2.5 + 5 x 10 = 90 micro-USD of a 100 budget.
    let config = r#"{"prices":{"gpt-4o":{"input":2.5,"output":10}},
                     "limits":{"keys":{"k1":{"daily_usd":0.0001}}}}"#;
    let root = root(&w, config);
    assert_eq!(root.tick_period(), Some(Duration::from_secs(60)));
    let body = chat("");
    let mut held = exchange(&w, root.as_ref(), facts("k1", 5), &body, false);
    assert_eq!(held.request_headers(false), Action::Continue);

    let mut ex = exchange(&w, root.as_ref(), facts("k1", 5), &body, false);
    ex.request_headers(false);
    let reply = ex.reply().cloned().expect("over budget");
    assert_eq!(
        (reply.status, code(&reply).as_str()),
        (429, "insufficient_quota")
    );
    let now = w.unix_millis() / 1000;
    let to_midnight = 86_400 - now % 86_400;
    assert_eq!(
        header(&reply, "retry-after"),
        Some(to_midnight.to_string().as_str())
    );

    w.advance(Duration::from_secs(to_midnight));
    let mut ex = exchange(&w, root.as_ref(), facts("k1", 5), &body, false);
    assert_eq!(ex.request_headers(false), Action::Continue, "a new day");

    w.advance(Duration::from_secs(86_400));
    let (tomorrow, _) = day_and_month(w.unix_millis() + 86_400_000);
    let key = format!("aimesh.ta.spend.d.{tomorrow}.k1");
    assert_eq!(w.store.get(&key).unwrap().0, None);
    root.tick(&w);
    assert_eq!(
        w.store.get(&key).unwrap().0.as_deref(),
        Some(b"0".as_slice())
    );
    held.log();
}

#[test]
fn default_limits_create_a_keys_bucket_on_first_use() {
    let w = world();
    let root = root(&w, r#"{"limits":{"default":{"tpm":100}}}"#);
    assert_eq!(root.tick_period(), None, "no listed key to prepare");
    assert_eq!(w.store.get("aimesh.ta.tpm.anon").unwrap().0, None);
    let body = chat("");
    let mut ex = exchange(&w, root.as_ref(), facts("anon", 10), &body, false);
    assert_eq!(ex.request_headers(false), Action::Continue);
    assert!(w.store.get("aimesh.ta.tpm.anon").unwrap().0.is_some());
    ex.response_headers(OK, false);
    let left = (100 - need(10)).to_string();
    let got = ex.host.response().get("x-ratelimit-remaining-tokens");
    assert_eq!(got, Some(left.as_str()));
}
