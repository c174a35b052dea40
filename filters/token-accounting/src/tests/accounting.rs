//! Accounting: what passes to the upstream and the client, metrics and the audit record.

use std::time::Duration;

use aimesh_core::accounting::audit::Record;
use aimesh_core::accounting::estimate::{self, Encoding};
use aimesh_host::{Action, Facts};

use super::*;

const PRICES: &str = r#"{"prices":{"gpt-4o*":{"input":2.5,"output":10}}}"#;

const STREAM: &str = concat!(
    "data: {\"model\":\"m1\",\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}],\"usage\":null}\n\n",
    "data: {\"model\":\"m1\",\"choices\":[{\"delta\":{\"content\":\"Hello\"}}],\"usage\":null}\r\n\r\n",
    "data: {\"model\":\"m1\",\"choices\":[{\"delta\":{\"content\":\" world\"}}],\"usage\":null}\n\n",
    "data: {\"model\":\"m1\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\n",
    "data: [DONE]\n\n",
);

const SSE: &[(&str, &str)] = &[
    (":status", "200"),
    ("content-type", "text/event-stream"),
    ("content-length", "999"),
];

fn streamed() -> Facts {
    Facts {
        stream: Some(true),
        ..auth_facts()
    }
}

#[test]
fn a_stream_gets_include_usage_and_loses_the_usage_event_on_a_fake_clock() {
    let w = world();
    let root = root(&w, PRICES);
    let body = chat(r#","stream":true"#);
    let mut ex = exchange(&w, root.as_ref(), streamed(), &body, false);
    assert_eq!(
        ex.request_headers(false),
        Action::Pause,
        "holds for the body"
    );
    let (a, b) = body.as_bytes().split_at(13);
    assert_eq!(ex.request_chunk(a, false), Action::Pause);
    assert_eq!(ex.request_chunk(b, true), Action::Continue);
    let sent: serde_json::Value = serde_json::from_slice(&ex.sent_upstream).unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], true);
    let len = ex.sent_upstream.len().to_string();
    assert_eq!(ex.host.request().get("content-length"), Some(len.as_str()));

    w.advance(Duration::from_millis(120));
    ex.response_headers(SSE, false);
    assert!(
        !ex.host.response().has("content-length"),
        "the length changes"
    );
    // Cut at odd places, the first text arriving 40 ms after the response began.
    let bytes = STREAM.as_bytes();
    ex.response_chunk(&bytes[..7], false);
    w.advance(Duration::from_millis(40));
    let rest: Vec<&[u8]> = bytes[7..].chunks(11).collect();
    for (i, c) in rest.iter().enumerate() {
        ex.response_chunk(c, i + 1 == rest.len());
    }
    let expected: String = STREAM
        .split_inclusive("\n\n")
        .filter(|e| !e.contains("\"choices\":[]"))
        .collect();
    assert_eq!(String::from_utf8_lossy(&ex.sent_downstream), expected);
    assert_eq!(tokens(&w, "m1", "k1", "input", "provider"), 3);
    assert_eq!(tokens(&w, "m1", "k1", "output", "provider"), 2);
    let genai = ".operation_name.chat.provider_name.unknown.request_model.gpt-4o.model.m1";
    let sample = |name: &str| w.metrics.samples(&format!("{name}{genai}"));
    // Text first showed in a chunk read after the 40 ms gap; the first bytes came before it.
    assert_eq!(sample(crate::metrics::TIME_TO_FIRST_TOKEN), vec![160]);
    assert_eq!(sample(crate::metrics::TIME_TO_FIRST_CHUNK), vec![120]);
    assert_eq!(sample(crate::metrics::REQUEST_DURATION), vec![160]);
    let usage = |t: &str| {
        w.metrics.samples(&format!(
            "{}{genai}.token_type.{t}",
            crate::metrics::TOKEN_USAGE
        ))
    };
    assert_eq!((usage("input"), usage("output")), (vec![3], vec![2]));

    let mut r = unaccounted(&streamed());
    r.model_served = Some("m1".into());
    r.backend = Some("llm".into());
    r.upstream_status = Some(200);
    (r.input_tokens, r.cached_input_tokens, r.output_tokens) = (Some(3), Some(0), Some(2));
    (r.usage_estimated, r.truncated) = (Some(false), Some(false));
    // Priced by the requested model (m1 has no price): 3 x 2.5 + 2 x 10, rounded up.
    r.cost_micro_usd = Some(28);
    r.ttft_ms = Some(160);
    // Published with the last chunk, before `log`: Envoy's tracer reads it when it finalizes
    // the span, which is before `on_log`.
    assert_eq!(audit_bytes(&ex), Some(&r.encode()));
    ex.host.state.remove(audit::PROPERTY);
    ex.log();
    assert_eq!(audit_bytes(&ex), None, "written once");
}

