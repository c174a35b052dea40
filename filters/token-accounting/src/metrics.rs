//! Stat names. Envoy Wasm stats take no tags, so labels are encoded in the name as
//! `.<label>.<value>` pairs that `stats_config.stats_tags` regexes can turn into tags (see the
//! README). Values are reduced to `[A-Za-z0-9_-]` so a dot in `gpt-4.1` cannot shift a label.

use aimesh_core::host::Metrics;

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

/// A histogram sample (`name` is the metric without labels).
pub fn histogram(m: &dyn Metrics, l: &Labels, name: &str, v: u64) {
    m.record(&format!("aimesh.gen_ai.{name}{}", l.suffix), v);
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
