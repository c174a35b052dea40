//! The module: filter configurations and streams, as the event hooks in [`crate::ffi`] see them.
//!
//! Envoy creates a configuration on its main thread and streams on its worker threads, all
//! from the one configuration object. The stages keep per-worker state (`Rc`, `RefCell`), as
//! they do in Wasm where each worker has its own VM, so each worker configures its own copy of
//! the pipeline from the configuration's JSON the first time it sees a stream; the main
//! thread configures one copy first, only to refuse a bad configuration at load.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aimesh_host::config::unwrap_generic_secret;
use aimesh_host::{
    Action, CalloutResponse, Configured, Family, Flow, Headers, StageDef, StageError, StageRoot,
};

use crate::ffi::{log, log_enabled, Filter, FilterConfig, LogLevel};
use crate::host::{NativeEnv, NativeHost, Phase};
use crate::metrics::NativeMetrics;

/// The filter name of the one pipeline this module runs: every configured stage of
/// `filters/chain`'s table (`STAGES`), in its order.
pub const CHAIN: &str = "chain";

/// Status codes of the ABI's `on_http_filter_*` hooks: 0 is Continue everywhere; 1 is
/// StopIteration for headers and trailers and StopIterationAndBuffer for bodies, which is what
/// proxy-wasm's `Pause` means in each phase.
fn status(a: Action) -> u32 {
    match a {
        Action::Continue => 0,
        Action::Pause => 1,
    }
}

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, _m: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, r: &log::Record<'_>) {
        let level = match r.level() {
            log::Level::Error => LogLevel::Error,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Info => LogLevel::Info,
            log::Level::Debug | log::Level::Trace => LogLevel::Debug,
        };
        log(level, &r.args().to_string());
    }
    fn flush(&self) {}
}

/// Once, when Envoy loads the module: the stages' `log` lines go to Envoy's log.
pub fn program_init() {
    static LOGGER: Logger = Logger;
    if log::set_logger(&LOGGER).is_ok() {
        let max = [
            (LogLevel::Debug, log::LevelFilter::Debug),
            (LogLevel::Info, log::LevelFilter::Info),
            (LogLevel::Warn, log::LevelFilter::Warn),
        ]
        .into_iter()
        .find(|(l, _)| log_enabled(*l))
        .map_or(log::LevelFilter::Error, |(_, f)| f);
        log::set_max_level(max);
    }
}

/// Configures the pipeline from `raw`.
fn configure(raw: &[u8], env: &NativeEnv) -> Result<Configured, StageError> {
    stage::configure(raw, env)
}

/// The stages `raw` configures (its top-level sections), each with its section; a
/// configuration that does not parse has none (and is refused by `configure`).
fn configured(raw: &[u8]) -> Vec<(&'static StageDef, serde_json::Value)> {
    let mut sections: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(raw).unwrap_or_default();
    stage::STAGES
        .iter()
        .filter_map(|d| Some((*d, sections.remove(d.name)?)))
        .collect()
}

/// The fixed-name counters of the configured stages, to define up front.
fn fixed_counters(raw: &[u8]) -> Vec<&'static str> {
    configured(raw)
        .into_iter()
        .flat_map(|(d, _)| d.counters.iter().copied())
        .collect()
}

/// The labelled stat families of the configured stages (each given its own section).
fn stage_families(raw: &[u8]) -> Vec<Family> {
    configured(raw)
        .into_iter()
        .flat_map(|(d, section)| (d.families)(section.to_string().as_bytes()))
        .collect()
}

/// One filter configuration (one `DynamicModuleFilter` in Envoy's config).
pub struct Config {
    id: u64,
    raw: Vec<u8>,
    env: NativeEnv,
}

/// Creates a configuration; `None` (logged) refuses it, and Envoy rejects the config.
pub fn config_new(config: FilterConfig, name: &[u8], raw: &[u8]) -> Option<Box<Config>> {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let name = String::from_utf8_lossy(name);
    if name != CHAIN {
        log::error!("aimesh: unknown filter_name `{name}`: this module runs `{CHAIN}`");
        return None;
    }
    let raw = unwrap_generic_secret(raw).unwrap_or(raw);
    let env = NativeEnv::new(Arc::new(NativeMetrics::new(
        config,
        &fixed_counters(raw),
        &stage_families(raw),
    )));
    match configure(raw, &env) {
        Ok(c) => {
            let names: Vec<&str> = c.stages.iter().map(|(n, _)| *n).collect();
            log::info!("aimesh native chain: stages {}", names.join(", "));
        }
        Err(e) => {
            log::error!("{e}");
            return None;
        }
    }
    Some(Box::new(Config {
        id: NEXT.fetch_add(1, Ordering::Relaxed),
        raw: raw.to_vec(),
        env,
    }))
}

/// One worker's copy of a configuration's pipeline.
struct Worker {
    stages: Vec<Box<dyn StageRoot>>,
    tick: Option<Duration>,
    last_tick: Cell<Instant>,
}

impl Worker {
    fn new(c: &Config) -> Option<Rc<Worker>> {
        let configured = match configure(&c.raw, &c.env) {
            Ok(v) => v,
            Err(e) => {
                log::error!("{e}");
                return None;
            }
        };
        let stages: Vec<Box<dyn StageRoot>> =
            configured.stages.into_iter().map(|(_, r)| r).collect();
        let tick = stages.iter().filter_map(|s| s.tick_period()).min();
        Some(Rc::new(Worker {
            stages,
            tick,
            last_tick: Cell::new(Instant::now()),
        }))
    }

