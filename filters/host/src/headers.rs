//! A snapshot of one header map.
//!
//! Envoy answers every header read by calling back into the VM to allocate the result, and that
//! round trip dominates its price: `harness.bench_host` prices one `get_http_request_header`
//! about the same as the whole map (~1.5-3 µs each, run to run). Hosts read the map once per
//! callback and stages look names up here.
//!
//! Values are kept as bytes: proxy-wasm's `String` getters unwrap `from_utf8`, so a header
//! value with an obs-text byte (legal in HTTP/1.1, e.g. Latin-1) would trap the VM.

/// A snapshot of one header map (names lower-case, as Envoy keeps them).
#[derive(Debug, Clone, Default)]
pub struct Headers {
    pairs: Vec<(String, Vec<u8>)>,
}

impl Headers {
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

    /// What Envoy's `set_http_*_header` does to the map: every value of `name` replaced by
    /// `value` (one, added at the end when absent), or removed.
    pub fn set(&mut self, name: &str, value: Option<&[u8]>) {
        let name = name.to_ascii_lowercase();
        match value {
            None => self.pairs.retain(|(k, _)| *k != name),
            Some(v) => {
                let mut first = true;
                self.pairs.retain_mut(|(k, old)| {
                    if *k != name {
                        return true;
                    }
                    if first {
                        first = false;
                        *old = v.to_vec();
                        return true;
                    }
                    false
                });
                if first {
                    self.pairs.push((name, v.to_vec()));
                }
            }
        }
    }

    /// Every header name, in order (a repeated header appears once per value).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.pairs.iter().map(|(k, _)| k.as_str())
    }

    /// Appends a value (a repeated header keeps its earlier values).
    pub fn add(&mut self, name: &str, value: &[u8]) {
        self.pairs.push((name.to_ascii_lowercase(), value.to_vec()));
    }

    /// True when the map holds no header.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Every `(name, value)`, in order.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
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
    fn set_replaces_every_value_adds_or_removes() {
        let mut h = hs();
        h.set("X-Two", Some(b"only"));
        assert_eq!(h.names().filter(|n| *n == "x-two").count(), 1);
        assert_eq!(h.get("x-two"), Some("only"));
        h.set("x-new", Some(b"v"));
        assert_eq!(h.get("x-new"), Some("v"));
        h.set(":path", None);
        assert!(!h.has(":path"));
    }

    #[test]
    fn empty_values_are_present_but_not_nonempty() {
        let h = hs();
        assert_eq!(h.get("x-empty"), Some(""));
        assert_eq!(h.get_nonempty("x-empty"), None);
        assert_eq!(h.names().filter(|n| *n == "x-two").count(), 2);
    }
}
