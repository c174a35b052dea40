//! The proxy-wasm implementation of `aimesh-host`: Envoy's Wasm ABI behind the host-neutral
//! interface the stages are written against, and the one adapter every Wasm module uses.
//!
//! [`WasmHost`] turns `Host` calls into proxy-wasm host calls (reading each header map once per
//! callback, publishing the typed facts as `x-aimesh-*` headers only where another filter needs
//! them); [`filter`] runs a configured pipeline of stages as one Envoy HTTP filter: one stage in
//! a filter's own module, all five in the chain. Nothing here panics: a panic traps the VM and
//! turns every later request on that worker into a 503.

// The one implementation of the host interface over proxy-wasm: the direct host calls that
// clippy.toml forbids elsewhere are this crate's job.
#![allow(clippy::disallowed_methods)]

pub mod filter;
mod header_map;
pub mod host;
mod timing;
mod wasm_host;

pub use filter::{root, Configure};
pub use host::{host_now, HostMetrics, HostStore};
pub use wasm_host::{FactsMode, WasmEnv, WasmHost};
/// Re-exported for the entry-point macros.
pub use {aimesh_host, proxy_wasm};
