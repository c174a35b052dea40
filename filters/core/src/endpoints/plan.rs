//! The compiled config and the per-request decision.

use std::collections::{HashMap, HashSet};

use std::cell::RefCell;

use super::config::{AllowConfig, Config, MissingEnv, PathConfig, Role};
use super::creds::{header_name, header_value, resolve, Env, RenderedAuth};
use super::path::{is_proxy_path, parse, PathError};
use super::url::BaseUrl;
use crate::error::ErrorKind;

/// Credential headers clients send (OpenAI, Anthropic, Azure, proxies); always removed.
pub const CLIENT_CREDENTIALS: [&str; 4] = [
    "authorization",
    "x-api-key",
    "api-key",
    "proxy-authorization",
];

/// Headers to put on the upstream request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderSet {
    /// Overwrite or add.
    pub set: Vec<(String, String)>,
    /// Add only when the client sent none.
    pub defaults: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
struct Account {
    /// A secret of the account is unset (`on_missing_env: disable_account`).
    disabled: bool,
    headers: HeaderSet,
    endpoints: HashMap<String, Endpoint>,
}

#[derive(Debug, Clone)]
struct PathRule {
    prefix: String,
    /// A secret of the rule is unset (`on_missing_env: disable_account`).
    disabled: bool,
    headers: HeaderSet,
}

#[derive(Debug, Clone)]
struct Endpoint {
    cluster: String,
    authority: String,
    base_path: String,
    headers: HeaderSet,
    allow: Option<(HashSet<String>, HashSet<String>)>,
}

/// The validated config with secrets resolved and headers rendered once.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    role: Role,
    default_account: Option<String>,
    accounts: HashMap<String, Account>,
    /// Non-provider routes by prefix, in config order.
    paths: Vec<PathRule>,
    credential_headers: HashSet<String>,
    /// Every header name any account or endpoint sets (credentials and custom headers).
    injected_headers: HashSet<String>,
    /// Accounts disabled for unset variables, with the reason (for one warning each).
    pub warnings: Vec<String>,
    /// Every secret value the credentials carry (see [`Plan::scrubber`]).
    secrets: Vec<String>,
}

/// Passes lookups through and notes unset names; with `lenient` an unset name reads as `""`
/// so rendering goes on and the caller disables the account instead of failing.
struct Tracking<'a> {
    env: &'a dyn Env,
    lenient: bool,
    missing: RefCell<Vec<String>>,
}

impl Env for Tracking<'_> {
    fn var(&self, name: &str) -> Option<String> {
        let v = self.env.var(name);
        if v.is_none() {
            self.missing.borrow_mut().push(name.to_string());
            if self.lenient {
                return Some(String::new());
            }
        }
        v
    }
}

/// Where a custom-endpoint request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route<'a> {
    /// Envoy cluster, published as `x-aimesh-cluster` for the route's `cluster_header`.
    pub cluster: &'a str,
    /// New `:authority`.
    pub authority: &'a str,
    /// New `:path`: base path + upstream path + query.
    pub path: String,
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<'a> {
    /// Headers to add (credentials and custom headers); empty when no account applies.
    pub headers: Option<&'a HeaderSet>,
    /// Set for custom endpoints.
    pub route: Option<Route<'a>>,
    /// Account serving the request, if any (not secret; for stats).
    pub account: Option<&'a str>,
}

/// The request facts a decision needs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Request<'a> {
    /// `:path` as received.
    pub path: &'a str,
    /// `x-aimesh-backend`.
    pub backend: Option<&'a str>,
    /// `x-aimesh-key-id`.
    pub key_id: Option<&'a str>,
    /// `x-aimesh-team`.
    pub team: Option<&'a str>,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// Unsafe path or bad names.
    #[error("{0}")]
    Path(#[from] PathError),
    /// No such account or endpoint.
    #[error("no such custom endpoint")]
    NotFound,
    /// The account's secrets are not set in this deployment.
    #[error("the selected account is not available")]
    Disabled,
    /// The caller's key or team is not allowed on the endpoint.
    #[error("this API key is not allowed to call this endpoint")]
    Forbidden,
    /// `x-aimesh-backend` names an account the config does not have.
    #[error("the selected backend has no upstream credentials configured")]
    UnknownAccount,
}

impl ErrorKind for EndpointError {
    fn status(&self) -> u16 {
        match self {
            Self::Path(_) => 400,
            Self::NotFound => 404,
            Self::Forbidden => 403,
            Self::UnknownAccount => 500,
            Self::Disabled => 503,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            Self::Path(PathError::InvalidName) => "invalid_endpoint_name",
            Self::Path(PathError::Unsafe(_)) => "invalid_upstream_path",
            Self::NotFound => "endpoint_not_found",
            Self::Forbidden => "endpoint_not_allowed",
            Self::UnknownAccount => "backend_not_configured",
            Self::Disabled => "account_unavailable",
        }
    }
}

