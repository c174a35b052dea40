//! Request bodies: OpenAI chat completions -> Anthropic Messages and back.

use serde_json::{json, Map, Value};

use super::{Exchange, TranslateError};

type Result<T> = std::result::Result<T, TranslateError>;

fn object(body: &[u8]) -> Result<Map<String, Value>> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(TranslateError::NotJson),
    }
}

fn string_or_none(v: &Value, field: &str) -> Result<Option<String>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(TranslateError::invalid(field, "must be a string")),
    }
}

/// What the response translation needs, read from an OpenAI request.
pub fn openai_exchange(body: &[u8], created: u64) -> Exchange {
    let v: Value = serde_json::from_slice(body).unwrap_or_default();
    Exchange {
        model: v["model"].as_str().unwrap_or_default().to_string(),
        stream: v["stream"].as_bool().unwrap_or(false),
        include_usage: v["stream_options"]["include_usage"]
            .as_bool()
            .unwrap_or(false),
        thinking: false,
        created,
    }
}

/// What the response translation needs, read from an Anthropic request.
pub fn anthropic_exchange(body: &[u8], created: u64) -> Exchange {
    let v: Value = serde_json::from_slice(body).unwrap_or_default();
    Exchange {
        model: v["model"].as_str().unwrap_or_default().to_string(),
        stream: v["stream"].as_bool().unwrap_or(false),
        include_usage: false,
        thinking: matches!(v["thinking"]["type"].as_str(), Some("enabled" | "adaptive")),
        created,
    }
}

// ---------------------------------------------------------------- OpenAI -> Anthropic

/// `data:image/png;base64,AAAA` -> (`image/png`, `AAAA`).
fn data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (media, data) = rest.split_once(";base64,")?;
    Some((media, data))
}

/// One OpenAI content part as an Anthropic content block.
fn openai_part(part: &Value, field: &str) -> Result<Value> {
    match part["type"].as_str() {
        Some("text") => {
            let text = part["text"].as_str().ok_or_else(|| {
                TranslateError::invalid(format!("{field}.text"), "must be a string")
            })?;
            Ok(json!({"type": "text", "text": text}))
        }
        Some("image_url") => {
            let url = part["image_url"]["url"]
                .as_str()
                .or_else(|| part["image_url"].as_str())
                .ok_or_else(|| {
                    TranslateError::invalid(format!("{field}.image_url.url"), "must be a string")
                })?;
            Ok(match data_url(url) {
                Some((media, data)) => json!({"type": "image", "source":
                    {"type": "base64", "media_type": media, "data": data}}),
                None => json!({"type": "image", "source": {"type": "url", "url": url}}),
            })
        }
        Some("input_audio") | Some("file") => Err(TranslateError::unsupported(
            field,
            "Anthropic Messages take no audio or file parts",
        )),
        _ => Err(TranslateError::invalid(
            format!("{field}.type"),
            "must be `text` or `image_url`",
        )),
    }
}

/// OpenAI `content` (string, parts or null) as Anthropic blocks.
fn openai_content(content: &Value, field: &str) -> Result<Vec<Value>> {
    match content {
        Value::Null => Ok(Vec::new()),
        Value::String(s) if s.is_empty() => Ok(Vec::new()),
        Value::String(s) => Ok(vec![json!({"type": "text", "text": s})]),
        Value::Array(parts) => parts
            .iter()
            .enumerate()
            .map(|(i, p)| openai_part(p, &format!("{field}[{i}]")))
            .collect(),
        _ => Err(TranslateError::invalid(
            field,
            "must be a string or an array",
        )),
    }
}

/// Text of a content that must be text (system, tool results).
fn openai_text(content: &Value, field: &str) -> Result<String> {
    match content {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        Value::Array(parts) => {
            let mut out = Vec::new();
            for (i, p) in parts.iter().enumerate() {
                match p["text"].as_str() {
                    Some(t) => out.push(t),
                    None => {
                        return Err(TranslateError::invalid(
                            format!("{field}[{i}]"),
                            "only text parts are allowed here",
                        ))
                    }
                }
            }
            Ok(out.join("\n"))
        }
        _ => Err(TranslateError::invalid(
            field,
            "must be a string or an array",
        )),
    }
}

