//! One request through the PII policy: the request body is buffered, scanned and rewritten or
//! refused; the response is rewritten as it comes (whole JSON, or SSE events as they stream).

use std::rc::Rc;

use aimesh_core::api;
use aimesh_core::pii::json::{redact_request, respond_body};
use aimesh_core::pii::mcp::{refusal, respond_reply, McpSse};
use aimesh_core::pii::responses::ResponsesSse;
use aimesh_core::pii::stream::SseRedactor;
use aimesh_core::pii::{Engine, PiiError, Session};
use aimesh_core::ErrorKind;
use aimesh_host::{replace_request_body, send_error, send_json, Action, Body, Host, Stage};

/// Filter-state key (`%FILTER_STATE(wasm.aimesh.pii:PLAIN)%`): `TYPE:count,...`, never values.
pub(crate) const STATE: &str = "aimesh.pii";
const STAT: &str = "aimesh.pii_redaction";
// Full names of the per-request counters, so the hot path formats nothing.
const STAT_REQUESTS: &str = "aimesh.pii_redaction.requests";
const STAT_REDACTED: &str = "aimesh.pii_redaction.redacted_requests";

enum Response {
    Pass,
    Json,
    Sse(Box<SseRedactor>),
    /// A streamed `/v1/responses` reply: its own event shapes.
    ResponsesSse(Box<ResponsesSse>),
    /// A JSON-RPC reply on `/mcp/`: tool result text, not model text.
    McpJson,
    McpSse(Box<McpSse>),
}

pub(crate) struct Filter {
    engine: Rc<Engine>,
    policy: usize,
    session: Session,
    scanning: bool,
    done: bool,
    /// The refusal for this request's body should it not be JSON.
    not_json: PiiError,
    response: Response,
    /// The request went to an MCP server (`/mcp/<server>`): its replies are JSON-RPC.
    mcp: bool,
    /// The request went to the Responses API: its streamed reply has its own events.
    responses: bool,
}

impl Filter {
    pub(crate) fn new(engine: Rc<Engine>) -> Self {
        Filter {
            engine,
            policy: 0,
            session: Session::default(),
            scanning: false,
            done: false,
            not_json: PiiError::InvalidJson,
            response: Response::Pass,
            mcp: false,
            responses: false,
        }
    }
}

impl Stage for Filter {
    fn request_headers(&mut self, host: &mut dyn Host, eos: bool) -> Action {
        host.metrics().count(STAT_REQUESTS, 1);
        let route = if self.engine.uses_route_names() {
            host.property(&["xds", "route_name"])
                .and_then(|b| String::from_utf8(b).ok())
        } else {
            None
        };
        let hs = host.request_headers();
        let path = hs.get(":path").unwrap_or_default();
        self.mcp = path.starts_with("/mcp/");
        self.responses = api::lookup(path).is_some_and(|e| e.path == "/v1/responses");
        let headers = |n: &str| hs.get(n).map(str::to_string);
        self.policy = self.engine.select(route.as_deref(), path, &headers);
        // Kept for the refusal only: the body is scanned whatever it is declared as, because
        // auth (and any provider) may read a `text/plain` body as JSON all the same.
        self.not_json = PiiError::not_json(hs.get("content-type"), hs.get("content-encoding"));
        if self.responds() && hs.has("accept-encoding") {
            // Response text must be readable to be restored or redacted.
            host.set_request_header("accept-encoding", None);
        }
        // A policy that allows every type has nothing to look for in the request: the body
        // streams through unbuffered.
        // Form uploads (audio) and files are not JSON: auth reads their `model` as a form
        // field, and their text (a transcription `prompt`, a batch file) is not scanned
        // (docs/endpoints.md).
        let json = api::format(path) == api::Format::Json;
        let scans = self.engine.policy(self.policy).scans_anything() && json;
        if eos || !scans {
            return Action::Continue;
        }
        self.scanning = true;
        Action::Pause
    }

    fn request_body(&mut self, host: &mut dyn Host, size: usize, eos: bool) -> Action {
        if !self.scanning || self.done {
            return Action::Continue;
        }
        if !eos {
            return Action::Pause;
        }
        self.check_body(host, size)
    }

    fn request_trailers(&mut self, host: &mut dyn Host) -> Action {
        if !self.scanning || self.done {
            return Action::Continue;
        }
        let size = host.body(Body::Request, usize::MAX).map_or(0, |b| b.len());
        self.check_body(host, size)
    }

