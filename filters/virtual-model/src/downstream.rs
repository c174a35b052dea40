//! The listener-side instance: picks the target, routes, answers the client's questions.

use std::rc::Rc;
use std::time::SystemTime;

use aimesh_core::api;
use aimesh_core::openai::{carries_model, request_facts, BodyError};
use aimesh_core::routing::reply::{self, PinChange};
use aimesh_core::routing::tokens::TokenCounter;
use aimesh_core::routing::{retry, rewrite, sticky, RoutingError, VirtualModel};
use aimesh_host::{replace_request_body, send_error, Action, Body, Host, Stage};

use crate::shared::{self, Shared};

/// Header naming the virtual model the client called (request, for later filters, and
/// response, for the client).
pub const VIRTUAL_MODEL: &str = "x-aimesh-virtual-model";
/// Response header naming the target (`account/model`) that answered.
pub const TARGET: &str = "x-aimesh-target";
/// Internal response header from the upstream instance: the cluster of the answering target.
pub const SERVED_CLUSTER: &str = "x-aimesh-served-cluster";
/// Set by Envoy's router on a reply that came from an upstream (absent on Envoy's own).
const UPSTREAM_TIME: &str = "x-envoy-upstream-service-time";

/// Where the request stands.
enum Phase {
    /// Waiting for the body to learn the model (no `model` fact).
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
        }
    }

    fn vm(&self) -> Option<&VirtualModel> {
        self.shared.config.virtual_models.get(self.vm?)
    }

    /// Routes a request for `model`; `Err` means a reply was sent.
    fn route(&mut self, host: &mut dyn Host, model: &str) -> Result<(), ()> {
        let shared = Rc::clone(&self.shared);
        let cfg = &shared.config;
        let Some(vi) = cfg.virtual_models.iter().position(|v| v.name == model) else {
            if cfg.pass_through {
                shared::count(host, "aimesh.virtual_model.pass_through");
                return Ok(());
            }
            shared::count(host, "aimesh.virtual_model.not_found");
            send_error(host, &RoutingError::ModelNotFound(model.to_string()));
            return Err(());
        };
        let vm = &cfg.virtual_models[vi];
        self.vm = Some(vi);
        let now = host.unix_millis();
        let hs = host.request_headers();
        self.session = vm
            .sticky
            .as_ref()
            .and_then(|s| hs.get_nonempty(&s.header))
            .map(str::to_string);
        let pinned = self
            .session
            .as_deref()
            .and_then(|s| sticky::lookup(host.store(), vm, s, now));
        self.target = match pinned {
            Some(i) => i,
            None => {
                let i = shared.pick(host, vm);
                if let Some(s) = &self.session {
                    let _ = sticky::pin(host.store(), vm, s, i, now);
                }
                i
            }
        };
        let t = &vm.targets[self.target];
        let facts = host.facts();
        facts.cluster = Some(t.route_cluster().to_string());
        facts.backend = Some(t.backend().to_string());
        facts.model_served = Some(t.model().to_string());
        host.set_request_header(VIRTUAL_MODEL, Some(&vm.name));
        if t.fallback_cluster.is_some() {
            for (k, v) in retry::envoy_headers(vm) {
                host.set_request_header(k, Some(&v));
            }
        } else {
            if shared.measures(&t.target) {
                self.measure = Some((host.now(), TokenCounter::default()));
            }
            self.phase = Phase::NeedRewrite;
        }
        shared::count(host, "aimesh.virtual_model.routed");
        Ok(())
    }

    fn body(&mut self, host: &mut dyn Host, size: usize) -> Action {
        let body = host.body(Body::Request, size).unwrap_or_default();
        if matches!(self.phase, Phase::NeedModel) {
            self.phase = Phase::Done;
            let model = match request_facts(&body) {
                Ok(f) => f.model,
                Err(e) => return reject(host, &e),
            };
            if self.route(host, &model).is_err() {
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
                Ok((new, _)) => replace_request_body(host, size, &new),
                Err(e) => return reject(host, &BodyError::InvalidField(e.to_string())),
            }
        }
        Action::Continue
    }
}

fn reject(host: &mut dyn Host, e: &BodyError) -> Action {
    send_error(host, e);
    Action::Pause
}

impl Stage for Downstream {
    fn request_headers(&mut self, host: &mut dyn Host, eos: bool) -> Action {
        shared::count(host, "aimesh.virtual_model.requests");
        // MCP and custom endpoints carry arbitrary (often binary) bodies to forward untouched;
        // they are never LLM requests to route.
        let hs = host.request_headers();
        let path = hs.get(":path").unwrap_or_default();
        // Files and batches name no model either: their bodies (uploads) pass untouched.
        let no_model = api::lookup(path).is_some_and(|e| e.model == api::Model::Absent);
        if !carries_model(path) || no_model {
            self.phase = Phase::Done;
            return Action::Continue;
        }
        match host.facts().model.clone() {
            Some(model) => {
                if self.route(host, &model).is_err() {
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
            // Headers (content-length, the cluster) can still change in the body phase.
            Phase::NeedModel | Phase::NeedRewrite => Action::Pause,
            Phase::Done => Action::Continue,
        }
    }

    fn request_body(&mut self, host: &mut dyn Host, size: usize, eos: bool) -> Action {
        match self.phase {
            Phase::Done => Action::Continue,
            _ if !eos => Action::Pause,
            _ => self.body(host, size),
        }
    }

    fn response_headers(&mut self, host: &mut dyn Host, _eos: bool) -> Action {
        let hs = host.response_headers();
        let served_cluster = hs.get(SERVED_CLUSTER);
        if served_cluster.is_some() {
            host.set_response_header(SERVED_CLUSTER, None);
        }
        let shared = Rc::clone(&self.shared);
        let Some(vm) = self.vm.and_then(|i| shared.config.virtual_models.get(i)) else {
            return Action::Continue;
        };
        let status: u16 = hs.get(":status").and_then(|s| s.parse().ok()).unwrap_or(0);
        let ok = (200..300).contains(&status);
        host.set_response_header(VIRTUAL_MODEL, Some(&vm.name));
        let served = reply::served_target(vm, self.target, served_cluster, hs.has(UPSTREAM_TIME));
        if let Some(i) = served {
            let t = &vm.targets[i];
            host.set_response_header(TARGET, Some(&t.target));
            host.set_response_header(aimesh_core::headers::BACKEND, Some(t.backend()));
            host.set_response_header(aimesh_core::headers::MODEL_SERVED, Some(t.model()));
            if i != self.target {
                shared::count(host, "aimesh.virtual_model.fallbacks");
            }
        }
        if let Some(session) = &self.session {
            let change = reply::pin_change(self.target, served, ok);
            if change != PinChange::Keep {
                let _ = reply::apply(host.store(), vm, session, change, host.unix_millis());
            }
        }
        if !ok {
            self.measure = None;
        }
        Action::Continue
    }

    fn response_body(&mut self, host: &mut dyn Host, size: usize, eos: bool) -> Action {
        let Some((_, counter)) = self.measure.as_mut() else {
            return Action::Continue;
        };
        if let Some(chunk) = host.body(Body::Response, size) {
            counter.feed(&chunk);
        }
        if eos {
            if let (Some((start, mut counter)), Some(vm)) = (self.measure.take(), self.vm()) {
                counter.finish();
                let elapsed = shared::elapsed_us(host, start);
                let target = &vm.targets[self.target].target;
                self.shared.record(host, target, elapsed, counter.tokens());
            }
        }
        Action::Continue
    }
}
