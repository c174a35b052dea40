//! Incremental (delta) protocol state of one ADS stream.
//!
//! Per type: the subscription and the version of each resource the client holds. Any change
//! is pushed at once (delta needs no outstanding request); only resources whose version
//! differs are sent, and resources that left the snapshot are sent as removed.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource,
};

use super::{wildcard_type, Event};
use crate::snapshot::Snapshot;

#[derive(Debug, Default)]
struct TypeState {
    wildcard: bool,
    names: BTreeSet<String>,
    /// Resource name -> version the client holds (or was last sent).
    held: BTreeMap<String, String>,
    in_flight: HashSet<String>,
}

impl TypeState {
    fn subscribed(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }
}

/// Delta state of one stream.
#[derive(Debug, Default)]
pub struct Delta {
    types: HashMap<String, TypeState>,
    nonce: u64,
}

impl Delta {
    /// Handles one request; returns what to send and whether it acknowledged or rejected.
    pub fn on_request(
        &mut self,
        req: &DeltaDiscoveryRequest,
        snap: &Snapshot,
    ) -> (Vec<DeltaDiscoveryResponse>, Option<Event>) {
        let first = !self.types.contains_key(&req.type_url);
        let ts = self.types.entry(req.type_url.clone()).or_default();
        let mut event = None;
        if !req.response_nonce.is_empty() && ts.in_flight.remove(&req.response_nonce) {
            event = Some(match &req.error_detail {
                Some(err) => Event::Nack {
                    type_url: req.type_url.clone(),
                    message: err.message.clone(),
                },
                None => Event::Ack {
                    type_url: req.type_url.clone(),
                    version: req.response_nonce.clone(),
                },
            });
        }
        if first {
            // A reconnecting client tells what it holds; equal versions are not sent again.
            ts.held = req
                .initial_resource_versions
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            ts.wildcard = wildcard_type(&req.type_url) && req.resource_names_subscribe.is_empty();
        }
        for n in &req.resource_names_subscribe {
            if n == "*" {
                ts.wildcard = true;
            } else {
                ts.names.insert(n.clone());
                // A fresh subscription must get the resource even if an old version matches.
                if !first {
                    ts.held.remove(n);
                }
            }
        }
        for n in &req.resource_names_unsubscribe {
            if n == "*" {
                ts.wildcard = false;
            } else {
                ts.names.remove(n);
            }
        }
        let type_url = req.type_url.clone();
        let out = self.diff(&type_url, snap, first).into_iter().collect();
        (out, event)
    }

    /// A new snapshot: what changed for each type the client asked about.
    pub fn on_snapshot(&mut self, snap: &Snapshot) -> Vec<DeltaDiscoveryResponse> {
        let types: Vec<String> = self.types.keys().cloned().collect();
        types
            .into_iter()
            .filter_map(|t| self.diff(&t, snap, false))
            .collect()
    }

    fn diff(
        &mut self,
        type_url: &str,
        snap: &Snapshot,
        force: bool,
    ) -> Option<DeltaDiscoveryResponse> {
        let ts = self.types.get_mut(type_url)?;
        let mut resources = Vec::new();
        for (name, r) in snap.of_type(type_url) {
            if ts.subscribed(name) && ts.held.get(name) != Some(&r.version) {
                ts.held.insert(name.clone(), r.version.clone());
                resources.push(Resource {
                    name: name.clone(),
                    version: r.version.clone(),
                    resource: Some(r.any.clone()),
                    ..Default::default()
                });
            }
        }
        let mut removed = Vec::new();
        ts.held.retain(|name, _| {
            let keep = ts.wildcard && snap.get(type_url, name).is_some()
                || ts.names.contains(name) && snap.get(type_url, name).is_some();
            if !keep && (ts.wildcard || ts.names.contains(name)) {
                removed.push(name.clone());
            }
            keep
        });
        if resources.is_empty() && removed.is_empty() && !force {
            return None;
        }
        self.nonce += 1;
        let nonce = self.nonce.to_string();
        ts.in_flight.insert(nonce.clone());
        Some(DeltaDiscoveryResponse {
            system_version_info: snap.version.clone(),
            resources,
            type_url: type_url.to_string(),
            removed_resources: removed,
            nonce,
            ..Default::default()
        })
    }
}
