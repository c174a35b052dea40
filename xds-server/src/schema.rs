//! The JSON schema of gateway.yaml, generated from the model (committed as
//! `docs/gateway.schema.json`; a test keeps the two equal).

/// Pretty-printed schema.
pub fn json() -> String {
    let schema = schemars::schema_for!(crate::model::Gateway);
    serde_json::to_string_pretty(&schema).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn committed_schema_matches_the_model() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/gateway.schema.json");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed.trim_end() == super::json(),
            "docs/gateway.schema.json is stale: run `aimesh-xds schema > docs/gateway.schema.json`"
        );
    }
}
