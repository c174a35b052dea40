//! Response phase: read usage as chunks pass, then account once at the end.

use aimesh_core::accounting::admission;
use aimesh_core::accounting::audit::{self, Record};
use aimesh_core::accounting::sse::{Forward, SseTap};
use aimesh_core::accounting::{anthropic, estimate, usage, Usage};
use aimesh_core::Dialect;
use aimesh_host::{Body, Host};

use crate::metrics::{self, Labels};
use crate::request::Filter;

/// The figures of one finished request.
pub(crate) struct Outcome {
    usage: Usage,
    estimated: bool,
    /// Part of the response was past `max_response_bytes` and not read.
    truncated: bool,
    model_served: String,
    backend: String,
    cost: u64,
    duration_ms: u64,
    ttft_ms: Option<u64>,
}

/// Output tokens of `bytes` that were not read: OpenAI's ~4 bytes a token, rounded up (JSON
/// syntax makes it err high, never low for English).
fn tokens_of_skipped(bytes: u64) -> u64 {
    bytes.div_ceil(4)
}

impl Filter {
    /// The request went to Anthropic's Messages API, so its reply is in Anthropic's format.
    pub(crate) fn anthropic(&self) -> bool {
        self.path
            .as_deref()
            .is_some_and(|p| Dialect::from_path(p) == Dialect::Anthropic)
    }

    pub(crate) fn on_response_headers(&mut self, host: &mut dyn Host) {
        // A response while the request is still held here (or before this filter saw it) is an
        // earlier filter's local reply: nothing went upstream, there is nothing to account.
        if self.start_ms.is_none() || self.reading_body {
            self.skip = true;
        }
        if self.skip {
            return;
        }
        let hs = host.response_headers();
        self.status = hs.get(":status").and_then(|s| s.parse().ok()).unwrap_or(0);
        let sse = hs
            .get("content-type")
            .is_some_and(|c| c.trim_start().starts_with("text/event-stream"));
        if sse {
            let strip = self.injected;
            if strip {
                // Removing an event changes the length.
                host.set_response_header("content-length", None);
            }
            let tap = SseTap::new(strip, self.config.config.max_response_bytes);
            self.tap = Some(if self.anthropic() {
                tap.anthropic()
            } else {
                tap
            });
        }
        if let Some(r) = self.reservation.as_ref().and_then(|r| r.remaining_tokens) {
            host.set_response_header("x-ratelimit-remaining-tokens", Some(&r.to_string()));
        }
    }

    pub(crate) fn on_response_body(&mut self, host: &mut dyn Host, size: usize, eos: bool) {
        if self.skip || self.done {
            return;
        }
        if size > 0 && self.first_chunk_ms.is_none() {
            self.first_chunk_ms = Some(host.unix_millis());
        }
        let chunk = if size > 0 {
            host.body(Body::Response, size).unwrap_or_default()
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
                host.replace_body(Body::Response, size, &out);
            }
            if self.first_token_ms.is_none() && tap.facts.first_token_seen {
                self.first_token_ms = Some(host.unix_millis());
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
            self.end(host);
        }
    }

    /// The response is complete (last body chunk, trailers, or headers without a body):
    /// account, and publish the audit record now rather than in `log`, because Envoy finalizes
    /// the request's trace span before `on_log` and its custom tags read the record then.
    pub(crate) fn end(&mut self, host: &mut dyn Host) {
        if self.skip || self.done {
            return;
        }
        self.finish(host);
        self.publish(host);
    }

