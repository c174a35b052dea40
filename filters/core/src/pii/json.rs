//! JSON-aware redaction: finds the string values that carry user text and splices redacted
//! versions into the original bytes, so keys, numbers, model names and formatting stay exactly
//! as the client sent them, and a body with nothing to redact is returned untouched.

use std::borrow::Cow;

use super::engine::{Engine, Policy, Session};
use super::PiiError;

/// One step of the path to a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg<'a> {
    /// Object member.
    Key(Cow<'a, str>),
    /// Array element.
    Index(usize),
}

/// A string literal in the document: byte span including the quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Offset of the opening quote.
    pub start: usize,
    /// One past the closing quote.
    pub end: usize,
    /// The value of an `arguments` member (a JSON document in a string).
    pub is_args: bool,
    /// The first two array indexes on the path (`choices[k]...tool_calls[j]`); `usize::MAX`
    /// where the path has fewer.
    pub idx: [usize; 2],
    /// The value of an enumeration member ([`ENUM_MEMBERS`]).
    pub is_enum: bool,
}

const MAX_DEPTH: usize = 128;

/// The document is not valid JSON (or nests deeper than 128 levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not valid JSON")]
pub struct NotJson;

struct Walker<'a, 'f> {
    b: &'a [u8],
    i: usize,
    path: Vec<Seg<'a>>,
    select: &'f dyn Fn(&[Seg<'_>]) -> bool,
    /// Also collect object keys that are not member names ([`is_word`]).
    keys: bool,
    out: Vec<Span>,
}

impl<'a> Walker<'a, '_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// Consumes a string literal; returns its span and whether it holds escapes.
    fn string(&mut self) -> Result<(Span, bool), ()> {
        let start = self.i;
        self.i += 1;
        let mut escaped = false;
        loop {
            self.i = string_special(self.b, self.i).ok_or(())?;
            match self.b[self.i] {
                b'"' => {
                    self.i += 1;
                    let span = Span {
                        start,
                        end: self.i,
                        is_args: false,
                        idx: [usize::MAX; 2],
                        is_enum: false,
                    };
                    return Ok((span, escaped));
                }
                b'\\' => {
                    escaped = true;
                    self.i += 2;
                    if self.i > self.b.len() {
                        return Err(());
                    }
                }
                _ => return Err(()),
            }
        }
    }

    fn value(&mut self) -> Result<(), ()> {
        if self.path.len() > MAX_DEPTH {
            return Err(());
        }
        self.ws();
        match self.peek().ok_or(())? {
            b'"' => {
                let (mut span, _) = self.string()?;
                if (self.select)(&self.path) {
                    span.is_args = key_is(self.path.last(), &["arguments"]);
                    span.is_enum = key_is(self.path.last(), ENUM_MEMBERS);
                    let mut idx = self.path.iter().filter_map(|p| match p {
                        Seg::Index(i) => Some(*i),
                        Seg::Key(_) => None,
                    });
                    span.idx = [
                        idx.next().unwrap_or(usize::MAX),
                        idx.next().unwrap_or(usize::MAX),
                    ];
                    self.out.push(span);
                }
            }
            b'{' => {
                self.i += 1;
                self.ws();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.ws();
                    if self.peek() != Some(b'"') {
                        return Err(());
                    }
                    let (span, escaped) = self.string()?;
                    let raw = &self.b[span.start + 1..span.end - 1];
                    let key = if escaped {
                        let lit =
                            std::str::from_utf8(&self.b[span.start..span.end]).map_err(|_| ())?;
                        Cow::Owned(serde_json::from_str::<String>(lit).map_err(|_| ())?)
                    } else {
                        Cow::Borrowed(std::str::from_utf8(raw).map_err(|_| ())?)
                    };
                    if self.keys && !is_word(&key) {
                        self.out.push(span);
                    }
                    self.ws();
                    if self.peek() != Some(b':') {
                        return Err(());
                    }
                    self.i += 1;
                    self.path.push(Seg::Key(key));
                    self.value()?;
                    self.path.pop();
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(());
                        }
                        _ => return Err(()),
                    }
                }
            }
            b'[' => {
                self.i += 1;
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Ok(());
                }
                let mut k = 0;
                loop {
                    self.path.push(Seg::Index(k));
                    self.value()?;
                    self.path.pop();
                    k += 1;
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(());
                        }
                        _ => return Err(()),
                    }
                }
            }
            _ => {
                // Number, true, false, null: validated by serde on the literal.
                let s = self.i;
                self.i += self.b[s..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || b"+-.".contains(c))
                    .count();
                let lit = std::str::from_utf8(&self.b[s..self.i]).map_err(|_| ())?;
                serde_json::from_str::<serde::de::IgnoredAny>(lit).map_err(|_| ())?;
            }
        }
        Ok(())
    }
}

