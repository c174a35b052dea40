//! Virtual-model filter configuration: the virtual model table.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{ConfigError, Validate};

/// Routing configuration shared by the downstream and upstream instances of the filter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    /// Where this instance runs: the downstream chain picks targets, the upstream instance
    /// (cluster `http_filters`) rewrites the body for each attempt's target.
    #[serde(default)]
    pub role: Role,
    /// The virtual models.
    #[serde(default)]
    pub virtual_models: Vec<VirtualModel>,
    /// Let a `model` that names no virtual model through untouched (true) or answer 404
    /// `model_not_found` (false).
    #[serde(default = "yes")]
    pub pass_through: bool,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            role: Role::Downstream,
            virtual_models: Vec::new(),
            pass_through: true,
        }
    }
}

fn yes() -> bool {
    true
}

/// Where an instance of the filter runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// In the listener's HTTP filter chain: selection, routing, sticky sessions.
    #[default]
    Downstream,
    /// In an aggregate cluster's upstream filters: per-attempt body rewrite and latency samples.
    Upstream,
}

/// How a virtual model chooses its primary target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Random, proportional to `weight`.
    #[default]
    Weighted,
    /// Lowest recent time per output token.
    Latency,
    /// Highest priority (lowest number) target within its SLA.
    Priority,
}

/// One logical model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VirtualModel {
    /// The name clients send as `model`.
    pub name: String,
    /// Selection strategy.
    #[serde(default)]
    pub strategy: Strategy,
    /// Backends, in fallback order for ties (priority first, then this order).
    pub targets: Vec<Target>,
    /// Latency strategy tuning.
    #[serde(default)]
    pub latency: LatencyOptions,
    /// Priority strategy health cutoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sla: Option<Sla>,
    /// Session affinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky: Option<Sticky>,
    /// Retry and fallback statuses.
    #[serde(default)]
    pub retry: RetryOptions,
}

/// One backend of a virtual model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// `{provider-account}/{model}`; the model part (everything after the first `/`) is what
    /// the backend receives as `model`.
    pub target: String,
    /// Envoy cluster serving this target (also named in its endpoints' `aimesh.cluster`
    /// metadata when fallback clusters are used).
    pub cluster: String,
    /// Aggregate cluster starting with `cluster` followed by the fallback targets; when set,
    /// requests route there and the upstream instance rewrites the body per attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_cluster: Option<String>,
    /// Relative share for the weighted strategy and among equals of the latency strategy.
    #[serde(default = "one")]
    pub weight: u32,
    /// Lower is preferred by the priority strategy.
    #[serde(default)]
    pub priority: u32,
}

fn one() -> u32 {
    1
}

impl Target {
    /// The provider account part of `target`.
    pub fn backend(&self) -> &str {
        self.target.split_once('/').map_or("", |(a, _)| a)
    }

    /// The model part of `target`.
    pub fn model(&self) -> &str {
        self.target.split_once('/').map_or("", |(_, m)| m)
    }

    /// The cluster a request for this primary target routes to.
    pub fn route_cluster(&self) -> &str {
        self.fallback_cluster.as_deref().unwrap_or(&self.cluster)
    }
}

/// Latency strategy tuning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LatencyOptions {
    /// Samples older than this are ignored (seconds).
    pub window_s: u64,
    /// Targets within this factor of the fastest count as equally fast.
    pub equal_within: f64,
    /// Targets with fewer samples than this are being measured.
    pub min_samples: usize,
    /// Share of requests sent to a target still being measured.
    pub explore_ratio: f64,
}

impl Default for LatencyOptions {
    fn default() -> Self {
        Self {
            window_s: 1200,
            equal_within: 1.2,
            min_samples: 3,
            explore_ratio: 0.2,
        }
    }
}

/// Health cutoff of the priority strategy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sla {
    /// A target whose median time per output token exceeds this is unhealthy (milliseconds).
    pub max_ms_per_token: f64,
    /// Window of that median (seconds).
    #[serde(default = "three_minutes")]
    pub window_s: u64,
}

