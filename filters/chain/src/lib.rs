//! The table of stages, and the one-filter chain that runs them all.
//!
//! [`STAGES`] is the one list of aimesh's stages, in the order they run (the order `make run`
//! configures the five filters). The chain module (`filters/wasm/chain`, `aimesh_chain.wasm`)
//! runs every configured stage inside one Wasm VM: one VM per worker and one set of host
//! callbacks per request instead of five, and the typed facts pass from stage to stage in
//! memory. Why: in Envoy each Wasm filter is its own VM with its own callbacks, and a request
//! pays for every filter's shell whatever the filter does; `make bench` prices that.

mod config;

use aimesh_host::{Configured, Env, StageDef, StageError};

pub use aimesh_config::chain::ChainConfig;

/// Every stage, in chain order.
pub const STAGES: [&StageDef; 6] = [
    &aimesh_auth::STAGE,
    &aimesh_mcp::STAGE,
    &aimesh_pii_redaction::STAGE,
    &aimesh_virtual_model::STAGE,
    &aimesh_token_accounting::STAGE,
    &aimesh_header_auth::STAGE,
];

/// The chain's configuration step: each configured section through its stage's own loader.
pub fn configure(raw: &[u8], env: &dyn Env) -> Result<Configured, StageError> {
    let cfg = config::parse(raw)?;
    let mut stages = Vec::new();
    for def in STAGES {
        let Some(section) = cfg.section(def.name) else {
            continue;
        };
        let root = (def.configure)(&section, env).map_err(|e| e.of(def.name))?;
        stages.push((def.name, root));
    }
    Ok(Configured {
        stages,
        stage_timings: cfg.stage_timings,
    })
}

#[cfg(test)]
mod tests {
    use aimesh_host::memory::{Exchange, World};

    use super::*;

    /// `make run`'s gateway, every stage configured; the key is `sk-aimesh-bench-` and 48 zeros.
    const DEMO: &str = r#"{
        "auth": {"keys": [{"id": "demo", "team": "demo", "requests_per_minute": 1000,
            "hash": "sha256:972b3e4ab6f299be0ab7b93599b6936c2f59169ec1310b6d057c73939917b314"}]},
        "pii-redaction": {},
        "virtual-model": {"virtual_models": [{"name": "vm-demo",
            "targets": [{"target": "local/gpt-4o-mini", "cluster": "local-mock"}]}]},
        "token-accounting": {"prices": {"gpt-4o-mini*": {"input": 0.15, "output": 0.6}}},
        "header-auth": {"accounts": {"local": {}}, "default_account": "local"}
    }"#;

    /// The demo chain with a metadata label configured (a label the GenAI metrics carry).
    fn labelled_demo() -> serde_json::Value {
        let mut demo: serde_json::Value = serde_json::from_str(DEMO).expect("demo JSON");
        demo["token-accounting"]["metadata"] =
            serde_json::json!({"keys": ["project"], "labels": ["project"]});
        demo
    }

    /// The stats of one streamed and one plain chat through [`labelled_demo`].
    fn demo_stats() -> World {
        let world = World::default();
        let raw = labelled_demo().to_string();
        for stream in [false, true] {
            exchange(&world, raw.as_bytes(), stream);
        }
        world
    }

    fn exchange(world: &World, raw: &[u8], stream: bool) {
        let c = configure(raw, world).expect("the demo configuration loads");
        let stages = c
            .stages
            .iter()
            .filter_map(|(_, r)| r.new_stream())
            .collect();
        let key = format!("Bearer sk-aimesh-bench-{}", "0".repeat(48));
        let body = format!(
            r#"{{"model":"vm-demo","stream":{stream},"messages":[{{"role":"user","content":"hi"}}]}}"#
        );
        let len = body.len().to_string();
        let mut ex = Exchange::new(
            world,
            stages,
            &[
                (":method", "POST"),
                (":path", "/v1/chat/completions"),
                (":authority", "gateway"),
                ("content-type", "application/json"),
                ("authorization", &key),
                ("content-length", &len),
                ("x-gateway-metadata", r#"{"project":"apollo"}"#),
            ],
        );
        ex.request(body.as_bytes());
        let (ctype, reply) = if stream {
            ("text/event-stream", STREAMED.to_string())
        } else {
            ("application/json", PLAIN.to_string())
        };
        ex.response(
            &[(":status", "200"), ("content-type", ctype)],
            reply.as_bytes(),
            reply.len(),
        );
        ex.log();
        assert!(ex.reply().is_none(), "the request went upstream");
    }

    const PLAIN: &str =
        r#"{"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#;
    const STREAMED: &str = concat!(
        "data: {\"model\":\"gpt-4o-mini\",\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n",
        "data: {\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\n",
        "data: [DONE]\n\n"
    );

    #[test]
    fn every_fixed_name_counter_of_a_request_is_declared_by_its_stage() {
        let world = demo_stats();
        let declared: Vec<&str> = STAGES
            .iter()
            .flat_map(|d| d.counters.iter().copied())
            .collect();
        let names = world.metrics.counter_names();
        // Labelled counters (model, key, ...) name their labels in the name: those stay families.
        let fixed: Vec<&String> = names
            .iter()
            .filter(|n| !n.starts_with("aimesh.gen_ai."))
            .collect();
        assert!(
            fixed.len() >= 5,
            "the stages counted the request: {names:?}"
        );
        for n in fixed {
            assert!(
                declared.contains(&n.as_str()),
                "`{n}` is not in its stage's `counters`"
            );
        }
    }

    #[test]
    fn every_tagged_stat_of_a_request_is_a_declared_family() {
        let world = demo_stats();
        let demo = labelled_demo();
        let families: Vec<aimesh_host::Family> = STAGES
            .iter()
            .filter_map(|d| Some((d.families)(demo.get(d.name)?.to_string().as_bytes())))
            .flatten()
            .collect();
        let of_kind = |kind| families.iter().filter(move |f| f.kind == kind);
        let mut checked = 0;
        for (names, kind) in [
            (
                world.metrics.counter_names(),
                aimesh_host::FamilyKind::Counter,
            ),
            (
                world.metrics.histogram_names(),
                aimesh_host::FamilyKind::Histogram,
            ),
        ] {
            // What the gateway's stats_tags turn into tags must be a family (the native build
            // defines only those with real labels).
            let tagged = names.into_iter().filter(|n| {
                aimesh_host::family::TAGS
                    .iter()
                    .any(|(label, _)| n.contains(&format!(".{label}.")))
            });
            for n in tagged {
                let matched = of_kind(kind).filter(|f| f.values(&n).is_some()).count();
                assert_eq!(
                    matched, 1,
                    "`{n}` should be a stat of exactly one declared family"
                );
                checked += 1;
            }
        }
        // Requests, cost and two token types; token usage (input, output), duration, and
        // the stream's first token and first chunk.
        assert!(checked >= 9, "{checked} tagged stats");
    }
}
