//! Metrics through the ABI: each stat name is defined once per filter configuration, the first
//! time a stage uses it, and updated with the id Envoy gave back. Names stay the Wasm builds'
//! (`aimesh.auth.allowed`, ...), so dashboards and tag extraction see the same stats.

use std::collections::HashMap;
use std::sync::RwLock;

use aimesh_core::host::Metrics;

use crate::ffi::{FilterConfig, MetricKind};

/// The stats of one filter configuration, shared by its worker threads.
#[derive(Debug)]
pub struct NativeMetrics {
    config: FilterConfig,
    /// Ids by name, one map per kind (looked up by `&str`: no allocation per update).
    ids: [RwLock<HashMap<String, Option<usize>>>; 3],
}

impl NativeMetrics {
    /// Stats defined through `config`.
    pub fn new(config: FilterConfig) -> Self {
        NativeMetrics {
            config,
            ids: Default::default(),
        }
    }

    fn id(&self, kind: MetricKind, name: &str) -> Option<usize> {
        let map = self.ids.get(kind as usize)?;
        if let Ok(ids) = map.read() {
            if let Some(id) = ids.get(name) {
                return *id;
            }
        }
        let mut ids = map.write().ok()?;
        *ids.entry(name.to_string())
            .or_insert_with(|| self.config.define(kind, name))
    }

    fn update(&self, kind: MetricKind, name: &str, value: u64) {
        if let Some(id) = self.id(kind, name) {
            self.config.update(kind, id, value);
        }
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
