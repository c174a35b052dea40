//! SSE framing for the stream rewriters (chat completions, Responses, MCP): whole events out of
//! a body the transport split anywhere, with memory bounded by [`MAX_EVENT`].

use super::stream::MAX_EVENT;

/// The events of one SSE body as they complete.
#[derive(Debug, Default)]
pub(crate) struct SseFrames {
    pub(crate) buf: Vec<u8>,
    /// How far `buf` was searched for an event's end already.
    searched: usize,
    /// The current event went past [`MAX_EVENT`]: its bytes are not reassembled.
    oversize: bool,
    /// Bytes of oversize events dropped (redacting) or passed unread (restoring only).
    pub(crate) unread: u64,
}

/// Where one SSE event ends (after its blank line), searching from `from`.
pub(crate) fn event_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + 1 < buf.len() {
        if buf[i] == b'\n' {
            if buf[i + 1] == b'\n' {
                return Some(i + 2);
            }
            if buf[i + 1] == b'\r' && buf.get(i + 2) == Some(&b'\n') {
                return Some(i + 3);
            }
        }
        i += 1;
    }
    None
}

impl SseFrames {
    /// Feeds body bytes: `each` gets every event that completed (and at `eos` what is left, an
    /// event without its blank line), in order, with `out` to write its bytes into. The bytes of
    /// an oversize event go to `out` unread when `pass_unread`, else nowhere.
    pub(crate) fn push(
        &mut self,
        chunk: &[u8],
        eos: bool,
        pass_unread: bool,
        out: &mut Vec<u8>,
        mut each: impl FnMut(&[u8], &mut Vec<u8>),
    ) {
        self.buf.extend_from_slice(chunk);
        if self.oversize {
            self.skip_oversize(pass_unread, out);
        }
        while let Some(end) = event_end(&self.buf, self.searched.saturating_sub(2)) {
            let ev: Vec<u8> = self.buf.drain(..end).collect();
            self.searched = 0;
            each(&ev, out);
        }
        if self.oversize || self.buf.len() > MAX_EVENT {
            self.oversize = true;
            self.skip_oversize(pass_unread, out);
        }
        self.searched = self.buf.len();
        if eos {
            let rest = std::mem::take(&mut self.buf);
            self.searched = 0;
            if self.oversize {
                self.unread += rest.len() as u64;
                if pass_unread {
                    out.extend_from_slice(&rest);
                }
            } else if !rest.is_empty() {
                each(&rest, out);
            }
        }
    }

    /// Lets the bytes of an oversize event go (or drops them) up to its end, keeping only the two
    /// bytes that may start its terminating blank line.
    fn skip_oversize(&mut self, pass_unread: bool, out: &mut Vec<u8>) {
        let (upto, ended) = match event_end(&self.buf, 0) {
            Some(end) => (end, true),
            None => (self.buf.len().saturating_sub(2), false),
        };
        let gone: Vec<u8> = self.buf.drain(..upto).collect();
        self.unread += gone.len() as u64;
        if pass_unread {
            out.extend_from_slice(&gone);
        }
        self.oversize = !ended;
        self.searched = 0;
    }
}
