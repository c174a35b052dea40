//! Streams: event by event, cut at every byte boundary, with the usage both dialects expect.

use serde_json::{json, Value};

use super::stream::{AnthropicToOpenai, OpenaiToAnthropic};
use super::Exchange;

fn ex(include_usage: bool, thinking: bool) -> Exchange {
    Exchange {
        model: "asked".into(),
        stream: true,
        include_usage,
        thinking,
        created: 7,
    }
}

const ANTHROPIC: &str = "event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\",\"content\":[],\"usage\":{\"input_tokens\":12,\"cache_read_input_tokens\":100,\"cache_creation_input_tokens\":3,\"output_tokens\":1}}}\r\n\r\n\
event: ping\ndata: {\"type\":\"ping\"}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hé \"}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"there\"}}\n\n\
event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"get_weather\",\"input\":{}}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\":\"}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\\\"Paris\\\"}\"}}\n\n\
event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":25}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

/// The `data:` payloads of an OpenAI stream.
fn openai_datas(out: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(out).expect("utf-8");
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| e.strip_prefix("data: ").expect("data").to_string())
        .collect()
}

/// Feeds `input` cut at `cut` (and, when `every`, one byte at a time after it).
fn run(mut feed: impl FnMut(&[u8]) -> Vec<u8>, input: &[u8], cut: usize) -> Vec<u8> {
    let mut out = feed(&input[..cut]);
    out.extend(feed(&input[cut..]));
    out
}

#[test]
fn anthropic_stream_becomes_openai_chunks_at_every_split() {
    let whole = {
        let mut t = AnthropicToOpenai::new(ex(true, false), 1 << 20);
        let mut o = t.feed(ANTHROPIC.as_bytes());
        o.extend(t.finish());
        o
    };
    let datas = openai_datas(&whole);
    let chunks: Vec<Value> = datas[..datas.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).expect("json"))
        .collect();
    assert_eq!(datas.last().map(String::as_str), Some("[DONE]"));
    let deltas: Vec<&Value> = chunks.iter().map(|c| &c["choices"][0]["delta"]).collect();
    assert_eq!(*deltas[0], json!({"role": "assistant", "content": ""}));
    assert_eq!(*deltas[1], json!({"content": "Hé "}));
    assert_eq!(*deltas[2], json!({"content": "there"}));
    assert_eq!(
        *deltas[3],
        json!({"tool_calls": [{"index": 0, "id": "toolu_1", "type": "function",
            "function": {"name": "get_weather", "arguments": ""}}]})
    );
    assert_eq!(
        deltas[4]["tool_calls"][0]["function"]["arguments"],
        "{\"city\":"
    );
    assert_eq!(chunks[6]["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(chunks[0]["id"], "chatcmpl-1");
    assert_eq!(chunks[0]["model"], "claude-x");
    // Usage: input from message_start (cache tokens included), output from message_delta.
    assert_eq!(chunks[7]["choices"], json!([]));
    assert_eq!(
        chunks[7]["usage"],
        json!({"prompt_tokens": 115, "completion_tokens": 25, "total_tokens": 140,
            "prompt_tokens_details": {"cached_tokens": 100}})
    );
    let input = ANTHROPIC.as_bytes();
    for cut in 0..=input.len() {
        let mut t = AnthropicToOpenai::new(ex(true, false), 1 << 20);
        let mut out = run(|c| t.feed(c), input, cut);
        out.extend(t.finish());
        assert_eq!(out, whole, "cut at {cut}");
    }
    // One byte at a time.
    let mut t = AnthropicToOpenai::new(ex(true, false), 1 << 20);
    let mut out: Vec<u8> = input.iter().flat_map(|b| t.feed(&[*b])).collect();
    out.extend(t.finish());
    assert_eq!(out, whole);
}

#[test]
fn without_include_usage_no_usage_chunk_and_errors_pass_as_openai_errors() {
    let mut t = AnthropicToOpenai::new(ex(false, false), 1 << 20);
    let out = t.feed(ANTHROPIC.as_bytes());
    assert!(!String::from_utf8_lossy(&out).contains("\"usage\""));
    let mut t = AnthropicToOpenai::new(ex(false, false), 1 << 20);
    let out = t.feed(b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n");
    let d = openai_datas(&out);
    let v: Value = serde_json::from_str(&d[0]).expect("json");
    assert_eq!(v["error"]["message"], "Overloaded");
    assert_eq!(v["error"]["code"], "overloaded_error");
}

fn openai_stream() -> String {
    let c = |delta: Value, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-z", "object": "chat.completion.chunk", "model": "qwen",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    let mut s = String::new();
    s += &c(json!({"role": "assistant", "content": ""}), Value::Null);
    s += &c(json!({"reasoning_content": "plan"}), Value::Null);
    s += &c(json!({"content": "Let me "}), Value::Null);
    s += &c(json!({"content": "look."}), Value::Null);
    s += &c(
        json!({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
        "function": {"name": "Read", "arguments": ""}}]}),
        Value::Null,
    );
    s += &c(
        json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"path\":"}}]}),
        Value::Null,
    );
    s += &c(
        json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"a\"}"}}]}),
        Value::Null,
    );
    s += &c(
        json!({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
        "function": {"name": "Read", "arguments": "{}"}}]}),
        Value::Null,
    );
    s += &c(json!({}), json!("tool_calls"));
    s += &format!(
        "data: {}\n\n",
        json!({"id": "chatcmpl-z", "choices": [],
        "usage": {"prompt_tokens": 40, "completion_tokens": 12, "prompt_tokens_details": {"cached_tokens": 8}}})
    );
    s += "data: [DONE]\n\n";
    s
}