/// Appends `blocks` as a `role` message, merged into the previous one when it has the same
/// role: Anthropic wants the results of parallel tool calls in one user message, and a user
/// turn that follows tool results joins them.
fn push(messages: &mut Vec<Value>, role: &str, mut blocks: Vec<Value>) {
    if let Some(last) = messages.last_mut() {
        if last["role"] == role {
            if let Some(arr) = last["content"].as_array_mut() {
                arr.append(&mut blocks);
                return;
            }
        }
    }
    messages.push(json!({"role": role, "content": blocks}));
}

fn openai_tool_call(call: &Value, field: &str) -> Result<Value> {
    let id = call["id"]
        .as_str()
        .ok_or_else(|| TranslateError::invalid(format!("{field}.id"), "must be a string"))?;
    let f = &call["function"];
    let name = f["name"].as_str().ok_or_else(|| {
        TranslateError::invalid(format!("{field}.function.name"), "must be a string")
    })?;
    let args = f["arguments"].as_str().unwrap_or("{}");
    let input: Value = if args.trim().is_empty() {
        json!({})
    } else {
        serde_json::from_str(args).map_err(|_| {
            TranslateError::invalid(
                format!("{field}.function.arguments"),
                "must be a JSON object (Anthropic's tool_use.input is one)",
            )
        })?
    };
    if !input.is_object() {
        return Err(TranslateError::invalid(
            format!("{field}.function.arguments"),
            "must be a JSON object (Anthropic's tool_use.input is one)",
        ));
    }
    Ok(json!({"type": "tool_use", "id": id, "name": name, "input": input}))
}

fn openai_tools(tools: &Value) -> Result<Value> {
    let Some(list) = tools.as_array() else {
        return Err(TranslateError::invalid("tools", "must be an array"));
    };
    let mut out = Vec::new();
    for (i, t) in list.iter().enumerate() {
        if t["type"].as_str().unwrap_or("function") != "function" {
            return Err(TranslateError::unsupported(
                format!("tools[{i}].type"),
                "only function tools have an Anthropic equivalent",
            ));
        }
        let f = &t["function"];
        let name = f["name"].as_str().ok_or_else(|| {
            TranslateError::invalid(format!("tools[{i}].function.name"), "must be a string")
        })?;
        let mut tool = json!({"name": name});
        if let Some(d) = f["description"].as_str() {
            tool["description"] = d.into();
        }
        tool["input_schema"] = match &f["parameters"] {
            Value::Null => json!({"type": "object", "properties": {}}),
            p => p.clone(),
        };
        out.push(tool);
    }
    Ok(Value::Array(out))
}

fn openai_tool_choice(choice: &Value, parallel: Option<bool>) -> Result<Option<Value>> {
    let mut out = match choice {
        Value::Null => None,
        Value::String(s) => match s.as_str() {
            "auto" => Some(json!({"type": "auto"})),
            "none" => Some(json!({"type": "none"})),
            "required" => Some(json!({"type": "any"})),
            _ => {
                return Err(TranslateError::invalid(
                    "tool_choice",
                    "must be auto, none, required or a function",
                ))
            }
        },
        Value::Object(_) => {
            let name = choice["function"]["name"].as_str().ok_or_else(|| {
                TranslateError::invalid("tool_choice.function.name", "must be a string")
            })?;
            Some(json!({"type": "tool", "name": name}))
        }
        _ => {
            return Err(TranslateError::invalid(
                "tool_choice",
                "must be a string or an object",
            ))
        }
    };
    if parallel == Some(false) {
        let c = out.get_or_insert_with(|| json!({"type": "auto"}));
        if c["type"] != "none" {
            c["disable_parallel_tool_use"] = true.into();
        }
    }
    Ok(out)
}

