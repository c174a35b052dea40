//! gateway.yaml -> the JSON configuration of each aimesh Wasm filter.
//!
//! This is the one place that knows the filters' config formats (`filters/*/src` config
//! structs, all `deny_unknown_fields`): when a filter's format changes, change it here.

use serde_json::{json, Map, Value};

use std::net::IpAddr;

use crate::model::{
    BudgetPeriod, FilterBuild, Gateway, Key, PiiMode, PiiPolicy, ProviderKind, SecretRef,
    SecretSource, Target, VirtualModel,
};
use crate::resources::{custom_cluster, provider_cluster};
use crate::validate::{parse_url, CUSTOM_ACCOUNT};

/// The filters, in chain order (see `tests/harness/paths.py::FILTERS`).
pub const NAMES: [&str; 5] = [
    "auth",
    "pii-redaction",
    "virtual-model",
    "token-accounting",
    "header-auth",
];

/// The one-filter build (`aimesh_chain.wasm`): the five as stages, one config section each.
pub const CHAIN: &str = "chain";

/// The Wasm filters the listener loads, in order.
pub fn loaded(gw: &Gateway) -> Vec<&'static str> {
    match gw.listener.filter_build {
        FilterBuild::Separate => NAMES.to_vec(),
        FilterBuild::Chain => vec![CHAIN],
    }
}

