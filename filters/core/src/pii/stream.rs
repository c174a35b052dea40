//! Streamed responses: the text of `choices[].delta.content` (and Anthropic's
//! `content_block_delta` `text` and `partial_json`) is redacted/restored as it arrives. Only the short tail that could still be the start of a value or placeholder is
//! held back; everything before it is released at once. SSE events split anywhere by the
//! transport are reassembled first.

use std::collections::BTreeMap;

use serde_json::Value;

use super::engine::{Engine, Policy, Session};
use super::frames::SseFrames;
use super::json::{self, Seg};

/// Longest tail held while waiting for more text; a longer unbroken run is released as is.
pub const MAX_HOLD: usize = 16 * 1024;
/// Largest SSE event reassembled. A longer one (a server streaming a line without end) is not
/// parsed: its bytes pass as they come, or are dropped when responses are redacted (unread text
/// must not leak), and memory stays bounded.
pub const MAX_EVENT: usize = 4 * 1024 * 1024;
/// Spaced values (`+44 20 7946 0958`, `GB82 WEST 1234 ...`) are held up to this many bytes.
const SPACED_HOLD: usize = 64;
/// Bytes of already released text kept as context for the next scan (context words,
/// boundaries).
const CONTEXT: usize = 64;

fn numberish(c: u8) -> bool {
    c.is_ascii_digit() || c.is_ascii_uppercase() || b"+()-.x/".contains(&c)
}

fn floor_boundary(t: &str, mut i: usize) -> usize {
    while i > 0 && !t.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Start of the tail of `t` that could still grow into a value.
pub fn hold_start(t: &str) -> usize {
    let b = t.as_bytes();
    let n = b.len();
    let mut i = n;
    while i > 0 && !b[i - 1].is_ascii_whitespace() {
        i -= 1;
    }
    loop {
        if i == 0 || b[i - 1] != b' ' {
            break;
        }
        let after = b[i..]
            .iter()
            .take_while(|c| !c.is_ascii_whitespace())
            .all(|&c| numberish(c));
        if !after {
            break;
        }
        let mut k = i - 1;
        while k > 0 && numberish(b[k - 1]) {
            k -= 1;
        }
        let whole_token = k == 0 || b[k - 1].is_ascii_whitespace();
        if k == i - 1 || !whole_token || n - k > SPACED_HOLD {
            break;
        }
        i = k;
    }
    if let Some(p) = t.rfind("-----BEGIN") {
        if !t[p..].contains("-----END") {
            i = i.min(p);
        }
    }
    if n - i > MAX_HOLD {
        i = floor_boundary(t, n - MAX_HOLD);
    }
    i
}

/// Redacts/restores one choice's streamed text.
#[derive(Debug, Default, Clone)]
pub struct TextStream {
    context: String,
    pending: String,
}

impl TextStream {
    /// Adds text; returns what can be released now (possibly empty).
    pub fn push(
        &mut self,
        text: &str,
        engine: &Engine,
        policy: &Policy,
        session: &mut Session,
    ) -> String {
        self.pending.push_str(text);
        let full = format!("{}{}", self.context, self.pending);
        let ctx = self.context.len();
        let mut cut = ctx + hold_start(&self.pending);
        for (s, e) in engine.response_spans(&full, policy, session) {
            if s < cut && cut < e && s >= ctx {
                cut = s;
            }
        }
        self.release(&full, ctx, cut, engine, policy, session)
    }

    /// Releases everything still held (end of the choice or of the stream).
    pub fn finish(&mut self, engine: &Engine, policy: &Policy, session: &mut Session) -> String {
        let full = format!("{}{}", self.context, self.pending);
        let ctx = self.context.len();
        self.release(&full, ctx, full.len(), engine, policy, session)
    }

    fn release(
        &mut self,
        full: &str,
        ctx: usize,
        cut: usize,
        engine: &Engine,
        policy: &Policy,
        session: &mut Session,
    ) -> String {
        if cut <= ctx {
            return String::new();
        }
        let out = engine.respond_from(&full[..cut], ctx, policy, session);
        let keep_from = floor_boundary(full, cut.saturating_sub(CONTEXT));
        self.context = full[keep_from..cut].to_string();
        self.pending = full[cut..].to_string();
        out
    }

    /// True while text is held.
    pub fn holding(&self) -> bool {
        !self.pending.is_empty()
    }
}

/// Redacts/restores an SSE (`text/event-stream`) chat completion stream.
#[derive(Debug, Default)]
pub struct SseRedactor {
    frames: SseFrames,
    /// Per (choice index, tool-call index): `None` is the choice's `content`.
    choices: BTreeMap<(u64, Option<u64>), TextStream>,
    id: Option<Value>,
    model: Option<Value>,
    created: Option<Value>,
    /// Anthropic content blocks seen, by the same key as `choices` (block index, `None`): true
    /// for a `tool_use` block (`input_json_delta`), false for text.
    blocks: BTreeMap<(u64, Option<u64>), bool>,
}

/// The payload of one SSE event: its `data:` lines joined by newlines (one space after the
/// colon dropped, as the SSE spec says); `None` when it has none (a comment, `event:` only).
pub(crate) fn event_data(text: &str) -> Option<String> {
    let data: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.strip_prefix(' ').unwrap_or(d))
        .collect();
    (!data.is_empty()).then(|| data.join("\n"))
}

