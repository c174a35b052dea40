//! Fleet-wide limits: the token-accounting stage's `fleet` section, and the wire contract
//! between that stage and the limits service (`aimesh-limits`, backed by Redis).
//!
//! The stage decides which counters a request touches ([`Bucket`]: a kind, a scope such as
//! `key:demo` or `subject:alice`, a limit and an amount) and asks the service to take them all
//! at once ([`AdmitRequest`]); the service checks and takes every bucket in one Lua script, so
//! replicas never race. The answer carries a [`Ticket`] per bucket it took; the stage sends the
//! tickets back with the real figures when the response ends ([`SettleRequest`]). Both sides
//! use these types, so the contract cannot drift.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{ConfigError, Validate};

/// Path of the admission call on the limits service.
pub const ADMIT_PATH: &str = "/v1/admit";
/// Path of the settlement call on the limits service.
pub const SETTLE_PATH: &str = "/v1/settle";

/// What a counter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Requests in the last 60 s (sliding, 1 s steps).
    Rpm,
    /// Tokens in the last 60 s: the reservation at admission, corrected at settlement.
    Tpm,
    /// Requests in flight (a lease, so a replica that dies frees its slots).
    Concurrent,
    /// Micro-USD spent this UTC day: worst case reserved, settled to the real cost.
    UsdDay,
    /// Micro-USD spent this UTC month.
    UsdMonth,
}

impl Kind {
    /// The failure policy that applies to this kind.
    pub fn policy(self, f: &FailurePolicy) -> OnFailure {
        match self {
            Kind::Rpm => f.requests,
            Kind::Tpm => f.tokens,
            Kind::Concurrent => f.concurrency,
            Kind::UsdDay | Kind::UsdMonth => f.budgets,
        }
    }
}

/// Whether a request is admitted when the shared store cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Admit, uncounted.
    Open,
    /// Refuse with 503 `limits_unavailable`.
    Closed,
}

/// The failure policy per limit kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FailurePolicy {
    /// Requests per minute: `open` by default (an outage must not stop traffic).
    #[serde(default = "open")]
    pub requests: OnFailure,
    /// Tokens per minute: `open` by default.
    #[serde(default = "open")]
    pub tokens: OnFailure,
    /// Concurrent requests: `open` by default.
    #[serde(default = "open")]
    pub concurrency: OnFailure,
    /// USD budgets: `closed` by default (an outage must not lift a hard budget).
    #[serde(default = "closed")]
    pub budgets: OnFailure,
}

fn open() -> OnFailure {
    OnFailure::Open
}

fn closed() -> OnFailure {
    OnFailure::Closed
}

impl Default for FailurePolicy {
    fn default() -> Self {
        FailurePolicy {
            requests: OnFailure::Open,
            tokens: OnFailure::Open,
            concurrency: OnFailure::Open,
            budgets: OnFailure::Closed,
        }
    }
}

/// Who a rule counts: one named caller, or each caller of that kind on its own counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// A virtual key id (or JWT policy id).
    Key,
    /// A team.
    Team,
    /// A JWT `sub` claim; counters are created on first use.
    Subject,
    /// The model the client asked for.
    Model,
}

impl Scope {
    fn prefix(self) -> &'static str {
        match self {
            Scope::Key => "key",
            Scope::Team => "team",
            Scope::Subject => "subject",
            Scope::Model => "model",
        }
    }
}

/// One fleet-wide limit rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FleetRule {
    /// What the rule counts.
    pub scope: Option<Scope>,
    /// The one key/team/subject/model it applies to; absent: each one, on its own counter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Requests per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    /// Tokens per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    /// Requests in flight at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u64>,
    /// Spend per UTC day, USD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_usd: Option<f64>,
    /// Spend per UTC month, USD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_usd: Option<f64>,
}

/// The token-accounting stage's fleet-wide limits (`limits.store: redis`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    /// Envoy cluster of the limits service.
    pub cluster: String,
    /// How long admission waits for the service before the failure policy applies, ms.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// What each limit kind does when the service or Redis cannot answer.
    #[serde(default)]
    pub failure: FailurePolicy,
    /// Completion tokens reserved for a request that sets no `max_tokens`.
    #[serde(default = "default_max_tokens")]
    pub default_max_tokens: u64,
    /// The rules; every matching rule's counters are taken at once.
    #[serde(default)]
    pub rules: Vec<FleetRule>,
}

