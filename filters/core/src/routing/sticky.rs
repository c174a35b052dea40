//! Session affinity: a session id pinned to a target until its TTL ends.
//!
//! The session id is hashed into the key (it may be user data); the value is
//! `"<expiry unix ms> <cluster>"`, naming the target by cluster so a config reload that reorders
//! targets cannot move a session to the wrong one.

use sha2::{Digest, Sha256};

use super::config::VirtualModel;
use crate::host::{SharedStore, StoreError};

/// Shared-data key of one session of one virtual model.
pub fn key(vm: &str, session: &str) -> String {
    let h = Sha256::digest(session.as_bytes());
    format!("aimesh.vm.sticky.{vm}.{}", hex::encode(&h[..12]))
}

/// The target `session` is pinned to, if the pin is still valid.
pub fn lookup<S: SharedStore + ?Sized>(
    store: &S,
    vm: &VirtualModel,
    session: &str,
    now_ms: u64,
) -> Option<usize> {
    let (raw, _) = store.get(&key(&vm.name, session)).ok()?;
    let raw = raw?;
    let (expiry, cluster) = std::str::from_utf8(&raw).ok()?.split_once(' ')?;
    if expiry.parse::<u64>().ok()? <= now_ms {
        return None;
    }
    vm.target_by_cluster(cluster)
}

/// Pins `session` to target `idx` for the virtual model's TTL (last writer wins).
pub fn pin<S: SharedStore + ?Sized>(
    store: &S,
    vm: &VirtualModel,
    session: &str,
    idx: usize,
    now_ms: u64,
) -> Result<(), StoreError> {
    let (Some(sticky), Some(t)) = (&vm.sticky, vm.targets.get(idx)) else {
        return Ok(());
    };
    let expiry = now_ms.saturating_add(sticky.ttl_s.saturating_mul(1000));
    let value = format!("{expiry} {}", t.cluster);
    store.set(&key(&vm.name, session), value.as_bytes(), None)
}

/// Drops the pin (its target failed).
pub fn unpin<S: SharedStore + ?Sized>(
    store: &S,
    vm: &VirtualModel,
    session: &str,
) -> Result<(), StoreError> {
    store.set(&key(&vm.name, session), b"", None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::MemoryStore;

    #[test]
    fn pins_expire_and_can_be_dropped() {
        let vm: VirtualModel = serde_json::from_value(serde_json::json!({"name": "vm",
            "targets": [{"target": "a/m", "cluster": "ca"}, {"target": "b/m", "cluster": "cb"}],
            "sticky": {"header": "x-session-id", "ttl_s": 2}}))
        .unwrap();
        let st = MemoryStore::default();
        assert_eq!(lookup(&st, &vm, "s1", 0), None);
        pin(&st, &vm, "s1", 1, 1000).unwrap();
        assert_eq!(lookup(&st, &vm, "s1", 2999), Some(1));
        assert_eq!(lookup(&st, &vm, "s2", 2999), None);
        assert_eq!(lookup(&st, &vm, "s1", 3000), None);
        pin(&st, &vm, "s1", 0, 3000).unwrap();
        assert_eq!(lookup(&st, &vm, "s1", 3001), Some(0));
        unpin(&st, &vm, "s1").unwrap();
        assert_eq!(lookup(&st, &vm, "s1", 3001), None);
        assert!(!key("vm", "secret-session").contains("secret"));
    }
}
