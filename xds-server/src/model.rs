//! The `gateway.yaml` model: everything an operator declares about the gateway.
//!
//! Unknown fields are errors everywhere, so a typo never silently turns a feature off.
//! Secrets are never inlined: fields of type [`SecretRef`] hold `${env:NAME}` or
//! `${file:/path}` and are resolved when a snapshot is built.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Root of `gateway.yaml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Gateway {
    /// Where Envoy accepts client traffic.
    #[serde(default)]
    pub listener: Listener,
    /// Provider accounts (hosted APIs) and self-hosted model servers.
    #[serde(default)]
    pub providers: Vec<Provider>,
    /// Provider that serves `/v1/*` requests no virtual model or provider model claimed.
    #[serde(default)]
    pub default_provider: Option<String>,
    /// Plain HTTP APIs proxied under `/proxy-api/<account>/<name>/`.
    #[serde(default)]
    pub custom_endpoints: Vec<CustomEndpoint>,
    /// MCP servers (Streamable HTTP) proxied under `/mcp/<name>`.
    #[serde(default)]
    pub mcp_servers: Vec<McpServer>,
    /// Model names clients ask for, mapped onto provider models.
    #[serde(default)]
    pub virtual_models: Vec<VirtualModel>,
    /// Virtual API keys, by hash.
    #[serde(default)]
    pub keys: Vec<Key>,
    /// Request and token rate limits: a list of rules (counted by each Envoy), or
    /// `{store, service, ..., rules}` to count them fleet-wide (`store: redis`).
    #[serde(default)]
    #[schemars(with = "crate::model_limits::LimitsForm")]
    pub limits: crate::model_limits::Limits,
    /// Spend budgets per day or month.
    #[serde(default)]
    pub budgets: Vec<Budget>,
    /// Token prices in USD per million tokens, by model name or `prefix*` (longest prefix wins);
    /// they price the audit log's `cost_micro_usd` and the `budgets`.
    #[serde(default)]
    pub prices: BTreeMap<String, Price>,
    /// What to do with personal data in prompts.
    #[serde(default)]
    pub pii: Pii,
    /// Hosts the gateway may connect to; when set, every upstream must match.
    #[serde(default)]
    pub egress: Egress,
    /// Traces (OpenTelemetry) of the gateway's requests.
    #[serde(default)]
    pub observability: Observability,
    /// Custom request metadata: a header's JSON object of strings (validated and size-capped)
    /// that lands in the audit log's `metadata`, and for `labels` keys on the GenAI metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<aimesh_config::metadata::MetadataConfig>,
}

/// The client-facing listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// Bind address.
    #[serde(default = "default_address")]
    pub address: String,
    /// Bind port; 0 lets each Envoy pick a free one (tests).
    #[serde(default = "default_port")]
    pub port: u16,
    /// Default upstream timeout for `/v1/*` routes, e.g. `120s`; `0s` disables it (long streams).
    #[serde(default = "default_route_timeout")]
    pub route_timeout: String,
    /// Path of the audit log (one JSON line per request: key, model, tokens, cost, timings; never
    /// prompt text), as Envoy sees it; `""` turns it off.
    #[serde(default = "default_access_log")]
    pub access_log: String,
    /// How the five filters are loaded: `separate` (five Wasm filters, each its own VM) or
    /// `chain` (one filter running them as stages, `aimesh_chain.wasm`: less Envoy CPU per
    /// request, same behaviour; not yet with virtual-model fallbacks), or `native` (the chain as
    /// an Envoy dynamic module, `libaimesh.so`, found through Envoy's
    /// `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`; standalone Envoy only, same limits as `chain`).
    #[serde(default)]
    pub filter_build: FilterBuild,
    /// Proxies in front of the gateway (load balancers) whose `x-forwarded-for` entries are
    /// trusted: the client address is the entry this many hops from the end. 0 (default): the
    /// address that connected. Decides which requests are external (all, unless an operator
    /// trusts more) and so which `x-envoy-*` headers Envoy strips.
    #[serde(default)]
    pub trusted_hops: u32,
    /// Largest request body, in bytes (default 1 MiB; 1 KiB to 64 MiB). Larger requests get
    /// 413 `request_too_large` in the caller's dialect; it also sizes Envoy's buffers (listener
    /// and upstream connections), which the filters hold a body in while they read it. Coding
    /// agents send requests over 1 MiB: raise it for them.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
}

