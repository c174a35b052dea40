//! Envoy's filter-chain rules, replayed between the stages of one filter.
//!
//! Request callbacks go to the stages in chain order, response callbacks in reverse (Envoy's
//! encoder order). The rules that matter, as Envoy applies them to separate filters:
//! - a stage that returns `Pause` from headers holds the later stages back; they get their
//!   headers callback when it continues, from the body callback, and then the buffered body;
//! - a stage that returns `Pause` from a body chunk gets the whole buffer on its next callback,
//!   while stages before it, which passed the first bytes on, get only the new ones (the body
//!   offset of [`aimesh_glue::stage`]);
//! - a stage that answers the request (a local reply) is the last one to see it.

use aimesh_glue::stage::{take_body_delta, take_replied, with_body_offset};
use proxy_wasm::types::Action;

/// The stream callbacks of one stage (a filter's `HttpContext`).
pub trait Stage {
    /// `on_http_request_headers`.
    fn request_headers(&mut self, n: usize, eos: bool) -> Action;
    /// `on_http_request_body`.
    fn request_body(&mut self, size: usize, eos: bool) -> Action;
    /// `on_http_request_trailers`.
    fn request_trailers(&mut self, n: usize) -> Action;
    /// `on_http_response_headers`.
    fn response_headers(&mut self, n: usize, eos: bool) -> Action;
    /// `on_http_response_body`.
    fn response_body(&mut self, size: usize, eos: bool) -> Action;
    /// `on_http_response_trailers`.
    fn response_trailers(&mut self, n: usize) -> Action;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Request,
    Response,
}

/// Per-direction progress.
#[derive(Debug, Default)]
struct Progress {
    /// Stages (counted in this direction's order) that have had their headers callback.
    entered: usize,
    /// Bytes at the front of Envoy's current buffer that each stage (by index) passed on.
    seen: Vec<usize>,
    /// Stages (by index) that paused on a body chunk: they hold the whole buffer already.
    buffering: Vec<bool>,
    /// Header count Envoy gave, replayed to stages that enter late.
    headers: usize,
}

/// One request's walk through the stages.
pub struct Flow<S> {
    stages: Vec<S>,
    request: Progress,
    response: Progress,
    /// A stage answered the request: the stages after it never see it.
    answered: bool,
    /// Length of Envoy's buffered body (a host call; needed only when trailers arrive).
    buffered: fn(bool) -> usize,
}

fn buffered_len(request: bool) -> usize {
    let body = if request {
        aimesh_glue::Body::Request
    } else {
        aimesh_glue::Body::Response
    };
    body.read(usize::MAX).map_or(0, |b| b.len())
}

impl<S: Stage> Flow<S> {
    /// A walk through `stages` (in chain order).
    pub fn new(stages: Vec<S>) -> Self {
        Self::with_buffered(stages, buffered_len)
    }

    pub(crate) fn with_buffered(stages: Vec<S>, buffered: fn(bool) -> usize) -> Self {
        let n = stages.len();
        let progress = || Progress {
            seen: vec![0; n],
            buffering: vec![false; n],
            ..Progress::default()
        };
        Flow {
            stages,
            request: progress(),
            response: progress(),
            answered: false,
            buffered,
        }
    }

    /// Every stage, in chain order.
    pub fn stages_mut(&mut self) -> impl Iterator<Item = &mut S> {
        self.stages.iter_mut()
    }

    fn index(&self, dir: Dir, pos: usize) -> usize {
        match dir {
            Dir::Request => pos,
            Dir::Response => self.stages.len() - 1 - pos,
        }
    }

    fn progress(&mut self, dir: Dir) -> &mut Progress {
        match dir {
            Dir::Request => &mut self.request,
            Dir::Response => &mut self.response,
        }
    }

    /// True when the stage just called answered the request (it then holds the rest back).
    fn replied(&mut self, dir: Dir) -> bool {
        let r = take_replied();
        if r && dir == Dir::Request {
            self.answered = true;
        }
        r
    }

    fn call_headers(&mut self, dir: Dir, i: usize, n: usize, eos: bool) -> Action {
        match (dir, self.stages.get_mut(i)) {
            (Dir::Request, Some(s)) => s.request_headers(n, eos),
            (Dir::Response, Some(s)) => s.response_headers(n, eos),
            (_, None) => Action::Continue,
        }
    }

    fn call_body(&mut self, dir: Dir, i: usize, size: usize, eos: bool) -> Action {
        let offset = self
            .progress(dir)
            .seen
            .get(i)
            .copied()
            .unwrap_or(0)
            .min(size);
        let Some(s) = self.stages.get_mut(i) else {
            return Action::Continue;
        };
        with_body_offset(offset, || match dir {
            Dir::Request => s.request_body(size - offset, eos),
            Dir::Response => s.response_body(size - offset, eos),
        })
    }

