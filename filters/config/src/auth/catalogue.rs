//! `catalogue` of the auth config: the models the gateway serves and where provider models go.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// Longest model name a request or the catalogue may carry.
pub const MAX_MODEL_LEN: usize = 256;

/// `catalogue` of the auth config.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CatalogueConfig {
    /// Every model the gateway serves by name: provider models (with a `route`) and virtual
    /// models (without: the virtual-model filter routes them).
    #[serde(default)]
    pub models: Vec<CatalogueModel>,
    /// Where a model not listed goes (the default provider); none: such a request gets 404
    /// `model_not_found`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_route: Option<ModelRoute>,
}

/// One model of the catalogue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CatalogueModel {
    /// The name clients put in `model`.
    pub id: String,
    /// `owned_by` in the model list (the provider's name, `aimesh` for a virtual model).
    pub owned_by: String,
    /// For a provider model: where its requests go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<ModelRoute>,
}

/// Where a request goes: published as `x-aimesh-cluster` and `x-aimesh-backend`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelRoute {
    /// Envoy cluster (`provider.<name>`).
    pub cluster: String,
    /// Provider account whose credentials header-auth injects.
    pub backend: String,
}

/// A model name as a request or the catalogue may carry it.
pub fn check_model_name(m: &str) -> Result<(), String> {
    if m.is_empty() || m.len() > MAX_MODEL_LEN || m.chars().any(char::is_control) {
        return Err(format!(
            "must be 1 to {MAX_MODEL_LEN} bytes without control characters"
        ));
    }
    Ok(())
}

/// Header values must be visible ASCII: anything else would make Envoy refuse the header.
fn check_header_value(field: String, v: &str) -> Result<(), ConfigError> {
    if v.is_empty() || !v.bytes().all(|c| c.is_ascii_graphic()) {
        return Err(ConfigError::invalid(
            field,
            "must be non-empty visible ASCII",
        ));
    }
    Ok(())
}

fn check_route(r: &ModelRoute, at: &str) -> Result<(), ConfigError> {
    check_header_value(format!("{at}.cluster"), &r.cluster)?;
    check_header_value(format!("{at}.backend"), &r.backend)
}

impl CatalogueConfig {
    /// Semantic checks; `Err` names the field (`catalogue.models[1].id`).
    pub fn check(&self) -> Result<(), ConfigError> {
        let mut ids = std::collections::HashSet::new();
        for (i, m) in self.models.iter().enumerate() {
            let at = format!("catalogue.models[{i}]");
            check_model_name(&m.id).map_err(|e| ConfigError::invalid(format!("{at}.id"), e))?;
            if !ids.insert(m.id.as_str()) {
                return Err(ConfigError::duplicate(
                    format!("{at}.id"),
                    format!("model '{}'", m.id),
                ));
            }
            if m.owned_by.is_empty() {
                return Err(ConfigError::invalid(
                    format!("{at}.owned_by"),
                    "must not be empty",
                ));
            }
            if let Some(r) = &m.route {
                check_route(r, &format!("{at}.route"))?;
            }
        }
        if let Some(r) = &self.default_route {
            check_route(r, "catalogue.default_route")?;
        }
        Ok(())
    }
}
