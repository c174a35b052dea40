//! The listener-side stage through the in-memory host: routing, the body rewrite, bad bodies,
//! the response headers, sticky sessions and latency samples on the fake clock.

use std::time::Duration;

use aimesh_core::routing::{stats, sticky, RoutingConfig};
use aimesh_host::memory::World;
use aimesh_host::{Action, Env};
use serde_json::json;

use crate::test_support::{chat, completion, exchange, model_of, root, targets, PATH};

const OK: &[(&str, &str)] = &[(":status", "200"), ("x-envoy-upstream-service-time", "3")];

fn post() -> Vec<(&'static str, &'static str)> {
    vec![(":method", "POST"), (":path", PATH)]
}

#[test]
fn direct_mode_rewrites_the_model_in_a_body_split_at_odd_places() {
    let world = World::default();
    let r = root(
        &world,
        &json!({"virtual_models": [{"name": "vm-chat", "targets": targets(&[("a", 1)], false)}]}),
    );
    let mut ex = exchange(&world, r.as_ref(), &post());
    let body = br#"{ "messages":[{"role":"user","content":"say \"model\": x"}], "model" : "vm-chat" , "metadata":{"model":"keep"} }"#;
    assert_eq!(ex.request_headers(false), Action::Pause);
    let chunks: Vec<&[u8]> = body.chunks(7).collect();
    for (i, c) in chunks.iter().enumerate() {
        let last = i + 1 == chunks.len();
        let a = ex.request_chunk(c, last);
        assert_eq!(
            a == Action::Continue,
            last,
            "chunk {i} must be held until the end"
        );
    }
    let want = String::from_utf8_lossy(body).replace("\"vm-chat\"", "\"model-a\"");
    assert_eq!(String::from_utf8_lossy(&ex.sent_upstream), want);
    let len = want.len().to_string();
    assert_eq!(ex.host.request().get("content-length"), Some(len.as_str()));
    let f = &ex.host.facts;
    assert_eq!(f.cluster.as_deref(), Some("t-a"));
    assert_eq!(f.backend.as_deref(), Some("acct-a"));
    assert_eq!(f.model_served.as_deref(), Some("model-a"));
    assert_eq!(ex.host.request().get(crate::VIRTUAL_MODEL), Some("vm-chat"));
    ex.response(OK, &completion(4), 5);
    let hs = ex.host.response();
    assert_eq!(hs.get(crate::TARGET), Some("acct-a/model-a"));
    assert_eq!(hs.get("x-aimesh-backend"), Some("acct-a"));
    assert_eq!(hs.get("x-aimesh-model-served"), Some("model-a"));
    assert_eq!(hs.get(crate::VIRTUAL_MODEL), Some("vm-chat"));
    ex.log();
    let m = &world.metrics;
    assert_eq!(
        (
            m.counter("aimesh.virtual_model.requests"),
            m.counter("aimesh.virtual_model.routed")
        ),
        (1, 1)
    );
}

#[test]
fn the_model_fact_routes_at_headers_and_fallback_mode_leaves_the_body_alone() {
    let world = World::default();
    let vm = json!({"name": "vm-chat", "targets": targets(&[("a", 1), ("b", 0)], true),
                    "retry": {"attempts_per_target": 2}});
    let r = root(&world, &json!({"virtual_models": [vm]}));
    let mut ex = exchange(&world, r.as_ref(), &post());
    ex.host.facts.model = Some("vm-chat".into());
    assert_eq!(ex.request_headers(false), Action::Continue);
    assert_eq!(ex.request_chunk(&chat("vm-chat"), true), Action::Continue);
    assert_eq!(ex.sent_upstream, chat("vm-chat"));
    assert_eq!(ex.host.facts.cluster.as_deref(), Some("vm.a"));
    assert_eq!(ex.host.request().get("x-envoy-max-retries"), Some("3"));
    assert!(ex.host.request().has("x-envoy-retriable-status-codes"));
    // The fallback target answered: its cluster comes back from the upstream instance.
    ex.response(
        &[(":status", "200"), (crate::SERVED_CLUSTER, "t-b")],
        b"{}",
        100,
    );
    let hs = ex.host.response();
    assert!(
        !hs.has(crate::SERVED_CLUSTER),
        "internal header reached the client"
    );
    assert_eq!(hs.get(crate::TARGET), Some("acct-b/model-b"));
    assert_eq!(hs.get("x-aimesh-backend"), Some("acct-b"));
    assert_eq!(world.metrics.counter("aimesh.virtual_model.fallbacks"), 1);
}