    fn response_headers(&mut self, host: &mut dyn Host, _eos: bool) -> Action {
        let p = self.engine.policy(self.policy);
        // Restoring alone has nothing to do when no placeholder went out.
        if !(p.redact_responses || p.restore && self.session.has_placeholders()) {
            return Action::Continue;
        }
        let hs = host.response_headers();
        let ct = hs
            .get("content-type")
            .unwrap_or_default()
            .to_ascii_lowercase();
        let encoded = hs
            .get_bytes("content-encoding")
            .is_some_and(|e| !e.eq_ignore_ascii_case(b"identity"));
        if encoded {
            return Action::Continue;
        }
        let sse = ct.starts_with("text/event-stream");
        if sse && self.mcp {
            self.response = Response::McpSse(Box::default());
        } else if sse && self.responses {
            self.response = Response::ResponsesSse(Box::default());
        } else if sse {
            self.response = Response::Sse(Box::default());
        } else if ct.contains("json") && self.mcp {
            self.response = Response::McpJson;
        } else if ct.contains("json") {
            self.response = Response::Json;
        } else {
            return Action::Continue;
        }
        // The rewritten body has another length.
        host.set_response_header("content-length", None);
        Action::Continue
    }

    fn response_body(&mut self, host: &mut dyn Host, size: usize, eos: bool) -> Action {
        let engine = Rc::clone(&self.engine);
        let policy = engine.policy(self.policy);
        match &mut self.response {
            Response::Pass => Action::Continue,
            Response::Json | Response::McpJson if !eos => Action::Pause,
            Response::Json | Response::McpJson => {
                let body = host.body(Body::Response, size).unwrap_or_default();
                let new = if matches!(self.response, Response::McpJson) {
                    respond_reply(&engine, policy, &mut self.session, &body)
                } else {
                    respond_body(&engine, policy, &mut self.session, &body)
                };
                if let Some(new) = new {
                    host.replace_body(Body::Response, size, &new);
                }
                self.report(host);
                Action::Continue
            }
            Response::McpSse(sse) => {
                let chunk = host.body(Body::Response, size).unwrap_or_default();
                let out = sse.push(&chunk, eos, &engine, policy, &mut self.session);
                if out != chunk {
                    host.replace_body(Body::Response, size, &out);
                }
                if eos {
                    self.report(host);
                }
                Action::Continue
            }
            Response::ResponsesSse(sse) => {
                let chunk = host.body(Body::Response, size).unwrap_or_default();
                let out = sse.push(&chunk, eos, &engine, policy, &mut self.session);
                if out != chunk {
                    host.replace_body(Body::Response, size, &out);
                }
                if eos {
                    self.report(host);
                }
                Action::Continue
            }
            Response::Sse(sse) => {
                let chunk = host.body(Body::Response, size).unwrap_or_default();
                let out = sse.push(&chunk, eos, &engine, policy, &mut self.session);
                if out != chunk {
                    host.replace_body(Body::Response, size, &out);
                }
                if eos {
                    self.report(host);
                }
                Action::Continue
            }
        }
    }
}

impl Filter {
    /// True when responses need reading under the selected policy.
    fn responds(&self) -> bool {
        let p = self.engine.policy(self.policy);
        p.restore || p.redact_responses
    }

    fn check_body(&mut self, host: &mut dyn Host, size: usize) -> Action {
        self.done = true;
        // An empty body (HTTP/2 may end headers-only requests with an empty DATA frame) holds
        // no text.
        if size == 0 {
            return Action::Continue;
        }
        let body = host.body(Body::Request, size).unwrap_or_default();
        let engine = Rc::clone(&self.engine);
        let policy = engine.policy(self.policy);
        let result = redact_request(&engine, policy, &mut self.session, &body);
        let blocked = engine.blocked_error(&self.session);
        self.report(host);
        match (result, blocked) {
            (_, Some(err)) if self.mcp => {
                // An MCP client reads JSON-RPC: the refusal answers its request id.
                host.metrics().count(&format!("{STAT}.blocked"), 1);
                send_json(host, 200, &[], &refusal(&body, &err));
                Action::Pause
            }
            (_, Some(err)) => refuse(host, "blocked", &err),
            (Err(_), None) => {
                let err = self.not_json.clone();
                refuse(host, err.code(), &err)
            }
            (Ok(None), None) => Action::Continue,
            (Ok(Some(new)), None) => {
                replace_request_body(host, size, &new);
                host.metrics().count(STAT_REDACTED, 1);
                Action::Continue
            }
        }
    }

    /// Metrics for findings not reported yet, and the access-log summary.
    fn report(&mut self, host: &mut dyn Host) {
        let counts = std::mem::take(&mut self.session.counts);
        for ((label, action), n) in &counts {
            let name = self.engine.label_name(*label).to_ascii_lowercase();
            host.metrics().count(
                &format!("{STAT}.found.{name}.{}", action.name()),
                u64::from(*n),
            );
        }
        for (k, n) in counts {
            *self.session.reported.entry(k).or_insert(0) += n;
        }
        let summary = self.session.summary(&self.engine);
        if !summary.is_empty() {
            host.set_property(&[STATE], summary.as_bytes());
        }
    }
}

fn refuse(host: &mut dyn Host, stat: &str, err: &PiiError) -> Action {
    host.metrics().count(&format!("{STAT}.{stat}"), 1);
    send_error(host, err);
    Action::Pause
}
