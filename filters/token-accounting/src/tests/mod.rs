//! The stage through the in-memory host: whole exchanges as Envoy drives them, on a clock the
//! tests move.

mod accounting;
mod anthropic;
mod fleet;
mod limits;

use aimesh_core::accounting::audit::{self, Record};
use aimesh_host::memory::{Exchange, World};
use aimesh_host::{Facts, StageRoot};

use crate::STAGE;

pub(super) const PATH: &str = "/v1/chat/completions";

/// A chat request body, `extra` spliced in as more top-level fields.
pub(super) fn chat(extra: &str) -> String {
    format!(r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":"hi"}}]{extra}}}"#)
}

/// A process whose upstream cluster is `llm`.
pub(super) fn world() -> World {
    let w = World::default();
    w.properties
        .borrow_mut()
        .insert("xds.cluster_name".into(), b"llm".to_vec());
    w
}

pub(super) fn root(world: &World, config: &str) -> Box<dyn StageRoot> {
    (STAGE.configure)(config.as_bytes(), world).expect("config loads")
}

/// What auth publishes about a request of key `k1` for `gpt-4o`.
pub(super) fn auth_facts() -> Facts {
    Facts {
        key_id: Some("k1".into()),
        team: Some("ml".into()),
        model: Some("gpt-4o".into()),
        stream: Some(false),
        include_usage: Some(false),
        ..Facts::default()
    }
}

/// A POST of `body` (its `content-length` set unless `chunked`) with `facts` already known.
pub(super) fn exchange(
    world: &World,
    root: &dyn StageRoot,
    facts: Facts,
    body: &str,
    chunked: bool,
) -> Exchange {
    let len = body.len().to_string();
    let mut headers = vec![(":method", "POST"), (":path", PATH)];
    if !chunked {
        headers.push(("content-length", len.as_str()));
    }
    let stage = root.new_stream().expect("a stage per request");
    let mut ex = Exchange::new(world, vec![stage], &headers);
    ex.host.facts = facts;
    ex
}

/// The audit record the stage published.
pub(super) fn audit_bytes(ex: &Exchange) -> Option<&Vec<u8>> {
    ex.host.state.get(audit::PROPERTY)
}

/// The record of a request of `facts` that was not accounted.
pub(super) fn unaccounted(facts: &Facts) -> Record {
    let mut r = Record {
        key_id: facts.key_id.clone(),
        team: facts.team.clone(),
        model: facts.model.clone(),
        ..Record::default()
    };
    r.set_path(PATH);
    r
}

/// Labels of the metrics of key `k1`, model `m`, backend `llm`.
pub(super) fn labels(m: &str, key: &str) -> String {
    format!(".model.{m}.backend.llm.key_id.{key}")
}

/// A token counter of `k1`'s requests for model `m`.
pub(super) fn tokens(world: &World, m: &str, key: &str, kind: &str, source: &str) -> u64 {
    world.metrics.counter(&format!(
        "aimesh.gen_ai.client.token.usage{}.token_type.{kind}.source.{source}",
        labels(m, key)
    ))
}
