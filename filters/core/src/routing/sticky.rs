//! Session affinity: a session id pinned to a target until its TTL ends.
//!
//! Proxy-wasm shared data has no delete, so a key per session would grow Envoy's memory with
//! every distinct session id ever seen. Instead the SHA-256 of the session id picks one of
//! [`BUCKETS`] keys per virtual model (`aimesh.vm.sticky.{vm}.{bucket}`, created empty by
//! [`init`] from `on_configure`), and each bucket holds at most [`MAX_PER_BUCKET`] pins. Memory is
//! therefore bounded by the configuration (virtual models with `sticky` × [`BUCKETS`] ×
//! [`MAX_PER_BUCKET`] entries), whatever the traffic.
//!
//! A bucket's value is one line per pin, `"<session tag> <expiry unix ms> <cluster>"`, where the
//! tag is 16 hex digits of the session hash (other bytes than the bucket's, so the session id
//! itself is never stored) and the target is named by cluster, so a config reload that reorders
//! targets cannot move a session to the wrong one. Every pin and unpin rewrites the bucket with
//! compare-and-swap ([`crate::host::update`]), dropping expired pins; a full bucket drops the pin
//! that expires soonest, whose session is simply picked afresh on its next request. A value that
//! does not parse (corrupt, or the former per-session `"<expiry> <cluster>"` format) counts as an
//! empty bucket.

use sha2::{Digest, Sha256};

use super::config::VirtualModel;
use crate::host::{update, SharedStore, StoreError};
use crate::limits::init_if_absent;

/// Buckets (shared-data keys) per virtual model with `sticky`.
pub const BUCKETS: usize = 256;

/// Pins kept per bucket: up to `BUCKETS * MAX_PER_BUCKET` (8,192) live sessions per virtual model
/// before the soonest-expiring pins are dropped.
pub const MAX_PER_BUCKET: usize = 32;

/// Hex digits of the session tag stored in a bucket (64 bits).
const TAG_HEX: usize = 16;

/// Bytes of one stored pin besides its cluster name: tag, expiry (at most 20 digits), two spaces
/// and the line break.
pub const ENTRY_OVERHEAD: usize = TAG_HEX + 20 + 3;

/// Where a session lives: its bucket and its tag within the bucket.
fn locate(session: &str) -> (usize, String) {
    let h = Sha256::digest(session.as_bytes());
    let mut b = [0u8; 4];
    b.copy_from_slice(&h[..4]);
    let bucket = u32::from_be_bytes(b) as usize % BUCKETS;
    (bucket, hex::encode(&h[4..4 + TAG_HEX / 2]))
}

fn bucket_key(vm: &str, bucket: usize) -> String {
    format!("aimesh.vm.sticky.{vm}.{bucket}")
}

/// Shared-data key of the bucket holding `session`'s pin.
pub fn key(vm: &str, session: &str) -> String {
    bucket_key(vm, locate(session).0)
}

/// Creates the virtual model's bucket keys empty (call from `on_configure`: Envoy ignores the
/// CAS token on absent keys, so first writes by two workers could otherwise lose a pin).
pub fn init<S: SharedStore + ?Sized>(store: &S, vm: &VirtualModel) -> Result<(), StoreError> {
    if vm.sticky.is_none() {
        return Ok(());
    }
    for b in 0..BUCKETS {
        init_if_absent(store, &bucket_key(&vm.name, b), b"")?;
    }
    Ok(())
}

/// One pin in a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry<'a> {
    tag: &'a str,
    expiry: u64,
    cluster: &'a str,
}

fn parse_entry(line: &str) -> Option<Entry<'_>> {
    let mut parts = line.splitn(3, ' ');
    let tag = parts.next()?;
    let expiry = parts.next()?;
    let cluster = parts.next()?;
    let tag_ok = tag.len() == TAG_HEX
        && tag
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let expiry_ok = !expiry.is_empty() && expiry.bytes().all(|b| b.is_ascii_digit());
    if !tag_ok || !expiry_ok || cluster.is_empty() {
        return None;
    }
    Some(Entry {
        tag,
        expiry: expiry.parse().ok()?,
        cluster,
    })
}

