//! Loading and checking `gateway.yaml`: every error names the field and, where it can be found,
//! the line.

use std::collections::{HashMap, HashSet};
use std::fmt;

use aimesh_config::egress::{Egress, EgressConfig};
use aimesh_config::names::{valid_account, valid_endpoint};
use aimesh_config::url::BaseUrl;

use crate::model::{Gateway, SecretRef, SecretSource};

/// A config error: field path, line (1-based) when known, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Field path, e.g. `virtual_models[1].targets[0].provider`.
    pub field: String,
    /// Line in the file, when it could be located.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "line {l}: {}: {}", self.field, self.message),
            None => write!(f, "{}: {}", self.field, self.message),
        }
    }
}

/// Model names the auth filter accepts in its catalogue (as in a request's `model`).
fn model_name_error(m: &str) -> Option<&'static str> {
    if m.is_empty() {
        Some("must not be empty")
    } else if m.len() > 256 || m.chars().any(char::is_control) {
        Some("must be at most 256 bytes without control characters")
    } else {
        None
    }
}

/// Parses and validates a gateway.yaml text.
pub fn load_str(text: &str) -> Result<Gateway, Vec<ConfigError>> {
    let gw: Gateway = serde_yaml_ng::from_str(text).map_err(|e| {
        let line = e.location().map(|l| l.line());
        // serde_yaml_ng prefixes nested errors with the path (`providers[0]: unknown field ...`).
        let msg = e.to_string();
        let (field, message) = match msg.split_once(": ") {
            Some((p, m)) if !p.contains(' ') => (p.to_string(), m.to_string()),
            _ => ("(document)".to_string(), msg),
        };
        vec![ConfigError {
            field,
            line,
            message,
        }]
    })?;
    let errs = validate(&gw);
    if errs.is_empty() {
        Ok(gw)
    } else {
        Err(errs
            .into_iter()
            .map(|(field, message)| ConfigError {
                line: locate(text, &field),
                field,
                message,
            })
            .collect())
    }
}

/// Reads and validates a file.
pub fn load_file(path: &std::path::Path) -> Result<Gateway, Vec<ConfigError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError {
            field: "(file)".into(),
            line: None,
            message: format!("cannot read {}: {e}", path.display()),
        }]
    })?;
    load_str(&text)
}

/// `aimesh-xds validate`: what `serve` refuses, by the same code ([`crate::serve::snapshot_of`]:
/// parsing, checks, building every resource, reading `${file:...}` secrets), and with
/// `check_env` the `${env:NAME}` secrets unset in this environment. header-auth reads those
/// in Envoy's environment and refuses its config without them, so validate where Envoy runs
/// (or with the same environment); `serve` cannot see Envoy's environment and does not check.
pub fn check_file(path: &std::path::Path, check_env: bool) -> Result<(), Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("cannot read {}: {e}", path.display())])?;
    crate::serve::snapshot_of(&text, std::path::Path::new("/wasm"))?;
    let gw =
        load_str(&text).map_err(|es| es.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    let unset: Vec<String> = env_secrets(&gw)
        .filter(|(_, name)| check_env && std::env::var_os(name).is_none())
        .map(|(field, name)| {
            ConfigError {
                line: locate(&text, &field),
                field,
                message: format!(
                    "${{env:{name}}} is not set here; Envoy needs it in its environment (header-auth \
                     refuses its config without it). Validate where Envoy runs, or pass --skip-env"
                ),
            }
            .to_string()
        })
        .collect();
    if unset.is_empty() {
        Ok(())
    } else {
        Err(unset)
    }
}

/// `(field, variable)` of every `${env:NAME}` secret.
fn env_secrets(gw: &Gateway) -> impl Iterator<Item = (String, String)> + '_ {
    let providers = gw
        .providers
        .iter()
        .enumerate()
        .map(|(i, p)| (format!("providers[{i}].api_key"), p.api_key.as_ref()));
    let mcp = gw
        .mcp_servers
        .iter()
        .enumerate()
        .map(|(i, m)| (format!("mcp_servers[{i}].api_key"), m.api_key.as_ref()));
    providers
        .chain(mcp)
        .filter_map(|(field, k)| match k?.source()? {
            SecretSource::Env(n) => Some((field, n.to_string())),
            SecretSource::File(_) => None,
        })
}

