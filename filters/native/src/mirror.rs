//! Nested dynamic metadata, read through a filter-state mirror.
//!
//! The ABI's metadata getters return only top-level strings, numbers and bools of a namespace,
//! while some producers write a nested struct: `jwt_authn`'s `payload_in_metadata` puts the
//! whole verified payload under one key, and auth reads `sub` and the groups claim inside it.
//! Envoy's own `set_filter_state` filter can copy that value as JSON into a string filter state
//! (which the ABI reads), so the gateway config places one after the producer:
//!
//! ```yaml
//! - name: envoy.filters.http.set_filter_state
//!   typed_config:
//!     "@type": type.googleapis.com/envoy.extensions.filters.http.set_filter_state.v3.Config
//!     on_request_headers:
//!     - object_key: aimesh.metadata.envoy.filters.http.jwt_authn.jwt_payload
//!       factory_key: envoy.string
//!       format_string:
//!         json_format: { value: "%DYNAMIC_METADATA(envoy.filters.http.jwt_authn:jwt_payload)%" }
//! ```
//!
//! A client cannot write filter state, so the mirror is as trustworthy as the metadata.
//! Values come back as the Wasm host serializes properties, so a stage reads either build
//! alike: a string as its bytes, a list as proxy-wasm pairs with the elements as keys.

use serde_json::Value;

/// The filter-state key that mirrors dynamic metadata `ns:key`.
pub fn key(ns: &str, key: &str) -> String {
    format!("aimesh.metadata.{ns}.{key}")
}

/// The value at `path` inside a mirror (`{"value": <metadata value>}`, as `json_format`
/// writes it); `None` when the metadata was absent or the path leads nowhere.
pub fn lookup(mirror: &[u8], path: &[&str]) -> Option<Vec<u8>> {
    let doc: Value = serde_json::from_slice(mirror).ok()?;
    let mut at = doc.get("value")?;
    for step in path {
        at = at.get(step)?;
    }
    serialize(at)
}

fn serialize(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.as_bytes().to_vec()),
        Value::Array(items) => Some(pairs(items)),
        // Structs, numbers and bools: nothing reads their bytes; present is what matters.
        other => Some(other.to_string().into_bytes()),
    }
}

/// Proxy-wasm's map encoding with the list's elements as keys and empty values: `u32 n`,
/// `n × (u32 klen, u32 vlen)`, then each key and value NUL-terminated.
fn pairs(items: &[Value]) -> Vec<u8> {
    let words: Vec<String> = items
        .iter()
        .map(|i| match i {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    let mut out = Vec::new();
    out.extend(u32::try_from(words.len()).unwrap_or(u32::MAX).to_le_bytes());
    for w in &words {
        out.extend(u32::try_from(w.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend(0u32.to_le_bytes());
    }
    for w in &words {
        out.extend(w.as_bytes());
        out.extend([0, 0]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use aimesh_auth::jwt::parse_string_list;

    const PAYLOAD: &[u8] =
        br#"{"value":{"sub":"alice","groups":["ml-team","ops"],"team":"x","exp":17}}"#;

    #[test]
    fn the_key_names_namespace_and_key() {
        assert_eq!(
            key("envoy.filters.http.jwt_authn", "jwt_payload"),
            "aimesh.metadata.envoy.filters.http.jwt_authn.jwt_payload"
        );
    }

    #[test]
    fn claims_read_as_the_wasm_host_serializes_them() {
        assert!(
            lookup(PAYLOAD, &[]).is_some(),
            "a verified payload is present"
        );
        assert_eq!(lookup(PAYLOAD, &["sub"]).as_deref(), Some(&b"alice"[..]));
        let groups = lookup(PAYLOAD, &["groups"]).unwrap_or_default();
        assert_eq!(parse_string_list(&groups), ["ml-team", "ops"]);
        assert_eq!(
            parse_string_list(&lookup(PAYLOAD, &["team"]).unwrap_or_default()),
            ["x"]
        );
        assert!(lookup(PAYLOAD, &["exp"]).is_some());
    }

    #[test]
    fn absent_metadata_and_missing_claims_are_none() {
        // What `json_format` writes when no token was verified.
        assert_eq!(lookup(br#"{"value":null}"#, &[]), None);
        assert_eq!(lookup(br#"{"value":null}"#, &["sub"]), None);
        assert_eq!(lookup(PAYLOAD, &["nope"]), None);
        assert_eq!(lookup(PAYLOAD, &["sub", "deeper"]), None);
        assert_eq!(lookup(b"not json", &[]), None);
        assert_eq!(lookup(br#"{"other":1}"#, &[]), None);
    }

    #[test]
    fn an_empty_list_is_no_groups() {
        let b = lookup(br#"{"value":{"groups":[]}}"#, &["groups"]).unwrap_or_default();
        assert!(parse_string_list(&b).is_empty());
    }
}
