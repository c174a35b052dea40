//! Pure-Rust logic shared by the aimesh filters.
//!
//! Nothing here calls the proxy-wasm host: time, shared state and metrics come in through the
//! small traits in [`host`], so every decision is tested natively. The Wasm glue crate implements
//! those traits over the proxy-wasm ABI.

pub mod accounting;
pub mod api;
pub mod auth;
pub mod dialect;
pub mod endpoints;
pub mod error;
pub mod headers;
pub mod host;
pub mod limits;
pub mod multipart;
pub mod openai;
pub mod pii;
pub mod routing;
pub mod translate;

pub use dialect::Dialect;
pub use error::{ApiError, ErrorKind};
