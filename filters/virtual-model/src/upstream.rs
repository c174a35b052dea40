//! The per-attempt instance in an aggregate cluster's upstream filters.
//!
//! Envoy chose this attempt's endpoint before the filter runs; its `aimesh.cluster` endpoint
//! metadata names the target's cluster. The body still carries the virtual model name (the
//! downstream instance leaves it alone in this mode), which selects the virtual model.

use std::rc::Rc;
use std::time::SystemTime;

use aimesh_core::headers;
use aimesh_core::routing::rewrite;
use aimesh_core::routing::tokens::TokenCounter;
use aimesh_host::{replace_request_body, Action, Body, Host, Stage};

use crate::downstream::{SERVED_CLUSTER, TARGET};
use crate::shared::{self, Shared};

/// Endpoint metadata path naming the cluster of the attempt's target.
pub const HOST_CLUSTER: [&str; 5] = [
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

    fn rewrite(&mut self, host: &mut dyn Host, size: usize) {
        let Some(cluster) = self.cluster.as_deref() else {
            return;
        };
        let body = host.body(Body::Request, size).unwrap_or_default();
        let Ok((_, name)) = rewrite::find_model(&body) else {
            return;
        };
        let shared = Rc::clone(&self.shared);
        let cfg = &shared.config;
        let Some(vi) = cfg.virtual_models.iter().position(|v| v.name == name) else {
            return;
        };
        let Some(ti) = cfg.virtual_models[vi].target_by_cluster(cluster) else {
            shared::count(host, "aimesh.virtual_model.upstream_unknown_cluster");
            return;
        };
        let t = &cfg.virtual_models[vi].targets[ti];
        if let Ok((new, _)) = rewrite::replace_model(&body, t.model()) {
            replace_request_body(host, size, &new);
            let facts = host.facts();
            facts.backend = Some(t.backend().to_string());
            facts.model_served = Some(t.model().to_string());
            self.target = Some((vi, ti));
            shared::count(host, "aimesh.virtual_model.attempts");
        }
    }
}

impl Stage for Upstream {
    fn request_headers(&mut self, host: &mut dyn Host, eos: bool) -> Action {
        self.start = host.now();
        self.cluster = host
            .property(&HOST_CLUSTER)
            .and_then(|b| String::from_utf8(b).ok());
        if eos || self.cluster.is_none() {
            return Action::Continue;
        }
        // Held until the body is in, so content-length can follow the rewrite.
        Action::Pause
    }

    fn request_body(&mut self, host: &mut dyn Host, size: usize, eos: bool) -> Action {
        if self.cluster.is_none() || self.target.is_some() {
            return Action::Continue;
        }
        if !eos {
            return Action::Pause;
        }
        self.rewrite(host, size);
        Action::Continue
    }

    fn response_headers(&mut self, host: &mut dyn Host, _eos: bool) -> Action {
        let Some((vi, ti)) = self.target else {
            return Action::Continue;
        };
        let shared = Rc::clone(&self.shared);
        let t = &shared.config.virtual_models[vi].targets[ti];
        host.set_response_header(TARGET, Some(&t.target));
        host.set_response_header(headers::BACKEND, Some(t.backend()));
        host.set_response_header(headers::MODEL_SERVED, Some(t.model()));
        host.set_response_header(SERVED_CLUSTER, Some(&t.cluster));
        let ok = host
            .response_headers()
            .get(":status")
            .is_some_and(|s| s.starts_with('2'));
        if ok && shared.measures(&t.target) {
            self.counter = Some(TokenCounter::default());
        }
        Action::Continue
    }

    fn response_body(&mut self, host: &mut dyn Host, size: usize, eos: bool) -> Action {
        let Some(counter) = self.counter.as_mut() else {
            return Action::Continue;
        };
        if let Some(chunk) = host.body(Body::Response, size) {
            counter.feed(&chunk);
        }
        if eos {
            if let (Some(mut counter), Some((vi, ti))) = (self.counter.take(), self.target) {
                counter.finish();
                let elapsed = shared::elapsed_us(host, self.start);
                let shared = Rc::clone(&self.shared);
                let target = &shared.config.virtual_models[vi].targets[ti].target;
                shared.record(host, target, elapsed, counter.tokens());
            }
        }
        Action::Continue
    }
}
