//! Replaces the value of the top-level `model` member of a JSON object in place.
//!
//! Only the bytes of that one string change: key order, whitespace, number formatting and
//! unknown fields reach the backend exactly as the client sent them, and the body is never
//! re-serialized. The scanner checks only the structure it walks over; the body was validated
//! by the first filter that parsed it.

/// Why the `model` value could not be located.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    /// Not a JSON object, or broken before `model` was found.
    #[error("request body is not a JSON object")]
    NotObject,
    /// No top-level `model` member holding a string.
    #[error("request body has no string `model`")]
    NoModel,
}

fn ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// End (exclusive) of the string starting at `i` (which must be `"`).
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    }
    None
}

/// End (exclusive) of the value starting at `i`.
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = string_end(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            {
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

fn decode(raw: &[u8]) -> Option<String> {
    serde_json::from_slice::<String>(raw).ok()
}

/// Byte range (quotes included) and decoded value of the top-level `model` string.
pub fn find_model(body: &[u8]) -> Result<(std::ops::Range<usize>, String), RewriteError> {
    let mut i = ws(body, 0);
    if body.get(i) != Some(&b'{') {
        return Err(RewriteError::NotObject);
    }
    i = ws(body, i + 1);
    if body.get(i) == Some(&b'}') {
        return Err(RewriteError::NoModel);
    }
    loop {
        if body.get(i) != Some(&b'"') {
            return Err(RewriteError::NotObject);
        }
        let key_end = string_end(body, i).ok_or(RewriteError::NotObject)?;
        let key = &body[i..key_end];
        i = ws(body, key_end);
        if body.get(i) != Some(&b':') {
            return Err(RewriteError::NotObject);
        }
        i = ws(body, i + 1);
        let end = value_end(body, i).ok_or(RewriteError::NotObject)?;
        let is_model = key == b"\"model\"" || decode(key).as_deref() == Some("model");
        if is_model {
            return match (body[i], decode(&body[i..end])) {
                (b'"', Some(v)) => Ok((i..end, v)),
                _ => Err(RewriteError::NoModel),
            };
        }
        i = ws(body, end);
        match body.get(i) {
            Some(b',') => i = ws(body, i + 1),
            Some(b'}') => return Err(RewriteError::NoModel),
            _ => return Err(RewriteError::NotObject),
        }
    }
}

/// The body with its top-level `model` replaced by `model`, and the old value.
pub fn replace_model(body: &[u8], model: &str) -> Result<(Vec<u8>, String), RewriteError> {
    let (range, old) = find_model(body)?;
    let quoted = serde_json::to_string(model).map_err(|_| RewriteError::NoModel)?;
    let mut out = Vec::with_capacity(body.len() + quoted.len());
    out.extend_from_slice(&body[..range.start]);
    out.extend_from_slice(quoted.as_bytes());
    out.extend_from_slice(&body[range.end..]);
    Ok((out, old))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(b: &str, m: &str) -> Result<(String, String), RewriteError> {
        replace_model(b.as_bytes(), m).map(|(o, old)| (String::from_utf8(o).unwrap(), old))
    }

    #[test]
    fn replaces_only_the_top_level_value() {
        let body = r#" { "messages":[{"role":"user","content":"model \"x\"","model":"inner"}], "n" : 1.50e0,
            "model" :"vm-chat" ,"extra":{"model":"no"}}"#;
        let (out, old) = rw(body, "gpt-4o").unwrap();
        assert_eq!(old, "vm-chat");
        assert_eq!(out, body.replace(r#""vm-chat""#, r#""gpt-4o""#));
        let (out, _) = rw(r#"{"model":"a"}"#, "q\"uote/é").unwrap();
        assert_eq!(out, r#"{"model":"q\"uote/é"}"#);
        let (out, old) = rw(r#"{"mod\u0065l":"v\/m"}"#, "m").unwrap();
        assert_eq!(
            (out.as_str(), old.as_str()),
            (r#"{"mod\u0065l":"m"}"#, "v/m")
        );
    }

    #[test]
    fn refuses_what_it_cannot_rewrite() {
        assert_eq!(rw("[1]", "m").unwrap_err(), RewriteError::NotObject);
        assert_eq!(rw("{}", "m").unwrap_err(), RewriteError::NoModel);
        assert_eq!(
            rw(r#"{"model":5}"#, "m").unwrap_err(),
            RewriteError::NoModel
        );
        assert_eq!(
            rw(r#"{"a":[1,{"b":"}"}],"c":true}"#, "m").unwrap_err(),
            RewriteError::NoModel
        );
        assert_eq!(rw(r#"{"a":"#, "m").unwrap_err(), RewriteError::NotObject);
        assert_eq!(
            rw(r#"{"a":1 "model":"x"}"#, "m").unwrap_err(),
            RewriteError::NotObject
        );
    }
}
