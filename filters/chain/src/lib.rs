//! The aimesh chain as one filter: auth, pii-redaction, virtual-model, token-accounting and
//! header-auth run as stages inside one Wasm VM.
//!
//! Why: in Envoy each Wasm filter is its own VM with its own callbacks, and a request pays for
//! every filter's shell (context creation, ~8 host-to-VM calls, its own body pause and read)
//! whatever the filter does; `make bench` prices that. One filter pays it once.
//!
//! The stages are the standalone filters' own code; this crate only replays Envoy's filter-chain
//! rules between them (see [`flow`]). Each stage reads and mutates the real request through host
//! calls, so what one stage sets (an `x-aimesh-*` header, a rewritten body, filter state) is what
//! the next one sees, exactly as in the chain of five.

mod config;
mod flow;
mod timing;

use std::rc::Rc;

use aimesh_glue::{Headers, HostMetrics};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

use config::{ChainConfig, STAGES};
use flow::{Flow, Stage};
use timing::{Phase, Timer};

/// One configured stage: its name (the config section), the filter's root context and, with
/// `stage_timings`, its timing counters.
struct StageRoot {
    name: &'static str,
    root: Box<dyn RootContext>,
    timer: Option<Rc<Timer>>,
}

/// One stage's stream context, timed or not.
struct Staged {
    ctx: Box<dyn HttpContext>,
    timer: Option<Rc<Timer>>,
}

impl Staged {
    fn run<R>(&mut self, phase: Phase, f: impl FnOnce(&mut dyn HttpContext) -> R) -> R {
        match &self.timer {
            Some(t) => t.time(phase, || f(self.ctx.as_mut())),
            None => f(self.ctx.as_mut()),
        }
    }
}

impl Stage for Staged {
    fn request_headers(&mut self, n: usize, eos: bool) -> Action {
        self.run(Phase::RequestHeaders, |c| c.on_http_request_headers(n, eos))
    }
    fn request_body(&mut self, size: usize, eos: bool) -> Action {
        self.run(Phase::RequestBody, |c| c.on_http_request_body(size, eos))
    }
    fn request_trailers(&mut self, n: usize) -> Action {
        self.run(Phase::RequestTrailers, |c| c.on_http_request_trailers(n))
    }
    fn response_headers(&mut self, n: usize, eos: bool) -> Action {
        self.run(Phase::ResponseHeaders, |c| {
            c.on_http_response_headers(n, eos)
        })
    }
    fn response_body(&mut self, size: usize, eos: bool) -> Action {
        self.run(Phase::ResponseBody, |c| c.on_http_response_body(size, eos))
    }
    fn response_trailers(&mut self, n: usize) -> Action {
        self.run(Phase::ResponseTrailers, |c| c.on_http_response_trailers(n))
    }
}

/// The root context of the filter a stage runs.
fn new_root(stage: &str) -> Option<Box<dyn RootContext>> {
    Some(match stage {
        "auth" => aimesh_auth::root(),
        "pii-redaction" => aimesh_pii_redaction::root(),
        "virtual-model" => aimesh_virtual_model::root(),
        "token-accounting" => aimesh_token_accounting::root(),
        "header-auth" => aimesh_header_auth::root(),
        _ => return None,
    })
}

/// A fresh root context of the chain.
pub fn root() -> Box<dyn RootContext> {
    Box::new(Root::default())
}

#[derive(Default)]
struct Root {
    stages: Vec<StageRoot>,
    metrics: Rc<HostMetrics>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let raw = aimesh_glue::plugin_configuration();
        let Some(cfg) = ChainConfig::load(raw.as_deref()) else {
            return false;
        };
        let mut stages = Vec::new();
        for name in STAGES {
            let (Some(section), Some(mut root)) = (cfg.section(name), new_root(name)) else {
                continue;
            };
            // The stage logs its own error, naming the field.
            if !aimesh_glue::stage::with_config(section, || root.on_configure(0)) {
                return false;
            }
            let timer = cfg
                .stage_timings
                .then(|| Rc::new(Timer::new(name, self.metrics.clone())));
            stages.push(StageRoot { name, root, timer });
        }
        log::info!(
            "chain: stages {}",
            stages.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
        );
        self.stages = stages;
        true
    }

    fn on_tick(&mut self) {
        for s in &mut self.stages {
            s.root.on_tick();
        }
    }

    fn create_http_context(&self, id: u32) -> Option<Box<dyn HttpContext>> {
        let stages = self
            .stages
            .iter()
            .map(|s| {
                let ctx = s.root.create_http_context(id)?;
                Some(Staged {
                    ctx,
                    timer: s.timer.clone(),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Box::new(Chain::new(stages)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One request through every stage.
struct Chain {
    flow: Flow<Staged>,
    /// Internal `x-aimesh-*` request headers the stages handed each other (never sent to Envoy).
    internal: Headers,
}

impl Chain {
    fn new(stages: Vec<Staged>) -> Self {
        Chain {
            flow: Flow::new(stages),
            internal: Headers::default(),
        }
    }

    /// Runs one Envoy callback's worth of stages sharing header snapshots (the map is read
    /// from Envoy once per callback, not once per stage) and the internal headers.
    fn shared<R>(&mut self, f: impl FnOnce(&mut Flow<Staged>) -> R) -> R {
        aimesh_glue::headers::begin_callback(std::mem::take(&mut self.internal));
        let out = f(&mut self.flow);
        self.internal = aimesh_glue::headers::end_callback();
        out
    }
}

impl Context for Chain {
    fn on_done(&mut self) -> bool {
        for s in self.flow.stages_mut() {
            s.ctx.on_done();
        }
        true
    }
}

impl HttpContext for Chain {
    fn on_http_request_headers(&mut self, n: usize, eos: bool) -> Action {
        self.shared(|f| f.request_headers(n, eos))
    }

    fn on_http_request_body(&mut self, size: usize, eos: bool) -> Action {
        self.shared(|f| f.request_body(size, eos))
    }

    fn on_http_request_trailers(&mut self, n: usize) -> Action {
        self.shared(|f| f.request_trailers(n))
    }

    fn on_http_response_headers(&mut self, n: usize, eos: bool) -> Action {
        self.shared(|f| f.response_headers(n, eos))
    }

    fn on_http_response_body(&mut self, size: usize, eos: bool) -> Action {
        self.shared(|f| f.response_body(size, eos))
    }

    fn on_http_response_trailers(&mut self, n: usize) -> Action {
        self.shared(|f| f.response_trailers(n))
    }

    fn on_log(&mut self) {
        self.shared(|f| {
            for s in f.stages_mut() {
                s.run(Phase::Log, |c| c.on_log());
            }
        });
    }
}

#[cfg(target_family = "wasm")]
#[allow(missing_docs)]
mod start {
    use super::*;

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
        proxy_wasm::set_root_context(|_| root());
    }}
}