fn three_minutes() -> u64 {
    180
}

/// Session affinity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sticky {
    /// Request header holding the session id.
    pub header: String,
    /// How long a session stays on its target (seconds).
    pub ttl_s: u64,
}

/// Which reply statuses retry the same target and which fall back to the next one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RetryOptions {
    /// Attempts on one target before falling back (Envoy `update_frequency` of
    /// `previous_priorities`).
    pub attempts_per_target: u32,
    /// Statuses retried on the same target.
    pub retry_on: Vec<u16>,
    /// Statuses (and connect failure, reset, timeout) that move to the next target.
    pub fallback_on: Vec<u16>,
}

impl Default for RetryOptions {
    fn default() -> Self {
        Self {
            attempts_per_target: 1,
            retry_on: vec![429, 500, 502, 503],
            fallback_on: vec![401, 403, 404, 429, 500, 502, 503],
        }
    }
}

impl RoutingConfig {
    /// The virtual model called `name`.
    pub fn find(&self, name: &str) -> Option<&VirtualModel> {
        self.virtual_models.iter().find(|v| v.name == name)
    }

    /// Checks names, targets, weights and windows; the error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut seen = std::collections::HashSet::new();
        for (i, vm) in self.virtual_models.iter().enumerate() {
            let at = format!("virtual_models[{i}]");
            if vm.name.is_empty() {
                return Err(ConfigError::invalid(
                    format!("{at}.name"),
                    "must not be empty",
                ));
            }
            if !seen.insert(vm.name.as_str()) {
                return Err(ConfigError::duplicate(
                    format!("{at}.name"),
                    format!("virtual model `{}`", vm.name),
                ));
            }
            vm.validate(&at)?;
        }
        Ok(())
    }
}

impl Validate for RoutingConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        RoutingConfig::validate(self)
    }
}

impl VirtualModel {
    fn validate(&self, at: &str) -> Result<(), ConfigError> {
        if self.targets.is_empty() {
            return Err(ConfigError::invalid(
                format!("{at}.targets"),
                "at least one target is required",
            ));
        }
        let mut clusters = std::collections::HashSet::new();
        for (j, t) in self.targets.iter().enumerate() {
            let tat = format!("{at}.targets[{j}]");
            match t.target.split_once('/') {
                Some((a, m)) if !a.is_empty() && !m.is_empty() => {}
                _ => {
                    return Err(ConfigError::invalid(
                        format!("{tat}.target"),
                        format!("expected `account/model`, got `{}`", t.target),
                    ))
                }
            }
            if t.cluster.is_empty() {
                return Err(ConfigError::invalid(
                    format!("{tat}.cluster"),
                    "must not be empty",
                ));
            }
            // The upstream instance tells targets apart by cluster.
            if !clusters.insert(t.cluster.as_str()) {
                return Err(ConfigError::invalid(
                    format!("{tat}.cluster"),
                    format!("`{}` serves two targets of one virtual model", t.cluster),
                ));
            }
            if t.fallback_cluster.as_deref() == Some("") {
                return Err(ConfigError::invalid(
                    format!("{tat}.fallback_cluster"),
                    "must not be empty",
                ));
            }
            if self.targets.iter().any(|o| o.fallback_cluster.is_some())
                && t.fallback_cluster.is_none()
            {
                return Err(ConfigError::missing(
                    format!("{tat}.fallback_cluster"),
                    "set on some targets, so required on all",
                ));
            }
        }
        if self.strategy == Strategy::Weighted && self.targets.iter().all(|t| t.weight == 0) {
            return Err(ConfigError::invalid(
                format!("{at}.targets"),
                "all weights are 0",
            ));
        }
        let l = &self.latency;
        if l.window_s == 0 {
            return Err(ConfigError::invalid(
                format!("{at}.latency.window_s"),
                "must be > 0",
            ));
        }
        if !(l.equal_within >= 1.0 && l.equal_within.is_finite()) {
            return Err(ConfigError::invalid(
                format!("{at}.latency.equal_within"),
                "must be >= 1",
            ));
        }
        if !(0.0..=1.0).contains(&l.explore_ratio) {
            return Err(ConfigError::invalid(
                format!("{at}.latency.explore_ratio"),
                "must be within 0..1",
            ));
        }
        if let Some(s) = &self.sla {
            if !(s.max_ms_per_token > 0.0 && s.max_ms_per_token.is_finite()) {
                return Err(ConfigError::invalid(
                    format!("{at}.sla.max_ms_per_token"),
                    "must be > 0",
                ));
            }
            if s.window_s == 0 {
                return Err(ConfigError::invalid(
                    format!("{at}.sla.window_s"),
                    "must be > 0",
                ));
            }
        }
        if let Some(s) = &self.sticky {
            if s.header.is_empty() || s.header.bytes().any(|b| b.is_ascii_uppercase()) {
                return Err(ConfigError::invalid(
                    format!("{at}.sticky.header"),
                    "must be a non-empty lowercase header name",
                ));
            }
            if s.ttl_s == 0 {
                return Err(ConfigError::invalid(
                    format!("{at}.sticky.ttl_s"),
                    "must be > 0",
                ));
            }
        }
        let r = &self.retry;
        if r.attempts_per_target == 0 {
            return Err(ConfigError::invalid(
                format!("{at}.retry.attempts_per_target"),
                "must be >= 1",
            ));
        }
        for (k, s) in r.retry_on.iter().chain(&r.fallback_on).enumerate() {
            if !(400..=599).contains(s) {
                return Err(ConfigError::invalid(
                    format!("{at}.retry"),
                    format!("status #{k} ({s}) is not a 4xx/5xx"),
                ));
            }
        }
        Ok(())
    }

