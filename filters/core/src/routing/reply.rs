//! What a reply to a routed request tells the listener-side instance: which target answered,
//! and what becomes of the request's sticky session.
//!
//! Decided here, not in the filter, so every case (failover, Envoy's own reply, a failed
//! reply) is tested natively; the filter only reads the headers and applies the outcome.

use super::config::VirtualModel;
use super::sticky;
use crate::host::{SharedStore, StoreError};

/// The target that answered a request whose primary target was `primary`.
///
/// `served_cluster` is what the upstream instance reported (fallback mode); without it, in
/// direct mode the primary answered unless Envoy replied itself, which `upstream_answered`
/// (the router's `x-envoy-upstream-service-time` on the reply) tells apart.
pub fn served_target(
    vm: &VirtualModel,
    primary: usize,
    served_cluster: Option<&str>,
    upstream_answered: bool,
) -> Option<usize> {
    match served_cluster {
        Some(c) => vm.target_by_cluster(c),
        None => {
            let direct = vm
                .targets
                .get(primary)
                .is_some_and(|t| t.fallback_cluster.is_none());
            (direct && upstream_answered).then_some(primary)
        }
    }
}

/// What a reply does to its session's pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinChange {
    /// The pinned (or freshly picked) target answered: the pin stands.
    Keep,
    /// Another target answered after a failover: the session follows it.
    Move(usize),
    /// The reply failed, or no target answered: the session is picked afresh next time.
    Drop,
}

/// The pin change for a reply with a 2xx status (`ok`) served by `served`.
pub fn pin_change(primary: usize, served: Option<usize>, ok: bool) -> PinChange {
    match served {
        Some(i) if ok && i != primary => PinChange::Move(i),
        Some(_) if ok => PinChange::Keep,
        _ => PinChange::Drop,
    }
}

/// Applies `change` to `session`'s pin in the shared store.
pub fn apply<S: SharedStore + ?Sized>(
    store: &S,
    vm: &VirtualModel,
    session: &str,
    change: PinChange,
    now_ms: u64,
) -> Result<(), StoreError> {
    match change {
        PinChange::Keep => Ok(()),
        PinChange::Move(i) => sticky::pin(store, vm, session, i, now_ms),
        PinChange::Drop => sticky::unpin(store, vm, session, now_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::MemoryStore;
    use crate::routing::RoutingConfig;

    fn vm(fallback: bool) -> VirtualModel {
        let t = |i: &str| {
            let mut t = serde_json::json!({"target": format!("acct-{i}/model-{i}"),
                                           "cluster": format!("t-{i}")});
            if fallback {
                t["fallback_cluster"] = format!("vm.{i}").into();
            }
            t
        };
        let c: RoutingConfig = serde_json::from_value(serde_json::json!({"virtual_models": [
            {"name": "vm", "targets": [t("a"), t("b")],
             "sticky": {"header": "x-session-id", "ttl_s": 60}}]}))
        .unwrap();
        c.validate().unwrap();
        c.virtual_models[0].clone()
    }

    #[test]
    fn the_reported_cluster_names_the_target_that_answered() {
        let v = vm(true);
        assert_eq!(served_target(&v, 0, Some("t-b"), true), Some(1));
        assert_eq!(served_target(&v, 0, Some("t-a"), true), Some(0));
        // A cluster the config does not know is no target.
        assert_eq!(served_target(&v, 0, Some("t-x"), true), None);
        // Fallback mode without a report: Envoy answered itself (every target down).
        assert_eq!(served_target(&v, 0, None, true), None);
    }

    #[test]
    fn direct_routing_is_served_by_the_primary_unless_envoy_replied() {
        let v = vm(false);
        assert_eq!(served_target(&v, 1, None, true), Some(1));
        assert_eq!(served_target(&v, 1, None, false), None);
        assert_eq!(served_target(&v, 7, None, true), None);
    }

    #[test]
    fn a_session_follows_a_successful_failover_and_drops_on_failure() {
        assert_eq!(pin_change(0, Some(1), true), PinChange::Move(1));
        assert_eq!(pin_change(0, Some(0), true), PinChange::Keep);
        assert_eq!(pin_change(0, Some(0), false), PinChange::Drop);
        assert_eq!(pin_change(0, Some(1), false), PinChange::Drop);
        assert_eq!(pin_change(0, None, true), PinChange::Drop);
    }

    #[test]
    fn applying_a_change_moves_or_drops_the_pin() {
        let (v, store) = (vm(true), MemoryStore::default());
        sticky::init(&store, &v).unwrap();
        sticky::pin(&store, &v, "s1", 0, 1_000).unwrap();
        apply(&store, &v, "s1", PinChange::Keep, 2_000).unwrap();
        assert_eq!(sticky::lookup(&store, &v, "s1", 2_000), Some(0));
        apply(&store, &v, "s1", PinChange::Move(1), 2_000).unwrap();
        assert_eq!(sticky::lookup(&store, &v, "s1", 2_000), Some(1));
        apply(&store, &v, "s1", PinChange::Drop, 3_000).unwrap();
        assert_eq!(sticky::lookup(&store, &v, "s1", 3_000), None);
    }
}
