//! Deterministic OpenAI replies: every figure is a function of the request, so tests can predict
//! token counts. One word of text is one token: prompt tokens are the whitespace-separated words
//! of the request's text, completion tokens the words of the completion.

use serde_json::{json, Value};

use crate::controls::Controls;

/// A reply before transport: a single body, or SSE events for a stream.
pub enum Reply {
    /// A complete JSON body.
    Json(u16, Value),
    /// SSE events, each already framed (`data: ...\n\n`).
    Sse(Vec<Vec<u8>>),
}

/// Fixed `created` so replies are byte-for-byte reproducible.
const CREATED: u64 = 1_700_000_000;

fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

/// Text of a message `content`: a string, or the `text` of its content parts.
fn content_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// All prompt text of a request, and the text of its last message or prompt.
fn prompt_text(path: &str, req: &Value) -> (String, String) {
    let texts: Vec<String> = if path.ends_with("/chat/completions") {
        req.get("messages")
            .and_then(Value::as_array)
            .map(|ms| {
                ms.iter()
                    .map(|m| content_text(m.get("content").unwrap_or(&Value::Null)))
                    .collect()
            })
            .unwrap_or_default()
    } else {
        let field = if path.ends_with("/embeddings") {
            "input"
        } else {
            "prompt"
        };
        match req.get(field) {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect(),
            _ => Vec::new(),
        }
    };
    let last = texts.last().cloned().unwrap_or_default();
    (texts.join(" "), last)
}

fn completion_text(c: &Controls, last: &str, overhead: usize) -> String {
    let mut text = if let Some(t) = &c.content {
        t.clone()
    } else if c.echo {
        last.to_string()
    } else {
        let n = c.completion_tokens.unwrap_or(8);
        (0..n)
            .map(|i| format!("mock{i}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    if let Some(target) = c.response_bytes {
        let mut i = 0u64;
        while text.len() + overhead < target {
            text.push_str(&format!(" pad{i}"));
            i += 1;
        }
    }
    text
}

fn usage(prompt: u64, completion: u64) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

/// Builds the reply for an OpenAI endpoint; `None` when `path` is not one.
pub fn openai(path: &str, req: &Value, c: &Controls) -> Option<Reply> {
    let model = req
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock-model")
        .to_string();
    let (all, last) = prompt_text(path, req);
    let prompt_tokens = words(&all);
    match path {
        "/v1/embeddings" => {
            let n = match req.get("input") {
                Some(Value::Array(a)) => a.len().max(1),
                _ => 1,
            };
            let data: Vec<Value> = (0..n)
                .map(|i| json!({"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3, i as f64]}))
                .collect();
            let mut body = json!({"object": "list", "data": data, "model": model});
            if !c.omit_usage {
                body["usage"] =
                    json!({"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens});
            }
            Some(Reply::Json(200, body))
        }
        "/v1/completions" => {
            let text = completion_text(c, &last, 200);
            let mut body = json!({
                "id": "cmpl-mock", "object": "text_completion", "created": CREATED, "model": model,
                "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": null}],
            });
            if !c.omit_usage {
                body["usage"] = usage(prompt_tokens, words(&text));
            }
            Some(Reply::Json(200, body))
        }
        "/v1/chat/completions" => {
            let stream = req.get("stream").and_then(Value::as_bool).unwrap_or(false);
            let text = completion_text(c, &last, 250);
            let completion_tokens = words(&text);
            if stream {
                return Some(Reply::Sse(sse(
                    req,
                    c,
                    &model,
                    &text,
                    prompt_tokens,
                    completion_tokens,
                )));
            }
            let mut body = json!({
                "id": "chatcmpl-mock", "object": "chat.completion", "created": CREATED, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            });
            if !c.omit_usage {
                body["usage"] = usage(prompt_tokens, completion_tokens);
            }
            Some(Reply::Json(200, body))
        }
        _ => None,
    }
}

fn event(v: &Value) -> Vec<u8> {
    format!("data: {v}\n\n").into_bytes()
}

/// Chat completion chunks as OpenAI sends them: role, content deltas, finish, optional usage
/// chunk (`choices: []`), `[DONE]`. With `include_usage`, every chunk carries `"usage": null`.
fn sse(
    req: &Value,
    c: &Controls,
    model: &str,
    text: &str,
    prompt: u64,
    completion: u64,
) -> Vec<Vec<u8>> {
    let include_usage = req
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false)
        && !c.omit_usage;
    let chunk = |delta: Value, finish: Value| {
        let mut v = json!({
            "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": CREATED, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        });
        if include_usage {
            v["usage"] = Value::Null;
        }
        event(&v)
    };
    let words: Vec<&str> = text.split_whitespace().collect();
    let n_chunks = c.chunks.unwrap_or(words.len() as u64).max(1) as usize;
    let per = words.len().div_ceil(n_chunks).max(1);
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    for (i, group) in words.chunks(per).enumerate() {
        let lead = if i == 0 { "" } else { " " };
        events.push(chunk(
            json!({"content": format!("{lead}{}", group.join(" "))}),
            Value::Null,
        ));
        if c.malformed_sse && i == 0 {
            events.push(b"data: {\"choices\": [\n\n".to_vec());
            events.push(b"this line is not sse\n\n".to_vec());
        }
    }
    events.push(chunk(json!({}), json!("stop")));
    if include_usage {
        events.push(event(&json!({
            "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": CREATED, "model": model,
            "choices": [], "usage": usage(prompt, completion),
        })));
    }
    events.push(b"data: [DONE]\n\n".to_vec());
    events
}

/// OpenAI-style error body for a forced status.
pub fn error(status: u16) -> Value {
    let (kind, code) = match status {
        401 => ("authentication_error", "invalid_api_key"),
        403 => ("permission_error", "forbidden"),
        404 => ("not_found_error", "model_not_found"),
        429 => ("rate_limit_error", "rate_limit_exceeded"),
        s if s >= 500 => ("server_error", "server_error"),
        _ => ("invalid_request_error", "invalid_request"),
    };
    json!({"error": {"message": format!("mock upstream returned {status}"), "type": kind, "param": null, "code": code}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(stream: bool, include_usage: bool) -> Value {
        json!({"model": "m", "stream": stream, "stream_options": {"include_usage": include_usage},
               "messages": [{"role": "user", "content": "one two three"},
                            {"role": "user", "content": [{"type": "text", "text": "four"}]}]})
    }

    #[test]
    fn non_streaming_usage_counts_words() {
        let Some(Reply::Json(200, v)) = openai(
            "/v1/chat/completions",
            &chat(false, false),
            &Controls::default(),
        ) else {
            panic!("expected json");
        };
        assert_eq!(v["usage"], usage(4, 8));
    }

    #[test]
    fn stream_carries_usage_only_when_asked() {
        let Some(Reply::Sse(with)) = openai(
            "/v1/chat/completions",
            &chat(true, true),
            &Controls::default(),
        ) else {
            panic!("expected sse");
        };
        let Some(Reply::Sse(without)) = openai(
            "/v1/chat/completions",
            &chat(true, false),
            &Controls::default(),
        ) else {
            panic!("expected sse");
        };
        let last_data = String::from_utf8(with[with.len() - 2].clone()).unwrap();
        assert!(last_data.contains("\"total_tokens\":12"), "{last_data}");
        assert_eq!(with.len(), without.len() + 1);
        assert!(without
            .iter()
            .all(|e| !String::from_utf8_lossy(e).contains("usage")));
    }
}
