//! The strategies over time, through the in-memory host: replies are timed on the fake clock,
//! so samples enter and leave their windows with no sleep.

use std::time::Duration;

use aimesh_core::routing::stats;
use aimesh_host::memory::World;
use aimesh_host::{Env, StageRoot};
use serde_json::json;

use crate::test_support::{chat, completion, exchange, root, targets, PATH};

const OK: &[(&str, &str)] = &[(":status", "200"), ("x-envoy-upstream-service-time", "3")];

/// One direct request; the reply takes `ms` on the clock and carries 10 tokens.
fn timed_request(world: &World, r: &dyn StageRoot, ms: &dyn Fn(&str) -> u64) -> String {
    let mut ex = exchange(world, r, &[(":method", "POST"), (":path", PATH)]);
    ex.request(&chat("vm-chat"));
    let target = ex.host.facts.backend.clone().unwrap_or_default();
    world.advance(Duration::from_millis(ms(&target)));
    ex.response(OK, &completion(10), 9);
    ex.log();
    target
}

#[test]
fn latency_samples_time_the_reply_on_the_clock_and_leave_with_the_window() {
    let world = World::default();
    let config = json!({"virtual_models": [{"name": "vm-chat", "strategy": "latency",
        "targets": targets(&[("a", 1), ("b", 1)], false), "latency": {"window_s": 6}}]});
    let r = root(&world, &config);
    let a_fast = |t: &str| if t == "acct-a" { 20 } else { 60 };
    let first: Vec<String> = (0..80)
        .map(|_| timed_request(&world, r.as_ref(), &a_fast))
        .collect();
    assert!(
        first.iter().any(|t| t == "acct-b"),
        "the slower target is measured too"
    );
    assert!(first[50..].iter().filter(|t| *t == "acct-a").count() >= 27);
    let s = stats::summary(
        world.store.as_ref(),
        "acct-a/model-a",
        world.unix_millis(),
        6_000,
    );
    assert_eq!(s.median_us, 2_000.0, "20 ms over 10 tokens");
    // Speeds swap; once the old samples leave the window the strategy follows.
    world.advance(Duration::from_millis(6_500));
    let b_fast = |t: &str| if t == "acct-b" { 20 } else { 60 };
    let second: Vec<String> = (0..80)
        .map(|_| timed_request(&world, r.as_ref(), &b_fast))
        .collect();
    assert!(
        second[50..].iter().filter(|t| *t == "acct-b").count() >= 27,
        "{second:?}"
    );
}

fn priority_config() -> serde_json::Value {
    let mut ts = targets(&[("a", 1), ("b", 1), ("c", 1)], false);
    for (i, t) in ts.as_array_mut().unwrap().iter_mut().enumerate() {
        t["priority"] = i.into();
    }
    json!({"virtual_models": [{"name": "vm-chat", "strategy": "priority", "targets": ts,
        "sla": {"max_ms_per_token": 5, "window_s": 2}}]})
}

#[test]
fn a_slow_primary_is_unhealthy_until_its_samples_leave_the_sla_window() {
    let world = World::default();
    let r = root(&world, &priority_config());
    // a: 120 ms for 10 tokens, over the 5 ms SLA; b is fast.
    let a_slow = |t: &str| if t == "acct-a" { 120 } else { 10 };
    let first: Vec<String> = (0..5)
        .map(|_| timed_request(&world, r.as_ref(), &a_slow))
        .collect();
    assert_eq!(first[0], "acct-a");
    // Workers reuse the shared figures for 200 ms: past that, every pick sees a's samples.
    world.advance(Duration::from_millis(300));
    let later: Vec<String> = (0..40)
        .map(|_| timed_request(&world, r.as_ref(), &a_slow))
        .collect();
    let count = |v: &[String], t: &str| v.iter().filter(|x| *x == t).count();
    // a keeps a probe share to show recovery; the bulk goes to b, none to c.
    assert!(count(&later, "acct-b") >= 24, "{later:?}");
    assert!(
        count(&later, "acct-a") >= 1,
        "no probe of the unhealthy primary: {later:?}"
    );
    assert_eq!(count(&later, "acct-c"), 0);
    // a recovers; once its slow samples leave the 2 s window it is primary again.
    let fast = |_: &str| 10;
    world.advance(Duration::from_millis(2_300));
    let back: Vec<String> = (0..20)
        .map(|_| timed_request(&world, r.as_ref(), &fast))
        .collect();
    assert!(count(&back, "acct-a") >= 19, "{back:?}");
}

#[test]
fn a_worker_reuses_the_shared_figures_for_200_ms() {
    let world = World::default();
    let r = root(&world, &priority_config());
    // Nothing measured yet: a is healthy and primary.
    assert_eq!(timed_request(&world, r.as_ref(), &|_: &str| 10), "acct-a");
    // Another worker records slow samples for a.
    for _ in 0..3 {
        stats::record(
            world.store.as_ref(),
            "acct-a/model-a",
            world.unix_millis(),
            50_000,
            60_000,
        )
        .unwrap();
    }
    // Within the cache period this worker still sees the figures it read.
    world.advance(Duration::from_millis(100));
    assert_eq!(timed_request(&world, r.as_ref(), &|_: &str| 0), "acct-a");
    world.advance(Duration::from_millis(150));
    let after: Vec<String> = (0..10)
        .map(|_| timed_request(&world, r.as_ref(), &|_: &str| 0))
        .collect();
    assert!(after.iter().any(|t| t == "acct-b"), "{after:?}");
}
