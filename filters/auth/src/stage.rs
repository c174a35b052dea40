//! One request through auth: identify, check, publish the facts, take the limits, release them.

use std::rc::Rc;

use aimesh_core::api::{self, Format, Model};
use aimesh_core::auth::catalogue::models_request;
use aimesh_core::auth::endpoints::Refusal;
use aimesh_core::auth::limits::{self, Admitted};
use aimesh_core::auth::{AuthError, Destination, ModelRoute, ModelsRequest, Policies, PolicyId};
use aimesh_core::multipart::{self, form_facts, FormError};
use aimesh_core::openai::{carries_model, request_facts, BodyError, RequestFacts};
use aimesh_core::ErrorKind;
use aimesh_host::{
    send_error, send_json, strip_internal_headers, Action, Body, Facts, Headers, Host, Stage,
};

use crate::{jwt, stat};

/// Filter-state names (`wasm.` is prepended by Envoy): `%FILTER_STATE(wasm.aimesh.key_id:PLAIN)%`.
const STATE_KEY_ID: &str = "aimesh.key_id";
const STATE_TEAM: &str = "aimesh.team";

/// Credential headers clients use: OpenAI, Anthropic and Azure styles.
const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "x-api-key", "api-key"];

/// Auth's state for one request.
pub(crate) struct Auth {
    policies: Rc<Policies>,
    /// The authenticated policy.
    who: Option<PolicyId>,
    /// Limits taken for this request (released in `log`, however the stream ends).
    admitted: Option<Admitted>,
    /// A reply was sent or the request was let through: later body callbacks pass data on.
    decided: bool,
    /// `GET /v1/models` for a key with a partial allow-list: rewrite the answer.
    filter_models: bool,
    /// Request body bytes buffered so far.
    body_size: usize,
    /// The decision for this request should its body turn out empty (it then names no model).
    if_empty: Result<(), Refusal>,
    /// The request's `content-type`, for a form body's boundary.
    content_type: String,
    /// What the endpoint's body is.
    format: Format,
}

impl Stage for Auth {
    fn request_headers(&mut self, host: &mut dyn Host, eos: bool) -> Action {
        let hs = host.request_headers();
        strip_internal_headers(host);
        // Auth is where facts start: whatever a client's forged headers decoded to is void.
        *host.facts() = Facts::default();
        let dialect = aimesh_core::Dialect::from_path(hs.get(":path").unwrap_or_default());
        host.facts().dialect = (dialect != aimesh_core::Dialect::OpenAi).then_some(dialect);
        let (who, subject) = self.identify(host, &hs);
        for h in CREDENTIAL_HEADERS.iter().filter(|h| hs.has(h)) {
            host.set_request_header(h, None);
        }
        let Some(id) = who else {
            return self.refuse(host, stat::INVALID_KEY, &AuthError::InvalidKey);
        };
        self.who = Some(id);
        let policies = Rc::clone(&self.policies);
        let Some(policy) = policies.get(id) else {
            return self.refuse(host, stat::INVALID_KEY, &AuthError::InvalidKey);
        };
        host.facts().key_id = Some(policy.id.clone());
        host.facts().subject = subject;
        // Filter state reaches access logs and later Wasm filters without a header.
        host.set_property(&[STATE_KEY_ID], policy.id.as_bytes());
        if let Some(team) = &policy.team {
            host.facts().team = Some(team.clone());
            host.set_property(&[STATE_TEAM], team.as_bytes());
        }
        let method = hs.get(":method").unwrap_or_default();
        let path = hs.get(":path").unwrap_or_default();
        if policies.catalogue.is_some() {
            if let Some(req) = models_request(method, path) {
                return self.answer_models(host, req);
            }
        } else if !policy.models.allows_all() && is_model_list(method, path) {
            self.filter_models = true;
            // The rewrite needs a plain body; a compressed one would pass unfiltered.
            host.set_request_header("accept-encoding", None);
        }
        let without_model = policy.admits_without_model(method, path);
        let endpoint = api::lookup(path);
        // Files and batches name no model (a batch's models are inside its uploaded file):
        // like MCP and custom endpoints, whose arbitrary (even binary) bodies auth does not
        // read, and body-less requests, the key's endpoint grants decide.
        let no_model = endpoint.is_some_and(|e| e.model == Model::Absent);
        if eos || !carries_model(path) || no_model {
            if carries_model(path) {
                self.route_default(host);
            }
            return self.admit_without_model(host, without_model);
        }
        self.if_empty = without_model;
        self.format = endpoint.map_or(Format::Json, |e| e.format);
        self.content_type = hs.get("content-type").unwrap_or_default().to_string();
        // A provider may read a form body by its content type whatever the endpoint: a JSON
        // endpoint's body under a multipart type could name another model to it than to us.
        let ct = &self.content_type;
        let wrong = match self.format {
            Format::Json if multipart::media_type(ct).starts_with("multipart/") => {
                Some(FormError::NotJson(multipart::media_type(ct)))
            }
            Format::Multipart => multipart::boundary(ct).err(),
            _ => None,
        };
        if let Some(err) = wrong {
            return self.refuse(host, stat::BODY, &err);
        }
        Action::Pause
    }

