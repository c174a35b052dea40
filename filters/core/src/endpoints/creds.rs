//! Upstream credentials: owned by aimesh-config (rendering is pure and config-time only).

pub use aimesh_config::endpoints::creds::*;
