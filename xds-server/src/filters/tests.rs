//! The configs built from gateway.yaml, as the filters read them (JSON).

mod loaders;

use serde::Serialize;
use serde_json::Value;

use crate::validate::load_str;

fn v<T: Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap_or_else(|e| panic!("{e}"))
}

mod built {
    use super::*;

    #[test]
    fn only_file_secrets_make_a_config_sensitive_and_it_travels_as_a_generic_secret() {
        let gw = |key: &str| {
            load_str(&format!(
                "providers:\n- {{name: oai, kind: openai, api_key: '{key}'}}\n"
            ))
            .unwrap_or_else(|e| panic!("{e:?}"))
        };
        assert!(!crate::filters::has_file_secrets(&gw("${env:OA_KEY}")));
        assert!(crate::filters::has_file_secrets(&gw("${file:/run/oa}")));
        let wrapped = crate::resources::plugin_configuration("{}", true);
        assert_eq!(wrapped.type_url, crate::resources::GENERIC_SECRET);
        // aimesh-host's `config::unwrap_generic_secret` test decodes these very bytes.
        assert_eq!(wrapped.value, [0x0a, 0x04, 0x1a, 0x02, b'{', b'}']);
        let plain = crate::resources::plugin_configuration("{}", false);
        assert!(plain.type_url.ends_with("StringValue"));
    }

