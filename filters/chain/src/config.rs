//! The chain's configuration: the typed [`aimesh_config::chain::ChainConfig`] (each section the
//! stage's own config type, validated as that stage validates it), loaded for the pipeline.

use aimesh_config::chain::ChainConfig;
use aimesh_host::{load_config, StageError};

/// Parses and validates the chain configuration (an empty one is `{}`, which names no stage).
pub fn parse(raw: &[u8]) -> Result<ChainConfig, StageError> {
    load_config::<ChainConfig>(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::STAGES;

    #[test]
    fn sections_unknown_names_and_roles() {
        let c = parse(br#"{"auth": {"keys": []}, "header-auth": {}}"#).expect("valid");
        assert!(c.section("auth").is_some() && c.section("header-auth").is_some());
        assert_eq!(c.section("pii-redaction"), None);
        assert!(!c.stage_timings);
        let err = parse(br#"{"auht": {}}"#).expect_err("unknown");
        assert!(err.to_string().contains("unknown field `auht`"), "{err}");
        assert!(parse(b"{}").is_err());
        assert!(parse(br#"{"virtual-model": {"role": "upstream"}}"#).is_err());
        let t = parse(br#"{"auth": {}, "stage_timings": true}"#).expect("valid");
        assert!(t.stage_timings);
    }

    #[test]
    fn the_config_sections_are_the_table_of_stages() {
        // The typed config names its sections; the table names the stages: one list.
        let names: Vec<&str> = STAGES.iter().map(|d| d.name).collect();
        assert_eq!(names, aimesh_config::chain::STAGES);
    }
}
