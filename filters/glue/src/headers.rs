//! A request's or response's headers, fetched from Envoy in one host call.
//!
//! Envoy answers every header read by calling back into the VM to allocate the result, and that
//! round trip dominates its price: `harness.bench_host` prices one `get_http_request_header`
//! about the same as the whole map (~1.5-3 µs each, run to run). A filter that reads two or more
//! headers reads the map once and looks names up here.
//!
//! Values are kept as bytes: proxy-wasm's `String` getters unwrap `from_utf8`, so a header
//! value with an obs-text byte (legal in HTTP/1.1, e.g. Latin-1) would trap the VM.

use proxy_wasm::traits::HttpContext;

/// A snapshot of one header map (names lower-case, as Envoy keeps them).
#[derive(Debug, Clone, Default)]
pub struct Headers {
    pairs: Vec<(String, Vec<u8>)>,
}

impl Headers {
    /// The request headers as they are now.
    pub fn request<C: HttpContext + ?Sized>(ctx: &C) -> Self {
        Headers {
            pairs: ctx.get_http_request_headers_bytes(),
        }
    }

    /// The response headers as they are now.
    pub fn response<C: HttpContext + ?Sized>(ctx: &C) -> Self {
        Headers {
            pairs: ctx.get_http_response_headers_bytes(),
        }
    }

    /// Builds a snapshot from pairs (tests, and callers that already hold the map).
    pub fn from_pairs(pairs: Vec<(String, Vec<u8>)>) -> Self {
        Headers { pairs }
    }

    /// The first value of `name` as text; `None` when absent or not UTF-8.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_bytes(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The first value of `name`, non-empty, as text.
    pub fn get_nonempty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    /// The first value of `name` as bytes.
    pub fn get_bytes(&self, name: &str) -> Option<&[u8]> {
        self.pairs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// True when `name` is present (with any value).
    pub fn has(&self, name: &str) -> bool {
        self.get_bytes(name).is_some()
    }

    /// Every header name, in order (a repeated header appears once per value).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.pairs.iter().map(|(k, _)| k.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hs() -> Headers {
        Headers::from_pairs(vec![
            (":path".into(), b"/v1/chat/completions".to_vec()),
            ("x-latin1".into(), vec![b'c', 0xe9]),
            ("x-empty".into(), Vec::new()),
            ("x-two".into(), b"first".to_vec()),
            ("x-two".into(), b"second".to_vec()),
        ])
    }

    #[test]
    fn lookups_are_by_lower_or_mixed_case_name_and_take_the_first_value() {
        let h = hs();
        assert_eq!(h.get(":path"), Some("/v1/chat/completions"));
        assert_eq!(h.get("X-Two"), Some("first"));
        assert_eq!(h.get("absent"), None);
        assert!(h.has("x-empty") && !h.has("absent"));
    }

    #[test]
    fn a_non_utf8_value_reads_as_absent_text_but_keeps_its_bytes() {
        let h = hs();
        assert_eq!(h.get("x-latin1"), None);
        assert_eq!(h.get_bytes("x-latin1"), Some(&[b'c', 0xe9][..]));
    }

    #[test]
    fn empty_values_are_present_but_not_nonempty() {
        let h = hs();
        assert_eq!(h.get("x-empty"), Some(""));
        assert_eq!(h.get_nonempty("x-empty"), None);
        assert_eq!(h.names().filter(|n| *n == "x-two").count(), 2);
    }
}
