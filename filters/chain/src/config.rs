//! The chain's configuration: one optional section per stage, each the standalone filter's own
//! configuration, plus `stage_timings`. An absent section leaves that stage out.

use serde_json::{Map, Value};

use aimesh_host::StageError;

use crate::STAGES;

/// `{"auth": {...}, "pii-redaction": {...}, ..., "stage_timings": false}`.
#[derive(Debug, Default)]
pub struct ChainConfig {
    sections: Map<String, Value>,
    /// Count the time each stage spends in each callback (`aimesh.chain.<stage>.<phase>.ns`
    /// and `.calls` counters). Off by default: it adds a few µs per stage.
    pub stage_timings: bool,
}

fn invalid(msg: String) -> StageError {
    StageError::Config(msg)
}

impl ChainConfig {
    /// Parses and validates the chain configuration (sections are validated by their stages).
    pub fn parse(raw: &[u8]) -> Result<Self, StageError> {
        let raw = if raw.iter().all(u8::is_ascii_whitespace) {
            b"{}".as_slice()
        } else {
            raw
        };
        let mut sections: Map<String, Value> =
            serde_json::from_slice(raw).map_err(|e| invalid(e.to_string()))?;
        let stage_timings = match sections.remove("stage_timings") {
            None => false,
            Some(Value::Bool(b)) => b,
            Some(_) => return Err(invalid("stage_timings: expected a boolean".into())),
        };
        // Stage names live in the table only: a section is valid when a stage bears its name.
        if let Some(unknown) = sections.keys().find(|k| !STAGES.iter().any(|d| d.name == *k)) {
            let expected: Vec<&str> = STAGES.iter().map(|d| d.name).collect();
            return Err(invalid(format!(
                "unknown field `{unknown}`, expected one of {}, stage_timings",
                expected.join(", ")
            )));
        }
        if sections.is_empty() {
            let names: Vec<&str> = STAGES.iter().map(|d| d.name).collect();
            return Err(invalid(format!(
                "no stage configured: give at least one of {}",
                names.join(", ")
            )));
        }
        if let Some(Value::Object(vm)) = sections.get("virtual-model") {
            if vm.get("role").and_then(Value::as_str) == Some("upstream") {
                return Err(invalid(
                    "virtual-model.role: the chain runs downstream; load \
                     aimesh_virtual_model.wasm in the cluster's http_filters for `upstream`"
                        .into(),
                ));
            }
        }
        Ok(ChainConfig {
            sections,
            stage_timings,
        })
    }

    /// The JSON of one stage's section, when configured.
    pub fn section(&self, name: &str) -> Option<Vec<u8>> {
        self.sections
            .get(name)
            .and_then(|v| serde_json::to_vec(v).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_unknown_names_and_roles() {
        let c = ChainConfig::parse(br#"{"auth": {"keys": []}, "header-auth": {}}"#);
        let c = c.expect("valid");
        assert_eq!(c.section("auth").as_deref(), Some(&br#"{"keys":[]}"#[..]));
        assert_eq!(c.section("pii-redaction"), None);
        assert!(!c.stage_timings);
        let err = ChainConfig::parse(br#"{"auht": {}}"#).expect_err("unknown");
        assert!(err.to_string().contains("unknown field `auht`"), "{err}");
        assert!(ChainConfig::parse(b"{}").is_err());
        assert!(ChainConfig::parse(br#"{"virtual-model": {"role": "upstream"}}"#).is_err());
        assert!(ChainConfig::parse(br#"{"auth": {}, "stage_timings": 1}"#).is_err());
        let t = ChainConfig::parse(br#"{"auth": {}, "stage_timings": true}"#).expect("valid");
        assert!(t.stage_timings);
    }
}
