//! Fleet-wide limits: admission and settlement on the limits service (`aimesh-limits`, on
//! Redis), called through Envoy, so every replica shares one count.
//!
//! Admission happens once the whole request body is here (after the `include_usage`
//! injection): the stage reserves the worst case (prompt estimate plus `max_tokens` or the
//! configured default, at the model's prices) and holds the body until the service answers.
//! Settlement goes out when the request ends, however it ends, as a detached call, so a client
//! that disconnects still gets its reservation replaced by what it really used.

use std::time::Duration;

use aimesh_config::fleet::{
    AdmitRequest, AdmitResponse, Amounts, Caller, FleetConfig, Kind, Left, OnFailure, Refused,
    SettleRequest, Ticket, ADMIT_PATH, SETTLE_PATH,
};
use aimesh_core::accounting::Usage;
use aimesh_host::{send_error, Action, CalloutResponse, Host};

use crate::limit::LimitError;
use crate::metrics;
use crate::request::Filter;

/// A request's dealings with the limits service.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// Token of the admission call in flight.
    waiting: Option<u32>,
    /// Kinds of the buckets asked for (the failure policy of each applies on an outage).
    kinds: Vec<Kind>,
    /// What the service took, settled at the end.
    tickets: Vec<Ticket>,
    /// What is left, for the `x-ratelimit-*` response headers.
    left: Vec<Left>,
    id: String,
}

/// How admission went on.
pub(crate) enum Step {
    /// Nothing to wait for: pass the request on.
    Go,
    /// Hold the body until the service answers.
    Wait,
    /// A refusal was sent.
    Refused,
}

fn headers(path: &str) -> [(&str, &str); 4] {
    [
        (":method", "POST"),
        (":path", path),
        (":authority", "aimesh-limits"),
        ("content-type", "application/json"),
    ]
}

impl Filter {
    fn fleet(&self) -> Option<&FleetConfig> {
        self.config.config.fleet.as_ref()
    }

    /// Asks the service to take the request's counters (`prompt`: the estimate, tokens).
    pub(crate) fn fleet_admit(&mut self, host: &mut dyn Host, prompt: u64) -> Step {
        let Some(fleet) = self.config.config.fleet.clone() else {
            return Step::Go;
        };
        let completion = self.max_tokens.unwrap_or(fleet.default_max_tokens);
        let worst = Usage {
            input: prompt,
            cached_input: 0,
            output: completion,
            cache_write: 0,
        };
        let amounts = Amounts {
            tokens: prompt.saturating_add(completion),
            micro_usd: self
                .config
                .price(&self.model)
                .map_or(0, |p| p.cost_micro_usd(&worst)),
        };
        let who = Caller {
            key: Some(&self.key_id),
            team: Some(&self.team),
            subject: self.subject.as_deref(),
            model: Some(&self.model),
        };
        let buckets = fleet.buckets(&who, amounts);
        if buckets.is_empty() {
            return Step::Go;
        }
        self.fleet.kinds = buckets.iter().map(|b| b.kind).collect();
        self.fleet.id = host.request_headers().get("x-request-id").map_or_else(
            || format!("{}-{}", self.key_id, host.unix_millis()),
            str::to_string,
        );
        let req = AdmitRequest {
            id: self.fleet.id.clone(),
            buckets,
        };
        let body = serde_json::to_vec(&req).unwrap_or_default();
        let timeout = Duration::from_millis(fleet.timeout_ms);
        match host.http_call(&fleet.cluster, &headers(ADMIT_PATH), Some(&body), timeout) {
            Ok(token) => {
                self.fleet.waiting = Some(token);
                Step::Wait
            }
            Err(e) => {
                log::warn!("token-accounting: limits service: {e}");
                self.fleet_unavailable(host)
            }
        }
    }

