//! `libaimesh.so`: aimesh's stages as an Envoy dynamic module, for Envoy 1.40.0.
//!
//! The second implementation of the host interface (`aimesh-host`), next to the proxy-wasm one
//! (`aimesh-glue`): the same [`aimesh_host::Flow`] over the same table of stages
//! (`filters/chain`'s `STAGES`, so a stage added there is in this build too), run as native
//! code inside Envoy with no VM boundary. Envoy loads it through the
//! `envoy.filters.http.dynamic_modules` HTTP filter (`filter_name: chain`, the chain's JSON
//! configuration as `filter_config`).
//!
//! - [`ffi`]: the ABI bindings, the crate's only `unsafe`;
//! - [`host`]: `NativeHost`, one request's `Host`;
//! - [`store`]: the shared store as process memory (workers are threads of one process);
//! - [`metrics`]: stats defined and updated through the ABI;
//! - [`mirror`]: nested dynamic metadata (JWT claims) through a filter-state mirror;
//! - [`module`]: configurations (one pipeline per worker thread) and streams.

pub mod ffi;
pub mod host;
pub mod metrics;
pub mod mirror;
pub mod module;
pub mod store;
