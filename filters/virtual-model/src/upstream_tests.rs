//! The per-attempt stage (Envoy's upstream filter in an aggregate cluster) through the
//! in-memory host: each retry is a new stream whose endpoint metadata names its target.

use std::time::Duration;

use aimesh_core::routing::stats;
use aimesh_host::memory::{Exchange, World};
use aimesh_host::{Action, Env, StageRoot};
use serde_json::{json, Value};

use crate::test_support::{chat, completion, exchange, model_of, root, targets, PATH};
use crate::upstream::HOST_CLUSTER;

fn config(strategy: &str) -> Value {
    json!({"role": "upstream", "virtual_models": [{"name": "vm-chat", "strategy": strategy,
        "targets": targets(&[("a", 1), ("b", 1)], true)}]})
}

/// One attempt reaching an endpoint of `cluster` (`None`: no `aimesh.cluster` metadata).
fn attempt(world: &World, r: &dyn StageRoot, cluster: Option<&str>) -> Exchange {
    let mut ex = exchange(
        world,
        r,
        &[
            (":method", "POST"),
            (":path", PATH),
            ("x-aimesh-backend", "acct-a"),
        ],
    );
    // What the downstream instance published for the primary.
    ex.host.facts.backend = Some("acct-a".into());
    ex.host.facts.model_served = Some("model-a".into());
    if let Some(c) = cluster {
        ex.host
            .state
            .insert(HOST_CLUSTER.join("."), c.as_bytes().to_vec());
    }
    ex
}

#[test]
fn each_attempt_is_rewritten_for_its_target_and_only_a_good_reply_is_measured() {
    let world = World::default();
    let r = root(&world, &config("latency"));
    // Attempt 1: the primary answers 503 (Envoy retries on the next cluster).
    let mut first = attempt(&world, r.as_ref(), Some("t-a"));
    assert_eq!(first.request_headers(false), Action::Pause);
    assert_eq!(
        first.request_chunk(&chat("vm-chat"), true),
        Action::Continue
    );
    assert_eq!(model_of(&first.sent_upstream), "model-a");
    world.advance(Duration::from_millis(40));
    first.response(&[(":status", "503")], &completion(10), 100);
    assert_eq!(
        first.host.response().get(crate::SERVED_CLUSTER),
        Some("t-a")
    );
    first.log();
    // Attempt 2, the fallback: a new stream, the same client body, split oddly.
    let mut second = attempt(&world, r.as_ref(), Some("t-b"));
    assert_eq!(second.request_headers(false), Action::Pause);
    let body = chat("vm-chat");
    let (head, tail) = body.split_at(5);
    assert_eq!(second.request_chunk(head, false), Action::Pause);
    assert_eq!(second.request_chunk(tail, true), Action::Continue);
    assert_eq!(model_of(&second.sent_upstream), "model-b");
    let len = second.sent_upstream.len().to_string();
    assert_eq!(
        second.host.request().get("content-length"),
        Some(len.as_str())
    );
    let f = &second.host.facts;
    assert_eq!(
        (f.backend.as_deref(), f.model_served.as_deref()),
        (Some("acct-b"), Some("model-b"))
    );
    world.advance(Duration::from_millis(30));
    second.response(&[(":status", "200")], &completion(10), 7);
    let hs = second.host.response();
    assert_eq!(hs.get(crate::TARGET), Some("acct-b/model-b"));
    assert_eq!(hs.get("x-aimesh-backend"), Some("acct-b"));
    assert_eq!(hs.get("x-aimesh-model-served"), Some("model-b"));
    assert_eq!(hs.get(crate::SERVED_CLUSTER), Some("t-b"));
    second.log();
    let now = world.unix_millis();
    let a = stats::summary(world.store.as_ref(), "acct-a/model-a", now, 60_000);
    let b = stats::summary(world.store.as_ref(), "acct-b/model-b", now, 60_000);
    assert_eq!(a.count, 0, "a failed attempt is no latency sample");
    assert_eq!((b.count, b.median_us), (1, 3_000.0), "30 ms over 10 tokens");
    assert_eq!(world.metrics.counter("aimesh.virtual_model.attempts"), 2);
}

#[test]
fn weighted_models_are_not_measured() {
    let world = World::default();
    let r = root(&world, &config("weighted"));
    let mut ex = attempt(&world, r.as_ref(), Some("t-a"));
    ex.request(&chat("vm-chat"));
    world.advance(Duration::from_millis(30));
    ex.response(&[(":status", "200")], &completion(10), 100);
    let s = stats::summary(
        world.store.as_ref(),
        "acct-a/model-a",
        world.unix_millis(),
        60_000,
    );
    assert_eq!(s.count, 0);
}

#[test]
fn attempts_without_a_known_target_pass_untouched() {
    let world = World::default();
    let r = root(&world, &config("latency"));
    // No endpoint metadata: not an aggregate cluster of ours.
    let mut ex = attempt(&world, r.as_ref(), None);
    assert_eq!(ex.request_headers(false), Action::Continue);
    assert_eq!(ex.request_chunk(&chat("vm-chat"), true), Action::Continue);
    assert_eq!(ex.sent_upstream, chat("vm-chat"));
    // A cluster the virtual model does not list: a config mismatch, counted.
    let mut ex = attempt(&world, r.as_ref(), Some("t-x"));
    ex.request(&chat("vm-chat"));
    assert_eq!(ex.sent_upstream, chat("vm-chat"));
    assert_eq!(ex.host.facts.backend.as_deref(), Some("acct-a"));
    ex.response(&[(":status", "200")], b"{}", 100);
    assert!(!ex.host.response().has(crate::SERVED_CLUSTER));
    let m = &world.metrics;
    assert_eq!(
        m.counter("aimesh.virtual_model.upstream_unknown_cluster"),
        1
    );
    // A model that is no virtual model goes as sent.
    let mut ex = attempt(&world, r.as_ref(), Some("t-a"));
    ex.request(&chat("gpt-4o"));
    assert_eq!(ex.sent_upstream, chat("gpt-4o"));
    assert_eq!(m.counter("aimesh.virtual_model.attempts"), 0);
}

#[test]
fn the_upstream_role_creates_no_sticky_buckets() {
    let world = World::default();
    let mut c = config("weighted");
    c["virtual_models"][0]["sticky"] = json!({"header": "x-session-id", "ttl_s": 60});
    let _ = root(&world, &c);
    let key = aimesh_core::routing::sticky::key("vm-chat", "s1");
    assert_eq!(
        aimesh_host::SharedStore::get(world.store.as_ref(), &key)
            .unwrap()
            .0,
        None
    );
    let _ = root(&world, &json!({"virtual_models": c["virtual_models"]}));
    assert!(aimesh_host::SharedStore::get(world.store.as_ref(), &key)
        .unwrap()
        .0
        .is_some());
}

#[test]
fn a_bad_config_is_refused_naming_the_field() {
    let world = World::default();
    let raw = br#"{"virtual_models":[{"name":"vm","targets":[]}]}"#;
    let err = (crate::STAGE.configure)(raw, &world)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("virtual_models[0]"), "{err}");
    let err = (crate::STAGE.configure)(br#"{"rolle":"upstream"}"#, &world)
        .err()
        .unwrap();
    assert!(err.to_string().contains("rolle"), "{err}");
    assert_eq!(crate::STAGE.name, "virtual-model");
}
