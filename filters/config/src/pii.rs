//! PII-redaction filter configuration: detectors, named policies and the rules that pick one
//! per request.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{ConfigError, Validate};

/// Type name of deny-word matches.
pub const DENY_WORD: &str = "DENY_WORD";

/// The built-in PII types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PiiType {
    /// E-mail address.
    Email,
    /// Phone number, international or national.
    Phone,
    /// Payment card number (Luhn-valid).
    CreditCard,
    /// US social security number.
    UsSsn,
    /// International bank account number (mod-97 valid).
    Iban,
    /// IPv4 or IPv6 address.
    IpAddress,
    /// API tokens, cloud keys, JWTs, private keys.
    Secret,
}

impl PiiType {
    /// Every built-in type, in label order.
    pub const ALL: [PiiType; 7] = [
        PiiType::Email,
        PiiType::Phone,
        PiiType::CreditCard,
        PiiType::UsSsn,
        PiiType::Iban,
        PiiType::IpAddress,
        PiiType::Secret,
    ];

    /// Name used in config, placeholders, metrics and errors.
    pub fn name(self) -> &'static str {
        match self {
            PiiType::Email => "EMAIL",
            PiiType::Phone => "PHONE",
            PiiType::CreditCard => "CREDIT_CARD",
            PiiType::UsSsn => "US_SSN",
            PiiType::Iban => "IBAN",
            PiiType::IpAddress => "IP_ADDRESS",
            PiiType::Secret => "SECRET",
        }
    }

    /// Label index (position in [`PiiType::ALL`]).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// What to do with a detected value.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Replace with a numbered typed placeholder, `[EMAIL_1]`.
    Mask,
    /// Replace with a keyed pseudonym, `[EMAIL_3f9a0c12d4e5]`, stable for the same value.
    Hash,
    /// Refuse the request with 400 `pii_detected`.
    Block,
    /// Leave the value as it is.
    Allow,
}

impl Action {
    /// Name for metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            Action::Mask => "mask",
            Action::Hash => "hash",
            Action::Block => "block",
            Action::Allow => "allow",
        }
    }
}

fn default_mask() -> Action {
    Action::Mask
}

fn yes() -> bool {
    true
}

/// The whole filter configuration (plugin `configuration` JSON).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PiiConfig {
    /// Named policies. Without any, one policy `default` masks every type.
    #[serde(default)]
    pub policies: BTreeMap<String, PolicyConfig>,
    /// Policy used when no rule matches; defaults to `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_policy: Option<String>,
    /// Rules choosing a policy per request, first match wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleConfig>,
    /// Operator-defined detectors: a type name and a regex (`regex` crate syntax).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patterns: Vec<PatternConfig>,
    /// Words (case-insensitive, whole words) reported as type `DENY_WORD`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny_words: Vec<String>,
    /// HMAC-SHA256 key of the `hash` action. Required when any policy uses `hash`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_key: Option<String>,
}

/// One policy: an action per type and what to do with responses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Action per type name (`EMAIL`, ..., a pattern name, `DENY_WORD`).
    #[serde(default)]
    pub actions: BTreeMap<String, Action>,
    /// Action for types not listed in `actions`.
    #[serde(default = "default_mask")]
    pub default_action: Action,
    /// Put original values back for placeholders the model echoes in its response.
    #[serde(default)]
    pub restore: bool,
    /// Mask PII the model itself returns (responses, streamed or not).
    #[serde(default = "yes")]
    pub redact_responses: bool,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            actions: BTreeMap::new(),
            default_action: Action::Mask,
            restore: false,
            redact_responses: true,
        }
    }
}

/// Picks a policy when every condition given matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Envoy route name (`xds.route_name`) must equal this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_name: Option<String>,
    /// Request path must start with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// Request header must be present with this exact value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<HeaderMatch>,
    /// Policy to apply.
    pub policy: String,
}

/// A header condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    /// Header name (lowercase).
    pub name: String,
    /// Exact value.
    pub value: String,
}

/// An operator-defined detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PatternConfig {
    /// Type name used in placeholders, actions and metrics (`[A-Z0-9_]+`).
    pub name: String,
    /// Regular expression.
    pub regex: String,
}

