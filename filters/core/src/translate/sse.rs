//! An incremental Server-Sent Events reader: bytes cut anywhere in, complete events out.
//!
//! Only the current line and the current event's `data` are held; an event whose data passes
//! `max` bytes is reported as [`SseItem::TooLarge`] instead of growing without bound.

/// One complete event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseItem {
    /// `event:` name (empty when none) and `data:` payload (lines joined by `\n`).
    Event {
        /// The `event:` field.
        name: String,
        /// The `data:` payload.
        data: String,
    },
    /// An event went past the size limit; its data was dropped.
    TooLarge,
}

/// The reader; feed it every chunk in order.
#[derive(Debug, Default)]
pub struct SseReader {
    max: usize,
    line: Vec<u8>,
    name: String,
    data: String,
    has_data: bool,
    after_cr: bool,
    over: bool,
}

impl SseReader {
    /// A reader holding at most `max` bytes of one event.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            ..Self::default()
        }
    }

    /// Reads `chunk`; returns the events it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<SseItem> {
        let mut out = Vec::new();
        for &b in chunk {
            match b {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    self.end_line(&mut out);
                }
                _ => {
                    self.after_cr = false;
                    if self.line.len() + self.data.len() < self.max {
                        self.line.push(b);
                    } else {
                        self.over = true;
                    }
                }
            }
        }
        out
    }

    /// The stream ended: an event left without its blank line still counts.
    pub fn finish(&mut self) -> Vec<SseItem> {
        let mut out = Vec::new();
        if !self.line.is_empty() {
            self.end_line(&mut out);
        }
        self.dispatch(&mut out);
        out
    }

    fn end_line(&mut self, out: &mut Vec<SseItem>) {
        if self.line.is_empty() {
            self.dispatch(out);
            return;
        }
        let line = String::from_utf8_lossy(&self.line).into_owned();
        self.line.clear();
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line.as_str(), ""),
        };
        match field {
            "event" => self.name = value.to_string(),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseItem>) {
        if self.over {
            out.push(SseItem::TooLarge);
        } else if self.has_data {
            out.push(SseItem::Event {
                name: std::mem::take(&mut self.name),
                data: std::mem::take(&mut self.data),
            });
        }
        self.name.clear();
        self.data.clear();
        self.has_data = false;
        self.over = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(name: &str, data: &str) -> SseItem {
        SseItem::Event {
            name: name.into(),
            data: data.into(),
        }
    }

    #[test]
    fn events_at_every_split_and_line_ending() {
        let input = b"event: a\r\ndata: {\"x\":1}\r\n\r\n: comment\n\ndata: one\ndata: two\n\nevent:b\rdata:3\r\r";
        for cut in 0..=input.len() {
            let mut r = SseReader::new(1024);
            let mut got = r.feed(&input[..cut]);
            got.extend(r.feed(&input[cut..]));
            got.extend(r.finish());
            assert_eq!(
                got,
                vec![ev("a", "{\"x\":1}"), ev("", "one\ntwo"), ev("b", "3")],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn an_oversized_event_is_reported_and_the_next_one_read() {
        let mut r = SseReader::new(16);
        let mut got = r.feed(b"data: 0123456789abcdefghij\n\ndata: ok\n\n");
        got.extend(r.finish());
        assert_eq!(got, vec![SseItem::TooLarge, ev("", "ok")]);
    }
}
