//! The mcp stage's configuration: per MCP server the default allow-lists of tools, prompts and
//! resources; per caller (key id or JWT rule id) and per team the lists that replace them; per
//! tool the limits; the bounds on what a request may carry.
//!
//! A pattern is an exact name, `prefix*`, or `*` (everything). Resources match on their URI.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{ConfigError, Validate};

/// Largest JSON-RPC body the stage reads by default (1 MiB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
/// Most messages a JSON-RPC batch may hold by default.
pub const DEFAULT_MAX_BATCH: usize = 32;

/// `{"servers": {...}, "callers": {...}, "teams": {...}, "limits": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct McpConfig {
    /// MCP servers by name (`/mcp/<name>`), each with its default allow-lists. A path naming a
    /// server not listed passes untouched (the route answers it).
    pub servers: BTreeMap<String, ServerAccess>,
    /// Per caller id (a key's id or a JWT rule's id): server name -> what it may use there.
    /// A server absent from a caller's map: its team's, else the server's default.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub callers: BTreeMap<String, BTreeMap<String, Grant>>,
    /// Per team: server name -> what its members may use (after the caller's own entry).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub teams: BTreeMap<String, BTreeMap<String, Grant>>,
    /// Per JWT rule id (auth's `jwt.rules[].id`): server name -> what callers matched by that
    /// rule may use. Read instead of `callers` when auth identified the caller by a verified
    /// JWT, so a key and a rule sharing an id never share a grant.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub jwt_rules: BTreeMap<String, BTreeMap<String, Grant>>,
    /// Per-tool limits, each per caller id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<ToolLimit>,
    /// Caller ids whose limit state is created at configuration (Envoy's shared data honours
    /// compare-and-swap only on keys that exist, so this is what makes limits exact across
    /// workers from the first request).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub known_callers: Vec<String>,
    /// Largest request body read; larger ones are refused (HTTP 413, JSON-RPC -32600).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Most messages in one JSON-RPC batch; more are refused (-32600).
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Check `tools/call` arguments against the tool's `inputSchema` learned from the server's
    /// `tools/list` replies.
    #[serde(default = "yes")]
    pub validate_arguments: bool,
}

fn default_max_body() -> usize {
    DEFAULT_MAX_BODY_BYTES
}

fn default_max_batch() -> usize {
    DEFAULT_MAX_BATCH
}

fn yes() -> bool {
    true
}

fn everything() -> Vec<String> {
    vec!["*".to_string()]
}

/// A server's default allow-lists (absent: everything).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerAccess {
    /// Tool name patterns.
    #[serde(default = "everything")]
    pub tools: Vec<String>,
    /// Prompt name patterns.
    #[serde(default = "everything")]
    pub prompts: Vec<String>,
    /// Resource URI patterns.
    #[serde(default = "everything")]
    pub resources: Vec<String>,
}

impl Default for ServerAccess {
    fn default() -> Self {
        Self {
            tools: everything(),
            prompts: everything(),
            resources: everything(),
        }
    }
}

/// What a caller or team may use on one server; an absent list keeps the server's default, an
/// empty one allows nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// Tool name patterns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<String>>,
    /// Prompt name patterns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompts: Option<Vec<String>>,
    /// Resource URI patterns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Vec<String>>,
}

/// Limits on one tool of one server, counted per caller id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolLimit {
    /// Server name.
    pub server: String,
    /// Tool name (exact).
    pub tool: String,
    /// Calls per minute per caller (a token bucket refilled continuously).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calls_per_minute: Option<u64>,
    /// Calls in flight at once per caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u64>,
}

/// Checks one pattern: an exact name, `prefix*` or `*`; no other `*`, no control characters.
pub fn check_pattern(field: &str, p: &str) -> Result<(), ConfigError> {
    if p.is_empty() {
        return Err(ConfigError::invalid(field, "empty pattern"));
    }
    if p[..p.len() - 1].contains('*') {
        return Err(ConfigError::invalid(
            field,
            format!("`{p}`: `*` may only end a pattern (`prefix*`)"),
        ));
    }
    if p.chars().any(char::is_control) {
        return Err(ConfigError::invalid(field, "control character in pattern"));
    }
    Ok(())
}

