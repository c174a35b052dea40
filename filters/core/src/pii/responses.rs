//! Streamed Responses API replies (`/v1/responses`, `stream: true`): the text of
//! `response.output_text.delta` events is restored/redacted as it arrives, per
//! `(output_index, content_index)`, holding back only the tail that could still be the start of a
//! value or placeholder ([`TextStream`], as for chat deltas). Held text is released in a delta
//! event of its own before the part's `response.output_text.done`, or at the end of the stream.
//! The whole texts the later events repeat (`text`, `part.text`, `item.content[].text`,
//! `response.output[].content[].text`) are transformed as whole values.

use std::collections::BTreeMap;

use serde_json::Value;

use super::engine::{Engine, Policy, Session};
use super::frames::SseFrames;
use super::json::{self, Seg};
use super::stream::{event_data, TextStream};

/// One output part's stream and the `item_id` its events carry.
#[derive(Debug, Default)]
struct Part {
    text: TextStream,
    item_id: Value,
}

/// Redacts/restores a Responses SSE stream.
#[derive(Debug, Default)]
pub struct ResponsesSse {
    frames: SseFrames,
    parts: BTreeMap<(u64, u64), Part>,
}

const DELTA: &str = "response.output_text.delta";
const DONE: &str = "response.output_text.done";

fn delta_member(path: &[Seg<'_>]) -> bool {
    matches!(path, [Seg::Key(k)] if k == "delta")
}

/// The whole texts repeated by the `.done` and `response.*` events.
fn whole_text(path: &[Seg<'_>]) -> bool {
    matches!(path.last(), Some(Seg::Key(k)) if k == "text")
}

fn index(v: &Value, name: &str) -> u64 {
    v.get(name).and_then(Value::as_u64).unwrap_or(0)
}

impl ResponsesSse {
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
            let keys: Vec<(u64, u64)> = self.parts.keys().copied().collect();
            for k in keys {
                self.flush(k, engine, policy, session, &mut out);
            }
        }
        out
    }

    /// Releases what a part still holds, as a delta event of its own.
    fn flush(
        &mut self,
        key: (u64, u64),
        engine: &Engine,
        policy: &Policy,
        session: &mut Session,
        out: &mut Vec<u8>,
    ) {
        let Some(p) = self.parts.get_mut(&key) else {
            return;
        };
        let text = p.text.finish(engine, policy, session);
        if text.is_empty() {
            return;
        }
        let v = serde_json::json!({"type": DELTA, "item_id": p.item_id, "output_index": key.0,
            "content_index": key.1, "delta": text});
        out.extend_from_slice(format!("event: {DELTA}\ndata: {v}\n\n").as_bytes());
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
        let Ok(v) = serde_json::from_str::<Value>(&data) else {
            out.extend_from_slice(ev);
            return;
        };
        let kind = v.get("type").and_then(Value::as_str).unwrap_or_default();
        let key = (index(&v, "output_index"), index(&v, "content_index"));
        if kind == DONE {
            self.flush(key, engine, policy, session, out);
            self.parts.remove(&key);
        }
        let new = if kind == DELTA {
            let part = self.parts.entry(key).or_default();
            if let Some(id) = v.get("item_id") {
                part.item_id = id.clone();
            }
            let mut f = |_: json::Span, s: &str| {
                let released = part.text.push(s, engine, policy, session);
                (released != s).then_some(released)
            };
            json::rewrite(data.as_bytes(), &delta_member, &mut f)
        } else {
            let mut f = |_: json::Span, s: &str| engine.respond(s, policy, session);
            json::rewrite(data.as_bytes(), &whole_text, &mut f)
        };
        let Ok(Some(new)) = new else {
            out.extend_from_slice(ev);
            return;
        };
        for line in text.lines() {
            if !line.starts_with("data:") && !line.is_empty() {
                out.extend_from_slice(line.as_bytes());
                out.push(b'\n');
            }
        }
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&new);
        out.extend_from_slice(b"\n\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pii::PiiConfig;

    fn engine() -> Engine {
        let cfg: PiiConfig =
            serde_json::from_str(r#"{"policies":{"default":{"restore":true}}}"#).unwrap();
        Engine::new(&cfg).unwrap()
    }

    fn delta(d: &str) -> String {
        let v = serde_json::json!({"type": DELTA, "item_id": "msg_1", "output_index": 0,
            "content_index": 0, "delta": d});
        format!("event: {DELTA}\ndata: {v}\n\n")
    }

    fn done(t: &str) -> String {
        let v = serde_json::json!({"type": DONE, "item_id": "msg_1", "output_index": 0,
            "content_index": 0, "text": t});
        let c = serde_json::json!({"type": "response.completed", "response": {"output": [
            {"type": "message", "content": [{"type": "output_text", "text": t}]}],
            "usage": {"input_tokens": 1, "output_tokens": 2}}});
        format!("event: {DONE}\ndata: {v}\n\nevent: response.completed\ndata: {c}\n\n")
    }

    /// The deltas' text and the completed response's text a client reads.
    fn read(out: &[u8]) -> (String, String) {
        let s = String::from_utf8(out.to_vec()).unwrap();
        let mut deltas = String::new();
        let mut whole = String::new();
        for ev in s.split("\n\n").filter(|e| !e.is_empty()) {
            let data = ev.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            let v: Value = serde_json::from_str(data).unwrap();
            match v["type"].as_str().unwrap() {
                DELTA => deltas.push_str(v["delta"].as_str().unwrap()),
                "response.completed" => {
                    whole = v["response"]["output"][0]["content"][0]["text"]
                        .as_str()
                        .unwrap()
                        .into()
                }
                _ => {}
            }
        }
        (deltas, whole)
    }

    #[test]
    fn a_placeholder_split_across_deltas_and_bytes_is_restored() {
        let e = engine();
        let p = e.policy(0);
        let mut s = Session::default();
        let sent = json::redact_request(&e, p, &mut s, br#"{"input":"mail a.b@x.com"}"#)
            .unwrap()
            .unwrap();
        assert!(String::from_utf8(sent).unwrap().contains("[EMAIL_1]"));
        let text = "write to [EMAIL_1] today";
        let mut body: String = ["write to [EM", "AIL", "_1] to", "day"]
            .iter()
            .map(|d| delta(d))
            .collect();
        body.push_str(&done(text));
        for split in 1..body.len() {
            let mut r = ResponsesSse::default();
            let mut sess = s.clone();
            let (a, b) = body.as_bytes().split_at(split);
            let mut out = r.push(a, false, &e, p, &mut sess);
            out.extend(r.push(b, true, &e, p, &mut sess));
            let (deltas, whole) = read(&out);
            assert_eq!(deltas, "write to a.b@x.com today", "split {split}");
            assert_eq!(whole, "write to a.b@x.com today", "split {split}");
        }
    }

    #[test]
    fn held_text_is_released_at_the_end_of_a_cut_stream() {
        let e = engine();
        let p = e.policy(0);
        let mut s = Session::default();
        json::redact_request(&e, p, &mut s, br#"{"input":"a.b@x.com"}"#).unwrap();
        let mut r = ResponsesSse::default();
        let out = r.push(delta("to [EMAIL_1").as_bytes(), false, &e, p, &mut s);
        assert!(!String::from_utf8_lossy(&out).contains("EMAIL"));
        let out = r.push(b"", true, &e, p, &mut s);
        assert_eq!(
            read(&out).0,
            "[EMAIL_1",
            "an unfinished placeholder is not a value"
        );
    }
}