    /// The service could not answer: each kind's failure policy decides.
    fn fleet_unavailable(&mut self, host: &mut dyn Host) -> Step {
        let policy = self.fleet().map(|f| f.failure).unwrap_or_default();
        let closed = self
            .fleet
            .kinds
            .iter()
            .any(|k| k.policy(&policy) == OnFailure::Closed);
        metrics::fleet_unavailable(host.metrics(), closed);
        if closed {
            self.refused = true;
            self.skip = true;
            send_error(host, &LimitError::Unavailable);
            Step::Refused
        } else {
            Step::Go
        }
    }

    /// The service's answer to the admission call.
    pub(crate) fn fleet_answer(
        &mut self,
        host: &mut dyn Host,
        token: u32,
        response: CalloutResponse,
    ) -> Action {
        if self.fleet.waiting != Some(token) {
            return Action::Pause;
        }
        self.fleet.waiting = None;
        let answer = (response.status() == Some(200))
            .then(|| serde_json::from_slice::<AdmitResponse>(&response.body).ok())
            .flatten();
        let step = match answer {
            Some(a) if a.admitted => {
                self.fleet.tickets = a.tickets;
                self.fleet.left = a.left;
                Step::Go
            }
            Some(AdmitResponse {
                refused: Some(r), ..
            }) => {
                let err = refusal(&r);
                metrics::rejected(host.metrics(), &self.key_id, err.reason());
                self.refused = true;
                self.skip = true;
                send_error(host, &err);
                Step::Refused
            }
            _ => {
                log::warn!(
                    "token-accounting: limits service answered {:?}",
                    response.status()
                );
                self.fleet_unavailable(host)
            }
        };
        match step {
            Step::Go => Action::Continue,
            Step::Wait | Step::Refused => Action::Pause,
        }
    }

    /// The request body is held for the admission call.
    pub(crate) fn fleet_waiting(&self) -> bool {
        self.fleet.waiting.is_some()
    }

    /// `x-ratelimit-*` headers from what the service left.
    pub(crate) fn fleet_headers(&self, host: &mut dyn Host) {
        for l in &self.fleet.left {
            let what = match l.kind {
                Kind::Rpm => "requests",
                Kind::Tpm => "tokens",
                _ => continue,
            };
            host.set_response_header(
                &format!("x-ratelimit-limit-{what}"),
                Some(&l.limit.to_string()),
            );
            host.set_response_header(
                &format!("x-ratelimit-remaining-{what}"),
                Some(&l.remaining.to_string()),
            );
        }
    }

    /// Replaces the reservation with what the request used (`tokens`, `micro_usd`).
    pub(crate) fn fleet_settle(&mut self, host: &mut dyn Host, tokens: u64, micro_usd: u64) {
        let tickets = std::mem::take(&mut self.fleet.tickets);
        let Some(fleet) = self.fleet() else { return };
        if tickets.is_empty() {
            return;
        }
        let req = SettleRequest {
            id: self.fleet.id.clone(),
            tickets,
            tokens,
            micro_usd,
        };
        let body = serde_json::to_vec(&req).unwrap_or_default();
        // Longer than admission's: nothing waits for it, and a lost one over-charges.
        let timeout = Duration::from_millis(fleet.timeout_ms.saturating_mul(10));
        let cluster = fleet.cluster.clone();
        if let Err(e) =
            host.http_call_detached(&cluster, &headers(SETTLE_PATH), Some(&body), timeout)
        {
            log::warn!("token-accounting: cannot settle fleet limits: {e}");
        }
    }
}

/// A refusal of the service, as the client's error.
fn refusal(r: &Refused) -> LimitError {
    match r.kind {
        Kind::Rpm => LimitError::Requests {
            retry_after_s: r.retry_after_s,
            remaining: r.remaining,
        },
        Kind::Tpm => LimitError::Tpm {
            retry_after_s: r.retry_after_s,
            remaining: r.remaining,
        },
        Kind::Concurrent => LimitError::Concurrent { limit: r.limit },
        Kind::UsdDay | Kind::UsdMonth => LimitError::Budget {
            retry_after_s: r.retry_after_s,
            window: if r.kind == Kind::UsdDay {
                "daily"
            } else {
                "monthly"
            },
            remaining: None,
        },
    }
}
