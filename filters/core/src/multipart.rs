//! The `model` of a `multipart/form-data` body (audio uploads), read as a form field and never
//! as JSON.
//!
//! The parse is strict where parsers disagree, because the provider's parser, not this one,
//! decides what model runs: a body the gateway would read one way and a provider another is
//! refused rather than guessed at. So: the body must start with the first delimiter (no
//! preamble), every part needs a `Content-Disposition: form-data` with exactly one plain `name`,
//! the closing delimiter must be there, and `model` must appear exactly once, as a plain field.

use crate::error::ErrorKind;
use crate::openai::MAX_MODEL_LEN;

/// Why a form body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    /// The endpoint takes `multipart/form-data` and the request declared something else.
    #[error("this endpoint takes multipart/form-data, not {0}")]
    NotMultipart(String),
    /// A JSON endpoint was sent a form content type (its provider might read the form instead).
    #[error("this endpoint takes a JSON body, not {0}")]
    NotJson(String),
    /// `multipart/form-data` without a usable `boundary` parameter.
    #[error("multipart/form-data needs a boundary parameter of 1 to 70 characters")]
    MissingBoundary,
    /// The body does not follow the multipart syntax.
    #[error("malformed multipart body: {0}")]
    Malformed(&'static str),
    /// No `model` field.
    #[error("you must provide a model parameter")]
    MissingModel,
    /// More than one `model` field: providers differ on which one counts.
    #[error("the model field appears more than once")]
    DuplicateModel,
    /// `model` is a file part, or not a valid model id.
    #[error("invalid model field: {0}")]
    InvalidModel(&'static str),
}

impl ErrorKind for FormError {
    fn status(&self) -> u16 {
        match self {
            FormError::NotMultipart(_) | FormError::NotJson(_) => 415,
            _ => 400,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            FormError::NotMultipart(_) | FormError::NotJson(_) => "unsupported_content_type",
            FormError::MissingBoundary => "missing_boundary",
            FormError::Malformed(_) => "invalid_multipart",
            FormError::MissingModel => "missing_model",
            FormError::DuplicateModel => "duplicate_model",
            FormError::InvalidModel(_) => "invalid_model",
        }
    }
}

/// What a form body says: its `model` and whether `stream` is `true`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FormFacts {
    /// The `model` field.
    pub model: String,
    /// The `stream` field is `true`.
    pub stream: bool,
}

/// The media type of a `content-type` value, lowercased, without parameters.
pub fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// True for content types a provider may parse as a form.
pub fn is_form(content_type: &str) -> bool {
    let m = media_type(content_type);
    m.starts_with("multipart/") || m == "application/x-www-form-urlencoded"
}

/// The boundary of a `multipart/form-data` content type.
pub fn boundary(content_type: &str) -> Result<String, FormError> {
    if media_type(content_type) != "multipart/form-data" {
        return Err(FormError::NotMultipart(media_type(content_type)));
    }
    let mut found = None;
    for p in content_type.split(';').skip(1) {
        let Some((k, v)) = p.split_once('=') else {
            continue;
        };
        if k.trim().eq_ignore_ascii_case("boundary") {
            if found.is_some() {
                return Err(FormError::MissingBoundary);
            }
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            found = Some(v.to_string());
        }
    }
    // RFC 2046 §5.1.1: 1 to 70 characters, no trailing space; no quote or CR/LF either.
    match found {
        Some(b)
            if !b.is_empty()
                && b.len() <= 70
                && !b.ends_with(' ')
                && b.bytes().all(|c| (0x20..0x7f).contains(&c) && c != b'"') =>
        {
            Ok(b)
        }
        _ => Err(FormError::MissingBoundary),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The `name` and whether a `filename` is given, from a part's headers.
fn disposition(head: &[u8]) -> Result<(String, bool), FormError> {
    let head = std::str::from_utf8(head).map_err(|_| FormError::Malformed("part headers"))?;
    let mut found = None;
    for line in head.split("\r\n") {
        let Some((k, v)) = line.split_once(':') else {
            return Err(FormError::Malformed("part header without a colon"));
        };
        if !k.trim().eq_ignore_ascii_case("content-disposition") {
            continue;
        }
        if found.is_some() {
            return Err(FormError::Malformed("two Content-Disposition headers"));
        }
        found = Some(v.to_string());
    }
    let d = found.ok_or(FormError::Malformed("part without Content-Disposition"))?;
    let mut params = d.split(';');
    if !params
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("form-data"))
    {
        return Err(FormError::Malformed("part is not form-data"));
    }
    let (mut name, mut file) = (None, false);
    for p in params {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        let k = k.trim().to_ascii_lowercase();
        let v = v.trim();
        match k.as_str() {
            "name" => {
                let plain = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v);
                // Escapes inside the quotes are read differently by different parsers.
                if name.is_some() || plain.contains(['"', '\\']) {
                    return Err(FormError::Malformed("ambiguous part name"));
                }
                name = Some(plain.to_string());
            }
            "filename" | "filename*" => file = true,
            // RFC 5987 names are decoded by some parsers and ignored by others.
            "name*" => return Err(FormError::Malformed("ambiguous part name")),
            _ => {}
        }
    }
    Ok((
        name.ok_or(FormError::Malformed("part without a name"))?,
        file,
    ))
}

