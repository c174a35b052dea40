//! Per-request state and the request phase: facts, admission, include_usage injection.

use std::cell::RefCell;
use std::rc::Rc;

use aimesh_core::accounting::admission::{Limits, Reservation};
use aimesh_core::accounting::estimate;
use aimesh_core::accounting::gate::{self, Ask, HeaderFacts, KeyDays, Verdict};
use aimesh_core::accounting::inject;
use aimesh_core::accounting::metadata;
use aimesh_core::accounting::sse::SseTap;
use aimesh_core::api;
use aimesh_core::openai::request_facts;
use aimesh_host::{replace_request_body, send_error, Action, Body, Host, Stage};

use crate::config::Compiled;
use crate::limit::LimitError;
use crate::metrics;
use crate::response::Outcome;

/// One request.
pub(crate) struct Filter {
    pub(crate) config: Rc<Compiled>,
    key_days: Rc<RefCell<KeyDays>>,
    /// When this stage saw the request headers; `None` when an earlier stage answered first.
    pub(crate) start_ms: Option<u64>,
    pub(crate) key_id: String,
    pub(crate) team: String,
    /// JWT subject, when the caller presented a token.
    pub(crate) subject: Option<String>,
    /// Fleet-wide limits: the admission in flight and what to settle.
    pub(crate) fleet: crate::fleet::State,
    /// Model the client asked for; empty when unknown.
    pub(crate) model: String,
    pub(crate) model_served_fact: Option<String>,
    pub(crate) backend_fact: Option<String>,
    pub(crate) stream: bool,
    /// The client set include_usage itself.
    pub(crate) client_usage: bool,
    /// The gateway set include_usage: the usage-only chunk is removed.
    pub(crate) injected: bool,
    pub(crate) limits: Limits,
    /// `max_tokens` as auth found it.
    pub(crate) max_tokens: Option<u64>,
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
    /// When the first response body bytes arrived.
    pub(crate) first_chunk_ms: Option<u64>,
    /// Path as this filter saw it, before header-auth or the router rewrite it.
    pub(crate) path: Option<String>,
    /// What accounting found, for the audit record.
    pub(crate) outcome: Option<Outcome>,
    /// A limit refused the request.
    pub(crate) refused: bool,
    /// Accounting ran (it runs once, at end of stream or at the latest in `log`).
    pub(crate) done: bool,
    /// The audit record was written (at the end of the response, else in `log`).
    pub(crate) published: bool,
    /// Nothing to account (refused locally, or not an LLM request).
    pub(crate) skip: bool,
    /// The request body is being buffered for [`Filter::on_body`].
    pub(crate) reading_body: bool,
    /// The endpoint takes `stream_options.include_usage` (chat and legacy completions).
    takes_stream_options: bool,
    /// Custom request metadata, checked, sorted by key.
    pub(crate) metadata: Vec<(String, String)>,
}

/// A fact as text, empty meaning absent.
fn nonempty(v: Option<&String>) -> Option<String> {
    v.filter(|s| !s.is_empty()).cloned()
}

impl Filter {
    pub(crate) fn new(config: Rc<Compiled>, key_days: Rc<RefCell<KeyDays>>) -> Self {
        Filter {
            config,
            key_days,
            start_ms: None,
            key_id: String::new(),
            team: String::new(),
            subject: None,
            fleet: crate::fleet::State::default(),
            model: String::new(),
            model_served_fact: None,
            backend_fact: None,
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
            first_chunk_ms: None,
            path: None,
            outcome: None,
            refused: false,
            done: false,
            published: false,
            skip: false,
            reading_body: false,
            takes_stream_options: true,
            metadata: Vec::new(),
        }
    }

    /// Takes what auth (and virtual-model) found out about the request.
    fn read_facts(&mut self, host: &mut dyn Host) {
        let f = host.facts();
        self.key_id = nonempty(f.key_id.as_ref()).unwrap_or_default();
        self.team = nonempty(f.team.as_ref()).unwrap_or_default();
        self.subject = nonempty(f.subject.as_ref());
        self.model = nonempty(f.model.as_ref()).unwrap_or_default();
        self.stream = f.stream.unwrap_or(false);
        self.client_usage = f.include_usage.unwrap_or(false);
        self.max_tokens = f.max_tokens;
        self.model_served_fact = nonempty(f.model_served.as_ref());
        self.backend_fact = nonempty(f.backend.as_ref());
    }

