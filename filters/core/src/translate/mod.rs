//! OpenAI chat completions <-> Anthropic Messages: requests, responses, streams and errors.
//!
//! Pure functions over bytes, so the translate stage stays a thin sequencer and every rule is
//! tested natively. The rules, and what is not mapped and why, are in `docs/translation.md`.
//! Requests and whole responses are translated as JSON values; streams are translated event by
//! event ([`stream`]), holding only the bytes of an unfinished event.

pub mod errors;
pub mod request;
pub mod response;
pub mod sse;
pub mod stream;

#[cfg(test)]
mod request_tests;
#[cfg(test)]
mod response_tests;
#[cfg(test)]
mod stream_tests;

pub use aimesh_config::translate::Dialect;
pub use errors::TranslateError;

/// What the response translation needs to know about the request it answers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exchange {
    /// The model the client asked for (answered back when the provider names none).
    pub model: String,
    /// The client asked for a stream.
    pub stream: bool,
    /// OpenAI client: `stream_options.include_usage` was set (the final usage-only chunk).
    pub include_usage: bool,
    /// Anthropic client: `thinking` was enabled (reasoning text is returned as thinking blocks).
    pub thinking: bool,
    /// Unix seconds for OpenAI's `created`.
    pub created: u64,
}

/// The dialect a request path speaks: OpenAI chat completions or Anthropic Messages; `None`
/// for any other API (not translated).
pub fn dialect_of_path(path: &str) -> Option<Dialect> {
    let path = path.split('?').next().unwrap_or_default();
    if path.ends_with("/chat/completions") {
        Some(Dialect::OpenAi)
    } else if path.ends_with("/v1/messages") {
        Some(Dialect::Anthropic)
    } else {
        None
    }
}

/// `path` (query kept) rewritten for the `to` dialect's endpoint: the suffix
/// `/chat/completions` <-> `/messages` (a base path in front is kept).
pub fn rewrite_path(path: &str, to: Dialect) -> String {
    let (p, q) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let new = match to {
        Dialect::Anthropic => p
            .strip_suffix("/chat/completions")
            .map(|b| format!("{b}/messages")),
        Dialect::OpenAi => p
            .strip_suffix("/messages")
            .map(|b| format!("{b}/chat/completions")),
    }
    .unwrap_or_else(|| p.to_string());
    match q {
        Some(q) => format!("{new}?{q}"),
        None => new,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            dialect_of_path("/v1/chat/completions"),
            Some(Dialect::OpenAi)
        );
        assert_eq!(
            dialect_of_path("/v1/messages?beta=true"),
            Some(Dialect::Anthropic)
        );
        assert_eq!(dialect_of_path("/v1/messages/count_tokens"), None);
        assert_eq!(dialect_of_path("/v1/embeddings"), None);
        assert_eq!(
            rewrite_path("/base/v1/chat/completions?a=1", Dialect::Anthropic),
            "/base/v1/messages?a=1"
        );
        assert_eq!(
            rewrite_path("/v1/messages?beta=true", Dialect::OpenAi),
            "/v1/chat/completions?beta=true"
        );
    }
}
