//! Header-auth filter configuration: provider accounts, their credentials and custom endpoints.

use std::collections::BTreeMap;

pub mod creds;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::egress::EgressConfig;
pub use creds::{AuthConfig, Env, StdEnv};

/// Header-auth filter configuration (JSON in the Wasm `PluginConfig`).
///
/// An empty config (`{}`) only removes client credentials and internal headers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where this instance runs: `downstream` (default; last filter before the router) or
    /// `upstream` (in a cluster's `http_filters`, after virtual-model's upstream instance, to
    /// re-key each retry/fallback attempt for the account that attempt goes to).
    #[serde(default)]
    pub role: Role,
    /// What an unset `${env:NAME}` does: `reject` (default) refuses the whole config;
    /// `disable_account` logs a warning and disables that account (its requests get 503), so
    /// one gateway config can list providers whose secrets only some deployments have.
    #[serde(default)]
    pub on_missing_env: MissingEnv,
    /// Account whose credentials LLM requests get when no `x-aimesh-backend` header names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_account: Option<String>,
    /// Hosts and networks endpoint base URLs may point at; required once any endpoint exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<EgressConfig>,
    /// Provider accounts by name (3–32 of `a-z0-9-`); the name is what `x-aimesh-backend` carries.
    #[serde(default)]
    pub accounts: BTreeMap<String, AccountConfig>,
    /// Routes that are not LLM provider calls (MCP servers), by path prefix, first match wins.
    /// A request under one gets that entry's credentials or none: never an account's, so a
    /// provider key cannot leak to a third-party server through the default account.
    #[serde(default)]
    pub paths: Vec<PathConfig>,
}

/// Credentials for the requests under one path prefix.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PathConfig {
    /// Path prefix as Envoy's route matches it (plain string prefix, e.g. `/mcp/docs`).
    pub prefix: String,
    /// Credentials to send; absent: the request leaves with no credential at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthConfig>,
}

/// One provider account.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    /// Credentials for every request the account serves (endpoints may replace them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthConfig>,
    /// Extra headers on every upstream request of the account (e.g. `openai-organization`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Custom endpoints by name (2–62 of `A-Za-z0-9-_.`, not starting with a digit), reached at
    /// `/proxy-api/{account}/{endpoint}/...`.
    #[serde(default)]
    pub endpoints: BTreeMap<String, EndpointConfig>,
}

/// One custom endpoint: a transparent proxy to `base_url`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// `http(s)://host[:port][/path]`, no trailing slash; must match the egress allow-list.
    pub base_url: String,
    /// Envoy cluster that reaches `base_url` (TLS, SNI, CA and verification live there).
    pub cluster: String,
    /// Credentials replacing the account's for this endpoint (`{"type":"none"}` drops them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthConfig>,
    /// Extra headers, merged over the account's (same name: the endpoint's wins).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Who may call the endpoint; absent means every authenticated caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<AllowConfig>,
}

/// Per-endpoint access control, matched against the auth filter's identity headers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AllowConfig {
    /// Virtual key ids (`x-aimesh-key-id`) allowed.
    #[serde(default)]
    pub key_ids: Vec<String>,
    /// Teams (`x-aimesh-team`) allowed.
    #[serde(default)]
    pub teams: Vec<String>,
}

/// Where a header-auth instance runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Listener filter chain, last before the router: credentials, custom endpoints, hygiene.
    #[default]
    Downstream,
    /// Cluster `http_filters`: per attempt, credentials for the attempt's `x-aimesh-backend`
    /// (set by virtual-model's upstream instance), then every `x-aimesh-*` header is removed.
    Upstream,
}

/// What an unset environment variable does to the config.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MissingEnv {
    /// The config is refused (one log line naming the field and the variable).
    #[default]
    Reject,
    /// The account is disabled with a warning; the rest of the config loads.
    DisableAccount,
}

mod check;
