//! The pipeline replays Envoy's rules: checked with scripted stages on the memory host. Body
//! bytes are their own position (mod 256), so a stage's window shows where it starts.

use std::cell::RefCell;
use std::rc::Rc;

use crate::memory::{Exchange, World};
use crate::{Action, Body, Host, Stage};

type Log = Rc<RefCell<Vec<String>>>;

/// A scripted stage: what it returns, and a log of the callbacks it got.
struct Fake {
    name: &'static str,
    log: Log,
    /// Pause request headers (waits for the body).
    wait_body: bool,
    /// Buffer bodies until end of stream.
    buffer: bool,
    /// Answer the request from its request-body callback.
    reply_on_body: bool,
    /// Rewrite the body at end of stream to this many bytes.
    rewrite_to: Option<usize>,
    /// Hold the complete body for a callout, then pass it on.
    call_on_body: bool,
}

impl Fake {
    fn new(name: &'static str, log: &Log) -> Self {
        Fake {
            name,
            log: log.clone(),
            wait_body: false,
            buffer: false,
            reply_on_body: false,
            rewrite_to: None,
            call_on_body: false,
        }
    }

    fn note(&self, what: String) {
        self.log.borrow_mut().push(format!("{}:{what}", self.name));
    }

    fn body(&self, host: &mut dyn Host, which: Body, size: usize, eos: bool) -> Action {
        let dir = if which == Body::Request {
            "req "
        } else {
            "resp "
        };
        let window = host.body(which, size).unwrap_or_default();
        assert_eq!(window.len(), size, "the window holds the bytes announced");
        let offset = window.first().map_or(0, |b| usize::from(*b));
        let end = if eos { " end" } else { "" };
        self.note(format!("{dir}body {offset}+{size}{end}"));
        if self.buffer && !eos {
            return Action::Pause;
        }
        if let (Some(n), true) = (self.rewrite_to, eos) {
            let data: Vec<u8> = (0..n).map(|i| (i % 256) as u8).collect();
            host.replace_body(which, size, &data);
        }
        Action::Continue
    }
}