/// The chain's configuration: `{"auth": {...}, "pii-redaction": {...}, ...}` from the five
/// filters' configs (as [`configs`] renders them).
pub fn chain_config(configs: &[(&'static str, String)]) -> Result<String, String> {
    let mut sections = Map::new();
    for (name, json) in configs {
        let value: Value = serde_json::from_str(json).map_err(|e| format!("{name} config: {e}"))?;
        sections.insert((*name).to_string(), value);
    }
    Ok(Value::Object(sections).to_string())
}

/// ECDS resource / HTTP filter name of a filter (`aimesh.auth`).
pub fn extension_name(filter: &str) -> String {
    format!("aimesh.{filter}")
}

/// `(filter, config JSON)` for every filter, in chain order. `resolve_files`: read
/// `${file:...}` secrets (the header-auth filter resolves `${env:...}` itself, in Envoy).
pub fn configs(gw: &Gateway, resolve_files: bool) -> Result<Vec<(&'static str, String)>, String> {
    Ok(vec![
        ("auth", auth(gw).to_string()),
        ("pii-redaction", pii(gw, resolve_files)?.to_string()),
        ("virtual-model", virtual_model(gw).to_string()),
        ("token-accounting", token_accounting(gw).to_string()),
        ("header-auth", header_auth(gw, resolve_files)?.to_string()),
    ])
}

/// `pii.entities` names, as gateway.yaml spells them (the filter's types, lower case).
pub const PII_ENTITIES: [&str; 7] = [
    "email",
    "phone",
    "credit_card",
    "us_ssn",
    "iban",
    "ip_address",
    "secret",
];

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

/// `filters/core/src/pii/config.rs::PiiConfig`: `pii`'s top-level fields as the `default`
/// policy, `pii.policies` as the others. `hash_key` is read only with `resolve_files` (else a
/// placeholder of valid length stands in, for `diff` and checks).
pub fn pii(gw: &Gateway, resolve_files: bool) -> Result<Value, String> {
    let p = &gw.pii;
    let mut policies = Map::new();
    policies.insert("default".into(), pii_policy(&p.default_policy()));
    for (name, policy) in &p.policies {
        policies.insert(name.clone(), pii_policy(policy));
    }
    let mut cfg = json!({ "policies": policies });
    if !p.patterns.is_empty() {
        cfg["patterns"] = json!(p
            .patterns
            .iter()
            .map(|x| json!({"name": x.name, "regex": x.regex}))
            .collect::<Vec<_>>());
    }
    if !p.deny_words.is_empty() {
        cfg["deny_words"] = json!(p.deny_words);
    }
    if !p.rules.is_empty() {
        cfg["rules"] = json!(p
            .rules
            .iter()
            .map(|r| {
                let mut rule = json!({ "policy": r.policy });
                if let Some(prefix) = &r.path_prefix {
                    rule["path_prefix"] = json!(prefix);
                }
                if let Some(h) = &r.header {
                    rule["header"] = json!({"name": h.name.to_ascii_lowercase(), "value": h.value});
                }
                rule
            })
            .collect::<Vec<_>>());
    }
    if let Some(k) = &p.hash_key {
        let key = match k.source() {
            Some(SecretSource::File(_)) if resolve_files => k.resolve(),
            Some(SecretSource::File(_)) => Ok("(file: not read for this check)".to_string()),
            _ => Err("must be ${file:/absolute/path}".to_string()),
        };
        cfg["hash_key"] = json!(key.map_err(|e| format!("pii.hash_key: {e}"))?);
    }
    Ok(cfg)
}

fn pii_action(mode: PiiMode) -> &'static str {
    match mode {
        PiiMode::Off => "allow",
        PiiMode::Redact => "mask",
        PiiMode::Hash => "hash",
        PiiMode::Block => "block",
    }
}

/// The kind name the filter uses for a gateway.yaml name (`email` -> `EMAIL`).
pub fn pii_kind(name: &str) -> String {
    name.to_ascii_uppercase()
}

/// One policy. Kinds not listed are allowed; `patterns` and `deny_word` follow `mode` unless
/// `entities` lists some and not them.
fn pii_policy(p: &PiiPolicy) -> Value {
    let mode = pii_action(p.mode);
    let mut actions = Map::new();
    if p.mode != PiiMode::Off {
        let listed: Vec<&str> = if p.entities.is_empty() {
            PII_ENTITIES.to_vec()
        } else {
            p.entities.iter().map(String::as_str).collect()
        };
        for e in listed {
            actions.insert(pii_kind(e), json!(mode));
        }
    }
    for (kind, action) in &p.actions {
        actions.insert(pii_kind(kind), json!(pii_action(*action)));
    }
    // Operator patterns and deny words are acted on by `mode` when no entity list narrows it.
    let default_action = if p.entities.is_empty() { mode } else { "allow" };
    let mut v = json!({"default_action": default_action, "actions": actions, "restore": p.restore});
    v["redact_responses"] = json!(p.redact_responses.unwrap_or(p.mode != PiiMode::Off));
    v
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

/// `filters/core/src/auth/config.rs::AuthConfig`.
fn auth(gw: &Gateway) -> Value {
    let keys: Vec<Value> = gw
        .keys
        .iter()
        .map(|k| {
            let mut e = json!({ "id": k.id, "hash": k.hash });
            if let Some(t) = &k.team {
                e["team"] = json!(t);
            }
            let rpm = k
                .requests_per_minute
                .or_else(|| pick(&gw.limits, Some(k), limit_scope, |l| l.requests_per_minute));
            if let Some(rpm) = rpm {
                e["requests_per_minute"] = json!(rpm);
            }
            for (field, v) in [
                ("owner", k.owner.as_ref().map(|v| json!(v))),
                ("models", k.models.as_ref().map(|v| json!(v))),
                ("endpoints", k.endpoints.as_ref().map(|v| json!(v))),
                ("expires_at", k.expires_at.as_ref().map(|v| json!(v))),
                ("max_concurrent", k.max_concurrent.map(|v| json!(v))),
                ("disabled", k.disabled.then_some(json!(true))),
            ] {
                if let Some(v) = v {
                    e[field] = v;
                }
            }
            e
        })
        .collect();
    json!({ "keys": keys, "catalogue": catalogue(gw) })
}

/// `owned_by` of virtual models in the model list: the gateway itself serves them.
pub const VIRTUAL_OWNER: &str = "aimesh";

/// `filters/core/src/auth/catalogue.rs::CatalogueConfig`: every provider model with its route,
/// every virtual model (routed by virtual-model), and the default provider's route. Auth routes
/// provider models from it (the RDS has no per-model routes: see [`crate::resources`]) and
/// answers `GET /v1/models` with it.
fn catalogue(gw: &Gateway) -> Value {
    let route = |p: &str| json!({ "cluster": provider_cluster(p), "backend": p });
    let provider_models = gw.providers.iter().flat_map(|p| {
        p.models
            .iter()
            .map(|m| json!({ "id": m, "owned_by": p.name, "route": route(&p.name) }))
    });
    let virtual_models = gw
        .virtual_models
        .iter()
        .map(|vm| json!({ "id": vm.name, "owned_by": VIRTUAL_OWNER }));
    let mut c = json!({ "models": provider_models.chain(virtual_models).collect::<Vec<_>>() });
    if let Some(d) = &gw.default_provider {
        c["default_route"] = route(d);
    }
    c
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

/// `filters/core/src/routing/config.rs::RoutingConfig`: weighted targets. A virtual model with
/// `fallbacks` runs in the filter's fallback mode: every entry gets an aggregate
/// `fallback_cluster`, and fallbacks join the targets with weight 0 (never the primary, but known
/// to the upstream instance, which rewrites the body for whichever one an attempt reaches).
fn virtual_model_models(gw: &Gateway) -> Vec<Value> {
    gw.virtual_models
        .iter()
        .map(|vm| {
            let fallback = !vm.fallbacks.is_empty();
            let targets: Vec<Value> = entries(vm)
                .enumerate()
                .map(|(i, (t, is_fallback))| {
                    let mut e = json!({
                        "target": format!("{}/{}", t.provider, t.model),
                        "cluster": provider_cluster(&t.provider),
                        "weight": if is_fallback { 0 } else { t.weight },
                    });
                    if fallback {
                        e["fallback_cluster"] = json!(fallback_cluster(vm, i));
                    }
                    e
                })
                .collect();
            json!({ "name": vm.name, "strategy": "weighted", "targets": targets })
        })
        .collect()
}

fn virtual_model(gw: &Gateway) -> Value {
    json!({ "virtual_models": virtual_model_models(gw), "pass_through": true })
}

/// The virtual-model filter's upstream instance (in the aggregate clusters).
pub fn virtual_model_upstream(gw: &Gateway) -> String {
    json!({ "role": "upstream", "virtual_models": virtual_model_models(gw) }).to_string()
}

/// header-auth's upstream instance (in the aggregate clusters): re-keys each attempt for the
/// provider it reached.
pub fn header_auth_upstream(gw: &Gateway, resolve_files: bool) -> Result<String, String> {
    let mut cfg = header_auth(gw, resolve_files)?;
    cfg["role"] = json!("upstream");
    Ok(cfg.to_string())
}

/// `filters/token-accounting/src/config.rs::Config` (limits by key id; teams expanded).
fn token_accounting(gw: &Gateway) -> Value {
    let limits_of = |key: Option<&Key>| -> Map<String, Value> {
        let mut m = Map::new();
        if let Some(tpm) = pick(&gw.limits, key, limit_scope, |l| l.tokens_per_minute) {
            m.insert("tpm".into(), json!(tpm));
        }
        for (period, field) in [
            (BudgetPeriod::Day, "daily_usd"),
            (BudgetPeriod::Month, "monthly_usd"),
        ] {
            let usd = pick(
                &gw.budgets,
                key,
                |b| (b.key.as_deref(), b.team.as_deref()),
                |b| (b.period == period).then_some(b.usd),
            );
            if let Some(usd) = usd {
                m.insert(field.into(), json!(usd));
            }
        }
        m
    };
    let default = limits_of(None);
    let mut keys = Map::new();
    for k in &gw.keys {
        let l = limits_of(Some(k));
        if l != default {
            keys.insert(k.id.clone(), Value::Object(l));
        }
    }
    let mut limits = json!({ "keys": keys });
    if !default.is_empty() {
        limits["default"] = Value::Object(default);
    }
    let prices: Map<String, Value> = gw
        .prices
        .iter()
        .map(|(model, p)| {
            let mut v = json!({ "input": p.input, "output": p.output });
            if let Some(c) = p.cached_input {
                v["cached_input"] = json!(c);
            }
            (model.clone(), v)
        })
        .collect();
    json!({ "limits": limits, "prices": prices })
}

fn secret(r: &SecretRef, resolve_files: bool) -> Result<String, String> {
    match r.source() {
        // Kept as a reference: header-auth reads the variable in Envoy's environment.
        Some(SecretSource::Env(_)) => Ok(r.0.clone()),
        Some(SecretSource::File(_)) if resolve_files => r.resolve(),
        Some(SecretSource::File(_)) => Ok(String::from("(file)")),
        None => Err("secret is not a reference".into()),
    }
}

/// `filters/core/src/endpoints/config.rs::Config`: provider credentials and custom endpoints.
fn header_auth(gw: &Gateway, resolve_files: bool) -> Result<Value, String> {
    let mut accounts = Map::new();
    for (i, p) in gw.providers.iter().enumerate() {
        let mut acct = json!({});
        if let Some(k) = &p.api_key {
            let key =
                secret(k, resolve_files).map_err(|e| format!("providers[{i}].api_key: {e}"))?;
            let kind = match p.kind {
                ProviderKind::Openai | ProviderKind::OpenaiCompatible => "openai",
                ProviderKind::AzureOpenai => "azure",
                ProviderKind::Anthropic => "anthropic",
                ProviderKind::Vllm => "vllm",
                ProviderKind::Tgi => "tgi",
            };
            acct["auth"] = json!({ "type": kind, "api_key": key });
        }
        accounts.insert(p.name.clone(), acct);
    }
    let (mut hosts, mut cidrs) = (Vec::new(), Vec::new());
    for e in &gw.custom_endpoints {
        let account = e.provider.as_deref().unwrap_or(CUSTOM_ACCOUNT);
        let u = parse_url(&e.url)?;
        if gw.egress.allow.is_empty() {
            // No allow-list in gateway.yaml: the endpoints themselves are what is allowed.
            if u.host.parse::<IpAddr>().is_ok() {
                cidrs.push(u.host.clone())
            } else {
                hosts.push(u.host.clone())
            }
        }
        let mut ep =
            json!({ "base_url": e.url.trim_end_matches('/'), "cluster": custom_cluster(e) });
        if !e.allow_keys.is_empty() || !e.allow_teams.is_empty() {
            ep["allow"] = json!({ "key_ids": e.allow_keys, "teams": e.allow_teams });
        }
        let acct = accounts
            .entry(account.to_string())
            .or_insert_with(|| json!({}));
        acct["endpoints"][&e.name] = ep;
    }
    for a in &gw.egress.allow {
        if a.parse::<IpAddr>().is_ok() {
            cidrs.push(a.clone())
        } else {
            hosts.push(a.clone())
        }
    }
    let mut cfg = json!({ "accounts": accounts, "paths": mcp_paths(gw, resolve_files)? });
    if let Some(d) = &gw.default_provider {
        cfg["default_account"] = json!(d);
    }
    if !gw.custom_endpoints.is_empty() {
        cfg["egress"] = json!({ "hosts": hosts, "cidrs": cidrs });
    }
    Ok(cfg)
}

/// header-auth `paths` for `/mcp/<name>`: each MCP server gets its own `api_key` as a bearer
/// token, or no credential; `/mcp/` last, so no MCP request ever takes the default provider's
/// key (the routes match the same prefixes in the same order).
fn mcp_paths(gw: &Gateway, resolve_files: bool) -> Result<Vec<Value>, String> {
    if gw.mcp_servers.is_empty() {
        return Ok(Vec::new());
    }
    let mut paths = Vec::new();
    for (i, m) in gw.mcp_servers.iter().enumerate() {
        let mut p = json!({ "prefix": format!("/mcp/{}", m.name) });
        if let Some(k) = &m.api_key {
            let token =
                secret(k, resolve_files).map_err(|e| format!("mcp_servers[{i}].api_key: {e}"))?;
            p["auth"] = json!({ "type": "bearer", "token": token });
        }
        paths.push(p);
    }
    paths.push(json!({ "prefix": "/mcp/" }));
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use crate::validate::load_str;

    #[test]
    fn only_file_secrets_make_a_config_sensitive_and_it_travels_as_a_generic_secret() {
        let gw = |key: &str| {
            load_str(&format!(
                "providers:\n- {{name: oai, kind: openai, api_key: '{key}'}}\n"
            ))
            .unwrap_or_else(|e| panic!("{e:?}"))
        };
        assert!(!super::has_file_secrets(&gw("${env:OA_KEY}")));
        assert!(super::has_file_secrets(&gw("${file:/run/oa}")));
        let wrapped = crate::resources::plugin_configuration("{}", true);
        assert_eq!(wrapped.type_url, crate::resources::GENERIC_SECRET);
        // aimesh-glue's `unwrap_generic_secret` test decodes these very bytes.
        assert_eq!(wrapped.value, [0x0a, 0x04, 0x1a, 0x02, b'{', b'}']);
        let plain = crate::resources::plugin_configuration("{}", false);
        assert!(plain.type_url.ends_with("StringValue"));
    }

    #[test]
    fn limits_pick_key_then_team_then_default() {
        let h = format!("sha256:{}", "a".repeat(64));
        let gw = load_str(&format!(
            "keys:\n- {{id: a, hash: '{h}', team: t}}\n- {{id: b, hash: '{h}', team: t}}\n- {{id: c, hash: '{h}'}}\n\
             limits:\n- {{requests_per_minute: 10, tokens_per_minute: 100}}\n- {{team: t, tokens_per_minute: 200}}\n- {{key: a, requests_per_minute: 5}}\n\
             budgets:\n- {{team: t, usd: 3.5, period: month}}\n"
        ))
        .unwrap_or_else(|e| panic!("{e:?}"));
        let auth = super::auth(&gw);
        let rpm: Vec<_> = auth["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|k| k["requests_per_minute"].clone())
            .collect();
        assert_eq!(
            rpm,
            [
                serde_json::json!(5),
                serde_json::json!(10),
                serde_json::json!(10)
            ]
        );
        let ta = super::token_accounting(&gw);
        assert_eq!(ta["limits"]["default"], serde_json::json!({"tpm": 100}));
        assert_eq!(
            ta["limits"]["keys"]["b"],
            serde_json::json!({"tpm": 200, "monthly_usd": 3.5})
        );
        assert!(ta["limits"]["keys"].get("c").is_none());
    }

    #[test]
    fn auth_routes_provider_models_and_lists_virtual_ones() {
        use serde_json::json;
        let load = |t: &str| load_str(t).unwrap_or_else(|e| panic!("{e:?}"));
        let gw = load(
            "providers:\n- {name: pub1, kind: openai, models: [gpt-x]}\n\
             - {name: gpu1, kind: openai_compatible, base_url: 'http://10.0.0.1:8000', models: [llama, qwen]}\n\
             virtual_models:\n- {name: smart, targets: [{provider: pub1, model: gpt-x}]}\n\
             default_provider: pub1\n",
        );
        let c = &super::auth(&gw)["catalogue"];
        let route = |p: &str| json!({"cluster": format!("provider.{p}"), "backend": p});
        assert_eq!(
            c["models"],
            json!([
                {"id": "gpt-x", "owned_by": "pub1", "route": route("pub1")},
                {"id": "llama", "owned_by": "gpu1", "route": route("gpu1")},
                {"id": "qwen", "owned_by": "gpu1", "route": route("gpu1")},
                {"id": "smart", "owned_by": "aimesh"},
            ])
        );
        assert_eq!(c["default_route"], route("pub1"));
        // What the auth filter loads: the xds server's output passes the filter's own checks.
        let cfg: aimesh_core::auth::AuthConfig =
            serde_json::from_value(super::auth(&gw)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.check(), Ok(()));
        let none = super::auth(&load("providers:\n- {name: pub1, kind: openai}\n"));
        assert_eq!(none["catalogue"], json!({"models": []}));
    }

    #[test]
    fn pii_modes_and_prices_reach_their_filters() {
        use serde_json::json;
        let load = |t: &str| load_str(t).unwrap_or_else(|e| panic!("{e:?}"));
        let pii = |t: &str| super::pii(&load(t), false).unwrap_or_else(|e| panic!("{e}"));
        let off = pii("{}");
        assert_eq!(
            off,
            json!({"policies":{"default":{"default_action":"allow","actions":{},"restore":false,"redact_responses":false}}})
        );
        let redact = pii("pii: {mode: redact, entities: [email, us_ssn]}\n");
        assert_eq!(
            redact["policies"]["default"],
            json!({"default_action":"allow","actions":{"EMAIL":"mask","US_SSN":"mask"},"restore":false,"redact_responses":true})
        );
        let block = pii("pii: {mode: block}\n");
        let actions = &block["policies"]["default"]["actions"];
        assert_eq!(actions.as_object().map(|m| m.len()), Some(7));
        assert_eq!(actions["CREDIT_CARD"], json!("block"));
        assert_eq!(
            block["policies"]["default"]["default_action"],
            json!("block")
        );
        let custom = pii(
            "pii:\n  mode: redact\n  restore: true\n  hash_key: '${file:/run/k}'\n  actions: {email: hash, phone: off}\n  \
             patterns: [{name: EMP, regex: 'E\\d+'}]\n  deny_words: [apollo]\n  \
             policies: {strict: {mode: block, redact_responses: false}}\n  \
             rules: [{path_prefix: /v1/embeddings, header: {name: X-Team, value: a}, policy: strict}]\n",
        );
        let d = &custom["policies"]["default"];
        assert_eq!(
            (d["actions"]["EMAIL"].clone(), d["actions"]["PHONE"].clone()),
            (json!("hash"), json!("allow"))
        );
        assert_eq!(d["restore"], json!(true));
        assert_eq!(
            custom["policies"]["strict"]["redact_responses"],
            json!(false)
        );
        assert_eq!(
            custom["patterns"],
            json!([{"name": "EMP", "regex": "E\\d+"}])
        );
        assert_eq!(custom["deny_words"], json!(["apollo"]));
        assert_eq!(
            custom["rules"],
            json!([{"policy": "strict", "path_prefix": "/v1/embeddings", "header": {"name": "x-team", "value": "a"}}])
        );
        let ta = super::token_accounting(&load(
            "prices:\n  gpt-4o*: {input: 2.5, cached_input: 1.25, output: 10}\n  m: {input: 1, output: 2}\n",
        ));
        assert_eq!(
            ta["prices"],
            json!({"gpt-4o*":{"input":2.5,"cached_input":1.25,"output":10.0},"m":{"input":1.0,"output":2.0}})
        );
    }

    #[test]
    fn fallbacks_get_aggregate_clusters_in_order() {
        use crate::resources::{build, CLUSTER};
        use envoy_types::pb::envoy::config::cluster::v3::{cluster, Cluster};
        use envoy_types::pb::envoy::extensions::clusters::aggregate::v3::ClusterConfig;
        use prost::Message;
        let gw = load_str(
            "providers:\n- {name: aaa, kind: openai}\n- {name: bbb, kind: anthropic}\n- {name: ccc, kind: openai_compatible, base_url: 'http://10.0.0.1:8000'}\n\
             virtual_models:\n- {name: v/1, targets: [{provider: aaa, model: m1}, {provider: bbb, model: m2}], fallbacks: [{provider: ccc, model: m3}]}\n",
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let vm = super::virtual_model(&gw);
        let weights: Vec<_> = vm["virtual_models"][0]["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| (t["weight"].clone(), t["fallback_cluster"].clone()))
            .collect();
        assert_eq!(
            weights,
            [
                (serde_json::json!(1), serde_json::json!("fallback.v_1.0")),
                (serde_json::json!(1), serde_json::json!("fallback.v_1.1")),
                (serde_json::json!(0), serde_json::json!("fallback.v_1.2")),
            ]
        );
        let res = build(&gw, std::path::Path::new("/w"), false).unwrap_or_else(|e| panic!("{e}"));
        let any = &res[CLUSTER]["fallback.v_1.1"];
        let c = Cluster::decode(any.value.as_slice()).unwrap_or_else(|e| panic!("{e}"));
        let Some(cluster::ClusterDiscoveryType::ClusterType(t)) = c.cluster_discovery_type else {
            panic!("not an aggregate")
        };
        let cfg = t
            .typed_config
            .map(|a| ClusterConfig::decode(a.value.as_slice()))
            .and_then(Result::ok)
            .unwrap_or_default();
        assert_eq!(
            cfg.clusters,
            ["provider.bbb", "provider.aaa", "provider.ccc"]
        );
        let twice = load_str(
            "providers:\n- {name: aaa, kind: openai}\nvirtual_models:\n- {name: v, targets: [{provider: aaa, model: m1}], fallbacks: [{provider: aaa, model: m2}]}\n",
        );
        assert!(
            twice.is_err(),
            "one provider twice in a virtual model is refused"
        );
    }

    #[test]
    fn keys_new_output_is_a_valid_entry_and_reaches_auth() {
        // What `aimesh-xds keys new --id bob --team t --models gpt-4o-mini --rpm 5` prints.
        let entry = format!(
            "{{\"hash\":\"sha256:{}\",\"id\":\"bob\",\"models\":[\"gpt-4o-mini\"],\"requests_per_minute\":5,\"team\":\"t\"}}",
            "b".repeat(64)
        );
        let gw = load_str(&format!(
            "keys:\n- {entry}\nlimits:\n- {{requests_per_minute: 100}}\n"
        ))
        .unwrap_or_else(|e| panic!("{e:?}"));
        let auth = super::auth(&gw);
        assert_eq!(
            auth["keys"][0]["models"],
            serde_json::json!(["gpt-4o-mini"])
        );
        assert_eq!(auth["keys"][0]["requests_per_minute"], serde_json::json!(5));
        assert!(auth["keys"][0].get("disabled").is_none());
    }

    #[test]
    fn mcp_servers_get_their_own_credential_and_never_the_default_providers() {
        let gw = load_str(
            "providers:\n- {name: oai, kind: openai, api_key: '${env:OA_KEY}'}\ndefault_provider: oai\n\
             mcp_servers:\n- {name: docs, url: 'https://docs.example.com/mcp', api_key: '${env:DOCS_KEY}'}\n\
             - {name: open, url: 'https://open.example.com/mcp'}\n",
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let cfg = super::header_auth(&gw, false).unwrap();
        assert_eq!(
            cfg["paths"],
            serde_json::json!([
                {"prefix": "/mcp/docs", "auth": {"type": "bearer", "token": "${env:DOCS_KEY}"}},
                {"prefix": "/mcp/open"},
                {"prefix": "/mcp/"}
            ])
        );
        assert_eq!(super::header_auth_env(&gw), ["DOCS_KEY", "OA_KEY"]);
    }
}

#[cfg(test)]
mod chain_tests {
    use super::*;

    #[test]
    fn chain_config_has_one_section_per_filter_in_order() {
        let configs = vec![
            ("auth", r#"{"keys":[]}"#.to_string()),
            ("header-auth", "{}".to_string()),
        ];
        let json = chain_config(&configs).expect("valid JSON sections");
        let v: Value = serde_json::from_str(&json).expect("JSON");
        assert_eq!(v["auth"], json!({"keys": []}));
        assert_eq!(v["header-auth"], json!({}));
        assert!(chain_config(&[("auth", "{".to_string())]).is_err());
        let mut gw = Gateway::default();
        assert_eq!(loaded(&gw), NAMES.to_vec());
        gw.listener.filter_build = FilterBuild::Chain;
        assert_eq!(loaded(&gw), vec![CHAIN]);
    }
}
