//! The configuration of every aimesh filter, owned in one place: auth ([`auth`]),
//! token-accounting ([`accounting`]), pii-redaction ([`pii`]), header-auth's accounts and custom
//! endpoints ([`endpoints`]), virtual-model's routing table ([`routing`]) and the one-filter
//! chain ([`chain`]), each Serialize + Deserialize (unknown fields refused) + JSON schema, with
//! its validation returning a [`ConfigError`] that names the field. The syntax rules those share
//! with aimesh-xds's gateway.yaml checks live here too, once: account and endpoint names
//! ([`names`]), base URLs ([`url`]), the egress allow-list ([`egress`]), path safety ([`path`])
//! and RFC 3339 times ([`time`]). The filters load these types from their plugin configuration
//! and aimesh-xds builds them, so the two cannot drift. Host-free: it builds for wasm32-wasip1.

pub mod accounting;
pub mod auth;
pub mod chain;
pub mod dialect;
pub mod egress;
pub mod endpoints;
pub mod error;
pub mod fleet;
pub mod mcp;
pub mod metadata;
pub mod names;
pub mod path;
pub mod pii;
pub mod routing;
pub mod time;
pub mod translate;
pub mod url;

pub use error::{ConfigError, Problem, Validate};
