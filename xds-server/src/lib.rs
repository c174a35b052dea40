//! aimesh-xds as a library: the gateway.yaml model and loader, the Envoy resources made from it,
//! and the xDS protocol state, for the binary, the fuzz targets and benchmarks.

pub mod access_log;
pub mod ads;
pub mod diff;
pub mod filters;
pub mod keys;
pub mod local_reply;
pub mod model;
pub mod model_limits;
pub mod native;
pub mod protocol;
pub mod render;
pub mod resources;
pub mod schema;
pub mod serve;
pub mod sim;
pub mod snapshot;
pub mod tls;
pub mod tracing;
pub mod validate;
