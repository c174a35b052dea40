//! Every config the server generates goes through each filter's own configure step, the one
//! the Wasm modules run at `on_configure` (deserialize with unknown fields refused, validate,
//! build policies, PII engine, routing tables, credential plan).

use aimesh_config::chain::ChainConfig;
use aimesh_config::endpoints;
use aimesh_core::endpoints::{Env, Plan};
use aimesh_host::memory::World;

use crate::filters::{configs, header_auth_upstream, virtual_model_upstream, CHAIN};
use crate::model::{FilterBuild, Gateway};
use crate::validate::load_str;

/// Envoy's environment as a deployment sets it: every `${env:NAME}` header-auth reads is set.
struct AllSet;

impl Env for AllSet {
    fn var(&self, _name: &str) -> Option<String> {
        Some("sk-test".into())
    }
}

/// What `filter`'s `on_configure` does with `json`: the stage's own configure step from the
/// table of stages (parse, validate, build its policies, engine or plan), on an in-memory host.
/// Header-auth resolves `${env:...}` secrets while configuring, so its plan is compiled with
/// every variable set, as a deployment sets them. Panics naming the filter and the problem.
fn load(filter: &str, json: &str) {
    if filter == CHAIN {
        let c = aimesh_host::load_config::<ChainConfig>(json.as_bytes())
            .unwrap_or_else(|e| panic!("chain refuses its config: {e}: {json}"));
        for stage in aimesh_config::chain::STAGES {
            // The mcp section is there only with MCP servers.
            let Some(section) = c.section(stage) else {
                assert_eq!(stage, "mcp", "{stage}: no section");
                continue;
            };
            load(stage, &String::from_utf8_lossy(&section));
        }
        return;
    }
    if filter == "header-auth" {
        let c = aimesh_host::load_config::<endpoints::Config>(json.as_bytes())
            .unwrap_or_else(|e| panic!("header-auth refuses its config: {e}: {json}"));
        Plan::compile(&c, &AllSet).unwrap_or_else(|e| panic!("header-auth plan: {e}"));
        return;
    }
    let def = aimesh_chain::STAGES
        .iter()
        .find(|d| d.name == filter)
        .unwrap_or_else(|| panic!("unknown filter {filter}"));
    if let Err(e) = (def.configure)(json.as_bytes(), &World::default()) {
        panic!("{filter} refuses its config: {e}: {json}");
    }
}

fn load_all(name: &str, gw: &Gateway) {
    for (filter, json) in configs(gw, false).unwrap_or_else(|e| panic!("{name}: {e}")) {
        load(filter, &json);
    }
    // The translate stage's config (every provider cluster's upstream filter), as it loads it.
    let tr = serde_json::to_string(&crate::filters::translate(gw)).unwrap_or_default();
    aimesh_host::load_config::<aimesh_config::translate::TranslateConfig>(tr.as_bytes())
        .unwrap_or_else(|e| panic!("{name}: translate refuses its config: {e}: {tr}"));
    if gw.virtual_models.iter().any(|vm| !vm.fallbacks.is_empty()) {
        let vm = serde_json::to_string(&virtual_model_upstream(gw)).unwrap_or_default();
        load("virtual-model", &vm);
        let ha = header_auth_upstream(gw, false).unwrap_or_else(|e| panic!("{name}: {e}"));
        load(
            "header-auth",
            &serde_json::to_string(&ha).unwrap_or_default(),
        );
    }
}

/// gateway.yaml files the repository ships or tests with, each valid.
fn gateways() -> Vec<(&'static str, String)> {
    let h = format!("sha256:{}", "a".repeat(64));
    vec![
        (
            "examples/gateway.yaml",
            include_str!("../../../../examples/gateway.yaml").to_string(),
        ),
        ("empty", "{}".to_string()),
        (
            "keys, limits and budgets",
            format!(
                "keys:\n- {{id: a, hash: '{h}', team: t, models: [m, 'p/*'], endpoints: ['GET /v1/files'], \
                 expires_at: '2030-01-01T00:00:00Z', max_concurrent: 2}}\n- {{id: b, hash: 'sha256:{}', disabled: true}}\n\
                 limits:\n- {{requests_per_minute: 10, tokens_per_minute: 100}}\n- {{team: t, tokens_per_minute: 200}}\n\
                 budgets:\n- {{team: t, usd: 3.5, period: month}}\n- {{key: b, usd: 1}}\n\
                 prices:\n  gpt-4o*: {{input: 2.5, cached_input: 1.25, output: 10}}\n",
                "b".repeat(64)
            ),
        ),
        (
            "providers, custom endpoints, MCP and fallbacks",
            "providers:\n- {name: pub1, kind: openai, api_key: '${env:OA}', models: [gpt-x]}\n\
             - {name: az1, kind: azure_openai, base_url: 'https://r.openai.azure.com/', api_key: '${file:/run/k}'}\n\
             - {name: an1, kind: anthropic, api_key: '${env:AN}'}\n\
             - {name: gpu1, kind: vllm, endpoints: [{url: 'http://10.0.0.1:8000'}], api_key: '${env:V}'}\n\
             - {name: tgi1, kind: tgi, endpoints: [{url: 'http://[fd00::1]:8080'}]}\n\
             default_provider: pub1\n\
             custom_endpoints:\n- {name: tts, provider: az1, url: 'https://tts.example.com/v1/'}\n\
             - {name: Geo.v2, url: 'http://10.1.2.3:9000'}\n\
             mcp_servers:\n- {name: docs, url: 'https://docs.example.com/mcp', api_key: '${env:D}'}\n\
             virtual_models:\n- {name: smart, targets: [{provider: pub1, model: m1, weight: 3}, {provider: an1, model: m2}], \
             fallbacks: [{provider: gpu1, model: m3}]}\n"
                .to_string(),
        ),
        (
            "egress allow-list with wildcards and networks",
            "egress: {allow: ['*.example.com', api.openai.com, 10.0.0.0/8]}\n\
             providers:\n- {name: pub1, kind: openai}\n\
             custom_endpoints:\n- {name: tts, url: 'https://tts.example.com'}\n- {name: lan, url: 'http://10.9.9.9'}\n"
                .to_string(),
        ),
        (
            "PII policies",
            "pii:\n  mode: hash\n  hash_key: '${file:/run/k}'\n  patterns: [{name: EMP, regex: 'E\\d+'}]\n  \
             actions: {emp: block, deny_word: block}\n  deny_words: [x]\n  \
             policies: {s: {mode: off}, t: {mode: redact, entities: [email], restore: true}}\n  \
             rules: [{path_prefix: /v1/embeddings, header: {name: X-T, value: a}, policy: s}]\n"
                .to_string(),
        ),
    ]
}

#[test]
fn every_generated_config_loads_in_its_filter_in_both_builds() {
    for (name, text) in gateways() {
        let mut gw = load_str(&text).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        load_all(name, &gw);
        if gw.virtual_models.iter().all(|vm| vm.fallbacks.is_empty()) {
            gw.listener.filter_build = FilterBuild::Chain;
            load_all(name, &gw);
        }
    }
}