    fn request_body(&mut self, host: &mut dyn Host, size: usize, eos: bool) -> Action {
        if self.decided {
            return Action::Continue;
        }
        let limit = self.policies.max_body_bytes;
        if size > limit {
            return self.refuse(host, stat::BODY, &BodyError::TooLarge { limit });
        }
        self.body_size = size;
        if !eos {
            return Action::Pause;
        }
        self.check_body(host)
    }

    fn request_trailers(&mut self, host: &mut dyn Host) -> Action {
        if self.decided {
            return Action::Continue;
        }
        self.check_body(host)
    }

    fn response_headers(&mut self, host: &mut dyn Host, _eos: bool) -> Action {
        if let Some((limit, remaining, reset)) = self.admitted.and_then(|a| a.rate) {
            for (k, v) in limits::rate_headers(limit, remaining, reset) {
                host.set_response_header(&k, Some(&v));
            }
        }
        if self.filter_models {
            if host.response_headers().get(":status") == Some("200") {
                host.set_response_header("content-length", None);
            } else {
                self.filter_models = false;
            }
        }
        Action::Continue
    }

    fn response_body(&mut self, host: &mut dyn Host, size: usize, eos: bool) -> Action {
        if !self.filter_models {
            return Action::Continue;
        }
        if !eos {
            return Action::Pause;
        }
        let policies = Rc::clone(&self.policies);
        let Some(policy) = self.who.and_then(|id| policies.get(id)) else {
            return Action::Continue;
        };
        if let Some(body) = host.body(Body::Response, size) {
            if let Some(filtered) = policy.models.filter_model_list(&body) {
                host.replace_body(Body::Response, size, &filtered);
            }
        }
        Action::Continue
    }

    fn log(&mut self, host: &mut dyn Host) {
        let Some(a) = self.admitted.take() else {
            return;
        };
        if a.holds_slot {
            if let Some(p) = self.who.and_then(|id| self.policies.get(id)) {
                limits::release(host.store(), p);
            }
        }
    }
}

