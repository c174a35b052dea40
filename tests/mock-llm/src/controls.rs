//! Per-request behaviour, from `x-mock-*` headers over process-wide defaults.

use hyper::HeaderMap;
use serde::Deserialize;

/// How the body of a streamed reply is cut into transport frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Split {
    /// One frame per SSE event.
    #[default]
    Events,
    /// Frames of exactly N bytes, ignoring event boundaries.
    Fixed(usize),
    /// Frames of 1..=max bytes from a seeded generator.
    Random { seed: u64, max: usize },
}

/// Where to break the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reset {
    /// Never.
    #[default]
    None,
    /// Close the connection before sending headers.
    BeforeHeaders,
    /// Abort after this many body bytes.
    AfterBytes(usize),
}

/// Everything a request can ask of the fake upstream.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Controls {
    /// Reply status; >= 400 gives an OpenAI error body.
    pub status: Option<u16>,
    /// `Retry-After` header on the reply.
    pub retry_after: Option<String>,
    /// Delay before response headers.
    pub latency_ms: u64,
    /// Words in the completion (one token each).
    pub completion_tokens: Option<u64>,
    /// Content chunks in a streamed reply (default: one per token).
    pub chunks: Option<u64>,
    /// Delay between streamed frames.
    pub chunk_gap_ms: u64,
    /// Literal completion text.
    pub content: Option<String>,
    /// Completion echoes the text of the last message / prompt.
    pub echo: bool,
    /// No `usage` anywhere in the reply.
    pub omit_usage: bool,
    /// Insert malformed SSE events into the stream.
    pub malformed_sse: bool,
    /// Pad the completion so the reply body is at least this many bytes.
    pub response_bytes: Option<usize>,
    /// Streams one SSE `data:` line of this many bytes that never ends: no line break, and the
    /// stream stays open until the client goes away (a provider that misbehaves without end).
    pub endless_line: Option<usize>,
    /// Status of `GET /healthz`.
    pub health_status: Option<u16>,
    /// Echo the credential the request carried (`authorization`, `x-api-key` or `api-key`):
    /// in an `x-echo-credential` response header and in an error reply's message, as a
    /// careless provider might.
    pub echo_credentials: bool,
    /// Anthropic: reply with a `tool_use` block calling this tool (or the first offered one).
    pub tool_use: Option<String>,
    /// Anthropic: `cache_read_input_tokens` to report.
    pub cache_read_tokens: u64,
    /// Anthropic: `cache_creation_input_tokens` to report.
    pub cache_creation_tokens: u64,
    #[serde(skip)]
    /// Frame splitting.
    pub split: Split,
    #[serde(skip)]
    /// Connection reset.
    pub reset: Reset,
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

fn flag(h: &HeaderMap, name: &str) -> Option<bool> {
    header(h, name).map(|v| matches!(v, "1" | "true" | "yes"))
}

fn num<T: std::str::FromStr>(h: &HeaderMap, name: &str) -> Option<T> {
    header(h, name).and_then(|v| v.parse().ok())
}

impl Controls {
    /// Defaults overridden by the request's headers. `x-mock-target: ID[,ID]` limits the
    /// headers to the named upstreams, so one request can drive several backends differently.
    pub fn from_headers(defaults: &Controls, h: &HeaderMap, upstream_id: &str) -> Controls {
        let mut c = defaults.clone();
        if let Some(targets) = header(h, "x-mock-target") {
            if !targets.split(',').any(|t| t.trim() == upstream_id) {
                return c;
            }
        }
        if let Some(v) = num(h, "x-mock-status") {
            c.status = Some(v);
        }
        if let Some(v) = header(h, "x-mock-retry-after") {
            c.retry_after = Some(v.to_string());
        }
        if let Some(v) = num(h, "x-mock-latency-ms") {
            c.latency_ms = v;
        }
        if let Some(v) = num(h, "x-mock-completion-tokens") {
            c.completion_tokens = Some(v);
        }
        if let Some(v) = num(h, "x-mock-chunks") {
            c.chunks = Some(v);
        }
        if let Some(v) = num(h, "x-mock-chunk-gap-ms") {
            c.chunk_gap_ms = v;
        }
        if let Some(v) = header(h, "x-mock-content") {
            c.content = Some(v.to_string());
        }
        if let Some(v) = flag(h, "x-mock-echo") {
            c.echo = v;
        }
        if let Some(v) = flag(h, "x-mock-echo-credentials") {
            c.echo_credentials = v;
        }
        if let Some(v) = flag(h, "x-mock-omit-usage") {
            c.omit_usage = v;
        }
        if let Some(v) = flag(h, "x-mock-malformed-sse") {
            c.malformed_sse = v;
        }
        if let Some(v) = num(h, "x-mock-response-bytes") {
            c.response_bytes = Some(v);
        }
        if let Some(v) = num(h, "x-mock-endless-line") {
            c.endless_line = Some(v);
        }
        if let Some(v) = header(h, "x-mock-tool-use") {
            c.tool_use = Some(v.to_string());
        }
        if let Some(v) = num(h, "x-mock-cache-read-tokens") {
            c.cache_read_tokens = v;
        }
        if let Some(v) = num(h, "x-mock-cache-creation-tokens") {
            c.cache_creation_tokens = v;
        }
        if let Some(v) = header(h, "x-mock-split") {
            c.split = parse_split(v);
        }
        if let Some(v) = header(h, "x-mock-reset") {
            c.reset = parse_reset(v);
        }
        c
    }
}

/// `N`, `random:SEED` or `random:SEED:MAX`.
fn parse_split(v: &str) -> Split {
    let mut parts = v.split(':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("random"), seed, max) => Split::Random {
            seed: seed.and_then(|s| s.parse().ok()).unwrap_or(1),
            max: max.and_then(|s| s.parse().ok()).unwrap_or(16).max(1),
        },
        (Some(n), None, None) => n
            .parse()
            .map(|n: usize| Split::Fixed(n.max(1)))
            .unwrap_or_default(),
        _ => Split::Events,
    }
}

/// `before-headers` or `after-bytes:N`.
fn parse_reset(v: &str) -> Reset {
    if v == "before-headers" {
        return Reset::BeforeHeaders;
    }
    v.strip_prefix("after-bytes:")
        .and_then(|n| n.parse().ok())
        .map_or(Reset::None, Reset::AfterBytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_split_and_reset() {
        assert_eq!(parse_split("7"), Split::Fixed(7));
        assert_eq!(parse_split("random:3:5"), Split::Random { seed: 3, max: 5 });
        assert_eq!(parse_reset("after-bytes:10"), Reset::AfterBytes(10));
        assert_eq!(parse_reset("before-headers"), Reset::BeforeHeaders);
    }

    #[test]
    fn target_header_scopes_controls() {
        let mut h = HeaderMap::new();
        h.insert("x-mock-status", "503".parse().unwrap());
        h.insert("x-mock-target", "a, b".parse().unwrap());
        assert_eq!(
            Controls::from_headers(&Controls::default(), &h, "b").status,
            Some(503)
        );
        assert_eq!(
            Controls::from_headers(&Controls::default(), &h, "c").status,
            None
        );
    }
}
