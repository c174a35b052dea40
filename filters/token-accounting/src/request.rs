//! Per-request state and the request phase: facts, admission, include_usage injection.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use aimesh_core::accounting::admission::{self, Limits, Reservation};
use aimesh_core::accounting::estimate;
use aimesh_core::accounting::sse::SseTap;
use aimesh_core::accounting::{inject, Usage};
use aimesh_core::headers;
use aimesh_core::host::Clock;
use aimesh_core::openai::request_facts;
use aimesh_glue::{send_error, Headers, HostClock, HostMetrics, HostStore};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use crate::config::Compiled;
use crate::limit::LimitError;
use crate::metrics;
use crate::response::Outcome;

/// One request.
pub(crate) struct Filter {
    pub(crate) config: Rc<Compiled>,
    pub(crate) metrics: Rc<HostMetrics>,
    pub(crate) start_ms: u64,
    pub(crate) key_id: String,
    pub(crate) team: String,
    /// Model the client asked for; empty when unknown.
    pub(crate) model: String,
    pub(crate) model_served_header: Option<String>,
    pub(crate) backend_header: Option<String>,
    pub(crate) stream: bool,
    /// The client set include_usage itself.
    pub(crate) client_usage: bool,
    /// The gateway set include_usage: the usage-only chunk is removed.
    pub(crate) injected: bool,
    pub(crate) limits: Limits,
    /// `max_tokens` as auth published it (`x-aimesh-max-tokens`).
    max_tokens: Option<u64>,
    /// Admission ran (from headers, or from the body when they did not suffice).
    admitted: bool,
    pub(crate) reservation: Option<Reservation>,
    /// The request body, kept when it was read, for a prompt estimate at the end.
    pub(crate) request_body: Option<Vec<u8>>,
    pub(crate) status: u16,
    pub(crate) tap: Option<SseTap>,
    pub(crate) body: Vec<u8>,
    pub(crate) body_truncated: bool,
    pub(crate) first_token_ms: Option<u64>,
    /// Path as this filter saw it, before header-auth or the router rewrite it.
    pub(crate) path: Option<String>,
    /// What accounting found, for the audit record.
    pub(crate) outcome: Option<Outcome>,
    /// A limit refused the request.
    pub(crate) refused: bool,
    /// Accounting ran (it runs once, at end of stream or at the latest in `on_log`).
    pub(crate) done: bool,
    /// Nothing to account (refused locally, or not an LLM request).
    pub(crate) skip: bool,
    /// The request body is being buffered for [`Filter::on_body`].
    pub(crate) reading_body: bool,
}

fn truthy(v: Option<String>) -> Option<bool> {
    v.map(|s| s.trim().eq_ignore_ascii_case("true") || s.trim() == "1")
}

impl Filter {
    pub(crate) fn new(config: Rc<Compiled>, metrics: Rc<HostMetrics>) -> Self {
        Filter {
            config,
            metrics,
            start_ms: 0,
            key_id: String::new(),
            team: String::new(),
            model: String::new(),
            model_served_header: None,
            backend_header: None,
            stream: false,
            client_usage: false,
            injected: false,
            limits: Limits::default(),
            max_tokens: None,
            admitted: false,
            reservation: None,
            request_body: None,
            status: 0,
            tap: None,
            body: Vec::new(),
            body_truncated: false,
            first_token_ms: None,
            path: None,
            outcome: None,
            refused: false,
            done: false,
            skip: false,
            reading_body: false,
        }
    }

    /// Reads the body and acts on it; false when a local reply was sent.
    fn on_body(&mut self, body: &[u8], size: usize) -> bool {
        if self.model.is_empty() {
            match request_facts(body) {
                Ok(f) => {
                    self.model = f.model;
                    self.stream = f.stream;
                    self.client_usage = f.include_usage;
                    self.max_tokens = f.max_tokens;
                }
                // Not an LLM request body: the auth filter owns refusing bad JSON.
                Err(_) => {
                    self.skip = true;
                    return true;
                }
            }
        }
        let prompt = estimate::prompt_from_size(u64::try_from(size).unwrap_or(u64::MAX));
        if self.limits.any() && !self.admitted && !self.admit(prompt) {
            return false;
        }
        if self.stream && !self.client_usage {
            if let Some(new) = inject::include_usage(body) {
                aimesh_glue::replace_request_body(self, size, &new);
                self.injected = true;
            }
        }
        self.request_body = Some(body.to_vec());
        true
    }

    /// Reserves `prompt` (an estimate) plus `max_tokens` against the key's limits; false when
    /// a refusal was sent.
    fn admit(&mut self, prompt: u64) -> bool {
        self.admitted = true;
        let completion = self.max_tokens.unwrap_or(0);
        let cost = self.config.price(&self.model).map_or(0, |p| {
            p.cost_micro_usd(&Usage {
                input: prompt,
                cached_input: 0,
                output: completion,
            })
        });
        let now = HostClock.unix_millis();
        let store = HostStore;
        if !self.config.limits.contains_key(&self.key_id) {
            create_default_keys(&self.key_id, &self.limits, now);
        }
        match admission::admit(
            &store,
            &self.key_id,
            &self.limits,
            prompt + completion,
            cost,
            now,
        ) {
            Ok(Ok(r)) => {
                self.reservation = Some(r);
                true
            }
            Ok(Err(refusal)) => {
                let remaining = self
                    .limits
                    .tpm
                    .map(|_| remaining_tokens(&self.key_id, &self.limits, now));
                let err = LimitError::from_refusal(refusal, remaining.flatten());
                metrics::rejected(self.metrics.as_ref(), &self.key_id, err.reason());
                self.refused = true;
                self.skip = true;
                send_error(self, &err);
                false
            }
            Err(e) => {
                // Fail open: a shared-data fault must not take the gateway down.
                log::warn!("token-accounting: limits unavailable, admitting: {e}");
                true
            }
        }
    }
}

