//! The thin layer between proxy-wasm and `aimesh-core`.
//!
//! Filters call these helpers from their callbacks; none of them panics, since a panic traps the
//! VM and turns every later request on that worker into a 503.

pub mod config;
pub mod headers;
pub mod host;
pub mod reply;
pub mod stage;

pub use config::{load_config, ConfigError, Validate};
pub use headers::{replace_request_body, set_request_header, set_response_header, Headers};
pub use host::{HostClock, HostMetrics, HostStore};
pub use reply::{send_error, send_json, strip_internal_headers};
pub use stage::{plugin_configuration, Body};
