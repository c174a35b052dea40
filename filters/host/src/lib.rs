//! The host-neutral side of every aimesh filter stage.
//!
//! It owns the interface a stage is written against ([`Host`], [`Stage`], [`StageRoot`]), the
//! typed request context the stages hand each other ([`Facts`]), the pipeline that runs stages
//! in one filter with Envoy's filter-chain rules ([`flow::Flow`]), and [`memory`], an in-memory
//! host on a clock the test moves, so each stage's callback sequences are tested natively.
//! Implementations over a real host live elsewhere: `aimesh-glue` (proxy-wasm) and
//! `aimesh-native` (Envoy's dynamic-module ABI). [`family`] describes the labelled stats a stage
//! records, for a host that defines them up front.

mod api;
pub mod config;
pub mod edits;
mod facts;
pub mod family;
pub mod flow;
mod headers;
pub mod memory;
mod reply;

pub use aimesh_core::host::{Metrics, SharedStore, StoreError};
pub use api::{
    no_families, Action, Body, CalloutError, CalloutResponse, ConfigureStage, Configured, Env,
    Host, Stage, StageDef, StageError, StageRoot,
};
pub use config::{load_config, ConfigError, Validate};
pub use facts::Facts;
pub use family::{Family, FamilyKind};
pub use flow::{Flow, PipelineHost};
pub use headers::Headers;
pub use reply::{replace_request_body, send_error, send_json, strip_internal_headers};
