//! The pipeline: a request's walk through the stages of one filter, replaying Envoy's
//! filter-chain rules between them.
//!
//! Request callbacks go to the stages in chain order, response callbacks in reverse (Envoy's
//! encoder order). The rules that matter, as Envoy applies them to separate filters:
//! - a stage that returns `Pause` from headers holds the later stages back; they get their
//!   headers callback when it continues, from the body callback, and then the buffered body;
//! - a stage that returns `Pause` from a body chunk gets the whole buffer on its next callback,
//!   while stages before it, which passed the first bytes on, get only the new ones (the body
//!   offset, see [`PipelineHost::set_body_offset`]);
//! - a stage that answers the request (a local reply) is the last one to see it.

use crate::{Action, Body, CalloutResponse, Host, Stage};

/// What the pipeline needs from a host beyond [`Host`]: the body window a stage sees, and
/// what the stage just did to the stream.
pub trait PipelineHost: Host {
    /// The stage called next sees the body from `offset` on (0: all of it).
    fn set_body_offset(&mut self, offset: usize);
    /// True once (then reset) when a stage sent a local reply since the last call.
    fn take_replied(&mut self) -> bool;
    /// Bytes the body grew (negative: shrank) by through `replace_body` since the last call.
    fn take_body_delta(&mut self) -> isize;
    /// Length of the host's buffered body (needed only when trailers arrive).
    fn buffered_len(&mut self, which: Body) -> usize;
    /// Tokens of the callouts sent since the last call (the pipeline routes their answers).
    fn take_callouts(&mut self) -> Vec<u32>;
    /// This host as a plain [`Host`], for the stages.
    fn as_host(&mut self) -> &mut dyn Host;
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
}

/// One request's walk through the stages.
pub struct Flow {
    stages: Vec<Box<dyn Stage>>,
    request: Progress,
    response: Progress,
    /// A stage answered the request: the stages after it never see it.
    answered: bool,
    /// `log` ran: it runs once, however the stream ended.
    logged: bool,
    /// Callouts in flight: token -> index of the stage that sent it.
    callouts: Vec<(u32, usize)>,
    /// The stage holding the complete request body until its callout is answered.
    held: Option<usize>,
}