/// The API key the client presented (`Authorization: Bearer`, else `x-api-key` / `api-key`).
/// A value that is not UTF-8 presents no key.
pub(crate) fn presented_key(hs: &Headers) -> Option<String> {
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

pub(crate) fn is_model_list(method: &str, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or("");
    path.trim_end_matches('/') == "/v1/models" && method == "GET"
}

impl Auth {
    pub(crate) fn new(policies: Rc<Policies>) -> Self {
        Auth {
            policies,
            who: None,
            admitted: None,
            decided: false,
            filter_models: false,
            body_size: 0,
            if_empty: Ok(()),
            content_type: String::new(),
            format: Format::Json,
        }
    }

    /// The policy of the caller: a verified JWT's claims first (its token sits in
    /// `Authorization` too), else the presented API key.
    /// With the token's `sub`, which fleet-wide limits may count on its own.
    fn identify(&self, host: &dyn Host, hs: &Headers) -> (Option<PolicyId>, Option<String>) {
        if let Some(table) = &self.policies.jwt {
            if let Some(claims) = jwt::read(host, table) {
                let groups: Vec<&str> = claims.groups.iter().map(String::as_str).collect();
                let id = table.lookup(claims.sub.as_deref(), &groups);
                if id.is_some() {
                    host.metrics().count(stat::JWT, 1);
                }
                return (id, claims.sub);
            }
        }
        let id = presented_key(hs).and_then(|key| self.policies.by_key(&key, host.unix_millis()));
        (id, None)
    }

    /// Parses the complete body once, checks the model and publishes the facts.
    fn check_body(&mut self, host: &mut dyn Host) -> Action {
        // An empty body (HTTP/2 can end a GET with an empty DATA frame) counts as none.
        if self.body_size == 0 {
            self.route_default(host);
            return self.admit_without_model(host, self.if_empty);
        }
        let body = host.body(Body::Request, self.body_size).unwrap_or_default();
        let facts = if self.format == Format::Multipart {
            match form_facts(&self.content_type, &body) {
                Ok(f) => RequestFacts {
                    model: f.model,
                    stream: f.stream,
                    ..RequestFacts::default()
                },
                Err(e) => return self.refuse(host, stat::BODY, &e),
            }
        } else {
            match request_facts(&body) {
                Ok(f) => f,
                Err(e) => return self.refuse(host, stat::BODY, &e),
            }
        };
        let policies = Rc::clone(&self.policies);
        let allowed = self
            .who
            .and_then(|id| policies.get(id))
            .is_some_and(|p| p.allows_model(&facts.model));
        if !allowed {
            return self.refuse(host, stat::MODEL, &AuthError::ModelNotAllowed(facts.model));
        }
        match policies
            .catalogue
            .as_ref()
            .map(|c| c.destination(&facts.model))
        {
            Some(Destination::Route(r)) => route_to(host, r),
            Some(Destination::Unknown) => {
                let err = AuthError::ModelNotFound(facts.model);
                return self.refuse(host, stat::UNKNOWN_MODEL, &err);
            }
            Some(Destination::Elsewhere) | None => {}
        }
        let f = host.facts();
        f.model = Some(facts.model);
        f.stream = Some(facts.stream);
        f.include_usage = Some(facts.include_usage);
        f.max_tokens = facts.max_tokens;
        self.admit(host)
    }

    /// A `/v1/` request that names no model goes to the default route, if there is one.
    fn route_default(&self, host: &mut dyn Host) {
        if let Some(r) = self
            .policies
            .catalogue
            .as_ref()
            .and_then(|c| c.default_route())
        {
            route_to(host, r);
        }
    }

    /// Answers `/v1/models` and `/v1/models/{id}` from the catalogue: never forwarded, so the
    /// list is this gateway's (provider and virtual models the key may use), not a provider's.
    fn answer_models(&mut self, host: &mut dyn Host, req: ModelsRequest) -> Action {
        if req == ModelsRequest::OtherMethod {
            return self.refuse(host, stat::CATALOGUE, &AuthError::MethodNotAllowed);
        }
        let action = self.admit(host);
        if self.admitted.is_none() {
            return action;
        }
        let policies = Rc::clone(&self.policies);
        let (Some(catalogue), Some(policy)) = (
            policies.catalogue.as_ref(),
            self.who.and_then(|id| policies.get(id)),
        ) else {
            return self.refuse(host, stat::INVALID_KEY, &AuthError::InvalidKey);
        };
        let body = match req {
            ModelsRequest::List => Ok(catalogue.list(&policy.models)),
            ModelsRequest::Retrieve(Some(id)) => catalogue.retrieve(&policy.models, &id).ok_or(id),
            ModelsRequest::Retrieve(None) | ModelsRequest::OtherMethod => Err(String::new()),
        };
        match body {
            Ok(body) => {
                host.metrics().count(stat::CATALOGUE, 1);
                send_json(host, 200, &[], body.as_bytes());
                Action::Pause
            }
            Err(id) => self.refuse(host, stat::CATALOGUE, &AuthError::ModelNotFound(id)),
        }
    }

    /// A request that names no model: admitted on the key's endpoint grants, else refused.
    fn admit_without_model(
        &mut self,
        host: &mut dyn Host,
        decision: Result<(), Refusal>,
    ) -> Action {
        match decision {
            Ok(()) => self.admit(host),
            Err(Refusal::MissingBody) => self.refuse(host, stat::BODY, &BodyError::MissingModel),
            Err(Refusal::NotGranted) => {
                self.refuse(host, stat::ENDPOINT, &AuthError::EndpointNotAllowed)
            }
        }
    }

    /// Takes the policy's limits; the request goes on or gets 429.
    fn admit(&mut self, host: &mut dyn Host) -> Action {
        let policies = Rc::clone(&self.policies);
        let Some(policy) = self.who.and_then(|id| policies.get(id)) else {
            return self.refuse(host, stat::INVALID_KEY, &AuthError::InvalidKey);
        };
        match limits::admit(host.store(), policy, host.unix_millis()) {
            Ok(a) => {
                self.admitted = Some(a);
                self.decided = true;
                host.metrics().count(stat::ALLOWED, 1);
                Action::Continue
            }
            Err(l) => self.refuse(host, stat::RATE, &AuthError::RateLimited(l)),
        }
    }

    fn refuse(&mut self, host: &mut dyn Host, stat_name: &str, err: &dyn ErrorKind) -> Action {
        self.decided = true;
        self.filter_models = false;
        host.metrics().count(stat_name, 1);
        send_error(host, err);
        Action::Pause
    }
}

/// Sends the request to `r`. Envoy re-picks the route on the changed headers (a Wasm filter's
/// request-header change clears the route cache, in the body callback too) and finds the
/// `x-aimesh-cluster` route; with the catalogue configured there is no other `/v1/` route,
/// so a request no filter routed gets a 404 and never reaches the default provider.
fn route_to(host: &mut dyn Host, r: &ModelRoute) {
    let f = host.facts();
    f.cluster = Some(r.cluster.clone());
    f.backend = Some(r.backend.clone());
}
