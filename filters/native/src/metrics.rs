//! Metrics through the ABI.
//!
//! Envoy lets a dynamic module define stats only while its configuration is being created,
//! while the stages name their stats as they go (`aimesh.auth.allowed`, or labelled the Wasm
//! way: `aimesh.gen_ai.client.requests.model.<m>.backend.<b>.key_id.<k>`). So what the stages
//! declare is defined up front, and the rest goes to a catch-all:
//! - the counters a stage bumps under a fixed name (`StageDef::counters`) are plain counters,
//!   bumped by id and each its own Prometheus metric (`aimesh_auth_allowed`);
//! - the labelled families a stage declares (`StageDef::families`: the GenAI metrics) are
//!   defined with real labels named as the gateway's `stats_tags` name them
//!   (`aimesh_host::family::TAGS`), so Prometheus shows the Wasm builds' series,
//!   `aimesh_gen_ai_client_requests{gen_ai_response_model="..",aimesh_backend="..",..}`;
//! - any other stat is a catch-all family per kind, with an empty name and one label,
//!   `aimesh`, whose value is the rest of the stat's name.
//!
//! Envoy names a stat `<namespace>.<name>[.<label>.<value>...]`, so with the module's
//! `metrics_namespace: wasmcustom` the fixed and catch-all stats have the Wasm builds' flat
//! names (`wasmcustom.aimesh.auth.allowed`); a family's flat name carries the tag names
//! instead (`...requests.gen_ai_response_model.<m>...`). With the runtime flag
//! `envoy.reloadable_features.dynamic_modules_strip_custom_stat_prefix` (the shipped
//! bootstraps set it) Prometheus drops the namespace as it does for Wasm.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use aimesh_core::host::Metrics;

use aimesh_host::{Family, FamilyKind};

use crate::ffi::{FilterConfig, MetricKind, MAX_LABELS};

/// The one label of the catch-all families; also the first segment of every aimesh stat name.
pub const LABEL: &str = "aimesh";

/// The stats of one filter configuration, shared by its worker threads.
#[derive(Debug)]
pub struct NativeMetrics {
    config: FilterConfig,
    /// Catch-all family ids by kind (counter, gauge, histogram); `None` when Envoy refused one.
    catch_all: [Option<usize>; 3],
    /// Plain counters by full name (`aimesh.auth.allowed`).
    counters: HashMap<&'static str, usize, BuildHasherDefault<Fnv>>,
    /// The stages' labelled families with their ids: counters, then histograms.
    families: [Vec<(Family, usize)>; 2],
}

/// FNV-1a: every stat bump looks its name up here, and SipHash's flooding resistance buys
/// nothing for a map of names fixed at configuration time.
#[derive(Debug)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

impl NativeMetrics {
    /// Defines the catch-all families, the plain `counters` and the labelled `families`; call
    /// while Envoy creates the configuration.
    pub fn new(config: FilterConfig, counters: &[&'static str], families: &[Family]) -> Self {
        let catch_all = [
            MetricKind::Counter,
            MetricKind::Gauge,
            MetricKind::Histogram,
        ]
        .map(|k| config.define(k, "", &[LABEL]));
        let counters = counters
            .iter()
            .filter_map(|&name| Some((name, config.define(MetricKind::Counter, name, &[])?)))
            .collect();
        let mut defined: [Vec<(Family, usize)>; 2] = [Vec::new(), Vec::new()];
        for f in families {
            if f.labels.len() > MAX_LABELS {
                log::warn!("aimesh: stat family `{}` has too many labels", f.name);
                continue;
            }
            let (kind, slot) = match f.kind {
                FamilyKind::Counter => (MetricKind::Counter, 0),
                FamilyKind::Histogram => (MetricKind::Histogram, 1),
            };
            let tags = f.tags();
            let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
            if let Some(id) = config.define(kind, f.name, &tags) {
                defined[slot].push((f.clone(), id));
            }
        }
        NativeMetrics {
            config,
            catch_all,
            counters,
            families: defined,
        }
    }

    /// Stats that go nowhere (tests, which have no Envoy).
    #[cfg(test)]
    pub fn detached() -> Self {
        NativeMetrics {
            config: FilterConfig::detached(),
            catch_all: [None; 3],
            counters: HashMap::default(),
            families: [Vec::new(), Vec::new()],
        }
    }

    /// The declared family `name` is a stat of, and its label values.
    fn family<'a>(&self, kind: MetricKind, name: &'a str) -> Option<(usize, Vec<&'a str>)> {
        let slot = match kind {
            MetricKind::Counter => 0,
            MetricKind::Histogram => 1,
            MetricKind::Gauge => return None,
        };
        self.families[slot]
            .iter()
            .find_map(|(f, id)| Some((*id, f.values(name)?)))
    }

    fn update(&self, kind: MetricKind, name: &str, value: u64) {
        if kind == MetricKind::Counter {
            if let Some(&id) = self.counters.get(name) {
                self.config.update(kind, id, &[], value);
                return;
            }
        }
        if let Some((id, values)) = self.family(kind, name) {
            self.config.update(kind, id, &values, value);
            return;
        }
        let Some(Some(id)) = self.catch_all.get(kind as usize) else {
            return;
        };
        let rest = name
            .strip_prefix(LABEL)
            .and_then(|r| r.strip_prefix('.'))
            .unwrap_or(name);
        self.config.update(kind, *id, &[rest], value);
    }
}

impl Metrics for NativeMetrics {
    fn count(&self, name: &str, delta: u64) {
        self.update(MetricKind::Counter, name, delta);
    }
    fn record(&self, name: &str, value: u64) {
        self.update(MetricKind::Histogram, name, value);
    }
    fn gauge(&self, name: &str, value: u64) {
        self.update(MetricKind::Gauge, name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_goes_to_the_declared_family_of_its_kind_with_its_label_values() {
        let m = NativeMetrics {
            families: [
                vec![(
                    Family::counter("aimesh.gen_ai.client.requests", ["model", "key_id"]),
                    7,
                )],
                vec![(
                    Family::histogram("aimesh.gen_ai.client.requests", ["model"]),
                    9,
                )],
            ],
            ..NativeMetrics::detached()
        };
        let stat = "aimesh.gen_ai.client.requests.model.gpt-4o.key_id.alice";
        assert_eq!(
            m.family(MetricKind::Counter, stat),
            Some((7, vec!["gpt-4o", "alice"]))
        );
        // Same name, other kind: the histogram family wants other labels.
        assert_eq!(m.family(MetricKind::Histogram, stat), None);
        assert_eq!(
            m.family(
                MetricKind::Histogram,
                "aimesh.gen_ai.client.requests.model.m"
            ),
            Some((9, vec!["m"]))
        );
        assert_eq!(m.family(MetricKind::Gauge, stat), None);
        assert_eq!(m.family(MetricKind::Counter, "aimesh.auth.allowed"), None);
    }
}
