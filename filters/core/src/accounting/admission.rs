//! Per-key limits shared by every worker: tokens per minute and USD budgets per UTC day and
//! month.
//!
//! Admission reserves the estimate (prompt estimate plus `max_tokens`, and its cost) atomically,
//! so concurrent requests on different workers can never jointly exceed a limit; settlement
//! replaces the reservation by the exact figures when the response ends (refund or debt).

use crate::host::{SharedStore, StoreError};
use crate::limits::{counter_add, init_if_absent, Admission, TokenBucket};

/// Limits of one key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Tokens (input + output) per minute.
    pub tpm: Option<u64>,
    /// Spend per UTC day, micro-USD.
    pub daily_micro_usd: Option<u64>,
    /// Spend per UTC month, micro-USD.
    pub monthly_micro_usd: Option<u64>,
}

impl Limits {
    /// True when any limit is set.
    pub fn any(&self) -> bool {
        self.tpm.is_some() || self.daily_micro_usd.is_some() || self.monthly_micro_usd.is_some()
    }
}

/// What admission took, to be settled when the response ends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reservation {
    /// Store key of the TPM bucket, when one applies.
    pub tpm_key: Option<String>,
    /// Tokens reserved in the bucket.
    pub tokens: u64,
    /// Store keys of the day and month counters that apply.
    pub spend_keys: Vec<String>,
    /// Micro-USD reserved in each counter.
    pub cost: u64,
    /// Tokens left in the bucket after admission.
    pub remaining_tokens: Option<u64>,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Tokens per minute exhausted.
    Tpm {
        /// Seconds until the request fits (rounded up, at least 1).
        retry_after_s: u64,
        /// Tokens left now.
        remaining: u64,
    },
    /// A budget is spent.
    Budget {
        /// Seconds until the window resets.
        retry_after_s: u64,
        /// `true` for the monthly budget.
        monthly: bool,
    },
    /// The request alone needs more tokens than the whole per-minute limit: waiting never helps.
    TpmNeverFits {
        /// Tokens the request reserves (prompt estimate plus `max_tokens`).
        needed: u64,
        /// The limit.
        tpm: u64,
    },
    /// The request alone costs more than the whole budget: waiting for the reset never helps.
    BudgetNeverFits {
        /// Micro-USD the request reserves.
        needed: u64,
        /// The budget, micro-USD.
        limit: u64,
        /// `true` for the monthly budget.
        monthly: bool,
    },
}

