//! Counting output tokens of a reply as it streams past, without buffering it.
//!
//! `usage.completion_tokens` wins when the reply carries it (non-streamed replies, streams with
//! `include_usage`); otherwise each SSE `data:` event except `[DONE]` counts as one token, which
//! is what a provider streaming one token per chunk sends.

const USAGE: &[u8] = b"\"completion_tokens\"";
const EVENT: &[u8] = b"data:";
const DONE: &[u8] = b"[DONE]";
/// A longer partial line (a big non-streamed body) keeps only its end, where `usage` is.
const MAX_LINE: usize = 64 * 1024;
const KEEP: usize = 256;

/// Incremental output-token counter.
#[derive(Debug, Default, Clone)]
pub struct TokenCounter {
    line: Vec<u8>,
    usage: Option<u64>,
    events: u64,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    let b = &b[start..];
    let end = b.len()
        - b.iter()
            .rev()
            .take_while(|c| c.is_ascii_whitespace())
            .count();
    &b[..end]
}

impl TokenCounter {
    /// Feeds the next body chunk.
    pub fn feed(&mut self, chunk: &[u8]) {
        let mut rest = chunk;
        while let Some(nl) = rest.iter().position(|b| *b == b'\n') {
            let mut line = std::mem::take(&mut self.line);
            line.extend_from_slice(&rest[..nl]);
            self.process(&line);
            rest = &rest[nl + 1..];
        }
        self.line.extend_from_slice(rest);
        if self.line.len() > MAX_LINE {
            let cut = self.line.len() - KEEP;
            self.line.drain(..cut);
        }
    }

    /// Processes a last line without a newline (end of body).
    pub fn finish(&mut self) {
        let line = std::mem::take(&mut self.line);
        self.process(&line);
    }

    fn process(&mut self, line: &[u8]) {
        let line = trim(line);
        if let Some(payload) = line.strip_prefix(EVENT) {
            if trim(payload) != DONE {
                self.events += 1;
            }
        }
        if let Some(p) = find(line, USAGE) {
            let digits: Vec<u8> = line[p + USAGE.len()..]
                .iter()
                .skip_while(|b| matches!(b, b' ' | b':'))
                .take_while(|b| b.is_ascii_digit())
                .copied()
                .collect();
            if let Some(n) = std::str::from_utf8(&digits)
                .ok()
                .and_then(|s| s.parse().ok())
            {
                self.usage = Some(n);
            }
        }
    }

    /// Output tokens seen so far (call [`TokenCounter::finish`] first at end of body).
    pub fn tokens(&self) -> u64 {
        self.usage.unwrap_or(self.events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_wins_and_events_count_otherwise() {
        let mut c = TokenCounter::default();
        c.feed(br#"{"usage":{"prompt_tokens":3,"completion_tokens": 8,"total_tokens":11}}"#);
        c.finish();
        assert_eq!(c.tokens(), 8);
        let mut c = TokenCounter::default();
        let stream = "data: {\"a\":1}\n\ndata: {\"a\":2}\n\ndata: {\"a\":3}\n\ndata: [DONE]\n\n";
        for part in stream.as_bytes().chunks(3) {
            c.feed(part);
        }
        assert_eq!(c.tokens(), 3);
        let mut c = TokenCounter::default();
        for part in br#"data: {"usage":{"completion_tokens":12}}"#.chunks(5) {
            c.feed(part);
        }
        c.finish();
        assert_eq!(c.tokens(), 12);
    }
}