/// Smallest and largest `listener.max_body_bytes`.
pub const MAX_BODY_RANGE: std::ops::RangeInclusive<u64> = 1024..=64 * 1024 * 1024;

fn default_max_body_bytes() -> u64 {
    aimesh_config::auth::DEFAULT_MAX_BODY_BYTES as u64
}

/// How the filters are loaded into Envoy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FilterBuild {
    /// Five Wasm filters, one VM each.
    #[default]
    Separate,
    /// One Wasm filter running the five as stages.
    Chain,
    /// The same stages as one native Envoy dynamic module (`libaimesh.so`, filters/native):
    /// no VM boundary, pinned to the Envoy release it was built for (docs/native.md).
    Native,
}

fn default_access_log() -> String {
    "/dev/stdout".into()
}

fn default_address() -> String {
    "0.0.0.0".into()
}
fn default_port() -> u16 {
    10000
}
fn default_route_timeout() -> String {
    "120s".into()
}

impl Default for Listener {
    fn default() -> Self {
        Self {
            address: default_address(),
            port: default_port(),
            route_timeout: default_route_timeout(),
            access_log: default_access_log(),
            filter_build: FilterBuild::default(),
            trusted_hops: 0,
            max_body_bytes: default_max_body_bytes(),
        }
    }
}

/// Kind of provider; decides defaults (base URL, auth header) and the cluster shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// api.openai.com.
    Openai,
    /// An Azure OpenAI resource (`base_url` required, `api_version` recommended).
    AzureOpenai,
    /// api.anthropic.com.
    Anthropic,
    /// Any OpenAI-compatible API (`base_url` required).
    OpenaiCompatible,
    /// Self-hosted vLLM servers (`endpoints` required).
    Vllm,
    /// Self-hosted Text Generation Inference servers (`endpoints` required).
    Tgi,
}

impl ProviderKind {
    /// Self-hosted kinds run on `endpoints` with active health checks.
    pub fn self_hosted(self) -> bool {
        matches!(self, Self::Vllm | Self::Tgi)
    }

    /// Default base URL of hosted kinds that have one.
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            Self::Openai => Some("https://api.openai.com"),
            Self::Anthropic => Some("https://api.anthropic.com"),
            _ => None,
        }
    }
}

/// A provider account or a self-hosted model server pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    /// Unique name, 3-32 of `a-z 0-9 -`; the Envoy cluster is `provider.<name>`.
    pub name: String,
    /// What kind of API this is.
    pub kind: ProviderKind,
    /// Base URL of a hosted API (`https://host[:port][/path]`).
    #[serde(default)]
    pub base_url: Option<String>,
    /// Self-hosted servers, with locality and priority for regional failover.
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    /// Provider credential: `${env:NAME}` or `${file:/path}`, never the key itself.
    #[serde(default)]
    pub api_key: Option<SecretRef>,
    /// Azure OpenAI `api-version` query parameter.
    #[serde(default)]
    pub api_version: Option<String>,
    /// Model names this provider serves (requests naming one are routed here).
    #[serde(default)]
    pub models: Vec<String>,
    /// Connect timeout, e.g. `5s`.
    #[serde(default)]
    pub connect_timeout: Option<String>,
    /// Active health check of self-hosted endpoints.
    #[serde(default)]
    pub health_check: Option<HealthCheck>,
}

