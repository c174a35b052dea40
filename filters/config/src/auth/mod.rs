//! Auth filter configuration: JSON in the Wasm `PluginConfig`, checked by [`AuthConfig::check`].

pub mod catalogue;
pub mod grants;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use catalogue::{CatalogueConfig, CatalogueModel, ModelRoute};
use grants::{validate_endpoint, validate_pattern};

use crate::time::parse_rfc3339_ms;
use crate::{ConfigError, Validate};

/// Default [`AuthConfig::max_body_bytes`]: Envoy's default per-connection buffer limit, so the
/// filter answers 413 itself (as OpenAI JSON) before Envoy's plain-text 413 would.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// Auth filter configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Virtual API keys, stored only as SHA-256 hashes.
    #[serde(default)]
    pub keys: Vec<KeyEntry>,
    /// Identity from a JWT that Envoy's `jwt_authn` filter already validated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtConfig>,
    /// Largest request body accepted; larger bodies get 413 `request_too_large`.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// The models this gateway serves. With it, auth routes provider models and answers
    /// `GET /v1/models` itself; without it, `/v1/models` goes to the provider and its list is
    /// filtered to the key's models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalogue: Option<CatalogueConfig>,
    /// Environment variable of the Wasm VM (listed in `vm_config.environment_variables
    /// .host_env_keys`) holding more keys: a JSON list of `keys` entries, added to them when the
    /// filter loads. A mesh keeps the hashes in a Kubernetes Secret this way instead of in the
    /// filter config its EnvoyFilter / EnvoyPatchPolicy carries in plain sight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys_env: Option<String>,
}

fn default_max_body() -> usize {
    DEFAULT_MAX_BODY_BYTES
}

/// The default `models` of a key or rule: every model.
pub fn all_models() -> Vec<String> {
    vec!["*".to_string()]
}

/// One virtual key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// Stable id, published as `x-aimesh-key-id` and used in limit keys; not secret.
    pub id: String,
    /// `sha256:` followed by the 64 hex digits of the key's SHA-256 (`aimesh-xds keys new`).
    pub hash: String,
    /// Person or service the key was issued to (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Team, published as `x-aimesh-team`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// Models the key may use: exact names, `prefix/*`, or `*`. Absent means `["*"]`; `[]`
    /// allows no model (only body-less requests such as `GET /v1/models`).
    #[serde(default = "all_models")]
    pub models: Vec<String>,
    /// Requests that bring no model to check (no body, e.g. `GET /v1/files`, or a path whose
    /// body auth does not read, e.g. `/mcp/...`) the key may make: `*`, or paths, each covering
    /// itself and what is below it, optionally after a method (`GET /v1/batches`). Absent: `*`
    /// when `models` allows every model, else none. `GET /v1/models` and custom endpoints
    /// (`/proxy-api/...`, governed by header-auth) need no grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Vec<String>>,
    /// RFC 3339 instant after which the key is refused (`2026-12-31T23:59:59Z`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// A disabled key is refused like an unknown one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    /// Requests per minute across all Envoy workers (token bucket; absent = unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u64>,
    /// Requests in flight at once across all workers (absent = unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u64>,
    /// Free-form labels for operators; the filter does not read them.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
}

/// Where `jwt_authn` left the verified claims and how they map to policies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// The `payload_in_metadata` name of the `jwt_authn` provider.
    pub payload_key: String,
    /// Dynamic-metadata namespace `jwt_authn` writes to.
    #[serde(default = "default_jwt_namespace")]
    pub metadata_namespace: String,
    /// Claim holding the caller's groups (a list of strings, or one string).
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Claim rules, tried in order; the first match decides.
    #[serde(default)]
    pub rules: Vec<JwtRule>,
}

fn default_jwt_namespace() -> String {
    "envoy.filters.http.jwt_authn".to_string()
}

fn default_groups_claim() -> String {
    "groups".to_string()
}

/// A JWT claim rule: callers whose `sub` or one of whose groups matches get this policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JwtRule {
    /// Policy id, published as `x-aimesh-key-id` (limits are per rule, not per subject).
    pub id: String,
    /// Matches when the `sub` claim equals this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Matches when the groups claim contains this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Team, published as `x-aimesh-team`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// Allowed models, as for keys.
    #[serde(default = "all_models")]
    pub models: Vec<String>,
    /// Requests without a model to check, as for keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Vec<String>>,
    /// Requests per minute for everyone this rule matches together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u64>,
    /// Requests in flight at once for everyone this rule matches together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u64>,
    /// Free-form labels for operators.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
}

/// Parses `sha256:<64 hex>`.
pub fn parse_hash(s: &str) -> Option<[u8; 32]> {
    let hex_part = s.strip_prefix("sha256:")?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut out).ok()?;
    Some(out)
}

/// Ids become header values and shared-data key names: keep them plain.
pub fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 128 {
        return Err("must be 1 to 128 characters".into());
    }
    if !id
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || b"._:@-".contains(&c))
    {
        return Err(format!(
            "'{id}': only letters, digits and . _ : @ - allowed"
        ));
    }
    Ok(())
}

