//! The API dialect a client or a provider speaks: one type for the stages that answer in the
//! client's dialect (every error the gateway sends, which usage format accounting reads) and for
//! the translate stage's table of what each provider cluster speaks.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API dialect a client or a provider speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Dialect {
    /// OpenAI's API (chat completions, responses, embeddings, ...) and everything else: the
    /// providers `openai`, `azure_openai`, `openai_compatible`, `vllm`, `tgi`.
    #[default]
    #[serde(rename = "openai")]
    OpenAi,
    /// Anthropic's Messages API: `/v1/messages` and `/v1/messages/count_tokens`.
    #[serde(rename = "anthropic")]
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
