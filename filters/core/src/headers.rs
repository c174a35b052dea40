//! The `x-aimesh-*` header contract between filters.
//!
//! The first filter that parses a request body publishes what it learned as headers so later
//! filters never parse the body again (each extra JSON parse costs ~10% throughput in Envoy).
//! Clients must not be able to forge these: the auth filter strips every `x-aimesh-*` header a
//! client sends, and the header-auth filter strips them before a request leaves for a provider.

/// Prefix of every internal header.
pub const PREFIX: &str = aimesh_config::endpoints::creds::INTERNAL_PREFIX;
/// Id of the virtual key (or JWT subject) that authenticated the request.
pub const KEY_ID: &str = "x-aimesh-key-id";
/// Team of the authenticated caller.
pub const TEAM: &str = "x-aimesh-team";
/// The `sub` claim of the caller's verified JWT (fleet-wide limits per subject).
pub const SUBJECT: &str = "x-aimesh-subject";
/// The `model` the client asked for, as it appeared in the body.
pub const MODEL: &str = "x-aimesh-model";
/// `true` when the body asked for a streamed (SSE) response.
pub const STREAM: &str = "x-aimesh-stream";
/// `true` when the body set `stream_options.include_usage`.
pub const INCLUDE_USAGE: &str = "x-aimesh-include-usage";
/// The body's `max_completion_tokens` (else `max_tokens`), absent when the body set neither;
/// with it, token-accounting admits a request without reading its body.
pub const MAX_TOKENS: &str = "x-aimesh-max-tokens";
/// Envoy cluster chosen for the request; routes use it through `cluster_header`.
pub const CLUSTER: &str = "x-aimesh-cluster";
/// Provider account / backend that serves the request.
pub const BACKEND: &str = "x-aimesh-backend";
/// Model name sent to the backend after virtual-model selection.
pub const MODEL_SERVED: &str = "x-aimesh-model-served";

/// The client's API dialect (`anthropic`), absent for OpenAI's: set by auth from the path the
/// client sent, so errors keep the client's dialect after a stage rewrites the path.
pub const DIALECT: &str = "x-aimesh-dialect";

/// Path prefix of custom endpoints (`/proxy-api/{account}/{endpoint}/{upstream-path}`), a
/// transparent proxy for any HTTP service: bodies may be binary (audio) and are not OpenAI JSON.
/// Filters that read request bodies must let these paths through without parsing them; only
/// auth's identity and limits and the header-auth filter apply (`endpoints::path::is_proxy_path`).
pub const PROXY_API_PREFIX: &str = aimesh_config::path::PREFIX;

pub use aimesh_config::endpoints::creds::is_internal;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_names_match_case_insensitively() {
        assert!(is_internal("x-aimesh-key-id"));
        assert!(is_internal("X-AIMesh-Team"));
        assert!(!is_internal("x-aimes"));
        assert!(!is_internal("authorization"));
    }
}