/// A team is published as a header value.
pub fn check_team(team: Option<&String>) -> Result<(), String> {
    match team {
        Some(t) if t.is_empty() || t.bytes().any(|c| !(0x20..0x7f).contains(&c)) => {
            Err("must be non-empty printable ASCII".into())
        }
        _ => Ok(()),
    }
}

fn check_lists(
    at: &str,
    models: &[String],
    endpoints: Option<&Vec<String>>,
) -> Result<(), ConfigError> {
    for (j, m) in models.iter().enumerate() {
        validate_pattern(m).map_err(|e| ConfigError::invalid(format!("{at}.models[{j}]"), e))?;
    }
    for (j, e) in endpoints.into_iter().flatten().enumerate() {
        validate_endpoint(e)
            .map_err(|msg| ConfigError::invalid(format!("{at}.endpoints[{j}]"), msg))?;
    }
    Ok(())
}

fn check_limits(at: &str, rpm: Option<u64>, conc: Option<u64>) -> Result<(), ConfigError> {
    if rpm == Some(0) {
        return Err(ConfigError::invalid(
            format!("{at}.requests_per_minute"),
            "must be at least 1",
        ));
    }
    if conc == Some(0) {
        return Err(ConfigError::invalid(
            format!("{at}.max_concurrent"),
            "must be at least 1",
        ));
    }
    Ok(())
}

fn check_common(
    at: &str,
    id: &str,
    team: Option<&String>,
    ids: &mut std::collections::HashSet<String>,
) -> Result<(), ConfigError> {
    check_id(id).map_err(|e| ConfigError::invalid(format!("{at}.id"), e))?;
    if !ids.insert(id.to_string()) {
        return Err(ConfigError::duplicate(
            format!("{at}.id"),
            format!("id '{id}'"),
        ));
    }
    check_team(team).map_err(|e| ConfigError::invalid(format!("{at}.team"), e))
}

impl AuthConfig {
    /// Semantic checks; `Err` names the field (`keys[2].hash`) and never echoes a hash.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.max_body_bytes == 0 {
            return Err(ConfigError::invalid("max_body_bytes", "must be at least 1"));
        }
        let mut ids = std::collections::HashSet::new();
        let mut hashes = std::collections::HashSet::new();
        for (i, k) in self.keys.iter().enumerate() {
            let at = format!("keys[{i}]");
            check_common(&at, &k.id, k.team.as_ref(), &mut ids)?;
            let Some(h) = parse_hash(&k.hash) else {
                return Err(ConfigError::invalid(
                    format!("{at}.hash"),
                    "must be 'sha256:' followed by 64 hex digits",
                ));
            };
            if !hashes.insert(h) {
                return Err(ConfigError::duplicate(
                    format!("{at}.hash"),
                    "key hash (the same key as an earlier entry)",
                ));
            }
            check_lists(&at, &k.models, k.endpoints.as_ref())?;
            if let Some(e) = &k.expires_at {
                if parse_rfc3339_ms(e).is_none() {
                    return Err(ConfigError::invalid(
                        format!("{at}.expires_at"),
                        format!("'{e}' is not an RFC 3339 time"),
                    ));
                }
            }
            check_limits(&at, k.requests_per_minute, k.max_concurrent)?;
        }
        if let Some(c) = &self.catalogue {
            c.check()?;
        }
        if let Some(jwt) = &self.jwt {
            if jwt.payload_key.is_empty() {
                return Err(ConfigError::invalid("jwt.payload_key", "must not be empty"));
            }
            for (i, r) in jwt.rules.iter().enumerate() {
                let at = format!("jwt.rules[{i}]");
                check_common(&at, &r.id, r.team.as_ref(), &mut ids)?;
                if r.sub.is_some() == r.group.is_some() {
                    return Err(ConfigError::invalid(
                        format!("{at}.sub"),
                        "set exactly one of 'sub' and 'group'",
                    ));
                }
                check_lists(&at, &r.models, r.endpoints.as_ref())?;
                check_limits(&at, r.requests_per_minute, r.max_concurrent)?;
            }
        }
        Ok(())
    }
}

impl AuthConfig {
    /// The keys of `keys_env` (if set) added to `keys`, the result checked. Errors name the
    /// variable and where its JSON went wrong, never a value.
    pub fn with_env_keys(
        mut self,
        env: &dyn crate::endpoints::creds::Env,
    ) -> Result<Self, ConfigError> {
        if let Some(name) = &self.keys_env {
            let raw = env
                .var(name)
                .ok_or_else(|| ConfigError::invalid("keys_env", format!("{name} is not set")))?;
            let more: Vec<KeyEntry> = serde_json::from_str(&raw).map_err(|e| {
                ConfigError::invalid(
                    "keys_env",
                    format!(
                        "{name} is not a JSON list of keys (line {} column {}: {:?})",
                        e.line(),
                        e.column(),
                        e.classify()
                    ),
                )
            })?;
            self.keys.extend(more);
        }
        self.check()?;
        Ok(self)
    }
}

