//! Immutable, versioned snapshots of the Envoy resources one gateway.yaml produces.
//!
//! Every resource's version is a hash of its encoded bytes, so an unchanged resource keeps its
//! version across reloads and is never re-sent.

use std::collections::BTreeMap;

use envoy_types::pb::google::protobuf::Any;
use sha2::{Digest, Sha256};

use crate::resources::Resources;

/// One resource and its content version.
#[derive(Debug, Clone, PartialEq)]
pub struct Res {
    /// Hash of the encoded resource.
    pub version: String,
    /// The resource.
    pub any: Any,
}

/// All resources of one config, by type URL then name. Never mutated once built.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Hash over every resource's name and version.
    pub version: String,
    types: BTreeMap<String, BTreeMap<String, Res>>,
}

fn short_hash(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..8])
}

impl Snapshot {
    /// Wraps built resources, hashing each.
    pub fn new(resources: Resources) -> Self {
        let types: BTreeMap<String, BTreeMap<String, Res>> = resources
            .into_iter()
            .map(|(t, rs)| {
                let rs = rs
                    .into_iter()
                    .map(|(name, any)| {
                        let version = short_hash(&any.value);
                        (name, Res { version, any })
                    })
                    .collect();
                (t.to_string(), rs)
            })
            .collect();
        let mut h = Sha256::new();
        for (t, rs) in &types {
            for (n, r) in rs {
                h.update(t.as_bytes());
                h.update([0]);
                h.update(n.as_bytes());
                h.update([0]);
                h.update(r.version.as_bytes());
                h.update([0]);
            }
        }
        let version = hex::encode(&h.finalize()[..8]);
        Self { version, types }
    }

    /// Resources of one type (empty when the snapshot has none).
    pub fn of_type(&self, type_url: &str) -> impl Iterator<Item = (&String, &Res)> {
        self.types.get(type_url).into_iter().flatten()
    }

    /// One resource.
    pub fn get(&self, type_url: &str, name: &str) -> Option<&Res> {
        self.types.get(type_url)?.get(name)
    }

    /// Type URLs present.
    pub fn type_urls(&self) -> impl Iterator<Item = &String> {
        self.types.keys()
    }

    /// Number of resources of all types.
    pub fn len(&self) -> usize {
        self.types.values().map(BTreeMap::len).sum()
    }

    /// True when the snapshot holds no resource at all.
    pub fn is_empty(&self) -> bool {
        self.types.values().all(BTreeMap::is_empty)
    }

    /// Version of a set of resources of one type (`None` names = all of them).
    pub fn type_version(
        &self,
        type_url: &str,
        names: Option<&std::collections::BTreeSet<String>>,
    ) -> String {
        let mut h = Sha256::new();
        for (n, r) in self.of_type(type_url) {
            if names.is_none_or(|s| s.contains(n)) {
                h.update(n.as_bytes());
                h.update([0]);
                h.update(r.version.as_bytes());
                h.update([0]);
            }
        }
        hex::encode(&h.finalize()[..8])
    }
}

#[cfg(test)]
mod tests {
    use crate::resources::{build, CLUSTER, EXTENSION, LISTENER};
    use crate::validate::load_str;

    fn snap(yaml: &str) -> super::Snapshot {
        let gw = load_str(yaml).unwrap_or_else(|e| panic!("{e:?}"));
        super::Snapshot::new(
            build(&gw, std::path::Path::new("/w"), false).unwrap_or_else(|e| panic!("{e}")),
        )
    }

    #[test]
    fn versions_are_content_hashes() {
        let base =
            "providers:\n- {name: pa1, kind: openai_compatible, base_url: 'http://127.0.0.1:1'}\n";
        let (s1, s2) = (snap(base), snap(base));
        assert_eq!(s1, s2, "same file, same snapshot");
        let s3 = snap(&format!(
            "{base}keys:\n- {{id: k, hash: 'sha256:{}'}}\n",
            "a".repeat(64)
        ));
        assert_ne!(s1.version, s3.version);
        assert_eq!(
            s1.get(CLUSTER, "provider.pa1"),
            s3.get(CLUSTER, "provider.pa1")
        );
        assert_eq!(
            s1.get(LISTENER, "gateway"),
            s3.get(LISTENER, "gateway"),
            "listener untouched by a key change"
        );
        assert_ne!(
            s1.get(EXTENSION, "aimesh.auth").map(|r| &r.version),
            s3.get(EXTENSION, "aimesh.auth").map(|r| &r.version)
        );
        assert_eq!(
            s1.get(EXTENSION, "aimesh.header-auth"),
            s3.get(EXTENSION, "aimesh.header-auth")
        );
    }
}
