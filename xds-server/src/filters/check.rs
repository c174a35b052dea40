//! Every filter config the server would send, run through that filter's own validator: what
//! gateway.yaml's checks let through that a filter would refuse is reported at `validate` time
//! (with a gateway.yaml field where one maps), not as a config Envoy NACKs.

use aimesh_config::ConfigError;

use super::FilterConfigs;
use crate::model::Gateway;

/// `(field, message)` of every filter's first refusal; pii-redaction is checked with
/// gateway.yaml's field names by [`crate::validate`] itself.
pub fn check(gw: &Gateway) -> Vec<(String, String)> {
    let configs = match FilterConfigs::build(gw, false) {
        Ok(c) => c,
        Err(e) => {
            let (field, message) = e.split_once(": ").unwrap_or(("", e.as_str()));
            return vec![(field.to_string(), message.to_string())];
        }
    };
    configs
        .each()
        .into_iter()
        .filter(|(name, _)| *name != "pii-redaction")
        .filter_map(|(name, c)| c.validate().err().map(|e| (name, e)))
        .map(|(name, e)| (gateway_field(gw, name, &e), e.problem.to_string()))
        .collect()
}

/// The gateway.yaml field a filter's field comes from, else `<filter>: <field>`.
fn gateway_field(gw: &Gateway, filter: &str, e: &ConfigError) -> String {
    let f = e.field.as_str();
    let mapped = match filter {
        "auth" if f.starts_with("keys[") => Some(f.to_string()),
        "token-accounting" => f.strip_prefix("prices[").and_then(|rest| {
            let (model, field) = rest.split_once("]")?;
            let model: String = serde_json::from_str(model).ok()?;
            Some(format!("prices.{model}{field}"))
        }),
        "header-auth" => header_auth_field(gw, f),
        "virtual-model" => f
            .strip_prefix("virtual_models[")
            .and_then(|r| r.split_once(']'))
            .map(|(i, _)| format!("virtual_models[{i}]")),
        _ => None,
    };
    mapped.unwrap_or_else(|| format!("{filter}: {f}"))
}

fn header_auth_field(gw: &Gateway, f: &str) -> Option<String> {
    if f.starts_with("egress") {
        return Some("egress.allow".into());
    }
    let rest = f.strip_prefix("accounts.")?;
    let (account, rest) = rest.split_once('.').unwrap_or((rest, ""));
    if let Some(ep) = rest.strip_prefix("endpoints.") {
        let i = gw.custom_endpoints.iter().position(|c| {
            ep.starts_with(&c.name)
                && c.provider
                    .as_deref()
                    .unwrap_or(crate::validate::CUSTOM_ACCOUNT)
                    == account
        })?;
        let tail = &ep[gw.custom_endpoints[i].name.len()..];
        let field = if tail.starts_with(".base_url") {
            "url"
        } else {
            "name"
        };
        return Some(format!("custom_endpoints[{i}].{field}"));
    }
    let i = gw.providers.iter().position(|p| p.name == account)?;
    Some(format!("providers[{i}].name"))
}
