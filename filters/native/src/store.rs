//! The shared store as process memory: every worker thread of this Envoy sees the same map.
//!
//! Same contract as proxy-wasm shared data (`aimesh_core::host::SharedStore`): a read returns
//! the value and a CAS token, a write with a token succeeds only if nobody wrote since, and a
//! token on an absent key is ignored (what Envoy does, and what the limit code expects). The
//! map is split into shards by key hash so workers updating different keys do not wait on one
//! lock; a shard's lock is held only to copy a value in or out.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, OnceLock};

use aimesh_core::host::{SharedStore, StoreError};

const SHARDS: usize = 16;

type Map = HashMap<String, (Vec<u8>, u32)>;
type Shard = Mutex<Map>;

/// The process-wide store.
#[derive(Debug)]
pub struct ProcessStore {
    shards: Vec<Shard>,
}

impl ProcessStore {
    /// An empty store (tests; the module uses [`ProcessStore::global`]).
    pub fn new() -> Self {
        ProcessStore {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    /// The one store of this process.
    pub fn global() -> &'static ProcessStore {
        static STORE: OnceLock<ProcessStore> = OnceLock::new();
        STORE.get_or_init(ProcessStore::new)
    }

    fn shard(&self, key: &str) -> Result<std::sync::MutexGuard<'_, Map>, StoreError> {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        let i = usize::try_from(h.finish() % SHARDS as u64).unwrap_or(0);
        self.shards
            .get(i)
            .ok_or(StoreError::Unavailable)?
            .lock()
            .map_err(|_| StoreError::Unavailable)
    }
}

impl Default for ProcessStore {
    fn default() -> Self {
        Self::new()
    }
}

impl SharedStore for ProcessStore {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        let map = self.shard(key)?;
        Ok(match map.get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        })
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        let mut map = self.shard(key)?;
        match map.get_mut(key) {
            Some((v, token)) => {
                if matches!(cas, Some(c) if c != 0 && c != *token) {
                    return Err(StoreError::CasMismatch);
                }
                v.clear();
                v.extend_from_slice(value);
                *token = token.wrapping_add(1).max(1);
            }
            None => {
                map.insert(key.to_string(), (value.to_vec(), 1));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aimesh_core::host::update;

    #[test]
    fn cas_refuses_a_stale_write_and_ignores_a_token_on_an_absent_key() {
        let s = ProcessStore::new();
        assert_eq!(s.get("k").unwrap(), (None, None));
        s.set("k", b"1", Some(7)).unwrap();
        let (v, cas) = s.get("k").unwrap();
        assert_eq!(v.as_deref(), Some(&b"1"[..]));
        s.set("k", b"2", cas).unwrap();
        assert_eq!(s.set("k", b"3", cas), Err(StoreError::CasMismatch));
        assert_eq!(s.get("k").unwrap().0.as_deref(), Some(&b"2"[..]));
    }

    #[test]
    fn concurrent_updates_from_threads_lose_nothing() {
        let s = ProcessStore::new();
        std::thread::scope(|t| {
            for _ in 0..4 {
                t.spawn(|| {
                    for _ in 0..500 {
                        // `update` gives up after its retries under contention; a caller that
                        // must not lose the increment (this test counts them) tries again.
                        while update(&s, "n", |cur| {
                            let n: u64 = cur
                                .and_then(|b| std::str::from_utf8(b).ok())
                                .and_then(|t| t.parse().ok())
                                .unwrap_or(0);
                            (Some((n + 1).to_string().into_bytes()), ())
                        })
                        .is_err()
                        {}
                    }
                });
            }
        });
        assert_eq!(s.get("n").unwrap().0.as_deref(), Some(&b"2000"[..]));
    }
}
