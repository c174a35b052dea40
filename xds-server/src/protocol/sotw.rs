//! State-of-the-world protocol state of one ADS stream.
//!
//! Per type: what the client subscribed to, what version and nonce we last sent, and whether
//! the client has a request outstanding (SotW only answers outstanding requests, so a new
//! snapshot that arrives while a response is unacknowledged is sent after the ACK).

use std::collections::{BTreeSet, HashMap};

use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};

use super::{wildcard_type, Event};
use crate::snapshot::Snapshot;

#[derive(Debug, Default)]
struct TypeState {
    /// `None`: wildcard (everything of the type).
    names: Option<BTreeSet<String>>,
    last_version: Option<String>,
    last_nonce: Option<String>,
    /// The client has a request we have not answered.
    pending: bool,
}

/// SotW state of one stream.
#[derive(Debug, Default)]
pub struct Sotw {
    types: HashMap<String, TypeState>,
    nonce: u64,
}

impl Sotw {
    /// Handles one request; returns what to send and whether it acknowledged or rejected.
    pub fn on_request(
        &mut self,
        req: &DiscoveryRequest,
        snap: &Snapshot,
    ) -> (Vec<DiscoveryResponse>, Option<Event>) {
        let ts = self.types.entry(req.type_url.clone()).or_default();
        let first = ts.last_nonce.is_none();
        if !req.response_nonce.is_empty() && ts.last_nonce.as_deref() != Some(&req.response_nonce) {
            // Answers a response that a newer one superseded: the client will answer that too.
            return (vec![], None);
        }
        let event = if req.response_nonce.is_empty() {
            None
        } else if let Some(err) = &req.error_detail {
            Some(Event::Nack {
                type_url: req.type_url.clone(),
                message: err.message.clone(),
            })
        } else {
            Some(Event::Ack {
                type_url: req.type_url.clone(),
                version: req.version_info.clone(),
            })
        };
        let wildcard = wildcard_type(&req.type_url)
            && (req.resource_names.is_empty() || req.resource_names.iter().any(|n| n == "*"));
        let names = if wildcard {
            None
        } else {
            Some(req.resource_names.iter().cloned().collect::<BTreeSet<_>>())
        };
        let names_changed = ts.names != names;
        ts.names = names;
        ts.pending = true;
        let version = snap.type_version(&req.type_url, ts.names.as_ref());
        let out = if first || names_changed || ts.last_version.as_deref() != Some(&version) {
            let type_url = req.type_url.clone();
            vec![self.respond(&type_url, snap, version)]
        } else {
            vec![]
        };
        (out, event)
    }

    /// A new snapshot: responses for every type with an outstanding request whose content changed.
    pub fn on_snapshot(&mut self, snap: &Snapshot) -> Vec<DiscoveryResponse> {
        let due: Vec<(String, String)> = self
            .types
            .iter()
            .filter(|(_, ts)| ts.pending)
            .filter_map(|(t, ts)| {
                let v = snap.type_version(t, ts.names.as_ref());
                (ts.last_version.as_deref() != Some(&v)).then(|| (t.clone(), v))
            })
            .collect();
        due.into_iter()
            .map(|(t, v)| self.respond(&t, snap, v))
            .collect()
    }

    fn respond(&mut self, type_url: &str, snap: &Snapshot, version: String) -> DiscoveryResponse {
        self.nonce += 1;
        let nonce = self.nonce.to_string();
        let ts = self.types.entry(type_url.to_string()).or_default();
        let resources = snap
            .of_type(type_url)
            .filter(|(n, _)| ts.names.as_ref().is_none_or(|s| s.contains(*n)))
            .map(|(_, r)| r.any.clone())
            .collect();
        ts.pending = false;
        ts.last_version = Some(version.clone());
        ts.last_nonce = Some(nonce.clone());
        DiscoveryResponse {
            version_info: version,
            resources,
            type_url: type_url.to_string(),
            nonce,
            ..Default::default()
        }
    }
}
