//! PII detection and redaction: detectors, per-type actions, JSON-aware body rewriting and the
//! streaming redactor/restorer for SSE responses.
//!
//! Built-in detectors are hand-written linear scanners ([`scan`]); operator patterns and deny
//! words use the `regex` crate (linear-time by construction) and are compiled once per VM.

pub mod config;
pub mod engine;
pub mod fold;
mod frames;
pub mod json;
pub mod mcp;
pub mod responses;
pub mod scan;
pub mod stream;
pub mod validate;

pub use config::{Action, PiiConfig, PolicyConfig, RuleConfig};
pub use engine::{Engine, Finding, Policy, Session};

pub use aimesh_config::pii::PiiType;

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PiiError {
    /// A type whose action is `block` was found; names the types, never the values.
    #[error("request blocked: it contains {0}")]
    Blocked(String),
    /// The body is not JSON, so its text cannot be located and checked.
    #[error("request body is not valid JSON; PII redaction needs a JSON body")]
    InvalidJson,
    /// The body is declared as something other than plain JSON (another `Content-Type`, or a
    /// `Content-Encoding`) and is not JSON: the policy cannot read it, so it does not pass.
    #[error(
        "request body is not JSON (Content-Type or Content-Encoding says otherwise); \
         PII redaction reads only uncompressed JSON bodies"
    )]
    UnsupportedMediaType,
}

impl PiiError {
    /// The refusal for a body that is not JSON, by what its headers declared: a body declared
    /// as JSON (or not declared) is invalid JSON (400); one declared as something else, or
    /// compressed, is a media type the policy cannot read (415). Whatever the headers say, a
    /// body that is JSON is scanned like any other: auth reads every `/v1/` body as JSON, so
    /// the stage that redacts reads it the same way.
    pub fn not_json(content_type: Option<&str>, content_encoding: Option<&str>) -> PiiError {
        let encoded = content_encoding.is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity"));
        let other = content_type.is_some_and(|t| !t.to_ascii_lowercase().contains("json"));
        if encoded || other {
            PiiError::UnsupportedMediaType
        } else {
            PiiError::InvalidJson
        }
    }
}

impl crate::ErrorKind for PiiError {
    fn status(&self) -> u16 {
        match self {
            PiiError::UnsupportedMediaType => 415,
            PiiError::Blocked(_) | PiiError::InvalidJson => 400,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            PiiError::Blocked(_) => "pii_detected",
            PiiError::InvalidJson => "invalid_json",
            PiiError::UnsupportedMediaType => "unsupported_media_type",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn a_body_that_is_not_json_is_refused_by_what_it_declared() {
        let e = |t, enc| PiiError::not_json(t, enc);
        assert_eq!(e(None, None), PiiError::InvalidJson);
        assert_eq!(
            e(Some("application/json; charset=utf-8"), None),
            PiiError::InvalidJson
        );
        assert_eq!(
            e(Some("Application/JSON"), Some("identity")),
            PiiError::InvalidJson
        );
        for (t, enc) in [
            (Some("text/plain"), None),
            (Some("application/x-www-form-urlencoded"), None),
            (Some("multipart/form-data; boundary=x"), None),
            (Some("application/json"), Some("gzip")),
            (None, Some("br")),
        ] {
            let err = e(t, enc);
            assert_eq!(
                (err.status(), err.code()),
                (415, "unsupported_media_type"),
                "{t:?} {enc:?}"
            );
        }
    }
}
