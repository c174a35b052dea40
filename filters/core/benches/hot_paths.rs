//! Criterion micro-benchmarks of the per-request hot paths, reported as throughput (MB/s).
//! Run with `make bench-core`.
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

criterion_group!(benches, model_extraction);
criterion_main!(benches);
