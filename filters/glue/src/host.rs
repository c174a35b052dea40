//! Envoy-wide services over the proxy-wasm ABI: shared data, stats, the clock.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::SystemTime;

use aimesh_core::host::{Metrics, SharedStore, StoreError};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{MetricType, Status};

/// The host's clock, read now (a host call).
pub fn host_now() -> SystemTime {
    hostcalls::get_current_time().unwrap_or(SystemTime::UNIX_EPOCH)
}

/// Proxy-wasm shared data: one store for every worker VM of the same `vm_id`.
#[derive(Debug, Default, Clone, Copy)]
pub struct HostStore;

impl SharedStore for HostStore {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        hostcalls::get_shared_data(key).map_err(|_| StoreError::Unavailable)
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        match hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(StoreError::CasMismatch),
            Err(_) => Err(StoreError::Unavailable),
        }
    }
}

/// Envoy stats, defined lazily and cached per VM (defining a metric is a host call).
///
/// One map per metric type, keyed by name, so the per-request lookup borrows the name instead of
/// allocating a key.
#[derive(Debug, Default)]
pub struct HostMetrics {
    counters: RefCell<HashMap<String, u32>>,
    histograms: RefCell<HashMap<String, u32>>,
    gauges: RefCell<HashMap<String, u32>>,
}

impl HostMetrics {
    fn id(ids: &RefCell<HashMap<String, u32>>, kind: MetricType, name: &str) -> Option<u32> {
        if let Some(id) = ids.borrow().get(name) {
            return Some(*id);
        }
        let id = hostcalls::define_metric(kind, name).ok()?;
        ids.borrow_mut().insert(name.to_string(), id);
        Some(id)
    }
}

impl Metrics for HostMetrics {
    fn count(&self, name: &str, delta: u64) {
        if let Some(id) = Self::id(&self.counters, MetricType::Counter, name) {
            let _ = hostcalls::increment_metric(id, i64::try_from(delta).unwrap_or(i64::MAX));
        }
    }

    fn record(&self, name: &str, value: u64) {
        if let Some(id) = Self::id(&self.histograms, MetricType::Histogram, name) {
            let _ = hostcalls::record_metric(id, value);
        }
    }

    fn gauge(&self, name: &str, value: u64) {
        if let Some(id) = Self::id(&self.gauges, MetricType::Gauge, name) {
            let _ = hostcalls::record_metric(id, value);
        }
    }
}
