use std::cell::RefCell;
use std::rc::Rc;

use aimesh_glue::stage::{body_offset, mark_replied, record_body_rewrite};
use proxy_wasm::types::Action;

use super::{Flow, Stage};

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
        }
    }

    fn note(&self, what: String) {
        self.log.borrow_mut().push(format!("{}:{what}", self.name));
    }

    fn body(&self, dir: &str, size: usize, eos: bool) -> Action {
        self.note(format!(
            "{dir}body {}+{size}{}",
            body_offset(),
            if eos { " end" } else { "" }
        ));
        if self.buffer && !eos {
            return Action::Pause;
        }
        if let (Some(n), true) = (self.rewrite_to, eos) {
            record_body_rewrite(size, n);
        }
        Action::Continue
    }
}

impl Stage for Fake {
    fn request_headers(&mut self, _n: usize, eos: bool) -> Action {
        self.note(format!("req headers{}", if eos { " end" } else { "" }));
        if self.wait_body && !eos {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn request_body(&mut self, size: usize, eos: bool) -> Action {
        let a = self.body("req ", size, eos);
        if self.reply_on_body && eos {
            mark_replied();
            return Action::Pause;
        }
        a
    }

    fn request_trailers(&mut self, _n: usize) -> Action {
        self.note("req trailers".into());
        Action::Continue
    }

    fn response_headers(&mut self, _n: usize, _eos: bool) -> Action {
        self.note("resp headers".into());
        Action::Continue
    }

    fn response_body(&mut self, size: usize, eos: bool) -> Action {
        self.body("resp ", size, eos)
    }

    fn response_trailers(&mut self, _n: usize) -> Action {
        self.note("resp trailers".into());
        Action::Continue
    }
}

fn flow(stages: Vec<Fake>) -> Flow<Fake> {
    Flow::with_buffered(stages, |_| 30)
}

fn take(log: &Log) -> Vec<String> {
    std::mem::take(&mut *log.borrow_mut())
}

#[test]
fn a_stage_waiting_for_the_body_holds_later_stages_back() {
    let log = Log::default();
    let mut a = Fake::new("a", &log);
    a.wait_body = true;
    a.buffer = true;
    let b = Fake::new("b", &log);
    let mut f = flow(vec![a, b]);
    assert_eq!(f.request_headers(3, false), Action::Pause);
    assert_eq!(take(&log), ["a:req headers"]);
    assert_eq!(f.request_body(10, false), Action::Pause);
    assert_eq!(f.request_body(25, true), Action::Continue);
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
}

#[test]
fn a_streaming_stage_before_a_buffering_one_sees_only_new_bytes() {
    let log = Log::default();
    let a = Fake::new("a", &log);
    let mut b = Fake::new("b", &log);
    b.buffer = true;
    let mut f = flow(vec![a, b]);
    assert_eq!(f.response_headers(2, false), Action::Continue);
    take(&log);
    // Response order is reversed: b (buffering) runs first, then a.
    assert_eq!(f.response_body(10, false), Action::Pause);
    assert_eq!(f.response_body(25, true), Action::Continue);
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
    let mut f = flow(vec![a, b]);
    f.response_headers(2, false);
    take(&log);
    assert_eq!(f.response_body(10, false), Action::Pause);
    assert_eq!(f.response_body(25, true), Action::Continue);
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
    f.response_body(7, false);
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
    let mut f = flow(vec![a, b]);
    f.request_headers(3, false);
    assert_eq!(f.request_body(5, true), Action::Pause);
    assert_eq!(f.request_body(5, true), Action::Continue);
    assert_eq!(take(&log), ["a:req headers", "a:req body 0+5 end"]);
    f.response_headers(2, false);
    assert_eq!(take(&log), ["b:resp headers", "a:resp headers"]);
}

#[test]
fn trailers_bring_the_buffered_body_to_stages_it_has_not_reached() {
    let log = Log::default();
    let mut a = Fake::new("a", &log);
    a.buffer = true;
    let b = Fake::new("b", &log);
    let mut f = flow(vec![a, b]);
    f.request_headers(3, false);
    assert_eq!(f.request_body(30, false), Action::Pause);
    take(&log);
    assert_eq!(f.request_trailers(1), Action::Continue);
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
    let mut f = flow(vec![a, b]);
    f.request_headers(3, false);
    assert_eq!(f.request_body(25, true), Action::Continue);
    assert_eq!(
        take(&log),
        [
            "a:req headers",
            "a:req body 0+25 end",
            "b:req headers",
            "b:req body 0+40 end"
        ]
    );
}
