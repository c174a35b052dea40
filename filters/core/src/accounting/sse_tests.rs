use super::*;

const MAX: usize = 1 << 20;

const STREAM: &str = concat!(
    "data: {\"model\":\"m1\",\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}],\"usage\":null}\n\n",
    "data: {\"model\":\"m1\",\"choices\":[{\"delta\":{\"content\":\"héllo\"}}],\"usage\":null}\r\n\r\n",
    ": keep-alive\n\n",
    "data: {\"model\":\"m1\",\"choices\":[{\"delta\":{\"content\":\" world\"}}],\"usage\":null}\n\n",
    "data: {\"model\":\"m1\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\n",
    "data: [DONE]\n\n",
);

fn without_usage_event() -> String {
    STREAM
        .split_inclusive("\n\n")
        .filter(|e| !e.contains("\"choices\":[]"))
        .collect()
}

fn run(strip: bool, cuts: &[usize]) -> (Vec<u8>, SseTap) {
    let bytes = STREAM.as_bytes();
    let mut tap = SseTap::new(strip, MAX);
    let mut out = Vec::new();
    let mut last = 0;
    for &c in cuts.iter().chain(std::iter::once(&bytes.len())) {
        let chunk = &bytes[last..c];
        match tap.feed(chunk) {
            Forward::Unchanged => out.extend_from_slice(chunk),
            Forward::Replace(b) => out.extend(b),
        }
        last = c;
    }
    out.extend(tap.finish());
    (out, tap)
}

fn check(cuts: &[usize]) {
    let (out, tap) = run(false, cuts);
    assert_eq!(out, STREAM.as_bytes(), "cuts {cuts:?}");
    let want = Some(Usage {
        input: 3,
        cached_input: 0,
        output: 2,
        cache_write: 0,
    });
    assert_eq!(tap.facts.usage, want);
    assert_eq!(tap.facts.text, "héllo world");
    assert_eq!(tap.facts.model.as_deref(), Some("m1"));
    let (out, tap) = run(true, cuts);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        without_usage_event(),
        "cuts {cuts:?}"
    );
    assert_eq!(tap.facts.usage, want);
    assert_eq!(tap.facts.dropped, 1);
}

#[test]
fn every_single_and_double_cut() {
    let n = STREAM.len();
    for i in 0..=n {
        check(&[i]);
    }
    for i in (0..=n).step_by(3) {
        for j in (i..=n).step_by(7) {
            check(&[i, j]);
        }
    }
}

#[test]
fn byte_at_a_time() {
    let cuts: Vec<usize> = (1..STREAM.len()).collect();
    check(&cuts);
}

#[test]
fn ordinary_events_are_released_before_they_end() {
    let mut tap = SseTap::new(true, MAX);
    let part = b"data: {\"id\":\"x\",\"choices\":[{\"delta\":{\"content\":\"ab";
    assert_eq!(tap.feed(part), Forward::Unchanged);
    let part = b"data: {\"id\":\"x\",\"choices\":[],\"usage\":{\"prompt_tokens\":1";
    let mut tap = SseTap::new(true, MAX);
    assert_eq!(tap.feed(part), Forward::Replace(Vec::new()));
    assert_eq!(tap.feed(b"}}\n\n"), Forward::Replace(Vec::new()));
    assert_eq!(tap.facts.dropped, 1);
}

#[test]
fn unterminated_last_event_is_read() {
    let mut tap = SseTap::new(true, MAX);
    let ev = b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}";
    assert_eq!(tap.feed(ev), Forward::Replace(Vec::new()));
    assert_eq!(tap.finish(), Vec::<u8>::new());
    assert_eq!(tap.facts.usage.map(|u| u.output), Some(1));
    let mut tap = SseTap::new(true, MAX);
    let ev = b"data: {\"choices\":[]";
    assert_eq!(tap.feed(ev), Forward::Replace(Vec::new()));
    assert_eq!(tap.finish(), ev.to_vec());
}

