//! Test-only filter. With `{}` it does nothing (the "no-op Wasm filter" row of the benchmarks).
//! With `{"trap_when_header": "x-probe-trap"}` a request carrying that header makes the VM trap
//! (an `unreachable` instruction), which is how the failure-policy tests crash a filter on demand.
//! With `{"work": {...}}` it performs the given host calls on every request, which is how
//! `harness.bench_host` prices each kind of host call in Envoy (its binary has no symbols, so a
//! CPU profile cannot name them).

// A test filter that prices raw host calls: it must make them directly.
#![allow(clippy::disallowed_methods)]

use aimesh_core::host::Metrics;
use aimesh_glue::HostMetrics;
use aimesh_host::{load_config, Validate};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use serde::Deserialize;
use std::rc::Rc;

// `proxy_wasm::main!` defines the undocumented `_start` export the host calls.
#[allow(missing_docs)]
mod start {
    use super::*;

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Info);
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
    }}
}

/// Probe configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// When a request carries this header, the VM traps in `on_http_request_headers`.
    #[serde(default)]
    pub trap_when_header: Option<String>,
    /// Host calls made on every request (benchmarks only).
    #[serde(default)]
    pub work: Work,
}

/// Host calls per request; every count defaults to zero.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Work {
    /// `get_http_request_header` calls (for a header the request carries).
    pub get_header: u32,
    /// `get_http_request_headers` calls (the whole map).
    pub get_header_map: u32,
    /// Request headers set (`x-probe-<i>`).
    pub set_header: u32,
    /// Request headers removed (`x-probe-absent-<i>`, not present).
    pub remove_header: u32,
    /// Counter increments (one metric).
    pub count: u32,
    /// Filter-state properties set.
    pub set_property: u32,
    /// Histogram samples (one metric).
    pub histogram: u32,
    /// Shared-data reads followed by a CAS write of the same key.
    pub shared: u32,
    /// `get_property` calls (`xds.route_name`).
    pub get_property: u32,
    /// Read every response body chunk.
    pub read_response_body: bool,
    /// Pause the headers and read the whole body once at its end.
    pub read_body: bool,
    /// Also replace the body with itself (needs `read_body`).
    pub set_body: bool,
}

impl Validate for Config {
    fn validate(&self) -> Result<(), aimesh_host::ConfigError> {
        Ok(())
    }
}

#[derive(Default)]
struct Root {
    config: Rc<Config>,
    /// Metric ids are defined once per VM, as the filters' `HostMetrics` does.
    metrics: Rc<HostMetrics>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let raw = self.get_plugin_configuration();
        match load_config::<Config>(raw.as_deref().unwrap_or_default()) {
            Ok(c) => {
                self.config = Rc::new(c);
                true
            }
            Err(e) => {
                log::error!("probe: {e}");
                false
            }
        }
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Probe {
            config: self.config.clone(),
            metrics: self.metrics.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Probe {
    config: Rc<Config>,
    metrics: Rc<HostMetrics>,
}

impl Context for Probe {}

impl HttpContext for Probe {
    fn on_http_request_headers(&mut self, _n: usize, eos: bool) -> Action {
        if let Some(h) = &self.config.trap_when_header {
            if self.get_http_request_header(h).is_some() {
                trap();
            }
        }
        let config = Rc::clone(&self.config);
        let w = &config.work;
        for _ in 0..w.get_header {
            let _ = self.get_http_request_header("content-type");
        }
        for _ in 0..w.get_header_map {
            let _ = self.get_http_request_headers();
        }
        for i in 0..w.set_header {
            self.set_http_request_header(&format!("x-probe-{i}"), Some("1"));
        }
        for i in 0..w.remove_header {
            self.set_http_request_header(&format!("x-probe-absent-{i}"), None);
        }
        for _ in 0..w.count {
            self.metrics.count("aimesh.probe.count", 1);
        }
        for i in 0..w.histogram {
            self.metrics.record("aimesh.probe.histogram", u64::from(i));
        }
        for _ in 0..w.shared {
            let (value, cas) = self.get_shared_data("aimesh.probe.shared");
            let mut v = value.unwrap_or_default();
            v.truncate(64);
            v.push(b'x');
            let _ = self.set_shared_data("aimesh.probe.shared", Some(&v), cas);
        }
        for _ in 0..w.get_property {
            let _ = proxy_wasm::hostcalls::get_property(vec!["xds", "route_name"]);
        }
        for i in 0..w.set_property {
            let _ = proxy_wasm::hostcalls::set_property(
                vec![format!("aimesh.probe_{i}").as_str()],
                Some(b"1"),
            );
        }
        if w.read_body && !eos {
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, size: usize, _eos: bool) -> Action {
        if self.config.work.read_response_body {
            let _ = self.get_http_response_body(0, size);
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, size: usize, eos: bool) -> Action {
        let w = &self.config.work;
        if !w.read_body {
            return Action::Continue;
        }
        if !eos {
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, size).unwrap_or_default();
        if w.set_body {
            self.set_http_request_body(0, size, &body);
        }
        Action::Continue
    }
}

/// Traps the VM: the point of this test filter.
#[cfg(target_arch = "wasm32")]
fn trap() {
    core::arch::wasm32::unreachable()
}

#[cfg(not(target_arch = "wasm32"))]
fn trap() {}