/// An OpenAI chat completions request as an Anthropic Messages request. `default_max_tokens`
/// fills Anthropic's required `max_tokens` when the client set none.
pub fn openai_to_anthropic(body: &[u8], default_max_tokens: u32) -> Result<Vec<u8>> {
    let req = object(body)?;
    let mut out = Map::new();
    let model = req
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| TranslateError::invalid("model", "must be a string"))?;
    out.insert("model".into(), model.into());
    let Some(msgs) = req.get("messages").and_then(Value::as_array) else {
        return Err(TranslateError::invalid("messages", "must be an array"));
    };
    let mut system: Vec<Value> = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        let field = format!("messages[{i}]");
        let role = m["role"].as_str().unwrap_or_default();
        match role {
            "system" | "developer" => {
                let text = openai_text(&m["content"], &format!("{field}.content"))?;
                system.push(json!({"type": "text", "text": text}));
            }
            "user" => {
                let blocks = openai_content(&m["content"], &format!("{field}.content"))?;
                push(&mut messages, "user", blocks);
            }
            "assistant" => {
                let mut blocks = openai_content(&m["content"], &format!("{field}.content"))?;
                if let Some(calls) = m["tool_calls"].as_array() {
                    for (j, c) in calls.iter().enumerate() {
                        blocks.push(openai_tool_call(c, &format!("{field}.tool_calls[{j}]"))?);
                    }
                }
                push(&mut messages, "assistant", blocks);
            }
            "tool" => {
                let id = m["tool_call_id"].as_str().ok_or_else(|| {
                    TranslateError::invalid(format!("{field}.tool_call_id"), "must be a string")
                })?;
                let content = match &m["content"] {
                    Value::Array(_) => {
                        Value::Array(openai_content(&m["content"], &format!("{field}.content"))?)
                    }
                    c => Value::String(openai_text(c, &format!("{field}.content"))?),
                };
                push(
                    &mut messages,
                    "user",
                    vec![json!({"type": "tool_result", "tool_use_id": id, "content": content})],
                );
            }
            "function" => {
                return Err(TranslateError::unsupported(
                    format!("{field}.role"),
                    "the deprecated `function` role has no tool_use id to answer; use `tool`",
                ))
            }
            _ => {
                return Err(TranslateError::invalid(
                    format!("{field}.role"),
                    "must be system, developer, user, assistant or tool",
                ))
            }
        }
    }
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    out.insert("messages".into(), Value::Array(messages));
    let max = req
        .get("max_completion_tokens")
        .filter(|v| !v.is_null())
        .or_else(|| req.get("max_tokens").filter(|v| !v.is_null()));
    let max = match max {
        Some(v) => v
            .as_u64()
            .ok_or_else(|| TranslateError::invalid("max_tokens", "must be a positive integer"))?,
        None => u64::from(default_max_tokens),
    };
    out.insert("max_tokens".into(), max.into());
    match req.get("n").and_then(Value::as_u64) {
        None | Some(1) => {}
        Some(_) => {
            return Err(TranslateError::unsupported(
                "n",
                "Anthropic returns one choice per request",
            ))
        }
    }
    for k in ["temperature", "top_p", "stream"] {
        if let Some(v) = req.get(k).filter(|v| !v.is_null()) {
            out.insert(k.into(), v.clone());
        }
    }
    match req.get("stop") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            out.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(a)) => {
            out.insert("stop_sequences".into(), Value::Array(a.clone()));
        }
        Some(_) => {
            return Err(TranslateError::invalid(
                "stop",
                "must be a string or an array",
            ))
        }
    }
    if let Some(t) = req.get("tools").filter(|v| !v.is_null()) {
        out.insert("tools".into(), openai_tools(t)?);
    }
    let parallel = req.get("parallel_tool_calls").and_then(Value::as_bool);
    let choice = req.get("tool_choice").cloned().unwrap_or(Value::Null);
    if let Some(c) = openai_tool_choice(&choice, parallel)? {
        out.insert("tool_choice".into(), c);
    }
    if let Some(u) = string_or_none(req.get("user").unwrap_or(&Value::Null), "user")? {
        out.insert("metadata".into(), json!({"user_id": u}));
    }
    Ok(Value::Object(out).to_string().into_bytes())
}

// ---------------------------------------------------------------- Anthropic -> OpenAI

/// Text of Anthropic `system` (a string or text blocks).
fn anthropic_text(v: &Value, field: &str) -> Result<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Array(blocks) => {
            let mut out = Vec::new();
            for (i, b) in blocks.iter().enumerate() {
                match (b["type"].as_str(), b["text"].as_str()) {
                    (Some("text"), Some(t)) => out.push(t),
                    _ => {
                        return Err(TranslateError::invalid(
                            format!("{field}[{i}]"),
                            "only text blocks are allowed here",
                        ))
                    }
                }
            }
            Ok(out.join("\n"))
        }
        Value::Null => Ok(String::new()),
        _ => Err(TranslateError::invalid(
            field,
            "must be a string or an array",
        )),
    }
}