/// One self-hosted server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// `http://host:port`.
    pub url: String,
    /// Region or zone; endpoints are grouped by it.
    #[serde(default)]
    pub locality: Option<String>,
    /// 0 is preferred; traffic moves to priority 1 only when priority 0 is unhealthy.
    #[serde(default)]
    pub priority: u32,
    /// Relative load-balancing weight within its locality.
    #[serde(default)]
    pub weight: Option<u32>,
}

/// Active HTTP health check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// Path probed with GET (`/health` for vLLM and TGI).
    #[serde(default = "default_health_path")]
    pub path: String,
    /// Time between probes, e.g. `5s`.
    #[serde(default = "default_health_interval")]
    pub interval: String,
    /// Probe timeout, e.g. `1s`.
    #[serde(default = "default_health_timeout")]
    pub timeout: String,
    /// Failed probes before an endpoint is taken out.
    #[serde(default = "default_threshold")]
    pub unhealthy_threshold: u32,
    /// Passed probes before it is put back.
    #[serde(default = "default_healthy")]
    pub healthy_threshold: u32,
}

fn default_health_path() -> String {
    "/health".into()
}
fn default_health_interval() -> String {
    "5s".into()
}
fn default_health_timeout() -> String {
    "1s".into()
}
fn default_threshold() -> u32 {
    2
}
fn default_healthy() -> u32 {
    1
}

/// A plain HTTP API behind the gateway's auth, under `/proxy-api/<account>/<name>/` where
/// `<account>` is `provider` or, without one, `endpoints`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomEndpoint {
    /// Name, unique per account (2-62 of `A-Z a-z 0-9 - _ .`, not starting with a digit: the
    /// header-auth filter's rule for a `/proxy-api/` path segment).
    pub name: String,
    /// Provider whose credentials the endpoint uses; none: no credentials are sent.
    #[serde(default)]
    pub provider: Option<String>,
    /// Key ids allowed to call it (empty, with `allow_teams` empty: every caller).
    #[serde(default)]
    pub allow_keys: Vec<String>,
    /// Teams allowed to call it.
    #[serde(default)]
    pub allow_teams: Vec<String>,
    /// Upstream base URL; the prefix is replaced by its path.
    pub url: String,
}

/// An MCP server (Streamable HTTP transport), under `/mcp/<name>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct McpServer {
    /// Unique name; the path is `/mcp/<name>`.
    pub name: String,
    /// The server's MCP endpoint URL, e.g. `https://mcp.example.com/mcp`.
    pub url: String,
    /// Credential sent to the server: `${env:NAME}` or `${file:/path}`.
    #[serde(default)]
    pub api_key: Option<SecretRef>,
    /// The server's default allow-list of tool patterns (exact, `prefix*`, `*`); absent: every
    /// tool. A key's `mcp` entry for this server replaces it.
    #[serde(default)]
    pub tools: Option<Vec<String>>,
    /// The server's default allow-list of prompt name patterns; absent: every prompt.
    #[serde(default)]
    pub prompts: Option<Vec<String>>,
    /// The server's default allow-list of resource URI patterns (`docs://public/*`); absent:
    /// every resource. Resource templates match on their `uriTemplate`.
    #[serde(default)]
    pub resources: Option<Vec<String>>,
    /// Per-tool limits, counted per key (or JWT rule).
    #[serde(default)]
    pub limits: Vec<McpToolLimit>,
}

/// A limit on one MCP tool, per key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct McpToolLimit {
    /// Tool name (exact).
    pub tool: String,
    /// Calls per minute per key.
    #[serde(default)]
    pub calls_per_minute: Option<u64>,
    /// Calls in flight at once per key.
    #[serde(default)]
    pub max_concurrent: Option<u64>,
}

/// A model name clients use, served by one or more provider models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VirtualModel {
    /// The name clients put in `model`.
    pub name: String,
    /// Weighted targets.
    pub targets: Vec<Target>,
    /// Tried in order when the chosen target fails.
    #[serde(default)]
    pub fallbacks: Vec<Target>,
}

