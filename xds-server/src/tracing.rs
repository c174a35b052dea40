//! `observability.otlp` -> the HCM's OpenTelemetry tracer and the cluster it exports to.
//!
//! Span attributes follow the OpenTelemetry GenAI conventions. They are custom tags whose
//! `value` is a CEL substitution format, read when Envoy finalizes the downstream span:
//! the operation from the path, the provider from the upstream cluster, the key id and team
//! from auth's filter state (`wasm.aimesh.key_id`, `wasm.aimesh.team`, set in the request
//! phase). Models and token counts are read from token-accounting's audit record
//! (`wasm.aimesh.audit`), which that filter publishes when the response ends (last body chunk,
//! trailers): Envoy finalizes the span before `on_log`, so a record written there would come
//! too late.

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::trace::v3 as trace;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use envoy_types::pb::envoy::extensions::upstreams::http::v3 as up;
use envoy_types::pb::envoy::r#type::tracing::v3::{custom_tag, CustomTag};
use envoy_types::pb::envoy::r#type::v3::Percent;
use envoy_types::pb::google::protobuf::{Any, Duration};
use prost::Message;

use crate::model::{Gateway, Otlp, ProviderKind};
use crate::validate::parse_url;

/// Cluster of the OTLP collector.
pub const CLUSTER: &str = "aimesh.otlp";

/// Attribute name and the audit record field it carries.
const RECORD_TAGS: [(&str, &str); 4] = [
    ("gen_ai.request.model", "model"),
    ("gen_ai.response.model", "model_served"),
    ("gen_ai.usage.input_tokens", "input_tokens"),
    ("gen_ai.usage.output_tokens", "output_tokens"),
];

/// Attribute name and the auth filter's filter state it carries.
const AUTH_TAGS: [(&str, &str); 2] = [
    ("aimesh.key.id", "wasm.aimesh.key_id"),
    ("aimesh.team", "wasm.aimesh.team"),
];

fn any<M: Message>(type_url: &str, m: &M) -> Any {
    Any {
        type_url: type_url.to_string(),
        value: m.encode_to_vec(),
    }
}

/// `gen_ai.provider.name` of a provider kind (the conventions' well-known values where one
/// exists, else the kind).
pub fn provider_name(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Openai => "openai",
        ProviderKind::AzureOpenai => "azure.ai.openai",
        ProviderKind::Anthropic => "anthropic",
        ProviderKind::OpenaiCompatible => "openai_compatible",
        ProviderKind::Vllm => "vllm",
        ProviderKind::Tgi => "tgi",
    }
}

fn record(field: &str) -> String {
    format!("filter_state['wasm.aimesh.audit'].{field}")
}