/// Pins of a bucket value; empty when absent, empty, or not entirely well formed.
fn parse(raw: Option<&[u8]>) -> Vec<Entry<'_>> {
    let Some(text) = raw.and_then(|r| std::str::from_utf8(r).ok()) else {
        return Vec::new();
    };
    if text.is_empty() {
        return Vec::new();
    }
    text.split('\n')
        .map(parse_entry)
        .collect::<Option<Vec<_>>>()
        .unwrap_or_default()
}

fn render(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut out = String::with_capacity(entries.len() * (ENTRY_OVERHEAD + 16));
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(e.tag);
        out.push(' ');
        out.push_str(&e.expiry.to_string());
        out.push(' ');
        out.push_str(e.cluster);
    }
    out.into_bytes()
}

/// The target `session` is pinned to, if the pin is still valid.
pub fn lookup<S: SharedStore + ?Sized>(
    store: &S,
    vm: &VirtualModel,
    session: &str,
    now_ms: u64,
) -> Option<usize> {
    let (bucket, tag) = locate(session);
    let (raw, _) = store.get(&bucket_key(&vm.name, bucket)).ok()?;
    let entries = parse(raw.as_deref());
    let e = entries.iter().find(|e| e.tag == tag && e.expiry > now_ms)?;
    vm.target_by_cluster(e.cluster)
}

/// Pins `session` to target `idx` for the virtual model's TTL (replacing its previous pin).
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
    // A line break would split the entry; such a cluster is never pinned (no stickiness, safe).
    if t.cluster.contains('\n') {
        return Ok(());
    }
    let expiry = now_ms.saturating_add(sticky.ttl_s.saturating_mul(1000));
    let (bucket, tag) = locate(session);
    update(store, &bucket_key(&vm.name, bucket), |raw| {
        let mut entries = parse(raw);
        entries.retain(|e| e.expiry > now_ms && e.tag != tag);
        while entries.len() >= MAX_PER_BUCKET {
            let soonest = entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.expiry)
                .map(|(i, _)| i);
            match soonest {
                Some(i) => {
                    entries.swap_remove(i);
                }
                None => break,
            }
        }
        entries.push(Entry {
            tag: &tag,
            expiry,
            cluster: &t.cluster,
        });
        (Some(render(&entries)), ())
    })
}

