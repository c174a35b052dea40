//! Incremental Server-Sent Events scanner for OpenAI streams.
//!
//! Bytes arrive in transport chunks cut anywhere, even inside a `\r\n`. The scanner reads each
//! chunk once, collects the `data:` payloads of complete events and hands back what the client
//! must receive. In pass-through mode that is always the chunk unchanged. In strip mode (the
//! gateway injected `include_usage`, the client did not ask for it) the bytes of an unfinished
//! event are held only until the event shows it is an ordinary chunk (`"choices":[{`) or ends;
//! a complete usage-only event is dropped, everything else is released at once.

use super::usage::{read, Reading, Usage};

/// What the caller must forward for one input chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forward {
    /// Forward the chunk as it came.
    Unchanged,
    /// Forward these bytes instead (possibly empty).
    Replace(Vec<u8>),
}

/// Facts gathered from the stream so far.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StreamFacts {
    /// Last `usage` seen on any event.
    pub usage: Option<Usage>,
    /// `model` of the first chunk that named one.
    pub model: Option<String>,
    /// Generated text, for estimates.
    pub text: String,
    /// Events whose `data` was JSON.
    pub events: u64,
    /// Usage-only events removed from what the client receives.
    pub dropped: u64,
    /// True once a chunk carried generated text.
    pub first_token_seen: bool,
}

/// The scanner; feed it every response chunk in order, then call [`SseTap::finish`].
#[derive(Debug, Default)]
pub struct SseTap {
    strip: bool,
    /// Current line, without its terminator.
    line: Vec<u8>,
    /// `data:` payload of the current event (lines joined by `\n`).
    data: Vec<u8>,
    has_data: bool,
    /// Last byte was `\r`: a following `\n` belongs to the same line break.
    after_cr: bool,
    /// Strip mode: bytes of the current event not yet released.
    held: Vec<u8>,
    /// Strip mode: the current event is known not to be usage-only; its bytes flow through.
    releasing: bool,
    /// Strip mode: how far `held` was searched for the `choices` marker.
    searched: usize,
    /// What the stream said so far.
    pub facts: StreamFacts,
}

/// What one byte did.
enum Step {
    Byte,
    LfOfCrlf,
    /// Completed an event; true when it must be dropped.
    Event(bool),
}

const CHOICES: &[u8] = b"\"choices\"";

impl SseTap {
    /// A scanner; `strip` drops the usage-only event from the client's stream.
    pub fn new(strip: bool) -> Self {
        SseTap {
            strip,
            ..SseTap::default()
        }
    }

    /// Scans one chunk; returns what to forward in its place.
    pub fn feed(&mut self, chunk: &[u8]) -> Forward {
        if !self.strip {
            for &b in chunk {
                self.byte(b);
            }
            return Forward::Unchanged;
        }
        let mut out = Vec::with_capacity(chunk.len() + self.held.len());
        for &b in chunk {
            if self.releasing {
                out.push(b);
            } else {
                self.held.push(b);
            }
            match self.byte(b) {
                Step::Byte => {}
                // The `\n` of a `\r\n` that ended the previous event belongs to that event.
                Step::LfOfCrlf => {
                    if !self.releasing && self.held.len() == 1 {
                        out.append(&mut self.held);
                    }
                }
                Step::Event(drop) => {
                    if !drop {
                        out.append(&mut self.held);
                    }
                    self.held.clear();
                    self.releasing = false;
                    self.searched = 0;
                }
            }
        }
        if !self.releasing && !self.held.is_empty() && self.ordinary_so_far() {
            self.releasing = true;
            out.append(&mut self.held);
        }
        if out.as_slice() == chunk {
            Forward::Unchanged
        } else {
            Forward::Replace(out)
        }
    }