/// Default `timeout_ms`.
pub fn default_timeout_ms() -> u64 {
    200
}

/// Default `default_max_tokens`.
pub fn default_max_tokens() -> u64 {
    4096
}

impl Validate for FleetConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.cluster.is_empty() {
            return Err(ConfigError::missing(
                "cluster",
                "the limits service cluster",
            ));
        }
        if self.timeout_ms == 0 || self.timeout_ms > 60_000 {
            return Err(ConfigError::invalid(
                "timeout_ms",
                "must be between 1 and 60000",
            ));
        }
        for (i, r) in self.rules.iter().enumerate() {
            let at = format!("rules[{i}]");
            if r.scope.is_none() {
                return Err(ConfigError::missing(
                    format!("{at}.scope"),
                    "key, team, subject or model",
                ));
            }
            if r.name.as_deref() == Some("") {
                return Err(ConfigError::invalid(
                    format!("{at}.name"),
                    "must not be empty",
                ));
            }
            for (f, v) in [
                ("rpm", r.rpm),
                ("tpm", r.tpm),
                ("max_concurrent", r.max_concurrent),
            ] {
                if v == Some(0) {
                    return Err(ConfigError::invalid(
                        format!("{at}.{f}"),
                        "must be at least 1",
                    ));
                }
            }
            for (f, v) in [("daily_usd", r.daily_usd), ("monthly_usd", r.monthly_usd)] {
                if v.is_some_and(|v| !v.is_finite() || !(0.0..=1e12).contains(&v)) {
                    return Err(ConfigError::invalid(
                        format!("{at}.{f}"),
                        "must be a non-negative number of USD",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Who a request is, as far as the rules care.
#[derive(Debug, Clone, Copy, Default)]
pub struct Caller<'a> {
    /// Key id.
    pub key: Option<&'a str>,
    /// Team.
    pub team: Option<&'a str>,
    /// JWT subject.
    pub subject: Option<&'a str>,
    /// Model asked for.
    pub model: Option<&'a str>,
}

/// What a request may use, for the counters it touches.
#[derive(Debug, Clone, Copy, Default)]
pub struct Amounts {
    /// Worst-case tokens (prompt estimate plus max_tokens).
    pub tokens: u64,
    /// Worst-case cost, micro-USD.
    pub micro_usd: u64,
}

fn micro(usd: f64) -> u64 {
    (usd * 1_000_000.0).round() as u64
}

impl FleetConfig {
    /// Every counter the rules take for this caller, in rule order.
    pub fn buckets(&self, who: &Caller<'_>, amounts: Amounts) -> Vec<Bucket> {
        let mut out = Vec::new();
        for r in &self.rules {
            let Some(scope) = r.scope else { continue };
            let value = match scope {
                Scope::Key => who.key,
                Scope::Team => who.team,
                Scope::Subject => who.subject,
                Scope::Model => who.model,
            };
            let Some(value) = value.filter(|v| !v.is_empty()) else {
                continue;
            };
            if r.name.as_deref().is_some_and(|n| n != value) {
                continue;
            }
            let scope = format!("{}:{value}", scope.prefix());
            let mut push = |kind, limit: Option<u64>, amount| {
                if let Some(limit) = limit {
                    out.push(Bucket {
                        kind,
                        scope: scope.clone(),
                        limit,
                        amount,
                    });
                }
            };
            push(Kind::Rpm, r.rpm, 1);
            push(Kind::Tpm, r.tpm, amounts.tokens);
            push(Kind::Concurrent, r.max_concurrent, 1);
            push(Kind::UsdDay, r.daily_usd.map(micro), amounts.micro_usd);
            push(Kind::UsdMonth, r.monthly_usd.map(micro), amounts.micro_usd);
        }
        out
    }
}

/// One counter a request takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Bucket {
    /// What it counts.
    pub kind: Kind,
    /// Whose counter: `key:demo`, `team:red`, `subject:alice`, `model:gpt-4o`.
    pub scope: String,
    /// The limit.
    pub limit: u64,
    /// What this request takes (1 request, tokens, micro-USD).
    pub amount: u64,
}

/// Admission: take every bucket or none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdmitRequest {
    /// The request's id (`x-request-id`): names its concurrency lease.
    pub id: String,
    /// The counters to take.
    pub buckets: Vec<Bucket>,
}

/// What the service took for one bucket, to be settled later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ticket {
    /// What it counts.
    pub kind: Kind,
    /// The Redis key the amount went to (its window included).
    pub key: String,
    /// The 1-second step (sliding windows), 0 otherwise.
    pub step: u64,
    /// What was reserved.
    pub reserved: u64,
}

/// The bucket that did not fit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Refused {
    /// Its kind.
    pub kind: Kind,
    /// Its scope.
    pub scope: String,
    /// Its limit.
    pub limit: u64,
    /// What is left of it now.
    pub remaining: u64,
    /// Seconds until enough of it frees up (the window end for budgets).
    pub retry_after_s: u64,
}

