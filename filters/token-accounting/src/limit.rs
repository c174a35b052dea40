//! Limit refusals as OpenAI errors.

use aimesh_core::accounting::admission::Refusal;
use aimesh_core::ErrorKind;

/// A request refused before it reached the provider.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
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
                window: if monthly { "monthly" } else { "daily" },
                remaining: remaining_tpm,
            },
        }
    }

    /// Stat label.
    pub fn reason(&self) -> &'static str {
        match self {
            LimitError::Tpm { .. } => "tpm",
            LimitError::Budget {
                window: "monthly", ..
            } => "monthly_budget",
            LimitError::Budget { .. } => "daily_budget",
        }
    }
}

impl ErrorKind for LimitError {
    fn status(&self) -> u16 {
        429
    }

    fn code(&self) -> &'static str {
        match self {
            LimitError::Tpm { .. } => "rate_limit_exceeded",
            LimitError::Budget { .. } => "insufficient_quota",
        }
    }

    fn error_type(&self) -> &'static str {
        match self {
            LimitError::Tpm { .. } => "tokens",
            LimitError::Budget { .. } => "insufficient_quota",
        }
    }

    fn headers(&self) -> Vec<(String, String)> {
        let (retry, remaining) = match self {
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
