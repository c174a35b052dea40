//! Custom request metadata: a request header holding a JSON object of string values (a project,
//! a feature, a ticket) that lands in the audit log and, for the keys configured as labels, on
//! the GenAI metrics. gateway.yaml's `metadata` section is this type.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{ConfigError, Validate};

/// Default [`MetadataConfig::header`].
pub const DEFAULT_HEADER: &str = "x-gateway-metadata";
/// Most keys that may be metric labels (each multiplies the GenAI series).
pub const MAX_LABELS: usize = 4;

/// Where custom metadata comes from and what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetadataConfig {
    /// Request header carrying the JSON object (lowercase; not an `x-aimesh-*` name, which
    /// the gateway strips, nor a credential or hop header). It is removed before the provider.
    #[serde(default = "default_header")]
    pub header: String,
    /// Keys a request may send; empty: any key of the name syntax (`[a-z][a-z0-9_]*`, at most
    /// 64 bytes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    /// Keys whose values become labels of the GenAI metrics (`meta_<key>`; at most 4). A
    /// request without one has `unknown` there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// Most keys in one request's object (1 to 64).
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
    /// Longest value, bytes (1 to 1024).
    #[serde(default = "default_max_value_bytes")]
    pub max_value_bytes: usize,
    /// Longest header value, bytes (2 to 16384).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
}

fn default_header() -> String {
    DEFAULT_HEADER.into()
}
fn default_max_keys() -> usize {
    8
}
fn default_max_value_bytes() -> usize {
    256
}
fn default_max_bytes() -> usize {
    2048
}

impl Default for MetadataConfig {
    fn default() -> Self {
        Self {
            header: default_header(),
            keys: Vec::new(),
            labels: Vec::new(),
            max_keys: default_max_keys(),
            max_value_bytes: default_max_value_bytes(),
            max_bytes: default_max_bytes(),
        }
    }
}

/// A metadata key: `[a-z][a-z0-9_]*`, 1 to 64 bytes (safe as a metric label name part).
pub fn valid_key(k: &str) -> bool {
    k.len() <= 64
        && k.bytes().next().is_some_and(|c| c.is_ascii_lowercase())
        && k.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
}

/// Headers the metadata may not be read from: credentials, the gateway's own, hop headers.
fn reserved(h: &str) -> bool {
    h.starts_with(crate::endpoints::creds::INTERNAL_PREFIX)
        || h.starts_with(':')
        || [
            "authorization",
            "x-api-key",
            "api-key",
            "cookie",
            "host",
            "content-type",
            "content-length",
            "transfer-encoding",
            "connection",
            "te",
        ]
        .contains(&h)
}

impl Validate for MetadataConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let h = &self.header;
        let token = !h.is_empty()
            && h.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_');
        if !token {
            return Err(ConfigError::invalid(
                "header",
                "must be a lowercase header name (a-z, 0-9, '-', '_')",
            ));
        }
        if reserved(h) {
            return Err(ConfigError::invalid(
                "header",
                "must not be an x-aimesh-* name, a credential or a hop header",
            ));
        }
        for (field, list) in [("keys", &self.keys), ("labels", &self.labels)] {
            for (i, k) in list.iter().enumerate() {
                if !valid_key(k) {
                    return Err(ConfigError::invalid(
                        format!("{field}[{i}]"),
                        "must be 1-64 of a-z, 0-9, '_', starting with a letter",
                    ));
                }
                if list[..i].contains(k) {
                    return Err(ConfigError::duplicate(format!("{field}[{i}]"), k.clone()));
                }
            }
        }
        if let Some(i) = self
            .labels
            .iter()
            .position(|l| !self.keys.is_empty() && !self.keys.contains(l))
        {
            return Err(ConfigError::unknown(
                format!("labels[{i}]"),
                "a label must be one of `keys`",
            ));
        }
        if self.labels.len() > MAX_LABELS {
            return Err(ConfigError::invalid("labels", "at most 4 keys"));
        }
        for (field, v, range) in [
            ("max_keys", self.max_keys, 1..=64),
            ("max_value_bytes", self.max_value_bytes, 1..=1024),
            ("max_bytes", self.max_bytes, 2..=16384),
        ] {
            if !range.contains(&v) {
                let (lo, hi) = range.into_inner();
                return Err(ConfigError::invalid(
                    field,
                    format!("must be between {lo} and {hi}"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_naming_the_field() {
        assert!(MetadataConfig::default().validate().is_ok());
        let field = |c: MetadataConfig| c.validate().unwrap_err().field;
        let with = |f: fn(&mut MetadataConfig)| {
            let mut c = MetadataConfig::default();
            f(&mut c);
            c
        };
        assert_eq!(field(with(|c| c.header = "X-Meta".into())), "header");
        assert_eq!(field(with(|c| c.header = "x-aimesh-meta".into())), "header");
        assert_eq!(field(with(|c| c.header = "authorization".into())), "header");
        assert_eq!(
            field(with(|c| c.keys = vec!["ok".into(), "Bad".into()])),
            "keys[1]"
        );
        assert_eq!(
            field(with(|c| c.keys = vec!["a".into(), "a".into()])),
            "keys[1]"
        );
        let label_not_key = with(|c| {
            c.keys = vec!["a".into()];
            c.labels = vec!["b".into()];
        });
        assert_eq!(field(label_not_key), "labels[0]");
        assert_eq!(field(with(|c| c.max_keys = 0)), "max_keys");
        assert_eq!(field(with(|c| c.max_bytes = 1 << 20)), "max_bytes");
        let json = r#"{"header":"x-meta","labels":["team_tag"],"typo":1}"#;
        assert!(serde_json::from_str::<MetadataConfig>(json).is_err());
    }
}
