//! The chain's configuration: one optional section per stage, each the standalone filter's own
//! configuration. An absent section leaves that stage out.

use serde::Deserialize;
use serde_json::Value;

/// Stages in chain order (the order `make run` configures the five filters).
pub const STAGES: [&str; 5] = [
    "auth",
    "pii-redaction",
    "virtual-model",
    "token-accounting",
    "header-auth",
];

/// `{"auth": {...}, "pii-redaction": {...}, ...}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    /// Auth filter configuration.
    #[serde(default)]
    auth: Option<Value>,
    /// PII-redaction filter configuration.
    #[serde(default, rename = "pii-redaction")]
    pii_redaction: Option<Value>,
    /// Virtual-model filter configuration (downstream role).
    #[serde(default, rename = "virtual-model")]
    virtual_model: Option<Value>,
    /// Token-accounting filter configuration.
    #[serde(default, rename = "token-accounting")]
    token_accounting: Option<Value>,
    /// Header-auth filter configuration.
    #[serde(default, rename = "header-auth")]
    header_auth: Option<Value>,
    /// Count the time each stage spends in each callback (`aimesh.chain.<stage>.<phase>.ns`
    /// and `.calls` counters). Off by default: it adds a few µs per stage.
    #[serde(default)]
    pub stage_timings: bool,
}

impl ChainConfig {
    /// Parses and validates the chain configuration; logs one line naming the problem and
    /// returns `None`.
    pub fn load(raw: Option<&[u8]>) -> Option<Self> {
        aimesh_glue::load_config::<ChainConfig>("chain", raw)
    }

    fn value(&self, name: &str) -> Option<&Value> {
        match name {
            "auth" => self.auth.as_ref(),
            "pii-redaction" => self.pii_redaction.as_ref(),
            "virtual-model" => self.virtual_model.as_ref(),
            "token-accounting" => self.token_accounting.as_ref(),
            "header-auth" => self.header_auth.as_ref(),
            _ => None,
        }
    }

    /// The JSON of one stage's section, when configured.
    pub fn section(&self, name: &str) -> Option<Vec<u8>> {
        self.value(name).and_then(|v| serde_json::to_vec(v).ok())
    }
}

impl aimesh_glue::Validate for ChainConfig {
    fn validate(&self) -> Result<(), String> {
        if STAGES.iter().all(|name| self.value(name).is_none()) {
            return Err(format!(
                "no stage configured: give at least one of {}",
                STAGES.join(", ")
            ));
        }
        if let Some(Value::Object(vm)) = &self.virtual_model {
            if vm.get("role").and_then(Value::as_str) == Some("upstream") {
                return Err("virtual-model.role: the chain runs downstream; load \
                     aimesh_virtual_model.wasm in the cluster's http_filters for `upstream`"
                    .into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_unknown_names_and_roles() {
        let c = ChainConfig::load(Some(br#"{"auth": {"keys": []}, "header-auth": {}}"#));
        let c = c.expect("valid");
        assert_eq!(c.section("auth").as_deref(), Some(&br#"{"keys":[]}"#[..]));
        assert_eq!(c.section("pii-redaction"), None);
        assert!(ChainConfig::load(Some(br#"{"auht": {}}"#)).is_none());
        assert!(ChainConfig::load(Some(b"{}")).is_none());
        assert!(ChainConfig::load(Some(br#"{"virtual-model": {"role": "upstream"}}"#)).is_none());
    }
}
