//! aimesh pii-redaction filter (skeleton: loads and validates its config and counts requests; the feature
//! lands with its issue).

use aimesh_core::host::Metrics;
use aimesh_glue::{load_config, HostMetrics, Validate};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use serde::Deserialize;

// `proxy_wasm::main!` defines the undocumented `_start` export the host calls.
#[allow(missing_docs)]
mod start {
    use super::*;

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Info);
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
    }}
}

/// Filter configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

impl Validate for Config {
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

#[derive(Default)]
struct Root {
    metrics: std::rc::Rc<HostMetrics>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let raw = self.get_plugin_configuration();
        load_config::<Config>("pii-redaction", raw.as_deref()).is_some()
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Filter {
            metrics: self.metrics.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Filter {
    metrics: std::rc::Rc<HostMetrics>,
}

impl Context for Filter {}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        self.metrics.count("aimesh.pii_redaction.requests", 1);
        Action::Continue
    }
}