/// `choices[k].delta.content` and `choices[k].delta.tool_calls[j].function.arguments`.
fn delta_text(path: &[Seg<'_>]) -> bool {
    let key = |s: &Seg<'_>, n: &str| matches!(s, Seg::Key(k) if k == n);
    match path {
        [c, Seg::Index(_), d, t] => key(c, "choices") && key(d, "delta") && key(t, "content"),
        [c, Seg::Index(_), d, tc, Seg::Index(_), f, a] => {
            key(c, "choices")
                && key(d, "delta")
                && key(tc, "tool_calls")
                && key(f, "function")
                && key(a, "arguments")
        }
        _ => false,
    }
}

impl SseRedactor {
    /// Feeds response body bytes; returns the bytes to send on now.
    pub fn push(
        &mut self,
        chunk: &[u8],
        eos: bool,
        engine: &Engine,
        policy: &Policy,
        session: &mut Session,
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(chunk.len() + 64);
        let mut frames = std::mem::take(&mut self.frames);
        frames.push(chunk, eos, !policy.redact_responses, &mut out, |ev, out| {
            self.event(ev, engine, policy, session, out);
        });
        self.frames = frames;
        if eos {
            self.flush_all(engine, policy, session, &mut out);
        }
        out
    }

    /// Bytes of oversize events dropped (redacting) or passed unread (restoring only).
    pub fn unread(&self) -> u64 {
        self.frames.unread
    }

    fn flush_all(
        &mut self,
        engine: &Engine,
        policy: &Policy,
        session: &mut Session,
        out: &mut Vec<u8>,
    ) {
        let keys: Vec<(u64, Option<u64>)> = self.choices.keys().copied().collect();
        for k in keys {
            self.flush(k, engine, policy, session, out);
        }
    }

    fn flush(
        &mut self,
        key: (u64, Option<u64>),
        engine: &Engine,
        policy: &Policy,
        session: &mut Session,
        out: &mut Vec<u8>,
    ) {
        let Some(s) = self.choices.get_mut(&key) else {
            return;
        };
        let text = s.finish(engine, policy, session);
        if !text.is_empty() {
            out.extend_from_slice(&self.synthetic(key, &text));
        }
    }

    /// A content-only chunk carrying released text that has no event of its own.
    fn synthetic(&self, (index, tool): (u64, Option<u64>), text: &str) -> Vec<u8> {
        if let Some(json) = self.blocks.get(&(index, tool)) {
            let delta = if *json {
                serde_json::json!({"type": "input_json_delta", "partial_json": text})
            } else {
                serde_json::json!({"type": "text_delta", "text": text})
            };
            let v =
                serde_json::json!({"type": "content_block_delta", "index": index, "delta": delta});
            return format!("event: content_block_delta\ndata: {v}\n\n").into_bytes();
        }
        let delta = match tool {
            None => serde_json::json!({"content": text}),
            Some(t) => {
                serde_json::json!({"tool_calls": [{"index": t, "function": {"arguments": text}}]})
            }
        };
        let mut v = serde_json::json!({
            "id": self.id.clone().unwrap_or(Value::Null),
            "object": "chat.completion.chunk",
            "model": self.model.clone().unwrap_or(Value::Null),
            "choices": [{"index": index, "delta": delta, "finish_reason": null}],
        });
        if let Some(c) = &self.created {
            v["created"] = c.clone();
        }
        format!("data: {v}\n\n").into_bytes()
    }

    fn event(
        &mut self,
        ev: &[u8],
        engine: &Engine,
        policy: &Policy,
        session: &mut Session,
        out: &mut Vec<u8>,
    ) {
        let Ok(text) = std::str::from_utf8(ev) else {
            out.extend_from_slice(ev);
            return;
        };
        let Some(data) = event_data(text) else {
            out.extend_from_slice(ev);
            return;
        };
        if data.trim() == "[DONE]" {
            self.flush_all(engine, policy, session, out);
            out.extend_from_slice(ev);
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(&data) else {
            out.extend_from_slice(ev);
            return;
        };
        if let Some(kind) = v.get("type").and_then(Value::as_str) {
            if v.get("choices").is_none() {
                return self
                    .anthropic_event(kind, &v, text, &data, ev, engine, policy, session, out);
            }
        }
        for (k, slot) in [
            ("id", &mut self.id),
            ("model", &mut self.model),
            ("created", &mut self.created),
        ] {
            if let Some(x) = v.get(k) {
                *slot = Some(x.clone());
            }
        }
        let choices = v
            .get("choices")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let index_of = |k: usize| {
            choices
                .get(k)
                .and_then(|c| c.get("index"))
                .and_then(Value::as_u64)
                .unwrap_or(k as u64)
        };
        let finished: Vec<u64> = choices
            .iter()
            .enumerate()
            .filter(|(_, c)| c.get("finish_reason").is_some_and(|f| !f.is_null()))
            .map(|(k, _)| index_of(k))
            .collect();
        let Ok(spans) = json::strings(data.as_bytes(), &delta_text) else {
            out.extend_from_slice(ev);
            return;
        };
        let tool_index = |k: usize, j: usize| {
            choices
                .get(k)
                .and_then(|c| c.pointer("/delta/tool_calls"))
                .and_then(|t| t.get(j))
                .and_then(|t| t.get("index"))
                .and_then(Value::as_u64)
                .unwrap_or(j as u64)
        };
        let mut new = String::with_capacity(data.len());
        let mut last = 0;
        let mut changed = false;
        let mut flushed_inline: Vec<(u64, Option<u64>)> = Vec::new();
        for span in &spans {
            let index = index_of(span.idx[0]);
            let key = (
                index,
                (span.idx[1] != usize::MAX).then(|| tool_index(span.idx[0], span.idx[1])),
            );
            let Some(t) = json::decode(data.as_bytes(), *span) else {
                continue;
            };
            let stream = self.choices.entry(key).or_default();
            let mut released = stream.push(&t, engine, policy, session);
            if finished.contains(&index) {
                released.push_str(&stream.finish(engine, policy, session));
                flushed_inline.push(key);
            }
            if released != t {
                new.push_str(&data[last..span.start]);
                new.push_str(&serde_json::to_string(&released).unwrap_or_default());
                last = span.end;
                changed = true;
            }
        }
        let ended: Vec<(u64, Option<u64>)> = self
            .choices
            .keys()
            .filter(|k| finished.contains(&k.0) && !flushed_inline.contains(k))
            .copied()
            .collect();
        for key in ended {
            self.flush(key, engine, policy, session, out);
        }
        if !changed {
            out.extend_from_slice(ev);
            return;
        }
        new.push_str(&data[last..]);
        for line in text.lines() {
            if !line.starts_with("data:") && !line.is_empty() {
                out.extend_from_slice(line.as_bytes());
                out.push(b'\n');
            }
        }
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(new.as_bytes());
        out.extend_from_slice(b"\n\n");
    }
}

/// Anthropic's `content_block_delta` text: `delta.text` and `delta.partial_json`.
fn anthropic_delta_text(path: &[Seg<'_>]) -> bool {
    matches!(path, [Seg::Key(d), Seg::Key(t)] if d == "delta" && (t == "text" || t == "partial_json"))
}

impl SseRedactor {
    /// One Anthropic Messages event: a block's deltas go through its [`TextStream`]; the text
    /// it still holds is released in its own delta event before the block's `content_block_stop`
    /// (or before `message_delta` / `message_stop`), so the client sees every byte in order.
    #[allow(clippy::too_many_arguments)]
    fn anthropic_event(
        &mut self,
        kind: &str,
        v: &Value,
        text: &str,
        data: &str,
        ev: &[u8],
        engine: &Engine,
        policy: &Policy,
        session: &mut Session,
        out: &mut Vec<u8>,
    ) {
        let key = (v.get("index").and_then(Value::as_u64).unwrap_or(0), None);
        match kind {
            "content_block_stop" => self.flush(key, engine, policy, session, out),
            "message_delta" | "message_stop" => self.flush_all(engine, policy, session, out),
            "content_block_delta" => {}
            _ => {
                out.extend_from_slice(ev);
                return;
            }
        }
        let Ok(spans) = json::strings(data.as_bytes(), &anthropic_delta_text) else {
            out.extend_from_slice(ev);
            return;
        };
        let mut new = String::with_capacity(data.len());
        let mut last = 0;
        let mut changed = false;
        for span in &spans {
            let Some(t) = json::decode(data.as_bytes(), *span) else {
                continue;
            };
            let is_json = v.pointer("/delta/partial_json").is_some();
            self.blocks.insert(key, is_json);
            let released = self
                .choices
                .entry(key)
                .or_default()
                .push(&t, engine, policy, session);
            if released != t {
                new.push_str(&data[last..span.start]);
                new.push_str(&serde_json::to_string(&released).unwrap_or_default());
                last = span.end;
                changed = true;
            }
        }
        if !changed {
            out.extend_from_slice(ev);
            return;
        }
        new.push_str(&data[last..]);
        for line in text.lines() {
            if !line.starts_with("data:") && !line.is_empty() {
                out.extend_from_slice(line.as_bytes());
                out.push(b'\n');
            }
        }
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(new.as_bytes());
        out.extend_from_slice(b"\n\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pii::PiiConfig;

    fn engine(json: &str) -> Engine {
        let cfg: PiiConfig = serde_json::from_str(json).unwrap();
        Engine::new(&cfg).unwrap()
    }

    fn chunk(text: &str) -> String {
        let v = serde_json::json!({"id":"c","object":"chat.completion.chunk","model":"m",
            "choices":[{"index":0,"delta":{"content":text},"finish_reason":null}]});
        format!("data: {v}\n\n")
    }

    fn sse_text(out: &[u8]) -> String {
        let s = String::from_utf8(out.to_vec()).unwrap();
        s.split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter_map(|v| {
                v.pointer("/choices/0/delta/content")
                    .and_then(Value::as_str)
                    .map(String::from)
            })
            .collect()
    }

    fn stream(deltas: &[&str], split: usize, e: &Engine, s: &mut Session) -> String {
        let p = e.policy(0).clone();
        let mut body: String = deltas.iter().map(|d| chunk(d)).collect();
        body.push_str("data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n");
        let mut r = SseRedactor::default();
        let mut out = Vec::new();
        let bytes = body.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let j = (i + split).min(bytes.len());
            out.extend(r.push(&bytes[i..j], j == bytes.len(), e, &p, s));
            i = j;
        }
        sse_text(&out)
    }

    #[test]
    fn value_split_at_every_byte_never_leaks() {
        let e = engine("{}");
        let text =
            "Write to jane.doe@example.com or call +1 415 555 0123, card 4111 1111 1111 1111 ok é.";
        for cut in 1..text.len() {
            if !text.is_char_boundary(cut) {
                continue;
            }
            for split in [1, 7, 1000] {
                let out = stream(
                    &[&text[..cut], &text[cut..]],
                    split,
                    &e,
                    &mut Session::default(),
                );
                assert_eq!(
                    out, "Write to [EMAIL_1] or call [PHONE_1], card [CREDIT_CARD_1] ok é.",
                    "cut {cut} split {split}"
                );
            }
        }
    }

    #[test]
    fn placeholder_split_at_every_byte_is_restored() {
        let e = engine(r#"{"policies":{"default":{"restore":true}}}"#);
        let p = e.policy(0).clone();
        let mut s = Session::default();
        e.redact("me: jane@example.com", &p, &mut s).unwrap();
        let reply = "Hello [EMAIL_1], noted [EMAIL_1].";
        for cut in 1..reply.len() {
            let out = stream(&[&reply[..cut], &reply[cut..]], 5, &e, &mut s);
            assert_eq!(
                out, "Hello jane@example.com, noted jane@example.com.",
                "cut {cut}"
            );
        }
    }

    #[test]
    fn releases_everything_but_a_short_tail() {
        let e = engine("{}");
        let p = e.policy(0).clone();
        let mut s = Session::default();
        let mut t = TextStream::default();
        assert_eq!(t.push("hello there friend", &e, &p, &mut s), "hello there ");
        assert_eq!(t.push(" of mine ", &e, &p, &mut s), "friend of mine ");
        assert!(!t.holding());
        assert_eq!(t.push("call +1 415", &e, &p, &mut s), "call ");
        assert_eq!(t.finish(&e, &p, &mut s), "+1 415");
    }

    #[test]
    fn streamed_tool_call_arguments_are_restored() {
        let e = engine(r#"{"policies":{"default":{"restore":true}}}"#);
        let p = e.policy(0).clone();
        let mut s = Session::default();
        e.redact("me: jane@example.com", &p, &mut s).unwrap();
        let args = r#"{"to": "[EMAIL_1]", "n": 1}"#;
        let ev = |frag: &str| {
            let v = serde_json::json!({"id":"c","choices":[{"index":0,"delta":{"tool_calls":[
                {"index":0,"function":{"arguments":frag}}]},"finish_reason":null}]});
            format!("data: {v}\n\n")
        };
        for cut in 1..args.len() {
            let body = format!(
                "{}{}data: {{\"choices\":[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"tool_calls\"}}]}}\n\ndata: [DONE]\n\n",
                ev(&args[..cut]),
                ev(&args[cut..])
            );
            let out = SseRedactor::default().push(body.as_bytes(), true, &e, &p, &mut s);
            let got: String = String::from_utf8(out)
                .unwrap()
                .split("\n\n")
                .filter_map(|x| x.strip_prefix("data: "))
                .filter_map(|d| serde_json::from_str::<Value>(d).ok())
                .filter_map(|v| {
                    v.pointer("/choices/0/delta/tool_calls/0/function/arguments")
                        .and_then(Value::as_str)
                        .map(String::from)
                })
                .collect();
            assert_eq!(got, r#"{"to": "jane@example.com", "n": 1}"#, "cut {cut}");
        }
    }

    #[test]
    fn unchanged_events_pass_byte_identical() {
        let e = engine("{}");
        let p = e.policy(0).clone();
        let body = format!("{}{}data: [DONE]\n\n", chunk("hello "), chunk("world. "));
        let mut r = SseRedactor::default();
        let out = r.push(body.as_bytes(), true, &e, &p, &mut Session::default());
        assert_eq!(String::from_utf8(out).unwrap(), body);
    }

    #[test]
    fn an_event_without_end_is_bounded_and_the_next_events_still_work() {
        let e = engine(r#"{"policies":{"default":{"restore":true,"redact_responses":false}}}"#);
        let p = e.policy(0).clone();
        let mut s = Session::default();
        e.redact("me: jane@example.com", &p, &mut s).unwrap();
        let block = vec![b'a'; 64 * 1024];
        let mut r = SseRedactor::default();
        let mut out = r.push(b"data: {\"x\":\"", false, &e, &p, &mut s);
        for _ in 0..(2 * MAX_EVENT / block.len()) {
            out.extend(r.push(&block, false, &e, &p, &mut s));
            assert!(r.frames.buf.len() <= MAX_EVENT + block.len());
        }
        // Restoring only: the unread bytes went on as they came.
        assert!(out.len() >= MAX_EVENT);
        assert!(r.unread() > 0);
        out.clear();
        out.extend(r.push(b"\"}\n\n", false, &e, &p, &mut s));
        out.extend(r.push(chunk("Hi [EMAIL_1].").as_bytes(), true, &e, &p, &mut s));
        assert_eq!(sse_text(&out), "Hi jane@example.com.");
        // Redacting responses: unread text never goes out.
        let e = engine(r#"{"policies":{"default":{"redact_responses":true}}}"#);
        let p = e.policy(0).clone();
        let mut r = SseRedactor::default();
        let mut out = r.push(b"data: {\"x\":\"", false, &e, &p, &mut s);
        for _ in 0..(2 * MAX_EVENT / block.len()) {
            out.extend(r.push(&block, false, &e, &p, &mut s));
        }
        out.extend(r.push(b"\"}\n\n", false, &e, &p, &mut s));
        assert!(out.len() < MAX_EVENT, "{}", out.len());
        out.extend(r.push(
            chunk("mail jane@example.com").as_bytes(),
            true,
            &e,
            &p,
            &mut s,
        ));
        assert_eq!(sse_text(&out), "mail [EMAIL_1]");
    }

    fn anthropic_body(texts: &[&str], json: &[&str]) -> String {
        let ev = |name: &str, v: Value| format!("event: {name}\ndata: {v}\n\n");
        let mut b = ev(
            "message_start",
            serde_json::json!({"type":"message_start","message":{"id":"m","model":"c","content":[],"usage":{"input_tokens":1,"output_tokens":1}}}),
        );
        b += &ev(
            "content_block_start",
            serde_json::json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
        );
        for t in texts {
            b += &ev(
                "content_block_delta",
                serde_json::json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":t}}),
            );
        }
        b += &ev(
            "content_block_stop",
            serde_json::json!({"type":"content_block_stop","index":0}),
        );
        b += &ev(
            "content_block_start",
            serde_json::json!({"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t","name":"f","input":{}}}),
        );
        for j in json {
            b += &ev(
                "content_block_delta",
                serde_json::json!({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":j}}),
            );
        }
        b += &ev(
            "content_block_stop",
            serde_json::json!({"type":"content_block_stop","index":1}),
        );
        b += &ev(
            "message_delta",
            serde_json::json!({"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":9}}),
        );
        b += &ev("message_stop", serde_json::json!({"type":"message_stop"}));
        b
    }

    #[test]
    fn anthropic_text_and_tool_input_are_restored_at_every_split() {
        let e = engine(r#"{"policies":{"default":{"restore":true}}}"#);
        let p = e.policy(0).clone();
        let mut s = Session::default();
        let req = br#"{"model":"c","messages":[{"role":"user","content":"a@x.com"}]}"#;
        crate::pii::json::redact_request(&e, &p, &mut s, req).unwrap();
        let body = anthropic_body(
            &["mail [EMA", "IL_1] now"],
            &["{\"to\": \"[EMAIL", "_1]\"}"],
        );
        for split in [1, 2, 3, 7, 50, body.len()] {
            let mut r = SseRedactor::default();
            let mut out = Vec::new();
            let bytes = body.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                let j = (i + split).min(bytes.len());
                out.extend(r.push(&bytes[i..j], j == bytes.len(), &e, &p, &mut s));
                i = j;
            }
            let out = String::from_utf8(out).unwrap();
            let (mut text, mut json, mut names) = (String::new(), String::new(), Vec::new());
            for ev in out.split("\n\n").filter(|e| !e.is_empty()) {
                let name = ev.lines().next().unwrap().strip_prefix("event: ").unwrap();
                let data = ev.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
                let v: Value = serde_json::from_str(data).unwrap();
                assert_eq!(v["type"], name, "split {split}");
                names.push(name.to_string());
                if let Some(t) = v.pointer("/delta/text").and_then(Value::as_str) {
                    assert!(names.iter().filter(|n| *n == "content_block_stop").count() == 0);
                    text.push_str(t);
                }
                if let Some(t) = v.pointer("/delta/partial_json").and_then(Value::as_str) {
                    json.push_str(t);
                }
            }
            assert_eq!(text, "mail a@x.com now", "split {split}");
            assert_eq!(json, r#"{"to": "a@x.com"}"#, "split {split}");
            assert_eq!(names.last().map(String::as_str), Some("message_stop"));
            assert_eq!(
                names.iter().filter(|n| *n == "content_block_stop").count(),
                2
            );
        }
    }
}
