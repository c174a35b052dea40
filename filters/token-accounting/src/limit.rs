//! Limit refusals as OpenAI errors.

use aimesh_core::accounting::admission::Refusal;
use aimesh_core::ErrorKind;

/// A request refused before it reached the provider.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    /// Requests per minute exhausted (fleet-wide).
    #[error("Rate limit reached for requests per minute. Please try again in {retry_after_s}s.")]
    Requests {
        /// Seconds to wait.
        retry_after_s: u64,
        /// Requests left now.
        remaining: u64,
    },
    /// Too many requests of this caller in flight (fleet-wide).
    #[error("Too many concurrent requests (at most {limit}). Retry when one has finished.")]
    Concurrent {
        /// The limit.
        limit: u64,
    },
    /// The limits service or its Redis could not answer and a limit that fails closed applies.
    #[error("Limits cannot be checked right now; the request was not sent. Please retry.")]
    Unavailable,
    /// Tokens per minute exhausted.
    #[error("Rate limit reached for tokens per minute on this key. Please try again in {retry_after_s}s.")]
    Tpm {
        /// Seconds to wait.
        retry_after_s: u64,
        /// Tokens left now.
        remaining: u64,
    },
    /// Daily or monthly budget spent.
    #[error("You exceeded your current {window} budget on this key.")]
    Budget {
        /// Seconds until the budget resets.
        retry_after_s: u64,
        /// `daily` or `monthly`.
        window: &'static str,
        /// Tokens left in the TPM bucket, if one applies.
        remaining: Option<u64>,
    },
    /// The request alone exceeds the tokens-per-minute limit: a retry can never succeed.
    #[error("This request needs up to {needed} tokens (prompt estimate plus max_tokens) but this key may use {tpm} tokens per minute, so it can never be admitted. Lower max_tokens or shorten the prompt.")]
    TpmNeverFits {
        /// Tokens the request reserves.
        needed: u64,
        /// The limit.
        tpm: u64,
    },
    /// The request alone may cost more than the whole budget: waiting for the reset never helps.
    #[error("This request may cost up to {needed} micro-USD (prompt estimate plus max_tokens) but this key's {window} budget is {limit} micro-USD, so it can never be admitted. Lower max_tokens or shorten the prompt.")]
    BudgetNeverFits {
        /// Micro-USD the request reserves.
        needed: u64,
        /// The budget, micro-USD.
        limit: u64,
        /// `daily` or `monthly`.
        window: &'static str,
    },
}

fn window(monthly: bool) -> &'static str {
    if monthly {
        "monthly"
    } else {
        "daily"
    }
}

impl LimitError {
    /// From a core refusal.
    pub fn from_refusal(r: Refusal, remaining_tpm: Option<u64>) -> Self {
        match r {
            Refusal::Tpm {
                retry_after_s,
                remaining,
            } => LimitError::Tpm {
                retry_after_s,
                remaining,
            },
            Refusal::Budget {
                retry_after_s,
                monthly,
            } => LimitError::Budget {
                retry_after_s,
                window: window(monthly),
                remaining: remaining_tpm,
            },
            Refusal::TpmNeverFits { needed, tpm } => LimitError::TpmNeverFits { needed, tpm },
            Refusal::BudgetNeverFits {
                needed,
                limit,
                monthly,
            } => LimitError::BudgetNeverFits {
                needed,
                limit,
                window: window(monthly),
            },
        }
    }

    /// Stat label.
    pub fn reason(&self) -> &'static str {
        match self {
            LimitError::Requests { .. } => "rpm",
            LimitError::Concurrent { .. } => "concurrent",
            LimitError::Unavailable => "unavailable",
            LimitError::Tpm { .. } => "tpm",
            LimitError::Budget {
                window: "monthly", ..
            } => "monthly_budget",
            LimitError::Budget { .. } => "daily_budget",
            LimitError::TpmNeverFits { .. } => "tpm_never_fits",
            LimitError::BudgetNeverFits { .. } => "budget_never_fits",
        }
    }
}

impl ErrorKind for LimitError {
    fn status(&self) -> u16 {
        match self {
            LimitError::Tpm { .. }
            | LimitError::Budget { .. }
            | LimitError::Requests { .. }
            | LimitError::Concurrent { .. } => 429,
            LimitError::Unavailable => 503,
            // Not a rate limit: the same request is refused again however long the client waits.
            LimitError::TpmNeverFits { .. } | LimitError::BudgetNeverFits { .. } => 400,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            LimitError::Tpm { .. }
            | LimitError::Requests { .. }
            | LimitError::Concurrent { .. } => "rate_limit_exceeded",
            LimitError::Unavailable => "limits_unavailable",
            LimitError::Budget { .. } => "insufficient_quota",
            LimitError::TpmNeverFits { .. } => "request_exceeds_tpm_limit",
            LimitError::BudgetNeverFits { .. } => "request_exceeds_budget",
        }
    }

    fn error_type(&self) -> &'static str {
        match self {
            LimitError::Tpm { .. } => "tokens",
            LimitError::Requests { .. } => "requests",
            LimitError::Concurrent { .. } => "rate_limit_error",
            LimitError::Unavailable => "server_error",
            LimitError::Budget { .. } => "insufficient_quota",
            LimitError::TpmNeverFits { .. } | LimitError::BudgetNeverFits { .. } => {
                "invalid_request_error"
            }
        }
    }

    fn headers(&self) -> Vec<(String, String)> {
        let (retry, remaining) = match self {
            LimitError::Requests {
                retry_after_s,
                remaining,
            } => {
                return vec![
                    ("retry-after".to_string(), retry_after_s.to_string()),
                    (
                        "x-ratelimit-remaining-requests".to_string(),
                        remaining.to_string(),
                    ),
                ]
            }
            LimitError::Concurrent { .. } | LimitError::Unavailable => {
                return vec![("retry-after".to_string(), "1".to_string())]
            }
            // No Retry-After: SDKs would retry a request that can never pass.
            LimitError::TpmNeverFits { .. } | LimitError::BudgetNeverFits { .. } => {
                return Vec::new()
            }
            LimitError::Tpm {
                retry_after_s,
                remaining,
            } => (*retry_after_s, Some(*remaining)),
            LimitError::Budget {
                retry_after_s,
                remaining,
                ..
            } => (*retry_after_s, *remaining),
        };
        let mut h = vec![("retry-after".to_string(), retry.to_string())];
        if let Some(r) = remaining {
            h.push(("x-ratelimit-remaining-tokens".to_string(), r.to_string()));
        }
        h
    }
}