/// An upstream URL, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `https`.
    pub tls: bool,
    /// Host name or IP.
    pub host: String,
    /// Port (scheme default when absent).
    pub port: u16,
    /// Path without a trailing slash (`""` for the root).
    pub path: String,
}

/// Parses `http(s)://host[:port][/path]` by header-auth's own rule
/// ([`aimesh_config::url::BaseUrl`]), a trailing `/` allowed.
pub fn parse_url(s: &str) -> Result<Url, String> {
    let trimmed = s.strip_suffix('/').unwrap_or(s);
    let u = BaseUrl::parse(trimmed).map_err(|e| format!("'{s}': {e}"))?;
    let tls = u.scheme == "https";
    Ok(Url {
        tls,
        port: u.port.unwrap_or(if tls { 443 } else { 80 }),
        host: u.host,
        path: u.path,
    })
}

/// Parses `250ms`, `5s`, `2m` into milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000)
    } else {
        return Err(format!("'{s}' must be a duration like 250ms, 5s or 2m"));
    };
    num.parse::<u64>()
        .map(|n| n * mult)
        .map_err(|_| format!("'{s}' must be a duration like 250ms, 5s or 2m"))
}

/// Account of custom endpoints that name no provider (no credentials).
pub const CUSTOM_ACCOUNT: &str = "endpoints";

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
}

/// The egress allow-list as header-auth compiles it (one rule for gateway.yaml and the filter).
pub fn egress(allow: &[String]) -> Result<Egress, String> {
    Egress::compile(&EgressConfig {
        hosts: allow.to_vec(),
        cidrs: Vec::new(),
    })
}

