//! Response phase: read usage as chunks pass, then account once at the end.

use aimesh_core::accounting::admission;
use aimesh_core::accounting::sse::{Forward, SseTap};
use aimesh_core::accounting::{estimate, usage, Usage};
use aimesh_core::host::Clock;
use aimesh_glue::{Headers, HostClock, HostStore};

use crate::metrics::{self, Labels};
use crate::request::Filter;

/// The figures of one finished request.
struct Outcome {
    usage: Usage,
    estimated: bool,
    model_served: String,
    backend: String,
    cost: u64,
    duration_ms: u64,
    ttft_ms: Option<u64>,
}

impl Filter {
    pub(crate) fn response_headers(&mut self) {
        if self.skip {
            return;
        }
        let hs = Headers::response(self);
        self.status = hs.get(":status").and_then(|s| s.parse().ok()).unwrap_or(0);
        let sse = hs
            .get("content-type")
            .is_some_and(|c| c.trim_start().starts_with("text/event-stream"));
        if sse {
            let strip = self.injected;
            if strip {
                // Removing an event changes the length.
                aimesh_glue::set_response_header(self, "content-length", None);
            }
            self.tap = Some(SseTap::new(strip));
        }
        if let Some(r) = self.reservation.as_ref().and_then(|r| r.remaining_tokens) {
            aimesh_glue::set_response_header(
                self,
                "x-ratelimit-remaining-tokens",
                Some(&r.to_string()),
            );
        }
    }

    pub(crate) fn response_body(&mut self, size: usize, eos: bool) {
        if self.skip || self.done {
            return;
        }
        let chunk = if size > 0 {
            aimesh_glue::Body::Response.read(size).unwrap_or_default()
        } else {
            Vec::new()
        };
        if let Some(mut tap) = self.tap.take() {
            let mut out = match tap.feed(&chunk) {
                Forward::Unchanged => None,
                Forward::Replace(b) => Some(b),
            };
            if eos {
                let held = tap.finish();
                if !held.is_empty() {
                    out.get_or_insert_with(|| chunk.clone()).extend(held);
                }
            }
            if let Some(out) = out {
                aimesh_glue::Body::Response.replace(size, &out);
            }
            if self.first_token_ms.is_none() && tap.facts.first_token_seen {
                self.first_token_ms = Some(HostClock.unix_millis());
            }
            self.tap = Some(tap);
        } else if !self.body_truncated {
            let max = self.config.config.max_response_bytes;
            if self.body.len() + chunk.len() > max {
                self.body_truncated = true;
                self.body = Vec::new();
            } else {
                self.body.extend_from_slice(&chunk);
            }
        }
        if eos {
            self.finish();
        }
    }

    fn outcome(&mut self) -> Outcome {
        let now = HostClock.unix_millis();
        let (provider, text, model) = match &mut self.tap {
            Some(tap) => (
                tap.facts.usage,
                std::mem::take(&mut tap.facts.text),
                tap.facts.model.take(),
            ),
            None => match usage::read_usage(&self.body) {
                Some((model, u)) => (Some(u), String::new(), model),
                // Only without usage is the generated text needed (for an estimate).
                None => match usage::read(&self.body) {
                    Some(r) => (r.usage, r.text, r.model),
                    None => (None, String::new(), None),
                },
            },
        };
        let model_served = self
            .model_served_header
            .clone()
            .or(model)
            .unwrap_or_else(|| self.model.clone());
        let ok = (200..300).contains(&self.status);
        let (usage, estimated) = match provider {
            Some(u) => (u, false),
            None if ok => {
                let enc = self.config.encoding(&model_served);
                let input = self
                    .request_body
                    .as_deref()
                    .and_then(|b| estimate::prompt_tokens(enc, b))
                    .unwrap_or(0);
                let output = estimate::count(enc, &text).unwrap_or(0);
                (
                    Usage {
                        input,
                        cached_input: 0,
                        output,
                    },
                    true,
                )
            }
            // An error reply used no tokens.
            None => (Usage::default(), false),
        };
        let cost = self
            .config
            .price(&model_served)
            .or_else(|| self.config.price(&self.model))
            .map_or(0, |p| p.cost_micro_usd(&usage));
        let backend = self.backend_header.clone().unwrap_or_else(|| {
            aimesh_glue::host::property(&["xds", "cluster_name"])
                .and_then(|b| String::from_utf8(b).ok())
                .unwrap_or_default()
        });
        Outcome {
            usage,
            estimated,
            model_served,
            backend,
            cost,
            duration_ms: now.saturating_sub(self.start_ms),
            ttft_ms: self.first_token_ms.map(|t| t.saturating_sub(self.start_ms)),
        }
    }

