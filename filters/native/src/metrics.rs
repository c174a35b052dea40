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
}

impl NativeMetrics {
    /// Defines the families; call while Envoy creates the configuration.
    pub fn new(config: FilterConfig) -> Self {
        let families = [
            MetricKind::Counter,
            MetricKind::Gauge,
            MetricKind::Histogram,
        ]
        .map(|k| config.define(k, "", LABEL));
        NativeMetrics { config, families }
    }

    /// Stats that go nowhere (tests, which have no Envoy).
    #[cfg(test)]
    pub fn detached() -> Self {
        NativeMetrics {
            config: FilterConfig::detached(),
            families: [None; 3],
        }
    }

    fn update(&self, kind: MetricKind, name: &str, value: u64) {
        let Some(Some(id)) = self.families.get(kind as usize) else {
            return;
        };
        let rest = name
            .strip_prefix(LABEL)
            .and_then(|r| r.strip_prefix('.'))
            .unwrap_or(name);
        self.config.update(kind, *id, rest, value);
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
