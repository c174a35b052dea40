//! `/proxy-api/{account}/{endpoint}/{upstream-path}?{query}`: parsing and safety checks.
//!
//! The upstream path is forwarded byte for byte (nothing is decoded or re-encoded), so it must be
//! unambiguous for every server behind the gateway: whatever a lenient upstream might decode to
//! `..`, `/`, `\`, CR/LF or NUL is refused here, including double encoding (`%252e`), overlong
//! UTF-8 (`%c0%ae`), `;` path parameters (`..;/`) and Unicode look-alikes of `.` `/` `\`.

use super::names::{valid_account, valid_endpoint};

/// Path prefix of custom endpoints.
pub const PREFIX: &str = "/proxy-api/";

/// A parsed, checked custom-endpoint request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyPath<'a> {
    /// Account name (validated).
    pub account: &'a str,
    /// Endpoint name (validated).
    pub endpoint: &'a str,
    /// What follows the endpoint, raw: `""`, `"/"` or `"/seg/..."`.
    pub upstream_path: &'a str,
    /// Raw query without the `?`, if any.
    pub query: Option<&'a str>,
}

/// Why a custom-endpoint path was refused. Messages never echo the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Account or endpoint segment is missing or not a valid name.
    #[error("invalid account or endpoint name in /proxy-api/ path")]
    InvalidName,
    /// The upstream path or query is unsafe; the reason is a fixed phrase.
    #[error("unsafe upstream path: {0}")]
    Unsafe(&'static str),
}

/// True when the request targets a custom endpoint (exact, case-sensitive prefix).
pub fn is_proxy_path(path: &str) -> bool {
    path.starts_with(PREFIX) || path == "/proxy-api" || path.starts_with("/proxy-api?")
}

/// Splits and checks a `/proxy-api/...` path (as received, before any decoding).
pub fn parse(raw: &str) -> Result<ProxyPath<'_>, PathError> {
    if raw.contains('#') {
        return Err(PathError::Unsafe("fragment"));
    }
    let (path, query) = match raw.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (raw, None),
    };
    check_raw_path(path)?;
    if let Some(q) = query {
        check_query(q)?;
    }
    let rest = path.strip_prefix(PREFIX).ok_or(PathError::InvalidName)?;
    let (account, rest) = rest.split_once('/').unwrap_or((rest, ""));
    let (endpoint, upstream_path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if !valid_account(account) || !valid_endpoint(endpoint) {
        return Err(PathError::InvalidName);
    }
    check_segments(upstream_path)?;
    Ok(ProxyPath {
        account,
        endpoint,
        upstream_path,
        query,
    })
}

/// RFC 3986 `pchar` / `/` / `%`: anything else (backslash, space, controls, quotes, `<>^{|}`,
/// non-ASCII) has no business in a path and is read differently by different servers.
fn check_raw_path(path: &str) -> Result<(), PathError> {
    for b in path.bytes() {
        let ok = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
                    | b'/'
                    | b'%'
            );
        if !ok {
            return Err(PathError::Unsafe(match b {
                b'\\' => "backslash",
                b'\r' | b'\n' => "CR/LF",
                0 => "NUL",
                _ => "character not allowed in a path",
            }));
        }
    }
    Ok(())
}

/// The query passes through untouched, so only what could split a request or header is refused.
fn check_query(q: &str) -> Result<(), PathError> {
    for b in q.bytes() {
        if !(0x21..0x7f).contains(&b) || matches!(b, b'\\' | b'"' | b'<' | b'>' | b'`') {
            return Err(PathError::Unsafe("character not allowed in the query"));
        }
    }
    let decoded = percent_decode(q.as_bytes())?;
    if decoded.iter().any(|b| *b < 0x20 || *b == 0x7f) {
        return Err(PathError::Unsafe("encoded control character in the query"));
    }
    Ok(())
}

/// Unicode characters some servers fold to `.`, `/` or `\`.
const LOOKALIKES: [char; 8] = [
    '\u{FF0E}', '\u{FF0F}', '\u{FF3C}', '\u{2215}', '\u{2044}', '\u{2024}', '\u{FE52}', '\u{29F8}',
];

