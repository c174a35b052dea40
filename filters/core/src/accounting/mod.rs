//! Token accounting: what a request cost, measured from the provider's `usage` or estimated.
//!
//! - [`sse`]: an incremental SSE scanner that never holds a byte back except the bytes of an
//!   event that may be the injected usage-only chunk.
//! - [`usage`]: `usage` from non-streaming bodies and stream chunks.
//! - [`anthropic`]: the same from Anthropic Messages bodies and events (cache tokens apart).
//! - [`inject`]: sets `stream_options.include_usage` in a request body without reserializing it.
//! - [`estimate`]: tiktoken counts when the provider reports no usage.
//! - [`price`]: price table and per-request cost in micro-USD.
//! - [`admission`]: tokens-per-minute and USD budgets across workers.
//! - [`gate`]: when a request is admitted, what it reserves, and failing open on store faults.
//! - [`audit`]: the typed audit record the access log reads.
//! - [`metadata`]: custom request metadata from a header, checked for the audit log and labels.

pub mod admission;
pub mod anthropic;
pub mod audit;
pub mod estimate;
pub mod gate;
pub mod inject;
pub mod metadata;
pub mod price;
pub mod sse;
pub mod usage;

pub use usage::Usage;