    fn call_trailers(&mut self, dir: Dir, i: usize, n: usize) -> Action {
        match (dir, self.stages.get_mut(i)) {
            (Dir::Request, Some(s)) => s.request_trailers(n),
            (Dir::Response, Some(s)) => s.response_trailers(n),
            (_, None) => Action::Continue,
        }
    }

    /// Gives the stage at `pos` its (late) headers callback if it has not had one.
    /// Returns false when it answered the request.
    fn enter(&mut self, dir: Dir, pos: usize) -> bool {
        if pos < self.progress(dir).entered {
            return true;
        }
        self.progress(dir).entered = pos + 1;
        let (i, n) = (self.index(dir, pos), self.progress(dir).headers);
        // A stage paused in headers still gets the body: Envoy buffers it for that filter.
        let _ = self.call_headers(dir, i, n, false);
        !self.replied(dir)
    }

    fn headers(&mut self, dir: Dir, n: usize, eos: bool) -> Action {
        self.progress(dir).headers = n;
        for pos in 0..self.stages.len() {
            self.progress(dir).entered = pos + 1;
            let i = self.index(dir, pos);
            let action = self.call_headers(dir, i, n, eos);
            if self.replied(dir) || action != Action::Continue {
                return Action::Pause;
            }
        }
        Action::Continue
    }

    fn body(&mut self, dir: Dir, mut size: usize, eos: bool) -> Action {
        if dir == Dir::Request && self.answered {
            return Action::Continue;
        }
        let _ = take_body_delta();
        for pos in 0..self.stages.len() {
            if !self.enter(dir, pos) {
                return Action::Pause;
            }
            let i = self.index(dir, pos);
            let action = self.call_body(dir, i, size, eos);
            // A stage that rewrote the body changed its length under Envoy's `size`.
            size = size.saturating_add_signed(take_body_delta());
            if self.replied(dir) {
                return Action::Pause;
            }
            let p = self.progress(dir);
            if let Some(b) = p.buffering.get_mut(i) {
                *b = action != Action::Continue;
            }
            if action != Action::Continue {
                return Action::Pause;
            }
            if let Some(seen) = p.seen.get_mut(i) {
                *seen = size;
            }
        }
        // Continue hands the buffer on: the next callback starts a new one.
        self.progress(dir).seen.fill(0);
        Action::Continue
    }

    fn trailers(&mut self, dir: Dir, n: usize) -> Action {
        if dir == Dir::Request && self.answered {
            return Action::Continue;
        }
        let mut total = None;
        let _ = take_body_delta();
        for pos in 0..self.stages.len() {
            if !self.enter(dir, pos) {
                return Action::Pause;
            }
            let i = self.index(dir, pos);
            // A stage the buffered body has not fully reached gets it first (end of stream is
            // the trailers').
            let len = *total.get_or_insert_with(|| (self.buffered)(dir == Dir::Request));
            let p = self.progress(dir);
            let holds = p.buffering.get(i).copied().unwrap_or(false);
            if !holds && p.seen.get(i).copied().unwrap_or(0) < len {
                let _ = self.call_body(dir, i, len, false);
                let len = len.saturating_add_signed(take_body_delta());
                total = Some(len);
                if self.replied(dir) {
                    return Action::Pause;
                }
                if let Some(seen) = self.progress(dir).seen.get_mut(i) {
                    *seen = len;
                }
            }
            let action = self.call_trailers(dir, i, n);
            total = total.map(|t| t.saturating_add_signed(take_body_delta()));
            if self.replied(dir) || action != Action::Continue {
                return Action::Pause;
            }
        }
        let p = self.progress(dir);
        p.seen.fill(0);
        p.buffering.fill(false);
        Action::Continue
    }

    /// `on_http_request_headers`.
    pub fn request_headers(&mut self, n: usize, eos: bool) -> Action {
        self.headers(Dir::Request, n, eos)
    }

    /// `on_http_request_body`.
    pub fn request_body(&mut self, size: usize, eos: bool) -> Action {
        self.body(Dir::Request, size, eos)
    }

    /// `on_http_request_trailers`.
    pub fn request_trailers(&mut self, n: usize) -> Action {
        self.trailers(Dir::Request, n)
    }

    /// `on_http_response_headers`.
    pub fn response_headers(&mut self, n: usize, eos: bool) -> Action {
        self.headers(Dir::Response, n, eos)
    }

    /// `on_http_response_body`.
    pub fn response_body(&mut self, size: usize, eos: bool) -> Action {
        self.body(Dir::Response, size, eos)
    }

    /// `on_http_response_trailers`.
    pub fn response_trailers(&mut self, n: usize) -> Action {
        self.trailers(Dir::Response, n)
    }
}

#[cfg(test)]
#[path = "flow_tests.rs"]
mod tests;