thread_local! {
    /// UTC day on which this VM last created each `default`-limited key's shared-data keys.
    static CREATED: RefCell<HashMap<String, u64>> = RefCell::new(HashMap::new());
}

/// Keys under `default` are created on first use (see `limits::init_if_absent`), once per VM
/// and day: creating them reads three shared-data keys, a price every request would pay.
fn create_default_keys(key_id: &str, limits: &Limits, now: u64) {
    let day = now / 86_400_000;
    if CREATED.with(|c| c.borrow().get(key_id) == Some(&day)) {
        return;
    }
    if admission::init_keys(&HostStore, key_id, limits, now).is_ok() {
        CREATED.with(|c| {
            let mut c = c.borrow_mut();
            // Keys of past days are never asked for again.
            c.retain(|_, d| *d >= day);
            c.insert(key_id.to_string(), day);
        });
    }
}

/// Tokens left in a key's TPM bucket (a zero-token acquisition reads the level).
fn remaining_tokens(key_id: &str, limits: &Limits, now: u64) -> Option<u64> {
    let r = admission::admit(
        &HostStore,
        key_id,
        &Limits {
            tpm: limits.tpm,
            ..Limits::default()
        },
        0,
        0,
        now,
    )
    .ok()?
    .ok()?;
    r.remaining_tokens
}

impl Context for Filter {}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _n: usize, eos: bool) -> Action {
        self.start_ms = HostClock.unix_millis();
        let hs = Headers::request(self);
        self.path = hs.get(":path").map(str::to_string);
        // A test build's VM failure on demand (see Cargo.toml); absent from every shipped build.
        #[cfg(feature = "trap-on-demand")]
        if hs.get("x-test-trap").is_some() {
            std::process::abort();
        }
        let h = |name: &str| hs.get_nonempty(name).map(str::to_string);
        let (key_id, team, model) = (h(headers::KEY_ID), h(headers::TEAM), h(headers::MODEL));
        let (stream, usage) = (
            truthy(h(headers::STREAM)),
            truthy(h(headers::INCLUDE_USAGE)),
        );
        let (served, backend) = (h(headers::MODEL_SERVED), h(headers::BACKEND));
        let max_tokens = h(headers::MAX_TOKENS).and_then(|v| v.trim().parse().ok());
        let length = hs
            .get("content-length")
            .and_then(|v| v.trim().parse::<u64>().ok());
        self.key_id = key_id.unwrap_or_default();
        self.team = team.unwrap_or_default();
        self.model = model.unwrap_or_default();
        self.stream = stream.unwrap_or(false);
        self.client_usage = usage.unwrap_or(false);
        self.model_served_header = served;
        self.backend_header = backend;
        self.max_tokens = max_tokens;
        if !self.key_id.is_empty() {
            self.limits = self.config.limits_for(&self.key_id);
        }
        if eos {
            // No body: not an LLM call this filter can account.
            self.skip = self.model.is_empty();
            return Action::Continue;
        }
        // With auth's facts and a content-length, limits admit now, without the body.
        if let Some(len) = length.filter(|_| self.limits.any() && !self.model.is_empty()) {
            if !self.admit(estimate::prompt_from_size(len)) {
                return Action::Pause;
            }
        }
        let need_body = self.model.is_empty()
            || (self.stream && !self.client_usage)
            || (self.limits.any() && !self.admitted)
            || self.config.config.estimate_prompt;
        if need_body {
            self.reading_body = true;
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn on_http_request_body(&mut self, size: usize, eos: bool) -> Action {
        if !self.reading_body {
            return Action::Continue;
        }
        if !eos {
            return Action::Pause;
        }
        self.reading_body = false;
        let body = aimesh_glue::Body::Request.read(size).unwrap_or_default();
        if self.on_body(&body, size) {
            Action::Continue
        } else {
            Action::Pause
        }
    }

    fn on_http_response_headers(&mut self, _n: usize, _eos: bool) -> Action {
        self.response_headers();
        Action::Continue
    }

    fn on_http_response_body(&mut self, size: usize, eos: bool) -> Action {
        self.response_body(size, eos);
        Action::Continue
    }

    fn on_log(&mut self) {
        // start_ms is 0 when an earlier filter answered before this one saw the request, and the
        // body is still awaited when one answered while this filter held it: nothing went
        // upstream, there is nothing to account (nor a start to measure a duration from).
        if !self.done && !self.skip && self.start_ms > 0 && !self.reading_body {
            self.finish();
        }
        self.publish();
    }
}
