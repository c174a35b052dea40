//! Anthropic Messages replies (`/v1/messages`, `/v1/messages/count_tokens`) in Anthropic's wire
//! format: the `message` object, the SSE event sequence with `event:` names, `tool_use` blocks,
//! cache tokens and Anthropic error bodies. Figures follow the same rule as the OpenAI replies:
//! one whitespace-separated word is one token, so tests can predict every count.
//!
//! Input tokens are the words of `system` and of every text block and `tool_result` text in
//! `messages`. Cache tokens come from controls and are reported *beside* `input_tokens`, as
//! Anthropic does (`input_tokens` excludes them). Output tokens are the words of the reply text
//! plus, with a `tool_use` reply, the words of the tool input's `query`.

use serde_json::{json, Value};

use crate::controls::Controls;
use crate::replies::Reply;

fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

/// Text of a `system` or message `content`: a string, or its text blocks and the text inside
/// `tool_result` blocks.
fn blocks_text(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(blocks) => blocks
            .iter()
            .flat_map(|b| match b.get("type").and_then(Value::as_str) {
                Some("text") => b
                    .get("text")
                    .and_then(Value::as_str)
                    .map(|t| vec![t.to_string()])
                    .unwrap_or_default(),
                Some("tool_result") => blocks_text(b.get("content").unwrap_or(&Value::Null)),
                _ => Vec::new(),
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// All input text of a request, and the text of its last message.
fn input_text(req: &Value) -> (String, String) {
    let mut texts = blocks_text(req.get("system").unwrap_or(&Value::Null));
    let mut last = String::new();
    if let Some(ms) = req.get("messages").and_then(Value::as_array) {
        for m in ms {
            let t = blocks_text(m.get("content").unwrap_or(&Value::Null));
            last = t.join(" ");
            texts.extend(t);
        }
    }
    (texts.join(" "), last)
}

fn reply_text(c: &Controls, last: &str) -> String {
    if let Some(t) = &c.content {
        return t.clone();
    }
    if c.echo {
        return last.to_string();
    }
    let n = c.completion_tokens.unwrap_or(8);
    let mut text = (0..n)
        .map(|i| format!("mock{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    if let Some(target) = c.response_bytes {
        let mut i = 0u64;
        while text.len() + 300 < target {
            text.push_str(&format!(" pad{i}"));
            i += 1;
        }
    }
    text
}

/// The tool a `tool_use` reply calls: the one named by the control if the request offers it,
/// else the first offered tool. `None` when the control is off or the request has no tools.
fn tool_name(req: &Value, c: &Controls) -> Option<String> {
    let wanted = c.tool_use.as_deref()?;
    let tools = req.get("tools").and_then(Value::as_array)?;
    let names: Vec<&str> = tools
        .iter()
        .filter_map(|t| t.get("name").and_then(Value::as_str))
        .collect();
    names
        .iter()
        .find(|n| **n == wanted)
        .or(names.first())
        .map(|n| n.to_string())
}

fn usage(c: &Controls, input: u64, output: u64) -> Value {
    json!({
        "input_tokens": input,
        "cache_creation_input_tokens": c.cache_creation_tokens,
        "cache_read_input_tokens": c.cache_read_tokens,
        "output_tokens": output,
    })
}

/// Builds the reply for an Anthropic endpoint; `None` when `path` is not one.
pub fn messages(path: &str, req: &Value, c: &Controls) -> Option<Reply> {
    let (all, last) = input_text(req);
    let input = words(&all);
    if path == "/v1/messages/count_tokens" {
        return Some(Reply::Json(200, json!({"input_tokens": input})));
    }
    if path != "/v1/messages" {
        return None;
    }
    let model = req
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("claude-mock")
        .to_string();
    let text = reply_text(c, &last);
    let tool = tool_name(req, c).map(|name| (name, json!({"query": last})));
    let output = words(&text) + if tool.is_some() { words(&last) } else { 0 };
    let stop_reason = if tool.is_some() {
        "tool_use"
    } else {
        "end_turn"
    };
    if req.get("stream").and_then(Value::as_bool).unwrap_or(false) {
        return Some(Reply::Sse(sse(
            c,
            &model,
            &text,
            tool.as_ref(),
            stop_reason,
            input,
            output,
        )));
    }
    let mut content = vec![json!({"type": "text", "text": text})];
    if let Some((name, input)) = &tool {
        content
            .push(json!({"type": "tool_use", "id": "toolu_mock01", "name": name, "input": input}));
    }
    let mut body = json!({
        "id": "msg_mock01", "type": "message", "role": "assistant", "model": model,
        "content": content, "stop_reason": stop_reason, "stop_sequence": null,
    });
    if !c.omit_usage {
        body["usage"] = usage(c, input, output);
    }
    Some(Reply::Json(200, body))
}

fn event(name: &str, v: &Value) -> Vec<u8> {
    format!("event: {name}\ndata: {v}\n\n").into_bytes()
}

/// The event sequence Anthropic streams: `message_start` (input and cache tokens, output 1),
/// per block `content_block_start`, deltas, `content_block_stop` (a `ping` after the first
/// start), `message_delta` (stop reason, cumulative output tokens), `message_stop`.
fn sse(
    c: &Controls,
    model: &str,
    text: &str,
    tool: Option<&(String, Value)>,
    stop_reason: &str,
    input: u64,
    output: u64,
) -> Vec<Vec<u8>> {
    let mut start = json!({
        "id": "msg_mock01", "type": "message", "role": "assistant", "model": model,
        "content": [], "stop_reason": null, "stop_sequence": null,
    });
    if !c.omit_usage {
        start["usage"] = usage(c, input, 1);
    }
    let mut events = vec![event(
        "message_start",
        &json!({"type": "message_start", "message": start}),
    )];
    events.push(event(
        "content_block_start",
        &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ));
    events.push(event("ping", &json!({"type": "ping"})));
    let words: Vec<&str> = text.split_whitespace().collect();
    let n_chunks = c.chunks.unwrap_or(words.len() as u64).max(1) as usize;
    let per = words.len().div_ceil(n_chunks).max(1);
    for (i, group) in words.chunks(per).enumerate() {
        let lead = if i == 0 { "" } else { " " };
        events.push(event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": format!("{lead}{}", group.join(" "))}}),
        ));
        if c.malformed_sse && i == 0 {
            events.push(b"event: content_block_delta\ndata: {\"type\": [\n\n".to_vec());
            events.push(b"this line is not sse\n\n".to_vec());
        }
    }
    events.push(event(
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": 0}),
    ));
    if let Some((name, input)) = tool {
        events.push(event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 1,
                    "content_block": {"type": "tool_use", "id": "toolu_mock01", "name": name, "input": {}}}),
        ));
        // The input JSON arrives in pieces that cut through keys and strings, as Anthropic's do.
        let json_text = input.to_string();
        let bytes = json_text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let mut end = (i + 7).min(bytes.len());
            while !json_text.is_char_boundary(end) {
                end += 1;
            }
            events.push(event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": 1,
                        "delta": {"type": "input_json_delta", "partial_json": &json_text[i..end]}}),
            ));
            i = end;
        }
        events.push(event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": 1}),
        ));
    }
    let mut delta = json!({"type": "message_delta",
                           "delta": {"stop_reason": stop_reason, "stop_sequence": null}});
    if !c.omit_usage {
        delta["usage"] = json!({"output_tokens": output});
    }
    events.push(event("message_delta", &delta));
    events.push(event("message_stop", &json!({"type": "message_stop"})));
    events
}