    /// End of stream: an unterminated last event is still read for its usage; the bytes still
    /// held go to the client unless they are the usage-only event.
    pub fn finish(&mut self) -> Vec<u8> {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.field(&line);
        }
        let drop = self.dispatch();
        let held = std::mem::take(&mut self.held);
        if drop && !self.releasing {
            Vec::new()
        } else {
            held
        }
    }

    /// True when the held bytes show an ordinary chunk (choices with an element).
    fn ordinary_so_far(&mut self) -> bool {
        let start = self.searched.saturating_sub(CHOICES.len() + 8);
        let hay = &self.held[start..];
        self.searched = self.held.len();
        let Some(pos) = hay.windows(CHOICES.len()).position(|w| w == CHOICES) else {
            return false;
        };
        let mut rest = hay[pos + CHOICES.len()..]
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace());
        matches!(
            (rest.next(), rest.next(), rest.next()),
            (Some(b':'), Some(b'['), Some(c)) if c != b']'
        )
    }

    /// Consumes one byte.
    fn byte(&mut self, b: u8) -> Step {
        let after_cr = std::mem::replace(&mut self.after_cr, b == b'\r');
        if b == b'\n' && after_cr {
            return Step::LfOfCrlf;
        }
        if b != b'\n' && b != b'\r' {
            self.line.push(b);
            return Step::Byte;
        }
        if self.line.is_empty() {
            return Step::Event(self.dispatch());
        }
        let line = std::mem::take(&mut self.line);
        self.field(&line);
        self.line = line;
        self.line.clear();
        Step::Byte
    }

    fn field(&mut self, line: &[u8]) {
        let (name, value) = match line.iter().position(|&c| c == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        if name == b"data" {
            if self.has_data {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(value);
            self.has_data = true;
        }
    }

    /// Ends the current event; true when it must be dropped.
    fn dispatch(&mut self) -> bool {
        if !self.has_data {
            return false;
        }
        self.has_data = false;
        let data = std::mem::take(&mut self.data);
        let drop = match read(&data) {
            Some(r) => self.absorb(r),
            None => false,
        };
        self.data = data;
        self.data.clear();
        drop
    }

    fn absorb(&mut self, r: Reading) -> bool {
        self.facts.events += 1;
        let usage_only = r.is_usage_only();
        if let Some(u) = r.usage {
            self.facts.usage = Some(u);
        }
        if self.facts.model.is_none() {
            self.facts.model = r.model;
        }
        if !r.text.is_empty() {
            self.facts.first_token_seen = true;
            self.facts.text.push_str(&r.text);
        }
        let drop = self.strip && usage_only;
        if drop {
            self.facts.dropped += 1;
        }
        drop
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = concat!(
        "data: {\"model\":\"m1\",\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}],\"usage\":null}\n\n",
        "data: {\"model\":\"m1\",\"choices\":[{\"delta\":{\"content\":\"héllo\"}}],\"usage\":null}\r\n\r\n",
        ": keep-alive\n\n",
        "data: {\"model\":\"m1\",\"choices\":[{\"delta\":{\"content\":\" world\"}}],\"usage\":null}\n\n",
        "data: {\"model\":\"m1\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\n",
        "data: [DONE]\n\n",
    );

    fn without_usage_event() -> String {
        STREAM
            .split_inclusive("\n\n")
            .filter(|e| !e.contains("\"choices\":[]"))
            .collect()
    }

    fn run(strip: bool, cuts: &[usize]) -> (Vec<u8>, SseTap) {
        let bytes = STREAM.as_bytes();
        let mut tap = SseTap::new(strip);
        let mut out = Vec::new();
        let mut last = 0;
        for &c in cuts.iter().chain(std::iter::once(&bytes.len())) {
            let chunk = &bytes[last..c];
            match tap.feed(chunk) {
                Forward::Unchanged => out.extend_from_slice(chunk),
                Forward::Replace(b) => out.extend(b),
            }
            last = c;
        }
        out.extend(tap.finish());
        (out, tap)
    }

    fn check(cuts: &[usize]) {
        let (out, tap) = run(false, cuts);
        assert_eq!(out, STREAM.as_bytes(), "cuts {cuts:?}");
        let want = Some(Usage {
            input: 3,
            cached_input: 0,
            output: 2,
        });
        assert_eq!(tap.facts.usage, want);
        assert_eq!(tap.facts.text, "héllo world");
        assert_eq!(tap.facts.model.as_deref(), Some("m1"));
        let (out, tap) = run(true, cuts);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            without_usage_event(),
            "cuts {cuts:?}"
        );
        assert_eq!(tap.facts.usage, want);
        assert_eq!(tap.facts.dropped, 1);
    }

    #[test]
    fn every_single_and_double_cut() {
        let n = STREAM.len();
        for i in 0..=n {
            check(&[i]);
        }
        for i in (0..=n).step_by(3) {
            for j in (i..=n).step_by(7) {
                check(&[i, j]);
            }
        }
    }

    #[test]
    fn byte_at_a_time() {
        let cuts: Vec<usize> = (1..STREAM.len()).collect();
        check(&cuts);
    }

    #[test]
    fn ordinary_events_are_released_before_they_end() {
        let mut tap = SseTap::new(true);
        let part = b"data: {\"id\":\"x\",\"choices\":[{\"delta\":{\"content\":\"ab";
        assert_eq!(tap.feed(part), Forward::Unchanged);
        let part = b"data: {\"id\":\"x\",\"choices\":[],\"usage\":{\"prompt_tokens\":1";
        let mut tap = SseTap::new(true);
        assert_eq!(tap.feed(part), Forward::Replace(Vec::new()));
        assert_eq!(tap.feed(b"}}\n\n"), Forward::Replace(Vec::new()));
        assert_eq!(tap.facts.dropped, 1);
    }

    #[test]
    fn unterminated_last_event_is_read() {
        let mut tap = SseTap::new(true);
        let ev = b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}";
        assert_eq!(tap.feed(ev), Forward::Replace(Vec::new()));
        assert_eq!(tap.finish(), Vec::<u8>::new());
        assert_eq!(tap.facts.usage.map(|u| u.output), Some(1));
        let mut tap = SseTap::new(true);
        let ev = b"data: {\"choices\":[]";
        assert_eq!(tap.feed(ev), Forward::Replace(Vec::new()));
        assert_eq!(tap.finish(), ev.to_vec());
    }

    #[test]
    fn malformed_events_pass_through() {
        let s = b"data: {\"choices\": [\n\nthis line is not sse\n\ndata: [DONE]\n\n";
        let mut tap = SseTap::new(true);
        let mut out = match tap.feed(s) {
            Forward::Unchanged => s.to_vec(),
            Forward::Replace(b) => b,
        };
        out.extend(tap.finish());
        assert_eq!(out, s.to_vec());
        assert_eq!(tap.facts.usage, None);
    }
}
