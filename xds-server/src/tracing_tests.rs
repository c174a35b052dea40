use super::*;
use crate::validate::load_str;

const BASE: &str = "providers:\n  - { name: openai, kind: openai, api_key: '${env:K}', models: [gpt-4o] }\n  - { name: azure, kind: azure_openai, base_url: 'https://x.openai.azure.com', api_key: '${env:K}' }\n";

fn gw(extra: &str) -> Gateway {
    load_str(&format!("{BASE}{extra}")).unwrap()
}

fn errors(extra: &str) -> Vec<String> {
    load_str(&format!("{BASE}{extra}"))
        .err()
        .unwrap_or_default()
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect()
}

#[test]
fn without_otlp_there_is_no_tracer_and_no_cluster() {
    let g = gw("");
    assert!(hcm_tracing(&g).is_none());
    assert!(cluster(&g).unwrap().is_none());
}

#[test]
fn the_tracer_exports_to_its_own_http2_cluster_with_the_sampling() {
    let g = gw("observability:\n  otlp: { endpoint: 'http://collector:4317', service_name: gw, sampling: 25 }\n");
    let t = hcm_tracing(&g).unwrap();
    assert_eq!(t.random_sampling.unwrap().value, 25.0);
    let p = t.provider.unwrap();
    assert_eq!(p.name, "envoy.tracers.opentelemetry");
    let Some(trace::tracing::http::ConfigType::TypedConfig(a)) = p.config_type else {
        panic!("no typed config")
    };
    let cfg = trace::OpenTelemetryConfig::decode(a.value.as_slice()).unwrap();
    assert_eq!(cfg.service_name, "gw");
    let Some(core::grpc_service::TargetSpecifier::EnvoyGrpc(g2)) =
        cfg.grpc_service.unwrap().target_specifier
    else {
        panic!("not envoy_grpc")
    };
    assert_eq!(g2.cluster_name, CLUSTER);
    let c = cluster(&g).unwrap().unwrap();
    assert_eq!(c.name, CLUSTER);
    let opts = &c.typed_extension_protocol_options
        ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"];
    let opts = up::HttpProtocolOptions::decode(opts.value.as_slice()).unwrap();
    let text = format!("{opts:?}");
    assert!(text.contains("Http2ProtocolOptions"), "{text}");
}

#[test]
fn the_span_attributes_and_where_they_are_read() {
    let g = gw("observability:\n  otlp: { endpoint: 'http://127.0.0.1:4317' }\n");
    let tags: std::collections::BTreeMap<_, _> = tags(&g).into_iter().collect();
    assert_eq!(
        tags["gen_ai.usage.input_tokens"],
        "%CEL(filter_state['wasm.aimesh.audit'].input_tokens)%"
    );
    assert_eq!(
        tags["gen_ai.response.model"],
        "%CEL(filter_state['wasm.aimesh.audit'].model_served)%"
    );
    for t in ["gen_ai.request.model", "gen_ai.usage.output_tokens"] {
        assert!(tags.contains_key(t), "{t}");
    }
    assert_eq!(
        tags["aimesh.key.id"],
        "%CEL(filter_state['wasm.aimesh.key_id'])%"
    );
    assert_eq!(
        tags["aimesh.team"],
        "%CEL(filter_state['wasm.aimesh.team'])%"
    );
    assert_eq!(
        tags["gen_ai.provider.name"],
        "%CEL({'provider.openai': 'openai', 'provider.azure': 'azure.ai.openai'}[xds.cluster_name])%"
    );
    let op = &tags["gen_ai.operation.name"];
    assert!(
        op.starts_with("%CEL(request.path.startsWith('/v1/chat/completions') ? 'chat' : "),
        "{op}"
    );
    // Every entry of the filters' endpoint table, in its order, then the empty default.
    assert!(
        op.contains("startsWith('/v1/embeddings') ? 'embeddings' : "),
        "{op}"
    );
    assert!(
        op.ends_with("startsWith('/v1/batches') ? 'batches' : '')%"),
        "{op}"
    );
    let tested = op.matches("startsWith(").count();
    assert_eq!(tested, aimesh_core::api::ENDPOINTS.len(), "{op}");
    // A `)%` inside would end the format command early.
    for v in tags.values() {
        assert_eq!(v.matches(")%").count(), 1, "{v}");
    }
}

