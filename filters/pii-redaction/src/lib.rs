//! PII redaction filter: finds personal data and secrets in the text of LLM requests and masks,
//! hashes or blocks them before the request leaves; on the way back it masks PII the model
//! produced and, when the policy says `restore`, puts the user's own values back in place of
//! the placeholders the model echoes (streamed or not).
//!
//! All detection and rewriting lives in `aimesh_core::pii`; this crate only moves bytes between
//! Envoy and core, and reports metrics and the access-log summary.

use std::rc::Rc;

use aimesh_core::host::Metrics;
use aimesh_core::pii::json::{redact_request, respond_body};
use aimesh_core::pii::stream::SseRedactor;
use aimesh_core::pii::{Engine, PiiConfig, PiiError, Session};
use aimesh_core::ErrorKind;
use aimesh_glue::{load_config, send_error, Headers, HostMetrics, Validate};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use serde::Deserialize;

/// A fresh root context of this filter: the `aimesh-chain` build runs it as one of its stages.
pub fn root() -> Box<dyn RootContext> {
    Box::new(Root::default())
}

// `proxy_wasm::main!` defines the `_initialize` export the host calls. Off in the chain build,
// which links every filter into one module with its own entry point.
#[cfg(all(feature = "entry", target_family = "wasm"))]
#[allow(missing_docs)]
mod start {
    use super::*;

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
        proxy_wasm::set_root_context(|_| root());
    }}
}

/// Filter configuration: see `aimesh_core::pii::PiiConfig` and this crate's README.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Config(pub PiiConfig);

impl Validate for Config {
    fn validate(&self) -> Result<(), aimesh_glue::ConfigError> {
        self.0.validate()
    }
}

/// Filter-state key (`%FILTER_STATE(wasm.aimesh.pii:PLAIN)%`): `TYPE:count,...`, never values.
const STATE: &str = "aimesh.pii";
const STAT: &str = "aimesh.pii_redaction";
// Full names of the per-request counters, so the hot path formats nothing.
const STAT_REQUESTS: &str = "aimesh.pii_redaction.requests";
const STAT_REDACTED: &str = "aimesh.pii_redaction.redacted_requests";

#[derive(Default)]
struct Root {
    engine: Option<Rc<Engine>>,
    metrics: Rc<HostMetrics>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let raw = aimesh_glue::plugin_configuration();
        let Some(Config(cfg)) = load_config::<Config>("pii-redaction", raw.as_deref()) else {
            return false;
        };
        // Patterns compile once per VM here, never per request.
        match Engine::new(&cfg) {
            Ok(e) => {
                self.engine = Some(Rc::new(e));
                true
            }
            Err(e) => {
                log::error!("pii-redaction: invalid configuration: {e}");
                false
            }
        }
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Filter {
            engine: self.engine.clone()?,
            metrics: self.metrics.clone(),
            policy: 0,
            session: Session::default(),
            scanning: false,
            done: false,
            not_json: PiiError::InvalidJson,
            response: Response::Pass,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

enum Response {
    Pass,
    Json,
    Sse(Box<SseRedactor>),
}

struct Filter {
    engine: Rc<Engine>,
    metrics: Rc<HostMetrics>,
    policy: usize,
    session: Session,
    scanning: bool,
    done: bool,
    /// The refusal for this request's body should it not be JSON.
    not_json: PiiError,
    response: Response,
}

impl Context for Filter {}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _n: usize, end_of_stream: bool) -> Action {
        self.metrics.count(STAT_REQUESTS, 1);
        let route = if self.engine.uses_route_names() {
            aimesh_glue::host::property(&["xds", "route_name"])
                .and_then(|b| String::from_utf8(b).ok())
        } else {
            None
        };
        let hs = Headers::request(self);
        let path = hs.get(":path").unwrap_or_default();
        let headers = |n: &str| hs.get(n).map(str::to_string);
        self.policy = self.engine.select(route.as_deref(), path, &headers);
        // Kept for the refusal only: the body is scanned whatever it is declared as, because
        // auth (and any provider) may read a `text/plain` body as JSON all the same.
        self.not_json = PiiError::not_json(hs.get("content-type"), hs.get("content-encoding"));
        if self.responds() && hs.has("accept-encoding") {
            // Response text must be readable to be restored or redacted.
            aimesh_glue::set_request_header(self, "accept-encoding", None);
        }
        // A policy that allows every type has nothing to look for in the request: the body
        // streams through unbuffered.
        let scans = self.engine.policy(self.policy).scans_anything();
        if end_of_stream || !scans {
            return Action::Continue;
        }
        self.scanning = true;
        Action::Pause
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.scanning || self.done {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.check_body(body_size)
    }

