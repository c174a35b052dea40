//! The stage among others in one flow, as the one-filter chain runs it: the stage after it sees
//! the redacted body and its new length, and a refused request never reaches it.

use std::cell::RefCell;
use std::rc::Rc;

use aimesh_host::memory::{Exchange, World};
use aimesh_host::{Action, Body, Host, Stage};
use serde_json::json;

use crate::tests::{chat_body, stage, CHAT};

/// What the next stage saw.
#[derive(Default)]
struct Seen {
    headers: usize,
    body: Vec<u8>,
    content_length: Option<String>,
    response: Vec<u8>,
}

/// A stage after pii-redaction that buffers the body and records what reaches it.
struct Next(Rc<RefCell<Seen>>);

impl Stage for Next {
    fn request_headers(&mut self, _host: &mut dyn Host, _eos: bool) -> Action {
        self.0.borrow_mut().headers += 1;
        Action::Continue
    }
    fn request_body(&mut self, host: &mut dyn Host, size: usize, eos: bool) -> Action {
        if !eos {
            return Action::Pause;
        }
        let mut s = self.0.borrow_mut();
        s.body = host.body(Body::Request, size).unwrap_or_default();
        s.content_length = host.request_headers().get("content-length").map(Into::into);
        Action::Continue
    }
    fn response_body(&mut self, host: &mut dyn Host, size: usize, _eos: bool) -> Action {
        // Upstream of pii-redaction on the way back: it sees the response as the model sent it.
        let chunk = host.body(Body::Response, size).unwrap_or_default();
        self.0.borrow_mut().response.extend(chunk);
        Action::Continue
    }
}

fn flow(world: &World, cfg: &serde_json::Value) -> (Exchange, Rc<RefCell<Seen>>) {
    let seen = Rc::default();
    let stages: Vec<Box<dyn Stage>> = vec![stage(world, cfg), Box::new(Next(Rc::clone(&seen)))];
    let hs = [(":path", CHAT), ("content-type", "application/json")];
    (Exchange::new(world, stages, &hs), seen)
}

#[test]
fn the_next_stage_sees_the_redacted_body_and_its_length() {
    let w = World::default();
    let (mut x, seen) = flow(&w, &json!({"policies": {"default": {"restore": true}}}));
    let body = chat_body("mail jane@example.com");
    assert_eq!(x.request_headers(false), Action::Pause);
    assert_eq!(
        seen.borrow().headers,
        0,
        "held back while pii reads the body"
    );
    assert_eq!(x.request_chunk(&body[..9], false), Action::Pause);
    assert_eq!(x.request_chunk(&body[9..], true), Action::Continue);
    let s = seen.borrow();
    assert_eq!(s.headers, 1);
    assert_eq!(s.body, chat_body("mail [EMAIL_1]"));
    assert_eq!(s.content_length, Some(s.body.len().to_string()));
    assert_eq!(x.sent_upstream, s.body);
    drop(s);
    let echo = br#"{"choices":[{"message":{"content":"hi [EMAIL_1]"}}]}"#;
    x.response(&[("content-type", "application/json")], echo, 4);
    assert_eq!(
        seen.borrow().response,
        echo,
        "the stage after sees the placeholder"
    );
    let out: serde_json::Value = serde_json::from_slice(&x.sent_downstream).unwrap();
    assert_eq!(
        out["choices"][0]["message"]["content"],
        "hi jane@example.com"
    );
}

#[test]
fn a_refused_request_never_reaches_the_next_stage() {
    let w = World::default();
    let cfg = json!({"policies": {"default": {"actions": {"US_SSN": "block"}}}});
    let (mut x, seen) = flow(&w, &cfg);
    x.request(&chat_body("ssn 123-45-6789"));
    assert_eq!(x.reply().map(|r| r.status), Some(400));
    assert_eq!(seen.borrow().headers, 0);
    assert!(seen.borrow().body.is_empty() && x.sent_upstream.is_empty());
    x.log();
}
