//! gateway.yaml -> the configuration of each aimesh Wasm filter, built as that filter's own
//! type from `aimesh-config` (the types the filters load), so a format change in a filter is a
//! compile error here rather than a config Envoy refuses.

mod check;
pub mod fleet;
mod header_auth;

use std::collections::BTreeMap;

use aimesh_config::accounting::{KeyLimits, LimitsConfig, TokenAccountingConfig};
use aimesh_config::auth::{AuthConfig, CatalogueConfig, CatalogueModel, KeyEntry, ModelRoute};
use aimesh_config::chain::ChainConfig;
use aimesh_config::mcp::{Grant, McpConfig, ServerAccess, ToolLimit};
use aimesh_config::pii::{Action, HeaderMatch, PatternConfig, PiiConfig, PiiType, PolicyConfig};
use aimesh_config::routing::{self, RoutingConfig};
use aimesh_config::translate::{Dialect, TranslateConfig};
use aimesh_config::{endpoints, Validate};
use serde::Serialize;

use crate::model::{
    BudgetPeriod, FilterBuild, Gateway, Key, McpGrant, PiiMode, PiiPolicy, SecretRef, SecretSource,
    Target, VirtualModel,
};
use crate::resources::provider_cluster;

pub use check::check;
pub use header_auth::{header_auth, header_auth_upstream};

/// The filters, in chain order (see `tests/harness/paths.py::FILTERS`).
pub const NAMES: [&str; 6] = aimesh_config::chain::STAGES;

/// The one-filter build (`aimesh_chain.wasm`): the five as stages, one config section each.
pub const CHAIN: &str = "chain";

/// The Wasm filters the listener loads, in order.
pub fn loaded(gw: &Gateway) -> Vec<&'static str> {
    match gw.listener.filter_build {
        // The mcp filter only where there is MCP traffic to govern.
        FilterBuild::Separate => NAMES
            .into_iter()
            .filter(|n| *n != "mcp" || !gw.mcp_servers.is_empty())
            .collect(),
        FilterBuild::Chain | FilterBuild::Native => vec![CHAIN],
    }
}

/// ECDS resource / HTTP filter name of a filter (`aimesh.auth`).
pub fn extension_name(filter: &str) -> String {
    format!("aimesh.{filter}")
}

/// Every filter's configuration, each as the filter's own type.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterConfigs {
    /// `aimesh_auth.wasm`.
    pub auth: AuthConfig,
    /// `aimesh_mcp.wasm`, when MCP servers are configured.
    pub mcp: Option<McpConfig>,
    /// `aimesh_pii_redaction.wasm`.
    pub pii_redaction: PiiConfig,
    /// `aimesh_virtual_model.wasm`, downstream instance.
    pub virtual_model: RoutingConfig,
    /// `aimesh_token_accounting.wasm`.
    pub token_accounting: TokenAccountingConfig,
    /// `aimesh_header_auth.wasm`, downstream instance.
    pub header_auth: endpoints::Config,
}

impl FilterConfigs {
    /// Builds them. `resolve_files`: read `${file:...}` secrets (the header-auth filter resolves
    /// `${env:...}` itself, in Envoy).
    pub fn build(gw: &Gateway, resolve_files: bool) -> Result<Self, String> {
        Ok(Self {
            auth: auth(gw),
            mcp: mcp(gw),
            pii_redaction: pii(gw, resolve_files)?,
            virtual_model: virtual_model(gw),
            token_accounting: token_accounting(gw),
            header_auth: header_auth(gw, resolve_files)?,
        })
    }

    /// The chain's configuration: the five as its sections.
    pub fn chain(&self) -> ChainConfig {
        ChainConfig {
            auth: Some(self.auth.clone()),
            mcp: self.mcp.clone(),
            pii_redaction: Some(self.pii_redaction.clone()),
            virtual_model: Some(self.virtual_model.clone()),
            token_accounting: Some(self.token_accounting.clone()),
            header_auth: Some(self.header_auth.clone()),
            stage_timings: false,
        }
    }

