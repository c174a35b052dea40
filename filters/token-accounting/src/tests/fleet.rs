//! Fleet-wide limits: the admission call holds the body, its answer passes or refuses the
//! request, an outage follows each kind's failure policy, and the end settles detached.

use aimesh_config::fleet::{AdmitRequest, SettleRequest};
use aimesh_host::memory::World;
use aimesh_host::{Action, CalloutResponse, Headers};

use super::{auth_facts, chat, exchange, root, world};

const CONFIG: &str = r#"{"prices":{"gpt-4o":{"input":2,"output":10}},
  "fleet":{"cluster":"aimesh_limits","default_max_tokens":100,
           "rules":[{"scope":"key","rpm":30},{"scope":"team","name":"ml","daily_usd":1}]}}"#;

fn answer(status: &str, body: &str) -> CalloutResponse {
    CalloutResponse {
        headers: Headers::from_pairs(vec![(":status".into(), status.as_bytes().to_vec())]),
        body: body.as_bytes().to_vec(),
    }
}

/// A request through the stage up to its admission call; returns it and the call's body.
fn held(w: &World, config: &str) -> (aimesh_host::memory::Exchange, AdmitRequest) {
    let r = root(w, config);
    let body = chat(r#","max_tokens":50"#);
    let mut ex = exchange(w, r.as_ref(), auth_facts(), &body, false);
    assert_eq!(ex.request_headers(false), Action::Pause);
    assert_eq!(ex.request(body.as_bytes()), Action::Pause);
    let call = ex.host.callouts.last().expect("an admission call").clone();
    assert_eq!(call.cluster, "aimesh_limits");
    let req = serde_json::from_slice(&call.body.unwrap_or_default()).unwrap();
    (ex, req)
}

#[test]
fn admitted_request_resumes_and_settles_detached() {
    let w = world();
    let (mut ex, req) = held(&w, CONFIG);
    let kinds: Vec<_> = req
        .buckets
        .iter()
        .map(|b| (b.scope.as_str(), b.amount))
        .collect();
    // Worst case: prompt estimate plus max_tokens, at the output price for the completion.
    assert_eq!(kinds[0], ("key:k1", 1));
    assert_eq!(kinds[1].0, "team:ml");
    assert!(kinds[1].1 >= 50 * 10, "{kinds:?}");
    let token = ex.host.callouts[0].token;
    ex.callout_response(
        token,
        answer(
            "200",
            r#"{"admitted":true,"tickets":[{"kind":"usd_day","key":"{aimesh}:x","step":0,"reserved":600}],
                "left":[{"kind":"rpm","limit":30,"remaining":29}]}"#,
        ),
    );
    assert_eq!(ex.host.resumed, 1);
    assert!(ex.reply().is_none());
    ex.response(
        &[(":status", "200"), ("content-type", "application/json")],
        br#"{"model":"gpt-4o","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}"#,
        0,
    );
    assert_eq!(
        ex.host.response().get("x-ratelimit-remaining-requests"),
        Some("29")
    );
    ex.log();
    let settle: SettleRequest =
        serde_json::from_slice(ex.host.detached[0].body.as_deref().unwrap()).unwrap();
    assert_eq!((settle.tokens, settle.tickets.len()), (10, 1));
    assert_eq!(settle.micro_usd, 7 * 2 + 3 * 10);
}

#[test]
fn refused_budget_is_insufficient_quota_and_nothing_goes_on() {
    let w = world();
    let (mut ex, _) = held(&w, CONFIG);
    let token = ex.host.callouts[0].token;
    ex.callout_response(
        token,
        answer(
            "200",
            r#"{"admitted":false,"refused":{"kind":"usd_day","scope":"team:ml","limit":1000000,"remaining":10,"retry_after_s":3600}}"#,
        ),
    );
    let reply = ex.reply().expect("a refusal");
    assert_eq!(reply.status, 429);
    assert!(String::from_utf8_lossy(&reply.body).contains("insufficient_quota"));
    assert_eq!(ex.host.resumed, 0);
    ex.log();
    assert!(ex.host.detached.is_empty(), "nothing to settle");
}

#[test]
fn outage_fails_closed_for_budgets_and_open_for_rates() {
    let w = world();
    let (mut ex, _) = held(&w, CONFIG);
    let token = ex.host.callouts[0].token;
    ex.callout_response(
        token,
        answer("503", r#"{"code":"store_unavailable","message":"x"}"#),
    );
    let reply = ex.reply().expect("budgets fail closed");
    assert_eq!(reply.status, 503);
    assert!(String::from_utf8_lossy(&reply.body).contains("limits_unavailable"));

    let rates_only = r#"{"fleet":{"cluster":"aimesh_limits","rules":[{"scope":"key","rpm":30}]}}"#;
    let (mut ex, _) = held(&w, rates_only);
    let token = ex.host.callouts[0].token;
    // A timed-out callout has no headers at all.
    ex.callout_response(token, CalloutResponse::default());
    assert!(ex.reply().is_none());
    assert_eq!(ex.host.resumed, 1);
}
