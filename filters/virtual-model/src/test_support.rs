//! Shared setup of the stage tests: configs, a configured root, one exchange per request.

use aimesh_host::memory::{Exchange, World};
use aimesh_host::StageRoot;
use serde_json::{json, Value};

pub const PATH: &str = "/v1/chat/completions";

/// `("a", 80)` -> target `acct-a/model-a` on cluster `t-a` with weight 80 (and the aggregate
/// `vm.a` when `fallback`).
pub fn targets(specs: &[(&str, u32)], fallback: bool) -> Value {
    specs
        .iter()
        .map(|(i, w)| {
            let mut t = json!({"target": format!("acct-{i}/model-{i}"),
                               "cluster": format!("t-{i}"), "weight": w});
            if fallback {
                t["fallback_cluster"] = format!("vm.{i}").into();
            }
            t
        })
        .collect()
}

/// A root configured with `config` in `world`.
pub fn root(world: &World, config: &Value) -> Box<dyn StageRoot> {
    let raw = serde_json::to_vec(config).unwrap();
    (crate::STAGE.configure)(&raw, world).unwrap()
}

/// One request through `root`'s stage.
pub fn exchange(world: &World, root: &dyn StageRoot, headers: &[(&str, &str)]) -> Exchange {
    Exchange::new(world, vec![root.new_stream().unwrap()], headers)
}

/// A chat request body for `model`.
pub fn chat(model: &str) -> Vec<u8> {
    format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#).into_bytes()
}

/// A reply carrying `tokens` completion tokens.
pub fn completion(tokens: u64) -> Vec<u8> {
    format!(r#"{{"choices":[],"usage":{{"prompt_tokens":3,"completion_tokens":{tokens}}}}}"#)
        .into_bytes()
}

/// The body's `model`.
pub fn model_of(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap();
    v["model"].as_str().unwrap_or_default().to_string()
}
