//! The one proxy-wasm adapter: a configured pipeline of stages as one Envoy HTTP filter.
//!
//! A filter's own module runs a pipeline of one stage and publishes the typed facts as headers
//! for the filters after it; the chain module runs all five and keeps the facts in the VM. The
//! stages cannot tell the difference: both are [`aimesh_host::Flow`]s over a [`WasmHost`].

use std::rc::Rc;
use std::time::Duration;

use aimesh_host::{CalloutResponse, Configured, Env, Flow, Headers, Stage, StageError, StageRoot};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, MapType};

use crate::host::HostMetrics;
use crate::timing::{Timed, Timer};
use crate::wasm_host::{FactsMode, WasmEnv, WasmHost};

/// A module's configuration step: the raw `PluginConfig.configuration` in, the stages out.
pub type Configure = fn(&[u8], &dyn Env) -> Result<Configured, StageError>;

/// A module's root context: `mode` is [`FactsMode::Headers`] for a filter's own module,
/// [`FactsMode::Shared`] for the chain. Modules call it through [`crate::wasm_module!`].
/// `id` is the root context's id: detached callouts are sent on its behalf.
pub fn root(
    name: &'static str,
    configure: Configure,
    mode: FactsMode,
    id: u32,
) -> Box<dyn RootContext> {
    Box::new(Root {
        name,
        configure,
        mode,
        stages: Vec::new(),
        env: WasmEnv::new(Rc::new(HostMetrics::default())),
        id,
    })
}

/// The entry point of a Wasm module (`_initialize`): the whole of a filter's cdylib crate.
///
/// `wasm_module!("auth", configure_fn, FactsMode::Headers)`.
#[macro_export]
macro_rules! wasm_module {
    ($name:expr, $configure:expr, $mode:expr) => {
        // `_initialize`, the export the host calls; an ABI symbol, not an API to document.
        #[cfg(target_family = "wasm")]
        #[allow(missing_docs)]
        mod start {
            #[allow(unused_imports)]
            use super::*;

            $crate::proxy_wasm::main! {{
                $crate::proxy_wasm::set_log_level($crate::proxy_wasm::types::LogLevel::Info);
                $crate::proxy_wasm::set_root_context(|id| {
                    $crate::filter::root($name, $configure, $mode, id)
                });
            }}
        }
    };
}

/// The entry point of a filter's own module: one stage, facts published as headers.
///
/// `wasm_filter!(aimesh_auth::STAGE)`.
#[macro_export]
macro_rules! wasm_filter {
    ($stage:expr) => {
        /// This module's configuration step: its one stage.
        #[cfg(target_family = "wasm")]
        fn configure(
            raw: &[u8],
            env: &dyn $crate::aimesh_host::Env,
        ) -> Result<$crate::aimesh_host::Configured, $crate::aimesh_host::StageError> {
            $crate::aimesh_host::Configured::one(&$stage, raw, env)
        }
        $crate::wasm_module!($stage.name, configure, $crate::FactsMode::Headers);
    };
}

/// The `PluginConfig.configuration` bytes, unwrapped when aimesh-xds sent them as a
/// `GenericSecret` (see [`aimesh_host::config::unwrap_generic_secret`]).
fn plugin_configuration() -> Vec<u8> {
    let raw = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
        .ok()
        .flatten()
        .unwrap_or_default();
    match aimesh_host::config::unwrap_generic_secret(&raw) {
        Some(inner) => inner.to_vec(),
        None => raw,
    }
}

struct StageSlot {
    root: Box<dyn StageRoot>,
    timer: Option<Rc<Timer>>,
}

struct Root {
    name: &'static str,
    configure: Configure,
    mode: FactsMode,
    stages: Vec<StageSlot>,
    env: WasmEnv,
    id: u32,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let raw = plugin_configuration();
        let configured = match (self.configure)(&raw, &self.env) {
            Ok(c) => c,
            Err(e) => {
                // Envoy then rejects the filter config instead of running with a wrong one.
                match e {
                    StageError::In { .. } => log::error!("{e}"),
                    e => log::error!("{}: {e}", self.name),
                }
                return false;
            }
        };
        let metrics = self.env.host_metrics();
        let names: Vec<&str> = configured.stages.iter().map(|(n, _)| *n).collect();
        if names.len() > 1 {
            log::info!("{}: stages {}", self.name, names.join(", "));
        }
        self.stages = configured
            .stages
            .into_iter()
            .map(|(name, root)| StageSlot {
                root,
                timer: configured
                    .stage_timings
                    .then(|| Rc::new(Timer::new(name, metrics.clone()))),
            })
            .collect();
        let tick: Option<Duration> = self
            .stages
            .iter()
            .filter_map(|s| s.root.tick_period())
            .min();
        if let Some(t) = tick {
            let _ = hostcalls::set_tick_period(t);
        }
        true
    }

    fn on_tick(&mut self) {
        for s in &self.stages {
            if s.root.tick_period().is_some() {
                s.root.tick(&self.env);
            }
        }
    }

    fn create_http_context(&self, id: u32) -> Option<Box<dyn HttpContext>> {
        let stages = self
            .stages
            .iter()
            .map(|s| {
                let stage = s.root.new_stream()?;
                Some(match &s.timer {
                    Some(t) => Box::new(Timed::new(stage, t.clone())) as Box<dyn Stage>,
                    None => stage,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Box::new(Stream {
            flow: Flow::new(stages),
            host: WasmHost::new(self.env.clone(), self.mode).with_ids(self.id, id),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One request through the pipeline.
struct Stream {
    flow: Flow,
    host: WasmHost,
}

fn action(a: aimesh_host::Action) -> Action {
    match a {
        aimesh_host::Action::Continue => Action::Continue,
        aimesh_host::Action::Pause => Action::Pause,
    }
}

impl Stream {
    fn run(
        &mut self,
        request_side: bool,
        f: impl FnOnce(&mut Flow, &mut WasmHost) -> aimesh_host::Action,
    ) -> Action {
        self.host.begin(request_side);
        let a = f(&mut self.flow, &mut self.host);
        self.host.end();
        action(a)
    }
}

impl Context for Stream {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body: usize,
        _trailers: usize,
    ) {
        let response = CalloutResponse {
            headers: Headers::from_pairs(
                hostcalls::get_map_bytes(MapType::HttpCallResponseHeaders).unwrap_or_default(),
            ),
            body: hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body)
                .ok()
                .flatten()
                .unwrap_or_default(),
        };
        // Whether the request goes on is the pipeline's call (it resumes it itself).
        self.run(true, |f, h| {
            f.callout_response(h, token, response);
            aimesh_host::Action::Continue
        });
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _n: usize, eos: bool) -> Action {
        self.run(true, |f, h| f.request_headers(h, eos))
    }

    fn on_http_request_body(&mut self, size: usize, eos: bool) -> Action {
        self.run(true, |f, h| f.request_body(h, size, eos))
    }

    fn on_http_request_trailers(&mut self, _n: usize) -> Action {
        self.run(true, |f, h| f.request_trailers(h))
    }

    fn on_http_response_headers(&mut self, _n: usize, eos: bool) -> Action {
        self.run(false, |f, h| f.response_headers(h, eos))
    }

    fn on_http_response_body(&mut self, size: usize, eos: bool) -> Action {
        self.run(false, |f, h| f.response_body(h, size, eos))
    }

    fn on_http_response_trailers(&mut self, _n: usize) -> Action {
        self.run(false, |f, h| f.response_trailers(h))
    }

    fn on_log(&mut self) {
        self.run(false, |f, h| {
            f.log(h);
            aimesh_host::Action::Continue
        });
    }
}