/// A CEL string literal (names and paths here are validated, but quotes are escaped anyway).
fn cel_str(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The span attributes: (name, substitution format).
pub fn tags(gw: &Gateway) -> Vec<(String, String)> {
    // The native build cannot declare a filter-state record; it writes the record's fields to
    // the dynamic-metadata namespace of the record's name, as the access log reads them.
    let native = gw.listener.filter_build == crate::model::FilterBuild::Native;
    let record_tags = RECORD_TAGS.iter().map(|(tag, f)| {
        let value = if native {
            format!("%DYNAMIC_METADATA(aimesh.audit:{f})%")
        } else {
            format!("%CEL({})%", record(f))
        };
        (tag.to_string(), value)
    });
    let auth_tags = AUTH_TAGS.iter().map(|(tag, key)| {
        (
            tag.to_string(),
            format!("%CEL(filter_state[{}])%", cel_str(key)),
        )
    });
    let mut out: Vec<(String, String)> = record_tags.chain(auth_tags).collect();
    // A CEL map from each provider's cluster to its kind's name; a missing key (another
    // upstream, no upstream) is an error, so an empty attribute.
    let entries: Vec<String> = gw
        .providers
        .iter()
        .map(|p| {
            let cluster = crate::resources::provider_cluster(&p.name);
            format!("{}: {}", cel_str(&cluster), cel_str(provider_name(p.kind)))
        })
        .collect();
    if !entries.is_empty() {
        let map = format!("{{{}}}[xds.cluster_name]", entries.join(", "));
        out.push(("gen_ai.provider.name".into(), format!("%CEL({map})%")));
    }
    let path = "request.path";
    // `gen_ai.operation.name` by the path the client asked for: the filters' endpoint table.
    let mut op = aimesh_core::api::ENDPOINTS
        .iter()
        .map(|e| (e.path, e.operation))
        .rev()
        .fold("''".to_string(), |rest, (p, op)| {
            format!(
                "{path}.startsWith({}) ? {} : {rest}",
                cel_str(p),
                cel_str(op)
            )
        });
    if !gw.mcp_servers.is_empty() {
        // The mcp stage's record (method, tool), written when the request is decided and only
        // for `/mcp/<server>` requests (the path itself is rewritten by then for forwarded ones).
        let (name, map) = if native {
            ("'aimesh.mcp'", "metadata.filter_metadata")
        } else {
            ("'wasm.aimesh.mcp'", "filter_state")
        };
        let mcp = format!("{map}[{name}]");
        let call = format!("{name} in {map} && {mcp}.method == 'tools/call'");
        op = format!("{call} ? 'execute_tool' : {op}");
        let tool = format!("{call} ? {mcp}.tool : ''");
        out.push(("gen_ai.tool.name".into(), format!("%CEL({tool})%")));
    }
    out.push(("gen_ai.operation.name".into(), format!("%CEL({op})%")));
    out.sort();
    out
}

/// The HCM's tracing settings; none without `observability.otlp`.
pub fn hcm_tracing(gw: &Gateway) -> Option<hcm::http_connection_manager::Tracing> {
    let otlp = gw.observability.otlp.as_ref()?;
    let config = trace::OpenTelemetryConfig {
        grpc_service: Some(core::GrpcService {
            target_specifier: Some(core::grpc_service::TargetSpecifier::EnvoyGrpc(
                core::grpc_service::EnvoyGrpc {
                    cluster_name: CLUSTER.into(),
                    ..Default::default()
                },
            )),
            timeout: Some(Duration {
                seconds: 5,
                nanos: 0,
            }),
            ..Default::default()
        }),
        service_name: otlp.service_name.clone(),
        ..Default::default()
    };
    let custom_tags = tags(gw)
        .into_iter()
        .map(|(tag, value)| CustomTag {
            tag,
            r#type: Some(custom_tag::Type::Value(value)),
        })
        .collect();
    Some(hcm::http_connection_manager::Tracing {
        random_sampling: Some(Percent {
            value: otlp.sampling,
        }),
        custom_tags,
        provider: Some(trace::tracing::Http {
            name: "envoy.tracers.opentelemetry".into(),
            config_type: Some(trace::tracing::http::ConfigType::TypedConfig(any(
                "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
                &config,
            ))),
        }),
        ..Default::default()
    })
}

/// The collector's cluster (gRPC, so HTTP/2); none without `observability.otlp`.
pub fn cluster(gw: &Gateway) -> Result<Option<Cluster>, String> {
    let Some(otlp) = &gw.observability.otlp else {
        return Ok(None);
    };
    let u = parse_url(&otlp.endpoint)?;
    let mut c = crate::resources::hosted_cluster(CLUSTER, &u, 5000);
    let opts = up::HttpProtocolOptions {
        upstream_protocol_options: Some(
            up::http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(
                up::http_protocol_options::ExplicitHttpConfig {
                    protocol_config: Some(
                        up::http_protocol_options::explicit_http_config::ProtocolConfig::Http2ProtocolOptions(
                            Default::default(),
                        ),
                    ),
                },
            ),
        ),
        ..Default::default()
    };
    let key = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
    c.typed_extension_protocol_options.insert(
        key.into(),
        any(&format!("type.googleapis.com/{key}"), &opts),
    );
    Ok(Some(c))
}

/// Errors in `observability`, by field.
pub fn check(gw: &Gateway) -> Vec<(String, String)> {
    let Some(o) = &gw.observability.otlp else {
        return vec![];
    };
    let mut errs = vec![];
    check_otlp(o, &mut errs);
    errs
}

fn check_otlp(o: &Otlp, errs: &mut Vec<(String, String)>) {
    let f = "observability.otlp";
    match parse_url(&o.endpoint) {
        Err(e) => errs.push((format!("{f}.endpoint"), e)),
        Ok(u) if u.tls => errs.push((
            format!("{f}.endpoint"),
            "must be http://host:port (TLS to the collector is not supported yet)".into(),
        )),
        Ok(u) if !u.path.is_empty() => errs.push((
            format!("{f}.endpoint"),
            "must be http://host:port, without a path (gRPC)".into(),
        )),
        Ok(_) => {}
    }
    if o.service_name.is_empty() || o.service_name.chars().any(char::is_control) {
        errs.push((
            format!("{f}.service_name"),
            "must be non-empty, without control characters".into(),
        ));
    }
    if !(o.sampling.is_finite() && (0.0..=100.0).contains(&o.sampling)) {
        errs.push((
            format!("{f}.sampling"),
            "must be a percentage, 0-100".into(),
        ));
    }
}

#[cfg(test)]
#[path = "tracing_tests.rs"]
mod tests;
