//! Stat names. Envoy Wasm stats take no tags, so labels are encoded in the name as
//! `.<label>.<value>` pairs that `stats_config.stats_tags` regexes can turn into tags (see the
//! README). Values are reduced to `[A-Za-z0-9_-]` so a dot in `gpt-4.1` cannot shift a label.

use aimesh_core::host::Metrics;
use aimesh_host::{load_config, Family};

use crate::Config;

/// Labels every per-request figure carries.
pub struct Labels {
    suffix: String,
}

/// Replaces every byte outside `[A-Za-z0-9_-]` with `_`; empty becomes `unknown`.
pub fn clean(v: &str) -> String {
    if v.is_empty() {
        return "unknown".into();
    }
    v.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Labels {
    /// Labels for one request.
    pub fn new(model: &str, backend: &str, key_id: &str) -> Self {
        Labels {
            suffix: format!(
                ".model.{}.backend.{}.key_id.{}",
                clean(model),
                clean(backend),
                clean(key_id)
            ),
        }
    }
}

/// Token counter: `token_type` is `input`, `cached_input` or `output`; `source` is `provider`
/// or `estimated`.
pub fn tokens(m: &dyn Metrics, l: &Labels, token_type: &str, source: &str, n: u64) {
    m.count(
        &format!(
            "aimesh.gen_ai.client.token.usage{}.token_type.{token_type}.source.{source}",
            l.suffix
        ),
        n,
    );
}

/// Cost counter in micro-USD.
pub fn cost(m: &dyn Metrics, l: &Labels, micro_usd: u64) {
    m.count(
        &format!("aimesh.gen_ai.client.cost_micro_usd{}", l.suffix),
        micro_usd,
    );
}

/// Requests accounted.
pub fn request(m: &dyn Metrics, l: &Labels) {
    m.count(&format!("aimesh.gen_ai.client.requests{}", l.suffix), 1);
}

/// `gen_ai.operation.name` by the path the client asked for (`aimesh_core::api`'s table,
/// which the traces' attribute uses too).
pub use aimesh_core::api::operation;

/// Labels of the GenAI histograms, after the OpenTelemetry GenAI conventions' attributes
/// (`gen_ai.operation.name`, `gen_ai.provider.name`, `gen_ai.request.model`,
/// `gen_ai.response.model`); no key id, so a histogram's series grow with models, not keys.
pub struct GenAiLabels {
    suffix: String,
}

impl GenAiLabels {
    /// Labels for one request.
    pub fn new(operation: &str, provider: &str, request_model: &str, response_model: &str) -> Self {
        GenAiLabels {
            suffix: format!(
                ".operation_name.{}.provider_name.{}.request_model.{}.model.{}",
                clean(operation),
                clean(provider),
                clean(request_model),
                clean(response_model)
            ),
        }
    }
}

impl GenAiLabels {
    /// Adds a `meta_<key>` label per configured metadata key (`unknown` when the request did
    /// not send it), so every series of a name has the same labels.
    pub fn with_metadata(mut self, keys: &[String], pairs: &[(String, String)]) -> Self {
        for k in keys {
            let v = pairs.iter().find(|(p, _)| p == k).map_or("", |(_, v)| v);
            self.suffix.push_str(&format!(".meta_{k}.{}", clean(v)));
        }
        self
    }
}

/// The GenAI histograms, their unit last in the name (Prometheus: `<name>_bucket`, `_sum`,
/// `_count`).
pub const TOKEN_USAGE: &str = "aimesh.gen_ai.client.token.usage.tokens";
/// Request start to the end of the response.
pub const REQUEST_DURATION: &str = "aimesh.gen_ai.server.request.duration.milliseconds";
/// Streams: request start to the first chunk with generated text.
pub const TIME_TO_FIRST_TOKEN: &str = "aimesh.gen_ai.server.time_to_first_token.milliseconds";
/// Streams: time after the first token per further output token.
pub const TIME_PER_OUTPUT_TOKEN: &str = "aimesh.gen_ai.server.time_per_output_token.microseconds";
/// Streams: request start to the first response body bytes.
pub const TIME_TO_FIRST_CHUNK: &str =
    "aimesh.gen_ai.client.operation.time_to_first_chunk.milliseconds";

/// A histogram sample of one of the names above.
pub fn histogram(m: &dyn Metrics, l: &GenAiLabels, name: &str, v: u64) {
    m.record(&format!("{name}{}", l.suffix), v);
}

/// A `gen_ai.client.token.usage` sample: `token_type` is `input` or `output`.
pub fn token_histogram(m: &dyn Metrics, l: &GenAiLabels, token_type: &str, v: u64) {
    m.record(
        &format!("{TOKEN_USAGE}{}.token_type.{token_type}", l.suffix),
        v,
    );
}

/// A request refused by a limit.
pub fn rejected(m: &dyn Metrics, key_id: &str, reason: &str) {
    m.count(
        &format!(
            "aimesh.token_accounting.rejected.reason.{reason}.key_id.{}",
            clean(key_id)
        ),
        1,
    );
}

/// The limits service could not answer an admission; `closed`: the request was refused.
pub fn fleet_unavailable(m: &dyn Metrics, closed: bool) {
    let policy = if closed { "closed" } else { "open" };
    m.count(
        &format!("aimesh.token_accounting.fleet_unavailable.policy.{policy}"),
        1,
    );
}

/// Labels of every GenAI histogram before its own (`GenAiLabels`).
const GENAI: [&str; 4] = ["operation_name", "provider_name", "request_model", "model"];

/// The labelled stats above, as [`StageDef::families`](aimesh_host::StageDef) declares them:
/// the GenAI histograms carry a `meta_<key>` label per configured metadata label.
pub fn families(raw: &[u8]) -> Vec<Family> {
    let Ok(c) = load_config::<Config>(raw) else {
        return Vec::new();
    };
    let meta: Vec<String> = c
        .metadata
        .iter()
        .flat_map(|m| m.labels.iter().map(|k| format!("meta_{k}")))
        .collect();
    // The GenAI labels, the metadata ones, then the histogram's own.
    let genai = |last: &[&str]| -> Vec<String> {
        let fixed = GENAI.iter().chain(last).map(|s| (*s).to_string());
        let mut l: Vec<String> = fixed.collect();
        l.splice(GENAI.len()..GENAI.len(), meta.iter().cloned());
        l
    };
    let per_key = ["model", "backend", "key_id"];
    let mut out = vec![
        Family::counter(
            "aimesh.gen_ai.client.token.usage",
            ["model", "backend", "key_id", "token_type", "source"],
        ),
        Family::counter("aimesh.gen_ai.client.cost_micro_usd", per_key),
        Family::counter("aimesh.gen_ai.client.requests", per_key),
        Family::counter("aimesh.token_accounting.rejected", ["reason", "key_id"]),
        Family::histogram(TOKEN_USAGE, genai(&["token_type"])),
    ];
    for name in [
        REQUEST_DURATION,
        TIME_TO_FIRST_TOKEN,
        TIME_PER_OUTPUT_TOKEN,
        TIME_TO_FIRST_CHUNK,
    ] {
        out.push(Family::histogram(name, genai(&[])));
    }
    out
}