/// One provider model behind a virtual model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// A provider's `name`.
    pub provider: String,
    /// Model name sent to that provider.
    pub model: String,
    /// Relative share of traffic.
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

/// A virtual API key (its hash only; mint keys with `aimesh-xds keys new`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Key {
    /// Stable, non-secret id (logs, metrics, limits).
    pub id: String,
    /// `sha256:` and 64 hex digits.
    pub hash: String,
    /// Team the key belongs to.
    #[serde(default)]
    pub team: Option<String>,
    /// Person or service the key is issued to.
    #[serde(default)]
    pub owner: Option<String>,
    /// Models the key may use (`gpt-4o-mini`, `team-a/*`); all when absent.
    #[serde(default)]
    pub models: Option<Vec<String>>,
    /// Requests naming no model the key may make (`GET /v1/files`, `/mcp/docs`): `*`, or paths
    /// covering themselves and what is below them, optionally after a method
    /// (`GET /v1/batches`). Absent: all when `models` is absent or `*`, else none.
    /// `GET /v1/models` and custom endpoints need no grant.
    #[serde(default)]
    pub endpoints: Option<Vec<String>>,
    /// RFC 3339 expiry, e.g. `2026-12-31T23:59:59Z`.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Requests per minute of this key (overrides `limits`).
    #[serde(default)]
    pub requests_per_minute: Option<u64>,
    /// Requests in flight at once.
    #[serde(default)]
    pub max_concurrent: Option<u64>,
    /// Refuse the key without deleting it.
    #[serde(default)]
    pub disabled: bool,
    /// What the key may use on each MCP server: server name -> tool patterns (exact,
    /// `prefix*`, `*`), or `{tools, prompts, resources}`. A server absent from the map, or a
    /// list absent from the object: the server's own; an empty list: none.
    #[serde(default)]
    pub mcp: Option<std::collections::BTreeMap<String, McpGrant>>,
}

/// A key's grant on one MCP server: a tool list, or lists of tools, prompts and resources.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum McpGrant {
    /// Tool patterns; prompts and resources stay the server's.
    Tools(Vec<String>),
    /// Each list given replaces the server's.
    Lists(McpLists),
}

/// Tool, prompt and resource patterns of a key on one MCP server; an absent list: the server's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct McpLists {
    /// Tool name patterns.
    #[serde(default)]
    pub tools: Option<Vec<String>>,
    /// Prompt name patterns.
    #[serde(default)]
    pub prompts: Option<Vec<String>>,
    /// Resource URI patterns.
    #[serde(default)]
    pub resources: Option<Vec<String>>,
}

/// By hand rather than `untagged`, so a mistake is named (`unknown field `tool``) instead of
/// "did not match any variant".
impl<'de> Deserialize<'de> for McpGrant {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match serde_json::Value::deserialize(d)? {
            v @ serde_json::Value::Array(_) => serde_json::from_value(v)
                .map(McpGrant::Tools)
                .map_err(D::Error::custom),
            v @ serde_json::Value::Object(_) => serde_json::from_value(v)
                .map(McpGrant::Lists)
                .map_err(D::Error::custom),
            _ => Err(D::Error::custom(
                "a list of tool patterns, or {tools, prompts, resources}",
            )),
        }
    }
}

impl McpGrant {
    /// `(list name, patterns)` of each list the grant gives.
    pub fn lists(&self) -> Vec<(&'static str, &Vec<String>)> {
        match self {
            McpGrant::Tools(t) => vec![("tools", t)],
            McpGrant::Lists(l) => [
                ("tools", &l.tools),
                ("prompts", &l.prompts),
                ("resources", &l.resources),
            ]
            .into_iter()
            .filter_map(|(n, l)| Some((n, l.as_ref()?)))
            .collect(),
        }
    }
}