/// Semantic checks; returns `(field, message)` pairs.
pub fn validate(gw: &Gateway) -> Vec<(String, String)> {
    let mut v = Checker::default();
    v.duration("listener.route_timeout", &gw.listener.route_timeout);
    if let Some(m) = &gw.metadata {
        if let Err(e) = aimesh_config::Validate::validate(m) {
            let e = e.within("metadata");
            v.err(e.field.clone(), &e.problem.to_string());
        }
    }
    if !crate::model::MAX_BODY_RANGE.contains(&gw.listener.max_body_bytes) {
        v.err(
            "listener.max_body_bytes".to_string(),
            "must be between 1024 (1 KiB) and 67108864 (64 MiB)",
        );
    }
    if gw.listener.filter_build != crate::model::FilterBuild::Separate {
        if let Some(i) = gw
            .virtual_models
            .iter()
            .position(|vm| !vm.fallbacks.is_empty())
        {
            v.err(
                "listener.filter_build".to_string(),
                &format!(
                    "`chain` and `native` do not run the per-attempt upstream filters fallbacks \
                     need (virtual_models[{i}].fallbacks); use `separate`"
                ),
            );
        }
    }
    let mut model_owner: HashMap<&str, &str> = HashMap::new();
    let mut providers = HashSet::new();
    for (i, p) in gw.providers.iter().enumerate() {
        let f = format!("providers[{i}]");
        v.name(&format!("{f}.name"), &p.name, &mut providers);
        // The header-auth filter keys provider accounts by this name, by its own rule.
        if !valid_account(&p.name) || p.name == CUSTOM_ACCOUNT {
            v.err(
                format!("{f}.name"),
                "must be 3-32 of a-z, 0-9, '-' (and not 'endpoints')",
            );
        }
        if p.kind.self_hosted() {
            if p.endpoints.is_empty() {
                v.err(
                    format!("{f}.endpoints"),
                    "a self-hosted provider needs at least one endpoint",
                );
            }
            if p.base_url.is_some() {
                v.err(
                    format!("{f}.base_url"),
                    "self-hosted providers use endpoints, not base_url",
                );
            }
            for (j, e) in p.endpoints.iter().enumerate() {
                v.url(&format!("{f}.endpoints[{j}].url"), &e.url, &gw.egress.allow);
                if e.weight == Some(0) {
                    v.err(format!("{f}.endpoints[{j}].weight"), "must be at least 1");
                }
            }
        } else {
            if !p.endpoints.is_empty() {
                v.err(
                    format!("{f}.endpoints"),
                    "only vllm and tgi providers have endpoints",
                );
            }
            if p.health_check.is_some() {
                v.err(
                    format!("{f}.health_check"),
                    "only vllm and tgi providers are health-checked",
                );
            }
            match (&p.base_url, p.kind.default_base_url()) {
                (Some(u), _) => v.url(&format!("{f}.base_url"), u, &gw.egress.allow),
                (None, Some(u)) => v.url(&format!("{f}.base_url"), u, &gw.egress.allow),
                (None, None) => v.err(format!("{f}.base_url"), "required for this kind"),
            }
        }
        if let Some(k) = &p.api_key {
            v.secret(&format!("{f}.api_key"), k);
        }
        if let Some(t) = &p.connect_timeout {
            v.duration(&format!("{f}.connect_timeout"), t);
        }
        if let Some(h) = &p.health_check {
            v.duration(&format!("{f}.health_check.interval"), &h.interval);
            v.duration(&format!("{f}.health_check.timeout"), &h.timeout);
            if !h.path.starts_with('/') {
                v.err(format!("{f}.health_check.path"), "must start with /");
            }
        }
        for (j, m) in p.models.iter().enumerate() {
            if let Some(e) = model_name_error(m) {
                v.err(format!("{f}.models[{j}]"), e);
            } else if let Some(other) = model_owner.insert(m, &p.name) {
                v.err(
                    format!("{f}.models[{j}]"),
                    &format!("model '{m}' is already served by provider '{other}'"),
                );
            }
        }
    }
    if let Some(d) = &gw.default_provider {
        if !providers.contains(d.as_str()) {
            v.err(
                "default_provider".into(),
                &format!("no provider named '{d}'"),
            );
        }
    }
    let mut names = HashSet::new();
    let mut scoped = Vec::new();
    for c in &gw.custom_endpoints {
        scoped.push(format!(
            "{}/{}",
            c.provider.as_deref().unwrap_or(CUSTOM_ACCOUNT),
            c.name
        ));
    }
    for (i, c) in gw.custom_endpoints.iter().enumerate() {
        // header-auth's own rule: the name is a segment of `/proxy-api/<account>/<name>/`.
        if !valid_endpoint(&c.name) {
            v.err(
                format!("custom_endpoints[{i}].name"),
                "must be 2-62 of A-Z, a-z, 0-9, '-', '_', '.', not starting with a digit",
            );
        } else if !names.insert(scoped[i].as_str()) {
            v.err(
                format!("custom_endpoints[{i}].name"),
                &format!("duplicate endpoint '{}'", scoped[i]),
            );
        }
        if let Some(p) = &c.provider {
            if !providers.contains(p.as_str()) {
                v.err(
                    format!("custom_endpoints[{i}].provider"),
                    &format!("no provider named '{p}'"),
                );
            }
        }
        for (j, k) in c.allow_keys.iter().enumerate() {
            if !gw.keys.iter().any(|x| &x.id == k) {
                v.err(
                    format!("custom_endpoints[{i}].allow_keys[{j}]"),
                    &format!("no key with id '{k}'"),
                );
            }
        }
        v.url(
            &format!("custom_endpoints[{i}].url"),
            &c.url,
            &gw.egress.allow,
        );
    }
    let mut names = HashSet::new();
    for (i, m) in gw.mcp_servers.iter().enumerate() {
        v.name(&format!("mcp_servers[{i}].name"), &m.name, &mut names);
        v.url(&format!("mcp_servers[{i}].url"), &m.url, &gw.egress.allow);
        if let Some(k) = &m.api_key {
            v.secret(&format!("mcp_servers[{i}].api_key"), k);
        }
        for (list, ps) in [
            ("tools", &m.tools),
            ("prompts", &m.prompts),
            ("resources", &m.resources),
        ] {
            for (j, p) in ps.iter().flatten().enumerate() {
                let f = format!("mcp_servers[{i}].{list}[{j}]");
                if let Err(e) = aimesh_config::mcp::check_pattern(&f, p) {
                    v.err(f, &e.problem.to_string());
                }
            }
        }
        for (j, l) in m.limits.iter().enumerate() {
            let f = format!("mcp_servers[{i}].limits[{j}]");
            if l.tool.is_empty() || l.tool.contains('*') {
                v.err(format!("{f}.tool"), "one exact tool name");
            }
            match (l.calls_per_minute, l.max_concurrent) {
                (None, None) => v.err(f, "give calls_per_minute or max_concurrent"),
                (Some(0), _) | (_, Some(0)) => v.err(f, "a limit must be at least 1"),
                _ => {}
            }
        }
    }
    for (i, k) in gw.keys.iter().enumerate() {
        for (server, grant) in k.mcp.iter().flatten() {
            let f = format!("keys[{i}].mcp.{server}");
            if !gw.mcp_servers.iter().any(|m| &m.name == server) {
                v.err(f.clone(), &format!("no mcp_servers entry named '{server}'"));
            }
            for (list, patterns) in grant.lists() {
                let at = match grant {
                    crate::model::McpGrant::Tools(_) => f.clone(),
                    crate::model::McpGrant::Lists(_) => format!("{f}.{list}"),
                };
                for (j, p) in patterns.iter().enumerate() {
                    let pf = format!("{at}[{j}]");
                    if let Err(e) = aimesh_config::mcp::check_pattern(&pf, p) {
                        v.err(pf, &e.problem.to_string());
                    }
                }
            }
        }
    }
    let mut vnames = HashSet::new();
    for (i, vm) in gw.virtual_models.iter().enumerate() {
        let f = format!("virtual_models[{i}]");
        if let Some(e) = model_name_error(&vm.name) {
            v.err(format!("{f}.name"), e);
        } else if !vnames.insert(vm.name.as_str()) {
            v.err(
                format!("{f}.name"),
                &format!("duplicate name '{}'", vm.name),
            );
        } else if let Some(p) = model_owner.get(vm.name.as_str()) {
            v.err(
                format!("{f}.name"),
                &format!("'{}' is also a model of provider '{p}'", vm.name),
            );
        }
        if vm.targets.is_empty() {
            v.err(format!("{f}.targets"), "needs at least one target");
        }
        // The filter tells a virtual model's targets apart by their provider's cluster.
        let mut seen = HashSet::new();
        for (list, t) in vm
            .targets
            .iter()
            .map(|t| ("targets", t))
            .chain(vm.fallbacks.iter().map(|t| ("fallbacks", t)))
        {
            if !seen.insert(t.provider.as_str()) {
                v.err(
                    format!("{f}.{list}"),
                    &format!(
                        "provider '{}' appears twice in one virtual model (targets and fallbacks)",
                        t.provider
                    ),
                );
            }
        }
        let all = vm.targets.iter().map(|t| ("targets", t));
        let fb = vm.fallbacks.iter().map(|t| ("fallbacks", t));
        let mut idx: HashMap<&str, usize> = HashMap::new();
        for (list, t) in all.chain(fb) {
            let j = idx.entry(list).or_default();
            let tf = format!("{f}.{list}[{j}]");
            *j += 1;
            if !providers.contains(t.provider.as_str()) {
                v.err(
                    format!("{tf}.provider"),
                    &format!("no provider named '{}'", t.provider),
                );
            }
            if t.model.is_empty() {
                v.err(format!("{tf}.model"), "must not be empty");
            }
            if list == "targets" && t.weight == 0 {
                v.err(format!("{tf}.weight"), "must be at least 1");
            }
        }
    }
    let mut aggregates = HashSet::new();
    for (i, vm) in gw.virtual_models.iter().enumerate() {
        // Names differing only in characters a cluster name drops would share clusters.
        if !vm.fallbacks.is_empty() && !aggregates.insert(crate::filters::fallback_cluster(vm, 0)) {
            v.err(
                format!("virtual_models[{i}].name"),
                "too similar to another virtual model with fallbacks (same cluster name)",
            );
        }
    }
    let mut keys = HashSet::new();
    for (i, k) in gw.keys.iter().enumerate() {
        if k.id.is_empty() {
            v.err(format!("keys[{i}].id"), "must not be empty");
        } else if !keys.insert(k.id.as_str()) {
            v.err(format!("keys[{i}].id"), &format!("duplicate id '{}'", k.id));
        }
        let ok = k
            .hash
            .strip_prefix("sha256:")
            .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
        if !ok {
            v.err(
                format!("keys[{i}].hash"),
                "must be 'sha256:' and 64 hex digits (a hash, never the key; see `aimesh-xds keys new`)",
            );
        }
        // The auth filter's own check, so a bad grant is refused here, not NACKed by Envoy.
        for (j, e) in k.endpoints.iter().flatten().enumerate() {
            if let Err(msg) = aimesh_core::auth::endpoints::validate_endpoint(e) {
                v.err(format!("keys[{i}].endpoints[{j}]"), &msg);
            }
        }
    }
    let long = gw.limits.long_form();
    for (i, l) in gw.limits.iter().enumerate() {
        let f = gw.limits.rule_field(i, long);
        v.scope(&f, l.key.as_deref(), l.team.as_deref(), &keys);
        let fleet_only = [
            ("subject", l.subject.is_some()),
            ("model", l.model.is_some()),
            ("max_concurrent", l.max_concurrent.is_some()),
        ];
        for (name, set) in fleet_only {
            if set && !gw.limits.fleet() {
                v.err(format!("{f}.{name}"), "needs limits.store: redis");
            }
        }
        let scopes = [
            l.key.is_some(),
            l.team.is_some(),
            l.subject.is_some(),
            l.model.is_some(),
        ];
        if scopes.iter().filter(|s| **s).count() > 1 {
            v.err(f.clone(), "set one of key, team, subject, model");
        }
        if l.requests_per_minute.is_none()
            && l.tokens_per_minute.is_none()
            && l.max_concurrent.is_none()
        {
            v.err(f, "set requests_per_minute, tokens_per_minute or both");
        }
    }
    if gw.limits.fleet() {
        match gw.limits.service.as_deref().map(parse_url) {
            None => v.err(
                "limits.service".into(),
                "the aimesh-limits URL is required with store: redis",
            ),
            Some(Err(e)) => v.err("limits.service".into(), &e),
            Some(Ok(_)) => {}
        }
        if let Some(Err(e)) = gw.limits.timeout.as_deref().map(parse_duration_ms) {
            v.err("limits.timeout".into(), &e);
        }
    } else if gw.limits.service.is_some() || gw.limits.timeout.is_some() {
        v.err(
            "limits.store".into(),
            "service and timeout need store: redis",
        );
    }
    for (i, b) in gw.budgets.iter().enumerate() {
        let f = format!("budgets[{i}]");
        v.scope(&f, b.key.as_deref(), b.team.as_deref(), &keys);
        if !(b.usd.is_finite() && b.usd > 0.0) {
            v.err(format!("{f}.usd"), "must be a positive amount");
        }
    }
    pii(&mut v, gw);
    if let Err(e) = egress(&gw.egress.allow) {
        // `egress.hosts[i]: ...` in the filter's words; `egress.allow[i]` in gateway.yaml's.
        let (field, message) = e.split_once(": ").unwrap_or(("", e.as_str()));
        let field = field.replace("egress.hosts", "egress.allow");
        v.err(field, message);
    }
    if v.errs.is_empty() {
        for (field, message) in crate::filters::check(gw) {
            v.err(field, &message);
        }
    }
    v.errs.extend(crate::tracing::check(gw));
    v.errs
}

