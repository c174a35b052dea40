//! The API dialect a client speaks, read from the request path: it decides the shape of every
//! error the gateway itself sends and which usage format accounting reads.

/// The client's API dialect.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// OpenAI's API (chat completions, responses, embeddings, ...) and everything else.
    #[default]
    OpenAi,
    /// Anthropic's Messages API: `/v1/messages` and `/v1/messages/count_tokens`.
    Anthropic,
}

/// Path of Anthropic's Messages API; `count_tokens` lives below it.
pub const MESSAGES: &str = "/v1/messages";
/// Path of Anthropic's token counting endpoint.
pub const COUNT_TOKENS: &str = "/v1/messages/count_tokens";

impl Dialect {
    /// The dialect of a request path (query string allowed).
    pub fn from_path(path: &str) -> Dialect {
        let p = path.split(['?', '#']).next().unwrap_or_default();
        match p.strip_prefix(MESSAGES) {
            Some("" | "/") => Dialect::Anthropic,
            Some(rest) if rest.starts_with('/') => Dialect::Anthropic,
            _ => Dialect::OpenAi,
        }
    }

    /// Header value of the fact (`x-aimesh-dialect`).
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::OpenAi => "openai",
            Dialect::Anthropic => "anthropic",
        }
    }

    /// Inverse of [`Dialect::as_str`]; `None` for anything else.
    pub fn parse(s: &str) -> Option<Dialect> {
        match s {
            "openai" => Some(Dialect::OpenAi),
            "anthropic" => Some(Dialect::Anthropic),
            _ => None,
        }
    }
}

/// Anthropic's error `type` for a status (the `anthropic` SDKs pick their exception by status).
pub fn anthropic_error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
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
        assert_eq!(anthropic_error_type(503), "api_error");
        assert_eq!(anthropic_error_type(529), "overloaded_error");
    }
}