/// Names a config may use as types.
pub fn type_names(cfg: &PiiConfig) -> Vec<String> {
    let mut names: Vec<String> = PiiType::ALL.iter().map(|t| t.name().to_string()).collect();
    names.extend(cfg.patterns.iter().map(|p| p.name.clone()));
    names.push(DENY_WORD.to_string());
    names
}

impl PiiConfig {
    /// Checks names, references and patterns; `Err` names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let names = type_names(self);
        for (i, p) in self.patterns.iter().enumerate() {
            let ok = !p.name.is_empty()
                && p.name
                    .bytes()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_');
            if !ok {
                return Err(ConfigError::invalid(
                    format!("patterns[{i}].name"),
                    "must match [A-Z0-9_]+",
                ));
            }
            if names.iter().filter(|n| **n == p.name).count() > 1 {
                return Err(ConfigError::duplicate(
                    format!("patterns[{i}].name"),
                    format!("type name {}", p.name),
                ));
            }
            if let Err(e) = regex::Regex::new(&p.regex) {
                return Err(ConfigError::invalid(
                    format!("patterns[{i}].regex"),
                    e.to_string(),
                ));
            }
        }
        for (i, w) in self.deny_words.iter().enumerate() {
            if w.trim().is_empty() {
                return Err(ConfigError::invalid(
                    format!("deny_words[{i}]"),
                    "empty word",
                ));
            }
        }
        let mut uses_hash = false;
        for (name, p) in &self.policies {
            for (t, a) in &p.actions {
                if !names.contains(t) {
                    return Err(ConfigError::unknown(
                        format!("policies.{name}.actions.{t}"),
                        "unknown type",
                    ));
                }
                uses_hash |= *a == Action::Hash;
            }
            uses_hash |= p.default_action == Action::Hash;
        }
        if uses_hash && self.hash_key.as_deref().is_none_or(|k| k.len() < 16) {
            return Err(ConfigError::missing(
                "hash_key",
                "required (at least 16 bytes) when a policy uses hash",
            ));
        }
        let known =
            |p: &str| self.policies.contains_key(p) || (self.policies.is_empty() && p == "default");
        if let Some(d) = &self.default_policy {
            if !known(d) {
                return Err(ConfigError::unknown(
                    "default_policy",
                    format!("unknown policy {d}"),
                ));
            }
        } else if !self.policies.is_empty() && !self.policies.contains_key("default") {
            return Err(ConfigError::missing(
                "default_policy",
                "required when no policy is named `default`",
            ));
        }
        for (i, r) in self.rules.iter().enumerate() {
            if !known(&r.policy) {
                return Err(ConfigError::unknown(
                    format!("rules[{i}].policy"),
                    format!("unknown policy {}", r.policy),
                ));
            }
        }
        Ok(())
    }
}

impl Validate for PiiConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        PiiConfig::validate(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<(), String> {
        serde_json::from_str::<PiiConfig>(s)
            .map_err(|e| e.to_string())
            .and_then(|c| c.validate().map_err(|e| e.to_string()))
    }

    #[test]
    fn validation_names_the_field() {
        assert!(parse("{}").is_ok());
        assert!(parse(r#"{"bogus": 1}"#).is_err());
        let e = parse(r#"{"policies":{"default":{"actions":{"EMAIL":"hash"}}}}"#).unwrap_err();
        assert!(e.starts_with("hash_key"), "{e}");
        let e = parse(r#"{"policies":{"default":{"actions":{"NOPE":"mask"}}}}"#).unwrap_err();
        assert!(e.contains("policies.default.actions.NOPE"), "{e}");
        let e = parse(r#"{"patterns":[{"name":"EMP","regex":"("}]}"#).unwrap_err();
        assert!(e.starts_with("patterns[0].regex"), "{e}");
        let e = parse(r#"{"rules":[{"path_prefix":"/x","policy":"strict"}]}"#).unwrap_err();
        assert!(e.starts_with("rules[0].policy"), "{e}");
        assert!(parse(r#"{"policies":{"a":{}}}"#)
            .unwrap_err()
            .starts_with("default_policy"));
    }
}