    fn outcome(&mut self, host: &mut dyn Host) -> Outcome {
        let now = host.unix_millis();
        let start = self.start_ms.unwrap_or(now);
        let skipped = self.tap.as_ref().map_or(0, |t| t.facts.skipped);
        let truncated = skipped > 0 || self.body_truncated;
        let anthropic = self.anthropic();
        let (provider, text, model) = match &mut self.tap {
            Some(tap) => (
                tap.facts.usage,
                std::mem::take(&mut tap.facts.text),
                tap.facts.model.take(),
            ),
            None if anthropic => match anthropic::read_message(&self.body) {
                Some(r) => (r.usage, r.text, r.model),
                None => (None, String::new(), None),
            },
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
            .model_served_fact
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
                let output = estimate::count(enc, &text).unwrap_or(0) + tokens_of_skipped(skipped);
                (
                    Usage {
                        input,
                        cached_input: 0,
                        output,
                        cache_write: 0,
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
        let backend = self.backend_fact.clone().unwrap_or_else(|| {
            host.property(&["xds", "cluster_name"])
                .and_then(|b| String::from_utf8(b).ok())
                .unwrap_or_default()
        });
        Outcome {
            usage,
            estimated,
            truncated,
            model_served,
            backend,
            cost,
            duration_ms: now.saturating_sub(start),
            ttft_ms: self.first_token_ms.map(|t| t.saturating_sub(start)),
        }
    }

    pub(crate) fn finish(&mut self, host: &mut dyn Host) {
        self.done = true;
        let o = self.outcome(host);
        if let Some(r) = self.reservation.take() {
            let tokens = o.usage.input + o.usage.output;
            let now = host.unix_millis();
            if let Err(e) = admission::settle(host.store(), &self.limits, &r, tokens, o.cost, now) {
                log::warn!("token-accounting: cannot settle limits: {e}");
            }
        }
        self.fleet_settle(host, o.usage.input + o.usage.output, o.cost);
        self.record_metrics(host, &o);
        self.outcome = Some(o);
    }

    fn record_metrics(&self, host: &dyn Host, o: &Outcome) {
        let m = host.metrics();
        let l = Labels::new(&o.model_served, &o.backend, &self.key_id);
        let source = if o.estimated { "estimated" } else { "provider" };
        metrics::request(m, &l);
        metrics::tokens(m, &l, "input", source, o.usage.input);
        metrics::tokens(m, &l, "output", source, o.usage.output);
        if o.usage.cached_input > 0 {
            metrics::tokens(m, &l, "cached_input", source, o.usage.cached_input);
        }
        metrics::cost(m, &l, o.cost);
        let op = self.path.as_deref().map_or("unknown", metrics::operation);
        let provider = self
            .config
            .config
            .providers
            .get(&o.backend)
            .map_or("", String::as_str);
        let labels = self.config.config.metadata.as_ref().map(|m| &m.labels[..]);
        let g = metrics::GenAiLabels::new(op, provider, &self.model, &o.model_served)
            .with_metadata(labels.unwrap_or_default(), &self.metadata);
        metrics::token_histogram(m, &g, "input", o.usage.input);
        metrics::token_histogram(m, &g, "output", o.usage.output);
        metrics::histogram(m, &g, metrics::REQUEST_DURATION, o.duration_ms);
        // The conventions report it for streamed calls only (a plain body's first bytes say
        // little about when generation began).
        if let (Some(t), true) = (self.first_chunk_ms, self.tap.is_some()) {
            let start = self.start_ms.unwrap_or(t);
            metrics::histogram(m, &g, metrics::TIME_TO_FIRST_CHUNK, t.saturating_sub(start));
        }
        if let Some(ttft) = o.ttft_ms {
            metrics::histogram(m, &g, metrics::TIME_TO_FIRST_TOKEN, ttft);
            if o.usage.output > 1 {
                let per = o.duration_ms.saturating_sub(ttft) * 1000 / (o.usage.output - 1);
                metrics::histogram(m, &g, metrics::TIME_PER_OUTPUT_TOKEN, per);
            }
        }
    }

    /// The audit record (filter state `wasm.aimesh.audit`), once per request: when the response
    /// ends, else from `on_log` (a client that went away, a refusal by any filter), so every
    /// request gets one, accounted or not.
    pub(crate) fn publish(&mut self, host: &mut dyn Host) {
        self.published = true;
        let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_string());
        // Refused before this filter saw the request (auth's limits, the mcp stage): the caller
        // is still in auth's facts.
        let facts = host.facts().clone();
        let mut r = Record {
            key_id: nonempty(&self.key_id).or(facts.key_id),
            team: nonempty(&self.team).or(facts.team),
            model: nonempty(&self.model),
            upstream_status: self.refused.then_some(429),
            metadata: (!self.metadata.is_empty())
                .then(|| aimesh_core::accounting::metadata::audit_text(&self.metadata)),
            ..Record::default()
        };
        // Refused before this filter saw the request: its path is still the client's.
        let path = self
            .path
            .take()
            .or_else(|| host.request_headers().get(":path").map(str::to_string));
        if let Some(p) = path {
            r.set_path(&p);
        }
        if let Some(o) = self.outcome.take() {
            r.upstream_status = Some(self.status);
            r.backend = nonempty(&o.backend);
            r.model_served = Some(o.model_served);
            r.input_tokens = Some(o.usage.input);
            r.cached_input_tokens = Some(o.usage.cached_input);
            // Null for APIs that report no cache writes (OpenAI's).
            r.cache_write_input_tokens =
                (o.usage.cache_write > 0 || self.anthropic()).then_some(o.usage.cache_write);
            r.output_tokens = Some(o.usage.output);
            r.usage_estimated = Some(o.estimated);
            r.truncated = Some(o.truncated);
            r.cost_micro_usd = Some(o.cost);
            r.ttft_ms = o.ttft_ms;
        }
        host.set_record(audit::PROPERTY, &r.fields());
    }
}
