//! Usage as Anthropic's Messages API reports it.
//!
//! Anthropic's `input_tokens` excludes the prompt-cache tokens, which come beside it
//! (`cache_read_input_tokens`, `cache_creation_input_tokens`); [`Usage`] counts input with the
//! cache included, so the three are summed and the two cache figures kept apart for pricing.
//! A stream reports in two places: `message_start` carries the input and cache tokens (and an
//! early output count), `message_delta` the cumulative output tokens (newer API versions repeat
//! the input figures there too); each event's figures override what came before.

use serde::Deserialize;

use super::usage::{Reading, Usage};

#[derive(Debug, Default, Deserialize)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

impl WireUsage {
    /// `before` with every figure this object reports replaced.
    fn over(&self, before: Usage) -> Usage {
        let base = before
            .input
            .saturating_sub(before.cached_input)
            .saturating_sub(before.cache_write);
        let input = self.input_tokens.unwrap_or(base);
        let read = self.cache_read_input_tokens.unwrap_or(before.cached_input);
        let write = self
            .cache_creation_input_tokens
            .unwrap_or(before.cache_write);
        Usage {
            input: input.saturating_add(read).saturating_add(write),
            cached_input: read,
            output: self.output_tokens.unwrap_or(before.output),
            cache_write: write,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct Block {
    #[serde(default)]
    text: Option<String>,
    /// `input_json_delta`.
    #[serde(default)]
    partial_json: Option<String>,
    /// `thinking_delta` / `thinking` blocks.
    #[serde(default)]
    thinking: Option<String>,
    /// A `tool_use` block's input.
    #[serde(default)]
    input: Option<serde_json::Value>,
}

impl Block {
    fn push_text(&self, out: &mut String) {
        for t in [&self.text, &self.partial_json, &self.thinking]
            .into_iter()
            .flatten()
        {
            out.push_str(t);
        }
        if let Some(v) = self.input.as_ref().filter(|v| !v.is_null()) {
            out.push_str(&v.to_string());
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct Message {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

/// A response body (`message`) or one stream event.
#[derive(Debug, Default, Deserialize)]
struct Wire {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    content: Option<Vec<Block>>,
    /// `message_start`'s message.
    #[serde(default)]
    message: Option<Message>,
    /// `content_block_delta`'s delta (a `message_delta`'s holds the stop reason, ignored).
    #[serde(default)]
    delta: Option<Block>,
}

/// Reads a non-streamed Messages response body; `None` if it is not a `message` object.
pub fn read_message(json: &[u8]) -> Option<Reading> {
    let w: Wire = serde_json::from_slice(json).ok()?;
    if w.kind.as_deref() != Some("message") {
        return None;
    }
    let mut text = String::new();
    for b in w.content.iter().flatten() {
        b.push_text(&mut text);
    }
    Some(Reading {
        model: w.model,
        usage: w.usage.map(|u| u.over(Usage::default())),
        text,
        no_choices: false,
    })
}

/// Reads one stream event's `data`, given the usage the stream reported so far: the returned
/// usage is the stream's total after this event. `None` if it is not a JSON object.
pub fn read_event(json: &[u8], so_far: Option<Usage>) -> Option<Reading> {
    let w: Wire = serde_json::from_slice(json).ok()?;
    let mut r = Reading::default();
    match w.kind.as_deref() {
        Some("message_start") => {
            let m = w.message.unwrap_or_default();
            r.model = m.model;
            r.usage = m.usage.map(|u| u.over(so_far.unwrap_or_default()));
        }
        Some("message_delta") => {
            r.usage = w.usage.map(|u| u.over(so_far.unwrap_or_default()));
        }
        Some("content_block_delta") | Some("content_block_start") => {
            if let Some(d) = &w.delta {
                d.push_text(&mut r.text);
            }
        }
        _ => {}
    }
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_sums_input_and_cache_tokens() {
        let r = read_message(
            br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-x",
            "content":[{"type":"text","text":"hi"},{"type":"tool_use","id":"t","name":"f","input":{"q":1}}],
            "stop_reason":"tool_use","usage":{"input_tokens":10,"cache_creation_input_tokens":20,
            "cache_read_input_tokens":30,"output_tokens":4}}"#,
        )
        .unwrap();
        assert_eq!(r.model.as_deref(), Some("claude-x"));
        assert_eq!(
            r.usage,
            Some(Usage {
                input: 60,
                cached_input: 30,
                output: 4,
                cache_write: 20
            })
        );
        assert_eq!(r.text, r#"hi{"q":1}"#);
        assert!(read_message(br#"{"type":"error","error":{"type":"x"}}"#).is_none());
        assert!(read_message(b"[").is_none());
    }

    #[test]
    fn a_stream_takes_input_from_start_and_cumulative_output_from_delta() {
        let start = br#"{"type":"message_start","message":{"id":"m","model":"claude-x","content":[],
            "usage":{"input_tokens":5,"cache_creation_input_tokens":2,"cache_read_input_tokens":3,"output_tokens":1}}}"#;
        let s = read_event(start, None).unwrap();
        assert_eq!(s.model.as_deref(), Some("claude-x"));
        let u = s.usage.unwrap();
        assert_eq!(
            (u.input, u.cached_input, u.cache_write, u.output),
            (10, 3, 2, 1)
        );
        let d = read_event(
            br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"he"}}"#,
            Some(u),
        )
        .unwrap();
        assert_eq!((d.text.as_str(), d.usage), ("he", None));
        let j = read_event(
            br#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"a"}}"#,
            Some(u),
        )
        .unwrap();
        assert_eq!(j.text, "{\"a");
        let end = read_event(
            br#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}"#,
            Some(u),
        )
        .unwrap()
        .usage
        .unwrap();
        assert_eq!(
            (end.input, end.cached_input, end.cache_write, end.output),
            (10, 3, 2, 15)
        );
        // Newer API versions repeat the input figures in `message_delta`: they override.
        let again = read_event(
            br#"{"type":"message_delta","delta":{},"usage":{"input_tokens":6,"cache_read_input_tokens":3,"output_tokens":16}}"#,
            Some(end),
        )
        .unwrap()
        .usage
        .unwrap();
        assert_eq!((again.input, again.cache_write, again.output), (11, 2, 16));
        assert!(read_event(br#"{"type":"ping"}"#, Some(u))
            .unwrap()
            .usage
            .is_none());
        assert!(read_event(b"{\"type\": [", None).is_none());
    }
}
