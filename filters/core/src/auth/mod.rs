//! Auth decisions: virtual keys, JWT claim policies, model allow-lists and per-key limits.
//!
//! The Wasm filter (`filters/auth`) only moves bytes between Envoy and these functions:
//! [`AuthConfig`] is compiled once into a [`Policies`] table, each request is authenticated with
//! [`Policies::by_key`] or [`Policies::by_claims`], its model is checked with
//! [`Policy::allows_model`], and [`limits`] admits it against the per-key rate and concurrency
//! limits kept in the shared store.

pub mod catalogue;
pub mod config;
pub mod endpoints;
pub mod limits;
pub mod models;
pub mod table;

pub use aimesh_config::time;

pub use catalogue::{Catalogue, CatalogueConfig, Destination, ModelRoute, ModelsRequest};
pub use config::{AuthConfig, JwtConfig, JwtRule, KeyEntry};
pub use endpoints::EndpointAllow;
pub use limits::Limited;
pub use models::ModelAllow;
pub use table::{Policies, Policy, PolicyId};

use crate::error::ErrorKind;

/// Why the auth filter refused a request (body errors use [`crate::openai::BodyError`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Missing, unknown, expired or disabled key (or a JWT no rule maps): one answer for all,
    /// so a caller cannot tell a revoked key from a typo.
    #[error("Incorrect API key provided.")]
    InvalidKey,
    /// The key may not use this model.
    #[error("The API key is not allowed to use model '{0}'.")]
    ModelNotAllowed(String),
    /// The request names no model and the key's `endpoints` do not grant it.
    #[error("The API key is not allowed to call this endpoint.")]
    EndpointNotAllowed,
    /// Per-key request rate or concurrency limit reached.
    #[error("{0}")]
    RateLimited(Limited),
    /// The gateway serves no such model, or the key may not see it (one answer for both).
    #[error("The model '{0}' does not exist or you do not have access to it.")]
    ModelNotFound(String),
    /// A method other than GET on `/v1/models`: the catalogue is the gateway's, read-only.
    #[error("Only GET is allowed on the model catalogue.")]
    MethodNotAllowed,
}

impl ErrorKind for AuthError {
    fn status(&self) -> u16 {
        match self {
            AuthError::InvalidKey => 401,
            AuthError::ModelNotAllowed(_) | AuthError::EndpointNotAllowed => 403,
            AuthError::RateLimited(_) => 429,
            AuthError::ModelNotFound(_) => 404,
            AuthError::MethodNotAllowed => 405,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            AuthError::InvalidKey => "invalid_api_key",
            AuthError::ModelNotAllowed(_) => "model_not_allowed",
            AuthError::EndpointNotAllowed => "endpoint_not_allowed",
            AuthError::RateLimited(_) => "rate_limit_exceeded",
            AuthError::ModelNotFound(_) => "model_not_found",
            AuthError::MethodNotAllowed => "method_not_allowed",
        }
    }

    fn error_type(&self) -> &'static str {
        match self {
            // What OpenAI answers for an unknown model, which SDKs match on.
            AuthError::ModelNotFound(_) | AuthError::MethodNotAllowed => "invalid_request_error",
            _ => crate::error::error_type_for_status(self.status()),
        }
    }

    fn headers(&self) -> Vec<(String, String)> {
        match self {
            AuthError::RateLimited(l) => l.headers(),
            AuthError::MethodNotAllowed => vec![("allow".into(), "GET, HEAD".into())],
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ApiError;

    #[test]
    fn errors_have_stable_codes() {
        let e = ApiError::from_kind(&AuthError::ModelNotAllowed("gpt-5".into()));
        assert_eq!(e.status, 403);
        let v: serde_json::Value = serde_json::from_str(&e.body).unwrap();
        assert_eq!(v["error"]["code"], "model_not_allowed");
        assert_eq!(v["error"]["type"], "permission_error");
        let e = ApiError::from_kind(&AuthError::EndpointNotAllowed);
        let v: serde_json::Value = serde_json::from_str(&e.body).unwrap();
        assert_eq!(
            (e.status, v["error"]["code"].as_str()),
            (403, Some("endpoint_not_allowed"))
        );
        let e = ApiError::from_kind(&AuthError::InvalidKey);
        assert_eq!((e.status, e.headers.len()), (401, 0));
        let e = ApiError::from_kind(&AuthError::ModelNotFound("x".into()));
        let v: serde_json::Value = serde_json::from_str(&e.body).unwrap();
        assert_eq!(
            (e.status, &v["error"]["code"]),
            (404, &"model_not_found".into())
        );
        assert_eq!(v["error"]["type"], "invalid_request_error");
        let e = ApiError::from_kind(&AuthError::MethodNotAllowed);
        assert_eq!((e.status, e.headers[0].0.as_str()), (405, "allow"));
    }
}
