//! Auth filter: virtual API keys and JWT claim policies in front of every LLM request.
//!
//! The client's key is hashed (SHA-256) and compared in constant time with the configured hashes;
//! plaintext keys never appear in config, logs or stats. A request with a body pauses until the
//! whole body is in, which is parsed once to check the model against the key's allow-list; the
//! facts are published as `x-aimesh-*` headers so later filters never parse the body again.
//! Per-key request rate and concurrency limits hold across workers through shared data.

mod config;
mod jwt;

use std::rc::Rc;

use aimesh_core::auth::catalogue::models_request;
use aimesh_core::auth::endpoints::Refusal;
use aimesh_core::auth::limits::{self, Admitted};
use aimesh_core::auth::{AuthError, Destination, ModelRoute, ModelsRequest, Policies, PolicyId};
use aimesh_core::host::{Clock, Metrics};
use aimesh_core::openai::{carries_model, request_facts, BodyError};
use aimesh_core::{headers, ErrorKind};
use aimesh_glue::{
    load_config, send_error, send_json, strip_internal_headers, Headers, HostClock, HostMetrics,
    HostStore,
};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

pub use config::Config;

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

/// Stat names (Envoy shows them with the `wasmcustom.` prefix).
mod stat {
    pub const ALLOWED: &str = "aimesh.auth.allowed";
    pub const INVALID_KEY: &str = "aimesh.auth.denied.invalid_key";
    pub const MODEL: &str = "aimesh.auth.denied.model_not_allowed";
    pub const UNKNOWN_MODEL: &str = "aimesh.auth.denied.model_not_found";
    pub const CATALOGUE: &str = "aimesh.auth.catalogue_answered";
    pub const ENDPOINT: &str = "aimesh.auth.denied.endpoint_not_allowed";
    pub const RATE: &str = "aimesh.auth.denied.rate_limited";
    pub const BODY: &str = "aimesh.auth.denied.bad_request";
    pub const JWT: &str = "aimesh.auth.jwt_authenticated";
}

/// Filter-state names (`wasm.` is prepended by Envoy): `%FILTER_STATE(wasm.aimesh.key_id:PLAIN)%`.
const STATE_KEY_ID: &str = "aimesh.key_id";
const STATE_TEAM: &str = "aimesh.team";

/// Credential headers clients use: OpenAI, Anthropic and Azure styles.
const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "x-api-key", "api-key"];

