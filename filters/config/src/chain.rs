//! The chain's configuration: one optional section per stage, each the standalone filter's own
//! configuration type. An absent section leaves that stage out.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::accounting::TokenAccountingConfig;
use crate::auth::AuthConfig;
use crate::mcp::McpConfig;
use crate::pii::PiiConfig;
use crate::routing::{Role, RoutingConfig};
use crate::{endpoints, ConfigError, Validate};

/// Stages in chain order (the order `make run` configures the five filters).
pub const STAGES: [&str; 6] = [
    "auth",
    "mcp",
    "pii-redaction",
    "virtual-model",
    "token-accounting",
    "header-auth",
];

/// `{"auth": {...}, "pii-redaction": {...}, ...}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    /// Auth filter configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthConfig>,
    /// MCP governance stage configuration (only when MCP servers are configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp: Option<McpConfig>,
    /// PII-redaction filter configuration.
    #[serde(
        default,
        rename = "pii-redaction",
        skip_serializing_if = "Option::is_none"
    )]
    pub pii_redaction: Option<PiiConfig>,
    /// Virtual-model filter configuration (downstream role).
    #[serde(
        default,
        rename = "virtual-model",
        skip_serializing_if = "Option::is_none"
    )]
    pub virtual_model: Option<RoutingConfig>,
    /// Token-accounting filter configuration.
    #[serde(
        default,
        rename = "token-accounting",
        skip_serializing_if = "Option::is_none"
    )]
    pub token_accounting: Option<TokenAccountingConfig>,
    /// Header-auth filter configuration.
    #[serde(
        default,
        rename = "header-auth",
        skip_serializing_if = "Option::is_none"
    )]
    pub header_auth: Option<endpoints::Config>,
    /// Count the time each stage spends in each callback (`aimesh.chain.<stage>.<phase>.ns`
    /// and `.calls` counters). Off by default: it adds a few µs per stage.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stage_timings: bool,
}

impl ChainConfig {
    /// The JSON of one stage's section, when configured: what that stage's loader reads.
    pub fn section(&self, name: &str) -> Option<Vec<u8>> {
        let json = match name {
            "auth" => serde_json::to_vec(self.auth.as_ref()?),
            "mcp" => serde_json::to_vec(self.mcp.as_ref()?),
            "pii-redaction" => serde_json::to_vec(self.pii_redaction.as_ref()?),
            "virtual-model" => serde_json::to_vec(self.virtual_model.as_ref()?),
            "token-accounting" => serde_json::to_vec(self.token_accounting.as_ref()?),
            "header-auth" => serde_json::to_vec(self.header_auth.as_ref()?),
            _ => return None,
        };
        json.ok()
    }

    fn sections(&self) -> [(&'static str, Option<&dyn Validate>); 6] {
        [
            ("auth", self.auth.as_ref().map(|c| c as &dyn Validate)),
            ("mcp", self.mcp.as_ref().map(|c| c as _)),
            ("pii-redaction", self.pii_redaction.as_ref().map(|c| c as _)),
            ("virtual-model", self.virtual_model.as_ref().map(|c| c as _)),
            (
                "token-accounting",
                self.token_accounting.as_ref().map(|c| c as _),
            ),
            ("header-auth", self.header_auth.as_ref().map(|c| c as _)),
        ]
    }
}

impl Validate for ChainConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let sections = self.sections();
        if sections.iter().all(|(_, s)| s.is_none()) {
            return Err(ConfigError::missing(
                "",
                format!(
                    "no stage configured: give at least one of {}",
                    STAGES.join(", ")
                ),
            ));
        }
        if self
            .virtual_model
            .as_ref()
            .is_some_and(|vm| vm.role == Role::Upstream)
        {
            return Err(ConfigError::invalid(
                "virtual-model.role",
                "the chain runs downstream; load aimesh_virtual_model.wasm in the cluster's \
                 http_filters for `upstream`",
            ));
        }
        for (name, section) in sections {
            if let Some(s) = section {
                s.validate().map_err(|e| e.within(name))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(json: &str) -> Result<ChainConfig, String> {
        let c: ChainConfig = serde_json::from_str(json).map_err(|e| e.to_string())?;
        c.validate().map(|()| c).map_err(|e| e.to_string())
    }

    #[test]
    fn sections_unknown_names_and_roles() {
        let c = load(r#"{"auth": {"keys": []}, "header-auth": {}}"#).expect("valid");
        let auth: serde_json::Value =
            serde_json::from_slice(&c.section("auth").unwrap_or_default()).unwrap_or_default();
        assert_eq!(auth["keys"], serde_json::json!([]));
        assert_eq!(c.section("pii-redaction"), None);
        assert!(load(r#"{"auht": {}}"#)
            .unwrap_err()
            .contains("unknown field `auht`"));
        assert!(load("{}").unwrap_err().starts_with("no stage configured"));
        let e = load(r#"{"virtual-model": {"role": "upstream"}}"#).unwrap_err();
        assert!(e.starts_with("virtual-model.role:"), "{e}");
        let e = load(r#"{"auth": {"keys": [{"id": "a", "hash": "sha256:zz"}]}}"#).unwrap_err();
        assert!(e.starts_with("auth.keys[0].hash:"), "{e}");
    }
}
