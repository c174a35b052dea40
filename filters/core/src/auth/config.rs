//! Auth filter configuration: JSON in the Wasm `PluginConfig`, checked by [`AuthConfig::check`].

use serde::Deserialize;
use serde_json::{Map, Value};

use super::catalogue::CatalogueConfig;
use super::endpoints::validate_endpoint;
use super::models::validate_pattern;
use super::time::parse_rfc3339_ms;

/// Default [`AuthConfig::max_body_bytes`]: Envoy's default per-connection buffer limit, so the
/// filter answers 413 itself (as OpenAI JSON) before Envoy's plain-text 413 would.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// Auth filter configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Virtual API keys, stored only as SHA-256 hashes.
    #[serde(default)]
    pub keys: Vec<KeyEntry>,
    /// Identity from a JWT that Envoy's `jwt_authn` filter already validated.
    #[serde(default)]
    pub jwt: Option<JwtConfig>,
    /// Largest request body accepted; larger bodies get 413 `request_too_large`.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// The models this gateway serves. With it, auth routes provider models and answers
    /// `GET /v1/models` itself; without it, `/v1/models` goes to the provider and its list is
    /// filtered to the key's models.
    #[serde(default)]
    pub catalogue: Option<CatalogueConfig>,
}

fn default_max_body() -> usize {
    DEFAULT_MAX_BODY_BYTES
}

fn all_models() -> Vec<String> {
    vec!["*".to_string()]
}

/// One virtual key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// Stable id, published as `x-aimesh-key-id` and used in limit keys; not secret.
    pub id: String,
    /// `sha256:` followed by the 64 hex digits of the key's SHA-256 (`aimesh-xds keys new`).
    pub hash: String,
    /// Person or service the key was issued to (informational).
    #[serde(default)]
    pub owner: Option<String>,
    /// Team, published as `x-aimesh-team`.
    #[serde(default)]
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
    #[serde(default)]
    pub endpoints: Option<Vec<String>>,
    /// RFC 3339 instant after which the key is refused (`2026-12-31T23:59:59Z`).
    #[serde(default)]
    pub expires_at: Option<String>,
    /// A disabled key is refused like an unknown one.
    #[serde(default)]
    pub disabled: bool,
    /// Requests per minute across all Envoy workers (token bucket; absent = unlimited).
    #[serde(default)]
    pub requests_per_minute: Option<u64>,
    /// Requests in flight at once across all workers (absent = unlimited).
    #[serde(default)]
    pub max_concurrent: Option<u64>,
    /// Free-form labels for operators; the filter does not read them.
    #[serde(default)]
    pub metadata: Map<String, Value>,
}

/// Where `jwt_authn` left the verified claims and how they map to policies.
#[derive(Debug, Clone, Deserialize)]
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
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtRule {
    /// Policy id, published as `x-aimesh-key-id` (limits are per rule, not per subject).
    pub id: String,
    /// Matches when the `sub` claim equals this.
    #[serde(default)]
    pub sub: Option<String>,
    /// Matches when the groups claim contains this.
    #[serde(default)]
    pub group: Option<String>,
    /// Team, published as `x-aimesh-team`.
    #[serde(default)]
    pub team: Option<String>,
    /// Allowed models, as for keys.
    #[serde(default = "all_models")]
    pub models: Vec<String>,
    /// Requests without a model to check, as for keys.
    #[serde(default)]
    pub endpoints: Option<Vec<String>>,
    /// Requests per minute for everyone this rule matches together.
    #[serde(default)]
    pub requests_per_minute: Option<u64>,
    /// Requests in flight at once for everyone this rule matches together.
    #[serde(default)]
    pub max_concurrent: Option<u64>,
    /// Free-form labels for operators.
    #[serde(default)]
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
fn check_id(id: &str) -> Result<(), String> {
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

fn check_team(team: Option<&String>) -> Result<(), String> {
    match team {
        Some(t) if t.is_empty() || t.bytes().any(|c| !(0x20..0x7f).contains(&c)) => {
            Err("must be non-empty printable ASCII".into())
        }
        _ => Ok(()),
    }
}

fn check_lists(models: &[String], endpoints: Option<&Vec<String>>) -> Result<(), (String, String)> {
    for (j, m) in models.iter().enumerate() {
        validate_pattern(m).map_err(|e| (format!("models[{j}]"), e))?;
    }
    for (j, e) in endpoints.into_iter().flatten().enumerate() {
        validate_endpoint(e).map_err(|msg| (format!("endpoints[{j}]"), msg))?;
    }
    Ok(())
}

fn check_limits(rpm: Option<u64>, conc: Option<u64>) -> Result<(), (&'static str, String)> {
    if rpm == Some(0) {
        return Err(("requests_per_minute", "must be at least 1".into()));
    }
    if conc == Some(0) {
        return Err(("max_concurrent", "must be at least 1".into()));
    }
    Ok(())
}

impl AuthConfig {
    /// Semantic checks; `Err` names the field (`keys[2].hash: ...`) and never echoes a hash.
    pub fn check(&self) -> Result<(), String> {
        if self.max_body_bytes == 0 {
            return Err("max_body_bytes: must be at least 1".into());
        }
        let mut ids = std::collections::HashSet::new();
        let mut hashes = std::collections::HashSet::new();
        for (i, k) in self.keys.iter().enumerate() {
            let at = |field: &str, msg: String| format!("keys[{i}].{field}: {msg}");
            check_id(&k.id).map_err(|e| at("id", e))?;
            if !ids.insert(k.id.as_str()) {
                return Err(at("id", format!("duplicate id '{}'", k.id)));
            }
            let Some(h) = parse_hash(&k.hash) else {
                return Err(at(
                    "hash",
                    "must be 'sha256:' followed by 64 hex digits".into(),
                ));
            };
            if !hashes.insert(h) {
                return Err(at("hash", "same key hash as an earlier entry".into()));
            }
            check_team(k.team.as_ref()).map_err(|e| at("team", e))?;
            check_lists(&k.models, k.endpoints.as_ref()).map_err(|(f, e)| at(&f, e))?;
            if let Some(e) = &k.expires_at {
                if parse_rfc3339_ms(e).is_none() {
                    return Err(at("expires_at", format!("'{e}' is not an RFC 3339 time")));
                }
            }
            check_limits(k.requests_per_minute, k.max_concurrent).map_err(|(f, e)| at(f, e))?;
        }
        if let Some(c) = &self.catalogue {
            c.check()?;
        }
        if let Some(jwt) = &self.jwt {
            if jwt.payload_key.is_empty() {
                return Err("jwt.payload_key: must not be empty".into());
            }
            for (i, r) in jwt.rules.iter().enumerate() {
                let at = |field: &str, msg: String| format!("jwt.rules[{i}].{field}: {msg}");
                check_id(&r.id).map_err(|e| at("id", e))?;
                if !ids.insert(r.id.as_str()) {
                    return Err(at("id", format!("duplicate id '{}'", r.id)));
                }
                if r.sub.is_some() == r.group.is_some() {
                    return Err(at("sub", "set exactly one of 'sub' and 'group'".into()));
                }
                check_team(r.team.as_ref()).map_err(|e| at("team", e))?;
                check_lists(&r.models, r.endpoints.as_ref()).map_err(|(f, e)| at(&f, e))?;
                check_limits(r.requests_per_minute, r.max_concurrent).map_err(|(f, e)| at(f, e))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(v: serde_json::Value) -> Result<AuthConfig, String> {
        let c: AuthConfig = serde_json::from_value(v).map_err(|e| e.to_string())?;
        c.check().map(|()| c)
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
