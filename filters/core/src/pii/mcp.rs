//! MCP tool results: the text a tool returned (`result.content[].text` of a JSON-RPC reply, one
//! message or a batch, as a JSON body or as SSE events) goes through the same response transform
//! as model text (restore placeholders the request side issued, mask what the policy masks).
//! Everything else in a reply (ids, list replies, schemas, images) is left byte for byte.

use serde_json::{json, Value};

use super::engine::{Engine, Policy, Session};
use super::frames::SseFrames;
use super::json::{rewrite, Seg};
use super::stream::event_data;
use super::PiiError;
use crate::ErrorKind;

/// `result.content[k].text` (tool results) and `result.content[k].resource.text` (a resource
/// embedded in one), `result.contents[k].text` (`resources/read`), `result.messages[k].content.text`
/// and `.content.resource.text` (`prompts/get`), and every string in `result.structuredContent`
/// (the tool result as JSON: it carries the same values), in a single message or in a batch
/// element.
pub fn tool_result_text(path: &[Seg<'_>]) -> bool {
    let key = |s: &Seg<'_>, n: &str| matches!(s, Seg::Key(k) if k == n);
    let rest = match path {
        [Seg::Index(_), rest @ ..] => rest,
        rest => rest,
    };
    let [r, rest @ ..] = rest else {
        return false;
    };
    if !key(r, "result") {
        return false;
    }
    match rest {
        [c, Seg::Index(_), t] => key(t, "text") && (key(c, "content") || key(c, "contents")),
        // An embedded resource in a tool result, or a `prompts/get` message's text.
        [a, Seg::Index(_), b, t] => {
            key(t, "text")
                && ((key(a, "content") && key(b, "resource"))
                    || (key(a, "messages") && key(b, "content")))
        }
        // A resource embedded in a `prompts/get` message.
        [m, Seg::Index(_), c, e, t] => {
            key(m, "messages") && key(c, "content") && key(e, "resource") && key(t, "text")
        }
        [s, _, ..] => key(s, "structuredContent"),
        _ => false,
    }
}

/// Transforms one JSON-RPC reply document. `None`: unchanged or not JSON (passed as it came).
pub fn respond_reply(
    engine: &Engine,
    policy: &Policy,
    session: &mut Session,
    doc: &[u8],
) -> Option<Vec<u8>> {
    let mut f = |_, s: &str| engine.respond(s, policy, session);
    rewrite(doc, &tool_result_text, &mut f).ok().flatten()
}

/// JSON-RPC code of a call the policy refuses: the MCP stage's code for policy refusals.
pub const REFUSED: i64 = -32003;

/// The gateway's JSON-RPC answer (HTTP 200) to a request body `err` refuses: an error per
/// request of a batch (the batch went nowhere), or one carrying the message's `id` (`null` when
/// it has none or the body cannot be read).
pub fn refusal(body: &[u8], err: &PiiError) -> Vec<u8> {
    let one = |id: &Value| {
        json!({"jsonrpc": "2.0", "id": id, "error": {"code": REFUSED,
            "message": err.to_string(), "data": {"code": err.code()}}})
    };
    let v: Value = match serde_json::from_slice(body) {
        Ok(Value::Array(msgs)) => {
            let ids: Vec<Value> = msgs
                .iter()
                .filter(|m| m.get("method").is_some())
                .filter_map(|m| m.get("id").cloned())
                .map(|id| one(&id))
                .collect();
            if ids.is_empty() {
                Value::Array(vec![one(&Value::Null)])
            } else {
                Value::Array(ids)
            }
        }
        Ok(m) => one(m.get("id").unwrap_or(&Value::Null)),
        Err(_) => one(&Value::Null),
    };
    v.to_string().into_bytes()
}

/// An MCP SSE reply stream, split anywhere: each event's `data` is one whole JSON-RPC message,
/// so an event is held until its blank line and rewritten only when its text changes (other
/// lines such as `id:` kept, so a client can resume). Events past [`MAX_EVENT`](super::stream::MAX_EVENT) are not
/// reassembled: dropped when the policy masks responses (unscanned text never goes out), passed
/// as they come when it only restores.
#[derive(Debug, Default)]
pub struct McpSse {
    frames: SseFrames,
}

impl McpSse {
    /// Feeds response body bytes; returns the bytes to send on now.
    pub fn push(
        &mut self,
        chunk: &[u8],
        eos: bool,
        engine: &Engine,
        policy: &Policy,
        session: &mut Session,
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(chunk.len());
        self.frames
            .push(chunk, eos, !policy.redact_responses, &mut out, |ev, out| {
                out.extend_from_slice(&event(ev, engine, policy, session));
            });
        out
    }

    /// Bytes of oversize events dropped or passed unread.
    pub fn unread(&self) -> u64 {
        self.frames.unread
    }
}

/// One event, rewritten when its data is a reply whose tool text changes.
fn event(ev: &[u8], engine: &Engine, policy: &Policy, session: &mut Session) -> Vec<u8> {
    let Ok(text) = std::str::from_utf8(ev) else {
        return ev.to_vec();
    };
    let Some(data) = event_data(text) else {
        return ev.to_vec();
    };
    let Some(new) = respond_reply(engine, policy, session, data.as_bytes()) else {
        return ev.to_vec();
    };
    // Non-data lines kept in place of order; the one rewritten `data:` line where the first was.
    let mut out = Vec::with_capacity(ev.len() + 32);
    let mut wrote = false;
    for line in text.lines().filter(|l| !l.is_empty()) {
        if line.starts_with("data:") {
            if !wrote {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(&new);
                out.push(b'\n');
                wrote = true;
            }
            continue;
        }
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pii::stream::MAX_EVENT;
    use crate::pii::PiiConfig;

    fn engine(json: &str) -> Engine {
        let cfg: PiiConfig = serde_json::from_str(json).unwrap();
        Engine::new(&cfg).unwrap()
    }

    #[test]
    fn only_tool_result_text_is_selected() {
        let e = engine("{}");
        let p = e.policy(0).clone();
        let doc = br#"{"jsonrpc":"2.0","id":"a@b.example.org","result":{"content":[{"type":"text","text":"mail jane@example.com"},{"type":"image","data":"jane@example.com"}],"isError":false}}"#;
        let out = respond_reply(&e, &p, &mut Session::default(), doc).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["result"]["content"][0]["text"], "mail [EMAIL_1]");
        assert_eq!(v["result"]["content"][1]["data"], "jane@example.com");
        assert_eq!(v["id"], "a@b.example.org");
        let batch = br#"[{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"x jane@example.com"}]}}]"#;
        let out = respond_reply(&e, &p, &mut Session::default(), batch).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v[0]["result"]["content"][0]["text"], "x [EMAIL_1]");
        let structured = br#"{"jsonrpc":"2.0","id":1,"result":{"content":[],"structuredContent":{"result":"jane@example.com","n":[{"jane@example.com":"x"}]}}}"#;
        let out = respond_reply(&e, &p, &mut Session::default(), structured).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["result"]["structuredContent"]["result"], "[EMAIL_1]");
        assert_eq!(
            v["result"]["structuredContent"]["n"][0]["jane@example.com"],
            "x"
        );
        let resource = br#"{"jsonrpc":"2.0","id":1,"result":{"contents":[{"uri":"file:///a@b.example.org","text":"jane@example.com"}]}}"#;
        let out = respond_reply(&e, &p, &mut Session::default(), resource).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["result"]["contents"][0]["text"], "[EMAIL_1]");
        assert_eq!(v["result"]["contents"][0]["uri"], "file:///a@b.example.org");
        let embedded = br#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"resource","resource":{"uri":"mem://jane@example.com","mimeType":"text/plain","text":"jane@example.com"}}]}}"#;
        let out = respond_reply(&e, &p, &mut Session::default(), embedded).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["result"]["content"][0]["resource"]["text"], "[EMAIL_1]");
        assert_eq!(
            v["result"]["content"][0]["resource"]["uri"],
            "mem://jane@example.com"
        );
        let prompt = br#"{"jsonrpc":"2.0","id":1,"result":{"description":"jane@example.com","messages":[{"role":"user","content":{"type":"text","text":"to jane@example.com"}},{"role":"user","content":{"type":"resource","resource":{"uri":"x","text":"bob@example.org"}}}]}}"#;
        let out = respond_reply(&e, &p, &mut Session::default(), prompt).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let m = &v["result"]["messages"];
        assert_eq!(m[0]["content"]["text"], "to [EMAIL_1]");
        assert_eq!(m[1]["content"]["resource"]["text"], "[EMAIL_2]");
        assert_eq!(v["result"]["description"], "jane@example.com");
        let list = br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"t","description":"jane@example.com"}]}}"#;
        assert_eq!(respond_reply(&e, &p, &mut Session::default(), list), None);
    }

    #[test]
    fn refusals_carry_the_request_ids() {
        let err = PiiError::Blocked("US_SSN".into());
        let v: serde_json::Value = serde_json::from_slice(&refusal(
            br#"{"jsonrpc":"2.0","id":"x","method":"tools/call"}"#,
            &err,
        ))
        .unwrap();
        assert_eq!(v["id"], "x");
        assert_eq!(v["error"]["code"], REFUSED);
        assert_eq!(v["error"]["data"]["code"], "pii_detected");
        let batch = br#"[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","method":"n"},{"jsonrpc":"2.0","id":2,"method":"b"}]"#;
        let v: serde_json::Value = serde_json::from_slice(&refusal(batch, &err)).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 2);
        assert_eq!(v[1]["id"], 2);
    }

    #[test]
    fn oversize_event_is_dropped_when_masking_and_passed_when_restoring_only() {
        let big = format!("data: {}\n\n", "a".repeat(MAX_EVENT + (2 << 20)));
        let tail = b"data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"jane@example.com\"}]}}\n\n";
        for (cfg, passes) in [
            ("{}", false),
            (
                r#"{"policies":{"default":{"restore":true,"redact_responses":false}}}"#,
                true,
            ),
        ] {
            let e = engine(cfg);
            let p = e.policy(0).clone();
            let mut s = McpSse::default();
            let mut out = Vec::new();
            let mut session = Session::default();
            for c in big.as_bytes().chunks(1 << 20) {
                out.extend(s.push(c, false, &e, &p, &mut session));
            }
            out.extend(s.push(tail, true, &e, &p, &mut session));
            assert_eq!(s.unread(), big.len() as u64, "{cfg}");
            assert_eq!(out.len() > big.len(), passes, "{cfg}");
            let text = String::from_utf8(out).unwrap();
            assert_eq!(text.contains("jane@example.com"), passes, "{cfg}");
        }
    }
}
