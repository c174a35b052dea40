//! Criterion micro-benchmarks of the per-request hot paths, reported as throughput (MB/s):
//! JSON model extraction, SSE parsing, token counting and PII scanning. Run with
//! `make bench-core`, which also times Python `tiktoken` on the same text (the text is written
//! to `target/bench/tokens.txt` for it).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// A chat request of about `size` bytes.
fn chat_body(size: usize) -> Vec<u8> {
    let mut text = String::new();
    let mut i = 0;
    while text.len() + 80 < size {
        text.push_str(&format!("word{i} "));
        i += 1;
    }
    format!(r#"{{"model":"gpt-4o-mini","stream":true,"stream_options":{{"include_usage":true}},"messages":[{{"role":"user","content":"{text}"}}]}}"#)
        .into_bytes()
}

fn model_extraction(c: &mut Criterion) {
    let mut g = c.benchmark_group("request_facts");
    for size in [1024, 100 * 1024] {
        let body = chat_body(size);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &body, |b, body| {
            b.iter(|| aimesh_core::openai::request_facts(std::hint::black_box(body)).unwrap())
        });
    }
    g.finish();
}

/// English-like prose with numbers and punctuation, about `size` bytes (deterministic).
fn prose(size: usize) -> String {
    const WORDS: &[&str] = &[
        "the", "gateway", "routes", "requests", "to", "a", "model", "and", "counts", "tokens",
        "before", "the", "provider", "answers;", "latency", "stays", "low,", "while", "budgets",
        "hold.", "In", "2026", "we", "served", "12,345", "calls", "per", "second", "(p99",
        "4.2ms).",
    ];
    let mut out = String::with_capacity(size + 16);
    let mut i = 0usize;
    while out.len() < size {
        out.push_str(WORDS[i % WORDS.len()]);
        out.push(if i % 17 == 16 { '\n' } else { ' ' });
        i = i.wrapping_mul(31).wrapping_add(7) % 1_000_003;
    }
    out.truncate(size);
    out
}

/// A streamed chat reply of `events` chunks, as a provider sends it.
fn sse_stream(events: usize) -> Vec<u8> {
    let mut out = String::new();
    for i in 0..events {
        out.push_str(&format!(
            "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"word{i} \"}},\"finish_reason\":null}}]}}\n\n"
        ));
    }
    out.push_str("data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":100,\"total_tokens\":109}}\n\ndata: [DONE]\n\n");
    out.into_bytes()
}

fn sse_parsing(c: &mut Criterion) {
    let mut g = c.benchmark_group("sse_tap");
    let stream = sse_stream(500);
    g.throughput(Throughput::Bytes(stream.len() as u64));
    for chunk in [64usize, 4096] {
        g.bench_with_input(BenchmarkId::new("chunk_bytes", chunk), &stream, |b, s| {
            b.iter(|| {
                let mut tap = aimesh_core::accounting::sse::SseTap::new(true, 16 << 20);
                for part in s.chunks(chunk) {
                    std::hint::black_box(tap.feed(part));
                }
                std::hint::black_box(tap.finish())
            })
        });
    }
    g.finish();
}

fn token_counting(c: &mut Criterion) {
    use aimesh_core::accounting::estimate::{count, Encoding};
    let text = prose(100 * 1024);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join("tokens.txt"), &text);
    let mut g = c.benchmark_group("token_count");
    g.sample_size(20);
    for enc in [Encoding::Cl100kBase, Encoding::O200kBase] {
        count(enc, "warm up").unwrap();
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_with_input(BenchmarkId::new(enc.name(), text.len()), &text, |b, t| {
            b.iter(|| count(enc, std::hint::black_box(t)).unwrap())
        });
    }
    g.finish();
}

fn pii_scanning(c: &mut Criterion) {
    use aimesh_core::pii::config::PiiConfig;
    use aimesh_core::pii::engine::Engine;
    let cfg: PiiConfig = serde_json::from_str("{}").unwrap();
    let engine = Engine::new(&cfg).unwrap();
    let policy = engine.policy(engine.select(None, "/v1/chat/completions", &|_| None));
    let mut g = c.benchmark_group("pii_scan");
    for size in [1024usize, 100 * 1024] {
        // Prose with one email, phone and card number per ~1 KB.
        let mut text = String::new();
        while text.len() < size {
            text.push_str(&prose(900));
            text.push_str(
                " mail jane.doe@example.com, call +1 415-555-0123, card 4111 1111 1111 1111. ",
            );
        }
        text.truncate(size);
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &text, |b, t| {
            b.iter(|| engine.find(std::hint::black_box(t), policy))
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    model_extraction,
    sse_parsing,
    token_counting,
    pii_scanning
);
criterion_main!(benches);