/// `pii`: entity names here, the rest by the pii filter's own checks on the config it will get
/// (patterns compile, action kinds exist, rules name policies, `hash` has a key), with the
/// filter's field paths turned back into gateway.yaml's.
fn pii(v: &mut Checker, gw: &Gateway) {
    let policies = std::iter::once(("pii".to_string(), gw.pii.default_policy())).chain(
        gw.pii
            .policies
            .iter()
            .map(|(n, p)| (format!("pii.policies.{n}"), p.clone())),
    );
    let mut bad = false;
    for (f, p) in policies {
        for (i, e) in p.entities.iter().enumerate() {
            let known = crate::filters::pii_entities();
            if !known.contains(e) {
                bad = true;
                v.err(
                    format!("{f}.entities[{i}]"),
                    &format!("unknown entity '{e}'; known: {}", known.join(", ")),
                );
            }
        }
    }
    if gw.pii.policies.contains_key("default") {
        bad = true;
        v.err(
            "pii.policies.default".into(),
            "`default` is the top-level pii policy; pick another name",
        );
    }
    if bad {
        return;
    }
    let checked = crate::filters::pii(gw, false).and_then(|cfg| {
        cfg.validate().map_err(|e| e.to_string())?;
        aimesh_core::pii::Engine::new(&cfg).map(|_| ())
    });
    if let Err(e) = checked {
        let (field, message) = e.split_once(": ").unwrap_or(("pii", e.as_str()));
        let field = field
            .strip_prefix("policies.default.")
            .map(|rest| format!("pii.{rest}"))
            .unwrap_or_else(|| {
                if field.starts_with("pii") {
                    field.to_string()
                } else {
                    format!("pii.{field}")
                }
            });
        v.err(field, message);
    }
}