fn anthropic_image(b: &Value, field: &str) -> Result<Value> {
    let s = &b["source"];
    let url = match s["type"].as_str() {
        Some("base64") => format!(
            "data:{};base64,{}",
            s["media_type"].as_str().unwrap_or("image/png"),
            s["data"].as_str().unwrap_or_default()
        ),
        Some("url") => s["url"].as_str().unwrap_or_default().to_string(),
        _ => {
            return Err(TranslateError::unsupported(
                format!("{field}.source"),
                "only base64 and url images have an OpenAI equivalent",
            ))
        }
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

/// Content of a `tool_result` as OpenAI tool message content (text; images are not carried
/// by OpenAI tool messages).
fn tool_result_text(content: &Value, field: &str) -> Result<String> {
    match content {
        Value::Array(blocks) => {
            let mut out = Vec::new();
            for (i, b) in blocks.iter().enumerate() {
                match b["type"].as_str() {
                    Some("text") => out.push(b["text"].as_str().unwrap_or_default()),
                    _ => {
                        return Err(TranslateError::unsupported(
                            format!("{field}[{i}]"),
                            "OpenAI tool messages carry text only",
                        ))
                    }
                }
            }
            Ok(out.join("\n"))
        }
        other => anthropic_text(other, field),
    }
}

/// One Anthropic message as OpenAI messages: a user message's `tool_result` blocks become
/// `tool` messages (first, in order: they answer the previous assistant turn), the rest one
/// user message; an assistant's `tool_use` blocks become its `tool_calls`.
fn anthropic_message(m: &Value, field: &str, out: &mut Vec<Value>) -> Result<()> {
    let role = m["role"].as_str().unwrap_or_default();
    // Mid-conversation system messages (Claude Code sends them, beta `mid-conversation-system`):
    // OpenAI has the same role, kept in place.
    if role == "system" {
        let text = anthropic_text(&m["content"], &format!("{field}.content"))?;
        out.push(json!({"role": "system", "content": text}));
        return Ok(());
    }
    let blocks: Vec<Value> = match &m["content"] {
        Value::String(s) => vec![json!({"type": "text", "text": s})],
        Value::Array(a) => a.clone(),
        _ => {
            return Err(TranslateError::invalid(
                format!("{field}.content"),
                "must be a string or an array",
            ))
        }
    };
    match role {
        "user" => {
            let mut parts = Vec::new();
            for (i, b) in blocks.iter().enumerate() {
                let bf = format!("{field}.content[{i}]");
                match b["type"].as_str() {
                    Some("text") => parts.push(json!({"type": "text",
                        "text": b["text"].as_str().unwrap_or_default()})),
                    Some("image") => parts.push(anthropic_image(b, &bf)?),
                    Some("tool_result") => {
                        let id = b["tool_use_id"].as_str().ok_or_else(|| {
                            TranslateError::invalid(format!("{bf}.tool_use_id"), "must be a string")
                        })?;
                        let mut text = tool_result_text(&b["content"], &format!("{bf}.content"))?;
                        if b["is_error"].as_bool() == Some(true) && !text.starts_with("Error") {
                            // OpenAI has no error flag on tool messages: say it in the text.
                            text = format!("Error: {text}");
                        }
                        out.push(json!({"role": "tool", "tool_call_id": id, "content": text}));
                    }
                    Some("document") => {
                        return Err(TranslateError::unsupported(
                            bf,
                            "OpenAI chat completions take no document blocks",
                        ))
                    }
                    _ => {
                        return Err(TranslateError::invalid(
                            format!("{bf}.type"),
                            "must be text, image or tool_result",
                        ))
                    }
                }
            }
            if parts.is_empty() {
                return Ok(());
            }
            let all_text = parts.iter().all(|p| p["type"] == "text");
            let content = if all_text {
                let texts: Vec<&str> = parts.iter().filter_map(|p| p["text"].as_str()).collect();
                Value::String(texts.join("\n"))
            } else {
                Value::Array(parts)
            };
            out.push(json!({"role": "user", "content": content}));
        }
        "assistant" => {
            let mut text = Vec::new();
            let mut calls = Vec::new();
            for (i, b) in blocks.iter().enumerate() {
                match b["type"].as_str() {
                    Some("text") => text.push(b["text"].as_str().unwrap_or_default().to_string()),
                    Some("tool_use") => {
                        let input = if b["input"].is_null() {
                            json!({})
                        } else {
                            b["input"].clone()
                        };
                        calls.push(json!({"id": b["id"], "type": "function", "function":
                            {"name": b["name"], "arguments": input.to_string()}}));
                    }
                    // Reasoning of an earlier turn: an OpenAI-compatible backend has no field
                    // to take it back.
                    Some("thinking") | Some("redacted_thinking") => {}
                    _ => {
                        return Err(TranslateError::invalid(
                            format!("{field}.content[{i}].type"),
                            "must be text, tool_use or thinking",
                        ))
                    }
                }
            }
            let mut msg = json!({"role": "assistant"});
            msg["content"] = if text.is_empty() {
                Value::Null
            } else {
                Value::String(text.concat())
            };
            if !calls.is_empty() {
                msg["tool_calls"] = Value::Array(calls);
            }
            out.push(msg);
        }
        _ => {
            return Err(TranslateError::invalid(
                format!("{field}.role"),
                "must be user, assistant or system",
            ))
        }
    }
    Ok(())
}

fn anthropic_tools(tools: &Value) -> Result<Value> {
    let Some(list) = tools.as_array() else {
        return Err(TranslateError::invalid("tools", "must be an array"));
    };
    let mut out = Vec::new();
    for (i, t) in list.iter().enumerate() {
        if !matches!(t["type"].as_str(), None | Some("custom")) {
            return Err(TranslateError::unsupported(
                format!("tools[{i}].type"),
                "Anthropic's server tools run at Anthropic; an OpenAI backend has none",
            ));
        }
        let name = t["name"].as_str().ok_or_else(|| {
            TranslateError::invalid(format!("tools[{i}].name"), "must be a string")
        })?;
        let mut f = json!({"name": name,
            "parameters": if t["input_schema"].is_null() { json!({"type": "object"}) } else { t["input_schema"].clone() }});
        if let Some(d) = t["description"].as_str() {
            f["description"] = d.into();
        }
        out.push(json!({"type": "function", "function": f}));
    }
    Ok(Value::Array(out))
}

/// An Anthropic Messages request as an OpenAI chat completions request. A streamed request asks
/// for `include_usage`, so the translated stream can report usage.
pub fn anthropic_to_openai(body: &[u8]) -> Result<Vec<u8>> {
    let req = object(body)?;
    let mut out = Map::new();
    let model = req
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| TranslateError::invalid("model", "must be a string"))?;
    out.insert("model".into(), model.into());
    let mut messages = Vec::new();
    if let Some(s) = req.get("system").filter(|v| !v.is_null()) {
        let text = anthropic_text(s, "system")?;
        if !text.is_empty() {
            messages.push(json!({"role": "system", "content": text}));
        }
    }
    let Some(msgs) = req.get("messages").and_then(Value::as_array) else {
        return Err(TranslateError::invalid("messages", "must be an array"));
    };
    for (i, m) in msgs.iter().enumerate() {
        anthropic_message(m, &format!("messages[{i}]"), &mut messages)?;
    }
    out.insert("messages".into(), Value::Array(messages));
    if let Some(v) = req.get("max_tokens").filter(|v| !v.is_null()) {
        out.insert("max_tokens".into(), v.clone());
    }
    for k in ["temperature", "top_p"] {
        if let Some(v) = req.get(k).filter(|v| !v.is_null()) {
            out.insert(k.into(), v.clone());
        }
    }
    if let Some(s) = req.get("stop_sequences").filter(|v| !v.is_null()) {
        out.insert("stop".into(), s.clone());
    }
    let stream = req.get("stream").and_then(Value::as_bool).unwrap_or(false);
    if stream {
        out.insert("stream".into(), true.into());
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if let Some(t) = req.get("tools").filter(|v| !v.is_null()) {
        out.insert("tools".into(), anthropic_tools(t)?);
    }
    if let Some(c) = req.get("tool_choice").filter(|v| !v.is_null()) {
        let choice = match c["type"].as_str() {
            Some("auto") => json!("auto"),
            Some("any") => json!("required"),
            Some("none") => json!("none"),
            Some("tool") => json!({"type": "function", "function": {"name": c["name"]}}),
            _ => {
                return Err(TranslateError::invalid(
                    "tool_choice.type",
                    "must be auto, any, tool or none",
                ))
            }
        };
        out.insert("tool_choice".into(), choice);
        if c["disable_parallel_tool_use"].as_bool() == Some(true) {
            out.insert("parallel_tool_calls".into(), false.into());
        }
    }
    if let Some(u) = req.get("metadata").and_then(|m| m["user_id"].as_str()) {
        out.insert("user".into(), u.into());
    }
    Ok(Value::Object(out).to_string().into_bytes())
}