fn check_patterns(field: &str, ps: &[String]) -> Result<(), ConfigError> {
    for (i, p) in ps.iter().enumerate() {
        check_pattern(&format!("{field}[{i}]"), p)?;
    }
    Ok(())
}

fn check_grants(
    field: &str,
    grants: &BTreeMap<String, BTreeMap<String, Grant>>,
    servers: &BTreeMap<String, ServerAccess>,
) -> Result<(), ConfigError> {
    for (who, map) in grants {
        for (server, g) in map {
            let f = format!("{field}.{who}.{server}");
            if !servers.contains_key(server) {
                return Err(ConfigError::unknown(
                    &f,
                    format!("no MCP server `{server}`"),
                ));
            }
            for (name, list) in [
                ("tools", &g.tools),
                ("prompts", &g.prompts),
                ("resources", &g.resources),
            ] {
                if let Some(l) = list {
                    check_patterns(&format!("{f}.{name}"), l)?;
                }
            }
        }
    }
    Ok(())
}

impl Validate for McpConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        for (name, s) in &self.servers {
            if name.is_empty() || name.contains('/') || name.chars().any(char::is_control) {
                return Err(ConfigError::invalid(
                    format!("servers.{name}"),
                    "a server name is one non-empty path segment",
                ));
            }
            check_patterns(&format!("servers.{name}.tools"), &s.tools)?;
            check_patterns(&format!("servers.{name}.prompts"), &s.prompts)?;
            check_patterns(&format!("servers.{name}.resources"), &s.resources)?;
        }
        check_grants("callers", &self.callers, &self.servers)?;
        check_grants("teams", &self.teams, &self.servers)?;
        check_grants("jwt_rules", &self.jwt_rules, &self.servers)?;
        for (i, l) in self.limits.iter().enumerate() {
            let f = format!("limits[{i}]");
            if !self.servers.contains_key(&l.server) {
                return Err(ConfigError::unknown(
                    format!("{f}.server"),
                    format!("no MCP server `{}`", l.server),
                ));
            }
            if l.tool.is_empty() || l.tool.contains('*') {
                return Err(ConfigError::invalid(
                    format!("{f}.tool"),
                    "one exact tool name",
                ));
            }
            if l.calls_per_minute.is_none() && l.max_concurrent.is_none() {
                return Err(ConfigError::missing(
                    &f,
                    "give calls_per_minute or max_concurrent",
                ));
            }
            if l.calls_per_minute == Some(0) || l.max_concurrent == Some(0) {
                return Err(ConfigError::invalid(&f, "a limit must be at least 1"));
            }
        }
        if self.max_body_bytes == 0 {
            return Err(ConfigError::invalid("max_body_bytes", "must be at least 1"));
        }
        if self.max_batch == 0 {
            return Err(ConfigError::invalid("max_batch", "must be at least 1"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(json: &str) -> Result<McpConfig, String> {
        let c: McpConfig = serde_json::from_str(json).map_err(|e| e.to_string())?;
        c.validate().map(|()| c).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_field_named_errors() {
        let c = load(r#"{"servers": {"demo": {}}}"#).expect("valid");
        assert_eq!(c.servers["demo"], ServerAccess::default());
        assert_eq!(
            (c.max_body_bytes, c.max_batch, c.validate_arguments),
            (DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_BATCH, true)
        );
        let e = load(r#"{"servers": {"demo": {"tools": ["a*b"]}}}"#).unwrap_err();
        assert!(e.starts_with("servers.demo.tools[0]:"), "{e}");
        let e = load(r#"{"servers": {"d": {}}, "callers": {"k": {"x": {}}}}"#).unwrap_err();
        assert!(e.starts_with("callers.k.x:"), "{e}");
        let e = load(r#"{"servers": {"d": {}}, "jwt_rules": {"r": {"d": {"prompts": ["*a"]}}}}"#)
            .unwrap_err();
        assert!(e.starts_with("jwt_rules.r.d.prompts[0]:"), "{e}");
        let e = load(r#"{"servers": {"d": {}}, "limits": [{"server": "d", "tool": "t"}]}"#)
            .unwrap_err();
        assert!(e.starts_with("limits[0]:"), "{e}");
        assert!(load(r#"{"servers": {}, "extra": 1}"#)
            .unwrap_err()
            .contains("unknown field"));
    }
}
