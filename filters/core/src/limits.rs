//! Limits shared by every worker of one Envoy, kept in the [`SharedStore`] with CAS.
//!
//! - [`TokenBucket`]: rate limits (requests or tokens per minute). Capacity = the limit, refilled
//!   continuously, so a burst gets exactly `limit` admissions and no window edge doubles it.
//! - [`counter_add`]: plain counters (concurrency, spend in a calendar window).
//!
//! State is stored as small decimal text (`"<milli-units> <unix ms>"`), readable in an admin dump.

use crate::host::{update, SharedStore, StoreError};

/// A token bucket of `capacity` units refilled at `capacity` per `period_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    /// Maximum units (the limit per period).
    pub capacity: u64,
    /// Period in which a full bucket refills (60,000 for per-minute limits).
    pub period_ms: u64,
}

/// Outcome of a [`TokenBucket::acquire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Admitted; `remaining` whole units are left.
    Allowed {
        /// Units left after this acquisition.
        remaining: u64,
    },
    /// Refused; enough units are back after `retry_after_ms`.
    Limited {
        /// Milliseconds until the request would fit.
        retry_after_ms: u64,
        /// Units left now (less than asked).
        remaining: u64,
    },
}

const MILLI: i128 = 1000;

fn parse_state(raw: Option<&[u8]>) -> Option<(i128, u64)> {
    let s = std::str::from_utf8(raw?).ok()?;
    let (level, at) = s.split_once(' ')?;
    Some((level.parse().ok()?, at.parse().ok()?))
}

impl TokenBucket {
    fn level_at(&self, raw: Option<&[u8]>, now_ms: u64) -> i128 {
        let full = i128::from(self.capacity) * MILLI;
        match parse_state(raw) {
            None => full,
            Some((level, at)) => {
                let elapsed = i128::from(now_ms.saturating_sub(at));
                let refill = elapsed * full / i128::from(self.period_ms.max(1));
                (level + refill).min(full)
            }
        }
    }

    /// Creates the bucket full, unless it exists (see [`init_if_absent`]).
    pub fn init<S: SharedStore + ?Sized>(
        &self,
        store: &S,
        key: &str,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let full = i128::from(self.capacity) * MILLI;
        init_if_absent(store, key, format!("{full} {now_ms}").as_bytes())
    }

    /// Takes `amount` units if they are available now.
    pub fn acquire<S: SharedStore + ?Sized>(
        &self,
        store: &S,
        key: &str,
        amount: u64,
        now_ms: u64,
    ) -> Result<Admission, StoreError> {
        update(store, key, |raw| {
            let level = self.level_at(raw, now_ms);
            let want = i128::from(amount) * MILLI;
            if level >= want {
                let next = level - want;
                let state = format!("{next} {now_ms}").into_bytes();
                let remaining = u64::try_from(next / MILLI).unwrap_or(0);
                (Some(state), Admission::Allowed { remaining })
            } else {
                let missing = want - level;
                let full = i128::from(self.capacity.max(1)) * MILLI;
                let wait = (missing * i128::from(self.period_ms) + full - 1) / full;
                let remaining = u64::try_from(level.max(0) / MILLI).unwrap_or(0);
                let retry_after_ms = u64::try_from(wait).unwrap_or(u64::MAX);
                (
                    None,
                    Admission::Limited {
                        retry_after_ms,
                        remaining,
                    },
                )
            }
        })
    }

    /// Adds (`delta` < 0, a refund) or removes (`delta` > 0, a late charge) units without
    /// checking the limit; the level may go negative, which delays later admissions.
    pub fn adjust<S: SharedStore + ?Sized>(
        &self,
        store: &S,
        key: &str,
        delta: i64,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        update(store, key, |raw| {
            let full = i128::from(self.capacity) * MILLI;
            let next = (self.level_at(raw, now_ms) - i128::from(delta) * MILLI).min(full);
            (Some(format!("{next} {now_ms}").into_bytes()), ())
        })
    }
}

