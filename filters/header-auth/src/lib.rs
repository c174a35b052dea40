//! Header-auth filter: the last filter before the router.
//!
//! Every request leaves with the provider credentials of the account that serves it and none of
//! the client's: client credential headers and internal `x-aimesh-*` headers are removed (except
//! `x-aimesh-cluster`, which the route still needs and removes with `request_headers_to_remove`).
//! Requests to `/proxy-api/{account}/{endpoint}/...` are checked, access-controlled and rewritten
//! to the endpoint's cluster, authority and base path. Only headers are touched; bodies stream
//! through unbuffered. The decisions live in `aimesh_core::endpoints`.

use std::rc::Rc;

use aimesh_core::endpoints::{Config, EndpointError, Plan, Request, Role, Scrubber, StdEnv};
use aimesh_core::headers;
use aimesh_core::host::Metrics;
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

const NAME: &str = "header-auth";

/// Filter configuration: see `aimesh_core::endpoints::Config` and the README.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct FilterConfig(pub Config);

impl Validate for FilterConfig {
    fn validate(&self) -> Result<(), aimesh_glue::ConfigError> {
        self.0.check()
    }
}

#[derive(Default)]
struct Root {
    plan: Option<Rc<Plan>>,
    /// The downstream instance's: it sees every reply before the client does.
    scrubber: Option<Rc<Scrubber>>,
    metrics: Rc<HostMetrics>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let raw = aimesh_glue::plugin_configuration();
        let Some(FilterConfig(config)) = load_config::<FilterConfig>(NAME, raw.as_deref()) else {
            return false;
        };
        // Secrets are read only now, from the VM's environment (vm_config.environment_variables).
        match Plan::compile(&config, &StdEnv) {
            Ok(plan) => {
                for w in &plan.warnings {
                    log::warn!("{NAME}: {w}");
                }
                let scrubber = plan.scrubber();
                self.scrubber = (plan.role() == Role::Downstream && !scrubber.is_empty())
                    .then(|| Rc::new(scrubber));
                self.plan = Some(Rc::new(plan));
                true
            }
            Err(e) => {
                log::error!("{NAME}: invalid configuration: {e}");
                false
            }
        }
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Filter {
            plan: self.plan.clone()?,
            scrubber: self.scrubber.clone(),
            scrub_body: false,
            metrics: self.metrics.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Filter {
    plan: Rc<Plan>,
    scrubber: Option<Rc<Scrubber>>,
    /// An error reply: its body is held to its end and scrubbed.
    scrub_body: bool,
    metrics: Rc<HostMetrics>,
}

impl Context for Filter {}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        self.metrics.count("aimesh.header_auth.requests", 1);
        let hs = Headers::request(self);
        let plan = Rc::clone(&self.plan);
        let decision = plan.decide(&Request {
            path: hs.get(":path").unwrap_or_default(),
            backend: hs.get(headers::BACKEND),
            key_id: hs.get(headers::KEY_ID),
            team: hs.get(headers::TEAM),
        });
        let decision = match decision {
            Ok(d) => d,
            Err(e) => {
                self.metrics.count(metric_for(&e), 1);
                send_error(self, &e);
                return Action::Pause;
            }
        };
        for name in hs.names() {
            if plan.strips(name, &decision) {
                aimesh_glue::set_request_header(self, name, None);
            }
        }
        if let Some(h) = decision.headers {
            for (k, v) in &h.set {
                aimesh_glue::set_request_header(self, k, Some(v));
            }
            for (k, v) in &h.defaults {
                // Present now: sent by the client and kept, or just set above.
                let kept = hs.has(k) && !plan.strips(k, &decision);
                if !kept && !h.set.iter().any(|(s, _)| s.eq_ignore_ascii_case(k)) {
                    aimesh_glue::set_request_header(self, k, Some(v));
                }
            }
            if !h.set.is_empty() {
                self.metrics.count("aimesh.header_auth.injected", 1);
            }
        }
        if let Some(route) = decision.route {
            // Changing request headers clears Envoy's route cache, so the router re-matches
            // on the new path and picks the cluster through `cluster_header`.
            aimesh_glue::set_request_header(self, headers::CLUSTER, Some(route.cluster));
            aimesh_glue::set_request_header(self, ":authority", Some(route.authority));
            aimesh_glue::set_request_header(self, ":path", Some(&route.path));
            self.metrics.count("aimesh.header_auth.proxied", 1);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _n: usize, end_of_stream: bool) -> Action {
        let Some(scrubber) = self.scrubber.clone() else {
            return Action::Continue;
        };
        let hs = Headers::response(self);
        let mut scrubbed: Vec<&str> = Vec::new();
        for (name, value) in hs.pairs() {
            if !scrubbed.contains(&name) && scrubber.scrub(value).is_some() {
                scrubbed.push(name);
            }
        }
        for name in &scrubbed {
            // Every value of the name is rewritten, a repeated header keeping its other values.
            let values: Vec<Vec<u8>> = hs
                .pairs()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| scrubber.scrub(v).unwrap_or_else(|| v.to_vec()))
                .collect();
            aimesh_glue::set_response_header(self, name, None);
            for v in &values {
                self.add_http_response_header_bytes(name, v);
            }
        }
        if !scrubbed.is_empty() {
            self.metrics.count("aimesh.header_auth.scrubbed", 1);
        }
        let status = hs.get(":status").and_then(|s| s.parse::<u16>().ok());
        let encoded = hs
            .get_bytes("content-encoding")
            .is_some_and(|e| !e.eq_ignore_ascii_case(b"identity"));
        if !end_of_stream && status.is_some_and(|s| s >= 400) && !encoded {
            self.scrub_body = true;
            // Headers wait for the body: a scrubbed body may differ in length, and the reply
            // keeps its `content-length` framing (set anew at the end) rather than going chunked.
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.scrub_body {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let Some(scrubber) = self.scrubber.clone() else {
            return Action::Continue;
        };
        let body = aimesh_glue::Body::Response
            .read(body_size)
            .unwrap_or_default();
        if let Some(clean) = scrubber.scrub(&body) {
            aimesh_glue::Body::Response.replace(body_size, &clean);
            let length = clean.len().to_string();
            aimesh_glue::set_response_header(self, "content-length", Some(&length));
            self.metrics.count("aimesh.header_auth.scrubbed", 1);
        }
        Action::Continue
    }
}

fn metric_for(e: &EndpointError) -> &'static str {
    match e {
        EndpointError::Path(_) => "aimesh.header_auth.rejected_path",
        EndpointError::NotFound => "aimesh.header_auth.not_found",
        EndpointError::Forbidden => "aimesh.header_auth.forbidden",
        EndpointError::UnknownAccount => "aimesh.header_auth.unknown_backend",
        EndpointError::Disabled => "aimesh.header_auth.account_unavailable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_the_core_config_and_validates_it() {
        let ok: FilterConfig = serde_json::from_str(
            r#"{"role":"upstream","accounts":{"openai-main":{"auth":{"type":"openai","api_key":"${env:UNSET_IN_TESTS}"}}}}"#,
        )
        .unwrap();
        // Validation never reads the environment; on_configure resolves variables afterwards.
        assert!(ok.validate().is_ok());
        assert!(serde_json::from_str::<FilterConfig>(r#"{"acounts":{}}"#).is_err());
        let bad: FilterConfig = serde_json::from_str(r#"{"accounts":{"ab":{}}}"#).unwrap();
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("accounts.ab:"));
    }

    #[test]
    fn every_error_has_a_metric() {
        for e in [
            EndpointError::NotFound,
            EndpointError::Forbidden,
            EndpointError::UnknownAccount,
            EndpointError::Disabled,
        ] {
            assert!(metric_for(&e).starts_with("aimesh.header_auth."));
        }
    }
}