/// Anthropic's error body for a forced status.
pub fn error(status: u16) -> Value {
    let kind = match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        s if s >= 500 => "api_error",
        _ => "invalid_request_error",
    };
    json!({"type": "error", "error": {"type": kind, "message": format!("mock upstream returned {status}")}})
}

/// Token totals a reply reports, normalised for the served counters: prompt tokens are input plus
/// cache tokens (what the client was billed for as input), then completion, cache read and cache
/// creation. `None` when the reply is not an Anthropic message or carries no usage.
pub fn served_usage(reply: &Reply) -> Option<(u64, u64, u64, u64)> {
    let n = |u: &Value, k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let (start, out) = match reply {
        Reply::Json(_, v) if v.get("type").and_then(Value::as_str) == Some("message") => {
            let u = v.get("usage")?;
            (u.clone(), n(u, "output_tokens"))
        }
        Reply::Sse(events) => {
            let datas: Vec<Value> = events
                .iter()
                .filter_map(|e| {
                    let s = std::str::from_utf8(e).ok()?;
                    s.starts_with("event: ").then_some(())?;
                    let d = s.lines().find_map(|l| l.strip_prefix("data: "))?;
                    serde_json::from_str(d).ok()
                })
                .collect();
            let start = datas
                .iter()
                .find_map(|d| d.pointer("/message/usage"))?
                .clone();
            let out = datas
                .iter()
                .rev()
                .find_map(|d| d.pointer("/usage/output_tokens").and_then(Value::as_u64))?;
            (start, out)
        }
        _ => return None,
    };
    let read = n(&start, "cache_read_input_tokens");
    let write = n(&start, "cache_creation_input_tokens");
    Some((n(&start, "input_tokens") + read + write, out, read, write))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(stream: bool) -> Value {
        json!({"model": "claude-x", "max_tokens": 64, "stream": stream,
               "system": [{"type": "text", "text": "be brief"}],
               "tools": [{"name": "lookup", "input_schema": {"type": "object"}}],
               "messages": [{"role": "user", "content": "one two three"},
                            {"role": "user", "content": [
                                {"type": "tool_result", "tool_use_id": "t", "content": "four"},
                                {"type": "text", "text": "five six"}]}]})
    }

    fn controls() -> Controls {
        Controls {
            cache_read_tokens: 5,
            cache_creation_tokens: 7,
            ..Controls::default()
        }
    }

    #[test]
    fn message_usage_counts_words_and_cache() {
        let Some(Reply::Json(200, v)) = messages("/v1/messages", &req(false), &controls()) else {
            panic!("expected json");
        };
        assert_eq!(v["usage"]["input_tokens"], 8);
        assert_eq!(v["usage"]["output_tokens"], 8);
        assert_eq!(v["usage"]["cache_read_input_tokens"], 5);
        assert_eq!(v["stop_reason"], "end_turn");
        let r = Reply::Json(200, v);
        assert_eq!(served_usage(&r), Some((20, 8, 5, 7)));
    }

    #[test]
    fn count_tokens_reports_input_only() {
        let Some(Reply::Json(200, v)) =
            messages("/v1/messages/count_tokens", &req(false), &controls())
        else {
            panic!("expected json");
        };
        assert_eq!(v, json!({"input_tokens": 8}));
    }

    #[test]
    fn stream_has_anthropic_event_order_and_tool_use() {
        let c = Controls {
            tool_use: Some("lookup".into()),
            ..controls()
        };
        let Some(Reply::Sse(events)) = messages("/v1/messages", &req(true), &c) else {
            panic!("expected sse");
        };
        let names: Vec<String> = events
            .iter()
            .map(|e| {
                let s = String::from_utf8(e.clone()).unwrap();
                s.lines()
                    .next()
                    .unwrap()
                    .trim_start_matches("event: ")
                    .to_string()
            })
            .collect();
        assert_eq!(names[..3], ["message_start", "content_block_start", "ping"]);
        assert_eq!(names[names.len() - 2..], ["message_delta", "message_stop"]);
        let all = String::from_utf8(events.concat()).unwrap();
        assert!(all.contains("input_json_delta"), "{all}");
        assert!(all.contains("\"stop_reason\":\"tool_use\""), "{all}");
        // Output: 8 words of text plus the 3 words of the tool input's query.
        assert_eq!(served_usage(&Reply::Sse(events)), Some((20, 11, 5, 7)));
    }
}