fn check_segments(upstream_path: &str) -> Result<(), PathError> {
    let Some(rest) = upstream_path.strip_prefix('/') else {
        return Ok(()); // empty
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let last = segments.len() - 1;
    for (i, seg) in segments.iter().enumerate() {
        if seg.is_empty() {
            if i == last {
                continue; // trailing slash
            }
            return Err(PathError::Unsafe("empty path segment"));
        }
        let decoded = percent_decode(seg.as_bytes())?;
        for b in &decoded {
            match *b {
                b'/' => return Err(PathError::Unsafe("encoded slash")),
                b'\\' => return Err(PathError::Unsafe("encoded backslash")),
                b'%' => return Err(PathError::Unsafe("double encoding")),
                b'\r' | b'\n' => return Err(PathError::Unsafe("CR/LF")),
                0 => return Err(PathError::Unsafe("NUL")),
                c if c < 0x20 || c == 0x7f => return Err(PathError::Unsafe("control character")),
                _ => {}
            }
        }
        let text = std::str::from_utf8(&decoded)
            .map_err(|_| PathError::Unsafe("invalid or overlong UTF-8"))?;
        if text.contains(LOOKALIKES) {
            return Err(PathError::Unsafe("look-alike of a path separator or dot"));
        }
        // `..;x` is `..` to servlet containers; a segment of dots only is `..` to some others.
        let name = text.split(';').next().unwrap_or(text);
        if !name.is_empty() && name.bytes().all(|b| b == b'.') {
            return Err(PathError::Unsafe("dot segment"));
        }
    }
    Ok(())
}

/// Strict single-pass percent decoding: a `%` not followed by two hex digits is an error.
fn percent_decode(s: &[u8]) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hi = s.get(i + 1).and_then(|c| hex_val(*c));
            let lo = s.get(i + 2).and_then(|c| hex_val(*c));
            match (hi, lo) {
                (Some(h), Some(l)) => out.push(h << 4 | l),
                _ => return Err(PathError::Unsafe("malformed percent escape")),
            }
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Checks a base URL's path with the same rules as a request's upstream path.
pub fn check_base_path(path: &str) -> Result<(), PathError> {
    check_raw_path(path)?;
    check_segments(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_parts() {
        let p = parse("/proxy-api/speech/tts/v1/synth%20x?voice=a&fmt=%2Fb").unwrap();
        assert_eq!(p.account, "speech");
        assert_eq!(p.endpoint, "tts");
        assert_eq!(p.upstream_path, "/v1/synth%20x");
        assert_eq!(p.query, Some("voice=a&fmt=%2Fb"));
        let p = parse("/proxy-api/speech/tts").unwrap();
        assert_eq!((p.upstream_path, p.query), ("", None));
        let p = parse("/proxy-api/speech/tts/?a").unwrap();
        assert_eq!((p.upstream_path, p.query), ("/", Some("a")));
        let p = parse("/proxy-api/speech/tts/a/b/").unwrap();
        assert_eq!(p.upstream_path, "/a/b/");
        assert!(parse("/proxy-api/speech/tts/a..b/.x/x.").is_ok());
    }

    #[test]
    fn bad_names() {
        for p in [
            "/proxy-api/",
            "/proxy-api/speech",
            "/proxy-api/speech/",
            "/proxy-api/Speech/tts/x",
            "/proxy-api/sp/tts/x",
            "/proxy-api/speech/1tts/x",
            "/proxy-api/speech/../x",
            "/proxy-api/speech/%74ts/x",
            "/proxy-api/speech/t/x",
        ] {
            assert_eq!(parse(p), Err(PathError::InvalidName), "{p}");
        }
    }

    #[test]
    fn refuses_traversal_and_smuggling() {
        let attacks = [
            "/proxy-api/speech/tts/../admin",
            "/proxy-api/speech/tts/a/../../admin",
            "/proxy-api/speech/tts/..",
            "/proxy-api/speech/tts/./a",
            "/proxy-api/speech/tts/%2e%2e/admin",
            "/proxy-api/speech/tts/%2E%2e/admin",
            "/proxy-api/speech/tts/.%2E/admin",
            "/proxy-api/speech/tts/%252e%252e/admin",
            "/proxy-api/speech/tts/a%2fb",
            "/proxy-api/speech/tts/a%2F..%2Fb",
            "/proxy-api/speech/tts/a%5cb",
            "/proxy-api/speech/tts/a\\..\\b",
            "/proxy-api/speech/tts/a%0d%0aHost:%20x",
            "/proxy-api/speech/tts/a\r\nx",
            "/proxy-api/speech/tts/a%00b",
            "/proxy-api/speech/tts/a%252fb",
            "/proxy-api/speech/tts/%c0%ae%c0%ae/x",
            "/proxy-api/speech/tts/..;/admin",
            "/proxy-api/speech/tts/...",
            "/proxy-api/speech/tts//etc/passwd",
            "/proxy-api/speech/tts/a%zz",
            "/proxy-api/speech/tts/a%",
            "/proxy-api/speech/tts/%ef%bc%8e%ef%bc%8e/x",
            "/proxy-api/speech/tts/a b",
            "/proxy-api/speech/tts/a#frag",
            "/proxy-api/speech/tts/a?q=%0d%0a",
            "/proxy-api/speech/tts/a?q=\n",
            "/proxy-api/speech/tts/a?q=x%00",
            "/proxy-api/speech/tts/\u{e9}",
        ];
        for a in attacks {
            assert!(
                matches!(parse(a), Err(PathError::Unsafe(_))),
                "{a:?} -> {:?}",
                parse(a)
            );
        }
    }

    #[test]
    fn recognises_prefix_exactly() {
        assert!(is_proxy_path("/proxy-api/a/b"));
        assert!(is_proxy_path("/proxy-api"));
        assert!(!is_proxy_path("/proxy-apix/a"));
        assert!(!is_proxy_path("/v1/chat/completions"));
        assert!(!is_proxy_path("/Proxy-Api/a/b"));
    }
}
