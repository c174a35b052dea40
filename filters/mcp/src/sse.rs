//! Server-sent events, split anywhere: whole events out, the partial tail held for the next
//! chunk. An event is rewritten only when its `data` changes; otherwise its bytes go out as
//! they came (so `id:` lines, comments and line endings survive for resumption).

/// Accumulates a response stream and hands out complete events.
#[derive(Debug, Default)]
pub struct Splitter {
    pending: Vec<u8>,
}

/// One complete event: its raw bytes (terminating blank line included) and its data.
#[derive(Debug, PartialEq, Eq)]
pub struct Event {
    /// The event as received.
    pub raw: Vec<u8>,
    /// The `data:` lines joined with `\n`; `None` when the event has none.
    pub data: Option<Vec<u8>>,
}

impl Event {
    /// The event with its data replaced: every non-`data` line kept, one `data:` line.
    pub fn with_data(&self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.raw.len() + data.len());
        let mut wrote = false;
        for line in lines(&self.raw) {
            if line.is_empty() {
                continue;
            }
            if field(line).0 == b"data" {
                if !wrote {
                    out.extend_from_slice(b"data: ");
                    out.extend_from_slice(data);
                    out.push(b'\n');
                    wrote = true;
                }
                continue;
            }
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        out.push(b'\n');
        out
    }
}

/// Lines of `raw` without their terminators (`\n` or `\r\n`).
fn lines(raw: &[u8]) -> impl Iterator<Item = &[u8]> {
    raw.split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

/// `name: value` -> (name, value), one leading space of the value dropped.
fn field(line: &[u8]) -> (&[u8], &[u8]) {
    match line.iter().position(|b| *b == b':') {
        None => (line, &[]),
        Some(i) => {
            let v = &line[i + 1..];
            (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
        }
    }
}

fn parse(raw: Vec<u8>) -> Event {
    let values: Vec<&[u8]> = lines(&raw)
        .filter(|l| !l.is_empty())
        .map(field)
        .filter(|(name, _)| *name == b"data")
        .map(|(_, v)| v)
        .collect();
    let data = (!values.is_empty()).then(|| values.join(&b'\n'));
    Event { raw, data }
}

impl Splitter {
    /// Adds a chunk; returns the events it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Event> {
        // A terminator may straddle the chunks: `\n` + `\r\n` begins up to two bytes back.
        let start = self.pending.len().saturating_sub(2);
        self.pending.extend_from_slice(chunk);
        let mut events = Vec::new();
        let mut from = 0;
        let mut i = start;
        // An event ends at an empty line: `\n\n` or `\n\r\n`.
        while i < self.pending.len() {
            if self.pending[i] == b'\n' {
                let rest = &self.pending[i + 1..];
                let end = if rest.first() == Some(&b'\n') {
                    Some(i + 2)
                } else if rest.starts_with(b"\r\n") {
                    Some(i + 3)
                } else {
                    None
                };
                if let Some(end) = end {
                    if i + 1 > from {
                        events.push(parse(self.pending[from..end].to_vec()));
                    }
                    from = end;
                    i = end;
                    continue;
                }
            }
            i += 1;
        }
        self.pending.drain(..from);
        events
    }

    /// Whatever is left (a stream that ended without a final blank line).
    pub fn rest(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &[u8] =
        b"event: message\nid: 7\ndata: {\"a\":1}\n\n: keepalive\n\ndata: x\r\ndata: y\r\n\r\n";

    fn whole() -> Vec<Event> {
        Splitter::default().push(STREAM)
    }

    #[test]
    fn events_data_and_raw_bytes() {
        let ev = whole();
        assert_eq!(ev.len(), 3);
        assert_eq!(ev[0].data.as_deref(), Some(&b"{\"a\":1}"[..]));
        assert_eq!(ev[1].data, None);
        assert_eq!(ev[2].data.as_deref(), Some(&b"x\ny"[..]));
        let joined: Vec<u8> = ev.iter().flat_map(|e| e.raw.clone()).collect();
        assert_eq!(joined, STREAM);
        assert_eq!(
            ev[0].with_data(b"{}"),
            b"event: message\nid: 7\ndata: {}\n\n".to_vec()
        );
    }

    #[test]
    fn split_at_every_byte_gives_the_same_events() {
        for cut in 0..=STREAM.len() {
            let mut s = Splitter::default();
            let mut ev = s.push(&STREAM[..cut]);
            ev.extend(s.push(&STREAM[cut..]));
            assert_eq!(ev, whole(), "cut at {cut}");
            assert!(s.rest().is_empty());
        }
        let mut s = Splitter::default();
        let ev: Vec<Event> = STREAM.iter().flat_map(|b| s.push(&[*b])).collect();
        assert_eq!(ev, whole());
    }
}
