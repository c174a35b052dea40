//! Cost of translating one request and its reply between OpenAI chat completions and Anthropic
//! Messages (`aimesh_core::translate`), non-streamed and streamed, in one run: time per request
//! (criterion's `time`) for a 1 KB chat, a Claude Code-sized request (~40 KB: system prompt,
//! tools, a tool round trip) and replies of 100 streamed events. Run with `make bench-core`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use aimesh_core::translate::stream::{AnthropicToOpenai, OpenaiToAnthropic};
use aimesh_core::translate::{request, response, Exchange};
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;

fn words(n: usize) -> String {
    (0..n)
        .map(|i| format!("word{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn openai_chat() -> Vec<u8> {
    json!({"model": "claude-x", "max_tokens": 256, "stream": false,
        "messages": [{"role": "system", "content": "be brief"},
                     {"role": "user", "content": words(120)}]})
    .to_string()
    .into_bytes()
}

/// A Claude Code-like request: long system prompt, 12 tools, a tool round trip.
fn anthropic_agent() -> Vec<u8> {
    let tools: Vec<_> = (0..12)
        .map(|i| {
            json!({"name": format!("Tool{i}"), "description": words(80),
            "input_schema": {"type": "object", "properties": {"path": {"type": "string"},
                "limit": {"type": "integer"}}, "required": ["path"]}})
        })
        .collect();
    json!({"model": "qwen", "max_tokens": 4096, "stream": true,
        "system": [{"type": "text", "text": words(3000)}],
        "tools": tools,
        "messages": [
            {"role": "user", "content": words(50)},
            {"role": "assistant", "content": [{"type": "text", "text": "Reading."},
                {"type": "tool_use", "id": "toolu_1", "name": "Tool0", "input": {"path": "src/main.rs"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                "content": words(1000)}, {"type": "text", "text": "explain"}]}]})
    .to_string()
    .into_bytes()
}

fn anthropic_reply() -> Vec<u8> {
    json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [{"type": "text", "text": words(100)}], "stop_reason": "end_turn",
        "usage": {"input_tokens": 120, "output_tokens": 100}})
    .to_string()
    .into_bytes()
}

fn openai_reply() -> Vec<u8> {
    json!({"id": "chatcmpl-1", "object": "chat.completion", "model": "qwen",
        "choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": words(100)}}],
        "usage": {"prompt_tokens": 120, "completion_tokens": 100}})
    .to_string()
    .into_bytes()
}

fn anthropic_stream(events: usize) -> Vec<u8> {
    let mut s = String::from("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude-x\",\"usage\":{\"input_tokens\":120,\"output_tokens\":1}}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
    for i in 0..events {
        s += &format!("event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"word{i} \"}}}}\n\n");
    }
    s += "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":100}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    s.into_bytes()
}

fn openai_stream(events: usize) -> Vec<u8> {
    let mut s = String::new();
    for i in 0..events {
        s += &format!("data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"qwen\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"word{i} \"}},\"finish_reason\":null}}]}}\n\n");
    }
    s += "data: {\"id\":\"chatcmpl-1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: {\"id\":\"chatcmpl-1\",\"choices\":[],\"usage\":{\"prompt_tokens\":120,\"completion_tokens\":100}}\n\ndata: [DONE]\n\n";
    s.into_bytes()
}

/// Feeds `input` in transport-sized chunks (512 bytes), as Envoy hands a stream over.
fn chunks(input: &[u8]) -> Vec<&[u8]> {
    input.chunks(512).collect()
}

fn translate(c: &mut Criterion) {
    let ex = Exchange {
        model: "m".into(),
        stream: false,
        include_usage: true,
        thinking: false,
        created: 1,
    };
    let mut g = c.benchmark_group("translate");
    let chat = openai_chat();
    let agent = anthropic_agent();
    let (a_reply, o_reply) = (anthropic_reply(), openai_reply());
    let (a_stream, o_stream) = (anthropic_stream(100), openai_stream(100));
    g.bench_function("openai_to_anthropic/request_1k+reply", |b| {
        b.iter(|| {
            let r = request::openai_to_anthropic(std::hint::black_box(&chat), 4096).unwrap();
            let o = response::anthropic_to_openai(&a_reply, &ex).unwrap();
            (r, o)
        })
    });
    g.bench_function("openai_to_anthropic/request_1k+stream_100", |b| {
        b.iter(|| {
            let r = request::openai_to_anthropic(std::hint::black_box(&chat), 4096).unwrap();
            let mut t = AnthropicToOpenai::new(ex.clone(), 1 << 20);
            let mut n = 0;
            for c in chunks(&a_stream) {
                n += t.feed(c).len();
            }
            n += t.finish().len();
            (r, n)
        })
    });
    g.bench_function("anthropic_to_openai/request_40k+reply", |b| {
        b.iter(|| {
            let r = request::anthropic_to_openai(std::hint::black_box(&agent)).unwrap();
            let o = response::openai_to_anthropic(&o_reply, &ex).unwrap();
            (r, o)
        })
    });
    g.bench_function("anthropic_to_openai/request_40k+stream_100", |b| {
        b.iter(|| {
            let r = request::anthropic_to_openai(std::hint::black_box(&agent)).unwrap();
            let mut t = OpenaiToAnthropic::new(ex.clone(), 1 << 20);
            let mut n = 0;
            for c in chunks(&o_stream) {
                n += t.feed(c).len();
            }
            n += t.finish().len();
            (r, n)
        })
    });
    g.finish();
}

criterion_group!(benches, translate);
criterion_main!(benches);