    pub(crate) fn finish(&mut self) {
        self.done = true;
        let o = self.outcome();
        if let Some(r) = self.reservation.take() {
            let tokens = o.usage.input + o.usage.output;
            let now = HostClock.unix_millis();
            if let Err(e) = admission::settle(&HostStore, &self.limits, &r, tokens, o.cost, now) {
                log::warn!("token-accounting: cannot settle limits: {e}");
            }
        }
        self.record_metrics(&o);
        self.publish(&o);
    }

    fn record_metrics(&self, o: &Outcome) {
        let m = self.metrics.as_ref();
        let l = Labels::new(&o.model_served, &o.backend, &self.key_id);
        let source = if o.estimated { "estimated" } else { "provider" };
        metrics::request(m, &l);
        metrics::tokens(m, &l, "input", source, o.usage.input);
        metrics::tokens(m, &l, "output", source, o.usage.output);
        if o.usage.cached_input > 0 {
            metrics::tokens(m, &l, "cached_input", source, o.usage.cached_input);
        }
        metrics::cost(m, &l, o.cost);
        metrics::histogram(m, &l, "server.request.duration_ms", o.duration_ms);
        if let Some(ttft) = o.ttft_ms {
            metrics::histogram(m, &l, "server.time_to_first_token_ms", ttft);
            if o.usage.output > 1 {
                let per = o.duration_ms.saturating_sub(ttft) * 1000 / (o.usage.output - 1);
                metrics::histogram(m, &l, "server.time_per_output_token_us", per);
            }
        }
    }

    /// Who was refused, for the audit log; the usage fields stay unset.
    pub(crate) fn publish_refusal(&self) {
        for (name, value) in [
            ("key_id", self.key_id.as_str()),
            ("team", self.team.as_str()),
            ("model", self.model.as_str()),
            ("status", "429"),
        ] {
            let path = format!("aimesh.{name}");
            aimesh_glue::host::set_property(&[path.as_str()], value.as_bytes());
        }
    }

    /// Filter state for the access log (`%FILTER_STATE(wasm.aimesh.<field>:PLAIN)%`).
    fn publish(&self, o: &Outcome) {
        let ttft = o.ttft_ms.map(|t| t.to_string()).unwrap_or_default();
        let fields: [(&str, String); 13] = [
            ("key_id", self.key_id.clone()),
            ("team", self.team.clone()),
            ("model", self.model.clone()),
            ("model_served", o.model_served.clone()),
            ("backend", o.backend.clone()),
            ("status", self.status.to_string()),
            ("input_tokens", o.usage.input.to_string()),
            ("cached_input_tokens", o.usage.cached_input.to_string()),
            ("output_tokens", o.usage.output.to_string()),
            ("usage_estimated", o.estimated.to_string()),
            ("cost_micro_usd", o.cost.to_string()),
            ("ttft_ms", ttft),
            ("duration_ms", o.duration_ms.to_string()),
        ];
        for (name, value) in fields {
            let path = format!("aimesh.{name}");
            aimesh_glue::host::set_property(&[path.as_str()], value.as_bytes());
        }
    }
}