/// A refusal that no amount of waiting lifts: the request's own reservation exceeds a limit.
fn never_fits(limits: &Limits, tokens: u64, cost: u64) -> Option<Refusal> {
    if let Some(tpm) = limits.tpm.filter(|&tpm| tokens > tpm) {
        return Some(Refusal::TpmNeverFits {
            needed: tokens,
            tpm,
        });
    }
    [
        (limits.daily_micro_usd, false),
        (limits.monthly_micro_usd, true),
    ]
    .into_iter()
    .find_map(|(limit, monthly)| {
        let limit = limit.filter(|&l| cost > l)?;
        Some(Refusal::BudgetNeverFits {
            needed: cost,
            limit,
            monthly,
        })
    })
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

const DAY_MS: u64 = 86_400_000;

/// `YYYYMMDD` and `YYYYMM` of a Unix time in ms, UTC.
pub fn day_and_month(now_ms: u64) -> (String, String) {
    let (y, m, d) = civil(i64::try_from(now_ms / DAY_MS).unwrap_or(0));
    (format!("{y:04}{m:02}{d:02}"), format!("{y:04}{m:02}"))
}

/// Seconds to the next UTC midnight and to the first of next month.
fn seconds_to_resets(now_ms: u64) -> (u64, u64) {
    let day = now_ms / DAY_MS;
    let to_day = ((day + 1) * DAY_MS - now_ms).div_ceil(1000);
    let (y, m, _) = civil(i64::try_from(day).unwrap_or(0));
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let next = u64::try_from(days_from_civil(ny, nm, 1)).unwrap_or(0) * DAY_MS;
    (to_day, next.saturating_sub(now_ms).div_ceil(1000))
}

fn tpm_bucket(tpm: u64) -> TokenBucket {
    TokenBucket {
        capacity: tpm,
        period_ms: 60_000,
    }
}

fn tpm_key(key_id: &str) -> String {
    format!("aimesh.ta.tpm.{key_id}")
}

fn day_key(day: &str, key_id: &str) -> String {
    format!("aimesh.ta.spend.d.{day}.{key_id}")
}

fn month_key(month: &str, key_id: &str) -> String {
    format!("aimesh.ta.spend.m.{month}.{key_id}")
}

/// Creates the store keys of `key_id` for now and for the next day (see
/// [`crate::limits::init_if_absent`]: first writes must not race); call from `on_configure` and
/// a periodic tick.
pub fn init_keys<S: SharedStore + ?Sized>(
    store: &S,
    key_id: &str,
    limits: &Limits,
    now_ms: u64,
) -> Result<(), StoreError> {
    if let Some(tpm) = limits.tpm {
        tpm_bucket(tpm).init(store, &tpm_key(key_id), now_ms)?;
    }
    for t in [now_ms, now_ms + DAY_MS] {
        let (d, m) = day_and_month(t);
        if limits.daily_micro_usd.is_some() {
            init_if_absent(store, &day_key(&d, key_id), b"0")?;
        }
        if limits.monthly_micro_usd.is_some() {
            init_if_absent(store, &month_key(&m, key_id), b"0")?;
        }
    }
    Ok(())
}

/// Reserves `tokens` and `cost` (micro-USD) for `key_id`, or refuses. A request whose own
/// reservation exceeds a limit is refused as such (it would be told to retry forever), before
/// anything is reserved.
pub fn admit<S: SharedStore + ?Sized>(
    store: &S,
    key_id: &str,
    limits: &Limits,
    tokens: u64,
    cost: u64,
    now_ms: u64,
) -> Result<Result<Reservation, Refusal>, StoreError> {
    if let Some(refusal) = never_fits(limits, tokens, cost) {
        return Ok(Err(refusal));
    }
    let mut r = Reservation {
        tokens,
        cost,
        ..Reservation::default()
    };
    if let Some(tpm) = limits.tpm {
        let key = tpm_key(key_id);
        match tpm_bucket(tpm).acquire(store, &key, tokens, now_ms)? {
            Admission::Allowed { remaining } => r.remaining_tokens = Some(remaining),
            Admission::Limited {
                retry_after_ms,
                remaining,
            } => {
                return Ok(Err(Refusal::Tpm {
                    retry_after_s: retry_after_ms.div_ceil(1000).max(1),
                    remaining,
                }))
            }
        }
        r.tpm_key = Some(key);
    }
    let (day, month) = day_and_month(now_ms);
    let (to_day, to_month) = seconds_to_resets(now_ms);
    let windows = [
        (limits.daily_micro_usd, day_key(&day, key_id), to_day, false),
        (
            limits.monthly_micro_usd,
            month_key(&month, key_id),
            to_month,
            true,
        ),
    ];
    for (limit, key, retry_after_s, monthly) in windows {
        let Some(limit) = limit else { continue };
        let ceiling = i64::try_from(limit).unwrap_or(i64::MAX);
        let delta = i64::try_from(cost).unwrap_or(i64::MAX);
        let admitted = counter_add(store, &key, delta, Some(ceiling))?.is_some();
        if !admitted {
            release(store, limits, &r, now_ms)?;
            return Ok(Err(Refusal::Budget {
                retry_after_s,
                monthly,
            }));
        }
        r.spend_keys.push(key);
    }
    Ok(Ok(r))
}

fn release<S: SharedStore + ?Sized>(
    store: &S,
    limits: &Limits,
    r: &Reservation,
    now_ms: u64,
) -> Result<(), StoreError> {
    settle(store, limits, r, 0, 0, now_ms)
}

/// Replaces the reservation by the exact figures.
pub fn settle<S: SharedStore + ?Sized>(
    store: &S,
    limits: &Limits,
    r: &Reservation,
    tokens: u64,
    cost: u64,
    now_ms: u64,
) -> Result<(), StoreError> {
    let diff = |a: u64, b: u64| i64::try_from(i128::from(a) - i128::from(b)).unwrap_or(0);
    if let (Some(tpm), Some(key)) = (limits.tpm, &r.tpm_key) {
        let d = diff(tokens, r.tokens);
        if d != 0 {
            tpm_bucket(tpm).adjust(store, key, d, now_ms)?;
        }
    }
    let d = diff(cost, r.cost);
    if d != 0 {
        for key in &r.spend_keys {
            counter_add(store, key, d, None)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::MemoryStore;
    use crate::limits::counter_get;

    #[test]
    fn calendar_keys() {
        // 2024-02-29T23:59:59.500Z
        let t = 1_709_251_199_500;
        assert_eq!(day_and_month(t), ("20240229".into(), "202402".into()));
        assert_eq!(seconds_to_resets(t), (1, 1));
        assert_eq!(day_and_month(0), ("19700101".into(), "197001".into()));
        assert_eq!(days_from_civil(2024, 3, 1), 19_783);
    }

    #[test]
    fn budget_reserves_then_settles() {
        let s = MemoryStore::default();
        let l = Limits {
            tpm: None,
            daily_micro_usd: Some(100),
            monthly_micro_usd: Some(1_000),
        };
        let now = 1_709_000_000_000;
        init_keys(&s, "k", &l, now).unwrap();
        let a = admit(&s, "k", &l, 10, 40, now).unwrap().unwrap();
        let b = admit(&s, "k", &l, 10, 40, now).unwrap().unwrap();
        assert!(matches!(
            admit(&s, "k", &l, 10, 40, now).unwrap(),
            Err(Refusal::Budget { monthly: false, .. })
        ));
        let (d, m) = day_and_month(now);
        assert_eq!(counter_get(&s, &day_key(&d, "k")).unwrap(), 80);
        settle(&s, &l, &a, 5, 7, now).unwrap();
        settle(&s, &l, &b, 5, 7, now).unwrap();
        assert_eq!(counter_get(&s, &day_key(&d, "k")).unwrap(), 14);
        assert_eq!(counter_get(&s, &month_key(&m, "k")).unwrap(), 14);
    }

    #[test]
    fn tpm_refusal_refunds_nothing_and_budget_refusal_refunds_tpm() {
        let s = MemoryStore::default();
        let l = Limits {
            tpm: Some(100),
            daily_micro_usd: Some(10),
            monthly_micro_usd: None,
        };
        let now = 1_000_000;
        init_keys(&s, "k", &l, now).unwrap();
        admit(&s, "k", &l, 60, 6, now).unwrap().unwrap();
        assert!(matches!(
            admit(&s, "k", &l, 41, 0, now).unwrap(),
            Err(Refusal::Tpm { remaining: 40, .. })
        ));
        assert!(matches!(
            admit(&s, "k", &l, 30, 5, now).unwrap(),
            Err(Refusal::Budget { .. })
        ));
        let r = admit(&s, "k", &l, 40, 4, now).unwrap().unwrap();
        assert_eq!(r.remaining_tokens, Some(0));
    }

    #[test]
    fn a_request_larger_than_a_limit_never_fits_and_reserves_nothing() {
        let s = MemoryStore::default();
        let l = Limits {
            tpm: Some(300),
            daily_micro_usd: Some(50),
            monthly_micro_usd: Some(40),
        };
        let now = 1_709_000_000_000;
        init_keys(&s, "k", &l, now).unwrap();
        assert_eq!(
            admit(&s, "k", &l, 1_010, 0, now).unwrap(),
            Err(Refusal::TpmNeverFits {
                needed: 1_010,
                tpm: 300
            })
        );
        assert_eq!(
            admit(&s, "k", &l, 10, 45, now).unwrap(),
            Err(Refusal::BudgetNeverFits {
                needed: 45,
                limit: 40,
                monthly: true
            })
        );
        assert!(matches!(
            admit(&s, "k", &l, 10, 51, now).unwrap(),
            Err(Refusal::BudgetNeverFits { monthly: false, .. })
        ));
        // Exactly the limit still fits: the bucket and counters were left untouched.
        let r = admit(&s, "k", &l, 300, 40, now).unwrap().unwrap();
        assert_eq!(r.remaining_tokens, Some(0));
        let (d, _) = day_and_month(now);
        assert_eq!(counter_get(&s, &day_key(&d, "k")).unwrap(), 40);
    }
}
