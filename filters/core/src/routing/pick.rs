//! Choosing the primary target of a request.

use super::config::{Strategy, VirtualModel};
use super::stats::Summary;

/// Source of randomness; injectable so tests are deterministic.
pub trait Rng {
    /// Next 64 random bits.
    fn next_u64(&mut self) -> u64;

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        // 53 bits fit an f64 mantissa exactly.
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[0, n)`; 0 when `n` is 0.
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

/// xorshift64*: fast, good enough for load balancing, no dependency.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// Seeded generator; any seed works (0 is remapped).
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
}

impl Rng for XorShift {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Index into `candidates` chosen proportionally to `weight(i)`; uniform if all weights are 0.
fn by_weight<R: Rng + ?Sized>(
    vm: &VirtualModel,
    candidates: &[usize],
    rng: &mut R,
) -> Option<usize> {
    let total: u64 = candidates
        .iter()
        .map(|&i| u64::from(vm.targets[i].weight))
        .sum();
    if total == 0 {
        let n = u64::try_from(candidates.len()).unwrap_or(0);
        let k = usize::try_from(rng.below(n)).unwrap_or(0);
        return candidates.get(k).copied();
    }
    let mut r = rng.below(total);
    for &i in candidates {
        let w = u64::from(vm.targets[i].weight);
        if r < w {
            return Some(i);
        }
        r -= w;
    }
    candidates.last().copied()
}

/// The primary target for one request. `stats[i]` summarises target `i` over the strategy's
/// window (see [`stats_window_ms`]); it is ignored by the weighted strategy.
pub fn pick<R: Rng + ?Sized>(vm: &VirtualModel, stats: &[Summary], rng: &mut R) -> usize {
    let all: Vec<usize> = (0..vm.targets.len()).collect();
    let chosen = match vm.strategy {
        Strategy::Weighted => by_weight(vm, &all, rng),
        Strategy::Latency => latency(vm, stats, rng),
        Strategy::Priority => priority(vm, stats, rng),
    };
    chosen.unwrap_or(0)
}

/// Window (ms) of the samples [`pick`] needs for this virtual model.
pub fn stats_window_ms(vm: &VirtualModel) -> u64 {
    let s = match vm.strategy {
        Strategy::Priority => vm.sla.as_ref().map_or(180, |s| s.window_s),
        _ => vm.latency.window_s,
    };
    s.saturating_mul(1000)
}

fn latency<R: Rng + ?Sized>(vm: &VirtualModel, stats: &[Summary], rng: &mut R) -> Option<usize> {
    let opts = &vm.latency;
    let get = |i: usize| stats.get(i).copied().unwrap_or_default();
    let (measured, unmeasured): (Vec<usize>, Vec<usize>) =
        (0..vm.targets.len()).partition(|&i| get(i).count >= opts.min_samples);
    if measured.is_empty() {
        return by_weight(vm, &unmeasured, rng);
    }
    if !unmeasured.is_empty() && rng.unit() < opts.explore_ratio {
        return by_weight(vm, &unmeasured, rng);
    }
    let fastest = measured
        .iter()
        .map(|&i| get(i).median_us)
        .fold(f64::INFINITY, f64::min);
    let equal: Vec<usize> = measured
        .into_iter()
        .filter(|&i| get(i).median_us <= fastest * opts.equal_within)
        .collect();
    by_weight(vm, &equal, rng)
}

fn priority<R: Rng + ?Sized>(vm: &VirtualModel, stats: &[Summary], rng: &mut R) -> Option<usize> {
    let order = vm.by_priority();
    let Some(sla) = &vm.sla else {
        return order.first().copied();
    };
    let limit_us = sla.max_ms_per_token * 1000.0;
    let healthy = |i: usize| {
        let s = stats.get(i).copied().unwrap_or_default();
        s.count == 0 || s.median_us <= limit_us
    };
    let first_healthy = order.iter().copied().find(|&i| healthy(i));
    match first_healthy {
        // A better-priority target marked unhealthy gets a trickle of traffic, so fresh samples
        // can show it recovered before its bad ones age out of the window.
        Some(h) => {
            let better: Vec<usize> = order.iter().copied().take_while(|&i| i != h).collect();
            if !better.is_empty() && rng.unit() < vm.latency.explore_ratio {
                by_weight(vm, &better, rng)
            } else {
                Some(h)
            }
        }
        None => order.first().copied(),
    }
}

/// Whether target `i` is within the priority SLA given its summary.
pub fn healthy(vm: &VirtualModel, s: Summary) -> bool {
    vm.sla
        .as_ref()
        .is_none_or(|sla| s.count == 0 || s.median_us <= sla.max_ms_per_token * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::config::VirtualModel;

    fn vm(v: serde_json::Value) -> VirtualModel {
        serde_json::from_value(v).unwrap()
    }

    fn two(strategy: &str, extra: serde_json::Value) -> VirtualModel {
        let mut v = serde_json::json!({"name": "vm", "strategy": strategy, "targets": [
            {"target": "a/m1", "cluster": "ca", "weight": 80, "priority": 0},
            {"target": "b/m2", "cluster": "cb", "weight": 20, "priority": 1}]});
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        vm(v)
    }

    fn share(vm: &VirtualModel, stats: &[Summary], n: usize) -> f64 {
        let mut rng = XorShift::new(7);
        let a = (0..n).filter(|_| pick(vm, stats, &mut rng) == 0).count();
        a as f64 / n as f64
    }

    fn s(count: usize, ms: f64) -> Summary {
        Summary {
            count,
            median_us: ms * 1000.0,
        }
    }

    #[test]
    fn weighted_split_follows_weights() {
        let f = share(&two("weighted", serde_json::json!({})), &[], 20_000);
        assert!((f - 0.8).abs() < 0.015, "{f}");
    }

    #[test]
    fn latency_prefers_fastest_and_explores_unmeasured() {
        let v = two("latency", serde_json::json!({}));
        assert!(share(&v, &[s(10, 30.0), s(10, 10.0)], 5000) < 0.01);
        // Within 1.2x: split by weight again.
        let f = share(&v, &[s(10, 11.0), s(10, 10.0)], 5000);
        assert!((f - 0.8).abs() < 0.03, "{f}");
        // b has too few samples: it gets about explore_ratio of the traffic.
        let f = share(&v, &[s(10, 10.0), s(1, 1.0)], 10_000);
        assert!((f - 0.8).abs() < 0.02, "{f}");
        // Nothing measured yet: weights decide.
        let f = share(&v, &[s(0, 0.0), s(0, 0.0)], 10_000);
        assert!((f - 0.8).abs() < 0.02, "{f}");
    }

    #[test]
    fn priority_skips_unhealthy_and_probes_it() {
        let v = two(
            "priority",
            serde_json::json!({"sla": {"max_ms_per_token": 20.0}}),
        );
        assert_eq!(share(&v, &[s(5, 10.0), s(5, 10.0)], 1000), 1.0);
        let f = share(&v, &[s(5, 50.0), s(5, 10.0)], 10_000);
        assert!((f - 0.2).abs() < 0.02, "{f}");
        // Both over the SLA: the best priority still serves.
        assert_eq!(share(&v, &[s(5, 50.0), s(5, 50.0)], 1000), 1.0);
        assert!(!healthy(&v, s(5, 50.0)));
        assert!(healthy(&v, s(0, 0.0)));
    }
}
