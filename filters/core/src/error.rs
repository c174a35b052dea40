//! Error replies in the caller's dialect.
//!
//! Every area defines its own `thiserror` enum and implements [`ErrorKind`] so the glue can turn
//! any of them into the `{"error": {"message", "type", "code"}}` body the OpenAI SDKs parse, or,
//! for an Anthropic client, `{"type": "error", "error": {"type", "message", "details"}}`.

use serde::Serialize;

use crate::dialect::{anthropic_error_type, Dialect};

/// What an area's error must tell the client: an HTTP status and a stable machine code.
pub trait ErrorKind: std::fmt::Display {
    /// HTTP status of the reply.
    fn status(&self) -> u16;
    /// Stable code clients can match on (`invalid_api_key`, `model_not_allowed`, ...).
    fn code(&self) -> &'static str;
    /// OpenAI `type` field; derived from the status unless an area needs another.
    fn error_type(&self) -> &'static str {
        error_type_for_status(self.status())
    }
    /// Extra response headers (`Retry-After`, `x-ratelimit-*`).
    fn headers(&self) -> Vec<(String, String)> {
        Vec::new()
    }
}

/// The OpenAI `type` conventionally used for a status.
pub fn error_type_for_status(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 | 400 | 422 => "invalid_request_error",
        429 => "rate_limit_error",
        s if s >= 500 => "server_error",
        _ => "invalid_request_error",
    }
}

/// A rendered error: status, headers and the JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Extra headers besides `content-type`.
    pub headers: Vec<(String, String)>,
    /// `{"error": {...}}` JSON.
    pub body: String,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: &'a str,
}

#[derive(Serialize)]
struct AnthropicEnvelope<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: AnthropicInner<'a>,
}

#[derive(Serialize)]
struct AnthropicInner<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    message: &'a str,
    /// The `anthropic` SDKs read `error.details.error_code`: our stable code stays visible there
    /// without changing the exception the status selects.
    details: Details<'a>,
}

#[derive(Serialize)]
struct Details<'a> {
    error_code: &'a str,
}

impl ApiError {
    /// Renders any area error in the caller's dialect.
    pub fn in_dialect(err: &dyn ErrorKind, dialect: Dialect) -> Self {
        match dialect {
            Dialect::OpenAi => Self::from_kind(err),
            Dialect::Anthropic => {
                let status = err.status();
                Self::anthropic(status, err.code(), &err.to_string()).with_headers(err.headers())
            }
        }
    }

    /// An Anthropic error body: the `type` follows the status, our code is in `details`.
    pub fn anthropic(status: u16, code: &str, message: &str) -> Self {
        let body = serde_json::to_string(&AnthropicEnvelope {
            kind: "error",
            error: AnthropicInner {
                kind: anthropic_error_type(status),
                message,
                details: Details { error_code: code },
            },
        })
        .unwrap_or_else(|_| {
            String::from(r#"{"type":"error","error":{"type":"api_error","message":"error"}}"#)
        });
        Self {
            status,
            headers: Vec::new(),
            body,
        }
    }

    /// Renders any area error.
    pub fn from_kind(err: &dyn ErrorKind) -> Self {
        Self::new(err.status(), err.error_type(), err.code(), &err.to_string())
            .with_headers(err.headers())
    }

    /// Builds an error from its parts.
    pub fn new(status: u16, kind: &str, code: &str, message: &str) -> Self {
        let body = serde_json::to_string(&Envelope {
            error: Inner {
                message,
                kind,
                param: None,
                code,
            },
        })
        // Serializing plain strings cannot fail; keep a valid body regardless.
        .unwrap_or_else(|_| String::from(r#"{"error":{"message":"error","type":"server_error","param":null,"code":"internal_error"}}"#));
        Self {
            status,
            headers: Vec::new(),
            body,
        }
    }

    /// Adds response headers.
    pub fn with_headers(mut self, headers: Vec<(String, String)>) -> Self {
        self.headers.extend(headers);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("slow down \"now\"")]
    struct Limited;

    impl ErrorKind for Limited {
        fn status(&self) -> u16 {
            429
        }
        fn code(&self) -> &'static str {
            "rate_limit_exceeded"
        }
        fn headers(&self) -> Vec<(String, String)> {
            vec![("retry-after".into(), "3".into())]
        }
    }

    #[test]
    fn renders_openai_shape_and_escapes_message() {
        let e = ApiError::from_kind(&Limited);
        assert_eq!(e.status, 429);
        assert_eq!(
            e.headers,
            vec![("retry-after".to_string(), "3".to_string())]
        );
        let v: serde_json::Value = serde_json::from_str(&e.body).unwrap();
        assert_eq!(v["error"]["message"], "slow down \"now\"");
        assert_eq!(v["error"]["type"], "rate_limit_error");
        assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    }

    #[test]
    fn renders_anthropic_shape_with_code_in_details() {
        let e = ApiError::in_dialect(&Limited, Dialect::Anthropic);
        assert_eq!(e.status, 429);
        assert_eq!(e.headers.len(), 1);
        let v: serde_json::Value = serde_json::from_str(&e.body).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "rate_limit_error");
        assert_eq!(v["error"]["message"], "slow down \"now\"");
        assert_eq!(v["error"]["details"]["error_code"], "rate_limit_exceeded");
        assert_eq!(
            ApiError::in_dialect(&Limited, Dialect::OpenAi),
            ApiError::from_kind(&Limited)
        );
    }
}
