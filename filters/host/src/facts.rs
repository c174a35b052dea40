//! The typed per-request context: what auth learned about a request (and what later stages
//! decided), handed from stage to stage.
//!
//! In the one-filter build the stages share one value in the VM. In the five-filter build each
//! filter is its own VM, so the facts cross filter boundaries as `x-aimesh-*` request headers:
//! [`Facts::decode`] and [`Facts::edits`] are the only code that reads or writes them.

use aimesh_core::headers as names;
use aimesh_core::Dialect;

use crate::Headers;

/// Facts about one request, each absent until a stage sets it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// Id of the virtual key (or JWT subject) that authenticated the request.
    pub key_id: Option<String>,
    /// Team of the authenticated caller.
    pub team: Option<String>,
    /// The `sub` claim of the caller's verified JWT.
    pub subject: Option<String>,
    /// The `model` the client asked for, as it appeared in the body.
    pub model: Option<String>,
    /// The body asked for a streamed (SSE) response.
    pub stream: Option<bool>,
    /// The body set `stream_options.include_usage`.
    pub include_usage: Option<bool>,
    /// The body's `max_completion_tokens` (else `max_tokens`).
    pub max_tokens: Option<u64>,
    /// Envoy cluster chosen for the request. Envoy routes on it, so it is always a real header.
    pub cluster: Option<String>,
    /// Provider account / backend that serves the request.
    pub backend: Option<String>,
    /// Model name sent to the backend after virtual-model selection.
    pub model_served: Option<String>,
    /// The API dialect of the path the client sent (auth sets it before any rewrite).
    pub dialect: Option<Dialect>,
}

fn text(hs: &Headers, name: &str) -> Option<String> {
    hs.get(name).map(str::to_string)
}

fn flag(hs: &Headers, name: &str) -> Option<bool> {
    match hs.get(name)? {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

fn bool_text(b: bool) -> String {
    if b { "true" } else { "false" }.to_string()
}

impl Facts {
    /// The facts an earlier filter published as headers (the five-filter build). Auth strips
    /// every client-sent `x-aimesh-*` header first, so what is here was set by a filter.
    pub fn decode(hs: &Headers) -> Facts {
        Facts {
            key_id: text(hs, names::KEY_ID),
            team: text(hs, names::TEAM),
            subject: text(hs, names::SUBJECT),
            model: text(hs, names::MODEL),
            stream: flag(hs, names::STREAM),
            include_usage: flag(hs, names::INCLUDE_USAGE),
            max_tokens: hs.get(names::MAX_TOKENS).and_then(|v| v.parse().ok()),
            cluster: text(hs, names::CLUSTER),
            backend: text(hs, names::BACKEND),
            model_served: text(hs, names::MODEL_SERVED),
            dialect: hs.get(names::DIALECT).and_then(Dialect::parse),
        }
    }

    /// The dialect errors are rendered in: the fact, else the request's current path.
    pub fn dialect_or(&self, hs: &Headers) -> Dialect {
        self.dialect
            .unwrap_or_else(|| Dialect::from_path(hs.get(":path").unwrap_or_default()))
    }

    fn encoded(&self) -> [(&'static str, Option<String>); 11] {
        [
            (names::KEY_ID, self.key_id.clone()),
            (names::TEAM, self.team.clone()),
            (names::SUBJECT, self.subject.clone()),
            (names::MODEL, self.model.clone()),
            (names::STREAM, self.stream.map(bool_text)),
            (names::INCLUDE_USAGE, self.include_usage.map(bool_text)),
            (names::MAX_TOKENS, self.max_tokens.map(|n| n.to_string())),
            (names::CLUSTER, self.cluster.clone()),
            (names::BACKEND, self.backend.clone()),
            (names::MODEL_SERVED, self.model_served.clone()),
            // OpenAI is the default: it costs no header.
            (
                names::DIALECT,
                self.dialect
                    .filter(|d| *d != Dialect::OpenAi)
                    .map(|d| d.as_str().to_string()),
            ),
        ]
    }

    /// The header edits that turn `before`'s headers into `self`'s: `(name, Some(value))` sets,
    /// `(name, None)` removes. Only changed facts cost a host call.
    pub fn edits(&self, before: &Facts) -> Vec<(&'static str, Option<String>)> {
        self.encoded()
            .into_iter()
            .zip(before.encoded())
            .filter(|((_, new), (_, old))| new != old)
            .map(|((name, new), _)| (name, new))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Facts {
        Facts {
            key_id: Some("k1".into()),
            team: Some("ml".into()),
            subject: Some("alice".into()),
            model: Some("gpt-4o".into()),
            stream: Some(true),
            include_usage: Some(false),
            max_tokens: Some(512),
            cluster: Some("provider_openai".into()),
            backend: Some("openai".into()),
            model_served: Some("gpt-4o-2024".into()),
            dialect: Some(Dialect::Anthropic),
        }
    }

    #[test]
    fn facts_round_trip_through_headers() {
        let f = full();
        let mut hs = Headers::default();
        for (k, v) in f.edits(&Facts::default()) {
            hs.set(k, v.as_deref().map(str::as_bytes));
        }
        assert_eq!(Facts::decode(&hs), f);
    }

    #[test]
    fn only_changed_facts_are_edited_and_cleared_ones_removed() {
        let before = full();
        let mut after = before.clone();
        after.model_served = Some("other".into());
        after.team = None;
        let e = after.edits(&before);
        assert_eq!(
            e,
            vec![
                (names::TEAM, None),
                (names::MODEL_SERVED, Some("other".to_string()))
            ]
        );
    }

    #[test]
    fn malformed_flags_and_numbers_read_as_absent() {
        let hs = Headers::from_pairs(vec![
            (names::STREAM.into(), b"yes".to_vec()),
            (names::MAX_TOKENS.into(), b"-3".to_vec()),
        ]);
        let f = Facts::decode(&hs);
        assert_eq!((f.stream, f.max_tokens), (None, None));
    }
}
