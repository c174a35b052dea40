//! Auth filter configuration: owned by aimesh-config (the filter and aimesh-xds share it).

pub use aimesh_config::auth::*;
