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

    #[test]
    fn every_fixed_name_counter_of_a_request_is_declared_by_its_stage() {
        let world = World::default();
        let c = configure(DEMO.as_bytes(), &world).expect("the demo configuration loads");
        let stages = c
            .stages
            .iter()
            .filter_map(|(_, r)| r.new_stream())
            .collect();
        let key = format!("Bearer sk-aimesh-bench-{}", "0".repeat(48));
        let body = br#"{"model":"vm-demo","messages":[{"role":"user","content":"hi"}]}"#;
        let len = body.len().to_string();
        let mut ex = Exchange::new(
            &world,
            stages,
            &[
                (":method", "POST"),
                (":path", "/v1/chat/completions"),
                (":authority", "gateway"),
                ("content-type", "application/json"),
                ("authorization", &key),
                ("content-length", &len),
            ],
        );
        ex.request(body);
        let reply = br#"{"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#;
        ex.response(
            &[(":status", "200"), ("content-type", "application/json")],
            reply,
            reply.len(),
        );
        ex.log();
        assert!(ex.reply().is_none(), "the request went upstream");
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
}
