//! What core needs from the host, as small traits the Wasm glue implements.

use std::time::SystemTime;

/// Wall-clock time (the host's `get_current_time`).
pub trait Clock {
    /// Current time.
    fn now(&self) -> SystemTime;

    /// Milliseconds since the Unix epoch; 0 if the clock is before it.
    fn unix_millis(&self) -> u64 {
        self.now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

/// Why a shared-store write failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Another worker wrote the key since it was read; re-read and retry.
    #[error("compare-and-swap mismatch")]
    CasMismatch,
    /// The host refused the call.
    #[error("shared data unavailable")]
    Unavailable,
}

/// Key-value store shared by every worker VM of one Envoy (proxy-wasm shared data).
///
/// Writes carry the CAS token returned by the read they are based on, so concurrent workers
/// never lose each other's updates.
pub trait SharedStore {
    /// Value and CAS token of `key`; `(None, None)` when absent.
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError>;
    /// Writes `value` if the key's CAS token still equals `cas` (`None` writes unconditionally).
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError>;
}

/// How many times a read-modify-write is retried on CAS mismatch before giving up.
pub const CAS_RETRIES: usize = 32;

/// Atomically updates `key`: `f` maps the current value to `(new value, result)`; returning
/// `None` leaves the value untouched. Retries on CAS mismatch.
pub fn update<S, T, F>(store: &S, key: &str, mut f: F) -> Result<T, StoreError>
where
    S: SharedStore + ?Sized,
    F: FnMut(Option<&[u8]>) -> (Option<Vec<u8>>, T),
{
    for _ in 0..CAS_RETRIES {
        let (current, cas) = store.get(key)?;
        let (next, out) = f(current.as_deref());
        let Some(next) = next else { return Ok(out) };
        // A key never written has no token; Envoy treats cas 0 as "unconditional", so an absent
        // key races only with another first write, which later reads reconcile.
        match store.set(key, &next, cas) {
            Ok(()) => return Ok(out),
            Err(StoreError::CasMismatch) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::CasMismatch)
}

/// Metrics sink; names are full Envoy stat names, ids are cached by the implementation.
pub trait Metrics {
    /// Adds `delta` to a counter.
    fn count(&self, name: &str, delta: u64);
    /// Records a histogram sample.
    fn record(&self, name: &str, value: u64);
    /// Sets a gauge.
    fn gauge(&self, name: &str, value: u64);
}

/// A store held in memory, for tests and native tools.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: std::sync::Mutex<std::collections::HashMap<String, (Vec<u8>, u32)>>,
}

impl SharedStore for MemoryStore {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        let map = self.inner.lock().map_err(|_| StoreError::Unavailable)?;
        Ok(match map.get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        })
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        let mut map = self.inner.lock().map_err(|_| StoreError::Unavailable)?;
        let current = map.get(key).map(|(_, c)| *c);
        if let (Some(want), Some(have)) = (cas, current) {
            if want != have {
                return Err(StoreError::CasMismatch);
            }
        }
        let next = current.unwrap_or(0).wrapping_add(1);
        map.insert(key.to_string(), (value.to_vec(), next));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_applies_and_detects_stale_writes() {
        let store = MemoryStore::default();
        let n: u32 = update(&store, "k", |v| {
            let n = v.map_or(0, |b| b[0]) + 1;
            (Some(vec![n]), u32::from(n))
        })
        .unwrap();
        assert_eq!(n, 1);
        let (_, cas) = store.get("k").unwrap();
        store.set("k", &[9], cas).unwrap();
        assert_eq!(store.set("k", &[7], cas), Err(StoreError::CasMismatch));
        assert_eq!(store.get("k").unwrap().0, Some(vec![9]));
    }
}