    #[test]
    fn limits_pick_key_then_team_then_default() {
        let h = |c: &str| format!("sha256:{}", c.repeat(64));
        let (ha, hb, hc) = (h("a"), h("b"), h("c"));
        let gw = load_str(&format!(
            "keys:\n- {{id: a, hash: '{ha}', team: t}}\n- {{id: b, hash: '{hb}', team: t}}\n- {{id: c, hash: '{hc}'}}\n\
             limits:\n- {{requests_per_minute: 10, tokens_per_minute: 100}}\n- {{team: t, tokens_per_minute: 200}}\n- {{key: a, requests_per_minute: 5}}\n\
             budgets:\n- {{team: t, usd: 3.5, period: month}}\n"
        ))
        .unwrap_or_else(|e| panic!("{e:?}"));
        let auth = v(&crate::filters::auth(&gw));
        let rpm: Vec<_> = auth["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|k| k["requests_per_minute"].clone())
            .collect();
        assert_eq!(
            rpm,
            [
                serde_json::json!(5),
                serde_json::json!(10),
                serde_json::json!(10)
            ]
        );
        let ta = v(&crate::filters::token_accounting(&gw));
        assert_eq!(ta["limits"]["default"], serde_json::json!({"tpm": 100}));
        assert_eq!(
            ta["limits"]["keys"]["b"],
            serde_json::json!({"tpm": 200, "monthly_usd": 3.5})
        );
        assert!(ta["limits"]["keys"].get("c").is_none());
    }

    #[test]
    fn auth_routes_provider_models_and_lists_virtual_ones() {
        use serde_json::json;
        let load = |t: &str| load_str(t).unwrap_or_else(|e| panic!("{e:?}"));
        let gw = load(
            "providers:\n- {name: pub1, kind: openai, models: [gpt-x]}\n\
             - {name: gpu1, kind: openai_compatible, base_url: 'http://10.0.0.1:8000', models: [llama, qwen]}\n\
             virtual_models:\n- {name: smart, targets: [{provider: pub1, model: gpt-x}]}\n\
             default_provider: pub1\n",
        );
        let c = &v(&crate::filters::auth(&gw))["catalogue"];
        let route = |p: &str| json!({"cluster": format!("provider.{p}"), "backend": p});
        assert_eq!(
            c["models"],
            json!([
                {"id": "gpt-x", "owned_by": "pub1", "route": route("pub1")},
                {"id": "llama", "owned_by": "gpu1", "route": route("gpu1")},
                {"id": "qwen", "owned_by": "gpu1", "route": route("gpu1")},
                {"id": "smart", "owned_by": "aimesh"},
            ])
        );
        assert_eq!(c["default_route"], route("pub1"));
        // What the auth filter loads: the xds server's output passes the filter's own checks.
        assert_eq!(crate::filters::auth(&gw).check(), Ok(()));
        let none = v(&crate::filters::auth(&load(
            "providers:\n- {name: pub1, kind: openai}\n",
        )));
        assert_eq!(none["catalogue"], json!({"models": []}));
    }

    #[test]
    fn pii_modes_and_prices_reach_their_filters() {
        use serde_json::json;
        let load = |t: &str| load_str(t).unwrap_or_else(|e| panic!("{e:?}"));
        let pii =
            |t: &str| v(&crate::filters::pii(&load(t), false).unwrap_or_else(|e| panic!("{e}")));
        let off = pii("{}");
        assert_eq!(
            off,
            json!({"policies":{"default":{"default_action":"allow","actions":{},"restore":false,"redact_responses":false}}})
        );
        let redact = pii("pii: {mode: redact, entities: [email, us_ssn]}\n");
        assert_eq!(
            redact["policies"]["default"],
            json!({"default_action":"allow","actions":{"EMAIL":"mask","US_SSN":"mask"},"restore":false,"redact_responses":true})
        );
        let block = pii("pii: {mode: block}\n");
        let actions = &block["policies"]["default"]["actions"];
        assert_eq!(actions.as_object().map(|m| m.len()), Some(7));
        assert_eq!(actions["CREDIT_CARD"], json!("block"));
        assert_eq!(
            block["policies"]["default"]["default_action"],
            json!("block")
        );
        let custom = pii(
            "pii:\n  mode: redact\n  restore: true\n  hash_key: '${file:/run/k}'\n  actions: {email: hash, phone: off}\n  \
             patterns: [{name: EMP, regex: 'E\\d+'}]\n  deny_words: [apollo]\n  \
             policies: {strict: {mode: block, redact_responses: false}}\n  \
             rules: [{path_prefix: /v1/embeddings, header: {name: X-Team, value: a}, policy: strict}]\n",
        );
        let d = &custom["policies"]["default"];
        assert_eq!(
            (d["actions"]["EMAIL"].clone(), d["actions"]["PHONE"].clone()),
            (json!("hash"), json!("allow"))
        );
        assert_eq!(d["restore"], json!(true));
        assert_eq!(
            custom["policies"]["strict"]["redact_responses"],
            json!(false)
        );
        assert_eq!(
            custom["patterns"],
            json!([{"name": "EMP", "regex": "E\\d+"}])
        );
        assert_eq!(custom["deny_words"], json!(["apollo"]));
        assert_eq!(
            custom["rules"],
            json!([{"policy": "strict", "path_prefix": "/v1/embeddings", "header": {"name": "x-team", "value": "a"}}])
        );
        let ta = v(&crate::filters::token_accounting(&load(
            "prices:\n  gpt-4o*: {input: 2.5, cached_input: 1.25, output: 10}\n  m: {input: 1, output: 2}\n",
        )));
        assert_eq!(
            ta["prices"],
            json!({"gpt-4o*":{"input":2.5,"cached_input":1.25,"output":10.0},"m":{"input":1.0,"output":2.0}})
        );
    }

    #[test]
    fn fallbacks_get_aggregate_clusters_in_order() {
        use crate::resources::{build, CLUSTER};
        use envoy_types::pb::envoy::config::cluster::v3::{cluster, Cluster};
        use envoy_types::pb::envoy::extensions::clusters::aggregate::v3::ClusterConfig;
        use prost::Message;
        let gw = load_str(
            "providers:\n- {name: aaa, kind: openai}\n- {name: bbb, kind: anthropic}\n- {name: ccc, kind: openai_compatible, base_url: 'http://10.0.0.1:8000'}\n\
             virtual_models:\n- {name: v/1, targets: [{provider: aaa, model: m1}, {provider: bbb, model: m2}], fallbacks: [{provider: ccc, model: m3}]}\n",
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let vm = v(&crate::filters::virtual_model(&gw));
        let weights: Vec<_> = vm["virtual_models"][0]["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| (t["weight"].clone(), t["fallback_cluster"].clone()))
            .collect();
        assert_eq!(
            weights,
            [
                (serde_json::json!(1), serde_json::json!("fallback.v_1.0")),
                (serde_json::json!(1), serde_json::json!("fallback.v_1.1")),
                (serde_json::json!(0), serde_json::json!("fallback.v_1.2")),
            ]
        );
        let res = build(&gw, std::path::Path::new("/w"), false).unwrap_or_else(|e| panic!("{e}"));
        let any = &res[CLUSTER]["fallback.v_1.1"];
        let c = Cluster::decode(any.value.as_slice()).unwrap_or_else(|e| panic!("{e}"));
        let Some(cluster::ClusterDiscoveryType::ClusterType(t)) = c.cluster_discovery_type else {
            panic!("not an aggregate")
        };
        let cfg = t
            .typed_config
            .map(|a| ClusterConfig::decode(a.value.as_slice()))
            .and_then(Result::ok)
            .unwrap_or_default();
        assert_eq!(
            cfg.clusters,
            ["provider.bbb", "provider.aaa", "provider.ccc"]
        );
        let twice = load_str(
            "providers:\n- {name: aaa, kind: openai}\nvirtual_models:\n- {name: v, targets: [{provider: aaa, model: m1}], fallbacks: [{provider: aaa, model: m2}]}\n",
        );
        assert!(
            twice.is_err(),
            "one provider twice in a virtual model is refused"
        );
    }

    #[test]
    fn keys_new_output_is_a_valid_entry_and_reaches_auth() {
        // What `aimesh-xds keys new --id bob --team t --models gpt-4o-mini --rpm 5` prints.
        let entry = format!(
            "{{\"hash\":\"sha256:{}\",\"id\":\"bob\",\"models\":[\"gpt-4o-mini\"],\"requests_per_minute\":5,\"team\":\"t\"}}",
            "b".repeat(64)
        );
        let gw = load_str(&format!(
            "keys:\n- {entry}\nlimits:\n- {{requests_per_minute: 100}}\n"
        ))
        .unwrap_or_else(|e| panic!("{e:?}"));
        let auth = v(&crate::filters::auth(&gw));
        assert_eq!(
            auth["keys"][0]["models"],
            serde_json::json!(["gpt-4o-mini"])
        );
        assert_eq!(auth["keys"][0]["requests_per_minute"], serde_json::json!(5));
        assert!(auth["keys"][0].get("disabled").is_none());
    }

    #[test]
    fn mcp_servers_get_their_own_credential_and_never_the_default_providers() {
        let gw = load_str(
            "providers:\n- {name: oai, kind: openai, api_key: '${env:OA_KEY}'}\ndefault_provider: oai\n\
             mcp_servers:\n- {name: docs, url: 'https://docs.example.com/mcp', api_key: '${env:DOCS_KEY}'}\n\
             - {name: open, url: 'https://open.example.com/mcp'}\n",
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let cfg = v(&crate::filters::header_auth(&gw, false).unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(
            cfg["paths"],
            serde_json::json!([
                {"prefix": "/mcp/docs", "auth": {"type": "bearer", "token": "${env:DOCS_KEY}"}},
                {"prefix": "/mcp/open"},
                {"prefix": "/mcp/"}
            ])
        );
        assert_eq!(crate::filters::header_auth_env(&gw), ["DOCS_KEY", "OA_KEY"]);
    }

    #[test]
    fn mcp_prompts_and_resources_by_server_and_by_key_in_either_shape() {
        let h = |c: &str| format!("sha256:{}", c.repeat(64));
        let (ha, hb, hc) = (h("a"), h("b"), h("c"));
        let gw = load_str(&format!(
            "mcp_servers:\n- {{name: d, url: 'https://d.example.com/mcp', tools: [add], prompts: [sum*], resources: ['docs://pub/*']}}\n\
             keys:\n- {{id: a, hash: '{ha}', mcp: {{d: ['*']}}}}\n\
             - {{id: b, hash: '{hb}', mcp: {{d: {{prompts: [], resources: ['docs://*']}}}}}}\n\
             - {{id: c, hash: '{hc}'}}\n"
        ))
        .unwrap_or_else(|e| panic!("{e:?}"));
        let cfg = v(&crate::filters::mcp(&gw).unwrap_or_else(|| panic!("no mcp config")));
        assert_eq!(
            cfg["servers"]["d"],
            serde_json::json!({"tools": ["add"], "prompts": ["sum*"], "resources": ["docs://pub/*"]})
        );
        assert_eq!(
            cfg["callers"]["a"]["d"],
            serde_json::json!({"tools": ["*"]})
        );
        assert_eq!(
            cfg["callers"]["b"]["d"],
            serde_json::json!({"prompts": [], "resources": ["docs://*"]})
        );
        assert!(cfg["callers"].get("c").is_none());
        let errors = |yaml: &str| -> Vec<String> {
            load_str(yaml)
                .err()
                .unwrap_or_default()
                .iter()
                .map(|e| e.field.clone())
                .collect()
        };
        let base =
            "mcp_servers:\n- {name: d, url: 'https://d.example.com/mcp', resources: ['a*b']}\n";
        assert_eq!(errors(base), ["mcp_servers[0].resources[0]"]);
        let key = format!(
            "mcp_servers:\n- {{name: d, url: 'https://d.example.com/mcp'}}\nkeys:\n- {{id: a, hash: '{ha}', mcp: {{d: {{prompts: ['*x']}}}}}}\n"
        );
        assert_eq!(errors(&key), ["keys[0].mcp.d.prompts[0]"]);
        let unknown = format!(
            "mcp_servers:\n- {{name: d, url: 'https://d.example.com/mcp'}}\nkeys:\n- {{id: a, hash: '{ha}', mcp: {{d: {{tool: [x]}}}}}}\n"
        );
        let e = load_str(&unknown).err().unwrap_or_default();
        assert!(
            e.iter()
                .any(|e| e.field == "keys[0].mcp" && e.message.contains("unknown field `tool`")),
            "{e:?}"
        );
    }
}

mod chain {
    use super::*;
    use crate::filters::{configs, loaded, CHAIN, NAMES};
    use crate::model::{FilterBuild, Gateway};

    #[test]
    fn chain_config_has_one_section_per_filter_in_order() {
        let mut gw = Gateway::default();
        let without_mcp: Vec<&str> = NAMES.into_iter().filter(|n| *n != "mcp").collect();
        assert_eq!(loaded(&gw), without_mcp);
        gw.mcp_servers = vec![crate::model::McpServer {
            name: "docs".into(),
            url: "https://docs.example.com/mcp".into(),
            api_key: None,
            tools: Some(vec!["search*".into()]),
            prompts: None,
            resources: None,
            limits: vec![],
        }];
        assert_eq!(loaded(&gw), NAMES.to_vec());
        let five = configs(&gw, false).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(five.iter().map(|(n, _)| *n).collect::<Vec<_>>(), NAMES);
        gw.listener.filter_build = FilterBuild::Chain;
        assert_eq!(loaded(&gw), vec![CHAIN]);
        let one = configs(&gw, false).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(one.len(), 1);
        let chain: Value = serde_json::from_str(&one[0].1).unwrap_or_else(|e| panic!("{e}"));
        for (name, json) in &five {
            let section: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(chain[*name], section, "{name}");
        }
    }
}

#[test]
fn body_limit_and_metadata_reach_the_filters() {
    let load = |t: &str| load_str(t).unwrap_or_else(|e| panic!("{e:?}"));
    let gw = load(
        "listener: {max_body_bytes: 2097152}\nmetadata: {keys: [project], labels: [project]}\n",
    );
    assert_eq!(crate::filters::auth(&gw).max_body_bytes, 2 * 1024 * 1024);
    let m = crate::filters::token_accounting(&gw).metadata.unwrap();
    assert_eq!(
        (m.header.as_str(), m.labels),
        ("x-gateway-metadata", vec!["project".to_string()])
    );
    let default = load("{}\n");
    assert_eq!(crate::filters::auth(&default).max_body_bytes, 1024 * 1024);
    assert!(crate::filters::token_accounting(&default)
        .metadata
        .is_none());
}
