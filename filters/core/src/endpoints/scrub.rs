//! Takes the secrets the gateway injects back out of what a provider answers.
//!
//! A provider that echoes a credential (a debug header, an error quoting the `Authorization` it
//! rejected) would otherwise hand the gateway's key to the caller. header-auth knows the exact
//! values it sends, so it replaces each occurrence in response headers and error bodies.

/// What a scrubbed secret becomes.
pub const MARK: &[u8] = b"[REDACTED]";

/// Shorter values are not scrubbed: they would match ordinary text (and are no real secret).
pub const MIN_LEN: usize = 8;

/// The values to take out, longest first, so a key inside a longer header value (`Bearer
/// <key>`) does not leave the rest of that value behind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scrubber {
    secrets: Vec<Vec<u8>>,
}

impl Scrubber {
    /// A scrubber for `values`, deduplicated; those under [`MIN_LEN`] bytes are ignored.
    pub fn new<I: IntoIterator<Item = String>>(values: I) -> Self {
        let mut secrets: Vec<Vec<u8>> = values
            .into_iter()
            .filter(|v| v.len() >= MIN_LEN)
            .map(String::into_bytes)
            .collect();
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        Self { secrets }
    }

    /// True when there is nothing to scrub (the filter then skips responses).
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// `input` with every secret replaced by [`MARK`]; `None` when it holds none.
    pub fn scrub(&self, input: &[u8]) -> Option<Vec<u8>> {
        let mut out: Option<Vec<u8>> = None;
        for s in &self.secrets {
            let current = out.as_deref().unwrap_or(input);
            if let Some(replaced) = replace_all(current, s) {
                out = Some(replaced);
            }
        }
        out
    }
}

fn replace_all(haystack: &[u8], needle: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut last = 0;
    let mut i = 0;
    let mut found = false;
    while i + needle.len() <= haystack.len() {
        if haystack[i..].starts_with(needle) {
            out.extend_from_slice(&haystack[last..i]);
            out.extend_from_slice(MARK);
            i += needle.len();
            last = i;
            found = true;
        } else {
            i += 1;
        }
    }
    if !found {
        return None;
    }
    out.extend_from_slice(&haystack[last..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(values: &[&str]) -> Scrubber {
        Scrubber::new(values.iter().map(|v| v.to_string()))
    }

    #[test]
    fn every_occurrence_goes_and_the_rest_stays_byte_for_byte() {
        let sc = s(&["sk-live-0123456789"]);
        let body = br#"{"error":{"message":"bad key sk-live-0123456789 (sk-live-0123456789)"}}"#;
        assert_eq!(
            sc.scrub(body).as_deref(),
            Some(&br#"{"error":{"message":"bad key [REDACTED] ([REDACTED])"}}"#[..])
        );
        assert_eq!(sc.scrub(b"nothing secret here"), None);
        assert_eq!(sc.scrub(b""), None);
        assert_eq!(
            sc.scrub(b"sk-live-012345678"),
            None,
            "a prefix is not the key"
        );
    }

    #[test]
    fn the_longest_value_wins_so_nothing_of_it_is_left() {
        let sc = s(&["sk-live-0123456789", "Bearer sk-live-0123456789"]);
        assert_eq!(
            sc.scrub(b"got: Bearer sk-live-0123456789.").as_deref(),
            Some(&b"got: [REDACTED]."[..])
        );
    }

    #[test]
    fn short_values_are_not_scrubbed_and_duplicates_count_once() {
        let sc = s(&["short", "abcdefgh", "abcdefgh"]);
        assert_eq!(sc.secrets.len(), 1);
        assert_eq!(sc.scrub(b"short").as_deref(), None);
        assert!(s(&["tiny"]).is_empty());
        // Adjacent and overlapping-at-the-edge occurrences.
        assert_eq!(
            sc.scrub(b"abcdefghabcdefgh").as_deref(),
            Some(&b"[REDACTED][REDACTED]"[..])
        );
    }
}