impl Validate for AuthConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.check()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(v: serde_json::Value) -> Result<AuthConfig, String> {
        let c: AuthConfig = serde_json::from_value(v).map_err(|e| e.to_string())?;
        c.check().map(|()| c).map_err(|e| e.to_string())
    }

    const H: &str = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn accepts_a_full_config() {
        let c = cfg(serde_json::json!({
            "max_body_bytes": 1000,
            "keys": [{"id": "a", "hash": H, "owner": "ann", "team": "t", "models": ["x", "p/*"],
                      "expires_at": "2030-01-01T00:00:00Z", "disabled": false,
                      "requests_per_minute": 5, "max_concurrent": 2, "metadata": {"env": "dev"}}],
            "jwt": {"payload_key": "p", "rules": [{"id": "g", "group": "ml"}]}
        }))
        .unwrap();
        assert_eq!(c.keys[0].models, ["x", "p/*"]);
        assert_eq!(
            c.jwt.unwrap().metadata_namespace,
            "envoy.filters.http.jwt_authn"
        );
    }

    #[test]
    fn keys_from_the_environment_join_the_configured_ones_and_are_checked() {
        use crate::endpoints::creds::MapEnv;
        let c: AuthConfig = serde_json::from_value(serde_json::json!({
            "keys": [{"id": "a", "hash": H}], "keys_env": "AIMESH_VIRTUAL_KEYS"
        }))
        .unwrap();
        let h2 = format!("sha256:{}", "0".repeat(64));
        let list = format!(r#"[{{"id":"b","hash":"{h2}","team":"t"}}]"#);
        let env = MapEnv::from_pairs(&[("AIMESH_VIRTUAL_KEYS", &list)]);
        let ids: Vec<String> = c
            .clone()
            .with_env_keys(&env)
            .unwrap()
            .keys
            .into_iter()
            .map(|k| k.id)
            .collect();
        assert_eq!(ids, ["a", "b"]);

        let e = c
            .clone()
            .with_env_keys(&MapEnv::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("keys_env") && e.contains("AIMESH_VIRTUAL_KEYS is not set"),
            "{e}"
        );
        let bad = MapEnv::from_pairs(&[(
            "AIMESH_VIRTUAL_KEYS",
            r#"[{"id":"b","hash":"sha256:secretish"#,
        )]);
        let e = c.clone().with_env_keys(&bad).unwrap_err().to_string();
        assert!(
            e.contains("not a JSON list of keys") && !e.contains("secretish"),
            "{e}"
        );
        // The joined list is checked like the configured one: the same hash twice is refused.
        let twice = MapEnv::from_pairs(&[(
            "AIMESH_VIRTUAL_KEYS",
            &format!(r#"[{{"id":"c","hash":"{H}"}}]"#),
        )]);
        let e = c.with_env_keys(&twice).unwrap_err().to_string();
        assert!(e.contains("keys[1].hash"), "{e}");
    }

    #[test]
    fn errors_name_the_field() {
        let err = |v| cfg(v).unwrap_err();
        let k = |extra: serde_json::Value| {
            let mut e = serde_json::json!({"id": "a", "hash": H});
            e.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            serde_json::json!({"keys": [e]})
        };
        assert!(err(k(serde_json::json!({"hash": "sha256:zz"}))).starts_with("keys[0].hash:"));
        assert!(err(k(serde_json::json!({"models": ["gpt-*"]}))).starts_with("keys[0].models[0]:"));
        assert!(
            err(k(serde_json::json!({"expires_at": "soon"}))).starts_with("keys[0].expires_at:")
        );
        assert!(err(k(serde_json::json!({"id": "a b"}))).starts_with("keys[0].id:"));
        assert!(
            err(k(serde_json::json!({"endpoints": ["/v1/files", "v1/x"]})))
                .starts_with("keys[0].endpoints[1]:")
        );
        assert!(
            err(serde_json::json!({"jwt": {"payload_key": "p", "rules": [
            {"id": "r", "sub": "s", "endpoints": ["GET /v1/../x"]}]}}))
            .starts_with("jwt.rules[0].endpoints[0]:")
        );
        assert!(err(k(serde_json::json!({"requests_per_minute": 0})))
            .starts_with("keys[0].requests_per_minute:"));
        assert!(err(k(serde_json::json!({"colour": "red"}))).contains("unknown field"));
        let dup =
            err(serde_json::json!({"keys": [{"id": "a", "hash": H}, {"id": "b", "hash": H}]}));
        assert!(
            dup.starts_with("keys[1].hash:") && !dup.contains("ba7816"),
            "{dup}"
        );
        assert!(
            err(serde_json::json!({"jwt": {"payload_key": "p", "rules": [{"id": "r"}]}}))
                .starts_with("jwt.rules[0].sub:")
        );
    }
}
