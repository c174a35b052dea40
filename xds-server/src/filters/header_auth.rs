//! header-auth's config: provider credentials, custom endpoints with their egress allow-list, and
//! MCP server credentials.

use std::collections::BTreeMap;
use std::net::IpAddr;

use aimesh_config::egress::EgressConfig;
use aimesh_config::endpoints::{
    AccountConfig, AllowConfig, AuthConfig, Config, EndpointConfig, PathConfig, Role,
};

use crate::model::{Gateway, ProviderKind, SecretRef, SecretSource};
use crate::resources::custom_cluster;
use crate::validate::{parse_url, CUSTOM_ACCOUNT};

fn secret(r: &SecretRef, resolve_files: bool) -> Result<String, String> {
    match r.source() {
        // Kept as a reference: header-auth reads the variable in Envoy's environment.
        Some(SecretSource::Env(_)) => Ok(r.0.clone()),
        Some(SecretSource::File(_)) if resolve_files => r.resolve(),
        Some(SecretSource::File(_)) => Ok(String::from("(file)")),
        None => Err("secret is not a reference".into()),
    }
}

fn provider_auth(kind: ProviderKind, api_key: String) -> AuthConfig {
    match kind {
        ProviderKind::Openai | ProviderKind::OpenaiCompatible => AuthConfig::Openai { api_key },
        ProviderKind::AzureOpenai => AuthConfig::Azure { api_key },
        ProviderKind::Anthropic => AuthConfig::Anthropic {
            api_key,
            version: None,
        },
        ProviderKind::Vllm => AuthConfig::Vllm { api_key },
        ProviderKind::Tgi => AuthConfig::Tgi { api_key },
    }
}

/// The downstream instance's config.
pub fn header_auth(gw: &Gateway, resolve_files: bool) -> Result<Config, String> {
    let mut accounts = BTreeMap::new();
    for (i, p) in gw.providers.iter().enumerate() {
        let auth = match &p.api_key {
            Some(k) => Some(provider_auth(
                p.kind,
                secret(k, resolve_files).map_err(|e| format!("providers[{i}].api_key: {e}"))?,
            )),
            None => None,
        };
        accounts.insert(
            p.name.clone(),
            AccountConfig {
                auth,
                ..Default::default()
            },
        );
    }
    let mut hosts = Vec::new();
    for e in &gw.custom_endpoints {
        let account = e.provider.as_deref().unwrap_or(CUSTOM_ACCOUNT);
        if gw.egress.allow.is_empty() {
            // No allow-list in gateway.yaml: the endpoints themselves are what is allowed.
            hosts.push(parse_url(&e.url)?.host);
        }
        let allow = (!e.allow_keys.is_empty() || !e.allow_teams.is_empty()).then(|| AllowConfig {
            key_ids: e.allow_keys.clone(),
            teams: e.allow_teams.clone(),
        });
        let endpoint = EndpointConfig {
            base_url: e.url.trim_end_matches('/').to_string(),
            cluster: custom_cluster(e),
            auth: None,
            headers: BTreeMap::new(),
            allow,
        };
        accounts
            .entry(account.to_string())
            .or_default()
            .endpoints
            .insert(e.name.clone(), endpoint);
    }
    hosts.extend(gw.egress.allow.iter().cloned());
    // The filter matches IP literals against `cidrs`; a single address there is its /32 (/128).
    let (cidrs, hosts) = hosts.into_iter().partition(|h| h.parse::<IpAddr>().is_ok());
    Ok(Config {
        role: Role::Downstream,
        on_missing_env: Default::default(),
        default_account: gw.default_provider.clone(),
        egress: (!gw.custom_endpoints.is_empty()).then_some(EgressConfig { hosts, cidrs }),
        accounts,
        paths: mcp_paths(gw, resolve_files)?,
    })
}

/// header-auth's upstream instance (in the aggregate clusters): re-keys each attempt for the
/// provider it reached.
pub fn header_auth_upstream(gw: &Gateway, resolve_files: bool) -> Result<Config, String> {
    Ok(Config {
        role: Role::Upstream,
        ..header_auth(gw, resolve_files)?
    })
}

/// header-auth `paths` for `/mcp/<name>`: each MCP server gets its own `api_key` as a bearer
/// token, or no credential; `/mcp/` last, so no MCP request ever takes the default provider's
/// key (the routes match the same prefixes in the same order).
fn mcp_paths(gw: &Gateway, resolve_files: bool) -> Result<Vec<PathConfig>, String> {
    if gw.mcp_servers.is_empty() {
        return Ok(Vec::new());
    }
    let mut paths = Vec::new();
    for (i, m) in gw.mcp_servers.iter().enumerate() {
        let auth = match &m.api_key {
            Some(k) => Some(AuthConfig::Bearer {
                token: secret(k, resolve_files)
                    .map_err(|e| format!("mcp_servers[{i}].api_key: {e}"))?,
            }),
            None => None,
        };
        paths.push(PathConfig {
            prefix: format!("/mcp/{}", m.name),
            auth,
        });
    }
    paths.push(PathConfig {
        prefix: "/mcp/".into(),
        auth: None,
    });
    Ok(paths)
}
