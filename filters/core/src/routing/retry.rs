//! What a failed attempt means, and the Envoy retry settings that carry it out.
//!
//! Envoy's router does the retrying: it replays the buffered request, the
//! `previous_priorities` retry plugin moves to the next target of the aggregate cluster after
//! `attempts_per_target` attempts, and no byte reaches the client before a retry is decided
//! (a retry is only possible before response headers are forwarded). The downstream filter sets
//! the per-request retry headers below so the status lists live in this filter's config.

use super::config::{RetryOptions, VirtualModel};

/// What to do after an attempt answered `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Hand the reply to the client.
    Done,
    /// Try the same target again.
    RetrySame,
    /// Move to the next target.
    Fallback,
}

/// Decision for an attempt answering `status`, the `attempt`-th (1-based) on its target.
pub fn classify(opts: &RetryOptions, status: u16, attempt: u32) -> Outcome {
    if attempt < opts.attempts_per_target && opts.retry_on.contains(&status) {
        Outcome::RetrySame
    } else if opts.fallback_on.contains(&status) {
        Outcome::Fallback
    } else {
        Outcome::Done
    }
}

/// Envoy `retry_on` conditions besides status codes: connect failure, reset, per-try timeout.
pub const RETRY_ON: &str = "retriable-status-codes,connect-failure,reset";

/// Request headers the Envoy router reads for this virtual model's retries
/// (`x-envoy-max-retries`, `x-envoy-retry-on`, `x-envoy-retriable-status-codes`).
pub fn envoy_headers(vm: &VirtualModel) -> Vec<(&'static str, String)> {
    let r = &vm.retry;
    let targets = u32::try_from(vm.targets.len()).unwrap_or(u32::MAX);
    let attempts = r.attempts_per_target.saturating_mul(targets);
    let mut codes: Vec<u16> = r.retry_on.iter().chain(&r.fallback_on).copied().collect();
    codes.sort_unstable();
    codes.dedup();
    let codes: Vec<String> = codes.iter().map(u16::to_string).collect();
    vec![
        (
            "x-envoy-max-retries",
            attempts.saturating_sub(1).to_string(),
        ),
        ("x-envoy-retry-on", RETRY_ON.to_string()),
        ("x-envoy-retriable-status-codes", codes.join(",")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_outcomes() {
        let mut o = RetryOptions::default();
        assert_eq!(classify(&o, 503, 1), Outcome::Fallback);
        assert_eq!(classify(&o, 401, 1), Outcome::Fallback);
        assert_eq!(classify(&o, 400, 1), Outcome::Done);
        o.attempts_per_target = 2;
        assert_eq!(classify(&o, 429, 1), Outcome::RetrySame);
        assert_eq!(classify(&o, 429, 2), Outcome::Fallback);
        assert_eq!(classify(&o, 401, 1), Outcome::Fallback);
    }

    #[test]
    fn envoy_headers_cover_all_targets() {
        let vm: VirtualModel = serde_json::from_value(serde_json::json!({"name": "vm",
            "targets": [{"target": "a/m", "cluster": "ca"}, {"target": "b/m", "cluster": "cb"}],
            "retry": {"attempts_per_target": 2}}))
        .unwrap();
        let h = envoy_headers(&vm);
        assert_eq!(h[0], ("x-envoy-max-retries", "3".to_string()));
        assert_eq!(h[2].1, "401,403,404,429,500,502,503");
    }
}