    /// Reads the body and acts on it; false when a local reply was sent.
    fn on_body(&mut self, host: &mut dyn Host, body: &[u8], size: usize) -> bool {
        if self.model.is_empty() {
            match request_facts(body) {
                Ok(f) => {
                    self.model = f.model;
                    self.stream = f.stream;
                    self.client_usage = f.include_usage || self.anthropic();
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
        if self.limits.any() && !self.admitted && !self.admit(host, prompt) {
            return false;
        }
        if self.stream && !self.client_usage && self.takes_stream_options {
            if let Some(new) = inject::include_usage(body) {
                replace_request_body(host, size, &new);
                self.injected = true;
            }
        }
        self.request_body = Some(body.to_vec());
        // After the rewrite: the body is final when the service answers.
        !matches!(self.fleet_admit(host, prompt), crate::fleet::Step::Refused)
    }

    /// Reserves `prompt` (an estimate) plus `max_tokens` against the key's limits; false when
    /// a refusal was sent.
    fn admit(&mut self, host: &mut dyn Host, prompt: u64) -> bool {
        self.admitted = true;
        let now = host.unix_millis();
        if !self.config.limits.contains_key(&self.key_id) {
            let ensured =
                self.key_days
                    .borrow_mut()
                    .ensure(host.store(), &self.key_id, &self.limits, now);
            if let Err(e) = ensured {
                log::debug!("token-accounting: cannot create limit keys yet: {e}");
            }
        }
        let ask = Ask {
            key_id: &self.key_id,
            limits: &self.limits,
            prompt,
            max_tokens: self.max_tokens,
            price: self.config.price(&self.model),
        };
        match gate::admit(host.store(), &ask, now) {
            Verdict::Admitted(r) => {
                self.reservation = Some(r);
                true
            }
            Verdict::Refused {
                refusal,
                remaining_tpm,
            } => {
                let err = LimitError::from_refusal(refusal, remaining_tpm);
                metrics::rejected(host.metrics(), &self.key_id, err.reason());
                self.refused = true;
                self.skip = true;
                send_error(host, &err);
                false
            }
            Verdict::FailedOpen(e) => {
                log::warn!("token-accounting: limits unavailable, admitting: {e}");
                true
            }
        }
    }
}

impl Stage for Filter {
    fn request_headers(&mut self, host: &mut dyn Host, eos: bool) -> Action {
        self.start_ms = Some(host.unix_millis());
        let hs = host.request_headers();
        self.path = hs.get(":path").map(str::to_string);
        // A test build's VM failure on demand (see Cargo.toml); absent from every shipped build.
        #[cfg(feature = "trap-on-demand")]
        if hs.get("x-test-trap").is_some() {
            std::process::abort();
        }
        let length = hs
            .get("content-length")
            .and_then(|v| v.trim().parse::<u64>().ok());
        self.read_facts(host);
        // Anthropic streams report usage themselves (`message_start`, `message_delta`): there
        // is nothing to inject, and the body must reach the provider as the client sent it.
        self.client_usage |= self.anthropic();
        if let Some(cfg) = &self.config.config.metadata {
            if let Some(raw) = hs.get_bytes(&cfg.header) {
                // Gateway metadata, not the provider's business.
                host.set_request_header(&cfg.header, None);
                match metadata::parse(cfg, raw) {
                    Ok(pairs) => self.metadata = pairs,
                    Err(e) => {
                        self.skip = true;
                        send_error(host, &e);
                        return Action::Pause;
                    }
                }
            }
        }
        if !self.key_id.is_empty() && self.config.config.fleet.is_none() {
            self.limits = self.config.limits_for(&self.key_id);
        }
        let endpoint = self.path.as_deref().and_then(api::lookup);
        // Only chat and legacy completions take `stream_options`: any other API refuses the
        // field or reports its streamed usage its own way (Responses in `response.completed`).
        self.takes_stream_options = endpoint.is_none_or(|e| e.stream_options);
        // No body (not an LLM call this filter can account), or files and batches (uploads
        // with no model and no usage; the audit record still names the caller).
        if eos || endpoint.is_some_and(|e| e.model == api::Model::Absent) {
            self.skip = self.model.is_empty();
            return Action::Continue;
        }
        let mut plan = gate::plan_headers(&HeaderFacts {
            model_known: !self.model.is_empty(),
            // Stream matters to the plan only for the `include_usage` injection.
            stream: self.stream && self.takes_stream_options,
            client_usage: self.client_usage,
            limited: self.limits.any(),
            estimate_prompt: self.config.config.estimate_prompt,
            content_length: length,
        });
        // Fleet admission waits for the whole body (held while the service answers).
        if self.config.config.fleet.is_some() && !self.model.is_empty() {
            plan.read_body = true;
        }
        if let Some(prompt) = plan.admit_prompt {
            if !self.admit(host, prompt) {
                return Action::Pause;
            }
        }
        if plan.read_body {
            self.reading_body = true;
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn request_body(&mut self, host: &mut dyn Host, size: usize, eos: bool) -> Action {
        if !self.reading_body {
            return Action::Continue;
        }
        if !eos {
            return Action::Pause;
        }
        self.reading_body = false;
        let body = host.body(Body::Request, size).unwrap_or_default();
        if self.on_body(host, &body, size) && !self.fleet_waiting() {
            Action::Continue
        } else {
            Action::Pause
        }
    }

    fn callout_response(
        &mut self,
        host: &mut dyn Host,
        token: u32,
        response: aimesh_host::CalloutResponse,
    ) -> Action {
        self.fleet_answer(host, token, response)
    }

    fn response_headers(&mut self, host: &mut dyn Host, eos: bool) -> Action {
        self.on_response_headers(host);
        if !self.skip {
            self.fleet_headers(host);
        }
        if eos {
            self.end(host);
        }
        Action::Continue
    }

    fn response_body(&mut self, host: &mut dyn Host, size: usize, eos: bool) -> Action {
        self.on_response_body(host, size, eos);
        Action::Continue
    }

    fn response_trailers(&mut self, host: &mut dyn Host) -> Action {
        self.end(host);
        Action::Continue
    }

    fn log(&mut self, host: &mut dyn Host) {
        // No start when an earlier stage answered before this one saw the request, and the
        // body is still awaited when one answered while this stage held it: nothing went
        // upstream, there is nothing to account (nor a start to measure a duration from).
        if !self.done && !self.skip && self.start_ms.is_some() && !self.reading_body {
            self.finish(host);
        }
        if !self.published {
            self.publish(host);
        }
    }
}