    /// Periodic work, run from the stream path when due (the ABI's timers are not needed for
    /// once-a-minute work that only matters while traffic flows).
    fn maybe_tick(&self, env: &NativeEnv) {
        let Some(period) = self.tick else { return };
        let now = Instant::now();
        if now.duration_since(self.last_tick.get()) < period {
            return;
        }
        self.last_tick.set(now);
        for s in &self.stages {
            if s.tick_period().is_some() {
                s.tick(env);
            }
        }
    }
}

thread_local! {
    /// This worker's pipelines, by configuration id.
    static WORKERS: RefCell<HashMap<u64, Option<Rc<Worker>>>> = RefCell::new(HashMap::new());
}

fn worker(c: &Config) -> Option<Rc<Worker>> {
    WORKERS.with(|w| {
        w.borrow_mut()
            .entry(c.id)
            .or_insert_with(|| Worker::new(c))
            .clone()
    })
}

/// One request through the pipeline; `flow` is `None` when a stage refused the stream (it then
/// passes through untouched, as in the Wasm builds).
pub struct Stream {
    flow: Option<Flow>,
    host: NativeHost,
}

impl Stream {
    /// A stream of configuration `c`.
    pub fn new(c: &Config, filter: Filter) -> Stream {
        let flow = worker(c).and_then(|w| {
            w.maybe_tick(&c.env);
            let stages = w
                .stages
                .iter()
                .map(|s| s.new_stream())
                .collect::<Option<Vec<_>>>()?;
            Some(Flow::new(stages))
        });
        Stream {
            flow,
            host: NativeHost::new(c.env.clone(), filter),
        }
    }

    fn run(
        &mut self,
        filter: Filter,
        phase: Phase,
        request_side: bool,
        f: impl FnOnce(&mut Flow, &mut NativeHost) -> Action,
    ) -> u32 {
        let Some(flow) = &mut self.flow else { return 0 };
        self.host.begin(filter, phase, request_side);
        let a = f(flow, &mut self.host);
        self.host.end();
        status(a)
    }

    /// `on_http_filter_request_headers`.
    pub fn request_headers(&mut self, f: Filter, eos: bool) -> u32 {
        self.run(f, Phase::Other, true, |fl, h| fl.request_headers(h, eos))
    }

    /// `on_http_filter_request_body`.
    pub fn request_body(&mut self, f: Filter, eos: bool) -> u32 {
        self.run(f, Phase::RequestBody, true, |fl, h| {
            let size = aimesh_host::PipelineHost::buffered_len(h, aimesh_host::Body::Request);
            fl.request_body(h, size, eos)
        })
    }

    /// `on_http_filter_request_trailers`.
    pub fn request_trailers(&mut self, f: Filter) -> u32 {
        self.run(f, Phase::Other, true, |fl, h| fl.request_trailers(h))
    }

    /// `on_http_filter_response_headers`.
    pub fn response_headers(&mut self, f: Filter, eos: bool) -> u32 {
        self.run(f, Phase::Other, false, |fl, h| fl.response_headers(h, eos))
    }

    /// `on_http_filter_response_body`.
    pub fn response_body(&mut self, f: Filter, eos: bool) -> u32 {
        self.run(f, Phase::ResponseBody, false, |fl, h| {
            let size = aimesh_host::PipelineHost::buffered_len(h, aimesh_host::Body::Response);
            fl.response_body(h, size, eos)
        })
    }

    /// `on_http_filter_response_trailers`.
    pub fn response_trailers(&mut self, f: Filter) -> u32 {
        self.run(f, Phase::Other, false, |fl, h| fl.response_trailers(h))
    }

    /// `on_http_filter_stream_complete`: before the access log is written.
    pub fn complete(&mut self, f: Filter) {
        self.run(f, Phase::Other, false, |fl, h| {
            fl.log(h);
            Action::Continue
        });
    }

    /// `on_http_filter_http_callout_done`.
    pub fn callout_done(&mut self, f: Filter, id: u64, headers: Headers, body: Vec<u8>) {
        let Ok(token) = u32::try_from(id) else { return };
        let response = CalloutResponse { headers, body };
        self.run(f, Phase::Other, true, |fl, h| {
            fl.callout_response(h, token, response);
            Action::Continue
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configured_stages_counters_are_defined_up_front_and_only_theirs() {
        let got = fixed_counters(br#"{"auth": {"keys": []}, "header-auth": {}}"#);
        assert!(got.contains(&"aimesh.auth.allowed"));
        assert!(got.contains(&"aimesh.header_auth.requests"));
        assert!(!got.iter().any(|n| n.starts_with("aimesh.virtual_model.")));
        assert!(fixed_counters(b"not json").is_empty());
    }

    #[test]
    fn the_configured_stages_families_carry_their_configured_labels() {
        let names = |raw: &[u8]| -> Vec<(&'static str, Vec<String>)> {
            stage_families(raw)
                .into_iter()
                .map(|f| (f.name, f.labels))
                .collect()
        };
        assert!(names(br#"{"auth": {"keys": []}}"#).is_empty());
        let ta = names(
            br#"{"token-accounting": {"metadata": {"keys": ["project"], "labels": ["project"]}}}"#,
        );
        let (_, labels) = ta
            .iter()
            .find(|(n, _)| *n == "aimesh.gen_ai.server.request.duration.milliseconds")
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            labels,
            [
                "operation_name",
                "provider_name",
                "request_model",
                "model",
                "meta_project"
            ]
        );
        assert!(ta
            .iter()
            .any(|(n, _)| *n == "aimesh.gen_ai.client.requests"));
        assert!(names(b"not json").is_empty());
    }
}
