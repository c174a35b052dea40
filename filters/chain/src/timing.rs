//! Optional per-stage timings (`stage_timings: true`): where a request's time goes, stage by
//! stage and callback by callback, measured inside the VM.
//!
//! Each stage callback is bracketed by two clock reads; the elapsed time (the stage's Wasm code
//! plus the host calls it makes) is added to the counter `aimesh.chain.<stage>.<phase>.ns` and
//! the call to `aimesh.chain.<stage>.<phase>.calls`. Counters, not histograms: sums divide into
//! exact means, where Envoy's default histogram buckets are far too coarse for microseconds.
//! Off by default: the clock reads and counter updates cost a few µs per stage.

use std::rc::Rc;

use aimesh_core::host::Metrics;
use aimesh_glue::HostMetrics;

/// A stream callback of a stage.
#[derive(Debug, Clone, Copy)]
pub enum Phase {
    /// `on_http_request_headers`.
    RequestHeaders,
    /// `on_http_request_body`.
    RequestBody,
    /// `on_http_request_trailers`.
    RequestTrailers,
    /// `on_http_response_headers`.
    ResponseHeaders,
    /// `on_http_response_body`.
    ResponseBody,
    /// `on_http_response_trailers`.
    ResponseTrailers,
    /// `on_log`.
    Log,
}

const PHASES: [&str; 7] = [
    "request_headers",
    "request_body",
    "request_trailers",
    "response_headers",
    "response_body",
    "response_trailers",
    "log",
];

/// The timing counters of one stage (names built once per VM).
pub struct Timer {
    names: Vec<(String, String)>,
    metrics: Rc<HostMetrics>,
}

impl Timer {
    /// Counters for `stage`.
    pub fn new(stage: &str, metrics: Rc<HostMetrics>) -> Self {
        let names = PHASES
            .iter()
            .map(|p| {
                (
                    format!("aimesh.chain.{stage}.{p}.ns"),
                    format!("aimesh.chain.{stage}.{p}.calls"),
                )
            })
            .collect();
        Timer { names, metrics }
    }

    /// Runs `f`, adding its duration to `phase`'s counters.
    pub fn time<R>(&self, phase: Phase, f: impl FnOnce() -> R) -> R {
        let start = aimesh_glue::host::host_now();
        let out = f();
        let ns = aimesh_glue::host::host_now()
            .duration_since(start)
            .unwrap_or_default()
            .as_nanos();
        if let Some((ns_name, calls)) = self.names.get(phase as usize) {
            self.metrics
                .count(ns_name, u64::try_from(ns).unwrap_or(u64::MAX));
            self.metrics.count(calls, 1);
        }
        out
    }
}
