//! Per-worker state shared by the requests of one root: config, RNG and a short cache of the
//! shared latency figures.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use aimesh_core::routing::pick;
use aimesh_core::routing::stats::{self, Summary};
use aimesh_core::routing::{RoutingConfig, Strategy, VirtualModel, XorShift};
use aimesh_host::Env;

/// How long a worker reuses the shared figures before reading them again: picks stay one host
/// call per target at most every this many ms, and a new sample is seen quickly enough.
const CACHE_MS: u64 = 200;

pub struct Shared {
    pub config: RoutingConfig,
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
    pub fn new(config: RoutingConfig, env: &dyn Env) -> Self {
        let seed = env
            .now()
            .duration_since(SystemTime::UNIX_EPOCH)
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
            rng: RefCell::new(XorShift::new(seed)),
            cache: RefCell::new(HashMap::new()),
        }
    }

    /// True when replies from `target` must be measured (see `watched`).
    pub fn measures(&self, target: &str) -> bool {
        self.watched.contains(target)
    }

    fn summary(&self, env: &dyn Env, target: &str, window_ms: u64, now: u64) -> Summary {
        let key = (target.to_string(), window_ms);
        if let Some((at, s)) = self.cache.borrow().get(&key) {
            if now.saturating_sub(*at) < CACHE_MS {
                return *s;
            }
        }
        let s = stats::summary(env.store(), target, now, window_ms);
        self.cache.borrow_mut().insert(key, (now, s));
        s
    }

    /// Primary target of a new request.
    pub fn pick(&self, env: &dyn Env, vm: &VirtualModel) -> usize {
        let now = env.unix_millis();
        let window = pick::stats_window_ms(vm);
        let figures: Vec<Summary> = match vm.strategy {
            Strategy::Weighted => Vec::new(),
            _ => vm
                .targets
                .iter()
                .map(|t| self.summary(env, &t.target, window, now))
                .collect(),
        };
        let mut rng = self.rng.borrow_mut();
        pick::pick(vm, &figures, &mut *rng)
    }

    /// Records one reply's time per output token for `target`.
    pub fn record(&self, env: &dyn Env, target: &str, elapsed_us: u64, tokens: u64) {
        if tokens == 0 {
            return;
        }
        let per = stats::per_token(elapsed_us, tokens);
        if stats::record(env.store(), target, env.unix_millis(), per, self.keep_ms).is_err() {
            env.metrics()
                .count("aimesh.virtual_model.sample_dropped", 1);
        }
    }
}

/// Microseconds from `start` to now on the host's clock.
pub fn elapsed_us(env: &dyn Env, start: SystemTime) -> u64 {
    env.now()
        .duration_since(start)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Adds one to a counter.
pub fn count(env: &dyn Env, name: &str) {
    env.metrics().count(name, 1);
}
