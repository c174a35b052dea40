//! The parts of the OpenAI request schema the gateway acts on.
//!
//! Only the fields a decision needs are deserialized; everything else is skipped (still
//! syntax-checked), so one pass both validates the body and extracts the facts.

use std::borrow::Cow;

use serde::Deserialize;

use crate::error::ErrorKind;

/// What a request body says about routing and accounting.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestFacts {
    /// The `model` field.
    pub model: String,
    /// `stream: true`.
    pub stream: bool,
    /// `stream_options.include_usage: true`.
    pub include_usage: bool,
    /// `max_completion_tokens`, else `max_tokens`.
    pub max_tokens: Option<u64>,
}

/// Why a request body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Not parseable JSON (also: not UTF-8, truncated, nested too deep).
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
    /// Valid JSON whose top level is not an object, or a known field of the wrong type.
    #[error("invalid request body: {0}")]
    InvalidField(String),
    /// No `model` field.
    #[error("you must provide a model parameter")]
    MissingModel,
    /// A `model` that cannot be a model id: control characters or too long. It would otherwise
    /// travel on as the `x-aimesh-model` header.
    #[error("invalid model name: {0}")]
    InvalidModel(&'static str),
    /// Body larger than the configured limit.
    #[error("request body exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
}

impl ErrorKind for BodyError {
    fn status(&self) -> u16 {
        match self {
            BodyError::TooLarge { .. } => 413,
            _ => 400,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            BodyError::InvalidJson(_) => "invalid_json",
            BodyError::InvalidField(_) => "invalid_request_body",
            BodyError::MissingModel => "missing_model",
            BodyError::InvalidModel(_) => "invalid_model",
            BodyError::TooLarge { .. } => "request_too_large",
        }
    }
}

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

/// True for paths whose JSON body names the `model` the gateway routes and governs: the OpenAI
/// API surface under `/v1/`. Other traffic through the gateway (MCP JSON-RPC under `/mcp/`,
/// custom endpoints under `/proxy-api/`) has no model and is governed by its key alone.
pub fn carries_model(path: &str) -> bool {
    path.starts_with("/v1/")
}

/// Longest accepted `model` (OpenAI's ids are far shorter; 256 leaves room for
/// `account/org/model:tag` names of self-hosted servers); the catalogue's rule too.
pub use aimesh_config::auth::catalogue::MAX_MODEL_LEN;

/// Extracts [`RequestFacts`] from a request body, validating it as JSON on the way.
pub fn request_facts(body: &[u8]) -> Result<RequestFacts, BodyError> {
    // A UTF-8 BOM is not JSON (RFC 8259 §8.1 says parsers MAY ignore it); OpenAI's API rejects
    // it, and so do we, with a clear message rather than serde's "expected value".
    if body.starts_with(&[0xEF, 0xBB, 0xBF]) {
        return Err(BodyError::InvalidJson(
            "body starts with a byte order mark".into(),
        ));
    }
    let wire: Wire<'_> = serde_json::from_slice(body).map_err(classify)?;
    let model = wire.model.ok_or(BodyError::MissingModel)?;
    if model.is_empty() {
        return Err(BodyError::MissingModel);
    }
    if model.len() > MAX_MODEL_LEN {
        return Err(BodyError::InvalidModel("longer than 256 bytes"));
    }
    if model.chars().any(char::is_control) {
        return Err(BodyError::InvalidModel("contains control characters"));
    }
    Ok(RequestFacts {
        model: model.into_owned(),
        stream: wire.stream.unwrap_or(false),
        include_usage: wire
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
        max_tokens: wire.max_completion_tokens.or(wire.max_tokens),
    })
}

fn classify(e: serde_json::Error) -> BodyError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Data => BodyError::InvalidField(e.to_string()),
        Category::Io | Category::Syntax | Category::Eof => BodyError::InvalidJson(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_facts() {
        let f = request_facts(
            br#"{"messages":[{"role":"user","content":"hi"}],"model":"gpt-4o","stream":true,
                "stream_options":{"include_usage":true},"max_tokens":7}"#,
        )
        .unwrap();
        assert_eq!(
            f,
            RequestFacts {
                model: "gpt-4o".into(),
                stream: true,
                include_usage: true,
                max_tokens: Some(7)
            }
        );
    }

    #[test]
    fn only_the_openai_surface_carries_a_model() {
        assert!(carries_model("/v1/chat/completions"));
        assert!(!carries_model("/mcp/tools"));
        assert!(!carries_model("/proxy-api/acct/ep/v1/x"));
        assert!(!carries_model("/v1"));
    }

    #[test]
    fn escaped_model_names_are_decoded() {
        assert_eq!(request_facts(br#"{"model":"a\/b"}"#).unwrap().model, "a/b");
    }

    #[test]
    fn refuses_bad_bodies_with_codes() {
        let code = |b: &[u8]| request_facts(b).unwrap_err().code();
        assert_eq!(code(b"{"), "invalid_json");
        assert_eq!(code(b"\xEF\xBB\xBF{\"model\":\"m\"}"), "invalid_json");
        assert_eq!(code(b"[1]"), "invalid_request_body");
        assert_eq!(code(br#"{"model":5}"#), "invalid_request_body");
        assert_eq!(
            code(br#"{"model":"m","stream":"yes"}"#),
            "invalid_request_body"
        );
        assert_eq!(
            code(br#"{"model":"a","model":"b"}"#),
            "invalid_request_body"
        );
        assert_eq!(code(br#"{"messages":[]}"#), "missing_model");
        assert_eq!(code(br#"{"model":""}"#), "missing_model");
        assert_eq!(code(b"{\"model\":\"\xff\"}"), "invalid_json");
        assert_eq!(
            code(br#"{"model":"gpt\r\nx-injected: 1"}"#),
            "invalid_model"
        );
        assert_eq!(code(br#"{"model":"gpt\u0000"}"#), "invalid_model");
        let long = format!(r#"{{"model":"{}"}}"#, "m".repeat(MAX_MODEL_LEN + 1));
        assert_eq!(code(long.as_bytes()), "invalid_model");
        assert_eq!(
            request_facts("{\"model\":\"модель-🚀\"}".as_bytes())
                .unwrap()
                .model,
            "модель-🚀"
        );
        // Ignored fields are skipped without recursion: deep nesting there is no stack risk.
        let deep = format!(
            "{{\"model\":\"m\",\"x\":{}{}}}",
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        assert_eq!(request_facts(deep.as_bytes()).unwrap().model, "m");
        let deep_model = format!("{{\"model\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(code(deep_model.as_bytes()), "invalid_request_body");
    }
}