    /// Index of the target served by `cluster`.
    pub fn target_by_cluster(&self, cluster: &str) -> Option<usize> {
        self.targets.iter().position(|t| t.cluster == cluster)
    }

    /// Target indexes ordered by priority, then configuration order.
    pub fn by_priority(&self) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..self.targets.len()).collect();
        idx.sort_by_key(|&i| (self.targets[i].priority, i));
        idx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: serde_json::Value) -> Result<(), String> {
        let c: RoutingConfig = serde_json::from_value(v).map_err(|e| e.to_string())?;
        c.validate().map_err(|e| e.to_string())
    }

    #[test]
    fn accepts_minimal_and_names_bad_fields() {
        let t =
            |target: &str, cluster: &str| serde_json::json!({"target": target, "cluster": cluster});
        assert!(parse(
            serde_json::json!({"virtual_models": [{"name": "vm", "targets": [t("a/m", "ca")]}]})
        )
        .is_ok());
        let e = parse(
            serde_json::json!({"virtual_models": [{"name": "vm", "targets": [t("am", "ca")]}]}),
        )
        .unwrap_err();
        assert!(e.starts_with("virtual_models[0].targets[0].target"), "{e}");
        let e = parse(serde_json::json!({"virtual_models": [{"name": "vm", "targets": [t("a/m", "c"), t("b/m", "c")]}]})).unwrap_err();
        assert!(e.starts_with("virtual_models[0].targets[1].cluster"), "{e}");
        let e = parse(serde_json::json!({"virtual_models": [{"name": "vm", "targets": []}]}))
            .unwrap_err();
        assert!(e.contains("targets"), "{e}");
        let e = parse(serde_json::json!({"virtual_models": [{"name": "vm", "targets": [t("a/m", "c")], "sticky": {"header": "X-S", "ttl_s": 1}}]})).unwrap_err();
        assert!(e.contains("sticky.header"), "{e}");
        assert!(parse(serde_json::json!({"virtual_models": [], "bogus": 1})).is_err());
    }

    #[test]
    fn target_parts() {
        let t: Target = serde_json::from_value(
            serde_json::json!({"target": "acct/meta/llama", "cluster": "c"}),
        )
        .unwrap();
        assert_eq!(
            (t.backend(), t.model(), t.route_cluster()),
            ("acct", "meta/llama", "c")
        );
    }
}
