//! The per-attempt instance in an aggregate cluster's upstream filters.
//!
//! Envoy chose this attempt's endpoint before the filter runs; its `aimesh.cluster` endpoint
//! metadata names the target's cluster. The body still carries the virtual model name (the
//! downstream instance leaves it alone in this mode), which selects the virtual model.

use std::rc::Rc;
use std::time::SystemTime;

use aimesh_core::headers;
use aimesh_core::host::Clock;
use aimesh_core::routing::rewrite;
use aimesh_core::routing::tokens::TokenCounter;
use aimesh_glue::HostClock;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use crate::downstream::{SERVED_CLUSTER, TARGET};
use crate::shared::Shared;

/// Endpoint metadata path naming the cluster of the attempt's target.
const HOST_CLUSTER: [&str; 5] = [
    "xds",
    "upstream_host_metadata",
    "filter_metadata",
    "aimesh",
    "cluster",
];

pub struct Upstream {
    shared: Rc<Shared>,
    cluster: Option<String>,
    /// (virtual model index, target index) once the body named a virtual model.
    target: Option<(usize, usize)>,
    start: SystemTime,
    counter: Option<TokenCounter>,
}

impl Upstream {
    pub fn new(shared: Rc<Shared>) -> Self {
        Self {
            shared,
            cluster: None,
            target: None,
            start: SystemTime::UNIX_EPOCH,
            counter: None,
        }
    }

    fn rewrite(&mut self, size: usize) {
        let Some(cluster) = self.cluster.clone() else {
            return;
        };
        let body = aimesh_glue::Body::Request.read(size).unwrap_or_default();
        let Ok((_, name)) = rewrite::find_model(&body) else {
            return;
        };
        let cfg = &self.shared.config;
        let Some(vi) = cfg.virtual_models.iter().position(|v| v.name == name) else {
            return;
        };
        let Some(ti) = cfg.virtual_models[vi].target_by_cluster(&cluster) else {
            self.shared
                .count("aimesh.virtual_model.upstream_unknown_cluster");
            return;
        };
        let t = &cfg.virtual_models[vi].targets[ti];
        if let Ok((new, _)) = rewrite::replace_model(&body, t.model()) {
            let (backend, model) = (t.backend().to_string(), t.model().to_string());
            aimesh_glue::replace_request_body(self, size, &new);
            aimesh_glue::set_request_header(self, headers::BACKEND, Some(&backend));
            aimesh_glue::set_request_header(self, headers::MODEL_SERVED, Some(&model));
            self.target = Some((vi, ti));
            self.shared.count("aimesh.virtual_model.attempts");
        }
    }
}

impl Context for Upstream {}

impl HttpContext for Upstream {
    fn on_http_request_headers(&mut self, _n: usize, eos: bool) -> Action {
        self.start = HostClock.now();
        self.cluster = hostcalls::get_property(HOST_CLUSTER.to_vec())
            .ok()
            .flatten()
            .and_then(|b| String::from_utf8(b).ok());
        if eos || self.cluster.is_none() {
            return Action::Continue;
        }
        // Held until the body is in, so content-length can follow the rewrite.
        Action::Pause
    }

    fn on_http_request_body(&mut self, size: usize, eos: bool) -> Action {
        if self.cluster.is_none() || self.target.is_some() {
            return Action::Continue;
        }
        if !eos {
            return Action::Pause;
        }
        self.rewrite(size);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _n: usize, _eos: bool) -> Action {
        let Some((vi, ti)) = self.target else {
            return Action::Continue;
        };
        let shared = self.shared.clone();
        let t = &shared.config.virtual_models[vi].targets[ti];
        aimesh_glue::set_response_header(self, TARGET, Some(&t.target));
        aimesh_glue::set_response_header(self, headers::BACKEND, Some(t.backend()));
        aimesh_glue::set_response_header(self, headers::MODEL_SERVED, Some(t.model()));
        aimesh_glue::set_response_header(self, SERVED_CLUSTER, Some(&t.cluster));
        let ok = self
            .get_http_response_header(":status")
            .is_some_and(|s| s.starts_with('2'));
        if ok && shared.measures(&t.target) {
            self.counter = Some(TokenCounter::default());
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, size: usize, eos: bool) -> Action {
        let Some(counter) = self.counter.as_mut() else {
            return Action::Continue;
        };
        if let Some(chunk) = aimesh_glue::Body::Response.read(size) {
            counter.feed(&chunk);
        }
        if eos {
            if let (Some(mut counter), Some((vi, ti))) = (self.counter.take(), self.target) {
                counter.finish();
                let elapsed = HostClock
                    .now()
                    .duration_since(self.start)
                    .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
                    .unwrap_or(0);
                let target = self.shared.config.virtual_models[vi].targets[ti]
                    .target
                    .clone();
                self.shared.record(&target, elapsed, counter.tokens());
            }
        }
        Action::Continue
    }
}