/// A rate limit; the most specific matching entry applies (key, then team, then default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// Key id this limit applies to.
    #[serde(default)]
    pub key: Option<String>,
    /// Team this limit applies to.
    #[serde(default)]
    pub team: Option<String>,
    /// Requests per minute.
    #[serde(default)]
    pub requests_per_minute: Option<u64>,
    /// Prompt plus completion tokens per minute.
    #[serde(default)]
    pub tokens_per_minute: Option<u64>,
    /// A JWT subject (`sub`), or `*` for each subject on its own counter, created on first
    /// use (`store: redis` only).
    #[serde(default)]
    pub subject: Option<String>,
    /// A model the client asks for, or `*` for each model (`store: redis` only).
    #[serde(default)]
    pub model: Option<String>,
    /// Requests in flight at once (`store: redis` only; keys' own `max_concurrent` otherwise).
    #[serde(default)]
    pub max_concurrent: Option<u64>,
}

/// A spend budget over a period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Key id the budget applies to.
    #[serde(default)]
    pub key: Option<String>,
    /// Team the budget applies to.
    #[serde(default)]
    pub team: Option<String>,
    /// Spend allowed per period, in USD (priced by the token-accounting filter).
    pub usd: f64,
    /// Period.
    #[serde(default)]
    pub period: BudgetPeriod,
}

/// Budget period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BudgetPeriod {
    /// Calendar day (UTC).
    #[default]
    Day,
    /// Calendar month (UTC).
    Month,
}

/// Price of a model's tokens, USD per million: token-accounting's own type.
pub use aimesh_config::accounting::Price;

/// Personal-data policy for prompts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pii {
    /// `off`, `redact` (replace before the provider sees it), `hash` (keyed pseudonyms, stable
    /// per value; needs `hash_key`) or `block` (refuse with 400).
    #[serde(default)]
    pub mode: PiiMode,
    /// Kinds of data to act on (`email`, `phone`, `credit_card`, `us_ssn`, `iban`, `ip_address`,
    /// `secret`); empty means all of them.
    #[serde(default)]
    pub entities: Vec<String>,
    /// Action per kind, over `mode`: keys are entity names, `patterns` names or `deny_word`.
    #[serde(default)]
    pub actions: BTreeMap<String, PiiMode>,
    /// Put the original values back where the model echoes a placeholder in its response.
    #[serde(default)]
    pub restore: bool,
    /// Also redact PII the model itself returns (default: on unless `mode` is `off`).
    #[serde(default)]
    pub redact_responses: Option<bool>,
    /// HMAC key of `hash` (at least 16 bytes), as `${file:/absolute/path}`.
    #[serde(default)]
    pub hash_key: Option<SecretRef>,
    /// Your own kinds of data: a name (`[A-Z0-9_]+`, used in placeholders and `actions`) and a
    /// regex (Rust `regex` syntax). Acted on by `mode` unless `actions` says otherwise.
    #[serde(default)]
    pub patterns: Vec<PiiPattern>,
    /// Words (case-insensitive, whole words) treated as the kind `deny_word`.
    #[serde(default)]
    pub deny_words: Vec<String>,
    /// More policies, by name, for `rules` to pick; the fields above are the `default` one.
    #[serde(default)]
    pub policies: BTreeMap<String, PiiPolicy>,
    /// Which requests get which policy, first match wins: `path_prefix` and/or `header`.
    #[serde(default)]
    pub rules: Vec<PiiRule>,
}

/// A named PII policy (see [`Pii`] for the fields).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PiiPolicy {
    /// As `pii.mode`.
    #[serde(default)]
    pub mode: PiiMode,
    /// As `pii.entities`.
    #[serde(default)]
    pub entities: Vec<String>,
    /// As `pii.actions`.
    #[serde(default)]
    pub actions: BTreeMap<String, PiiMode>,
    /// As `pii.restore`.
    #[serde(default)]
    pub restore: bool,
    /// As `pii.redact_responses`.
    #[serde(default)]
    pub redact_responses: Option<bool>,
}

