//! The API dialect a client speaks, read from the request path: it decides the shape of every
//! error the gateway itself sends and which usage format accounting reads.

pub use aimesh_config::dialect::{Dialect, COUNT_TOKENS, MESSAGES};

/// Anthropic's error `type` for a status (the `anthropic` SDKs pick their exception by status;
/// the type names what happened for a reader).
pub fn anthropic_error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        408 | 504 => "timeout_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        s if s >= 500 => "api_error",
        _ => "invalid_request_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_paths_are_anthropic() {
        for p in [
            "/v1/messages",
            "/v1/messages?beta=true",
            "/v1/messages/count_tokens",
            "/v1/messages/batches/x",
        ] {
            assert_eq!(Dialect::from_path(p), Dialect::Anthropic, "{p}");
        }
        for p in [
            "/v1/chat/completions",
            "/v1/messagesx",
            "/mcp/x",
            "",
            "/v1/message",
        ] {
            assert_eq!(Dialect::from_path(p), Dialect::OpenAi, "{p}");
        }
        assert_eq!(
            Dialect::parse(Dialect::Anthropic.as_str()),
            Some(Dialect::Anthropic)
        );
        assert_eq!(Dialect::parse("x"), None);
    }

    #[test]
    fn anthropic_types_follow_status() {
        assert_eq!(anthropic_error_type(401), "authentication_error");
        assert_eq!(anthropic_error_type(413), "request_too_large");
        assert_eq!(anthropic_error_type(422), "invalid_request_error");
        assert_eq!(anthropic_error_type(503), "overloaded_error");
        assert_eq!(anthropic_error_type(500), "api_error");
        assert_eq!(anthropic_error_type(504), "timeout_error");
        assert_eq!(anthropic_error_type(529), "overloaded_error");
    }
}