#[derive(Default)]
struct Root {
    policies: Option<Rc<Policies>>,
    metrics: Rc<HostMetrics>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let raw = aimesh_glue::plugin_configuration();
        let Some(Config(c)) = load_config::<Config>("auth", raw.as_deref()) else {
            return false;
        };
        let policies = Policies::new(c);
        // Limit state must exist before traffic: CAS is ignored on absent keys.
        if let Err(e) = limits::init(&HostStore, policies.all(), HostClock.unix_millis()) {
            log::error!("auth: cannot initialise limit state in shared data: {e}");
            return false;
        }
        self.policies = Some(Rc::new(policies));
        true
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        let policies = self.policies.clone()?;
        Some(Box::new(Auth {
            policies,
            metrics: self.metrics.clone(),
            who: None,
            admitted: None,
            decided: false,
            filter_models: false,
            body_size: 0,
            if_empty: Ok(()),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Auth {
    policies: Rc<Policies>,
    metrics: Rc<HostMetrics>,
    /// The authenticated policy.
    who: Option<PolicyId>,
    /// Limits taken for this request (released in `on_log`, however the stream ends).
    admitted: Option<Admitted>,
    /// A reply was sent or the request was let through: later body callbacks pass data on.
    decided: bool,
    /// `GET /v1/models` for a key with a partial allow-list: rewrite the answer.
    filter_models: bool,
    /// Request body bytes buffered so far.
    body_size: usize,
    /// The decision for this request should its body turn out empty (it then names no model).
    if_empty: Result<(), Refusal>,
}

impl Context for Auth {}

impl HttpContext for Auth {
    fn on_http_request_headers(&mut self, _n: usize, end_of_stream: bool) -> Action {
        let hs = Headers::request(self);
        strip_internal_headers(self, &hs);
        let who = self.identify(&hs);
        for h in CREDENTIAL_HEADERS.iter().filter(|h| hs.has(h)) {
            aimesh_glue::set_request_header(self, h, None);
        }
        let Some(id) = who else {
            return self.refuse(stat::INVALID_KEY, &AuthError::InvalidKey);
        };
        self.who = Some(id);
        let Some(policy) = self.policies.get(id) else {
            return self.refuse(stat::INVALID_KEY, &AuthError::InvalidKey);
        };
        aimesh_glue::set_request_header(self, headers::KEY_ID, Some(&policy.id));
        // Filter state reaches access logs and later Wasm filters without a header.
        aimesh_glue::host::set_property(&[STATE_KEY_ID], policy.id.as_bytes());
        if let Some(team) = &policy.team {
            aimesh_glue::set_request_header(self, headers::TEAM, Some(team));
            aimesh_glue::host::set_property(&[STATE_TEAM], team.as_bytes());
        }
        let path = hs.get(":path").unwrap_or_default();
        if self.policies.catalogue.is_some() {
            if let Some(req) = models_request(hs.get(":method").unwrap_or_default(), path) {
                return self.answer_models(req);
            }
        } else if !policy.models.allows_all() && is_model_list(&hs, path) {
            self.filter_models = true;
            // The rewrite needs a plain body; a compressed one would pass unfiltered.
            aimesh_glue::set_request_header(self, "accept-encoding", None);
        }
        let method = hs.get(":method").unwrap_or_default();
        let without_model = policy.admits_without_model(method, path);
        // MCP and custom endpoints carry arbitrary (even binary) bodies that auth does not read:
        // like body-less requests they name no model, so the key's endpoint grants decide.
        if end_of_stream || !carries_model(path) {
            if carries_model(path) {
                self.route_default();
            }
            return self.admit_without_model(without_model);
        }
        self.if_empty = without_model;
        Action::Pause
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.decided {
            return Action::Continue;
        }
        let limit = self.policies.max_body_bytes;
        if body_size > limit {
            return self.refuse(stat::BODY, &BodyError::TooLarge { limit });
        }
        self.body_size = body_size;
        if !end_of_stream {
            return Action::Pause;
        }
        self.check_body()
    }

    fn on_http_request_trailers(&mut self, _n: usize) -> Action {
        if self.decided {
            return Action::Continue;
        }
        self.check_body()
    }

    fn on_http_response_headers(&mut self, _n: usize, _eos: bool) -> Action {
        if let Some((limit, remaining, reset)) = self.admitted.and_then(|a| a.rate) {
            for (k, v) in limits::rate_headers(limit, remaining, reset) {
                aimesh_glue::set_response_header(self, &k, Some(&v));
            }
        }
        if self.filter_models {
            if self.get_http_response_header(":status").as_deref() == Some("200") {
                aimesh_glue::set_response_header(self, "content-length", None);
            } else {
                self.filter_models = false;
            }
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.filter_models {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let Some(policy) = self.who.and_then(|id| self.policies.get(id)) else {
            return Action::Continue;
        };
        if let Some(body) = aimesh_glue::Body::Response.read(body_size) {
            if let Some(filtered) = policy.models.filter_model_list(&body) {
                aimesh_glue::Body::Response.replace(body_size, &filtered);
            }
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        if let Some(a) = self.admitted.take() {
            if a.holds_slot {
                if let Some(p) = self.who.and_then(|id| self.policies.get(id)) {
                    limits::release(&HostStore, p);
                }
            }
        }
    }
}

/// The API key the client presented (`Authorization: Bearer`, else `x-api-key` / `api-key`).
/// A value that is not UTF-8 presents no key.
fn presented_key(hs: &Headers) -> Option<String> {
    if let Some(v) = hs.get_bytes("authorization") {
        let v = std::str::from_utf8(v).ok()?;
        let (scheme, rest) = v.trim().split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| rest.trim().to_string());
    }
    hs.get("x-api-key")
        .or_else(|| hs.get("api-key"))
        .map(|v| v.trim().to_string())
}

fn is_model_list(hs: &Headers, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or("");
    path.trim_end_matches('/') == "/v1/models" && hs.get(":method") == Some("GET")
}

impl Auth {
    /// The policy of the caller: a verified JWT's claims first (its token sits in
    /// `Authorization` too), else the presented API key.
    fn identify(&self, hs: &Headers) -> Option<PolicyId> {
        if let Some(table) = &self.policies.jwt {
            if let Some(claims) = jwt::read(table) {
                let groups: Vec<&str> = claims.groups.iter().map(String::as_str).collect();
                let id = table.lookup(claims.sub.as_deref(), &groups);
                if id.is_some() {
                    self.metrics.count(stat::JWT, 1);
                }
                return id;
            }
        }
        let key = presented_key(hs)?;
        self.policies.by_key(&key, HostClock.unix_millis())
    }

    /// Parses the complete body once, checks the model and publishes the facts.
    fn check_body(&mut self) -> Action {
        // An empty body (HTTP/2 can end a GET with an empty DATA frame) counts as none.
        if self.body_size == 0 {
            self.route_default();
            return self.admit_without_model(self.if_empty);
        }
        let body = aimesh_glue::Body::Request
            .read(self.body_size)
            .unwrap_or_default();
        let facts = match request_facts(&body) {
            Ok(f) => f,
            Err(e) => return self.refuse(stat::BODY, &e),
        };
        let allowed = self
            .who
            .and_then(|id| self.policies.get(id))
            .is_some_and(|p| p.allows_model(&facts.model));
        if !allowed {
            return self.refuse(stat::MODEL, &AuthError::ModelNotAllowed(facts.model));
        }
        let policies = self.policies.clone();
        match policies
            .catalogue
            .as_ref()
            .map(|c| c.destination(&facts.model))
        {
            Some(Destination::Route(r)) => self.route_to(r),
            Some(Destination::Unknown) => {
                return self.refuse(stat::UNKNOWN_MODEL, &AuthError::ModelNotFound(facts.model));
            }
            Some(Destination::Elsewhere) | None => {}
        }
        aimesh_glue::set_request_header(self, headers::MODEL, Some(&facts.model));
        aimesh_glue::set_request_header(self, headers::STREAM, Some(bool_str(facts.stream)));
        aimesh_glue::set_request_header(
            self,
            headers::INCLUDE_USAGE,
            Some(bool_str(facts.include_usage)),
        );
        if let Some(n) = facts.max_tokens {
            aimesh_glue::set_request_header(self, headers::MAX_TOKENS, Some(&n.to_string()));
        }
        self.admit()
    }

    /// Sends the request to `r`. Envoy re-picks the route on the changed headers (a Wasm filter's
    /// request-header change clears the route cache, in the body callback too) and finds the
    /// `x-aimesh-cluster` route; with the catalogue configured there is no other `/v1/` route,
    /// so a request no filter routed gets a 404 and never reaches the default provider.
    fn route_to(&self, r: &ModelRoute) {
        aimesh_glue::set_request_header(self, headers::CLUSTER, Some(&r.cluster));
        aimesh_glue::set_request_header(self, headers::BACKEND, Some(&r.backend));
    }

    /// A `/v1/` request that names no model goes to the default route, if there is one.
    fn route_default(&self) {
        let policies = self.policies.clone();
        if let Some(r) = policies.catalogue.as_ref().and_then(|c| c.default_route()) {
            self.route_to(r);
        }
    }

    /// Answers `/v1/models` and `/v1/models/{id}` from the catalogue: never forwarded, so the
    /// list is this gateway's (provider and virtual models the key may use), not a provider's.
    fn answer_models(&mut self, req: ModelsRequest) -> Action {
        if req == ModelsRequest::OtherMethod {
            return self.refuse(stat::CATALOGUE, &AuthError::MethodNotAllowed);
        }
        let action = self.admit();
        if self.admitted.is_none() {
            return action;
        }
        let policies = self.policies.clone();
        let (Some(catalogue), Some(policy)) = (
            policies.catalogue.as_ref(),
            self.who.and_then(|id| policies.get(id)),
        ) else {
            return self.refuse(stat::INVALID_KEY, &AuthError::InvalidKey);
        };
        let body = match req {
            ModelsRequest::List => Ok(catalogue.list(&policy.models)),
            ModelsRequest::Retrieve(Some(id)) => catalogue.retrieve(&policy.models, &id).ok_or(id),
            ModelsRequest::Retrieve(None) | ModelsRequest::OtherMethod => Err(String::new()),
        };
        match body {
            Ok(body) => {
                self.metrics.count(stat::CATALOGUE, 1);
                send_json(self, 200, &[], body.as_bytes());
                Action::Pause
            }
            Err(id) => self.refuse(stat::CATALOGUE, &AuthError::ModelNotFound(id)),
        }
    }

    /// A request that names no model: admitted on the key's endpoint grants, else refused.
    fn admit_without_model(&mut self, decision: Result<(), Refusal>) -> Action {
        match decision {
            Ok(()) => self.admit(),
            Err(Refusal::MissingBody) => self.refuse(stat::BODY, &BodyError::MissingModel),
            Err(Refusal::NotGranted) => self.refuse(stat::ENDPOINT, &AuthError::EndpointNotAllowed),
        }
    }

    /// Takes the policy's limits; the request goes on or gets 429.
    fn admit(&mut self) -> Action {
        let Some(policy) = self.who.and_then(|id| self.policies.get(id)) else {
            return self.refuse(stat::INVALID_KEY, &AuthError::InvalidKey);
        };
        match limits::admit(&HostStore, policy, HostClock.unix_millis()) {
            Ok(a) => {
                self.admitted = Some(a);
                self.decided = true;
                self.metrics.count(stat::ALLOWED, 1);
                Action::Continue
            }
            Err(l) => self.refuse(stat::RATE, &AuthError::RateLimited(l)),
        }
    }

    fn refuse(&mut self, stat_name: &str, err: &dyn ErrorKind) -> Action {
        self.decided = true;
        self.filter_models = false;
        self.metrics.count(stat_name, 1);
        send_error(self, err);
        Action::Pause
    }
}

fn bool_str(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}
