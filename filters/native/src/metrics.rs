//! Metrics through the ABI.
//!
//! Envoy lets a dynamic module define stats only while its configuration is being created,
//! while the stages name their stats as they go (`aimesh.auth.allowed`, or labelled the Wasm
//! way: `aimesh.gen_ai.client.requests.model.<m>.backend.<b>.key_id.<k>`). So the configuration
//! defines one family per kind, with an empty name and one label, `aimesh`, and each stat is
//! that family with the rest of its name as the label value. Envoy names a labelled stat
//! `<namespace>.<name>.<label>.<value>`, which makes `wasmcustom.aimesh.auth.allowed` when the
//! module's `metrics_namespace` is `wasmcustom`: the Wasm builds' names, so dashboards, the
//! `stats_tags` of gateway configs and tests read either build. A stage added later needs
//! nothing here.
//!
//! The counters a stage declares under a fixed name (`StageDef::counters`) are defined up
//! front as plain counters instead: Envoy bumps one by id, where a labelled stat is looked up
//! by its label value on every call, and Prometheus shows each as its own metric
//! (`..._aimesh_auth_allowed`) rather than as a label value of the one family.

use std::collections::HashMap;

use aimesh_core::host::Metrics;

use crate::ffi::{FilterConfig, MetricKind};

/// The one label of the families; also the first segment of every aimesh stat name.
pub const LABEL: &str = "aimesh";

/// The stats of one filter configuration, shared by its worker threads.
#[derive(Debug)]
pub struct NativeMetrics {
    config: FilterConfig,
    /// Family ids by kind (counter, gauge, histogram); `None` when Envoy refused one.
    families: [Option<usize>; 3],
    /// Plain counters by full name (`aimesh.auth.allowed`).
    counters: HashMap<&'static str, usize>,
}

impl NativeMetrics {
    /// Defines the families and the plain `counters`; call while Envoy creates the
    /// configuration.
    pub fn new(config: FilterConfig, counters: &[&'static str]) -> Self {
        let families = [
            MetricKind::Counter,
            MetricKind::Gauge,
            MetricKind::Histogram,
        ]
        .map(|k| config.define(k, "", &[LABEL]));
        let counters = counters
            .iter()
            .filter_map(|&name| Some((name, config.define(MetricKind::Counter, name, &[])?)))
            .collect();
        NativeMetrics {
            config,
            families,
            counters,
        }
    }

    /// Stats that go nowhere (tests, which have no Envoy).
    #[cfg(test)]
    pub fn detached() -> Self {
        NativeMetrics {
            config: FilterConfig::detached(),
            families: [None; 3],
            counters: HashMap::new(),
        }
    }

    fn update(&self, kind: MetricKind, name: &str, value: u64) {
        if kind == MetricKind::Counter {
            if let Some(&id) = self.counters.get(name) {
                self.config.update(kind, id, &[], value);
                return;
            }
        }
        let Some(Some(id)) = self.families.get(kind as usize) else {
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
