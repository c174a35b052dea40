//! Custom request metadata: the JSON object a client sends in the configured header, checked
//! against `aimesh_config::metadata::MetadataConfig` (key syntax and allow-list, counts and
//! sizes) before it reaches the audit log and the metric labels.

use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;

pub use aimesh_config::metadata::{valid_key, MetadataConfig};

use crate::error::ErrorKind;

/// Why a metadata header was refused (400 `invalid_metadata`, the message naming the problem).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{header}: {problem}")]
pub struct MetadataError {
    /// The header's name.
    pub header: String,
    /// What is wrong, never quoting a value.
    pub problem: String,
}

impl ErrorKind for MetadataError {
    fn status(&self) -> u16 {
        400
    }

    fn code(&self) -> &'static str {
        "invalid_metadata"
    }
}

/// The members of a JSON object in order, duplicates kept (so they can be refused).
struct Members(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Members, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, serde_json::Value>()? {
                    out.push((k, v));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// The checked `(key, value)` pairs of a header value, sorted by key.
pub fn parse(cfg: &MetadataConfig, raw: &[u8]) -> Result<Vec<(String, String)>, MetadataError> {
    let fail = |problem: String| MetadataError {
        header: cfg.header.clone(),
        problem,
    };
    if raw.len() > cfg.max_bytes {
        return Err(fail(format!("longer than {} bytes", cfg.max_bytes)));
    }
    let Members(members) = serde_json::from_slice(raw)
        .map_err(|_| fail("must be a JSON object of string values".into()))?;
    if members.len() > cfg.max_keys {
        return Err(fail(format!("more than {} keys", cfg.max_keys)));
    }
    let mut out: Vec<(String, String)> = Vec::with_capacity(members.len());
    for (k, v) in members {
        if !valid_key(&k) {
            return Err(fail(
                "keys must be 1-64 of a-z, 0-9, '_', starting with a letter".into(),
            ));
        }
        if !cfg.keys.is_empty() && !cfg.keys.contains(&k) {
            return Err(fail(format!("key '{k}' is not allowed")));
        }
        if out.iter().any(|(o, _)| *o == k) {
            return Err(fail(format!("key '{k}' appears twice")));
        }
        let serde_json::Value::String(v) = v else {
            return Err(fail(format!("the value of '{k}' must be a string")));
        };
        if v.len() > cfg.max_value_bytes {
            return Err(fail(format!(
                "the value of '{k}' is longer than {} bytes",
                cfg.max_value_bytes
            )));
        }
        if v.chars().any(char::is_control) {
            return Err(fail(format!(
                "the value of '{k}' contains control characters"
            )));
        }
        out.push((k, v));
    }
    out.sort();
    Ok(out)
}

/// The pairs as the audit log's `metadata` value: a JSON object's text.
pub fn audit_text(pairs: &[(String, String)]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = pairs
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    serde_json::Value::Object(map).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> MetadataConfig {
        MetadataConfig {
            keys: vec!["project".into(), "feature".into()],
            max_keys: 2,
            max_value_bytes: 8,
            max_bytes: 100,
            ..MetadataConfig::default()
        }
    }

    #[test]
    fn accepts_a_small_object_sorted() {
        let p = parse(&cfg(), br#"{"project":"apollo","feature":"chat"}"#).unwrap();
        assert_eq!(
            p,
            [
                ("feature".into(), "chat".into()),
                ("project".into(), "apollo".into())
            ]
        );
        assert_eq!(audit_text(&p), r#"{"feature":"chat","project":"apollo"}"#);
        assert_eq!(parse(&cfg(), b"{}").unwrap(), []);
    }

    #[test]
    fn refuses_naming_the_problem_without_the_value() {
        let msg = |raw: &str| parse(&cfg(), raw.as_bytes()).unwrap_err().to_string();
        assert_eq!(
            msg("[1]"),
            "x-gateway-metadata: must be a JSON object of string values"
        );
        assert!(msg("{").contains("JSON object"));
        assert!(msg(r#"{"other":"x"}"#).contains("'other' is not allowed"));
        assert!(msg(r#"{"Project":"x"}"#).contains("keys must be"));
        assert!(msg(r#"{"project":"x","project":"y"}"#).contains("twice"));
        assert!(msg(r#"{"project":1}"#).contains("must be a string"));
        let long = msg(r#"{"project":"secret-value-123"}"#);
        assert!(
            long.contains("longer than 8") && !long.contains("secret"),
            "{long}"
        );
        assert!(msg(r#"{"project":"a\nb"}"#).contains("control"));
        assert!(msg(r#"{"project":"a","feature":"b","x":"c"}"#).contains("more than 2"));
        assert!(msg(&format!(r#"{{"project":"{}"}}"#, "a".repeat(100))).contains("100 bytes"));
        let open = MetadataConfig::default();
        assert!(parse(&open, br#"{"anything_1":"v"}"#).is_ok());
    }
}