#[test]
fn malformed_events_pass_through() {
    let s = b"data: {\"choices\": [\n\nthis line is not sse\n\ndata: [DONE]\n\n";
    let mut tap = SseTap::new(true, MAX);
    let mut out = match tap.feed(s) {
        Forward::Unchanged => s.to_vec(),
        Forward::Replace(b) => b,
    };
    out.extend(tap.finish());
    assert_eq!(out, s.to_vec());
    assert_eq!(tap.facts.usage, None);
}

/// Feeds `chunks`, then finishes; returns what the client got.
fn through(tap: &mut SseTap, chunks: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in chunks {
        match tap.feed(c) {
            Forward::Unchanged => out.extend_from_slice(c),
            Forward::Replace(b) => out.extend(b),
        }
    }
    out.extend(tap.finish());
    out
}

#[test]
fn a_line_without_end_is_bounded_counted_and_released() {
    let max = 1024;
    for strip in [false, true] {
        let mut tap = SseTap::new(strip, max);
        let head = b"data: {\"choices\":[{\"delta\":{\"content\":\"";
        let mut got = match tap.feed(head) {
            Forward::Unchanged => head.to_vec(),
            Forward::Replace(b) => b,
        };
        let chunk = vec![b'a'; 4096];
        for _ in 0..64 {
            match tap.feed(&chunk) {
                Forward::Unchanged => got.extend_from_slice(&chunk),
                Forward::Replace(b) => got.extend(b),
            }
            // Never more than the limit kept, whatever the line's length.
            assert!(tap.line.capacity() <= max && tap.held.len() <= max + chunk.len());
        }
        // Strip mode released the bytes it could not hold: the client has them before the end.
        assert_eq!(got.len(), head.len() + 64 * chunk.len(), "strip {strip}");
        // The whole line is counted (its `data: ` too: a few bytes, erring high).
        assert_eq!(tap.facts.skipped, (head.len() + 64 * chunk.len()) as u64);
        assert_eq!(tap.facts.usage, None);
        assert!(tap.finish().is_empty());
    }
}

#[test]
fn usage_after_an_overlong_event_is_still_read() {
    let long = format!(
        "data: {{\"choices\":[{{\"delta\":{{\"content\":\"{}\"}}}}]}}\n\n",
        "x".repeat(5000)
    );
    let tail = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":9}}\n\ndata: [DONE]\n\n";
    let mut tap = SseTap::new(true, 1024);
    let out = through(&mut tap, &[long.as_bytes(), tail.as_bytes()]);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!("{long}data: [DONE]\n\n")
    );
    assert_eq!(tap.facts.usage.map(|u| u.output), Some(9));
    assert_eq!(tap.facts.dropped, 1);
    assert!(tap.facts.skipped > 5000);
}

#[test]
fn multi_line_data_past_the_limit_is_skipped_and_text_is_capped() {
    // Lines under the limit, joined data over it.
    let mut tap = SseTap::new(false, 64);
    let ev = format!("data: {}\ndata: {}\n\n", "a".repeat(40), "b".repeat(40));
    through(&mut tap, &[ev.as_bytes()]);
    assert_eq!(tap.facts.skipped, 80);
    assert_eq!(tap.facts.events, 0);
    // Text past the limit is counted, not kept.
    let mut tap = SseTap::new(false, 100);
    let ev = |t: &str| format!("data: {{\"choices\":[{{\"delta\":{{\"content\":\"{t}\"}}}}]}}\n\n");
    let (a, b) = (ev("hello"), ev("0123456789"));
    let chunks: Vec<&[u8]> = vec![a.as_bytes(); 20];
    through(&mut tap, &chunks);
    through(&mut tap, &[b.as_bytes()]);
    assert_eq!(tap.facts.text.len(), 100);
    assert_eq!(tap.facts.skipped, 10);
}

#[test]
fn the_limit_cuts_nothing_under_it() {
    for max in [STREAM.len(), 200] {
        let mut tap = SseTap::new(true, max);
        through(&mut tap, &[STREAM.as_bytes()]);
        assert_eq!(tap.facts.skipped, 0, "max {max}");
        assert_eq!(tap.facts.text, "héllo world");
    }
}