/// Merges `(name, value)` lists: a later entry replaces an earlier one of the same name.
fn merge(into: &mut Vec<(String, String)>, from: &[(String, String)]) {
    for (k, v) in from {
        into.retain(|(n, _)| n != k);
        into.push((k.clone(), v.clone()));
    }
}

fn custom_headers(
    field: &str,
    h: &std::collections::BTreeMap<String, String>,
    env: &dyn Env,
) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (k, v) in h {
        let f = format!("{field}.{k}");
        let name = header_name(&f, k)?;
        let value = resolve(&f, v, env)?;
        header_value(&f, &value)?;
        merge(&mut out, &[(name, value)]);
    }
    Ok(out)
}

fn header_set(custom: Vec<(String, String)>, auth: &RenderedAuth) -> HeaderSet {
    let mut set = custom;
    // Credentials win over a custom header of the same name.
    merge(&mut set, &auth.set);
    HeaderSet {
        set,
        defaults: auth.defaults.clone(),
    }
}

impl Plan {
    /// Validates `c` and renders every header with secrets from `env`.
    pub fn compile(c: &Config, env: &dyn Env) -> Result<Self, String> {
        // The config-time rules are aimesh-config's (aimesh-xds runs the same ones); what
        // follows only renders what they passed, with the real secrets.
        c.check().map_err(|e| e.to_string())?;
        let mut plan = Plan {
            role: c.role,
            default_account: c.default_account.clone(),
            ..Self::default()
        };
        plan.credential_headers
            .extend(CLIENT_CREDENTIALS.iter().map(|s| s.to_string()));
        for (name, acct) in &c.accounts {
            let field = format!("accounts.{name}");
            let env = &Tracking {
                env,
                lenient: c.on_missing_env == MissingEnv::DisableAccount,
                missing: RefCell::new(Vec::new()),
            };
            let auth = match &acct.auth {
                Some(a) => a.render(&format!("{field}.auth"), env)?,
                None => RenderedAuth::default(),
            };
            let custom = custom_headers(&format!("{field}.headers"), &acct.headers, env)?;
            plan.note_credentials(&auth);
            let mut endpoints = HashMap::new();
            for (ep_name, ep) in &acct.endpoints {
                let f = format!("{field}.endpoints.{ep_name}");
                let url = BaseUrl::parse(&ep.base_url).map_err(|e| format!("{f}.base_url: {e}"))?;
                let ep_auth = match &ep.auth {
                    Some(a) => a.render(&format!("{f}.auth"), env)?,
                    None => auth.clone(),
                };
                plan.note_credentials(&ep_auth);
                let mut merged = custom.clone();
                merge(
                    &mut merged,
                    &custom_headers(&format!("{f}.headers"), &ep.headers, env)?,
                );
                let allow = ep.allow.as_ref().map(|AllowConfig { key_ids, teams }| {
                    (
                        key_ids.iter().cloned().collect(),
                        teams.iter().cloned().collect(),
                    )
                });
                endpoints.insert(
                    ep_name.clone(),
                    Endpoint {
                        cluster: ep.cluster.clone(),
                        authority: url.authority(),
                        base_path: url.path.clone(),
                        headers: header_set(merged, &ep_auth),
                        allow,
                    },
                );
            }
            let missing = env.missing.take();
            if !missing.is_empty() {
                plan.warnings.push(format!(
                    "{field}: disabled, environment variable(s) not set: {}",
                    missing.join(", ")
                ));
            }
            let headers = header_set(custom, &auth);
            plan.injected_headers
                .extend(headers.set.iter().map(|(k, _)| k.clone()));
            plan.accounts.insert(
                name.clone(),
                Account {
                    disabled: !missing.is_empty(),
                    headers,
                    endpoints,
                },
            );
        }
        for (i, p) in c.paths.iter().enumerate() {
            let rule = plan.path_rule(&format!("paths[{i}]"), p, c.on_missing_env, env)?;
            plan.paths.push(rule);
        }
        Ok(plan)
    }

    fn path_rule(
        &mut self,
        field: &str,
        p: &PathConfig,
        on_missing: MissingEnv,
        env: &dyn Env,
    ) -> Result<PathRule, String> {
        let env = &Tracking {
            env,
            lenient: on_missing == MissingEnv::DisableAccount,
            missing: RefCell::new(Vec::new()),
        };
        let auth = match &p.auth {
            Some(a) => a.render(&format!("{field}.auth"), env)?,
            None => RenderedAuth::default(),
        };
        self.note_credentials(&auth);
        let headers = header_set(Vec::new(), &auth);
        self.injected_headers
            .extend(headers.set.iter().map(|(k, _)| k.clone()));
        let missing = env.missing.take();
        if !missing.is_empty() {
            self.warnings.push(format!(
                "{field}: disabled, environment variable(s) not set: {}",
                missing.join(", ")
            ));
        }
        Ok(PathRule {
            prefix: p.prefix.clone(),
            disabled: !missing.is_empty(),
            headers,
        })
    }