    /// `(filter, config)` in chain order.
    pub fn each(&self) -> Vec<(&'static str, &dyn Validate)> {
        let mut all: Vec<(&'static str, &dyn Validate)> = vec![("auth", &self.auth)];
        if let Some(m) = &self.mcp {
            all.push(("mcp", m));
        }
        all.extend([
            ("pii-redaction", &self.pii_redaction),
            ("virtual-model", &self.virtual_model),
            ("token-accounting", &self.token_accounting),
            ("header-auth", &self.header_auth),
        ] as [(&'static str, &dyn Validate); 4]);
        all
    }
}

fn to_json<T: Serialize>(name: &str, v: &T) -> Result<String, String> {
    serde_json::to_string(v).map_err(|e| format!("{name} config: {e}"))
}

/// `(filter, config JSON)` of every filter the listener loads, in chain order: the five, or
/// the chain alone.
pub fn configs(gw: &Gateway, resolve_files: bool) -> Result<Vec<(&'static str, String)>, String> {
    let c = FilterConfigs::build(gw, resolve_files)?;
    if gw.listener.filter_build != FilterBuild::Separate {
        return Ok(vec![(CHAIN, to_json(CHAIN, &c.chain())?)]);
    }
    let mut all = vec![("auth", to_json("auth", &c.auth)?)];
    if let Some(m) = &c.mcp {
        all.push(("mcp", to_json("mcp", m)?));
    }
    all.extend([
        ("pii-redaction", to_json("pii-redaction", &c.pii_redaction)?),
        ("virtual-model", to_json("virtual-model", &c.virtual_model)?),
        (
            "token-accounting",
            to_json("token-accounting", &c.token_accounting)?,
        ),
        ("header-auth", to_json("header-auth", &c.header_auth)?),
    ]);
    Ok(all)
}

/// `pii.entities` names, as gateway.yaml spells them: the filter's built-in types, lower case.
pub fn pii_entities() -> Vec<String> {
    PiiType::ALL
        .iter()
        .map(|t| t.name().to_ascii_lowercase())
        .collect()
}

/// Environment variables of Envoy that header-auth reads (`${env:NAME}` provider keys); the
/// VM sees only the variables listed in its `host_env_keys`.
pub fn header_auth_env(gw: &Gateway) -> Vec<String> {
    let keys = gw.providers.iter().map(|p| p.api_key.as_ref());
    let mcp_keys = gw.mcp_servers.iter().map(|m| m.api_key.as_ref());
    let mut names: Vec<String> = keys
        .chain(mcp_keys)
        .filter_map(|k| match k?.source()? {
            SecretSource::Env(n) => Some(n.to_string()),
            SecretSource::File(_) => None,
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// True when a provider or MCP server key is a `${file:...}` reference: the xDS server reads
/// those and header-auth's config then carries the value itself.
pub fn has_file_secrets(gw: &Gateway) -> bool {
    let keys = gw.providers.iter().map(|p| p.api_key.as_ref());
    keys.chain(gw.mcp_servers.iter().map(|m| m.api_key.as_ref()))
        .any(|k| matches!(k.and_then(SecretRef::source), Some(SecretSource::File(_))))
}

/// True when `filter`'s config carries a value read from a `${file:...}` secret: provider or MCP
/// keys in header-auth's, the PII `hash_key` in pii-redaction's; the chain holds both.
pub fn carries_file_secrets(gw: &Gateway, filter: &str) -> bool {
    let keys = has_file_secrets(gw);
    let hash_key = gw.pii.hash_key.is_some();
    match filter {
        "header-auth" => keys,
        "pii-redaction" => hash_key,
        CHAIN => keys || hash_key,
        _ => false,
    }
}

/// pii-redaction's config: `pii`'s top-level fields as the `default` policy, `pii.policies` as
/// the others. `hash_key` is read only with `resolve_files` (else a placeholder of valid length
/// stands in, for `diff` and checks).
pub fn pii(gw: &Gateway, resolve_files: bool) -> Result<PiiConfig, String> {
    let p = &gw.pii;
    let mut policies = BTreeMap::new();
    policies.insert("default".to_string(), pii_policy(&p.default_policy()));
    for (name, policy) in &p.policies {
        policies.insert(name.clone(), pii_policy(policy));
    }
    let hash_key = match &p.hash_key {
        None => None,
        Some(k) => Some(
            match k.source() {
                Some(SecretSource::File(_)) if resolve_files => k.resolve(),
                Some(SecretSource::File(_)) => Ok("(file: not read for this check)".to_string()),
                _ => Err("must be ${file:/absolute/path}".to_string()),
            }
            .map_err(|e| format!("pii.hash_key: {e}"))?,
        ),
    };
    Ok(PiiConfig {
        policies,
        default_policy: None,
        rules: p
            .rules
            .iter()
            .map(|r| aimesh_config::pii::RuleConfig {
                route_name: None,
                path_prefix: r.path_prefix.clone(),
                header: r.header.as_ref().map(|h| HeaderMatch {
                    name: h.name.to_ascii_lowercase(),
                    value: h.value.clone(),
                }),
                policy: r.policy.clone(),
            })
            .collect(),
        patterns: p
            .patterns
            .iter()
            .map(|x| PatternConfig {
                name: x.name.clone(),
                regex: x.regex.clone(),
            })
            .collect(),
        deny_words: p.deny_words.clone(),
        hash_key,
    })
}

fn pii_action(mode: PiiMode) -> Action {
    match mode {
        PiiMode::Off => Action::Allow,
        PiiMode::Redact => Action::Mask,
        PiiMode::Hash => Action::Hash,
        PiiMode::Block => Action::Block,
    }
}

/// The kind name the filter uses for a gateway.yaml name (`email` -> `EMAIL`).
pub fn pii_kind(name: &str) -> String {
    name.to_ascii_uppercase()
}

/// One policy. Kinds not listed are allowed; `patterns` and `deny_word` follow `mode` unless
/// `entities` lists some and not them.
fn pii_policy(p: &PiiPolicy) -> PolicyConfig {
    let mode = pii_action(p.mode);
    let mut actions = BTreeMap::new();
    if p.mode != PiiMode::Off {
        let listed = if p.entities.is_empty() {
            pii_entities()
        } else {
            p.entities.clone()
        };
        for e in listed {
            actions.insert(pii_kind(&e), mode);
        }
    }
    for (kind, action) in &p.actions {
        actions.insert(pii_kind(kind), pii_action(*action));
    }
    PolicyConfig {
        actions,
        // Operator patterns and deny words are acted on by `mode` when no entity list narrows it.
        default_action: if p.entities.is_empty() {
            mode
        } else {
            Action::Allow
        },
        restore: p.restore,
        redact_responses: p.redact_responses.unwrap_or(p.mode != PiiMode::Off),
    }
}

/// A setting for a key from the most specific entry that sets it: the key's own, else its
/// team's, else the default (no key, no team).
fn pick<T, V>(
    items: &[T],
    key: Option<&Key>,
    scope: impl Fn(&T) -> (Option<&str>, Option<&str>),
    field: impl Fn(&T) -> Option<V>,
) -> Option<V> {
    let by = |want: (Option<&str>, Option<&str>)| {
        items.iter().filter(|i| scope(i) == want).find_map(&field)
    };
    match key {
        None => by((None, None)),
        Some(k) => by((Some(&k.id), None))
            .or_else(|| k.team.as_deref().and_then(|t| by((None, Some(t)))))
            .or_else(|| by((None, None))),
    }
}

fn limit_scope(l: &crate::model::Limit) -> (Option<&str>, Option<&str>) {
    (l.key.as_deref(), l.team.as_deref())
}

/// The auth filter's config: keys with their limits, and the model catalogue.
pub fn auth(gw: &Gateway) -> AuthConfig {
    let keys = gw
        .keys
        .iter()
        .map(|k| KeyEntry {
            id: k.id.clone(),
            hash: k.hash.clone(),
            owner: k.owner.clone(),
            team: k.team.clone(),
            models: k
                .models
                .clone()
                .unwrap_or_else(aimesh_config::auth::all_models),
            endpoints: k.endpoints.clone(),
            expires_at: k.expires_at.clone(),
            disabled: k.disabled,
            // Fleet-wide, token-accounting takes these on the limits service instead.
            requests_per_minute: k
                .requests_per_minute
                .or_else(|| pick(&gw.limits, Some(k), limit_scope, |l| l.requests_per_minute))
                .filter(|_| !gw.limits.fleet()),
            max_concurrent: k.max_concurrent.filter(|_| !gw.limits.fleet()),
            metadata: Default::default(),
        })
        .collect();
    AuthConfig {
        keys,
        jwt: None,
        max_body_bytes: usize::try_from(gw.listener.max_body_bytes).unwrap_or(usize::MAX),
        catalogue: Some(catalogue(gw)),
        keys_env: None,
    }
}

/// `owned_by` of virtual models in the model list: the gateway itself serves them.
pub const VIRTUAL_OWNER: &str = "aimesh";

/// Every provider model with its route, every virtual model (routed by virtual-model), and the
/// default provider's route. Auth routes provider models from it (the RDS has no per-model
/// routes: see [`crate::resources`]) and answers `GET /v1/models` with it.
fn catalogue(gw: &Gateway) -> CatalogueConfig {
    let route = |p: &str| ModelRoute {
        cluster: provider_cluster(p),
        backend: p.to_string(),
    };
    let provider_models = gw.providers.iter().flat_map(|p| {
        p.models.iter().map(move |m| CatalogueModel {
            id: m.clone(),
            owned_by: p.name.clone(),
            route: Some(route(&p.name)),
        })
    });
    let virtual_models = gw.virtual_models.iter().map(|vm| CatalogueModel {
        id: vm.name.clone(),
        owned_by: VIRTUAL_OWNER.to_string(),
        route: None,
    });
    CatalogueConfig {
        models: provider_models.chain(virtual_models).collect(),
        default_route: gw.default_provider.as_deref().map(route),
    }
}

/// Aggregate cluster of a virtual model's entry `i` (targets, then fallbacks): that entry's
/// cluster first, then the others in order.
pub fn fallback_cluster(vm: &VirtualModel, i: usize) -> String {
    let safe: String = vm
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{FALLBACK_PREFIX}{safe}.{i}")
}

/// Prefix of the aggregate clusters of virtual models with fallbacks (the route that carries
/// the retry policy matches `x-aimesh-cluster` on it).
pub const FALLBACK_PREFIX: &str = "fallback.";

/// Targets and then fallbacks of a virtual model, as `(target, is_fallback)`.
pub fn entries(vm: &VirtualModel) -> impl Iterator<Item = (&Target, bool)> {
    vm.targets
        .iter()
        .map(|t| (t, false))
        .chain(vm.fallbacks.iter().map(|t| (t, true)))
}

/// Weighted targets. A virtual model with `fallbacks` runs in the filter's fallback mode: every
/// entry gets an aggregate `fallback_cluster`, and fallbacks join the targets with weight 0
/// (never the primary, but known to the upstream instance, which rewrites the body for whichever
/// one an attempt reaches).
fn virtual_models(gw: &Gateway) -> Vec<routing::VirtualModel> {
    gw.virtual_models
        .iter()
        .map(|vm| {
            let fallback = !vm.fallbacks.is_empty();
            let targets = entries(vm)
                .enumerate()
                .map(|(i, (t, is_fallback))| routing::Target {
                    target: format!("{}/{}", t.provider, t.model),
                    cluster: provider_cluster(&t.provider),
                    fallback_cluster: fallback.then(|| fallback_cluster(vm, i)),
                    weight: if is_fallback { 0 } else { t.weight },
                    priority: 0,
                })
                .collect();
            routing::VirtualModel {
                name: vm.name.clone(),
                strategy: routing::Strategy::Weighted,
                targets,
                latency: Default::default(),
                sla: None,
                sticky: None,
                retry: Default::default(),
            }
        })
        .collect()
}

/// The virtual-model filter's downstream instance.
pub fn virtual_model(gw: &Gateway) -> RoutingConfig {
    RoutingConfig {
        role: routing::Role::Downstream,
        virtual_models: virtual_models(gw),
        pass_through: true,
    }
}

/// The virtual-model filter's upstream instance (in the aggregate clusters).
pub fn virtual_model_upstream(gw: &Gateway) -> RoutingConfig {
    RoutingConfig {
        role: routing::Role::Upstream,
        ..virtual_model(gw)
    }
}

/// The mcp filter's config, when MCP servers are configured: each server's default tool list,
/// each key's `mcp` map, per-tool limits for every key.
pub fn mcp(gw: &Gateway) -> Option<McpConfig> {
    if gw.mcp_servers.is_empty() {
        return None;
    }
    let servers = gw
        .mcp_servers
        .iter()
        .map(|m| {
            let mut access = ServerAccess::default();
            if let Some(t) = &m.tools {
                access.tools = t.clone();
            }
            if let Some(p) = &m.prompts {
                access.prompts = p.clone();
            }
            if let Some(r) = &m.resources {
                access.resources = r.clone();
            }
            (m.name.clone(), access)
        })
        .collect();
    let callers = gw
        .keys
        .iter()
        .filter_map(|k| {
            let map = k.mcp.as_ref()?;
            let grants = map
                .iter()
                .map(|(server, grant)| {
                    let grant = match grant {
                        McpGrant::Tools(tools) => Grant {
                            tools: Some(tools.clone()),
                            ..Default::default()
                        },
                        McpGrant::Lists(l) => Grant {
                            tools: l.tools.clone(),
                            prompts: l.prompts.clone(),
                            resources: l.resources.clone(),
                        },
                    };
                    (server.clone(), grant)
                })
                .collect();
            Some((k.id.clone(), grants))
        })
        .collect();
    let limits: Vec<ToolLimit> = gw
        .mcp_servers
        .iter()
        .flat_map(|m| {
            m.limits.iter().map(|l| ToolLimit {
                server: m.name.clone(),
                tool: l.tool.clone(),
                calls_per_minute: l.calls_per_minute,
                max_concurrent: l.max_concurrent,
            })
        })
        .collect();
    let known_callers = if limits.is_empty() {
        Vec::new()
    } else {
        gw.keys.iter().map(|k| k.id.clone()).collect()
    };
    Some(McpConfig {
        servers,
        callers,
        teams: Default::default(),
        jwt_rules: Default::default(),
        limits,
        known_callers,
        max_body_bytes: aimesh_config::mcp::DEFAULT_MAX_BODY_BYTES,
        max_batch: aimesh_config::mcp::DEFAULT_MAX_BATCH,
        validate_arguments: true,
    })
}

/// Token-accounting's config: limits by key id (teams expanded) and prices.
pub fn token_accounting(gw: &Gateway) -> TokenAccountingConfig {
    let limits_of = |key: Option<&Key>| -> KeyLimits {
        let budget = |period: BudgetPeriod| {
            pick(
                &gw.budgets,
                key,
                |b| (b.key.as_deref(), b.team.as_deref()),
                |b| (b.period == period).then_some(b.usd),
            )
        };
        KeyLimits {
            tpm: pick(&gw.limits, key, limit_scope, |l| l.tokens_per_minute),
            daily_usd: budget(BudgetPeriod::Day),
            monthly_usd: budget(BudgetPeriod::Month),
        }
    };
    let default = limits_of(None);
    let keys = gw
        .keys
        .iter()
        .map(|k| (k.id.clone(), limits_of(Some(k))))
        .filter(|(_, l)| *l != default)
        .collect();
    let unlimited = KeyLimits::default();
    if gw.limits.fleet() {
        return TokenAccountingConfig {
            prices: gw.prices.clone(),
            fleet: Some(crate::filters::fleet::config(gw)),
            metadata: gw.metadata.clone(),
            ..Default::default()
        };
    }
    TokenAccountingConfig {
        prices: gw.prices.clone(),
        limits: LimitsConfig {
            default: (default != unlimited).then_some(default),
            keys,
        },
        // By account (the backend virtual-model and auth report) and by cluster (else).
        providers: gw
            .providers
            .iter()
            .flat_map(|p| {
                let name = crate::tracing::provider_name(p.kind).to_string();
                [
                    (p.name.clone(), name.clone()),
                    (crate::resources::provider_cluster(&p.name), name),
                ]
            })
            .collect(),
        metadata: gw.metadata.clone(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;

/// The dialect a provider kind speaks: Anthropic Messages or OpenAI chat completions.
pub fn dialect(kind: crate::model::ProviderKind) -> Dialect {
    match kind {
        crate::model::ProviderKind::Anthropic => Dialect::Anthropic,
        _ => Dialect::OpenAi,
    }
}

/// The translate stage's config (in every provider cluster's and every aggregate cluster's
/// upstream filters): each provider cluster with its kind's dialect.
pub fn translate(gw: &Gateway) -> TranslateConfig {
    TranslateConfig {
        clusters: gw
            .providers
            .iter()
            .map(|p| (provider_cluster(&p.name), dialect(p.kind)))
            .collect(),
        ..TranslateConfig::default()
    }
}
