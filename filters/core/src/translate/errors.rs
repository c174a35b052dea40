//! Translation errors, and provider error bodies rendered in the client's dialect.

use serde_json::{json, Value};

use super::Dialect;
use crate::ErrorKind;

/// Why a request could not be translated (the client gets a 400 in its own dialect).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    /// The body is not a JSON object.
    #[error("request body is not a JSON object")]
    NotJson,
    /// A field has the wrong shape.
    #[error("`{field}`: {problem}")]
    Invalid {
        /// Path of the field (`messages[2].content[0]`).
        field: String,
        /// What is wrong.
        problem: String,
    },
    /// A field has no equivalent in the provider's dialect and dropping it would change the answer.
    #[error("`{field}` cannot be translated for this provider: {why}")]
    Unsupported {
        /// Path of the field.
        field: String,
        /// Why.
        why: &'static str,
    },
}

impl TranslateError {
    pub(crate) fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            problem: problem.into(),
        }
    }
    pub(crate) fn unsupported(field: impl Into<String>, why: &'static str) -> Self {
        Self::Unsupported {
            field: field.into(),
            why,
        }
    }
}

impl ErrorKind for TranslateError {
    fn status(&self) -> u16 {
        400
    }
    fn code(&self) -> &'static str {
        match self {
            Self::NotJson => "invalid_json",
            Self::Invalid { .. } => "invalid_request",
            Self::Unsupported { .. } => "unsupported_parameter",
        }
    }
}

pub use crate::dialect::anthropic_error_type;

/// The Anthropic error body for `message`.
pub fn anthropic_error(status: u16, kind: Option<&str>, message: &str) -> Vec<u8> {
    let kind = kind.unwrap_or_else(|| anthropic_error_type(status));
    json!({"type": "error", "error": {"type": kind, "message": message}})
        .to_string()
        .into_bytes()
}

/// The OpenAI error body for `message`.
pub fn openai_error(status: u16, kind: Option<&str>, code: Option<&str>, message: &str) -> Vec<u8> {
    let kind = kind.unwrap_or_else(|| crate::error::error_type_for_status(status));
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
        .to_string()
        .into_bytes()
}

/// The error `message` and `type` of a body in either dialect (or a short excerpt of a body in
/// neither: an HTML page from a proxy, plain text).
fn read_error(body: &[u8]) -> (String, Option<String>, Option<String>) {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let e = &v["error"];
    if let Some(m) = e["message"].as_str().or_else(|| e.as_str()) {
        let kind = e["type"].as_str().map(str::to_string);
        let code = match &e["code"] {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        return (m.to_string(), kind, code);
    }
    if let Some(m) = v["message"].as_str().or_else(|| v["detail"].as_str()) {
        return (m.to_string(), None, None);
    }
    let text = String::from_utf8_lossy(body);
    let excerpt: String = text.trim().chars().take(500).collect();
    let message = if excerpt.is_empty() {
        "the provider returned an error with no body".to_string()
    } else {
        excerpt
    };
    (message, None, None)
}

/// A provider's error body (status `status`, in the provider's dialect or none) rendered in the
/// client's dialect `to`. The message is kept; the type is the provider's when the two dialects
/// share it, else the one `to` uses for the status.
pub fn translate_error(status: u16, body: &[u8], to: Dialect) -> Vec<u8> {
    let (message, kind, code) = read_error(body);
    match to {
        Dialect::Anthropic => {
            // OpenAI's types are mostly Anthropic's too; its `server_error` and the like are not.
            let known = kind.as_deref().filter(|k| {
                matches!(
                    *k,
                    "invalid_request_error"
                        | "authentication_error"
                        | "permission_error"
                        | "not_found_error"
                        | "rate_limit_error"
                        | "overloaded_error"
                        | "api_error"
                )
            });
            anthropic_error(status, known, &message)
        }
        Dialect::OpenAi => {
            let code = code.or_else(|| kind.clone());
            openai_error(status, None, code.as_deref(), &message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(b: &[u8]) -> Value {
        serde_json::from_slice(b).expect("json")
    }

    #[test]
    fn openai_errors_become_anthropic_errors() {
        let b = br#"{"error":{"message":"Rate limit reached","type":"rate_limit_error","param":null,"code":"rate_limit_exceeded"}}"#;
        let out = v(&translate_error(429, b, Dialect::Anthropic));
        assert_eq!(out["type"], "error");
        assert_eq!(out["error"]["type"], "rate_limit_error");
        assert_eq!(out["error"]["message"], "Rate limit reached");
        let srv = v(&translate_error(
            503,
            br#"{"error":{"message":"down","type":"server_error"}}"#,
            Dialect::Anthropic,
        ));
        assert_eq!(srv["error"]["type"], "overloaded_error");
        // vLLM's and FastAPI's own shapes, and no JSON at all.
        let vllm = v(&translate_error(
            400,
            br#"{"object":"error","message":"too long","type":"BadRequestError","code":400}"#,
            Dialect::Anthropic,
        ));
        assert_eq!(vllm["error"]["message"], "too long");
        assert_eq!(vllm["error"]["type"], "invalid_request_error");
        let html = v(&translate_error(
            502,
            b"<html>bad gateway</html>",
            Dialect::Anthropic,
        ));
        assert_eq!(html["error"]["type"], "api_error");
        assert_eq!(html["error"]["message"], "<html>bad gateway</html>");
    }

    #[test]
    fn anthropic_errors_become_openai_errors() {
        let b = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        let out = v(&translate_error(529, b, Dialect::OpenAi));
        assert_eq!(out["error"]["message"], "Overloaded");
        assert_eq!(out["error"]["type"], "server_error");
        assert_eq!(out["error"]["code"], "overloaded_error");
        let empty = v(&translate_error(500, b"", Dialect::OpenAi));
        assert_eq!(
            empty["error"]["message"],
            "the provider returned an error with no body"
        );
    }
}