/// Drops the pin of `session` (its target failed), and the bucket's expired pins.
pub fn unpin<S: SharedStore + ?Sized>(
    store: &S,
    vm: &VirtualModel,
    session: &str,
    now_ms: u64,
) -> Result<(), StoreError> {
    if vm.sticky.is_none() {
        return Ok(());
    }
    let (bucket, tag) = locate(session);
    update(store, &bucket_key(&vm.name, bucket), |raw| {
        let mut entries = parse(raw);
        entries.retain(|e| e.expiry > now_ms && e.tag != tag);
        let next = render(&entries);
        // Nothing to drop: no write, no CAS conflict with other workers.
        if raw.unwrap_or_default() == next.as_slice() {
            return (None, ());
        }
        (Some(next), ())
    })
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::collections::HashSet;

    use super::*;
    use crate::host::MemoryStore;

    fn vm(ttl_s: u64) -> VirtualModel {
        serde_json::from_value(serde_json::json!({"name": "vm",
            "targets": [{"target": "a/m", "cluster": "ca"}, {"target": "b/m", "cluster": "cb"}],
            "sticky": {"header": "x-session-id", "ttl_s": ttl_s}}))
        .unwrap()
    }

    /// `n` distinct session ids that share one bucket.
    fn same_bucket(n: usize) -> Vec<String> {
        let want = locate("seed").0;
        (0..)
            .map(|i| format!("user-{i}"))
            .filter(|s| locate(s).0 == want)
            .take(n)
            .collect()
    }

    fn value(st: &MemoryStore, key: &str) -> Vec<u8> {
        st.get(key).unwrap().0.unwrap_or_default()
    }

    #[test]
    fn pins_expire_and_can_be_dropped() {
        let vm = vm(2);
        let st = MemoryStore::default();
        init(&st, &vm).unwrap();
        assert_eq!(lookup(&st, &vm, "s1", 0), None);
        pin(&st, &vm, "s1", 1, 1000).unwrap();
        assert_eq!(lookup(&st, &vm, "s1", 2999), Some(1));
        assert_eq!(lookup(&st, &vm, "s2", 2999), None);
        assert_eq!(lookup(&st, &vm, "s1", 3000), None);
        pin(&st, &vm, "s1", 0, 3000).unwrap();
        assert_eq!(lookup(&st, &vm, "s1", 3001), Some(0));
        unpin(&st, &vm, "s1", 3001).unwrap();
        assert_eq!(lookup(&st, &vm, "s1", 3001), None);
        assert!(!key("vm", "secret-session").contains("secret"));
        let raw = value(&st, &key("vm", "secret-session"));
        assert!(!String::from_utf8_lossy(&raw).contains("secret"));
    }

    #[test]
    fn sessions_sharing_a_bucket_coexist_and_repin_replaces() {
        let vm = vm(60);
        let st = MemoryStore::default();
        init(&st, &vm).unwrap();
        let ss = same_bucket(5);
        for (i, s) in ss.iter().enumerate() {
            pin(&st, &vm, s, i % 2, 1_000 + i as u64).unwrap();
        }
        for (i, s) in ss.iter().enumerate() {
            assert_eq!(lookup(&st, &vm, s, 2_000), Some(i % 2), "{s}");
        }
        // Re-pinning a session moves it; it is stored once.
        pin(&st, &vm, &ss[0], 1, 3_000).unwrap();
        assert_eq!(lookup(&st, &vm, &ss[0], 3_001), Some(1));
        let raw = value(&st, &key("vm", &ss[0]));
        assert_eq!(raw.split(|&b| b == b'\n').count(), 5);
        // Unpinning one leaves the others.
        unpin(&st, &vm, &ss[1], 3_001).unwrap();
        assert_eq!(lookup(&st, &vm, &ss[1], 3_001), None);
        assert_eq!(lookup(&st, &vm, &ss[2], 3_001), Some(0));
    }

    #[test]
    fn expired_pins_are_dropped_on_write() {
        let vm = vm(1);
        let st = MemoryStore::default();
        let ss = same_bucket(3);
        pin(&st, &vm, &ss[0], 0, 0).unwrap();
        pin(&st, &vm, &ss[1], 0, 500).unwrap();
        // ss[0] expired at 1000: the next write drops it, ss[1] (until 1500) stays.
        pin(&st, &vm, &ss[2], 1, 1_200).unwrap();
        let raw = String::from_utf8(value(&st, &key("vm", &ss[0]))).unwrap();
        assert_eq!(raw.lines().count(), 2, "{raw}");
        assert_eq!(lookup(&st, &vm, &ss[1], 1_200), Some(0));
        // An unpin drops expired pins too: ss[1] has expired by now.
        unpin(&st, &vm, &ss[2], 5_000).unwrap();
        assert!(value(&st, &key("vm", &ss[0])).is_empty());
    }

    #[test]
    fn a_full_bucket_drops_the_pin_expiring_soonest() {
        let vm = vm(100);
        let st = MemoryStore::default();
        init(&st, &vm).unwrap();
        let ss = same_bucket(MAX_PER_BUCKET + 1);
        // Pinned at distinct times: ss[3] expires soonest.
        let at = |i: usize| if i == 3 { 0 } else { 10 + i as u64 };
        for (i, s) in ss.iter().enumerate().take(MAX_PER_BUCKET) {
            pin(&st, &vm, s, 0, at(i)).unwrap();
        }
        pin(&st, &vm, &ss[MAX_PER_BUCKET], 1, 50).unwrap();
        assert_eq!(lookup(&st, &vm, &ss[3], 60), None);
        assert_eq!(lookup(&st, &vm, &ss[MAX_PER_BUCKET], 60), Some(1));
        for (i, s) in ss.iter().enumerate().take(MAX_PER_BUCKET) {
            if i != 3 {
                assert_eq!(lookup(&st, &vm, s, 60), Some(0), "{i}");
            }
        }
        let raw = value(&st, &key("vm", &ss[0]));
        assert_eq!(raw.split(|&b| b == b'\n').count(), MAX_PER_BUCKET);
    }

    /// Records every key written, to show what traffic can and cannot grow.
    #[derive(Default)]
    struct Tracking {
        inner: MemoryStore,
        keys: RefCell<HashSet<String>>,
    }

    impl SharedStore for Tracking {
        fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
            self.inner.get(key)
        }

        fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
            self.keys.borrow_mut().insert(key.to_string());
            self.inner.set(key, value, cas)
        }
    }

    #[test]
    fn memory_is_bounded_by_config_not_by_sessions() {
        let vm = vm(3_600);
        let st = Tracking::default();
        init(&st, &vm).unwrap();
        assert_eq!(st.keys.borrow().len(), BUCKETS);
        // Far more live sessions than the buckets hold, pinned and looked up.
        let n = BUCKETS * MAX_PER_BUCKET * 4;
        for i in 0..n {
            let s = format!("end-user-{i}");
            pin(&st, &vm, &s, i % 2, 1_000 + i as u64).unwrap();
            if i % 7 == 0 {
                unpin(&st, &vm, &format!("end-user-{}", i / 2), 1_000 + i as u64).unwrap();
            }
        }
        let keys = st.keys.borrow();
        assert_eq!(keys.len(), BUCKETS, "keys grew with sessions");
        let longest_cluster = vm.targets.iter().map(|t| t.cluster.len()).max().unwrap();
        let cap = MAX_PER_BUCKET * (ENTRY_OVERHEAD + longest_cluster);
        let mut pins = 0;
        for k in keys.iter() {
            let raw = value(&st.inner, k);
            assert!(raw.len() <= cap, "{k}: {} > {cap} bytes", raw.len());
            pins += raw.split(|&b| b == b'\n').count();
        }
        assert!(pins <= BUCKETS * MAX_PER_BUCKET);
        // The latest sessions are still pinned.
        let last = format!("end-user-{}", n - 1);
        assert_eq!(lookup(&st, &vm, &last, 1_000 + n as u64), Some((n - 1) % 2));
    }

    #[test]
    fn corrupt_or_old_values_count_as_empty() {
        let vm = vm(60);
        let st = MemoryStore::default();
        let k = key("vm", "s1");
        let tag = locate("s1").1;
        for bad in [
            b"99999999999999 cb".to_vec(), // the former per-session format
            format!("{tag} 99999999999999").into_bytes(),
            format!("{tag} 9x9 cb").into_bytes(),
            format!("{tag} 99999999999999 cb\n\ngarbage").into_bytes(),
            format!("{} 99999999999999 cb", tag.to_uppercase()).into_bytes(),
            format!("{tag} 99999999999999999999999 cb").into_bytes(),
            vec![0xff, 0xfe, b' ', b'1'],
        ] {
            st.set(&k, &bad, None).unwrap();
            assert_eq!(lookup(&st, &vm, "s1", 0), None, "{bad:?}");
            unpin(&st, &vm, "s1", 0).unwrap();
            assert!(value(&st, &k).is_empty(), "{bad:?}");
            st.set(&k, &bad, None).unwrap();
            pin(&st, &vm, "s1", 1, 0).unwrap();
            assert_eq!(lookup(&st, &vm, "s1", 1), Some(1), "{bad:?}");
        }
        // A pin to a cluster no longer configured is no pin.
        st.set(&k, format!("{tag} 99999 gone").as_bytes(), None)
            .unwrap();
        assert_eq!(lookup(&st, &vm, "s1", 0), None);
    }

    /// A store where another worker writes the same bucket between this worker's read and its
    /// CAS write, `races` times.
    struct Racing<'a> {
        inner: MemoryStore,
        other: &'a dyn Fn(&MemoryStore),
        races: Cell<usize>,
        mismatches: Cell<usize>,
    }

    impl SharedStore for Racing<'_> {
        fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
            let read = self.inner.get(key);
            if self.races.get() > 0 {
                self.races.set(self.races.get() - 1);
                (self.other)(&self.inner);
            }
            read
        }

        fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
            let r = self.inner.set(key, value, cas);
            if r == Err(StoreError::CasMismatch) {
                self.mismatches.set(self.mismatches.get() + 1);
            }
            r
        }
    }

    #[test]
    fn a_cas_conflict_is_retried_and_both_pins_survive() {
        let vm = vm(60);
        let ss = same_bucket(3);
        let other = |st: &MemoryStore| {
            let n = st.get(&key("vm", &ss[0])).unwrap().0.unwrap_or_default();
            // Each race pins a different session of the same bucket.
            let i = if n.is_empty() { 1 } else { 2 };
            pin(st, &vm, &ss[i], 1, 10).unwrap();
        };
        let st = Racing {
            inner: MemoryStore::default(),
            other: &other,
            races: Cell::new(2),
            mismatches: Cell::new(0),
        };
        init(&st.inner, &vm).unwrap();
        pin(&st, &vm, &ss[0], 0, 10).unwrap();
        assert_eq!(st.mismatches.get(), 2);
        assert_eq!(lookup(&st.inner, &vm, &ss[0], 11), Some(0));
        assert_eq!(lookup(&st.inner, &vm, &ss[1], 11), Some(1));
        assert_eq!(lookup(&st.inner, &vm, &ss[2], 11), Some(1));
    }

    #[test]
    fn two_threads_pinning_one_bucket_lose_nothing() {
        let vm = vm(60);
        let st = MemoryStore::default();
        init(&st, &vm).unwrap();
        let ss = same_bucket(MAX_PER_BUCKET);
        let (a, b) = ss.split_at(MAX_PER_BUCKET / 2);
        std::thread::scope(|sc| {
            for (half, idx) in [(a, 0), (b, 1)] {
                let (st, vm) = (&st, &vm);
                sc.spawn(move || {
                    for s in half {
                        pin(st, vm, s, idx, 10).unwrap();
                    }
                });
            }
        });
        for s in a {
            assert_eq!(lookup(&st, &vm, s, 11), Some(0), "{s}");
        }
        for s in b {
            assert_eq!(lookup(&st, &vm, s, 11), Some(1), "{s}");
        }
    }

    #[test]
    fn init_creates_every_bucket_once_and_only_with_sticky() {
        let st = MemoryStore::default();
        let v = vm(5);
        pin(&st, &v, "s1", 1, 0).unwrap();
        init(&st, &v).unwrap();
        // init does not clobber a live bucket.
        assert_eq!(lookup(&st, &v, "s1", 1), Some(1));
        let plain: VirtualModel = serde_json::from_value(serde_json::json!({"name": "plain",
            "targets": [{"target": "a/m", "cluster": "ca"}]}))
        .unwrap();
        init(&st, &plain).unwrap();
        assert_eq!(st.get(&bucket_key("plain", 0)).unwrap(), (None, None));
        for b in 0..BUCKETS {
            assert!(st.get(&bucket_key("vm", b)).unwrap().0.is_some());
        }
    }
}
