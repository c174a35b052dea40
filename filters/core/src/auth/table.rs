//! The compiled key table and claim rules.

use sha2::{Digest, Sha256};

use super::catalogue::Catalogue;
use super::config::{parse_hash, AuthConfig, JwtConfig};
use super::endpoints::{admit_without_model, EndpointAllow, Refusal};
use super::models::ModelAllow;
use super::time::parse_rfc3339_ms;

/// What a caller may do: the compiled form of a key entry or a JWT rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Key or rule id (`x-aimesh-key-id`).
    pub id: String,
    /// Team (`x-aimesh-team`).
    pub team: Option<String>,
    /// Allowed models.
    pub models: ModelAllow,
    /// Requests without a model to check that the policy may make.
    pub endpoints: EndpointAllow,
    /// Refused from this instant (Unix ms).
    pub expires_at_ms: Option<u64>,
    /// Refused always.
    pub disabled: bool,
    /// Requests per minute.
    pub requests_per_minute: Option<u64>,
    /// Requests in flight at once.
    pub max_concurrent: Option<u64>,
}

impl Policy {
    /// Whether the policy admits `model`.
    pub fn allows_model(&self, model: &str) -> bool {
        self.models.allows(model)
    }

    /// Decides a request that brings no model to check (see [`admit_without_model`]).
    pub fn admits_without_model(&self, method: &str, path: &str) -> Result<(), Refusal> {
        admit_without_model(&self.endpoints, method, path)
    }