/// (event name, data) of an Anthropic stream.
fn anthropic_events(out: &[u8]) -> Vec<(String, Value)> {
    let text = std::str::from_utf8(out).expect("utf-8");
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (name, data) = e.split_once('\n').expect("two lines");
            let name = name.strip_prefix("event: ").expect("event").to_string();
            let data =
                serde_json::from_str(data.strip_prefix("data: ").expect("data")).expect("json");
            (name, data)
        })
        .collect()
}

#[test]
fn openai_stream_becomes_anthropic_events_at_every_split() {
    let input = openai_stream();
    let whole = {
        let mut t = OpenaiToAnthropic::new(ex(false, true), 1 << 20);
        let mut o = t.feed(input.as_bytes());
        o.extend(t.finish());
        o
    };
    let events = anthropic_events(&whole);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop", // thinking
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop", // text
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop", // call_a
            "content_block_start",
            "content_block_delta",
            "content_block_stop", // call_b
            "message_delta",
            "message_stop",
        ]
    );
    for (n, d) in &events {
        assert_eq!(d["type"], n.as_str());
    }
    assert_eq!(events[0].1["message"]["id"], "msg_z");
    assert_eq!(events[0].1["message"]["model"], "qwen");
    assert_eq!(events[1].1["content_block"]["type"], "thinking");
    assert_eq!(
        events[2].1["delta"],
        json!({"type": "thinking_delta", "thinking": "plan"})
    );
    assert_eq!(
        events[5].1["delta"],
        json!({"type": "text_delta", "text": "Let me "})
    );
    assert_eq!(events[5].1["index"], 1);
    assert_eq!(
        events[8].1["content_block"],
        json!({"type": "tool_use", "id": "call_a", "name": "Read", "input": {}})
    );
    assert_eq!(
        events[9].1["delta"],
        json!({"type": "input_json_delta", "partial_json": "{\"path\":"})
    );
    assert_eq!(events[12].1["index"], 3);
    assert_eq!(
        events[15].1,
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null},
            "usage": {"input_tokens": 32, "output_tokens": 12, "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 8}})
    );
    let bytes = input.as_bytes();
    for cut in 0..=bytes.len() {
        let mut t = OpenaiToAnthropic::new(ex(false, true), 1 << 20);
        let mut out = run(|c| t.feed(c), bytes, cut);
        out.extend(t.finish());
        assert_eq!(out, whole, "cut at {cut}");
    }
}

#[test]
fn a_stream_without_done_is_closed_and_a_cut_one_is_not() {
    let input = openai_stream().replace("data: [DONE]\n\n", "");
    let mut t = OpenaiToAnthropic::new(ex(false, false), 1 << 20);
    let mut out = t.feed(input.as_bytes());
    out.extend(t.finish());
    let events = anthropic_events(&out);
    assert_eq!(events.last().map(|e| e.0.as_str()), Some("message_stop"));
    // No thinking asked: no thinking block.
    assert!(events
        .iter()
        .all(|(_, d)| d["content_block"]["type"] != "thinking"));
    let cut = &openai_stream()[..300];
    let mut t = OpenaiToAnthropic::new(ex(false, false), 1 << 20);
    let mut out = t.feed(cut.as_bytes());
    out.extend(t.finish());
    assert!(!String::from_utf8_lossy(&out).contains("message_stop"));
}

#[test]
fn an_oversized_event_ends_the_stream_with_an_error() {
    let big = format!("data: {{\"x\":\"{}\"}}\n\n", "a".repeat(5000));
    let mut t = OpenaiToAnthropic::new(ex(false, false), 1024);
    let out = t.feed(big.as_bytes());
    let events = anthropic_events(&out);
    assert_eq!(events[0].0, "error");
    let mut t = AnthropicToOpenai::new(ex(false, false), 1024);
    let out = String::from_utf8(t.feed(big.as_bytes())).expect("utf-8");
    assert!(out.contains("\"error\""), "{out}");
}

#[test]
fn nulls_where_servers_write_them_are_read_as_absent() {
    let input = "data: {\"id\":\"chatcmpl-n\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\\\"b\",\"tool_calls\":null},\"finish_reason\":null}]}\n\n\
data: {\"id\":\"chatcmpl-n\",\"choices\":[{\"index\":0,\"delta\":null,\"finish_reason\":\"stop\"}]}\n\n\
data: {\"id\":\"chatcmpl-n\",\"choices\":null,\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n";
    let mut t = OpenaiToAnthropic::new(ex(false, false), 1 << 20);
    let mut out = t.feed(input.as_bytes());
    out.extend(t.finish());
    let events = anthropic_events(&out);
    assert_eq!(
        events[2].1["delta"],
        json!({"type": "text_delta", "text": "a\"b"})
    );
    let delta = &events
        .iter()
        .find(|(n, _)| n == "message_delta")
        .expect("delta")
        .1;
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["input_tokens"], 4);
    assert_eq!(delta["usage"]["output_tokens"], 2);
}
