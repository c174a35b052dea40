//! PII detection and redaction: detectors, per-type actions, JSON-aware body rewriting and the
//! streaming redactor/restorer for SSE responses.
//!
//! Built-in detectors are hand-written linear scanners ([`scan`]); operator patterns and deny
//! words use the `regex` crate (linear-time by construction) and are compiled once per VM.

pub mod config;
pub mod engine;
pub mod json;
pub mod scan;
pub mod stream;
pub mod validate;

pub use config::{Action, PiiConfig, PolicyConfig, RuleConfig};
pub use engine::{Engine, Finding, Policy, Session};

/// The built-in PII types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PiiType {
    /// E-mail address.
    Email,
    /// Phone number, international or national.
    Phone,
    /// Payment card number (Luhn-valid).
    CreditCard,
    /// US social security number.
    UsSsn,
    /// International bank account number (mod-97 valid).
    Iban,
    /// IPv4 or IPv6 address.
    IpAddress,
    /// API tokens, cloud keys, JWTs, private keys.
    Secret,
}

impl PiiType {
    /// Every built-in type, in label order.
    pub const ALL: [PiiType; 7] = [
        PiiType::Email,
        PiiType::Phone,
        PiiType::CreditCard,
        PiiType::UsSsn,
        PiiType::Iban,
        PiiType::IpAddress,
        PiiType::Secret,
    ];

    /// Name used in config, placeholders, metrics and errors.
    pub fn name(self) -> &'static str {
        match self {
            PiiType::Email => "EMAIL",
            PiiType::Phone => "PHONE",
            PiiType::CreditCard => "CREDIT_CARD",
            PiiType::UsSsn => "US_SSN",
            PiiType::Iban => "IBAN",
            PiiType::IpAddress => "IP_ADDRESS",
            PiiType::Secret => "SECRET",
        }
    }

    /// Label index (position in [`PiiType::ALL`]).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PiiError {
    /// A type whose action is `block` was found; names the types, never the values.
    #[error("request blocked: it contains {0}")]
    Blocked(String),
    /// The body is not JSON, so its text cannot be located and checked.
    #[error("request body is not valid JSON; PII redaction needs a JSON body")]
    InvalidJson,
}

impl crate::ErrorKind for PiiError {
    fn status(&self) -> u16 {
        400
    }
    fn code(&self) -> &'static str {
        match self {
            PiiError::Blocked(_) => "pii_detected",
            PiiError::InvalidJson => "invalid_json",
        }
    }
}