    fn usable(&self, now_ms: u64) -> bool {
        !self.disabled && self.expires_at_ms.is_none_or(|e| now_ms < e)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ClaimMatch {
    Sub(String),
    Group(String),
}

/// Where to read JWT claims from, and the rules that map them.
#[derive(Debug, Clone)]
pub struct JwtTable {
    /// Dynamic-metadata namespace (`envoy.filters.http.jwt_authn`).
    pub namespace: String,
    /// `payload_in_metadata` name.
    pub payload_key: String,
    /// Name of the groups claim.
    pub groups_claim: String,
    rules: Vec<(ClaimMatch, PolicyId)>,
}

impl JwtTable {
    /// The first rule matching the claims.
    pub fn lookup(&self, sub: Option<&str>, groups: &[&str]) -> Option<PolicyId> {
        self.rules.iter().find_map(|(m, p)| {
            let hit = match m {
                ClaimMatch::Sub(s) => sub == Some(s.as_str()),
                ClaimMatch::Group(g) => groups.contains(&g.as_str()),
            };
            hit.then_some(*p)
        })
    }

    fn new(c: JwtConfig, policies: &mut Vec<Policy>) -> Self {
        let rules = c
            .rules
            .into_iter()
            .map(|r| {
                let m = match (r.sub, r.group) {
                    (Some(s), _) => ClaimMatch::Sub(s),
                    (None, g) => ClaimMatch::Group(g.unwrap_or_default()),
                };
                let models = ModelAllow::new(&r.models);
                let p = Policy {
                    id: r.id,
                    team: r.team,
                    endpoints: endpoint_grants(&models, r.endpoints.as_deref()),
                    models,
                    expires_at_ms: None,
                    disabled: false,
                    requests_per_minute: r.requests_per_minute,
                    max_concurrent: r.max_concurrent,
                };
                policies.push(p);
                (m, PolicyId(policies.len() - 1))
            })
            .collect();
        Self {
            namespace: c.metadata_namespace,
            payload_key: c.payload_key,
            groups_claim: c.groups_claim,
            rules,
        }
    }
}

/// A policy's `endpoints`: as configured, else every endpoint for a policy that allows every
/// model (it could reach any of them with a model anyway) and none for a partial model list.
fn endpoint_grants(models: &ModelAllow, configured: Option<&[String]>) -> EndpointAllow {
    match configured {
        Some(list) => EndpointAllow::new(list),
        None if models.allows_all() => EndpointAllow::all(),
        None => EndpointAllow::default(),
    }
}

/// Index of a policy in its [`Policies`]; cheap to keep per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyId(usize);

/// Every policy of one filter config, compiled once in `on_configure`.
#[derive(Debug, Clone)]
pub struct Policies {
    /// `digests[i]` is the key of `policies[i]`; JWT rule policies follow the keys.
    digests: Vec<[u8; 32]>,
    /// Indices into `digests`, bucketed by the digest's first byte (256 buckets).
    buckets: Vec<Vec<usize>>,
    policies: Vec<Policy>,
    /// JWT claim rules, when configured.
    pub jwt: Option<JwtTable>,
    /// Body limit in bytes.
    pub max_body_bytes: usize,
    /// The gateway's models, when configured.
    pub catalogue: Option<Catalogue>,
}

/// Compares two digests in time independent of where they differ.
fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

impl Policies {
    /// Compiles a config that passed [`AuthConfig::check`] (entries that would not are skipped).
    pub fn new(c: AuthConfig) -> Self {
        let mut digests = Vec::with_capacity(c.keys.len());
        let mut keys = Vec::with_capacity(c.keys.len());
        for k in c.keys {
            let Some(d) = parse_hash(&k.hash) else {
                continue;
            };
            let expires_at_ms = match k.expires_at.as_deref().map(parse_rfc3339_ms) {
                Some(None) => continue,
                Some(Some(ms)) => Some(ms),
                None => None,
            };
            digests.push(d);
            let models = ModelAllow::new(&k.models);
            keys.push(Policy {
                id: k.id,
                team: k.team,
                endpoints: endpoint_grants(&models, k.endpoints.as_deref()),
                models,
                expires_at_ms,
                disabled: k.disabled,
                requests_per_minute: k.requests_per_minute,
                max_concurrent: k.max_concurrent,
            });
        }
        let jwt = c.jwt.map(|j| JwtTable::new(j, &mut keys));
        let mut buckets = vec![Vec::new(); 256];
        for (i, d) in digests.iter().enumerate() {
            buckets[usize::from(d[0])].push(i);
        }
        Self {
            digests,
            buckets,
            policies: keys,
            jwt,
            max_body_bytes: c.max_body_bytes,
            catalogue: c.catalogue.map(Catalogue::new),
        }
    }

    /// The usable policy of a presented key; `None` for unknown, expired and disabled keys.
    ///
    /// The presented key is hashed; the digests sharing its first byte are each compared in
    /// constant time, with no early exit, so timing never depends on which entry (or how many
    /// bytes of one) matched. The bucket choice depends only on the caller's own digest, and the
    /// bucket size only tells how many stored digests share one byte with it; digests are not
    /// keys (a SHA-256 preimage of a random 256-bit key is out of reach), so neither helps an
    /// attacker. Buckets keep lookups cheap with many keys (10,000 keys: ~40 compares).
    pub fn by_key(&self, presented: &str, now_ms: u64) -> Option<PolicyId> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let bucket = self.buckets.get(usize::from(digest[0]))?;
        let mut found = usize::MAX;
        for &i in bucket {
            let hit = self.digests.get(i).is_some_and(|d| ct_eq(d, &digest));
            // Branch-free select: found = hit ? i : found.
            let mask = usize::from(hit).wrapping_neg();
            found = (i & mask) | (found & !mask);
        }
        self.policies
            .get(found)
            .filter(|p| p.usable(now_ms))
            .map(|_| PolicyId(found))
    }

    /// The policy behind an id from this table.
    pub fn get(&self, id: PolicyId) -> Option<&Policy> {
        self.policies.get(id.0)
    }

    /// Every policy (keys, then JWT rules), for initialising limit state.
    pub fn all(&self) -> impl Iterator<Item = &Policy> {
        self.policies.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(k: &str) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(k.as_bytes())))
    }

    fn policies() -> Policies {
        let c: AuthConfig = serde_json::from_value(serde_json::json!({
            "keys": [
                {"id": "a", "hash": hash("key-a"), "team": "t", "models": ["m1"]},
                {"id": "old", "hash": hash("key-old"), "expires_at": "2020-01-01T00:00:00Z"},
                {"id": "off", "hash": hash("key-off"), "disabled": true},
                {"id": "b", "hash": hash("key-b")},
            ],
            "jwt": {"payload_key": "p", "rules": [
                {"id": "alice", "sub": "alice", "models": ["m2"]},
                {"id": "ml", "group": "ml"},
            ]}
        }))
        .unwrap();
        c.check().unwrap();
        Policies::new(c)
    }

    #[test]
    fn finds_keys_by_hash_and_refuses_expired_and_disabled() {
        let p = policies();
        let now = 1_700_000_000_000;
        let by_key = |k: &str, now: u64| p.by_key(k, now).and_then(|i| p.get(i));
        assert_eq!(by_key("key-a", now).unwrap().id, "a");
        assert_eq!(by_key("key-b", now).unwrap().id, "b");
        assert!(by_key("key-c", now).is_none());
        assert!(p.by_key("", now).is_none());
        assert!(by_key("key-old", now).is_none());
        assert_eq!(by_key("key-old", 1_500_000_000_000).unwrap().id, "old");
        assert!(by_key("key-off", now).is_none());
        assert!(by_key("key-a", now).unwrap().allows_model("m1"));
        assert!(!by_key("key-a", now).unwrap().allows_model("m2"));
        assert!(by_key("key-b", now).unwrap().allows_model("m2"));
    }

    #[test]
    fn endpoints_default_to_all_only_for_keys_allowing_every_model() {
        let c: AuthConfig = serde_json::from_value(serde_json::json!({
            "keys": [
                {"id": "all", "hash": hash("k1")},
                {"id": "some", "hash": hash("k2"), "models": ["m1"]},
                {"id": "files", "hash": hash("k3"), "models": ["m1"], "endpoints": ["/v1/files"]},
                {"id": "none", "hash": hash("k4"), "endpoints": []},
            ],
            "jwt": {"payload_key": "p", "rules": [
                {"id": "j", "sub": "s", "models": ["m1"], "endpoints": ["GET /v1/batches"]}]}
        }))
        .unwrap();
        c.check().unwrap();
        let p = Policies::new(c);
        let get = |name: &str| p.all().find(|x| x.id == name).unwrap();
        let files = ("GET", "/v1/files");
        assert_eq!(get("all").admits_without_model(files.0, files.1), Ok(()));
        assert_eq!(
            get("some").admits_without_model(files.0, files.1),
            Err(Refusal::NotGranted)
        );
        assert_eq!(get("files").admits_without_model(files.0, files.1), Ok(()));
        assert_eq!(
            get("none").admits_without_model(files.0, files.1),
            Err(Refusal::NotGranted)
        );
        assert_eq!(
            get("j").admits_without_model("GET", "/v1/batches/b"),
            Ok(())
        );
        assert_eq!(
            get("j").admits_without_model("POST", "/v1/batches/b/cancel"),
            Err(Refusal::NotGranted)
        );
    }

    #[test]
    fn claims_map_to_rules_in_order() {
        let p = policies();
        let j = p.jwt.as_ref().unwrap();
        let id = |i: Option<PolicyId>| p.get(i.unwrap()).unwrap().id.clone();
        assert_eq!(id(j.lookup(Some("alice"), &["ml"])), "alice");
        assert_eq!(id(j.lookup(Some("bob"), &["x", "ml"])), "ml");
        assert!(j.lookup(Some("bob"), &[]).is_none());
        assert!(j.lookup(None, &[]).is_none());
        assert_eq!(p.all().count(), 6);
    }

    #[test]
    fn many_keys_sharing_buckets_all_resolve() {
        let keys: Vec<_> = (0..600)
            .map(|i| serde_json::json!({"id": format!("k{i}"), "hash": hash(&format!("key-{i}"))}))
            .collect();
        let c: AuthConfig = serde_json::from_value(serde_json::json!({ "keys": keys })).unwrap();
        let p = Policies::new(c);
        for i in 0..600 {
            let id = p.by_key(&format!("key-{i}"), 0).unwrap();
            assert_eq!(p.get(id).unwrap().id, format!("k{i}"));
        }
        assert!(p.by_key("key-600", 0).is_none());
    }

    #[test]
    fn ct_eq_compares_whole_digests() {
        let a = [7u8; 32];
        let mut b = a;
        assert!(ct_eq(&a, &b));
        b[31] ^= 1;
        assert!(!ct_eq(&a, &b));
    }
}
