//! Per-policy request limits over the shared store: requests per minute and requests in flight.
//!
//! State keys are created by [`init`] from `on_configure` (Envoy ignores CAS on absent keys).

use std::fmt;

use super::table::Policy;
use crate::host::{SharedStore, StoreError};
use crate::limits::{counter_add, init_if_absent, Admission, TokenBucket};

const MINUTE_MS: u64 = 60_000;

fn rpm_key(id: &str) -> String {
    format!("aimesh.auth.rpm.{id}")
}

fn inflight_key(id: &str) -> String {
    format!("aimesh.auth.inflight.{id}")
}

fn bucket(rpm: u64) -> TokenBucket {
    TokenBucket {
        capacity: rpm,
        period_ms: MINUTE_MS,
    }
}

/// Creates every policy's limit state that does not exist yet.
pub fn init<'a, S, I>(store: &S, policies: I, now_ms: u64) -> Result<(), StoreError>
where
    S: SharedStore + ?Sized,
    I: IntoIterator<Item = &'a Policy>,
{
    for p in policies {
        if let Some(rpm) = p.requests_per_minute {
            bucket(rpm).init(store, &rpm_key(&p.id), now_ms)?;
        }
        if p.max_concurrent.is_some() {
            init_if_absent(store, &inflight_key(&p.id), b"0")?;
        }
    }
    Ok(())
}

/// A refused request: which limit and when to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// Requests per minute used up.
    Rate {
        /// The per-minute limit.
        limit: u64,
        /// Whole requests left now.
        remaining: u64,
        /// Milliseconds until one more request fits.
        retry_after_ms: u64,
    },
    /// Too many requests in flight.
    Concurrency {
        /// The in-flight limit.
        limit: u64,
    },
    /// The shared store did not answer; refused rather than unlimited.
    Unavailable,
}

impl fmt::Display for Limited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limited::Rate { limit, .. } => write!(
                f,
                "Rate limit reached for requests: limit {limit} per minute. Please retry later."
            ),
            Limited::Concurrency { limit } => write!(
                f,
                "Too many concurrent requests: limit {limit} in flight. Please retry later."
            ),
            Limited::Unavailable => write!(f, "Rate limit state unavailable. Please retry later."),
        }
    }
}

/// OpenAI's duration style for `x-ratelimit-reset-*`: `850ms`, `12s`, `1m3s`.
pub fn reset_string(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = ms.div_ceil(1000);
    if s < 60 {
        format!("{s}s")
    } else {
        format!("{}m{}s", s / 60, s % 60)
    }
}

/// `x-ratelimit-*-requests` headers for a bucket state.
pub fn rate_headers(limit: u64, remaining: u64, reset_ms: u64) -> Vec<(String, String)> {
    vec![
        ("x-ratelimit-limit-requests".into(), limit.to_string()),
        (
            "x-ratelimit-remaining-requests".into(),
            remaining.to_string(),
        ),
        ("x-ratelimit-reset-requests".into(), reset_string(reset_ms)),
    ]
}

impl Limited {
    /// `Retry-After` (whole seconds, at least 1) and, for rate limits, `x-ratelimit-*`.
    pub fn headers(&self) -> Vec<(String, String)> {
        match *self {
            Limited::Rate {
                limit,
                remaining,
                retry_after_ms,
            } => {
                let mut h = vec![(
                    "retry-after".to_string(),
                    retry_after_ms.div_ceil(1000).max(1).to_string(),
                )];
                h.extend(rate_headers(limit, remaining, retry_after_ms));
                h
            }
            Limited::Concurrency { .. } | Limited::Unavailable => {
                vec![("retry-after".to_string(), "1".to_string())]
            }
        }
    }
}

/// What an admitted request holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Admitted {
    /// `(limit, remaining, ms until full)` of the per-minute bucket, when the policy has one.
    pub rate: Option<(u64, u64, u64)>,
    /// A slot of the in-flight counter is held: [`release`] it when the stream ends.
    pub holds_slot: bool,
}