#[derive(Default)]
struct Checker {
    errs: Vec<(String, String)>,
}

impl Checker {
    fn err(&mut self, field: String, msg: &str) {
        self.errs.push((field, msg.to_string()));
    }

    fn name<'a>(&mut self, field: &str, name: &'a str, seen: &mut HashSet<&'a str>) {
        if !valid_name(name) {
            self.err(
                field.into(),
                "must be 1-64 of a-z, 0-9, '-', '_', '.', starting with a letter or digit",
            );
        } else if !seen.insert(name) {
            self.err(field.into(), &format!("duplicate name '{name}'"));
        }
    }

    fn duration(&mut self, field: &str, s: &str) {
        if let Err(e) = parse_duration_ms(s) {
            self.err(field.into(), &e);
        }
    }

    fn url(&mut self, field: &str, s: &str, allow: &[String]) {
        let trimmed = s.strip_suffix('/').unwrap_or(s);
        match BaseUrl::parse(trimmed) {
            Err(e) => self.err(field.into(), &format!("'{s}': {e}")),
            Ok(u) if !allow.is_empty() && !egress(allow).is_ok_and(|e| e.allows(&u)) => self.err(
                field.into(),
                &format!("host '{}' is not in egress.allow", u.host),
            ),
            Ok(_) => {}
        }
    }

    fn secret(&mut self, field: &str, s: &SecretRef) {
        if s.source().is_none() {
            // Never echo the value: it may be the secret itself.
            self.err(
                field.into(),
                "must reference a secret as ${env:NAME} or ${file:/absolute/path}; secrets are never inlined",
            );
        }
    }

    fn scope(&mut self, f: &str, key: Option<&str>, team: Option<&str>, keys: &HashSet<&str>) {
        if key.is_some() && team.is_some() {
            self.err(f.into(), "set key or team, not both");
        }
        if let Some(k) = key {
            if !keys.contains(k) {
                self.err(format!("{f}.key"), &format!("no key with id '{k}'"));
            }
        }
    }
}

