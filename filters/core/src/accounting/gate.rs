//! The request side of limits, as the token-accounting stage runs it: when a request can be
//! admitted (from its headers or only from its body), what it reserves, how a refusal is
//! described, and what a shared-store fault does (the request is admitted: fail open).
//!
//! Pure over [`SharedStore`], so every branch is tested natively, faults included.

use std::collections::HashMap;

use crate::accounting::admission::{self, Limits, Refusal, Reservation};
use crate::accounting::estimate;
use crate::accounting::price::Price;
use crate::accounting::Usage;
use crate::host::{SharedStore, StoreError};

/// What the request headers told the stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeaderFacts {
    /// The requested model is known without the body (auth published it).
    pub model_known: bool,
    /// The client asked for a stream.
    pub stream: bool,
    /// The client set `stream_options.include_usage` itself.
    pub client_usage: bool,
    /// A limit applies to the caller's key.
    pub limited: bool,
    /// The config asks for every body, to estimate prompts.
    pub estimate_prompt: bool,
    /// The request's `content-length`.
    pub content_length: Option<u64>,
}

/// What to do once the request headers are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderPlan {
    /// Admit now, with this prompt estimate (tokens), without waiting for the body.
    pub admit_prompt: Option<u64>,
    /// Hold the request until its body is complete and read it.
    pub read_body: bool,
}

/// Decides the request-headers phase. Admission needs the model (for the price) and a size (for
/// the prompt estimate): with auth's facts and a `content-length` it runs now, else from the
/// body. The body is read only when something needs it, since holding it delays the upstream.
pub fn plan_headers(f: &HeaderFacts) -> HeaderPlan {
    let admit_prompt = f
        .content_length
        .filter(|_| f.limited && f.model_known)
        .map(estimate::prompt_from_size);
    let read_body = !f.model_known
        || (f.stream && !f.client_usage)
        || (f.limited && admit_prompt.is_none())
        || f.estimate_prompt;
    HeaderPlan {
        admit_prompt,
        read_body,
    }
}

/// One request asking to be admitted.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    /// The caller's key id.
    pub key_id: &'a str,
    /// Its limits.
    pub limits: &'a Limits,
    /// Prompt estimate, tokens.
    pub prompt: u64,
    /// `max_tokens` of the request (0 reserved when absent).
    pub max_tokens: Option<u64>,
    /// Price of the requested model (an unpriced model reserves no cost).
    pub price: Option<&'a Price>,
}

/// What admission decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Admitted; settle the reservation when the response ends.
    Admitted(Reservation),
    /// Refused: answer the client. `remaining_tpm` is the TPM bucket's level for the
    /// `x-ratelimit-remaining-tokens` header of a budget refusal.
    Refused {
        /// Why.
        refusal: Refusal,
        /// Tokens left in the key's TPM bucket, when one applies.
        remaining_tpm: Option<u64>,
    },
    /// The shared store failed: the request is admitted without a reservation. A store fault
    /// must not take the gateway down with it.
    FailedOpen(StoreError),
}

/// Reserves the request's estimate (prompt plus `max_tokens`, and its cost) or refuses it.
pub fn admit<S: SharedStore + ?Sized>(store: &S, ask: &Ask<'_>, now_ms: u64) -> Verdict {
    let completion = ask.max_tokens.unwrap_or(0);
    let cost = ask.price.map_or(0, |p| {
        p.cost_micro_usd(&Usage {
            input: ask.prompt,
            cached_input: 0,
            output: completion,
            cache_write: 0,
        })
    });
    let tokens = ask.prompt.saturating_add(completion);
    match admission::admit(store, ask.key_id, ask.limits, tokens, cost, now_ms) {
        Ok(Ok(r)) => Verdict::Admitted(r),
        Ok(Err(refusal)) => {
            let remaining_tpm = ask
                .limits
                .tpm
                .and_then(|_| remaining_tokens(store, ask.key_id, ask.limits, now_ms));
            Verdict::Refused {
                refusal,
                remaining_tpm,
            }
        }
        Err(e) => Verdict::FailedOpen(e),
    }
}

/// Tokens left in a key's TPM bucket (a zero-token acquisition reads the level).
fn remaining_tokens<S: SharedStore + ?Sized>(
    store: &S,
    key_id: &str,
    limits: &Limits,
    now_ms: u64,
) -> Option<u64> {
    let tpm_only = Limits {
        tpm: limits.tpm,
        ..Limits::default()
    };
    let r = admission::admit(store, key_id, &tpm_only, 0, 0, now_ms)
        .ok()?
        .ok()?;
    r.remaining_tokens
}

const DAY_MS: u64 = 86_400_000;

/// The UTC day on which each key's store keys were last created by this worker.
///
/// Keys limited by `limits.default` are created on first use, not at configure time (their ids
/// are not known then). Creating them reads three store keys, a price every request would pay,
/// so it is done once per key and day.
#[derive(Debug, Default)]
pub struct KeyDays {
    created: HashMap<String, u64>,
}

impl KeyDays {
    /// Creates `key_id`'s store keys for today and tomorrow unless this already did so today.
    /// A failed creation is retried by the next request.
    pub fn ensure<S: SharedStore + ?Sized>(
        &mut self,
        store: &S,
        key_id: &str,
        limits: &Limits,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let day = now_ms / DAY_MS;
        if self.created.get(key_id) == Some(&day) {
            return Ok(());
        }
        admission::init_keys(store, key_id, limits, now_ms)?;
        // Keys of past days are never asked for again.
        self.created.retain(|_, d| *d >= day);
        self.created.insert(key_id.to_string(), day);
        Ok(())
    }
}

#[cfg(test)]
#[path = "gate_tests.rs"]
mod tests;
