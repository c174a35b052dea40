//! The virtual model table: owned by aimesh-config (the filter and aimesh-xds share it).

pub use aimesh_config::routing::*;
