//! Auth filter configuration.

use std::collections::HashMap;

use aimesh_glue::Validate;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Auth filter configuration (JSON in the Wasm `PluginConfig`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Virtual keys, by hash.
    #[serde(default)]
    pub keys: Vec<KeyEntry>,
}

/// One virtual key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// Stable id, published as `x-aimesh-key-id`; not secret.
    pub id: String,
    /// `sha256:` followed by 64 lowercase hex digits of the key's SHA-256.
    pub hash: String,
    /// Team, published as `x-aimesh-team`.
    #[serde(default)]
    pub team: Option<String>,
}

impl Validate for AuthConfig {
    fn validate(&self) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for (i, k) in self.keys.iter().enumerate() {
            if k.id.is_empty() {
                return Err(format!("keys[{i}].id: must not be empty"));
            }
            if parse_hash(&k.hash).is_none() {
                return Err(format!(
                    "keys[{i}].hash: must be 'sha256:' followed by 64 hex digits"
                ));
            }
            if !seen.insert(k.id.as_str()) {
                return Err(format!("keys[{i}].id: duplicate id '{}'", k.id));
            }
        }
        Ok(())
    }
}

fn parse_hash(s: &str) -> Option<[u8; 32]> {
    let hex_part = s.strip_prefix("sha256:")?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut out).ok()?;
    Some(out)
}

/// Config with keys indexed by hash.
pub(crate) struct Compiled {
    by_hash: HashMap<[u8; 32], KeyEntry>,
}

impl Compiled {
    pub(crate) fn new(c: AuthConfig) -> Self {
        let by_hash = c
            .keys
            .into_iter()
            .filter_map(|k| parse_hash(&k.hash).map(|h| (h, k)))
            .collect();
        Self { by_hash }
    }

    pub(crate) fn lookup(&self, key: &str) -> Option<&KeyEntry> {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        self.by_hash.get(&digest)
    }
}
