//! Provider credentials and custom endpoints (`/proxy-api/{account}/{endpoint}/...`).
//!
//! Pure logic of the header-auth filter: config ([`config`]), secret resolution and credential
//! rendering ([`creds`]), path parsing and safety checks ([`path`]), base URLs ([`url`]), the
//! egress allow-list ([`egress`]), the per-request decision ([`plan`]) and the reply scrubber
//! ([`scrub`]).

pub mod config;
pub mod creds;
pub mod plan;
pub mod scrub;

// Syntax rules gateway.yaml shares with this filter: owned by aimesh-config, kept at these paths.
pub use aimesh_config::{egress, names, path, url};

pub use config::{AccountConfig, AllowConfig, Config, EndpointConfig, MissingEnv, Role};
pub use creds::{AuthConfig, Env, StdEnv};
pub use plan::{Decision, EndpointError, HeaderSet, Plan, Request, Route};
pub use scrub::Scrubber;

#[cfg(test)]
mod tests;