#[test]
fn the_native_build_reads_the_record_from_dynamic_metadata() {
    let g = gw("listener: { filter_build: native }\nobservability:\n  otlp: { endpoint: 'http://127.0.0.1:4317' }\n");
    let tags: std::collections::BTreeMap<_, _> = tags(&g).into_iter().collect();
    assert_eq!(
        tags["gen_ai.request.model"],
        "%DYNAMIC_METADATA(aimesh.audit:model)%"
    );
    assert_eq!(
        tags["gen_ai.usage.output_tokens"],
        "%DYNAMIC_METADATA(aimesh.audit:output_tokens)%"
    );
    // Plain properties stay in filter state in every build.
    assert_eq!(
        tags["aimesh.key.id"],
        "%CEL(filter_state['wasm.aimesh.key_id'])%"
    );
}

#[test]
fn a_tool_call_is_an_execute_tool_span_with_the_tool_name() {
    let otlp = "observability:\n  otlp: { endpoint: 'http://127.0.0.1:4317' }\n";
    let mcp = "mcp_servers:\n  - { name: demo, url: 'http://127.0.0.1:9/mcp' }\n";
    let without: std::collections::BTreeMap<_, _> = tags(&gw(otlp)).into_iter().collect();
    assert!(!without.contains_key("gen_ai.tool.name"));
    for (build, name, map) in [
        ("", "'wasm.aimesh.mcp'", "filter_state"),
        (
            "listener: { filter_build: native }\n",
            "'aimesh.mcp'",
            "metadata.filter_metadata",
        ),
    ] {
        let g = gw(&format!("{build}{otlp}{mcp}"));
        let tags: std::collections::BTreeMap<_, _> = tags(&g).into_iter().collect();
        let record = format!("{map}[{name}]");
        let call = format!("{name} in {map} && {record}.method == 'tools/call'");
        assert_eq!(
            tags["gen_ai.tool.name"],
            format!("%CEL({call} ? {record}.tool : '')%")
        );
        let op = &tags["gen_ai.operation.name"];
        assert!(
            op.starts_with(&format!("%CEL({call} ? 'execute_tool' : request.path")),
            "{op}"
        );
        for v in tags.values() {
            assert_eq!(v.matches(")%").count(), 1, "{v}");
        }
    }
}

#[test]
fn cel_strings_are_quoted() {
    assert_eq!(cel_str("a'b\\c"), "'a\\'b\\\\c'");
}

#[test]
fn bad_otlp_settings_name_their_field() {
    let e = errors(
        "observability:\n  otlp: { endpoint: 'https://c:4317', sampling: 101, service_name: '' }\n",
    );
    assert!(
        e.iter()
            .any(|e| e.starts_with("observability.otlp.endpoint: must be http://")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|e| e.starts_with("observability.otlp.sampling: ")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|e| e.starts_with("observability.otlp.service_name: ")),
        "{e:?}"
    );
    let e = errors("observability:\n  otlp: { endpoint: 'http://c:4317/v1/traces' }\n");
    assert!(e.iter().any(|e| e.contains("without a path")), "{e:?}");
    let e = errors("observability:\n  otlp: { endpoint: 'c:4317' }\n");
    assert!(
        e.iter()
            .any(|e| e.starts_with("observability.otlp.endpoint: ")),
        "{e:?}"
    );
    let e = errors("observability:\n  otlp: { endpoint: 'http://c:4317', sample: 1 }\n");
    assert!(
        e.iter().any(|e| e.contains("unknown field `sample`")),
        "{e:?}"
    );
}
