//! Per-connection xDS protocol state, as plain synchronous code: a request or a new snapshot
//! goes in, the responses to send come out. The gRPC layer only moves messages.

pub mod delta;
pub mod sotw;

use crate::resources::{CLUSTER, LISTENER};

/// What a client's request said about the previous response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The client applied the response.
    Ack {
        /// Resource type.
        type_url: String,
        /// Version (SotW) or nonce (delta) acknowledged.
        version: String,
    },
    /// The client rejected the response; it keeps its previous config.
    Nack {
        /// Resource type.
        type_url: String,
        /// Envoy's reason.
        message: String,
    },
}

/// Types whose empty subscription means "everything" (wildcard).
pub fn wildcard_type(type_url: &str) -> bool {
    type_url == CLUSTER || type_url == LISTENER
}

/// Short type name for logs and metrics (`Cluster`).
pub fn short_type(type_url: &str) -> &str {
    type_url.rsplit('.').next().unwrap_or(type_url)
}

#[cfg(test)]
mod tests;