/// What is left of one taken bucket (for `x-ratelimit-*` headers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Left {
    /// Its kind.
    pub kind: Kind,
    /// Its limit.
    pub limit: u64,
    /// What is left after this request.
    pub remaining: u64,
}

/// The service's answer to an admission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdmitResponse {
    /// Every bucket was taken.
    pub admitted: bool,
    /// What was taken (empty when refused: nothing was).
    #[serde(default)]
    pub tickets: Vec<Ticket>,
    /// What is left, per taken bucket.
    #[serde(default)]
    pub left: Vec<Left>,
    /// The first bucket that did not fit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<Refused>,
}

/// Settlement: the real figures replace the reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SettleRequest {
    /// The request's id (as admitted).
    pub id: String,
    /// The tickets admission returned.
    pub tickets: Vec<Ticket>,
    /// Tokens the request really used.
    pub tokens: u64,
    /// What it really cost, micro-USD.
    pub micro_usd: u64,
}

/// The service's error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceError {
    /// Stable code (`bad_request`, `store_unavailable`).
    pub code: String,
    /// What went wrong.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(rules: &str) -> FleetConfig {
        let c: FleetConfig =
            serde_json::from_str(&format!(r#"{{"cluster":"limits","rules":{rules}}}"#)).unwrap();
        c.validate().unwrap();
        c
    }

    #[test]
    fn rules_name_their_counters() {
        let c = config(
            r#"[{"scope":"key","name":"a","rpm":30},{"scope":"team","daily_usd":1.5},
                {"scope":"subject","rpm":5,"max_concurrent":2},{"scope":"key","name":"b","rpm":1}]"#,
        );
        let who = Caller {
            key: Some("a"),
            team: Some("red"),
            subject: Some("alice"),
            model: Some("m"),
        };
        let b = c.buckets(
            &who,
            Amounts {
                tokens: 10,
                micro_usd: 7,
            },
        );
        let got: Vec<_> = b
            .iter()
            .map(|b| (b.kind, b.scope.as_str(), b.limit, b.amount))
            .collect();
        assert_eq!(
            got,
            [
                (Kind::Rpm, "key:a", 30, 1),
                (Kind::UsdDay, "team:red", 1_500_000, 7),
                (Kind::Rpm, "subject:alice", 5, 1),
                (Kind::Concurrent, "subject:alice", 2, 1),
            ]
        );
        assert!(c.buckets(&Caller::default(), Amounts::default()).is_empty());
    }

    #[test]
    fn validation_names_the_field() {
        let bad = |s: &str| {
            let c: FleetConfig = serde_json::from_str(s).unwrap();
            c.validate().unwrap_err().to_string()
        };
        assert!(
            bad(r#"{"cluster":"l","rules":[{"scope":"key","rpm":0}]}"#).starts_with("rules[0].rpm")
        );
        assert!(bad(r#"{"cluster":"l","rules":[{"rpm":3}]}"#).starts_with("rules[0].scope"));
        assert!(bad(r#"{"cluster":"l","timeout_ms":0}"#).starts_with("timeout_ms"));
        assert!(serde_json::from_str::<FleetConfig>(r#"{"cluster":"l","x":1}"#).is_err());
        let d = FailurePolicy::default();
        assert_eq!(Kind::UsdDay.policy(&d), OnFailure::Closed);
        assert_eq!(Kind::Rpm.policy(&d), OnFailure::Open);
    }
}
