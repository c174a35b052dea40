//! Request translation, field by field.

use serde_json::{json, Value};

use super::request::{anthropic_to_openai, openai_to_anthropic};
use super::TranslateError;

fn to_anthropic(v: Value) -> Value {
    serde_json::from_slice(&openai_to_anthropic(v.to_string().as_bytes(), 4096).expect("ok"))
        .expect("json")
}

fn to_openai(v: Value) -> Value {
    serde_json::from_slice(&anthropic_to_openai(v.to_string().as_bytes()).expect("ok"))
        .expect("json")
}

#[test]
fn openai_chat_becomes_a_messages_request() {
    let out = to_anthropic(json!({
    "model": "claude-x", "temperature": 0.2, "top_p": 0.9, "stop": "END", "user": "u-1",
    "stream": true, "stream_options": {"include_usage": true}, "presence_penalty": 1,
    "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "developer", "content": [{"type": "text", "text": "and kind"}]},
        {"role": "user", "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            {"type": "image_url", "image_url": {"url": "https://x/y.jpg"}}]},
    ]}));
    assert_eq!(
        out,
        json!({
            "model": "claude-x", "max_tokens": 4096, "temperature": 0.2, "top_p": 0.9,
            "stop_sequences": ["END"], "metadata": {"user_id": "u-1"}, "stream": true,
            "system": [{"type": "text", "text": "be brief"}, {"type": "text", "text": "and kind"}],
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                {"type": "image", "source": {"type": "url", "url": "https://x/y.jpg"}}]}]
        })
    );
}

#[test]
fn max_tokens_prefers_max_completion_tokens_and_n_is_refused() {
    let base = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let mut a = base.clone();
    a["max_tokens"] = 10.into();
    assert_eq!(to_anthropic(a.clone())["max_tokens"], 10);
    a["max_completion_tokens"] = 20.into();
    assert_eq!(to_anthropic(a)["max_tokens"], 20);
    let mut n = base;
    n["n"] = 2.into();
    let err = openai_to_anthropic(n.to_string().as_bytes(), 1).expect_err("n");
    assert!(matches!(err, TranslateError::Unsupported { ref field, .. } if field == "n"));
}

#[test]
fn tool_roles_convert_and_parallel_results_share_one_user_turn() {
    let out = to_anthropic(json!({"model": "m",
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "w",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": false,
        "messages": [
            {"role": "user", "content": "weather in Paris and Rome?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "21C"}]},
            {"role": "user", "content": "thanks"}]}));
    assert_eq!(
        out["tools"],
        json!([{"name": "get_weather", "description": "w",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}])
    );
    assert_eq!(
        out["tool_choice"],
        json!({"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true})
    );
    assert_eq!(
        out["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "weather in Paris and Rome?"}]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"city": "Rome"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "21C"}]},
                {"type": "text", "text": "thanks"}]}
        ])
    );
    for (choice, want) in [
        (json!("auto"), json!({"type": "auto"})),
        (json!("none"), json!({"type": "none"})),
        (json!("required"), json!({"type": "any"})),
    ] {
        let o = to_anthropic(json!({"model": "m", "tool_choice": choice, "messages": []}));
        assert_eq!(o["tool_choice"], want);
    }
}

#[test]
fn bad_openai_requests_name_the_field() {
    let cases = [
        (json!([1]), "NotJson"),
        (json!({"messages": []}), "model"),
        (
            json!({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}),
            "messages[0].role",
        ),
        (
            json!({"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"id": "a",
            "function": {"name": "f", "arguments": "[1]"}}]}]}),
            "messages[0].tool_calls[0].function.arguments",
        ),
        (
            json!({"model": "m", "messages": [], "tools": [{"type": "web_search"}]}),
            "tools[0].type",
        ),
    ];
    for (body, field) in cases {
        let err = openai_to_anthropic(body.to_string().as_bytes(), 1).expect_err("bad");
        let got = match &err {
            TranslateError::NotJson => "NotJson".to_string(),
            TranslateError::Invalid { field, .. } | TranslateError::Unsupported { field, .. } => {
                field.clone()
            }
        };
        assert_eq!(got, field, "{err}");
    }
}

