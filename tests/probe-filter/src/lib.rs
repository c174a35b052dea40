//! Test-only filter. With `{}` it does nothing (the "no-op Wasm filter" row of the benchmarks).
//! With `{"trap_when_header": "x-probe-trap"}` a request carrying that header makes the VM trap
//! (an `unreachable` instruction), which is how the failure-policy tests crash a filter on demand.

use aimesh_glue::{load_config, Validate};
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
}

impl Validate for Config {
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

#[derive(Default)]
struct Root {
    config: Rc<Config>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let raw = self.get_plugin_configuration();
        match load_config::<Config>("probe", raw.as_deref()) {
            Some(c) => {
                self.config = Rc::new(c);
                true
            }
            None => false,
        }
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Probe {
            config: self.config.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Probe {
    config: Rc<Config>,
}

impl Context for Probe {}

impl HttpContext for Probe {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        if let Some(h) = &self.config.trap_when_header {
            if self.get_http_request_header(h).is_some() {
                trap();
            }
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
