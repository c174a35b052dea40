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
///
/// Names and values live in one buffer, so reading a map of n headers, or copying one, costs two
/// allocations instead of 2n: a request reads three maps and copies some, and in Envoy each
/// allocation is a cold one.
#[derive(Debug, Clone, Default)]
pub struct Headers {
    /// Names and values, back to back. An edit appends; the bytes it replaces stay until the
    /// snapshot is dropped (snapshots live for one callback).
    bytes: Vec<u8>,
    /// Per header, in order: name start and end, value start and end, in `bytes`.
    entries: Vec<[usize; 4]>,
}

impl Headers {
    /// Builds a snapshot from pairs (tests, and callers that already hold the map).
    pub fn from_pairs(pairs: Vec<(String, Vec<u8>)>) -> Self {
        Self::from_slices(pairs.iter().map(|(k, v)| (k.as_bytes(), v.as_slice())))
    }

    /// Builds a snapshot from borrowed names and values (a host's own buffers), copying each
    /// once into the snapshot. A name that is not UTF-8 is kept with its bad bytes replaced.
    pub fn from_slices<'a>(pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> Self {
        Self::from_slices_sized(pairs, 0)
    }

    /// As [`Headers::from_slices`], with room for `bytes` bytes of names and values up front
    /// (a host that knows the total saves the buffer's regrowth).
    pub fn from_slices_sized<'a>(
        pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
        bytes: usize,
    ) -> Self {
        let pairs = pairs.into_iter();
        let mut h = Headers {
            bytes: Vec::with_capacity(bytes),
            entries: Vec::with_capacity(pairs.size_hint().0),
        };
        for (k, v) in pairs {
            match std::str::from_utf8(k) {
                Ok(_) => h.push(k, v),
                Err(_) => h.push(String::from_utf8_lossy(k).as_bytes(), v),
            }
        }
        h
    }

    fn push(&mut self, name: &[u8], value: &[u8]) {
        let ns = self.bytes.len();
        self.bytes.extend_from_slice(name);
        let vs = self.bytes.len();
        self.bytes.extend_from_slice(value);
        self.entries.push([ns, vs, vs, self.bytes.len()]);
    }

    fn name_of(&self, e: &[usize; 4]) -> &[u8] {
        &self.bytes[e[0]..e[1]]
    }

    fn value_of(&self, e: &[usize; 4]) -> &[u8] {
        &self.bytes[e[2]..e[3]]
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
        self.entries
            .iter()
            .find(|e| self.name_of(e).eq_ignore_ascii_case(name.as_bytes()))
            .map(|e| self.value_of(e))
    }

    /// True when `name` is present (with any value).
    pub fn has(&self, name: &str) -> bool {
        self.get_bytes(name).is_some()
    }

    /// Every value of `name`, in order.
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.entries
            .iter()
            .filter(move |e| self.name_of(e).eq_ignore_ascii_case(name.as_bytes()))
            .map(|e| self.value_of(e))
    }

    /// What Envoy's `set_http_*_header` does to the map: every value of `name` replaced by
    /// `value` (one, added at the end when absent), or removed.
    pub fn set(&mut self, name: &str, value: Option<&[u8]>) {
        // Names are nearly always lowercase already: no copy for them.
        let name: std::borrow::Cow<'_, str> = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            name.to_ascii_lowercase().into()
        } else {
            name.into()
        };
        let first = self
            .entries
            .iter()
            .position(|e| self.name_of(e) == name.as_bytes());
        let (Some(v), Some(i)) = (value, first) else {
            let bytes = &self.bytes;
            self.entries
                .retain(|e| &bytes[e[0]..e[1]] != name.as_bytes());
            if let Some(v) = value {
                self.push(name.as_bytes(), v);
            }
            return;
        };
        let vs = self.bytes.len();
        self.bytes.extend_from_slice(v);
        self.entries[i][2] = vs;
        self.entries[i][3] = self.bytes.len();
        let bytes = &self.bytes;
        let mut index = 0;
        self.entries.retain(|e| {
            let keep = index <= i || &bytes[e[0]..e[1]] != name.as_bytes();
            index += 1;
            keep
        });
    }

    /// Every header name, in order (a repeated header appears once per value).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.pairs().map(|(k, _)| k)
    }

    /// Appends a value (a repeated header keeps its earlier values).
    pub fn add(&mut self, name: &str, value: &[u8]) {
        self.push(name.to_ascii_lowercase().as_bytes(), value);
    }

    /// True when the map holds no header.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every `(name, value)`, in order.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &[u8])> {
        // Names were checked (or made) UTF-8 when stored.
        self.entries.iter().map(|e| {
            (
                std::str::from_utf8(self.name_of(e)).unwrap_or_default(),
                self.value_of(e),
            )
        })
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
    fn values_lists_every_value_of_a_name_in_order() {
        let h = hs();
        assert_eq!(
            h.values("X-Two").collect::<Vec<_>>(),
            vec![&b"first"[..], b"second"]
        );
        assert_eq!(h.values("absent").count(), 0);
    }

    #[test]
    fn edits_in_any_order_read_back_as_the_map_envoy_would_hold() {
        let mut h = hs();
        h.set("x-two", Some(b"one"));
        h.add("X-Two", b"again");
        h.set(":path", Some(b"/v1/embeddings"));
        h.set("x-latin1", None);
        h.add("x-new", b"n");
        let pairs: Vec<(&str, &[u8])> = h.pairs().collect();
        assert_eq!(
            pairs,
            vec![
                (":path", &b"/v1/embeddings"[..]),
                ("x-empty", b""),
                ("x-two", b"one"),
                ("x-two", b"again"),
                ("x-new", b"n"),
            ]
        );
        // A copy is independent of the original.
        let mut copy = h.clone();
        copy.set(":path", None);
        assert_eq!(h.get(":path"), Some("/v1/embeddings"));
        assert!(!copy.has(":path"));
    }

    #[test]
    fn a_name_that_is_not_utf8_is_kept_readable() {
        let h = Headers::from_slices([(&[b'x', 0xff][..], &b"v"[..]), (b"ok", b"1")]);
        assert_eq!(h.names().collect::<Vec<_>>(), vec!["x\u{fffd}", "ok"]);
        assert_eq!(h.get("ok"), Some("1"));
    }

    #[test]
    fn empty_values_are_present_but_not_nonempty() {
        let h = hs();
        assert_eq!(h.get("x-empty"), Some(""));
        assert_eq!(h.get_nonempty("x-empty"), None);
        assert_eq!(h.names().filter(|n| *n == "x-two").count(), 2);
    }
}