impl Pii {
    /// The `default` policy: the top-level fields.
    pub fn default_policy(&self) -> PiiPolicy {
        PiiPolicy {
            mode: self.mode,
            entities: self.entities.clone(),
            actions: self.actions.clone(),
            restore: self.restore,
            redact_responses: self.redact_responses,
        }
    }
}

/// An operator-defined kind of data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PiiPattern {
    /// Name (`[A-Z0-9_]+`), e.g. `EMPLOYEE_ID`.
    pub name: String,
    /// Regular expression.
    pub regex: String,
}

/// Picks a policy for the requests it matches (every condition given must hold).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PiiRule {
    /// Request path starts with this.
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Request header with this exact value.
    #[serde(default)]
    pub header: Option<PiiHeader>,
    /// A name from `pii.policies`, or `default`.
    pub policy: String,
}

/// A header condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PiiHeader {
    /// Header name.
    pub name: String,
    /// Exact value.
    pub value: String,
}

/// PII handling.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PiiMode {
    /// No scanning.
    #[default]
    Off,
    /// Replace matches with placeholders.
    Redact,
    /// Replace matches with keyed pseudonyms (needs `hash_key`).
    Hash,
    /// Refuse requests that contain any.
    Block,
}

/// Egress allow-list.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Egress {
    /// Host names (`api.openai.com`), wildcards (`*.openai.azure.com`: a domain of at least two
    /// labels), IPs or networks (`10.0.0.0/8`), by the header-auth filter's rule; when non-empty
    /// every provider, custom endpoint and MCP server host must match one.
    #[serde(default)]
    pub allow: Vec<String>,
}

/// Telemetry sent out of the gateway.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Observability {
    /// Send a span per request to an OpenTelemetry collector (OTLP over gRPC), with GenAI
    /// attributes and the key id and team (docs/gateway-yaml.md); the W3C `traceparent` goes
    /// on to providers and MCP servers.
    #[serde(default)]
    pub otlp: Option<Otlp>,
}

/// An OTLP/gRPC trace exporter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Otlp {
    /// Collector address, `http://host:port` (plaintext gRPC, e.g. `http://otel-collector:4317`;
    /// TLS to the collector is not supported yet: run a collector next to the gateway).
    pub endpoint: String,
    /// `service.name` of the spans.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// Percentage of requests traced, 0-100.
    #[serde(default = "default_sampling")]
    pub sampling: f64,
}

fn default_service_name() -> String {
    "aimesh".into()
}
fn default_sampling() -> f64 {
    100.0
}

/// A reference to a secret: `${env:NAME}` or `${file:/absolute/path}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct SecretRef(pub String);

/// Where a secret lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource<'a> {
    /// An environment variable of the xDS server.
    Env(&'a str),
    /// A file (its content, trimmed).
    File(&'a str),
}

impl SecretRef {
    /// Parses the reference; `None` when it is not a reference (an inlined secret).
    pub fn source(&self) -> Option<SecretSource<'_>> {
        let inner = self.0.strip_prefix("${")?.strip_suffix('}')?;
        if let Some(name) = inner.strip_prefix("env:") {
            let ok =
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            return ok.then_some(SecretSource::Env(name));
        }
        let path = inner.strip_prefix("file:")?;
        path.starts_with('/').then_some(SecretSource::File(path))
    }

    /// Reads the secret's value.
    pub fn resolve(&self) -> Result<String, String> {
        match self.source() {
            Some(SecretSource::Env(n)) => {
                std::env::var(n).map_err(|_| format!("environment variable {n} is not set"))
            }
            Some(SecretSource::File(p)) => std::fs::read_to_string(p)
                .map(|s| s.trim().to_string())
                .map_err(|e| format!("cannot read {p}: {e}")),
            None => Err("not a secret reference".into()),
        }
    }
}