/// Reads the `model` (and `stream`) fields of a `multipart/form-data` body.
pub fn form_facts(content_type: &str, body: &[u8]) -> Result<FormFacts, FormError> {
    let b = boundary(content_type)?;
    let delim = format!("--{b}").into_bytes();
    let mut next_delim = b"\r\n".to_vec();
    next_delim.extend_from_slice(&delim);
    let mut rest = body
        .strip_prefix(delim.as_slice())
        .ok_or(FormError::Malformed(
            "body does not start with the boundary",
        ))?;
    let (mut model, mut stream) = (None, false);
    loop {
        if rest.starts_with(b"--") {
            break;
        }
        // Transport padding after a delimiter is allowed (RFC 2046), then the line break.
        let pad = rest
            .iter()
            .take_while(|c| matches!(c, b' ' | b'\t'))
            .count();
        rest = rest[pad..]
            .strip_prefix(b"\r\n")
            .ok_or(FormError::Malformed(
                "delimiter not followed by a line break",
            ))?;
        let head_end = find(rest, b"\r\n\r\n").ok_or(FormError::Malformed("part headers"))?;
        let (name, file) = disposition(&rest[..head_end])?;
        rest = &rest[head_end + 4..];
        let end = find(rest, &next_delim).ok_or(FormError::Malformed("no closing boundary"))?;
        let value = &rest[..end];
        rest = &rest[end + next_delim.len()..];
        match name.as_str() {
            "model" => {
                if model.is_some() {
                    return Err(FormError::DuplicateModel);
                }
                if file {
                    return Err(FormError::InvalidModel("a file, not a field"));
                }
                let m =
                    std::str::from_utf8(value).map_err(|_| FormError::InvalidModel("not UTF-8"))?;
                model = Some(check_model(m)?.to_string());
            }
            "stream" => stream = value == b"true",
            _ => {}
        }
    }
    let model = model.ok_or(FormError::MissingModel)?;
    Ok(FormFacts { model, stream })
}

fn check_model(m: &str) -> Result<&str, FormError> {
    if m.is_empty() {
        return Err(FormError::MissingModel);
    }
    if m.len() > MAX_MODEL_LEN {
        return Err(FormError::InvalidModel("longer than 256 bytes"));
    }
    if m.chars().any(char::is_control) {
        return Err(FormError::InvalidModel("contains control characters"));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CT: &str = "multipart/form-data; boundary=XyZ";

    fn form(parts: &[(&str, &str)]) -> Vec<u8> {
        let mut b = Vec::new();
        for (head, value) in parts {
            b.extend_from_slice(format!("--XyZ\r\n{head}\r\n\r\n{value}\r\n").as_bytes());
        }
        b.extend_from_slice(b"--XyZ--\r\n");
        b
    }

    fn field(name: &str) -> String {
        format!("Content-Disposition: form-data; name=\"{name}\"")
    }

    #[test]
    fn reads_the_model_field_wherever_it_is() {
        let file = "Content-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav";
        let body = form(&[
            (file, "RIFF {\"model\":\"x\"}\r\n--Xy"),
            (&field("stream"), "true"),
            (&field("model"), "whisper-1"),
        ]);
        let f = form_facts(CT, &body).unwrap();
        assert_eq!(f.model, "whisper-1");
        assert!(f.stream);
        let quoted = "multipart/form-data; charset=utf-8; BOUNDARY=\"XyZ\"";
        assert_eq!(form_facts(quoted, &body).unwrap().model, "whisper-1");
    }

    #[test]
    fn refuses_what_parsers_read_differently() {
        let code = |ct: &str, b: &[u8]| form_facts(ct, b).unwrap_err().code();
        let ok = form(&[(&field("model"), "m")]);
        assert_eq!(code("application/json", &ok), "unsupported_content_type");
        assert_eq!(code("multipart/form-data", &ok), "missing_boundary");
        assert_eq!(
            code("multipart/form-data; boundary=", &ok),
            "missing_boundary"
        );
        assert_eq!(
            code("multipart/form-data; boundary=a; boundary=XyZ", &ok),
            "missing_boundary"
        );
        assert_eq!(code(CT, br#"{"model":"m"}"#), "invalid_multipart");
        let two = form(&[(&field("model"), "m"), (&field("model"), "n")]);
        assert_eq!(code(CT, &two), "duplicate_model");
        assert_eq!(code(CT, &form(&[(&field("file"), "x")])), "missing_model");
        let as_file = "Content-Disposition: form-data; name=\"model\"; filename=\"m\"";
        assert_eq!(code(CT, &form(&[(as_file, "m")])), "invalid_model");
        assert_eq!(
            code(CT, &form(&[(&field("model"), "a\u{1}b")])),
            "invalid_model"
        );
        let star = "Content-Disposition: form-data; name*=UTF-8''model";
        assert_eq!(code(CT, &form(&[(star, "m")])), "invalid_multipart");
        let twice = "Content-Disposition: form-data; name=\"x\"; name=\"model\"";
        assert_eq!(code(CT, &form(&[(twice, "m")])), "invalid_multipart");
        let mut preamble = b"hello\r\n".to_vec();
        preamble.extend_from_slice(&ok);
        assert_eq!(code(CT, &preamble), "invalid_multipart");
        let unclosed = b"--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nm";
        assert_eq!(code(CT, unclosed), "invalid_multipart");
    }

    #[test]
    fn knows_form_content_types() {
        assert!(is_form("multipart/form-data; boundary=x"));
        assert!(is_form("Application/X-WWW-Form-Urlencoded"));
        assert!(!is_form("application/json"));
        assert!(!is_form("text/plain"));
    }
}
