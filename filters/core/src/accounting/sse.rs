//! Incremental Server-Sent Events scanner for OpenAI streams.
//!
//! Bytes arrive in transport chunks cut anywhere, even inside a `\r\n`. The scanner reads each
//! chunk once, collects the `data:` payloads of complete events and hands back what the client
//! must receive. In pass-through mode that is always the chunk unchanged. In strip mode (the
//! gateway injected `include_usage`, the client did not ask for it) the bytes of an unfinished
//! event are held only until the event shows it is an ordinary chunk (`"choices":[{`) or ends;
//! a complete usage-only event is dropped, everything else is released at once.
//!
//! Memory is bounded by the `max` given to [`SseTap::new`]: a line, an event's data, the held
//! bytes and the collected text each stay under it. A line or event past it (a provider that
//! streams a line without end) is skipped and its bytes are counted instead
//! ([`StreamFacts::skipped`]), so accounting can estimate them and flag the figures.

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
    /// Bytes of `data` (or generated text) past the limit, not read; 0 when all was read.
    pub skipped: u64,
}

/// The scanner; feed it every response chunk in order, then call [`SseTap::finish`].
#[derive(Debug, Default)]
pub struct SseTap {
    strip: bool,
    /// Most bytes kept in `line`, in `data`, in `held` and in `facts.text`.
    max: usize,
    /// The current line went past `max`: the rest of it is skipped.
    line_over: bool,
    /// The skipped line is a `data` line.
    line_over_data: bool,
    /// The current event lost data past `max`: it is not parsed.
    event_over: bool,
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
    /// Events are Anthropic Messages events (set by [`SseTap::anthropic`], or by a
    /// `message_start` event name): usage is read and merged the Anthropic way.
    anthropic: bool,
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
    /// A scanner; `strip` drops the usage-only event from the client's stream; `max` bounds
    /// each of its buffers (bytes).
    pub fn new(strip: bool, max: usize) -> Self {
        SseTap {
            strip,
            max: max.max(1),
            ..SseTap::default()
        }
    }

    /// The same scanner reading Anthropic Messages events.
    pub fn anthropic(mut self) -> Self {
        self.anthropic = true;
        self
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
        // An event past the limit is no usage-only chunk (those are a few hundred bytes):
        // holding it longer would only grow memory.
        if !self.releasing
            && !self.held.is_empty()
            && (self.held.len() > self.max || self.event_over || self.ordinary_so_far())
        {
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
        if self.line_over {
            self.end_long_line();
        } else if !self.line.is_empty() {
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
            if self.line_over {
                self.facts.skipped += u64::from(self.line_over_data);
            } else if self.line.len() < self.max {
                self.line.push(b);
            } else {
                self.start_long_line();
                self.facts.skipped += u64::from(self.line_over_data);
            }
            return Step::Byte;
        }
        if self.line_over {
            self.end_long_line();
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

    /// The current line reached `max`: what it kept is dropped (and counted, for a data line);
    /// its event can no longer be read.
    fn start_long_line(&mut self) {
        self.line_over = true;
        self.line_over_data = self.line.starts_with(b"data");
        if self.line_over_data {
            self.facts.skipped += self.line.len() as u64;
            self.drop_event_data();
        }
        self.line = Vec::new();
    }

    /// A skipped line ended: its event ends normally later (or at the end of the stream).
    fn end_long_line(&mut self) {
        self.line_over = false;
        if self.line_over_data {
            self.has_data = true;
        }
        self.line_over_data = false;
    }

    /// The current event's data is past the limit: count it, free it, do not parse the event.
    fn drop_event_data(&mut self) {
        self.facts.skipped += self.data.len() as u64;
        self.data = Vec::new();
        self.event_over = true;
    }

    fn field(&mut self, line: &[u8]) {
        let (name, value) = match line.iter().position(|&c| c == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        if name == b"event" && value == b"message_start" {
            self.anthropic = true;
        }
        if name == b"data" {
            let had = std::mem::replace(&mut self.has_data, true);
            if self.event_over {
                self.facts.skipped += value.len() as u64;
                return;
            }
            if self.data.len() + value.len() + 1 > self.max {
                self.drop_event_data();
                self.facts.skipped += value.len() as u64;
                return;
            }
            if had {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(value);
        }
    }

    /// Ends the current event; true when it must be dropped.
    fn dispatch(&mut self) -> bool {
        if !self.has_data {
            return false;
        }
        self.has_data = false;
        if std::mem::take(&mut self.event_over) {
            return false;
        }
        let data = std::mem::take(&mut self.data);
        let reading = if self.anthropic {
            super::anthropic::read_event(&data, self.facts.usage)
        } else {
            read(&data)
        };
        let drop = match reading {
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
            if self.facts.text.len() + r.text.len() <= self.max {
                self.facts.text.push_str(&r.text);
            } else {
                self.facts.skipped += r.text.len() as u64;
            }
        }
        let drop = self.strip && usage_only;
        if drop {
            self.facts.dropped += 1;
        }
        drop
    }
}

#[cfg(test)]
#[path = "sse_tests.rs"]
mod tests;