/// Admits one request under `policy`'s limits, or says which limit refused it.
pub fn admit<S: SharedStore + ?Sized>(
    store: &S,
    policy: &Policy,
    now_ms: u64,
) -> Result<Admitted, Limited> {
    let mut out = Admitted::default();
    if let Some(limit) = policy.max_concurrent {
        let ceiling = i64::try_from(limit).unwrap_or(i64::MAX);
        match counter_add(store, &inflight_key(&policy.id), 1, Some(ceiling)) {
            Ok(Some(_)) => out.holds_slot = true,
            Ok(None) => return Err(Limited::Concurrency { limit }),
            Err(_) => return Err(Limited::Unavailable),
        }
    }
    if let Some(limit) = policy.requests_per_minute {
        let refused = match bucket(limit).acquire(store, &rpm_key(&policy.id), 1, now_ms) {
            Ok(Admission::Allowed { remaining }) => {
                let reset = (limit - remaining.min(limit)) * MINUTE_MS / limit.max(1);
                out.rate = Some((limit, remaining, reset));
                None
            }
            Ok(Admission::Limited {
                retry_after_ms,
                remaining,
            }) => Some(Limited::Rate {
                limit,
                remaining,
                retry_after_ms,
            }),
            Err(_) => Some(Limited::Unavailable),
        };
        if let Some(l) = refused {
            if out.holds_slot {
                release(store, policy);
            }
            return Err(l);
        }
    }
    Ok(out)
}

/// Gives back the in-flight slot taken by [`admit`].
pub fn release<S: SharedStore + ?Sized>(store: &S, policy: &Policy) {
    // Best effort: a failed decrement leaves one slot taken until the next config push resets
    // nothing, so log-worthy but never fatal for the request that already finished.
    let _ = counter_add(store, &inflight_key(&policy.id), -1, None);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::ModelAllow;
    use crate::host::MemoryStore;
    use crate::limits::counter_get;

    fn policy(rpm: Option<u64>, conc: Option<u64>) -> Policy {
        Policy {
            id: "k".into(),
            team: None,
            models: ModelAllow::new(&["*"]),
            endpoints: crate::auth::EndpointAllow::all(),
            expires_at_ms: None,
            disabled: false,
            requests_per_minute: rpm,
            max_concurrent: conc,
        }
    }

    #[test]
    fn rpm_admits_exactly_the_limit_then_says_when() {
        let s = MemoryStore::default();
        let p = policy(Some(3), None);
        init(&s, [&p], 0).unwrap();
        let ok = (0..10).filter(|i| admit(&s, &p, 100 + i).is_ok()).count();
        assert_eq!(ok, 3);
        let err = admit(&s, &p, 200).unwrap_err();
        let h = err.headers();
        assert_eq!(h[0], ("retry-after".into(), "20".into()));
        assert_eq!(h[1], ("x-ratelimit-limit-requests".into(), "3".into()));
        assert_eq!(h[2], ("x-ratelimit-remaining-requests".into(), "0".into()));
        assert_eq!(h[3].0, "x-ratelimit-reset-requests");
    }

    #[test]
    fn concurrency_slots_are_released_also_when_rpm_refuses() {
        let s = MemoryStore::default();
        let p = policy(Some(1), Some(2));
        init(&s, [&p], 0).unwrap();
        let a = admit(&s, &p, 0).unwrap();
        assert!(a.holds_slot);
        assert_eq!(a.rate, Some((1, 0, 60_000)));
        assert!(matches!(admit(&s, &p, 1), Err(Limited::Rate { .. })));
        assert_eq!(counter_get(&s, "aimesh.auth.inflight.k").unwrap(), 1);
        let c = policy(None, Some(1));
        let s2 = MemoryStore::default();
        init(&s2, [&c], 0).unwrap();
        admit(&s2, &c, 0).unwrap();
        assert_eq!(admit(&s2, &c, 0), Err(Limited::Concurrency { limit: 1 }));
        release(&s2, &c);
        assert!(admit(&s2, &c, 0).is_ok());
    }

    #[test]
    fn reset_strings() {
        assert_eq!(reset_string(850), "850ms");
        assert_eq!(reset_string(12_000), "12s");
        assert_eq!(reset_string(63_500), "1m4s");
    }
}
