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
use aimesh_host::{Action, CalloutResponse, Host, Stage};

use crate::host::{host_now, HostMetrics};

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
        let start = host_now();
        let out = f();
        let ns = host_now()
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

/// A stage whose callbacks are timed.
pub struct Timed {
    inner: Box<dyn Stage>,
    timer: Rc<Timer>,
}

impl Timed {
    /// Times `inner` into `timer`'s counters.
    pub fn new(inner: Box<dyn Stage>, timer: Rc<Timer>) -> Self {
        Timed { inner, timer }
    }
}

impl Stage for Timed {
    fn request_headers(&mut self, h: &mut dyn Host, eos: bool) -> Action {
        let s = &mut self.inner;
        self.timer
            .time(Phase::RequestHeaders, || s.request_headers(h, eos))
    }
    fn request_body(&mut self, h: &mut dyn Host, size: usize, eos: bool) -> Action {
        let s = &mut self.inner;
        self.timer
            .time(Phase::RequestBody, || s.request_body(h, size, eos))
    }
    fn request_trailers(&mut self, h: &mut dyn Host) -> Action {
        let s = &mut self.inner;
        self.timer
            .time(Phase::RequestTrailers, || s.request_trailers(h))
    }
    fn response_headers(&mut self, h: &mut dyn Host, eos: bool) -> Action {
        let s = &mut self.inner;
        self.timer
            .time(Phase::ResponseHeaders, || s.response_headers(h, eos))
    }
    fn response_body(&mut self, h: &mut dyn Host, size: usize, eos: bool) -> Action {
        let s = &mut self.inner;
        self.timer
            .time(Phase::ResponseBody, || s.response_body(h, size, eos))
    }
    fn response_trailers(&mut self, h: &mut dyn Host) -> Action {
        let s = &mut self.inner;
        self.timer
            .time(Phase::ResponseTrailers, || s.response_trailers(h))
    }
    fn log(&mut self, h: &mut dyn Host) {
        let s = &mut self.inner;
        self.timer.time(Phase::Log, || s.log(h));
    }
    fn callout_response(
        &mut self,
        h: &mut dyn Host,
        token: u32,
        response: CalloutResponse,
    ) -> Action {
        self.inner.callout_response(h, token, response)
    }
}
