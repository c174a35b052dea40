//! Per-worker state shared by the HTTP contexts of one root: config, RNG, metrics and a short
//! cache of the shared latency figures.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use aimesh_core::host::{Clock, Metrics};
use aimesh_core::routing::pick;
use aimesh_core::routing::stats::{self, Summary};
use aimesh_core::routing::{RoutingConfig, Strategy, VirtualModel, XorShift};
use aimesh_glue::{HostClock, HostMetrics, HostStore};

/// How long a worker reuses the shared figures before reading them again: picks stay one host
/// call per target at most every this many ms, and a new sample is seen quickly enough.
const CACHE_MS: u64 = 200;

pub struct Shared {
    pub config: RoutingConfig,
    pub metrics: HostMetrics,
    rng: RefCell<XorShift>,
    cache: RefCell<HashMap<(String, u64), (u64, Summary)>>,
    /// Targets some latency or priority model ranks: only their replies are measured. Reading
    /// every reply body and writing shared data for targets nobody ranks would be paid on
    /// every request of a weighted model.
    watched: HashSet<String>,
    /// How long samples are kept: the longest window any model reads.
    keep_ms: u64,
}

impl Shared {
    pub fn new(config: RoutingConfig) -> Self {
        let seed = HostClock
            .now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        let watched = config
            .virtual_models
            .iter()
            .filter(|vm| vm.strategy != Strategy::Weighted)
            .flat_map(|vm| vm.targets.iter().map(|t| t.target.clone()))
            .collect();
        let keep_ms = config
            .virtual_models
            .iter()
            .map(|vm| pick::stats_window_ms(vm).max(vm.latency.window_s.saturating_mul(1000)))
            .max()
            .unwrap_or(0);
        Self {
            config,
            watched,
            keep_ms,
            metrics: HostMetrics::default(),
            rng: RefCell::new(XorShift::new(seed)),
            cache: RefCell::new(HashMap::new()),
        }
    }

    pub fn now_ms(&self) -> u64 {
        HostClock.unix_millis()
    }

    /// True when replies from `target` must be measured (see `watched`).
    pub fn measures(&self, target: &str) -> bool {
        self.watched.contains(target)
    }

    pub fn count(&self, name: &str) {
        self.metrics.count(name, 1);
    }

    fn summary(&self, target: &str, window_ms: u64, now: u64) -> Summary {
        let key = (target.to_string(), window_ms);
        if let Some((at, s)) = self.cache.borrow().get(&key) {
            if now.saturating_sub(*at) < CACHE_MS {
                return *s;
            }
        }
        let s = stats::summary(&HostStore, target, now, window_ms);
        self.cache.borrow_mut().insert(key, (now, s));
        s
    }

    /// Primary target of a new request.
    pub fn pick(&self, vm: &VirtualModel) -> usize {
        let now = self.now_ms();
        let window = pick::stats_window_ms(vm);
        let figures: Vec<Summary> = match vm.strategy {
            aimesh_core::routing::Strategy::Weighted => Vec::new(),
            _ => vm
                .targets
                .iter()
                .map(|t| self.summary(&t.target, window, now))
                .collect(),
        };
        let mut rng = self.rng.borrow_mut();
        pick::pick(vm, &figures, &mut *rng)
    }

    /// Records one reply's time per output token for `target`.
    pub fn record(&self, target: &str, elapsed_us: u64, tokens: u64) {
        if tokens == 0 {
            return;
        }
        let per = stats::per_token(elapsed_us, tokens);
        if stats::record(&HostStore, target, self.now_ms(), per, self.keep_ms).is_err() {
            self.count("aimesh.virtual_model.sample_dropped");
        }
    }
}