#[test]
fn anthropic_messages_become_a_chat_request() {
    let out = to_openai(json!({
    "model": "qwen", "max_tokens": 512, "temperature": 0.5, "top_p": 0.8, "top_k": 5,
    "stop_sequences": ["\n\nHuman:"], "stream": true, "metadata": {"user_id": "u-9"},
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
    "tools": [{"name": "Read", "description": "read a file",
        "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}}],
    "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
    "messages": [
        {"role": "user", "content": "read main.rs"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "text", "text": "Reading."},
            {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"path": "main.rs"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "fn main() {}"}]},
            {"type": "text", "text": "explain"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "BBBB"}}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_2", "name": "Read", "input": {"path": "x"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_2", "is_error": true, "content": "no such file"}]}
    ]}));
    assert_eq!(
        out,
        json!({
            "model": "qwen", "max_tokens": 512, "temperature": 0.5, "top_p": 0.8,
            "stop": ["\n\nHuman:"], "stream": true, "stream_options": {"include_usage": true},
            "user": "u-9", "tool_choice": "required", "parallel_tool_calls": false,
            "tools": [{"type": "function", "function": {"name": "Read", "description": "read a file",
                "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}}],
            "messages": [
                {"role": "system", "content": "You are Claude Code."},
                {"role": "user", "content": "read main.rs"},
                {"role": "assistant", "content": "Reading.", "tool_calls": [{"id": "toolu_1",
                    "type": "function", "function": {"name": "Read", "arguments": "{\"path\":\"main.rs\"}"}}]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "fn main() {}"},
                {"role": "user", "content": [{"type": "text", "text": "explain"},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,BBBB"}}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "toolu_2", "type": "function",
                    "function": {"name": "Read", "arguments": "{\"path\":\"x\"}"}}]},
                {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: no such file"}
            ]
        })
    );
}

#[test]
fn tool_calls_round_trip_both_ways() {
    let openai = json!({"model": "m", "max_tokens": 100, "messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": "ok", "tool_calls": [
            {"id": "call_9", "type": "function", "function": {"name": "f", "arguments": "{\"a\":[1,2],\"b\":{\"c\":null}}"}}]},
        {"role": "tool", "tool_call_id": "call_9", "content": "done"}]});
    let there = openai_to_anthropic(openai.to_string().as_bytes(), 1).expect("to");
    let back: Value =
        serde_json::from_slice(&anthropic_to_openai(&there).expect("back")).expect("json");
    assert_eq!(back["messages"], openai["messages"]);
    assert_eq!(back["max_tokens"], 100);
}

#[test]
fn anthropic_server_tools_and_documents_are_refused() {
    let t = json!({"model": "m", "max_tokens": 1, "messages": [],
        "tools": [{"type": "web_search_20250305", "name": "web_search"}]});
    assert!(matches!(anthropic_to_openai(t.to_string().as_bytes()),
        Err(TranslateError::Unsupported { ref field, .. }) if field == "tools[0].type"));
    let d = json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "text", "data": "x"}}]}]});
    assert!(matches!(anthropic_to_openai(d.to_string().as_bytes()),
        Err(TranslateError::Unsupported { ref field, .. }) if field == "messages[0].content[0]"));
}

#[test]
fn claude_code_mid_conversation_system_messages_stay_in_place() {
    // What Claude Code 2.x sends: a system message between user turns, adaptive thinking,
    // context management and effort (no OpenAI equivalent: dropped).
    let out = to_openai(json!({"model": "qwen", "max_tokens": 32000, "stream": true,
        "thinking": {"type": "adaptive"}, "output_config": {"effort": "high"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "system": [{"type": "text", "text": "You are Claude Code."}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "context"}]},
                     {"role": "system", "content": "Available agent types: ..."},
                     {"role": "user", "content": "say hello"}]}));
    assert_eq!(
        out["messages"],
        json!([{"role": "system", "content": "You are Claude Code."},
               {"role": "user", "content": "context"},
               {"role": "system", "content": "Available agent types: ..."},
               {"role": "user", "content": "say hello"}])
    );
    assert!(out.get("thinking").is_none() && out.get("output_config").is_none());
    let ex = super::request::anthropic_exchange(
        br#"{"model":"q","thinking":{"type":"adaptive"},"stream":true}"#,
        1,
    );
    assert!(ex.thinking && ex.stream);
}
