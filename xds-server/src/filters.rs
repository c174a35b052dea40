//! gateway.yaml -> the JSON configuration of each aimesh Wasm filter.
//!
//! This is the one place that knows the filters' config formats (`filters/*/src` config
//! structs, all `deny_unknown_fields`): when a filter's format changes, change it here.
//! pii-redaction is not mapped yet and gets `{}`, which it accepts.

use serde_json::{json, Map, Value};

use std::net::IpAddr;

use crate::model::{BudgetPeriod, Gateway, Key, ProviderKind, SecretRef, SecretSource};
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

/// ECDS resource / HTTP filter name of a filter (`aimesh.auth`).
pub fn extension_name(filter: &str) -> String {
    format!("aimesh.{filter}")
}

/// `(filter, config JSON)` for every filter, in chain order. `resolve_files`: read
/// `${file:...}` secrets (the header-auth filter resolves `${env:...}` itself, in Envoy).
pub fn configs(gw: &Gateway, resolve_files: bool) -> Result<Vec<(&'static str, String)>, String> {
    Ok(vec![
        ("auth", auth(gw).to_string()),
        ("pii-redaction", json!({}).to_string()),
        ("virtual-model", virtual_model(gw).to_string()),
        ("token-accounting", token_accounting(gw).to_string()),
        ("header-auth", header_auth(gw, resolve_files)?.to_string()),
    ])
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
    json!({ "keys": keys })
}

/// `filters/core/src/routing/config.rs::RoutingConfig` (downstream role, weighted targets).
fn virtual_model(gw: &Gateway) -> Value {
    let vms: Vec<Value> = gw
        .virtual_models
        .iter()
        .map(|vm| {
            let targets: Vec<Value> = vm
                .targets
                .iter()
                .map(|t| {
                    json!({
                        "target": format!("{}/{}", t.provider, t.model),
                        "cluster": provider_cluster(&t.provider),
                        "weight": t.weight,
                    })
                })
                .collect();
            json!({ "name": vm.name, "strategy": "weighted", "targets": targets })
        })
        .collect();
    json!({ "virtual_models": vms, "pass_through": true })
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
    json!({ "limits": limits })
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
    for p in &gw.providers {
        let mut acct = json!({});
        if let Some(k) = &p.api_key {
            let key = secret(k, resolve_files).map_err(|e| format!("provider {}: {e}", p.name))?;
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
    let mut cfg = json!({ "accounts": accounts });
    if let Some(d) = &gw.default_provider {
        cfg["default_account"] = json!(d);
    }
    if !gw.custom_endpoints.is_empty() {
        cfg["egress"] = json!({ "hosts": hosts, "cidrs": cidrs });
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use crate::validate::load_str;

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
}
