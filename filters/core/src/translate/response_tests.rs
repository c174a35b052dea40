//! Whole-response translation, field by field.

use serde_json::{json, Value};

use super::response::{anthropic_to_openai, openai_to_anthropic};
use super::Exchange;

fn ex(thinking: bool) -> Exchange {
    Exchange {
        model: "asked".into(),
        stream: false,
        include_usage: false,
        thinking,
        created: 1_700_000_000,
    }
}

fn parse(b: Vec<u8>) -> Value {
    serde_json::from_slice(&b).expect("json")
}

#[test]
fn an_anthropic_message_becomes_a_chat_completion_with_cache_tokens() {
    let m = json!({"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [{"type": "thinking", "thinking": "let me see", "signature": "s"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 10, "output_tokens": 7, "cache_creation_input_tokens": 100,
            "cache_read_input_tokens": 1000}});
    let out = parse(anthropic_to_openai(m.to_string().as_bytes(), &ex(false)).expect("ok"));
    assert_eq!(
        out,
        json!({"id": "chatcmpl-01", "object": "chat.completion", "created": 1_700_000_000,
            "model": "claude-x",
            "choices": [{"index": 0, "logprobs": null, "finish_reason": "tool_calls",
                "message": {"role": "assistant", "content": "Checking.", "refusal": null,
                    "reasoning_content": "let me see",
                    "tool_calls": [{"id": "toolu_1", "type": "function",
                        "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}}],
            "usage": {"prompt_tokens": 1110, "completion_tokens": 7, "total_tokens": 1117,
                "prompt_tokens_details": {"cached_tokens": 1000}}})
    );
    for (stop, finish) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("refusal", "content_filter"),
    ] {
        let m = json!({"id": "msg_2", "content": [], "stop_reason": stop, "usage": {}});
        let out = parse(anthropic_to_openai(m.to_string().as_bytes(), &ex(false)).expect("ok"));
        assert_eq!(out["choices"][0]["finish_reason"], finish);
        assert_eq!(out["model"], "asked");
    }
}

#[test]
fn a_chat_completion_becomes_an_anthropic_message() {
    let c = json!({"id": "chatcmpl-abc", "object": "chat.completion", "model": "qwen",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant",
            "content": "Sure.", "reasoning_content": "think",
            "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "Read", "arguments": "{\"path\":\"a\"}"}},
                {"id": "call_2", "type": "function",
                "function": {"name": "Read", "arguments": "not json"}}]}}],
        "usage": {"prompt_tokens": 50, "completion_tokens": 9, "total_tokens": 59,
            "prompt_tokens_details": {"cached_tokens": 20}}});
    let out = parse(openai_to_anthropic(c.to_string().as_bytes(), &ex(true)).expect("ok"));
    assert_eq!(
        out,
        json!({"id": "msg_abc", "type": "message", "role": "assistant", "model": "qwen",
            "content": [{"type": "thinking", "thinking": "think", "signature": ""},
                {"type": "text", "text": "Sure."},
                {"type": "tool_use", "id": "call_1", "name": "Read", "input": {"path": "a"}},
                {"type": "tool_use", "id": "call_2", "name": "Read", "input": {"arguments": "not json"}}],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 30, "output_tokens": 9, "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 20}})
    );
    // Without `thinking` asked, reasoning is not returned; vLLM's matched stop string is.
    let c = json!({"id": "x", "choices": [{"finish_reason": "stop", "stop_reason": "END",
        "message": {"content": "a", "reasoning_content": "r"}}], "usage": {"prompt_tokens": 1, "completion_tokens": 1}});
    let out = parse(openai_to_anthropic(c.to_string().as_bytes(), &ex(false)).expect("ok"));
    assert_eq!(out["content"], json!([{"type": "text", "text": "a"}]));
    assert_eq!(
        (out["stop_reason"].as_str(), out["stop_sequence"].as_str()),
        (Some("stop_sequence"), Some("END"))
    );
    assert_eq!(out["model"], "asked");
    let c = json!({"choices": [{"finish_reason": "length", "message": {"content": "a"}}]});
    let out = parse(openai_to_anthropic(c.to_string().as_bytes(), &ex(false)).expect("ok"));
    assert_eq!(out["stop_reason"], "max_tokens");
}
