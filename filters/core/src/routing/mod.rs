//! Virtual-model selection: one logical model name served by several backends.
//!
//! - [`config`]: the virtual model table (targets, strategy, sticky sessions, retry policy);
//! - [`pick`]: weighted, latency and priority choice with an injectable RNG;
//! - [`stats`]: time-per-output-token samples shared by every worker (one CAS write per reply);
//! - [`sticky`]: session -> target pins with a TTL;
//! - [`rewrite`]: replaces the top-level `model` value of a JSON body, keeping every other byte;
//! - [`reply`]: which target answered a reply, and what that does to its session's pin;
//! - [`retry`]: what a reply status means (retry the same target, fall back, or done) and the
//!   Envoy retry settings that implement it.

pub mod config;
pub mod pick;
pub mod reply;
pub mod retry;
pub mod rewrite;
pub mod stats;
pub mod sticky;
pub mod tokens;

pub use config::{RoutingConfig, Strategy, Target, VirtualModel};
pub use pick::{Rng, XorShift};

/// Why a request could not be routed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    /// The model is neither a virtual model nor allowed through as is.
    #[error("The model `{0}` does not exist or you do not have access to it.")]
    ModelNotFound(String),
}

impl crate::ErrorKind for RoutingError {
    fn status(&self) -> u16 {
        404
    }
    fn code(&self) -> &'static str {
        "model_not_found"
    }
}