#[test]
fn a_response_that_ends_with_trailers_is_accounted_and_published_then() {
    let w = world();
    let root = root(&w, "{}");
    let body = chat("");
    let mut ex = exchange(&w, root.as_ref(), auth_facts(), &body, false);
    ex.request(body.as_bytes());
    ex.response_headers(&[(":status", "200")], false);
    ex.response_chunk(
        br#"{"model":"m2","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7}}"#,
        false,
    );
    assert_eq!(audit_bytes(&ex), None, "the response is not over");
    ex.response_trailers();
    let mut r = unaccounted(&auth_facts());
    r.model_served = Some("m2".into());
    r.backend = Some("llm".into());
    r.upstream_status = Some(200);
    (r.input_tokens, r.cached_input_tokens, r.output_tokens) = (Some(5), Some(0), Some(7));
    (r.usage_estimated, r.truncated, r.cost_micro_usd) = (Some(false), Some(false), Some(0));
    assert_eq!(
        audit_bytes(&ex),
        Some(&r.encode()),
        "published at the trailers"
    );
    assert_eq!(tokens(&w, "m2", "k1", "output", "provider"), 7);
}

#[test]
fn a_client_that_asked_for_usage_gets_the_stream_untouched_and_unheld() {
    let w = world();
    let root = root(&w, "{}");
    let facts = Facts {
        include_usage: Some(true),
        ..streamed()
    };
    let body = chat(r#","stream":true,"stream_options":{"include_usage":true}"#);
    let mut ex = exchange(&w, root.as_ref(), facts, &body, false);
    assert_eq!(ex.request(body.as_bytes()), Action::Continue);
    assert_eq!(ex.sent_upstream, body.as_bytes());
    ex.response(SSE, STREAM.as_bytes(), 5);
    assert_eq!(ex.sent_downstream, STREAM.as_bytes());
    assert!(ex.host.response().has("content-length"));
    assert_eq!(tokens(&w, "m1", "k1", "output", "provider"), 2);
}

#[test]
fn without_auth_the_body_gives_the_facts_and_json_usage_is_read_across_chunks() {
    let w = world();
    let root = root(&w, PRICES);
    let body = chat("");
    let mut ex = exchange(&w, root.as_ref(), Facts::default(), &body, false);
    assert_eq!(ex.request(body.as_bytes()), Action::Continue);
    let resp = br#"{"model":"gpt-4o-x","choices":[{"message":{"content":"ok"}}],"usage":{"prompt_tokens":10,"completion_tokens":4,"prompt_tokens_details":{"cached_tokens":6}}}"#;
    ex.response(&[(":status", "200")], resp, 9);
    assert_eq!(ex.sent_downstream, resp.as_slice(), "passed on as it came");
    assert_eq!(tokens(&w, "gpt-4o-x", "unknown", "input", "provider"), 10);
    assert_eq!(
        tokens(&w, "gpt-4o-x", "unknown", "cached_input", "provider"),
        6
    );
    ex.log();
    let mut r = unaccounted(&Facts {
        model: Some("gpt-4o".into()),
        ..Facts::default()
    });
    r.model_served = Some("gpt-4o-x".into());
    r.backend = Some("llm".into());
    r.upstream_status = Some(200);
    (r.input_tokens, r.cached_input_tokens, r.output_tokens) = (Some(10), Some(6), Some(4));
    (r.usage_estimated, r.truncated) = (Some(false), Some(false));
    // 4 x 2.5 + 6 x 2.5 (no cached price: the input price) + 4 x 10.
    r.cost_micro_usd = Some(65);
    assert_eq!(audit_bytes(&ex), Some(&r.encode()));
}

#[test]
fn a_stream_cut_by_a_reset_is_accounted_from_what_was_seen() {
    let w = world();
    let root = root(&w, "{}");
    let body = chat(r#","stream":true"#);
    let mut ex = exchange(&w, root.as_ref(), streamed(), &body, false);
    ex.request(body.as_bytes());
    ex.response_headers(SSE, false);
    let half = STREAM.find(" world").unwrap() + 20;
    ex.response_chunk(&STREAM.as_bytes()[..half], false);
    assert_eq!(audit_bytes(&ex), None, "the response is not over");
    ex.log();
    assert!(audit_bytes(&ex).is_some(), "published in log");
    let enc = Encoding::for_model("m1");
    let input = estimate::prompt_tokens(enc, body.as_bytes()).unwrap();
    let output = estimate::count(enc, "Hello").unwrap();
    assert_eq!(tokens(&w, "m1", "k1", "input", "estimated"), input);
    assert_eq!(tokens(&w, "m1", "k1", "output", "estimated"), output);
    assert_eq!(tokens(&w, "m1", "k1", "output", "provider"), 0);
}

#[test]
fn an_upstream_error_costs_nothing_and_a_large_body_is_truncated() {
    let w = world();
    let root = root(&w, r#"{"max_response_bytes":64}"#);
    let body = chat("");
    let mut ex = exchange(&w, root.as_ref(), auth_facts(), &body, false);
    ex.request(body.as_bytes());
    ex.response(&[(":status", "503")], br#"{"error":{"message":"down"}}"#, 4);
    ex.log();
    assert_eq!(tokens(&w, "gpt-4o", "k1", "input", "provider"), 0);
    let requests = format!("aimesh.gen_ai.client.requests{}", labels("gpt-4o", "k1"));
    assert_eq!(w.metrics.counter(&requests), 1);

    let mut ex = exchange(&w, root.as_ref(), auth_facts(), &body, false);
    ex.request(body.as_bytes());
    let big = format!(
        r#"{{"choices":[],"pad":"{}","usage":{{"prompt_tokens":1}}}}"#,
        "x".repeat(100)
    );
    ex.response(&[(":status", "200")], big.as_bytes(), 30);
    ex.log();
    assert_eq!(ex.sent_downstream, big.as_bytes());
    assert_eq!(w.metrics.counter(&requests), 2);
    assert_eq!(
        tokens(&w, "gpt-4o", "k1", "input", "provider"),
        0,
        "usage unread"
    );
    let mut r = unaccounted(&auth_facts());
    r.model_served = Some("gpt-4o".into());
    r.backend = Some("llm".into());
    r.upstream_status = Some(200);
    (r.input_tokens, r.cached_input_tokens, r.output_tokens) = (Some(0), Some(0), Some(0));
    (r.usage_estimated, r.truncated, r.cost_micro_usd) = (Some(true), Some(true), Some(0));
    assert_eq!(audit_bytes(&ex), Some(&r.encode()));
}

#[test]
fn a_body_that_is_not_an_llm_request_passes_unaccounted() {
    let w = world();
    let root = root(&w, "{}");
    let mut ex = exchange(&w, root.as_ref(), Facts::default(), "not json", false);
    assert_eq!(ex.request(b"not json"), Action::Continue);
    assert_eq!(ex.sent_upstream, b"not json");
    ex.response(&[(":status", "200")], b"{}", 1);
    ex.log();
    let mut r = Record::default();
    r.set_path(PATH);
    assert_eq!(audit_bytes(&ex), Some(&r.encode()));
}

#[test]
fn a_request_answered_before_or_while_this_stage_held_it_is_logged_unaccounted() {
    let w = world();
    let root = root(&w, "{}");
    // Refused by an earlier filter: this stage only logs, with the caller auth identified.
    let mut ex = exchange(&w, root.as_ref(), auth_facts(), "", true);
    ex.log();
    let caller = Facts {
        model: None,
        ..auth_facts()
    };
    assert_eq!(audit_bytes(&ex), Some(&unaccounted(&caller).encode()));

    // Answered while the body was held here (an earlier filter's reply to the whole body).
    let body = chat(r#","stream":true"#);
    let mut ex = exchange(&w, root.as_ref(), streamed(), &body, false);
    assert_eq!(ex.request_headers(false), Action::Pause);
    ex.response(&[(":status", "403")], br#"{"error":{}}"#, 100);
    ex.log();
    assert_eq!(audit_bytes(&ex), Some(&unaccounted(&streamed()).encode()));
    let requests = format!("aimesh.gen_ai.client.requests{}", labels("gpt-4o", "k1"));
    assert_eq!(w.metrics.counter(&requests), 0);
}

#[test]
fn the_genai_histograms_carry_the_provider_name_of_the_backend_and_the_operation() {
    let w = world();
    let root = root(&w, r#"{"providers":{"llm":"openai"}}"#);
    let body = chat("");
    let mut ex = exchange(&w, root.as_ref(), auth_facts(), &body, false);
    ex.request(body.as_bytes());
    w.advance(Duration::from_millis(30));
    let resp = br#"{"model":"gpt-4o-2024","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":4}}"#;
    ex.response_headers(&[(":status", "200")], false);
    ex.response_chunk(&resp[..10], false);
    w.advance(Duration::from_millis(50));
    ex.response_chunk(&resp[10..], true);
    let genai = ".operation_name.chat.provider_name.openai.request_model.gpt-4o.model.gpt-4o-2024";
    let sample = |name: &str| w.metrics.samples(&format!("{name}{genai}"));
    assert_eq!(sample(crate::metrics::REQUEST_DURATION), vec![80]);
    for streams_only in [
        crate::metrics::TIME_TO_FIRST_TOKEN,
        crate::metrics::TIME_TO_FIRST_CHUNK,
    ] {
        assert!(
            sample(streams_only).is_empty(),
            "{streams_only}: not a stream"
        );
    }
    let output = format!("{}{genai}.token_type.output", crate::metrics::TOKEN_USAGE);
    assert_eq!(w.metrics.samples(&output), vec![4]);
}

#[test]
fn operations_by_path() {
    use crate::metrics::operation;
    assert_eq!(operation("/v1/chat/completions?x=1"), "chat");
    assert_eq!(operation("/v1/embeddings"), "embeddings");
    assert_eq!(operation("/v1/completions"), "text_completion");
    assert_eq!(operation("/mcp/docs"), "unknown");
}

/// A POST to `path` with `facts` known, its body's length declared.
fn exchange_at(w: &World, root: &dyn StageRoot, path: &str, facts: Facts, body: &str) -> Exchange {
    let len = body.len().to_string();
    let headers = [
        (":method", "POST"),
        (":path", path),
        ("content-length", &len),
    ];
    let stage = root.new_stream().expect("a stage per request");
    let mut ex = Exchange::new(w, vec![stage], &headers);
    ex.host.facts = facts;
    ex
}

const RESPONSES_STREAM: &str = concat!(
    "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"model\":\"gpt-4o-2024\",\"usage\":null}}\n\n",
    "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hello\"}\n\n",
    "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\" world\"}\n\n",
    "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"model\":\"gpt-4o-2024\",",
    "\"usage\":{\"input_tokens\":11,\"input_tokens_details\":{\"cached_tokens\":4},\"output_tokens\":2,\"total_tokens\":13}}}\n\n",
);

#[test]
fn streamed_apis_without_stream_options_are_untouched_and_responses_usage_is_read() {
    for path in ["/v1/responses", "/v1/messages"] {
        let w = world();
        let root = root(&w, "{}");
        let body = r#"{"model":"gpt-4o","input":"hi","stream":true}"#;
        let mut ex = exchange_at(&w, root.as_ref(), path, streamed(), body);
        assert_eq!(
            ex.request_headers(false),
            Action::Continue,
            "{path}: not held"
        );
        ex.request_chunk(body.as_bytes(), true);
        assert_eq!(
            ex.sent_upstream,
            body.as_bytes(),
            "{path}: no stream_options"
        );
        if path != "/v1/responses" {
            continue;
        }
        ex.response_headers(SSE, false);
        for c in RESPONSES_STREAM.as_bytes().chunks(9) {
            ex.response_chunk(c, false);
        }
        ex.response_chunk(b"", true);
        assert_eq!(ex.sent_downstream, RESPONSES_STREAM.as_bytes());
        let m = "gpt-4o-2024";
        assert_eq!(tokens(&w, m, "k1", "input", "provider"), 11);
        assert_eq!(tokens(&w, m, "k1", "cached_input", "provider"), 4);
        assert_eq!(tokens(&w, m, "k1", "output", "provider"), 2);
        let mut r = unaccounted(&streamed());
        r.set_path(path);
        r.model_served = Some(m.into());
        r.backend = Some("llm".into());
        r.upstream_status = Some(200);
        (r.input_tokens, r.cached_input_tokens, r.output_tokens) = (Some(11), Some(4), Some(2));
        (r.usage_estimated, r.truncated) = (Some(false), Some(false));
        r.cost_micro_usd = Some(0);
        // The first delta is the first token (the clock did not move).
        r.ttft_ms = Some(0);
        assert_eq!(audit_bytes(&ex), Some(&r.encode()));
    }
}

#[test]
fn legacy_completions_streams_get_include_usage_and_files_are_not_read() {
    let w = world();
    let root = root(&w, PRICES);
    let body = r#"{"model":"gpt-4o","prompt":"hi","stream":true}"#;
    let mut ex = exchange_at(&w, root.as_ref(), "/v1/completions", streamed(), body);
    assert_eq!(ex.request_headers(false), Action::Pause);
    ex.request_chunk(body.as_bytes(), true);
    let sent: serde_json::Value = serde_json::from_slice(&ex.sent_upstream).unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], true);

    let facts = Facts {
        model: None,
        ..auth_facts()
    };
    let upload = "--b\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n{}\r\n--b--\r\n";
    let mut ex = exchange_at(&w, root.as_ref(), "/v1/files", facts, upload);
    assert_eq!(ex.request_headers(false), Action::Continue, "never held");
    ex.request_chunk(upload.as_bytes(), true);
    ex.response_headers(
        &[(":status", "200"), ("content-type", "application/json")],
        false,
    );
    ex.response_chunk(br#"{"id":"file-1","object":"file"}"#, true);
    ex.log();
    let mut r = unaccounted(&auth_facts());
    r.model = None;
    r.set_path("/v1/files");
    assert_eq!(
        audit_bytes(&ex),
        Some(&r.encode()),
        "the caller, unaccounted"
    );
}

#[test]
fn operations_of_the_other_endpoints() {
    use crate::metrics::operation;
    assert_eq!(operation("/v1/responses"), "chat");
    assert_eq!(operation("/v1/audio/transcriptions"), "transcription");
    assert_eq!(operation("/v1/images/generations"), "image_generation");
    assert_eq!(operation("/v1/files/file-1/content"), "files");
}
