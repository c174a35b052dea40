//! Time-per-output-token samples per target, shared by every worker.
//!
//! One key per target holds its recent samples as text (`"<unix ms> <µs per token>,..."`, oldest
//! first), capped at [`MAX_SAMPLES`]; a reply costs one CAS update, a pick one read per target.

use crate::host::{update, SharedStore, StoreError};
use crate::limits::init_if_absent;

/// Samples kept per target; older ones are dropped first.
pub const MAX_SAMPLES: usize = 64;

/// Shared-data key of a target's samples.
pub fn key(target: &str) -> String {
    format!("aimesh.vm.tpot.{target}")
}

/// Median of the samples in a window.
///
/// The median, not the mean: one outlier (a cold V8 tier-up, a new upstream connection, a GC
/// pause) would otherwise rank a fast target slowest, and since the latency strategy then stops
/// sending it traffic, no fresh sample would correct that until the outlier left the window.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Summary {
    /// Samples in the window.
    pub count: usize,
    /// Median time per output token (µs); 0 without samples.
    pub median_us: f64,
}

fn parse(raw: &[u8]) -> Vec<(u64, u64)> {
    let Ok(s) = std::str::from_utf8(raw) else {
        return Vec::new();
    };
    s.split(',')
        .filter_map(|p| {
            let (t, v) = p.split_once(' ')?;
            Some((t.parse().ok()?, v.parse().ok()?))
        })
        .collect()
}

fn render(samples: &[(u64, u64)]) -> Vec<u8> {
    let parts: Vec<String> = samples.iter().map(|(t, v)| format!("{t} {v}")).collect();
    parts.join(",").into_bytes()
}

/// Creates the key empty (call from `on_configure`: Envoy ignores CAS on absent keys).
pub fn init<S: SharedStore + ?Sized>(store: &S, target: &str) -> Result<(), StoreError> {
    init_if_absent(store, &key(target), b"")
}

/// Adds one sample, dropping samples older than `keep_ms` and the oldest beyond the cap.
pub fn record<S: SharedStore + ?Sized>(
    store: &S,
    target: &str,
    now_ms: u64,
    us_per_token: u64,
    keep_ms: u64,
) -> Result<(), StoreError> {
    update(store, &key(target), |raw| {
        let mut s = raw.map(parse).unwrap_or_default();
        s.retain(|(t, _)| now_ms.saturating_sub(*t) <= keep_ms);
        s.push((now_ms, us_per_token));
        let extra = s.len().saturating_sub(MAX_SAMPLES);
        s.drain(..extra);
        (Some(render(&s)), ())
    })
}

/// Summary of a target's samples taken within `window_ms` of `now_ms`.
pub fn summary<S: SharedStore + ?Sized>(
    store: &S,
    target: &str,
    now_ms: u64,
    window_ms: u64,
) -> Summary {
    let raw = store.get(&key(target)).ok().and_then(|(v, _)| v);
    let samples = raw.as_deref().map(parse).unwrap_or_default();
    let mut recent: Vec<u64> = samples
        .into_iter()
        .filter(|(t, _)| now_ms.saturating_sub(*t) <= window_ms)
        .map(|(_, v)| v)
        .collect();
    if recent.is_empty() {
        return Summary::default();
    }
    recent.sort_unstable();
    let n = recent.len();
    let mid = |i: usize| recent.get(i).map_or(0.0, |&v| v as f64);
    let median_us = if n % 2 == 1 {
        mid(n / 2)
    } else {
        (mid(n / 2 - 1) + mid(n / 2)) / 2.0
    };
    Summary {
        count: n,
        median_us,
    }
}

/// Microseconds per output token of a reply that took `elapsed_us` for `tokens` tokens.
pub fn per_token(elapsed_us: u64, tokens: u64) -> u64 {
    elapsed_us / tokens.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::MemoryStore;

    #[test]
    fn window_cap_and_median() {
        let st = MemoryStore::default();
        init(&st, "a/m").unwrap();
        assert_eq!(summary(&st, "a/m", 0, 1000), Summary::default());
        record(&st, "a/m", 1_000, 100, 10_000).unwrap();
        record(&st, "a/m", 5_000, 300, 10_000).unwrap();
        assert_eq!(
            summary(&st, "a/m", 5_000, 10_000),
            Summary {
                count: 2,
                median_us: 200.0
            }
        );
        assert_eq!(summary(&st, "a/m", 5_000, 1_000).count, 1);
        // 20 s later the old samples are pruned on write.
        record(&st, "a/m", 25_000, 50, 10_000).unwrap();
        assert_eq!(
            summary(&st, "a/m", 25_000, 100_000),
            Summary {
                count: 1,
                median_us: 50.0
            }
        );
        for i in 0..100 {
            record(&st, "a/m", 30_000 + i, 1, 100_000).unwrap();
        }
        assert_eq!(summary(&st, "a/m", 30_100, 100_000).count, MAX_SAMPLES);
        assert_eq!(per_token(1000, 0), 1000);
        assert_eq!(per_token(1000, 8), 125);
    }

    #[test]
    fn one_outlier_does_not_move_the_median() {
        let st = MemoryStore::default();
        init(&st, "a/m").unwrap();
        for (t, v) in [(1, 300_000), (2, 2_000), (3, 2_100)] {
            record(&st, "a/m", t, v, 10_000).unwrap();
        }
        assert_eq!(summary(&st, "a/m", 3, 10_000).median_us, 2_100.0);
        record(&st, "a/m", 4, 1_900, 10_000).unwrap();
        assert_eq!(summary(&st, "a/m", 4, 10_000).median_us, 2_050.0);
    }
}