#[test]
fn envoys_own_reply_names_no_target() {
    let world = World::default();
    let r = root(
        &world,
        &json!({"virtual_models": [{"name": "vm-chat", "targets": targets(&[("a", 1)], true)}]}),
    );
    let mut ex = exchange(&world, r.as_ref(), &post());
    ex.host.facts.model = Some("vm-chat".into());
    ex.request(&chat("vm-chat"));
    ex.response(&[(":status", "503")], b"no healthy upstream", 100);
    let hs = ex.host.response();
    assert_eq!(hs.get(crate::VIRTUAL_MODEL), Some("vm-chat"));
    assert!(!hs.has(crate::TARGET) && !hs.has("x-aimesh-backend"));
}

#[test]
fn bad_bodies_get_400_in_openais_shape_and_nothing_goes_upstream() {
    for (body, code) in [
        (&b"{\"model\": "[..], "invalid_json"),
        (&b"{\"messages\": []}"[..], "missing_model"),
        (&b"\xef\xbb\xbf{\"model\":\"vm-chat\"}"[..], "invalid_json"),
    ] {
        let world = World::default();
        let r = root(
            &world,
            &json!({"virtual_models": [{"name": "vm-chat", "targets": targets(&[("a", 1)], false)}]}),
        );
        let mut ex = exchange(&world, r.as_ref(), &post());
        ex.request(body);
        let reply = ex.reply().expect("a local reply");
        assert_eq!(reply.status, 400);
        assert_eq!(reply.json()["error"]["code"], code);
        assert!(ex.sent_upstream.is_empty());
        ex.log();
    }
}

#[test]
fn unknown_models_pass_through_or_get_404() {
    let world = World::default();
    let vm = json!({"name": "vm-chat", "targets": targets(&[("a", 1)], false)});
    let lenient = root(&world, &json!({"virtual_models": [vm]}));
    let body = br#"{"model":"gpt-4o-mini",  "messages":[]}"#;
    let mut ex = exchange(&world, lenient.as_ref(), &post());
    ex.request(body);
    assert_eq!(ex.sent_upstream, body);
    assert!(ex.reply().is_none() && ex.host.facts.cluster.is_none());
    ex.response(OK, b"{}", 10);
    assert!(!ex.host.response().has(crate::VIRTUAL_MODEL));

    let strict = root(
        &world,
        &json!({"pass_through": false, "virtual_models": [vm]}),
    );
    let mut ex = exchange(&world, strict.as_ref(), &post());
    ex.host.facts.model = Some("no-such-model".into());
    assert_eq!(ex.request_headers(false), Action::Pause);
    let reply = ex.reply().expect("404");
    assert_eq!(
        (reply.status, reply.json()["error"]["code"].as_str()),
        (404, Some("model_not_found"))
    );
    let m = &world.metrics;
    assert_eq!(m.counter("aimesh.virtual_model.pass_through"), 1);
    assert_eq!(m.counter("aimesh.virtual_model.not_found"), 1);
}

#[test]
fn custom_endpoints_and_bodyless_requests_are_not_touched() {
    let world = World::default();
    let r = root(
        &world,
        &json!({"virtual_models": [{"name": "vm-chat", "targets": targets(&[("a", 1)], false)}]}),
    );
    let binary = [0xffu8, 0x00, 0xfe, b'{'];
    let mut ex = exchange(
        &world,
        r.as_ref(),
        &[(":method", "POST"), (":path", "/proxy-api/x/y")],
    );
    assert_eq!(ex.request_headers(false), Action::Continue);
    assert_eq!(ex.request_chunk(&binary, true), Action::Continue);
    assert_eq!(ex.sent_upstream, binary);
    assert!(ex.reply().is_none());

    let mut ex = exchange(
        &world,
        r.as_ref(),
        &[(":method", "GET"), (":path", "/v1/models")],
    );
    assert_eq!(ex.request_headers(true), Action::Continue);
    assert!(ex.reply().is_none() && ex.host.facts.cluster.is_none());
}

fn sticky_config(ttl_s: u64) -> serde_json::Value {
    json!({"virtual_models": [{"name": "vm-chat", "targets": targets(&[("a", 1), ("b", 0)], true),
                               "sticky": {"header": "x-session-id", "ttl_s": ttl_s}}]})
}

fn vm_of(config: &serde_json::Value) -> aimesh_core::routing::VirtualModel {
    let c: RoutingConfig = serde_json::from_value(config.clone()).unwrap();
    c.virtual_models[0].clone()
}