/// Best-effort line of a field path in block-style YAML (`a[1].b` -> the line of `b:`).
pub fn locate(text: &str, path: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut pos = 0usize; // next line to search from
    let mut min_indent = 0usize;
    let mut found = None;
    for seg in path.split('.') {
        let (key, idx) = match seg.find('[') {
            Some(b) => (
                &seg[..b],
                seg[b + 1..].trim_end_matches(']').parse::<usize>().ok(),
            ),
            None => (seg, None),
        };
        let mut hit = None;
        for (n, l) in lines.iter().enumerate().skip(pos) {
            let body = l.trim_start();
            let indent = l.len() - body.len();
            let body_key = body.trim_start_matches("- ");
            let indent = indent + (body.len() - body_key.len());
            if indent < min_indent && !body.is_empty() && !body.starts_with('#') && n > pos {
                return found;
            }
            if indent >= min_indent && body_key.starts_with(&format!("{key}:")) {
                hit = Some((n, indent));
                break;
            }
        }
        let Some((n, indent)) = hit else {
            return found;
        };
        found = Some(n + 1);
        pos = n + 1;
        min_indent = indent + 1;
        if let Some(i) = idx {
            let mut count = 0usize;
            let mut item = None;
            let mut list_indent = None;
            for (m, l) in lines.iter().enumerate().skip(pos) {
                let body = l.trim_start();
                let ind = l.len() - body.len();
                if body.starts_with("- ") || body == "-" {
                    let li = *list_indent.get_or_insert(ind);
                    if ind != li {
                        continue;
                    }
                    if count == i {
                        item = Some((m, ind));
                        break;
                    }
                    count += 1;
                } else if !body.is_empty() && !body.starts_with('#') && ind < indent {
                    break;
                }
            }
            let Some((m, ind)) = item else {
                return found;
            };
            found = Some(m + 1);
            pos = m;
            min_indent = ind;
        }
    }
    found
}

