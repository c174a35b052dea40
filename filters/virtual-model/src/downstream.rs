//! The listener-side instance: picks the target, routes, answers the client's questions.

use std::rc::Rc;
use std::time::SystemTime;

use aimesh_core::headers;
use aimesh_core::host::Clock;
use aimesh_core::openai::{request_facts, BodyError};
use aimesh_core::routing::tokens::TokenCounter;
use aimesh_core::routing::{retry, rewrite, sticky, RoutingError, VirtualModel};
use aimesh_glue::{send_error, Headers, HostClock, HostStore};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use crate::shared::Shared;

/// Response header naming the virtual model the client called.
pub const VIRTUAL_MODEL: &str = "x-aimesh-virtual-model";
/// Response header naming the target (`account/model`) that answered.
pub const TARGET: &str = "x-aimesh-target";
/// Internal response header from the upstream instance: the cluster of the answering target.
pub const SERVED_CLUSTER: &str = "x-aimesh-served-cluster";

/// Where the request stands.
enum Phase {
    /// Waiting for the body to learn the model (no `x-aimesh-model` header).
    NeedModel,
    /// Routed; the body still needs its `model` replaced by the target's.
    NeedRewrite,
    /// Nothing left to do on the request.
    Done,
}

pub struct Downstream {
    shared: Rc<Shared>,
    phase: Phase,
    vm: Option<usize>,
    target: usize,
    session: Option<String>,
    /// Set when this instance measures latency (no upstream instance does it).
    measure: Option<(SystemTime, TokenCounter)>,
    ok_status: bool,
    /// The request headers, read once in `on_http_request_headers`.
    headers: Headers,
}

impl Downstream {
    pub fn new(shared: Rc<Shared>) -> Self {
        Self {
            shared,
            phase: Phase::Done,
            vm: None,
            target: 0,
            session: None,
            measure: None,
            ok_status: false,
            headers: Headers::default(),
        }
    }

    fn vm(&self) -> Option<&VirtualModel> {
        self.shared.config.virtual_models.get(self.vm?)
    }

    /// Routes a request for `model`; `Err` means a reply was sent.
    fn route(&mut self, model: &str) -> Result<(), ()> {
        let cfg = &self.shared.config;
        let Some(vi) = cfg.virtual_models.iter().position(|v| v.name == model) else {
            if cfg.pass_through {
                self.shared.count("aimesh.virtual_model.pass_through");
                return Ok(());
            }
            self.shared.count("aimesh.virtual_model.not_found");
            send_error(self, &RoutingError::ModelNotFound(model.to_string()));
            return Err(());
        };
        let shared = self.shared.clone();
        let vm = &shared.config.virtual_models[vi];
        self.vm = Some(vi);
        let now = shared.now_ms();
        self.session = vm
            .sticky
            .as_ref()
            .and_then(|s| self.headers.get_nonempty(&s.header))
            .map(str::to_string);
        let pinned = self
            .session
            .as_deref()
            .and_then(|s| sticky::lookup(&HostStore, vm, s, now));
        self.target = match pinned {
            Some(i) => i,
            None => {
                let i = shared.pick(vm);
                if let Some(s) = &self.session {
                    let _ = sticky::pin(&HostStore, vm, s, i, now);
                }
                i
            }
        };
        let t = &vm.targets[self.target];
        aimesh_glue::set_request_header(self, headers::CLUSTER, Some(t.route_cluster()));
        aimesh_glue::set_request_header(self, headers::BACKEND, Some(t.backend()));
        aimesh_glue::set_request_header(self, headers::MODEL_SERVED, Some(t.model()));
        aimesh_glue::set_request_header(self, VIRTUAL_MODEL, Some(&vm.name));
        if t.fallback_cluster.is_some() {
            for (k, v) in retry::envoy_headers(vm) {
                aimesh_glue::set_request_header(self, k, Some(&v));
            }
        } else {
            if shared.measures(&t.target) {
                self.measure = Some((HostClock.now(), TokenCounter::default()));
            }
            self.phase = Phase::NeedRewrite;
        }
        shared.count("aimesh.virtual_model.routed");
        Ok(())
    }

    fn body(&mut self, size: usize) -> Action {
        let body = aimesh_glue::Body::Request.read(size).unwrap_or_default();
        if matches!(self.phase, Phase::NeedModel) {
            self.phase = Phase::Done;
            let model = match request_facts(&body) {
                Ok(f) => f.model,
                Err(e) => return self.reject(&e),
            };
            if self.route(&model).is_err() {
                return Action::Pause;
            }
        }
        if matches!(self.phase, Phase::NeedRewrite) {
            self.phase = Phase::Done;
            let Some(model) = self
                .vm()
                .map(|vm| vm.targets[self.target].model().to_string())
            else {
                return Action::Continue;
            };
            match rewrite::replace_model(&body, &model) {
                Ok((new, _)) => {
                    aimesh_glue::replace_request_body(self, size, &new);
                }
                Err(e) => {
                    return self.reject(&BodyError::InvalidField(e.to_string()));
                }
            }
        }
        Action::Continue
    }

