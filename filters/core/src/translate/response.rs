//! Whole (non-streamed) response bodies: Anthropic message <-> OpenAI chat completion.

use serde_json::{json, Value};

use super::{Exchange, TranslateError};

/// Anthropic `stop_reason` -> OpenAI `finish_reason`.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        // end_turn, stop_sequence, pause_turn
        _ => "stop",
    }
}

/// OpenAI `finish_reason` -> Anthropic `stop_reason`; `matched` is the stop string a vLLM
/// backend reports (`choices[].stop_reason`), which tells `stop_sequence` from `end_turn`.
pub fn stop_reason(finish: &str, matched: Option<&str>) -> &'static str {
    match finish {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ if matched.is_some() => "stop_sequence",
        _ => "end_turn",
    }
}

/// Anthropic usage as OpenAI usage: prompt tokens are all input tokens, cached or not (OpenAI
/// counts cache hits inside `prompt_tokens` and reports them in `cached_tokens`).
pub fn openai_usage(u: &Value) -> Value {
    let n = |k: &str| u[k].as_u64().unwrap_or(0);
    let cache_read = n("cache_read_input_tokens");
    let prompt = n("input_tokens") + n("cache_creation_input_tokens") + cache_read;
    let completion = n("output_tokens");
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cache_read},
    })
}

/// OpenAI usage as Anthropic usage: cached prompt tokens move out of `input_tokens` into
/// `cache_read_input_tokens`, as Anthropic reports them.
pub fn anthropic_usage(u: &Value) -> Value {
    let prompt = u["prompt_tokens"].as_u64().unwrap_or(0);
    let cached = u["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap_or(0)
        .min(prompt);
    json!({
        "input_tokens": prompt - cached,
        "output_tokens": u["completion_tokens"].as_u64().unwrap_or(0),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
    })
}

fn body(b: &[u8]) -> Result<Value, TranslateError> {
    match serde_json::from_slice(b) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(TranslateError::NotJson),
    }
}

/// `msg_...` -> `chatcmpl-...` and back: the id stays recognisable in both dialects' logs.
fn openai_id(id: &str) -> String {
    format!("chatcmpl-{}", id.strip_prefix("msg_").unwrap_or(id))
}

fn anthropic_id(id: &str) -> String {
    format!("msg_{}", id.strip_prefix("chatcmpl-").unwrap_or(id))
}

/// An Anthropic message as an OpenAI chat completion.
pub fn anthropic_to_openai(b: &[u8], ex: &Exchange) -> Result<Vec<u8>, TranslateError> {
    let m = body(b)?;
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for block in m["content"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        match block["type"].as_str() {
            Some("text") => text.push_str(block["text"].as_str().unwrap_or_default()),
            Some("thinking") => reasoning.push_str(block["thinking"].as_str().unwrap_or_default()),
            Some("tool_use") => calls.push(json!({
                "id": block["id"], "type": "function",
                "function": {"name": block["name"], "arguments": block["input"].to_string()},
            })),
            _ => {}
        }
    }
    let mut message = json!({"role": "assistant",
        "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) },
        "refusal": null});
    if !reasoning.is_empty() {
        message["reasoning_content"] = reasoning.into();
    }
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let model = m["model"].as_str().unwrap_or(&ex.model);
    let out = json!({
        "id": openai_id(m["id"].as_str().unwrap_or_default()),
        "object": "chat.completion",
        "created": ex.created,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": null,
            "finish_reason": finish_reason(m["stop_reason"].as_str().unwrap_or("end_turn"))}],
        "usage": openai_usage(&m["usage"]),
    });
    Ok(out.to_string().into_bytes())
}

/// Tool-call arguments as a `tool_use.input` object. A model that wrote arguments that are
/// not a JSON object (small self-hosted models do) keeps them, as a string, under `arguments`,
/// rather than losing the call.
pub(crate) fn tool_input(args: &str) -> Value {
    if args.trim().is_empty() {
        return json!({});
    }
    match serde_json::from_str::<Value>(args) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({"arguments": args}),
    }
}

/// An OpenAI chat completion as an Anthropic message.
pub fn openai_to_anthropic(b: &[u8], ex: &Exchange) -> Result<Vec<u8>, TranslateError> {
    let c = body(b)?;
    let choice = &c["choices"][0];
    let msg = &choice["message"];
    let mut content = Vec::new();
    if ex.thinking {
        if let Some(r) = msg["reasoning_content"]
            .as_str()
            .or_else(|| msg["reasoning"].as_str())
            .filter(|r| !r.is_empty())
        {
            content.push(json!({"type": "thinking", "thinking": r, "signature": ""}));
        }
    }
    if let Some(t) = msg["content"].as_str().filter(|t| !t.is_empty()) {
        content.push(json!({"type": "text", "text": t}));
    }
    for call in msg["tool_calls"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let args = call["function"]["arguments"].as_str().unwrap_or_default();
        content.push(json!({"type": "tool_use", "id": call["id"],
            "name": call["function"]["name"], "input": tool_input(args)}));
    }
    let matched = choice["stop_reason"].as_str();
    let finish = choice["finish_reason"].as_str().unwrap_or("stop");
    let reason = stop_reason(finish, matched);
    let out = json!({
        "id": anthropic_id(c["id"].as_str().unwrap_or_default()),
        "type": "message",
        "role": "assistant",
        "model": c["model"].as_str().unwrap_or(&ex.model),
        "content": content,
        "stop_reason": reason,
        "stop_sequence": if reason == "stop_sequence" { matched.map(Value::from).unwrap_or(Value::Null) } else { Value::Null },
        "usage": anthropic_usage(&c["usage"]),
    });
    Ok(out.to_string().into_bytes())
}