    fn on_http_request_trailers(&mut self, _n: usize) -> Action {
        if !self.scanning || self.done {
            return Action::Continue;
        }
        let size = aimesh_glue::Body::Request
            .read(usize::MAX)
            .map_or(0, |b| b.len());
        self.check_body(size)
    }

    fn on_http_response_headers(&mut self, _n: usize, _eos: bool) -> Action {
        let p = self.engine.policy(self.policy);
        // Restoring alone has nothing to do when no placeholder went out.
        if !(p.redact_responses || p.restore && self.session.has_placeholders()) {
            return Action::Continue;
        }
        let hs = Headers::response(self);
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
        if ct.starts_with("text/event-stream") {
            self.response = Response::Sse(Box::default());
        } else if ct.contains("json") {
            self.response = Response::Json;
        } else {
            return Action::Continue;
        }
        aimesh_glue::set_response_header(self, "content-length", None);
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let policy = self.engine.policy(self.policy).clone();
        let engine = self.engine.clone();
        let mut response = std::mem::replace(&mut self.response, Response::Pass);
        let action = match &mut response {
            Response::Pass => Action::Continue,
            Response::Json if !end_of_stream => Action::Pause,
            Response::Json => {
                let body = aimesh_glue::Body::Response
                    .read(body_size)
                    .unwrap_or_default();
                if let Some(new) = respond_body(&engine, &policy, &mut self.session, &body) {
                    aimesh_glue::Body::Response.replace(body_size, &new);
                }
                self.report();
                Action::Continue
            }
            Response::Sse(sse) => {
                let chunk = aimesh_glue::Body::Response
                    .read(body_size)
                    .unwrap_or_default();
                let out = sse.push(&chunk, end_of_stream, &engine, &policy, &mut self.session);
                if out != chunk {
                    aimesh_glue::Body::Response.replace(body_size, &out);
                }
                if end_of_stream {
                    self.report();
                }
                Action::Continue
            }
        };
        self.response = response;
        action
    }
}

impl Filter {
    /// True when responses need reading under the selected policy.
    fn responds(&self) -> bool {
        let p = self.engine.policy(self.policy);
        p.restore || p.redact_responses
    }

    fn check_body(&mut self, size: usize) -> Action {
        self.done = true;
        // An empty body (HTTP/2 may end headers-only requests with an empty DATA frame) holds
        // no text.
        if size == 0 {
            return Action::Continue;
        }
        let body = aimesh_glue::Body::Request.read(size).unwrap_or_default();
        let policy = self.engine.policy(self.policy).clone();
        let result = redact_request(&self.engine, &policy, &mut self.session, &body);
        let blocked = self.engine.blocked_error(&self.session);
        self.report();
        match (result, blocked) {
            (_, Some(err)) => self.refuse("blocked", &err),
            (Err(_), None) => {
                let err = self.not_json.clone();
                self.refuse(err.code(), &err)
            }
            (Ok(None), None) => Action::Continue,
            (Ok(Some(new)), None) => {
                aimesh_glue::replace_request_body(self, size, &new);
                self.metrics.count(STAT_REDACTED, 1);
                Action::Continue
            }
        }
    }

    fn refuse(&self, stat: &str, err: &PiiError) -> Action {
        self.metrics.count(&format!("{STAT}.{stat}"), 1);
        send_error(self, err);
        Action::Pause
    }

    /// Metrics for findings not reported yet, and the access-log summary.
    fn report(&mut self) {
        let counts = std::mem::take(&mut self.session.counts);
        for ((label, action), n) in &counts {
            let name = self.engine.label_name(*label).to_ascii_lowercase();
            self.metrics.count(
                &format!("{STAT}.found.{name}.{}", action.name()),
                u64::from(*n),
            );
        }
        for (k, n) in counts {
            *self.session.reported.entry(k).or_insert(0) += n;
        }
        let summary = self.session.summary(&self.engine);
        if !summary.is_empty() {
            aimesh_glue::host::set_property(&[STATE], summary.as_bytes());
        }
    }
}
