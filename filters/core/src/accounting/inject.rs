//! Setting `stream_options.include_usage` in a request body with a minimal edit.
//!
//! Reserializing a body costs a parse and a full write; the edit here scans only the top-level
//! keys of the object (values are skipped byte-wise) and splices a few bytes in. Anything the
//! scanner does not understand falls back to a `serde_json` round trip, which is correct but
//! slower and only happens for odd (still valid) bodies.

/// Returns the body with `stream_options.include_usage` set to `true`, or `None` when the body
/// is not a JSON object.
pub fn include_usage(body: &[u8]) -> Option<Vec<u8>> {
    splice(body).or_else(|| reserialize(body))
}

fn reserialize(body: &[u8]) -> Option<Vec<u8>> {
    let mut v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let obj = v.as_object_mut()?;
    let opts = obj
        .entry("stream_options")
        .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
    if !opts.is_object() {
        *opts = serde_json::Value::Object(serde_json::Map::new());
    }
    opts.as_object_mut()?
        .insert("include_usage".into(), serde_json::Value::Bool(true));
    serde_json::to_vec(&v).ok()
}

/// A key's raw span between its quotes and whether it has escapes.
type KeySpan = (usize, usize, bool);
/// A value's span.
type Span = (usize, usize);
/// Members of an object: key span and value span.
type Members = Vec<(KeySpan, Span)>;

struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scan<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        self.ws();
        (self.b.get(self.i) == Some(&c)).then(|| self.i += 1)
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    /// A string; returns its raw bytes between the quotes and whether it has escapes.
    fn string(&mut self) -> Option<KeySpan> {
        self.eat(b'"')?;
        let start = self.i;
        let mut escaped = false;
        while let Some(&c) = self.b.get(self.i) {
            match c {
                b'"' => {
                    self.i += 1;
                    return Some((start, self.i - 1, escaped));
                }
                b'\\' => {
                    escaped = true;
                    self.i += 2;
                }
                _ => self.i += 1,
            }
        }
        None
    }

    /// Skips one value without recursion; returns its span.
    fn value(&mut self) -> Option<Span> {
        self.ws();
        let start = self.i;
        let mut depth = 0usize;
        loop {
            match self.b.get(self.i)? {
                b'"' => {
                    self.string()?;
                }
                b'{' | b'[' => {
                    depth += 1;
                    self.i += 1;
                }
                b'}' | b']' => {
                    depth = depth.checked_sub(1)?;
                    self.i += 1;
                }
                b',' | b':' if depth > 0 => self.i += 1,
                c if c.is_ascii_whitespace() && depth > 0 => self.i += 1,
                b',' | b':' => return None,
                _ => {
                    while self.i < self.b.len()
                        && !matches!(self.b[self.i], b',' | b'}' | b']' | b':')
                        && !self.b[self.i].is_ascii_whitespace()
                    {
                        self.i += 1;
                    }
                }
            }
            if depth == 0 {
                return Some((start, self.i));
            }
        }
    }

    fn key_is(&self, (s, e, escaped): KeySpan, name: &str) -> bool {
        if !escaped {
            return &self.b[s..e] == name.as_bytes();
        }
        serde_json::from_slice::<String>(&self.b[s - 1..e + 1]).is_ok_and(|k| k == name)
    }

    /// Members of the object starting at the cursor: (key, value span); also the offset just
    /// after `{`.
    fn object(&mut self) -> Option<(usize, Members)> {
        self.eat(b'{')?;
        let open = self.i;
        let mut members = Vec::new();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Some((open, members));
        }
        loop {
            let k = self.string()?;
            self.eat(b':')?;
            let v = self.value()?;
            members.push((k, v));
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some((open, members));
                }
                _ => return None,
            }
        }
    }
}

fn splice(body: &[u8]) -> Option<Vec<u8>> {
    let mut s = Scan { b: body, i: 0 };
    let (open, members) = s.object()?;
    s.ws();
    if s.i != body.len() {
        return None;
    }
    let edit = |at: (usize, usize), with: &[u8]| {
        let mut out = Vec::with_capacity(body.len() + with.len());
        out.extend_from_slice(&body[..at.0]);
        out.extend_from_slice(with);
        out.extend_from_slice(&body[at.1..]);
        out
    };
    let found: Vec<_> = members
        .iter()
        .filter(|(k, _)| s.key_is(*k, "stream_options"))
        .collect();
    match found.as_slice() {
        [] => {
            let sep: &[u8] = if members.is_empty() { b"" } else { b"," };
            let with = [&br#""stream_options":{"include_usage":true}"#[..], sep].concat();
            Some(edit((open, open), &with))
        }
        [(_, v)] => {
            let mut inner = Scan { b: body, i: v.0 };
            if inner.peek() != Some(b'{') {
                return Some(edit(*v, br#"{"include_usage":true}"#));
            }
            let (iopen, imembers) = inner.object()?;
            let flags: Vec<_> = imembers
                .iter()
                .filter(|(k, _)| inner.key_is(*k, "include_usage"))
                .collect();
            match flags.as_slice() {
                [] => {
                    let sep: &[u8] = if imembers.is_empty() { b"" } else { b"," };
                    let with = [&br#""include_usage":true"#[..], sep].concat();
                    Some(edit((iopen, iopen), &with))
                }
                [(_, fv)] => Some(edit(*fv, b"true")),
                _ => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn check(input: &str, expect_splice: bool) {
        let out = include_usage(input.as_bytes()).unwrap();
        let mut want: Value = serde_json::from_str(input).unwrap();
        let o = want.as_object_mut().unwrap();
        let so = o.entry("stream_options").or_insert(json!({}));
        if !so.is_object() {
            *so = json!({});
        }
        so["include_usage"] = json!(true);
        let got: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(got, want, "{input}");
        assert_eq!(splice(input.as_bytes()).is_some(), expect_splice, "{input}");
    }

    #[test]
    fn splices_in_every_shape() {
        check(r#"{"model":"m","stream":true}"#, true);
        check(r#" { "model" : "m" , "stream" : true } "#, true);
        check(r#"{"stream_options":null,"model":"m"}"#, true);
        check(r#"{"stream_options":{},"model":"m"}"#, true);
        check(
            r#"{"stream_options":{"x":[1,{"a":"}"}]},"model":"m"}"#,
            true,
        );
        check(
            r#"{"model":"m","stream_options":{"include_usage":false,"y":1}}"#,
            true,
        );
        check(
            r#"{"messages":[{"content":"a \"quoted\" {brace} [x], y:z"}],"n":-1.5e3,"t":null}"#,
            true,
        );
        check(r#"{"stream\u005foptions":{"include_usage":false}}"#, true);
        check(r#"{}"#, true);
    }

    #[test]
    fn keeps_everything_else_byte_for_byte() {
        let body = r#"{"model":"m",  "messages":[{"role":"user","content":"é\n"}],"stream":true}"#;
        let out = String::from_utf8(include_usage(body.as_bytes()).unwrap()).unwrap();
        assert_eq!(
            out,
            r#"{"stream_options":{"include_usage":true},"model":"m",  "messages":[{"role":"user","content":"é\n"}],"stream":true}"#
        );
    }

    #[test]
    fn refuses_non_objects() {
        assert!(include_usage(b"[1]").is_none());
        assert!(include_usage(b"{").is_none());
    }
}