    fn note_credentials(&mut self, auth: &RenderedAuth) {
        self.credential_headers
            .extend(auth.set.iter().map(|(k, _)| k.clone()));
        self.secrets.extend(auth.secrets.iter().cloned());
    }

    /// The scrubber of every credential value this plan injects, for response headers and
    /// error bodies.
    pub fn scrubber(&self) -> super::Scrubber {
        super::Scrubber::new(self.secrets.iter().cloned())
    }

    /// Where this instance runs.
    pub fn role(&self) -> Role {
        self.role
    }

    /// True for a request header that must not reach the upstream as it is.
    ///
    /// Downstream: a credential header (the standard ones and every one this config injects)
    /// or an internal header other than `x-aimesh-cluster`, which the route still needs and
    /// removes itself. Upstream: every internal header; and when the attempt names an account
    /// (`d.headers` is set), every header any account sets, since an earlier attempt may have
    /// left another account's credentials on the same header map.
    pub fn strips(&self, name: &str, d: &Decision<'_>) -> bool {
        let lower = name.to_ascii_lowercase();
        if crate::headers::is_internal(&lower) {
            return self.role == Role::Upstream || lower != crate::headers::CLUSTER;
        }
        match self.role {
            Role::Downstream => self.credential_headers.contains(&lower),
            Role::Upstream => {
                d.headers.is_some()
                    && (self.credential_headers.contains(&lower)
                        || self.injected_headers.contains(&lower))
            }
        }
    }

    /// Decides what happens to a request.
    ///
    /// Upstream, only `x-aimesh-backend` counts: without it the request keeps what the
    /// downstream instance decided (custom endpoints included) and `headers` is `None`.
    pub fn decide<'a>(&'a self, req: &Request<'_>) -> Result<Decision<'a>, EndpointError> {
        let backend = req.backend.filter(|b| !b.is_empty());
        if self.role == Role::Upstream {
            return self.account_decision(backend);
        }
        if is_proxy_path(req.path) {
            return self.custom(req);
        }
        if let Some(rule) = self.paths.iter().find(|r| req.path.starts_with(&r.prefix)) {
            if rule.disabled {
                return Err(EndpointError::Disabled);
            }
            return Ok(Decision {
                headers: Some(&rule.headers),
                route: None,
                account: None,
            });
        }
        self.account_decision(backend.or(self.default_account.as_deref()))
    }

    fn account_decision<'a>(&'a self, name: Option<&str>) -> Result<Decision<'a>, EndpointError> {
        let account = match name {
            // No accounts at all (`{}`): hygiene only, whatever virtual-model selected.
            _ if self.accounts.is_empty() => None,
            None => None,
            Some(n) => Some(
                self.accounts
                    .get_key_value(n)
                    .ok_or(EndpointError::UnknownAccount)?,
            ),
        };
        if account.is_some_and(|(_, a)| a.disabled) {
            return Err(EndpointError::Disabled);
        }
        Ok(Decision {
            headers: account.map(|(_, a)| &a.headers),
            route: None,
            account: account.map(|(k, _)| k.as_str()),
        })
    }

    fn custom<'a>(&'a self, req: &Request<'_>) -> Result<Decision<'a>, EndpointError> {
        let p = parse(req.path)?;
        let (acct_name, account) = self
            .accounts
            .get_key_value(p.account)
            .ok_or(EndpointError::NotFound)?;
        if account.disabled {
            return Err(EndpointError::Disabled);
        }
        let ep = account
            .endpoints
            .get(p.endpoint)
            .ok_or(EndpointError::NotFound)?;
        if let Some((keys, teams)) = &ep.allow {
            let key_ok = req.key_id.is_some_and(|k| keys.contains(k));
            let team_ok = req.team.is_some_and(|t| teams.contains(t));
            if !key_ok && !team_ok {
                return Err(EndpointError::Forbidden);
            }
        }
        let mut path = String::with_capacity(
            ep.base_path.len() + p.upstream_path.len() + p.query.map_or(0, |q| q.len() + 1),
        );
        path.push_str(&ep.base_path);
        path.push_str(p.upstream_path);
        if path.is_empty() {
            path.push('/');
        }
        if let Some(q) = p.query {
            path.push('?');
            path.push_str(q);
        }
        Ok(Decision {
            headers: Some(&ep.headers),
            route: Some(Route {
                cluster: &ep.cluster,
                authority: &ep.authority,
                path,
            }),
            account: Some(acct_name),
        })
    }
}
