//! One request through header-auth: credentials and routing on the request headers, the
//! scrubbing of injected secrets from the reply.

use std::rc::Rc;

use aimesh_core::endpoints::{EndpointError, Plan, Request, Scrubber};
use aimesh_host::{send_error, Action, Body, Host, Stage};

pub struct HeaderAuth {
    plan: Rc<Plan>,
    scrubber: Option<Rc<Scrubber>>,
    /// An error reply: its body is held to its end and scrubbed.
    scrub_body: bool,
}

impl HeaderAuth {
    pub fn new(plan: Rc<Plan>, scrubber: Option<Rc<Scrubber>>) -> Self {
        Self {
            plan,
            scrubber,
            scrub_body: false,
        }
    }
}

fn count(host: &dyn Host, name: &str) {
    host.metrics().count(name, 1);
}

impl Stage for HeaderAuth {
    fn request_headers(&mut self, host: &mut dyn Host, _eos: bool) -> Action {
        count(host, "aimesh.header_auth.requests");
        let hs = host.request_headers();
        let plan = Rc::clone(&self.plan);
        let facts = host.facts().clone();
        let decision = plan.decide(&Request {
            path: hs.get(":path").unwrap_or_default(),
            backend: facts.backend.as_deref(),
            key_id: facts.key_id.as_deref(),
            team: facts.team.as_deref(),
        });
        let decision = match decision {
            Ok(d) => d,
            Err(e) => {
                count(host, metric_for(&e));
                send_error(host, &e);
                return Action::Pause;
            }
        };
        // Real removals, not facts: nothing internal or client-sent may leave for a provider.
        for name in hs.names() {
            if plan.strips(name, &decision) {
                host.set_request_header(name, None);
            }
        }
        if let Some(h) = decision.headers {
            for (k, v) in &h.set {
                host.set_request_header(k, Some(v));
            }
            for (k, v) in &h.defaults {
                // Present now: sent by the client and kept, or just set above.
                let kept = hs.has(k) && !plan.strips(k, &decision);
                if !kept && !h.set.iter().any(|(s, _)| s.eq_ignore_ascii_case(k)) {
                    host.set_request_header(k, Some(v));
                }
            }
            if !h.set.is_empty() {
                count(host, "aimesh.header_auth.injected");
            }
        }
        if let Some(route) = decision.route {
            // Changing request headers clears Envoy's route cache, so the router re-matches
            // on the new path and picks the cluster through `cluster_header`.
            host.facts().cluster = Some(route.cluster.to_string());
            host.set_request_header(":authority", Some(route.authority));
            host.set_request_header(":path", Some(&route.path));
            count(host, "aimesh.header_auth.proxied");
        }
        Action::Continue
    }

    fn response_headers(&mut self, host: &mut dyn Host, eos: bool) -> Action {
        let Some(scrubber) = self.scrubber.clone() else {
            return Action::Continue;
        };
        let hs = host.response_headers();
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
            host.set_response_header(name, None);
            for v in &values {
                host.add_response_header(name, v);
            }
        }
        if !scrubbed.is_empty() {
            count(host, "aimesh.header_auth.scrubbed");
        }
        let status = hs.get(":status").and_then(|s| s.parse::<u16>().ok());
        let encoded = hs
            .get_bytes("content-encoding")
            .is_some_and(|e| !e.eq_ignore_ascii_case(b"identity"));
        if !eos && status.is_some_and(|s| s >= 400) && !encoded {
            self.scrub_body = true;
            // Headers wait for the body: a scrubbed body may differ in length, and the reply
            // keeps its `content-length` framing (set anew at the end) rather than going chunked.
            return Action::Pause;
        }
        Action::Continue
    }

    fn response_body(&mut self, host: &mut dyn Host, size: usize, eos: bool) -> Action {
        if !self.scrub_body {
            return Action::Continue;
        }
        if !eos {
            return Action::Pause;
        }
        let Some(scrubber) = self.scrubber.clone() else {
            return Action::Continue;
        };
        let body = host.body(Body::Response, size).unwrap_or_default();
        if let Some(clean) = scrubber.scrub(&body) {
            host.replace_body(Body::Response, size, &clean);
            host.set_response_header("content-length", Some(&clean.len().to_string()));
            count(host, "aimesh.header_auth.scrubbed");
        }
        Action::Continue
    }
}

/// The counter of each refusal.
pub fn metric_for(e: &EndpointError) -> &'static str {
    match e {
        EndpointError::Path(_) => "aimesh.header_auth.rejected_path",
        EndpointError::NotFound => "aimesh.header_auth.not_found",
        EndpointError::Forbidden => "aimesh.header_auth.forbidden",
        EndpointError::UnknownAccount => "aimesh.header_auth.unknown_backend",
        EndpointError::Disabled => "aimesh.header_auth.account_unavailable",
    }
}