impl Stage for Fake {
    fn request_headers(&mut self, _h: &mut dyn Host, eos: bool) -> Action {
        self.note(format!("req headers{}", if eos { " end" } else { "" }));
        if self.wait_body && !eos {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn request_body(&mut self, h: &mut dyn Host, size: usize, eos: bool) -> Action {
        let a = self.body(h, Body::Request, size, eos);
        if self.reply_on_body && eos {
            h.send_reply(403, &[], b"{}");
            return Action::Pause;
        }
        if self.call_on_body && eos {
            let sent = h.http_call("limits", &[], None, std::time::Duration::from_secs(1));
            assert!(sent.is_ok());
            return Action::Pause;
        }
        a
    }

    fn callout_response(
        &mut self,
        _h: &mut dyn Host,
        token: u32,
        _r: crate::CalloutResponse,
    ) -> Action {
        self.note(format!("callout {token}"));
        Action::Continue
    }

    fn request_trailers(&mut self, _h: &mut dyn Host) -> Action {
        self.note("req trailers".into());
        Action::Continue
    }

    fn response_headers(&mut self, _h: &mut dyn Host, _eos: bool) -> Action {
        self.note("resp headers".into());
        Action::Continue
    }

    fn response_body(&mut self, h: &mut dyn Host, size: usize, eos: bool) -> Action {
        self.body(h, Body::Response, size, eos)
    }

    fn response_trailers(&mut self, _h: &mut dyn Host) -> Action {
        self.note("resp trailers".into());
        Action::Continue
    }

    fn log(&mut self, _h: &mut dyn Host) {
        self.note("log".into());
    }
}

fn exchange(stages: Vec<Fake>) -> Exchange {
    let stages = stages
        .into_iter()
        .map(|s| Box::new(s) as Box<dyn Stage>)
        .collect();
    Exchange::new(
        &World::default(),
        stages,
        &[(":path", "/v1/chat/completions")],
    )
}

/// `n` body bytes continuing from position `from`.
fn bytes(from: usize, n: usize) -> Vec<u8> {
    (from..from + n).map(|i| (i % 256) as u8).collect()
}

fn take(log: &Log) -> Vec<String> {
    std::mem::take(&mut *log.borrow_mut())
}

#[test]
fn a_body_held_for_a_callout_reaches_later_stages_then_resumes() {
    let log = Log::default();
    let mut a = Fake::new("a", &log);
    a.wait_body = true;
    a.buffer = true;
    a.call_on_body = true;
    let b = Fake::new("b", &log);
    let mut x = exchange(vec![a, b]);
    assert_eq!(x.request_headers(false), Action::Pause);
    assert_eq!(x.request_chunk(&bytes(0, 10), true), Action::Pause);
    assert_eq!(take(&log), ["a:req headers", "a:req body 0+10 end"]);
    assert_eq!(x.host.resumed, 0, "held until the answer");
    x.callout_response(1, crate::CalloutResponse::default());
    assert_eq!(
        take(&log),
        ["a:callout 1", "b:req headers", "b:req body 0+10 end"]
    );
    assert_eq!(x.host.resumed, 1);
    // An answer nobody waits for any more changes nothing.
    x.callout_response(1, crate::CalloutResponse::default());
    assert_eq!((take(&log).len(), x.host.resumed), (0, 1));
}

#[test]
fn a_stage_waiting_for_the_body_holds_later_stages_back() {
    let log = Log::default();
    let mut a = Fake::new("a", &log);
    a.wait_body = true;
    a.buffer = true;
    let b = Fake::new("b", &log);
    let mut x = exchange(vec![a, b]);
    assert_eq!(x.request_headers(false), Action::Pause);
    assert_eq!(take(&log), ["a:req headers"]);
    assert_eq!(x.request_chunk(&bytes(0, 10), false), Action::Pause);
    assert_eq!(x.request_chunk(&bytes(10, 15), true), Action::Continue);
    // b gets its headers late, then the whole buffered body at once.
    assert_eq!(
        take(&log),
        [
            "a:req body 0+10",
            "a:req body 0+25 end",
            "b:req headers",
            "b:req body 0+25 end"
        ]
    );
    assert_eq!(x.sent_upstream, bytes(0, 25));
}

#[test]
fn a_streaming_stage_before_a_buffering_one_sees_only_new_bytes() {
    let log = Log::default();
    let a = Fake::new("a", &log);
    let mut b = Fake::new("b", &log);
    b.buffer = true;
    let mut x = exchange(vec![a, b]);
    assert_eq!(
        x.response_headers(&[(":status", "200")], false),
        Action::Continue
    );
    take(&log);
    // Response order is reversed: b (buffering) runs first, then a.
    assert_eq!(x.response_chunk(&bytes(0, 10), false), Action::Pause);
    assert_eq!(x.response_chunk(&bytes(10, 15), true), Action::Continue);
    assert_eq!(
        take(&log),
        [
            "b:resp body 0+10",
            "b:resp body 0+25 end",
            "a:resp body 0+25 end"
        ]
    );
    // The other way round: the streaming stage first passes 10 bytes on, then gets 15 new ones.
    let log = Log::default();
    let mut a = Fake::new("a", &log);
    a.buffer = true;
    let b = Fake::new("b", &log);
    let mut x = exchange(vec![a, b]);
    x.response_headers(&[(":status", "200")], false);
    take(&log);
    assert_eq!(x.response_chunk(&bytes(0, 10), false), Action::Pause);
    assert_eq!(x.response_chunk(&bytes(10, 15), true), Action::Continue);
    assert_eq!(
        take(&log),
        [
            "b:resp body 0+10",
            "a:resp body 0+10",
            "b:resp body 10+15 end",
            "a:resp body 0+25 end"
        ]
    );
    // After Continue the buffer moved on: the next chunk starts at 0 for everyone.
    x.response_chunk(&bytes(0, 7), false);
    assert_eq!(take(&log), ["b:resp body 0+7", "a:resp body 0+7"]);
}

#[test]
fn a_local_reply_stops_the_request_but_the_response_reaches_every_stage() {
    let log = Log::default();
    let mut a = Fake::new("a", &log);
    a.wait_body = true;
    a.buffer = true;
    a.reply_on_body = true;
    let b = Fake::new("b", &log);
    let mut x = exchange(vec![a, b]);
    x.request_headers(false);
    assert_eq!(x.request_chunk(&bytes(0, 5), true), Action::Pause);
    assert_eq!(x.reply().map(|r| r.status), Some(403));
    // Envoy may still deliver data; the answered request passes it on untouched.
    assert_eq!(x.flow.request_body(&mut x.host, 5, true), Action::Continue);
    assert_eq!(take(&log), ["a:req headers", "a:req body 0+5 end"]);
    x.response_headers(&[(":status", "403")], false);
    assert_eq!(take(&log), ["b:resp headers", "a:resp headers"]);
    x.log();
    x.log();
    assert_eq!(
        take(&log),
        ["a:log", "b:log"],
        "log runs once, in chain order"
    );
}

#[test]
fn trailers_bring_the_buffered_body_to_stages_it_has_not_reached() {
    let log = Log::default();
    let mut a = Fake::new("a", &log);
    a.buffer = true;
    let b = Fake::new("b", &log);
    let mut x = exchange(vec![a, b]);
    x.request_headers(false);
    assert_eq!(x.request_chunk(&bytes(0, 30), false), Action::Pause);
    take(&log);
    assert_eq!(x.request_trailers(), Action::Continue);
    assert_eq!(
        take(&log),
        ["a:req trailers", "b:req body 0+30", "b:req trailers"]
    );
}

#[test]
fn a_rewritten_body_reaches_later_stages_at_its_new_length() {
    let log = Log::default();
    let mut a = Fake::new("a", &log);
    a.wait_body = true;
    a.buffer = true;
    a.rewrite_to = Some(40);
    let b = Fake::new("b", &log);
    let mut x = exchange(vec![a, b]);
    x.request_headers(false);
    assert_eq!(x.request_chunk(&bytes(0, 25), true), Action::Continue);
    assert_eq!(
        take(&log),
        [
            "a:req headers",
            "a:req body 0+25 end",
            "b:req headers",
            "b:req body 0+40 end"
        ]
    );
    assert_eq!(x.sent_upstream, bytes(0, 40));
}