    fn reject(&self, e: &BodyError) -> Action {
        send_error(self, e);
        Action::Pause
    }
}

impl Context for Downstream {}

impl HttpContext for Downstream {
    fn on_http_request_headers(&mut self, _n: usize, eos: bool) -> Action {
        self.shared.count("aimesh.virtual_model.requests");
        // MCP and custom endpoints carry arbitrary (often binary) bodies to forward untouched;
        // they are never LLM requests to route.
        self.headers = Headers::request(self);
        if !aimesh_core::openai::carries_model(self.headers.get(":path").unwrap_or_default()) {
            self.phase = Phase::Done;
            return Action::Continue;
        }
        match self.headers.get(headers::MODEL).map(str::to_string) {
            Some(model) => {
                if self.route(&model).is_err() {
                    return Action::Pause;
                }
            }
            // Requests without a body (GET /v1/models) have no model to route.
            None if eos => return Action::Continue,
            None => self.phase = Phase::NeedModel,
        }
        if eos {
            self.phase = Phase::Done;
            return Action::Continue;
        }
        match self.phase {
            // Headers (content-length, x-aimesh-cluster) can still change in the body phase.
            Phase::NeedModel | Phase::NeedRewrite => Action::Pause,
            Phase::Done => Action::Continue,
        }
    }

    fn on_http_request_body(&mut self, size: usize, eos: bool) -> Action {
        match self.phase {
            Phase::Done => Action::Continue,
            _ if !eos => Action::Pause,
            _ => self.body(size),
        }
    }

    fn on_http_response_headers(&mut self, _n: usize, _eos: bool) -> Action {
        let hs = Headers::response(self);
        let served_cluster = hs.get(SERVED_CLUSTER).map(str::to_string);
        if served_cluster.is_some() {
            aimesh_glue::set_response_header(self, SERVED_CLUSTER, None);
        }
        let shared = self.shared.clone();
        let Some(vm) = self.vm.and_then(|i| shared.config.virtual_models.get(i)) else {
            return Action::Continue;
        };
        let status: u16 = hs.get(":status").and_then(|s| s.parse().ok()).unwrap_or(0);
        self.ok_status = (200..300).contains(&status);
        aimesh_glue::set_response_header(self, VIRTUAL_MODEL, Some(&vm.name));
        let served = match &served_cluster {
            Some(c) => vm.target_by_cluster(c),
            // Direct routing: the chosen target answered unless Envoy replied locally.
            None if vm.targets[self.target].fallback_cluster.is_none()
                && hs.has("x-envoy-upstream-service-time") =>
            {
                Some(self.target)
            }
            None => None,
        };
        if let Some(i) = served {
            let t = &vm.targets[i];
            aimesh_glue::set_response_header(self, TARGET, Some(&t.target));
            aimesh_glue::set_response_header(self, headers::BACKEND, Some(t.backend()));
            aimesh_glue::set_response_header(self, headers::MODEL_SERVED, Some(t.model()));
            if i != self.target {
                shared.count("aimesh.virtual_model.fallbacks");
            }
        }
        if let Some(session) = &self.session {
            let now = shared.now_ms();
            match served {
                // A session whose target failed over follows the target that answered.
                Some(i) if self.ok_status && i != self.target => {
                    let _ = sticky::pin(&HostStore, vm, session, i, now);
                }
                Some(_) if self.ok_status => {}
                _ => {
                    let _ = sticky::unpin(&HostStore, vm, session, now);
                }
            }
        }
        if !self.ok_status {
            self.measure = None;
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, size: usize, eos: bool) -> Action {
        if self.measure.is_none() {
            return Action::Continue;
        }
        let chunk = aimesh_glue::Body::Response.read(size).unwrap_or_default();
        if let Some((_, counter)) = self.measure.as_mut() {
            counter.feed(&chunk);
        }
        if eos {
            if let (Some((start, mut counter)), Some(vm)) = (self.measure.take(), self.vm()) {
                counter.finish();
                let elapsed = HostClock
                    .now()
                    .duration_since(start)
                    .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
                    .unwrap_or(0);
                self.shared
                    .record(&vm.targets[self.target].target, elapsed, counter.tokens());
            }
        }
        Action::Continue
    }
}