/// Spans of the string values whose path `select` accepts; `Err` when `doc` is not JSON.
pub fn strings(doc: &[u8], select: &dyn Fn(&[Seg<'_>]) -> bool) -> Result<Vec<Span>, NotJson> {
    walk(doc, select, false)
}

/// Spans of the request text: every string value but [`request_text`]'s exceptions, and every
/// object key that is not a member name (`metadata` maps are keyed by what people write).
pub fn request_strings(doc: &[u8]) -> Result<Vec<Span>, NotJson> {
    walk(doc, &request_text, true)
}

fn walk(doc: &[u8], select: &dyn Fn(&[Seg<'_>]) -> bool, keys: bool) -> Result<Vec<Span>, NotJson> {
    if std::str::from_utf8(doc).is_err() {
        return Err(NotJson);
    }
    let mut w = Walker {
        b: doc,
        i: 0,
        path: Vec::new(),
        select,
        keys,
        out: Vec::new(),
    };
    w.value().map_err(|()| NotJson)?;
    w.ws();
    if w.i != doc.len() {
        return Err(NotJson);
    }
    Ok(w.out)
}

/// First `"`, `\\` or control byte at or after `from`: where a string literal ends or needs a
/// closer look. Prompts are long strings, so this tests eight bytes at a time.
fn string_special(b: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // Nonzero when a byte of `x` is below `n` (n <= 0x80): exact for the word, not per byte.
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGHS;
    let rest = b.get(from..)?;
    let mut skipped = 0;
    for chunk in rest.chunks_exact(8) {
        let Ok(bytes) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let x = u64::from_le_bytes(bytes);
        let special = below(x, 0x20) | below(x ^ (ONES * 0x22), 1) | below(x ^ (ONES * 0x5c), 1);
        if special != 0 {
            break;
        }
        skipped += 8;
    }
    let k = rest[skipped..]
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
    Some(from + skipped + k)
}

fn key_is(seg: Option<&Seg<'_>>, names: &[&str]) -> bool {
    matches!(seg, Some(Seg::Key(k)) if names.contains(&k.as_ref()))
}

/// Base64 media payloads, by `(parent member, member)`: OpenAI's `input_audio.data` and
/// `file.file_data`, Anthropic's `source.data`. The provider decodes them as audio, images or
/// files; the model never reads them as text, and detectors cannot read them without decoding.
pub const MEDIA_MEMBERS: &[(&str, &str)] = &[
    ("input_audio", "data"),
    ("file", "file_data"),
    ("source", "data"),
];

/// Members whose value the API defines as one of a few words (`"role":"user"`,
/// `"type":"text"`): skipped when the value is such a word ([`is_word`]), scanned otherwise.
pub const ENUM_MEMBERS: &[&str] = &[
    "role",
    "type",
    "object",
    "tool_choice",
    "reasoning_effort",
    "service_tier",
    "encoding_format",
    "detail",
    "modalities",
    "voice",
    "truncation",
    "finish_reason",
];

/// Which request strings are scanned: all of them but the top-level `model` (sent verbatim:
/// auth's allow-list and routing decide on it) and the [`MEDIA_MEMBERS`].
pub fn request_text(path: &[Seg<'_>]) -> bool {
    if let [Seg::Key(k)] = path {
        return k != "model";
    }
    let [.., Seg::Key(parent), Seg::Key(member)] = path else {
        return true;
    };
    !MEDIA_MEMBERS.contains(&(parent.as_ref(), member.as_ref()))
}

/// A lowercase word of at most 64 bytes (`user`, `tool_calls`, `json-schema`): what member
/// names and enumeration values look like. It holds no digit, `@`, capital or separator, so no
/// built-in type can be in it.
pub fn is_word(s: &str) -> bool {
    s.len() <= 64
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c == b'_' || c == b'-')
}

/// `data:<type>;base64,<payload>`: an inline file, not text.
pub fn is_base64_data_url(s: &str) -> bool {
    s.strip_prefix("data:")
        .and_then(|rest| rest.split_once(','))
        .is_some_and(|(head, _)| head.ends_with(";base64"))
}

/// Response fields holding model text: `choices[].message.content`, `choices[].text`, tool
/// call arguments, the streamed `choices[].delta.content`, the Responses API's
/// `output[].content[].text` and `output[].arguments`; in an Anthropic `message`,
/// `content[].text` and every string of a `tool_use` block's `input`.
pub fn response_text(path: &[Seg<'_>]) -> bool {
    if let [Seg::Key(c), Seg::Index(_), Seg::Key(k), rest @ ..] = path {
        if c == "content" {
            return (k == "text" && rest.is_empty()) || k == "input";
        }
    }
    if !key_is(path.first(), &["choices", "output"]) {
        return false;
    }
    key_is(path.last(), &["content", "text", "arguments", "refusal"])
}

/// The decoded text of a string literal span.
pub fn decode<'a>(doc: &'a [u8], span: Span) -> Option<Cow<'a, str>> {
    let lit = std::str::from_utf8(doc.get(span.start..span.end)?).ok()?;
    if lit.as_bytes()[1..lit.len() - 1].contains(&b'\\') {
        serde_json::from_str::<String>(lit).ok().map(Cow::Owned)
    } else {
        Some(Cow::Borrowed(&lit[1..lit.len() - 1]))
    }
}

/// Rewrites the selected strings of `doc` with `f` (which returns `None` for "unchanged").
/// Returns `None` when nothing changed, so the caller keeps the original bytes.
pub fn rewrite(
    doc: &[u8],
    select: &dyn Fn(&[Seg<'_>]) -> bool,
    f: &mut dyn FnMut(Span, &str) -> Option<String>,
) -> Result<Option<Vec<u8>>, NotJson> {
    rewrite_spans(doc, strings(doc, select), f)
}

fn rewrite_spans(
    doc: &[u8],
    spans: Result<Vec<Span>, NotJson>,
    f: &mut dyn FnMut(Span, &str) -> Option<String>,
) -> Result<Option<Vec<u8>>, NotJson> {
    let spans = spans?;
    let mut out: Vec<u8> = Vec::new();
    let mut last = 0;
    for span in spans {
        let text = decode(doc, span).ok_or(NotJson)?;
        if let Some(new) = f(span, &text) {
            if out.is_empty() {
                out.reserve(doc.len() + 64);
            }
            out.extend_from_slice(&doc[last..span.start]);
            serde_json::to_writer(&mut out, new.as_str()).map_err(|_| NotJson)?;
            last = span.end;
        }
    }
    if last == 0 {
        return Ok(None);
    }
    out.extend_from_slice(&doc[last..]);
    Ok(Some(out))
}

/// Redacts text that may itself be JSON (tool-call `arguments`): every string value inside it
/// when it parses, the whole text otherwise. Keys and numbers inside stay untouched.
fn redact_maybe_json(
    engine: &Engine,
    policy: &Policy,
    session: &mut Session,
    text: &str,
) -> Option<String> {
    let t = text.trim_start();
    if t.starts_with('{') || t.starts_with('[') {
        let mut f = |_: Span, s: &str| engine.redact(s, policy, session);
        // Arguments are free-form: every string and key in them is text.
        let spans = walk(text.as_bytes(), &|_| true, true);
        if let Ok(r) = rewrite_spans(text.as_bytes(), spans, &mut f) {
            return r.and_then(|v| String::from_utf8(v).ok());
        }
    }
    engine.redact(text, policy, session)
}

/// Redacts a request body. `Ok(None)`: nothing to change, forward the original bytes.
/// Blocked types are left in the session; check [`Engine::blocked_error`] afterwards.
pub fn redact_request(
    engine: &Engine,
    policy: &Policy,
    session: &mut Session,
    body: &[u8],
) -> Result<Option<Vec<u8>>, PiiError> {
    let spans = request_strings(body).map_err(|_| PiiError::InvalidJson)?;
    let mut out: Vec<u8> = Vec::new();
    let mut last = 0;
    for span in spans {
        let text = decode(body, span).ok_or(PiiError::InvalidJson)?;
        if span.is_enum && is_word(&text) || is_base64_data_url(&text) {
            continue;
        }
        let new = if span.is_args {
            redact_maybe_json(engine, policy, session, &text)
        } else {
            engine.redact(&text, policy, session)
        };
        if let Some(new) = new {
            if out.is_empty() {
                out.reserve(body.len() + 64);
            }
            out.extend_from_slice(&body[last..span.start]);
            serde_json::to_writer(&mut out, new.as_str()).map_err(|_| PiiError::InvalidJson)?;
            last = span.end;
        }
    }
    if last == 0 {
        return Ok(None);
    }
    out.extend_from_slice(&body[last..]);
    Ok(Some(out))
}

/// Transforms a non-streamed response body (restore and/or mask). `None`: unchanged or not JSON.
pub fn respond_body(
    engine: &Engine,
    policy: &Policy,
    session: &mut Session,
    body: &[u8],
) -> Option<Vec<u8>> {
    let mut f = |span: Span, s: &str| {
        if span.is_args {
            // Restored values may hold quotes: transform inside the arguments document.
            let mut inner = |_: Span, v: &str| engine.respond(v, policy, session);
            if let Ok(r) = rewrite(s.as_bytes(), &|_| true, &mut inner) {
                return r.and_then(|v| String::from_utf8(v).ok());
            }
        }
        engine.respond(s, policy, session)
    };
    rewrite(body, &response_text, &mut f).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pii::PiiConfig;

    fn engine(json: &str) -> Engine {
        let cfg: PiiConfig = serde_json::from_str(json).unwrap();
        Engine::new(&cfg).unwrap()
    }

    fn run(body: &str) -> Option<String> {
        let e = engine("{}");
        let p = e.policy(0).clone();
        redact_request(&e, &p, &mut Session::default(), body.as_bytes())
            .unwrap()
            .map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn string_special_finds_the_first_one_at_any_offset() {
        for len in 0..40 {
            for (k, c) in [(len, b'"'), (len, b'\\'), (len, 0x1f), (len, 0)] {
                let mut b = vec![b'a'; len + 12];
                b[k] = c;
                b[len + 5] = b'"';
                for from in 0..=k {
                    assert_eq!(string_special(&b, from), Some(k), "{len} {from} {c}");
                }
            }
            let clean = vec![0xc3u8; len];
            assert_eq!(string_special(&clean, 0), None);
        }
    }

    #[test]
    fn untouched_body_stays_byte_identical() {
        let body = r#"{ "model" : "gpt-4o",  "messages":[{"role":"user","content":"hello 4111 1111"}], "seed": 4111111111111111 }"#;
        assert_eq!(run(body), None);
    }

    #[test]
    fn every_written_string_is_scanned_but_model_and_media() {
        let png = "data:image/png;base64,iVBORw0KGgo+4111111111111111/a@x.com";
        let body = serde_json::json!({
            "model": "a@x.com",
            "user": "a@x.com",
            "messages": [
                {"role": "user", "name": "b@x.com", "content": [
                    {"type": "text", "text": "é and c@x.com"},
                    {"type": "image_url", "image_url": {"url": png, "detail": "auto"}},
                    {"type": "image_url", "image_url": {"url": "https://d@x.com/i.png"}},
                    {"type": "input_audio", "input_audio": {"data": "UklGRg+4111111111111111/", "format": "wav"}}]},
                {"role": "assistant", "tool_calls": [{"id": "call_e@x.com", "type": "function",
                    "function": {"name": "send", "arguments": "{\"model\":\"f@x.com\"}"}}]},
                {"role": "tool", "tool_call_id": "call_e@x.com", "content": "ok"}],
            "prediction": {"type": "content", "content": "g@x.com"},
            "tools": [{"type": "function", "function": {"name": "send", "description": "mails h@x.com",
                "parameters": {"type": "object", "properties": {"to": {"type": "string",
                    "description": "like i@x.com", "enum": ["j@x.com"]}}}}}],
            "metadata": {"k@x.com": "l@x.com"},
            "stop": ["m@x.com"],
            "modalities": ["text"],
        })
        .to_string();
        let out: serde_json::Value = serde_json::from_str(&run(&body).unwrap()).unwrap();
        let text = out.to_string();
        for kept in ["a@x.com\"", png, "UklGRg+4111111111111111/"] {
            assert!(text.contains(kept), "{kept} changed: {text}");
        }
        assert_eq!(out["model"], "a@x.com");
        for gone in "bcdefghijklm".chars() {
            assert!(
                !text.contains(&format!("{gone}@x.com")),
                "{gone}@x.com kept: {text}"
            );
        }
        assert!(out["user"].as_str().unwrap().starts_with("[EMAIL_"));
        let m = &out["messages"];
        assert_eq!(m[0]["role"], "user");
        assert_eq!(m[0]["content"][0]["type"], "text");
        // One value, one placeholder: the call and its result stay linked.
        assert_eq!(m[1]["tool_calls"][0]["id"], m[2]["tool_call_id"]);
        assert_eq!(out["modalities"][0], "text");
    }

    #[test]
    fn enumeration_members_are_scanned_unless_a_word() {
        let out = run(r#"{"model":"m","messages":[{"role":"a@x.com","content":"hi"}]}"#).unwrap();
        assert_eq!(
            out,
            r#"{"model":"m","messages":[{"role":"[EMAIL_1]","content":"hi"}]}"#
        );
        assert!(is_word("tool_calls") && is_word("json-schema") && !is_word("a1") && !is_word("A"));
    }

    #[test]
    fn invisible_and_fullwidth_forms_are_masked_in_place() {
        let body = serde_json::json!({"model": "m", "messages": [{"role": "user", "content":
            "mail ja\u{200B}ne@exa\u{200D}mple.com, card ４１１１ １１１１ １１１１ １１１１, done"}]})
        .to_string();
        let out: serde_json::Value = serde_json::from_str(&run(&body).unwrap()).unwrap();
        assert_eq!(
            out["messages"][0]["content"],
            "mail [EMAIL_1], card [CREDIT_CARD_1], done"
        );
    }

    #[test]
    fn legacy_prompt_embeddings_input_and_escapes() {
        let out = run(r#"{"model":"m","prompt":["x a@x.com","\"q\" \u00e9 b@y.io\n"]}"#).unwrap();
        assert_eq!(
            out,
            r#"{"model":"m","prompt":["x [EMAIL_1]","\"q\" é [EMAIL_2]\n"]}"#
        );
        let out = run(r#"{"model":"m","input":"ip 10.1.2.3"}"#).unwrap();
        assert_eq!(out, r#"{"model":"m","input":"ip [IP_ADDRESS_1]"}"#);
    }

    #[test]
    fn tool_call_arguments_stay_valid_json() {
        let args = r#"{"to":"a@x.com","note":"\nb@x.com","n":4111111111111111}"#;
        let body = serde_json::json!({"model":"m","messages":[
            {"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"send","arguments":args}}]},
            {"role":"tool","tool_call_id":"c1","content":"sent to a@x.com"}]})
        .to_string();
        let out = run(&body).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let a = v["messages"][0]["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap();
        let inner: serde_json::Value = serde_json::from_str(a).unwrap();
        assert_eq!(inner["to"], "[EMAIL_1]");
        assert_eq!(inner["note"], "\n[EMAIL_2]");
        assert_eq!(inner["n"], 4111111111111111u64);
        assert_eq!(v["messages"][1]["content"], "sent to [EMAIL_1]");
    }

    #[test]
    fn invalid_json_is_refused() {
        let e = engine("{}");
        let p = e.policy(0).clone();
        for bad in [
            &b"{"[..],
            b"{\"a\":}",
            b"[1,]",
            b"\"x",
            b"{\"a\":1} x",
            b"\xff",
        ] {
            assert!(
                redact_request(&e, &p, &mut Session::default(), bad).is_err(),
                "{bad:?}"
            );
        }
        let deep = "[".repeat(10_000);
        assert!(redact_request(&e, &p, &mut Session::default(), deep.as_bytes()).is_err());
    }

    #[test]
    fn response_body_restores() {
        let e = engine(r#"{"policies":{"default":{"restore":true}}}"#);
        let p = e.policy(0).clone();
        let mut s = Session::default();
        redact_request(
            &e,
            &p,
            &mut s,
            br#"{"model":"m","messages":[{"role":"user","content":"a@x.com"}]}"#,
        )
        .unwrap();
        let out = respond_body(
            &e,
            &p,
            &mut s,
            br#"{"choices":[{"message":{"content":"hi [EMAIL_1]"}}],"model":"m"}"#,
        )
        .unwrap();
        assert_eq!(
            out,
            br#"{"choices":[{"message":{"content":"hi a@x.com"}}],"model":"m"}"#
        );
        let args = serde_json::json!({"to": "[EMAIL_1]", "n": 1}).to_string();
        let body = serde_json::json!({"choices":[{"message":{"tool_calls":[{"function":{"arguments": args}}]}}]});
        let out = respond_body(&e, &p, &mut s, body.to_string().as_bytes()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let a = v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap();
        let inner: serde_json::Value = serde_json::from_str(a).unwrap();
        assert_eq!(inner, serde_json::json!({"to": "a@x.com", "n": 1}));
    }

    #[test]
    fn an_anthropic_message_is_restored_in_text_and_tool_input() {
        let e = engine(r#"{"policies":{"default":{"restore":true}}}"#);
        let p = e.policy(0).clone();
        let mut s = Session::default();
        let req =
            br#"{"model":"claude-x","max_tokens":9,"system":[{"type":"text","text":"for b@y.org"}],
            "messages":[{"role":"user","content":[{"type":"text","text":"mail a@x.com"},
            {"type":"tool_result","tool_use_id":"t","content":"c@z.net"}]}]}"#;
        let sent =
            String::from_utf8(redact_request(&e, &p, &mut s, req).unwrap().unwrap()).unwrap();
        for v in ["a@x.com", "b@y.org", "c@z.net"] {
            assert!(!sent.contains(v), "{v} left in {sent}");
        }
        let reply = br#"{"type":"message","model":"claude-x","content":[{"type":"text","text":"to [EMAIL_1]"},
            {"type":"tool_use","id":"t","name":"send","input":{"to":["[EMAIL_1]"],"note":"[EMAIL_1]"}}],
            "usage":{"input_tokens":1,"output_tokens":2}}"#;
        let out = respond_body(&e, &p, &mut s, reply).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let first = v["content"][0]["text"].as_str().unwrap();
        assert!(first.starts_with("to ") && first.contains('@'), "{first}");
        let input = &v["content"][1]["input"];
        assert_eq!(input["to"][0].as_str().unwrap(), &first[3..]);
        assert_eq!(input["note"], input["to"][0]);
        assert_eq!(v["content"][1]["name"], "send", "not model text: untouched");
    }

    #[test]
    fn hashed_values_are_restored_too() {
        let e = engine(
            r#"{"hash_key":"0123456789abcdef","policies":{"default":{"default_action":"hash","restore":true}}}"#,
        );
        let p = e.policy(0).clone();
        let mut s = Session::default();
        let body = redact_request(&e, &p, &mut s, br#"{"messages":[{"content":"a@x.com"}]}"#)
            .unwrap()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let token = v["messages"][0]["content"].as_str().unwrap().to_string();
        assert!(token.starts_with("[EMAIL_") && token != "[EMAIL_1]");
        assert_eq!(
            e.respond(&format!("hi {token}"), &p, &mut s).unwrap(),
            "hi a@x.com"
        );
    }
}