impl Flow {
    /// A walk through `stages` (in chain order).
    pub fn new(stages: Vec<Box<dyn Stage>>) -> Self {
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
            logged: false,
            callouts: Vec::new(),
            held: None,
        }
    }

    /// How many stages the walk has.
    pub fn len(&self) -> usize {
        self.stages.len()
    }

    /// True for a walk through no stage.
    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
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

    /// Notes the callouts stage `i` sent; true when it answered the request (it then holds the
    /// rest back).
    fn after(&mut self, host: &mut dyn PipelineHost, dir: Dir, i: usize) -> bool {
        for token in host.take_callouts() {
            self.callouts.push((token, i));
        }
        let r = host.take_replied();
        if r && dir == Dir::Request {
            self.answered = true;
        }
        r
    }

    fn call_headers(
        &mut self,
        host: &mut dyn PipelineHost,
        dir: Dir,
        i: usize,
        eos: bool,
    ) -> Action {
        host.set_body_offset(0);
        match (dir, self.stages.get_mut(i)) {
            (Dir::Request, Some(s)) => s.request_headers(host.as_host(), eos),
            (Dir::Response, Some(s)) => s.response_headers(host.as_host(), eos),
            (_, None) => Action::Continue,
        }
    }

    fn call_body(
        &mut self,
        host: &mut dyn PipelineHost,
        dir: Dir,
        i: usize,
        size: usize,
        eos: bool,
    ) -> Action {
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
        host.set_body_offset(offset);
        let action = match dir {
            Dir::Request => s.request_body(host.as_host(), size - offset, eos),
            Dir::Response => s.response_body(host.as_host(), size - offset, eos),
        };
        host.set_body_offset(0);
        action
    }

    fn call_trailers(&mut self, host: &mut dyn PipelineHost, dir: Dir, i: usize) -> Action {
        host.set_body_offset(0);
        match (dir, self.stages.get_mut(i)) {
            (Dir::Request, Some(s)) => s.request_trailers(host.as_host()),
            (Dir::Response, Some(s)) => s.response_trailers(host.as_host()),
            (_, None) => Action::Continue,
        }
    }

    /// Gives the stage at `pos` its (late) headers callback if it has not had one.
    /// Returns false when it answered the request.
    fn enter(&mut self, host: &mut dyn PipelineHost, dir: Dir, pos: usize) -> bool {
        if pos < self.progress(dir).entered {
            return true;
        }
        self.progress(dir).entered = pos + 1;
        let i = self.index(dir, pos);
        // A stage paused in headers still gets the body: Envoy buffers it for that filter.
        let _ = self.call_headers(host, dir, i, false);
        !self.after(host, dir, i)
    }

    fn headers(&mut self, host: &mut dyn PipelineHost, dir: Dir, eos: bool) -> Action {
        for pos in 0..self.stages.len() {
            self.progress(dir).entered = pos + 1;
            let i = self.index(dir, pos);
            let action = self.call_headers(host, dir, i, eos);
            if self.after(host, dir, i) || action != Action::Continue {
                return Action::Pause;
            }
        }
        Action::Continue
    }

    fn body(
        &mut self,
        host: &mut dyn PipelineHost,
        dir: Dir,
        mut size: usize,
        eos: bool,
    ) -> Action {
        if dir == Dir::Request && self.answered {
            return Action::Continue;
        }
        let _ = host.take_body_delta();
        for pos in 0..self.stages.len() {
            if !self.enter(host, dir, pos) {
                return Action::Pause;
            }
            let i = self.index(dir, pos);
            let action = self.call_body(host, dir, i, size, eos);
            // A stage that rewrote the body changed its length under Envoy's `size`.
            size = size.saturating_add_signed(host.take_body_delta());
            let sent = self.callouts.len();
            if self.after(host, dir, i) {
                return Action::Pause;
            }
            if dir == Dir::Request
                && eos
                && action != Action::Continue
                && self.callouts.len() > sent
            {
                self.held = Some(i);
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

    fn trailers(&mut self, host: &mut dyn PipelineHost, dir: Dir) -> Action {
        if dir == Dir::Request && self.answered {
            return Action::Continue;
        }
        let mut total = None;
        let _ = host.take_body_delta();
        let which = match dir {
            Dir::Request => Body::Request,
            Dir::Response => Body::Response,
        };
        for pos in 0..self.stages.len() {
            if !self.enter(host, dir, pos) {
                return Action::Pause;
            }
            let i = self.index(dir, pos);
            // A stage the buffered body has not fully reached gets it first (end of stream is
            // the trailers').
            let len = *total.get_or_insert_with(|| host.buffered_len(which));
            let p = self.progress(dir);
            let holds = p.buffering.get(i).copied().unwrap_or(false);
            if !holds && p.seen.get(i).copied().unwrap_or(0) < len {
                let _ = self.call_body(host, dir, i, len, false);
                let len = len.saturating_add_signed(host.take_body_delta());
                total = Some(len);
                if self.after(host, dir, i) {
                    return Action::Pause;
                }
                if let Some(seen) = self.progress(dir).seen.get_mut(i) {
                    *seen = len;
                }
            }
            let action = self.call_trailers(host, dir, i);
            total = total.map(|t| t.saturating_add_signed(host.take_body_delta()));
            if self.after(host, dir, i) || action != Action::Continue {
                return Action::Pause;
            }
        }
        let p = self.progress(dir);
        p.seen.fill(0);
        p.buffering.fill(false);
        Action::Continue
    }

    /// `on_http_request_headers`.
    pub fn request_headers(&mut self, host: &mut dyn PipelineHost, eos: bool) -> Action {
        self.headers(host, Dir::Request, eos)
    }

    /// `on_http_request_body`.
    pub fn request_body(&mut self, host: &mut dyn PipelineHost, size: usize, eos: bool) -> Action {
        self.body(host, Dir::Request, size, eos)
    }

    /// `on_http_request_trailers`.
    pub fn request_trailers(&mut self, host: &mut dyn PipelineHost) -> Action {
        self.trailers(host, Dir::Request)
    }

    /// `on_http_response_headers`.
    pub fn response_headers(&mut self, host: &mut dyn PipelineHost, eos: bool) -> Action {
        self.headers(host, Dir::Response, eos)
    }

    /// `on_http_response_body`.
    pub fn response_body(&mut self, host: &mut dyn PipelineHost, size: usize, eos: bool) -> Action {
        self.body(host, Dir::Response, size, eos)
    }

    /// `on_http_response_trailers`.
    pub fn response_trailers(&mut self, host: &mut dyn PipelineHost) -> Action {
        self.trailers(host, Dir::Response)
    }

    /// The stream is over: every stage logs, once (Envoy calls `on_log` once; a host without
    /// it calls this from its stream-done callback).
    pub fn log(&mut self, host: &mut dyn PipelineHost) {
        if std::mem::replace(&mut self.logged, true) {
            return;
        }
        host.set_body_offset(0);
        for s in &mut self.stages {
            s.log(host.as_host());
        }
    }

    /// Routes a callout's answer to the stage that sent it.
    pub fn callout_response(
        &mut self,
        host: &mut dyn PipelineHost,
        token: u32,
        response: CalloutResponse,
    ) {
        let Some(at) = self.callouts.iter().position(|(t, _)| *t == token) else {
            return;
        };
        let (_, i) = self.callouts.swap_remove(at);
        host.set_body_offset(0);
        let action = match self.stages.get_mut(i) {
            Some(s) => s.callout_response(host.as_host(), token, response),
            None => Action::Pause,
        };
        if self.after(host, Dir::Request, i) {
            self.held = None;
            return;
        }
        if action == Action::Continue && self.held == Some(i) {
            self.held = None;
            self.pass_on(host, i + 1);
        }
    }

    /// The complete request body, held by a stage for a callout, goes on from stage `from`:
    /// each later stage gets it (and its late headers) as Envoy would have given it, then the
    /// request resumes unless one of them holds it in turn.
    fn pass_on(&mut self, host: &mut dyn PipelineHost, from: usize) {
        let mut size = host.buffered_len(Body::Request);
        let _ = host.take_body_delta();
        for i in from..self.stages.len() {
            if !self.enter(host, Dir::Request, i) {
                return;
            }
            let action = self.call_body(host, Dir::Request, i, size, true);
            size = size.saturating_add_signed(host.take_body_delta());
            let sent = self.callouts.len();
            if self.after(host, Dir::Request, i) {
                return;
            }
            if action != Action::Continue {
                if self.callouts.len() > sent {
                    self.held = Some(i);
                }
                return;
            }
        }
        self.request.seen.fill(0);
        host.as_host().resume_request();
    }
}

#[cfg(test)]
#[path = "flow_tests.rs"]
mod tests;