/// Writes `value` at `key` unless the key exists.
///
/// Envoy's shared data ignores the CAS token when a key does not exist yet, so two workers making
/// the very first write to a key race and one update can be lost. Filters therefore create every
/// key they know of (one per configured API key) from `on_configure`, before traffic: two workers
/// doing so at once write the same initial value, which is harmless.
pub fn init_if_absent<S: SharedStore + ?Sized>(
    store: &S,
    key: &str,
    value: &[u8],
) -> Result<(), StoreError> {
    match store.get(key)? {
        (Some(_), _) => Ok(()),
        (None, _) => store.set(key, value, None),
    }
}

/// Adds `delta` to the counter at `key` and returns the new value; `None` when `ceiling` is set,
/// `delta` is not negative and the counter is already at the ceiling or would pass it (the
/// counter is then unchanged). One read and one CAS write: a spent budget refuses even a free
/// request without a separate read.
pub fn counter_add<S: SharedStore + ?Sized>(
    store: &S,
    key: &str,
    delta: i64,
    ceiling: Option<i64>,
) -> Result<Option<i64>, StoreError> {
    update(store, key, |raw| {
        let current: i64 = raw
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let next = current.saturating_add(delta);
        match ceiling {
            Some(c) if delta >= 0 && (next > c || current >= c) => (None, None),
            _ => (Some(next.to_string().into_bytes()), Some(next)),
        }
    })
}

/// Current value of a counter (0 when absent).
pub fn counter_get<S: SharedStore + ?Sized>(store: &S, key: &str) -> Result<i64, StoreError> {
    let (raw, _) = store.get(key)?;
    Ok(raw
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::MemoryStore;

    #[test]
    fn burst_gets_exactly_capacity() {
        let s = MemoryStore::default();
        let b = TokenBucket {
            capacity: 5,
            period_ms: 60_000,
        };
        let allowed = (0..20)
            .filter(|i| {
                matches!(
                    b.acquire(&s, "k", 1, 1_000 + i).unwrap(),
                    Admission::Allowed { .. }
                )
            })
            .count();
        assert_eq!(allowed, 5);
        match b.acquire(&s, "k", 1, 1_020).unwrap() {
            Admission::Limited { retry_after_ms, .. } => {
                assert!((11_000..=12_000).contains(&retry_after_ms))
            }
            a => panic!("{a:?}"),
        }
        // A fifth of the period refills one unit.
        assert!(matches!(
            b.acquire(&s, "k", 1, 13_100).unwrap(),
            Admission::Allowed { .. }
        ));
    }

    #[test]
    fn adjust_charges_debt() {
        let s = MemoryStore::default();
        let b = TokenBucket {
            capacity: 100,
            period_ms: 60_000,
        };
        assert_eq!(
            b.acquire(&s, "t", 10, 0).unwrap(),
            Admission::Allowed { remaining: 90 }
        );
        b.adjust(&s, "t", 150, 0).unwrap();
        assert!(matches!(
            b.acquire(&s, "t", 1, 0).unwrap(),
            Admission::Limited { .. }
        ));
    }

    #[test]
    fn counter_respects_ceiling() {
        let s = MemoryStore::default();
        assert_eq!(counter_add(&s, "c", 1, Some(2)).unwrap(), Some(1));
        assert_eq!(counter_add(&s, "c", 1, Some(2)).unwrap(), Some(2));
        assert_eq!(counter_add(&s, "c", 1, Some(2)).unwrap(), None);
        assert_eq!(counter_add(&s, "c", -1, Some(2)).unwrap(), Some(1));
        assert_eq!(counter_get(&s, "c").unwrap(), 1);
    }

    #[test]
    fn a_counter_at_its_ceiling_refuses_a_zero_delta_too() {
        let s = MemoryStore::default();
        assert_eq!(counter_add(&s, "c", 0, Some(2)).unwrap(), Some(0));
        assert_eq!(counter_add(&s, "c", 2, Some(2)).unwrap(), Some(2));
        assert_eq!(counter_add(&s, "c", 0, Some(2)).unwrap(), None);
        assert_eq!(counter_add(&s, "c", 0, None).unwrap(), Some(2));
    }
}