/// One session request answered by `served` (a cluster) with `status`; returns the primary's
/// cluster the request was routed to.
fn session_request(
    world: &World,
    r: &dyn aimesh_host::StageRoot,
    served: Option<&str>,
    status: &str,
) -> String {
    let mut hs = post();
    hs.push(("x-session-id", "s1"));
    let mut ex = exchange(world, r, &hs);
    ex.host.facts.model = Some("vm-chat".into());
    ex.request(&chat("vm-chat"));
    let mut resp = vec![(":status", status)];
    if let Some(c) = served {
        resp.push((crate::SERVED_CLUSTER, c));
    }
    ex.response(&resp, b"{}", 100);
    ex.log();
    ex.host.facts.cluster.clone().unwrap_or_default()
}

#[test]
fn a_session_sticks_follows_a_failover_and_drops_a_failed_target() {
    let world = World::default();
    let config = sticky_config(60);
    let (r, vm) = (root(&world, &config), vm_of(&config));
    let now = || world.unix_millis();
    // b has weight 0: only a pin sends the session there.
    assert_eq!(
        session_request(&world, r.as_ref(), Some("t-a"), "200"),
        "vm.a"
    );
    assert_eq!(
        sticky::lookup(world.store.as_ref(), &vm, "s1", now()),
        Some(0)
    );
    // a failed, b answered: the session moves to b and its next request goes there.
    assert_eq!(
        session_request(&world, r.as_ref(), Some("t-b"), "200"),
        "vm.a"
    );
    assert_eq!(
        sticky::lookup(world.store.as_ref(), &vm, "s1", now()),
        Some(1)
    );
    assert_eq!(
        session_request(&world, r.as_ref(), Some("t-b"), "200"),
        "vm.b"
    );
    // Every target failed: the pin is dropped, the strategy picks afresh.
    assert_eq!(
        session_request(&world, r.as_ref(), Some("t-b"), "503"),
        "vm.b"
    );
    assert_eq!(sticky::lookup(world.store.as_ref(), &vm, "s1", now()), None);
    assert_eq!(
        session_request(&world, r.as_ref(), Some("t-a"), "200"),
        "vm.a"
    );
}

#[test]
fn a_pin_holds_for_its_ttl_on_the_clock_and_then_the_session_is_picked_afresh() {
    let world = World::default();
    let config = sticky_config(4);
    let (r, vm) = (root(&world, &config), vm_of(&config));
    sticky::pin(world.store.as_ref(), &vm, "s1", 1, world.unix_millis()).unwrap();
    world.advance(Duration::from_millis(3_900));
    assert_eq!(
        session_request(&world, r.as_ref(), Some("t-b"), "200"),
        "vm.b"
    );
    world.advance(Duration::from_millis(200));
    assert_eq!(
        session_request(&world, r.as_ref(), Some("t-a"), "200"),
        "vm.a"
    );
    assert_eq!(
        sticky::lookup(world.store.as_ref(), &vm, "s1", world.unix_millis()),
        Some(0)
    );
}

#[test]
fn a_reset_before_the_response_leaves_the_pin_and_records_no_sample() {
    let world = World::default();
    let config = json!({"virtual_models": [{"name": "vm-chat", "strategy": "latency",
        "targets": targets(&[("a", 1)], false),
        "sticky": {"header": "x-session-id", "ttl_s": 60}}]});
    let (r, vm) = (root(&world, &config), vm_of(&config));
    let mut ex = exchange(
        &world,
        r.as_ref(),
        &[(":method", "POST"), (":path", PATH), ("x-session-id", "s1")],
    );
    ex.request(&chat("vm-chat"));
    world.advance(Duration::from_millis(50));
    ex.log();
    assert_eq!(
        sticky::lookup(world.store.as_ref(), &vm, "s1", world.unix_millis()),
        Some(0)
    );
    let s = stats::summary(
        world.store.as_ref(),
        "acct-a/model-a",
        world.unix_millis(),
        60_000,
    );
    assert_eq!(s.count, 0);
}

#[test]
fn failed_replies_are_not_measured() {
    let world = World::default();
    let config = json!({"virtual_models": [{"name": "vm-chat", "strategy": "latency",
        "targets": targets(&[("a", 1)], false)}]});
    let r = root(&world, &config);
    let mut ex = exchange(&world, r.as_ref(), &post());
    ex.request(&chat("vm-chat"));
    world.advance(Duration::from_millis(30));
    ex.response(
        &[(":status", "500"), ("x-envoy-upstream-service-time", "1")],
        &completion(5),
        100,
    );
    let s = stats::summary(
        world.store.as_ref(),
        "acct-a/model-a",
        world.unix_millis(),
        60_000,
    );
    assert_eq!(s.count, 0);
    assert_eq!(model_of(&ex.sent_upstream), "model-a");
}
