//! Usage figures as providers report them.

use serde::Deserialize;

/// Token counts of one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt (input) tokens, cached ones included.
    pub input: u64,
    /// Of `input`, tokens served from the provider's prompt cache.
    pub cached_input: u64,
    /// Completion (output) tokens, reasoning included.
    pub output: u64,
    /// Of `input`, tokens written to the provider's prompt cache (Anthropic's
    /// `cache_creation_input_tokens`); disjoint from `cached_input`.
    pub cache_write: u64,
}

/// The `usage` object of OpenAI (chat, completions, embeddings) and Responses-style APIs.
#[derive(Debug, Default, Deserialize)]
pub struct WireUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Option<Details>,
    #[serde(default)]
    input_tokens_details: Option<Details>,
    /// Rerank servers report only a total: all of it is input.
    #[serde(default)]
    total_tokens: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
struct Details {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

impl From<WireUsage> for Usage {
    fn from(w: WireUsage) -> Self {
        let cached = w
            .prompt_tokens_details
            .or(w.input_tokens_details)
            .and_then(|d| d.cached_tokens)
            .unwrap_or(0);
        let output = w.completion_tokens.or(w.output_tokens);
        let input = w
            .prompt_tokens
            .or(w.input_tokens)
            .or(w.total_tokens.filter(|_| output.is_none()))
            .unwrap_or(0);
        Usage {
            input,
            cached_input: cached.min(input),
            output: output.unwrap_or(0),
            cache_write: 0,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct Message {
    #[serde(default)]
    content: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
struct Choice {
    #[serde(default)]
    message: Option<Message>,
    #[serde(default)]
    delta: Option<Message>,
    #[serde(default)]
    text: Option<String>,
}

/// The parts of a response body or stream chunk accounting reads.
#[derive(Debug, Default, Deserialize)]
struct Wire {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    choices: Option<Vec<Choice>>,
    /// Responses stream events: the response (with `usage` in `response.completed`).
    #[serde(default)]
    response: Option<WireLite>,
    /// Responses `response.output_text.delta`: the generated text.
    #[serde(default)]
    delta: Option<serde_json::Value>,
}

/// What one response body or one stream chunk says.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reading {
    /// The `model` field (the model that actually served).
    pub model: Option<String>,
    /// `usage`, when present and not null.
    pub usage: Option<Usage>,
    /// Generated text (message content, delta content or completion text), for estimates.
    pub text: String,
    /// `choices` is present and empty: with `usage`, the stream's usage-only chunk.
    pub no_choices: bool,
}

impl Reading {
    /// True for the usage-only chunk OpenAI appends when `include_usage` is set.
    pub fn is_usage_only(&self) -> bool {
        self.no_choices && self.usage.is_some()
    }
}

fn push_content(out: &mut String, v: &serde_json::Value) {
    match v {
        serde_json::Value::String(s) => out.push_str(s),
        serde_json::Value::Array(parts) => {
            for p in parts {
                if let Some(t) = p.get("text").and_then(serde_json::Value::as_str) {
                    out.push_str(t);
                }
            }
        }
        _ => {}
    }
}

#[derive(Debug, Default, Deserialize)]
struct WireLite {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

/// `model` and `usage` of a response body, skipping the (possibly large) choices without
/// allocating them; `None` when the body is not a JSON object or has no usage.
pub fn read_usage(json: &[u8]) -> Option<(Option<String>, Usage)> {
    let w: WireLite = serde_json::from_slice(json).ok()?;
    Some((w.model, w.usage?.into()))
}

/// Reads a JSON response body or an SSE `data:` payload; `None` if it is not a JSON object of
/// the expected shape (an error body, a malformed chunk).
pub fn read(json: &[u8]) -> Option<Reading> {
    let w: Wire = serde_json::from_slice(json).ok()?;
    let mut text = String::new();
    let mut no_choices = false;
    if let Some(choices) = &w.choices {
        no_choices = choices.is_empty();
        for c in choices {
            if let Some(t) = &c.text {
                text.push_str(t);
            }
            for m in [&c.message, &c.delta].into_iter().flatten() {
                if let Some(v) = &m.content {
                    push_content(&mut text, v);
                }
            }
        }
    }
    if let Some(serde_json::Value::String(d)) = &w.delta {
        text.push_str(d);
    }
    let (nested_model, nested_usage) = w.response.map_or((None, None), |r| (r.model, r.usage));
    Some(Reading {
        model: w.model.or(nested_model),
        usage: w.usage.or(nested_usage).map(Usage::from),
        text,
        no_choices,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_chat_completion_and_embeddings() {
        let r = read(br#"{"model":"gpt-4o-2024","choices":[{"message":{"role":"assistant","content":"hi there"}}],
            "usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7,"prompt_tokens_details":{"cached_tokens":3}}}"#).unwrap();
        assert_eq!(r.model.as_deref(), Some("gpt-4o-2024"));
        assert_eq!(
            r.usage,
            Some(Usage {
                input: 5,
                cached_input: 3,
                output: 2,
                cache_write: 0
            })
        );
        assert_eq!(r.text, "hi there");
        let (model, u) = read_usage(br#"{"model":"m","choices":[{"text":"x"}],"usage":{"input_tokens":2,"output_tokens":3}}"#).unwrap();
        assert_eq!((model.as_deref(), u.input, u.output), (Some("m"), 2, 3));
        assert!(read_usage(br#"{"model":"m","usage":null}"#).is_none());
        let e =
            read(br#"{"object":"list","data":[],"usage":{"prompt_tokens":4,"total_tokens":4}}"#)
                .unwrap();
        assert_eq!(
            e.usage,
            Some(Usage {
                input: 4,
                cached_input: 0,
                output: 0,
                cache_write: 0
            })
        );
    }

    #[test]
    fn reads_responses_events_and_rerank_totals() {
        let created =
            read(br#"{"type":"response.created","response":{"model":"gpt-4o","usage":null}}"#)
                .unwrap();
        assert_eq!(
            (created.model.as_deref(), created.usage),
            (Some("gpt-4o"), None)
        );
        let delta = read(br#"{"type":"response.output_text.delta","delta":"hi "}"#).unwrap();
        assert_eq!(delta.text, "hi ");
        let done = read(br#"{"type":"response.completed","response":{"model":"m","usage":{"input_tokens":9,"input_tokens_details":{"cached_tokens":4},"output_tokens":2}}}"#).unwrap();
        let u = done.usage.unwrap_or_default();
        assert_eq!((u.input, u.cached_input, u.output), (9, 4, 2));
        assert!(!done.is_usage_only());
        let (_, r) = read_usage(br#"{"results":[],"usage":{"total_tokens":12}}"#).unwrap();
        assert_eq!((r.input, r.output), (12, 0));
        let (_, e) = read_usage(br#"{"usage":{"prompt_tokens":3,"total_tokens":3}}"#).unwrap();
        assert_eq!((e.input, e.output), (3, 0));
    }

    #[test]
    fn recognises_usage_only_chunk() {
        let c =
            read(br#"{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#).unwrap();
        assert!(c.is_usage_only());
        let d = read(br#"{"choices":[{"delta":{"content":"x"}}],"usage":null}"#).unwrap();
        assert!(!d.is_usage_only());
        assert_eq!(d.text, "x");
        assert!(read(b"[1]").is_none());
        assert!(read(b"{\"choices\": [").is_none());
    }
}