#[cfg(test)]
#[path = "validate_drift_tests.rs"]
mod drift_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn errs(yaml: &str) -> Vec<ConfigError> {
        match load_str(yaml) {
            Ok(_) => vec![],
            Err(e) => e,
        }
    }

    #[test]
    fn example_file_is_valid() {
        let text = include_str!("../../examples/gateway.yaml");
        assert_eq!(errs(text), vec![]);
    }

    #[test]
    fn fleet_limits_name_their_fields() {
        let fields = |yaml: &str| errs(yaml).into_iter().map(|e| e.field).collect::<Vec<_>>();
        assert_eq!(fields("limits:\n  store: redis\n"), ["limits.service"]);
        assert_eq!(
            fields("limits:\n  - subject: '*'\n    requests_per_minute: 3\n"),
            ["limits[0].subject"]
        );
        assert_eq!(
            fields("limits:\n  store: redis\n  service: http://127.0.0.1:8089\n  timeout: 2x\n  rules:\n    - team: t\n      model: m\n      requests_per_minute: 3\n"),
            ["limits.rules[0]", "limits.timeout"]
        );
        let ok = "limits:\n  store: redis\n  service: http://127.0.0.1:8089\n  rules:\n    - subject: '*'\n      max_concurrent: 2\n";
        assert_eq!(errs(ok), vec![]);
        let gw = load_str(ok).unwrap();
        let f = crate::filters::token_accounting(&gw).fleet.unwrap();
        assert_eq!(f.rules[0].scope, Some(aimesh_config::fleet::Scope::Subject));
        assert_eq!(
            (f.rules[0].name.as_deref(), f.rules[0].max_concurrent),
            (None, Some(2))
        );
        assert_eq!(f.failure.budgets, aimesh_config::fleet::OnFailure::Closed);
    }

    #[test]
    fn chain_build_refuses_fallbacks() {
        let base = "listener:\n  filter_build: chain\nproviders:\n  - name: pa1\n    kind: openai\n  - name: pa2\n    kind: openai\nvirtual_models:\n  - name: v\n    targets:\n      - provider: pa1\n        model: m\n";
        assert_eq!(errs(base), vec![]);
        let e = errs(&format!(
            "{base}    fallbacks:\n      - provider: pa2\n        model: m\n"
        ));
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].field, "listener.filter_build");
        assert!(
            e[0].message.contains("virtual_models[0].fallbacks"),
            "{}",
            e[0]
        );
        assert!(!errs("listener:\n  filter_build: fused\n").is_empty());
    }

    #[test]
    fn unknown_field_names_field_and_line() {
        let e = errs("providers:\n  - name: pa1\n    kind: openai\n    colour: blue\n");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].line, Some(4));
        assert_eq!(e[0].field, "providers[0]");
        assert!(e[0].message.contains("unknown field `colour`"), "{}", e[0]);
    }

    #[test]
    fn bad_reference_names_field_and_line() {
        let yaml = "providers:\n  - name: pa1\n    kind: openai\nvirtual_models:\n  - name: v\n    targets:\n      - provider: pa1\n        model: m\n      - provider: nope\n        model: m\n";
        let e = errs(yaml);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].field, "virtual_models[0].targets[1].provider");
        assert_eq!(e[0].line, Some(9));
        assert!(e[0].to_string().starts_with(
            "line 9: virtual_models[0].targets[1].provider: no provider named 'nope'"
        ));
    }

    #[test]
    fn inlined_secret_is_refused_without_echoing_it() {
        let e = errs("providers:\n- name: pa1\n  kind: openai\n  api_key: sk-live-123\n");
        assert_eq!(e[0].field, "providers[0].api_key");
        assert_eq!(e[0].line, Some(4));
        assert!(!e[0].to_string().contains("sk-live-123"));
        assert!(
            errs("providers:\n- {name: pa1, kind: openai, api_key: '${env:OPENAI_KEY}'}\n")
                .is_empty()
        );
        assert!(
            errs("providers:\n- {name: pa1, kind: openai, api_key: '${file:/run/k}'}\n").is_empty()
        );
        assert!(
            !errs("providers:\n- {name: pa1, kind: openai, api_key: '${file:rel}'}\n").is_empty()
        );
    }

    #[test]
    fn egress_allow_list_is_enforced() {
        let yaml = "egress: {allow: ['*.example.com']}\nproviders:\n- {name: pa1, kind: openai_compatible, base_url: 'https://api.example.com'}\n- {name: pb1, kind: openai}\n";
        let e = errs(yaml);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].field, "providers[1].base_url");
        assert!(e[0].message.contains("api.openai.com"));
    }

    #[test]
    fn semantic_checks() {
        let cases = [
            ("providers:\n- {name: A, kind: openai}\n", "providers[0].name"),
            ("providers:\n- {name: pa1, kind: openai}\n- {name: pa1, kind: anthropic}\n", "providers[1].name"),
            ("providers:\n- {name: pa1, kind: vllm}\n", "providers[0].endpoints"),
            ("providers:\n- {name: pa1, kind: openai_compatible}\n", "providers[0].base_url"),
            ("providers:\n- {name: pa1, kind: openai, models: [m]}\n- {name: pb1, kind: anthropic, models: [m]}\n", "providers[1].models[0]"),
            ("providers:\n- {name: pa1, kind: openai, models: [\"a\\tb\"]}\n", "providers[0].models[0]"),
            ("default_provider: x\n", "default_provider"),
            ("keys:\n- {id: a, hash: 'sk-plain'}\n", "keys[0].hash"),
            (
                "keys:\n- {id: a, hash: 'sha256:0000000000000000000000000000000000000000000000000000000000000000', endpoints: ['FETCH /v1/files']}\n",
                "keys[0].endpoints[0]",
            ),
            ("limits:\n- {key: ghost, requests_per_minute: 1}\n", "limits[0].key"),
            ("listener: {route_timeout: soon}\n", "listener.route_timeout"),
            ("listener: {max_body_bytes: 100}\n", "listener.max_body_bytes"),
            ("metadata: {header: x-aimesh-meta}\n", "metadata.header"),
            ("metadata: {keys: [a], labels: [b]}\n", "metadata.labels[0]"),
            ("mcp_servers:\n- {name: m, url: 'ftp://x'}\n", "mcp_servers[0].url"),
        ];
        for (yaml, field) in cases {
            let e = errs(yaml);
            assert!(e.iter().any(|e| e.field == field), "{yaml}: {e:?}");
            assert!(e.iter().all(|e| e.line.is_some()), "{yaml}: {e:?}");
        }
    }

    #[test]
    fn pii_is_checked_by_the_filters_own_rules_with_gateway_field_names() {
        let cases = [
            (
                "pii:\n  patterns:\n  - {name: EMP, regex: 'E(\\d'}\n",
                "pii.patterns[0].regex",
                Some(3),
            ),
            (
                "pii:\n  patterns:\n  - {name: emp, regex: 'E'}\n",
                "pii.patterns[0].name",
                Some(3),
            ),
            ("pii:\n  mode: hash\n", "pii.hash_key", None),
            ("pii:\n  hash_key: '${env:K}'\n", "pii.hash_key", Some(2)),
            (
                "pii:\n  actions: {nosuch: block}\n",
                "pii.actions.NOSUCH",
                Some(2),
            ),
            (
                "pii:\n  policies: {s: {actions: {nosuch: block}}}\n",
                "pii.policies.s.actions.NOSUCH",
                Some(2),
            ),
            (
                "pii:\n  policies: {s: {entities: [mail]}}\n",
                "pii.policies.s.entities[0]",
                Some(2),
            ),
            (
                "pii:\n  rules: [{policy: ghost}]\n",
                "pii.rules[0].policy",
                Some(2),
            ),
            (
                "pii:\n  policies: {default: {}}\n",
                "pii.policies.default",
                Some(2),
            ),
        ];
        for (yaml, field, line) in cases {
            let e = errs(yaml);
            assert_eq!(e.len(), 1, "{yaml}: {e:?}");
            assert_eq!(e[0].field, field, "{yaml}: {e:?}");
            if line.is_some() {
                assert_eq!(e[0].line, line, "{yaml}: {e:?}");
            }
        }
        let ok = "pii:\n  mode: hash\n  hash_key: '${file:/run/k}'\n  patterns: [{name: EMP, regex: 'E\\d+'}]\n  \
                  actions: {emp: block, deny_word: block}\n  deny_words: [x]\n  \
                  policies: {s: {mode: off}}\n  rules: [{path_prefix: /v1/embeddings, policy: s}]\n";
        assert_eq!(errs(ok), vec![]);
    }

    #[test]
    fn urls_and_durations() {
        let u = parse_url("https://Host.example.com/openai/").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.path.as_str()),
            (true, "host.example.com", 443, "/openai")
        );
        let u = parse_url("http://127.0.0.1:8000").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((u.port, u.path.as_str()), (8000, ""));
        assert!(parse_url("http://user:pw@h").is_err());
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
        assert_eq!(parse_duration_ms("2m"), Ok(120_000));
        let allow = |host: &str| {
            let u = aimesh_config::url::BaseUrl::parse(&format!("https://{host}"))
                .unwrap_or_else(|e| panic!("{e}"));
            egress(&["*.a.com".into()]).is_ok_and(|e| e.allows(&u))
        };
        assert!(allow("x.a.com"));
        assert!(!allow("a.com"));
    }
}
