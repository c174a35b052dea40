//! gateway.yaml -> Envoy resources (clusters, endpoints, listener, routes, ECDS filter configs).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use envoy_types::pb::envoy::config::cluster::v3::{cluster, Cluster};
use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::endpoint::v3 as ep;
use envoy_types::pb::envoy::config::listener::v3 as lis;
use envoy_types::pb::envoy::config::route::v3 as rt;
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::http::wasm::v3::Wasm;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3 as tls;
use envoy_types::pb::envoy::extensions::upstreams::http::v3 as up;
use envoy_types::pb::envoy::extensions::wasm::v3 as wasm;
use envoy_types::pb::envoy::r#type::matcher::v3 as matcher;
use envoy_types::pb::google::protobuf::{Any, BoolValue, Duration, StringValue, UInt32Value};
use prost::Message;

use crate::access_log;
use crate::filters;
use crate::local_reply;
use crate::model::{FilterBuild, Gateway, Provider};
use crate::native;
use crate::validate::{parse_duration_ms, parse_url, Url};

/// Type URL of clusters.
pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
/// Type URL of endpoint assignments.
pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
/// Type URL of listeners.
pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
/// Type URL of route configurations.
pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
/// Type URL of ECDS extension configs.
pub const EXTENSION: &str = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";
/// Type URL of the Wasm HTTP filter config.
pub const WASM: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";

/// Name of the gateway listener and of its route configuration.
pub const GATEWAY: &str = "gateway";

/// Resources by type URL, then by name.
pub type Resources = BTreeMap<&'static str, BTreeMap<String, Any>>;

/// Cluster name of a custom endpoint.
pub fn custom_cluster(e: &crate::model::CustomEndpoint) -> String {
    format!(
        "custom.{}.{}",
        e.provider
            .as_deref()
            .unwrap_or(crate::validate::CUSTOM_ACCOUNT),
        e.name
    )
}

/// Cluster name of a provider.
pub fn provider_cluster(name: &str) -> String {
    format!("provider.{name}")
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, String> {
    serde_json::to_string(v).map_err(|e| e.to_string())
}

fn any<M: Message>(type_url: &str, m: &M) -> Any {
    Any {
        type_url: type_url.to_string(),
        value: m.encode_to_vec(),
    }
}

fn dur(ms: u64) -> Duration {
    Duration {
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

fn dur_str(s: &str, default_ms: u64) -> Duration {
    dur(parse_duration_ms(s).unwrap_or(default_ms))
}

fn ads() -> core::ConfigSource {
    core::ConfigSource {
        config_source_specifier: Some(core::config_source::ConfigSourceSpecifier::Ads(
            core::AggregatedConfigSource {},
        )),
        resource_api_version: core::ApiVersion::V3 as i32,
        ..Default::default()
    }
}

fn socket(host: &str, port: u16) -> core::Address {
    core::Address {
        address: Some(core::address::Address::SocketAddress(core::SocketAddress {
            address: host.to_string(),
            port_specifier: Some(core::socket_address::PortSpecifier::PortValue(port as u32)),
            ..Default::default()
        })),
    }
}

/// Builds every resource of a validated gateway. `wasm_dir` holds the filters' `.wasm` files.
/// With `resolve_files` false, `${file:...}` secrets are not read (for `diff`, which never
/// sends anything).
pub fn build(gw: &Gateway, wasm_dir: &Path, resolve_files: bool) -> Result<Resources, String> {
    let mut out: Resources = BTreeMap::new();
    let mut clusters = BTreeMap::new();
    let mut endpoints = BTreeMap::new();
    // Every provider cluster translates per attempt between the client's dialect and its own.
    let translate = wasm_filter(
        "translate",
        &json(&filters::translate(gw))?,
        wasm_dir,
        &[],
        false,
    );
    for p in &gw.providers {
        let (mut c, cla) = provider(p)?;
        set_upstream_filters(&mut c, std::slice::from_ref(&translate));
        c.per_connection_buffer_limit_bytes = buffer_limit(gw);
        if let Some(cla) = cla {
            endpoints.insert(c.name.clone(), any(ENDPOINT, &cla));
        }
        clusters.insert(c.name.clone(), any(CLUSTER, &c));
    }
    for m in &gw.mcp_servers {
        let u = parse_url(&m.url)?;
        let c = hosted_cluster(&format!("mcp.{}", m.name), &u, 5000);
        clusters.insert(c.name.clone(), any(CLUSTER, &c));
    }
    for e in &gw.custom_endpoints {
        let u = parse_url(&e.url)?;
        let mut c = hosted_cluster(&custom_cluster(e), &u, 5000);
        c.per_connection_buffer_limit_bytes = buffer_limit(gw);
        clusters.insert(c.name.clone(), any(CLUSTER, &c));
    }
    let header_auth_env = filters::header_auth_env(gw);
    // Resolved `${file:...}` values sit in the configs of the filters that use them.
    let sensitive = |filter: &str| resolve_files && filters::carries_file_secrets(gw, filter);
    if gw.virtual_models.iter().any(|vm| !vm.fallbacks.is_empty()) {
        let upstream = [
            wasm_filter(
                "virtual-model",
                &json(&filters::virtual_model_upstream(gw))?,
                wasm_dir,
                &[],
                false,
            ),
            wasm_filter(
                "header-auth",
                &json(&filters::header_auth_upstream(gw, resolve_files)?)?,
                wasm_dir,
                &header_auth_env,
                sensitive("header-auth"),
            ),
            translate.clone(),
        ];
        for vm in gw
            .virtual_models
            .iter()
            .filter(|vm| !vm.fallbacks.is_empty())
        {
            let chain: Vec<String> = filters::entries(vm)
                .map(|(t, _)| provider_cluster(&t.provider))
                .collect();
            for i in 0..chain.len() {
                let mut order = vec![chain[i].clone()];
                order.extend(
                    chain
                        .iter()
                        .enumerate()
                        .filter(|(j, _)| *j != i)
                        .map(|(_, c)| c.clone()),
                );
                let c = aggregate_cluster(&filters::fallback_cluster(vm, i), order, &upstream);
                clusters.insert(c.name.clone(), any(CLUSTER, &c));
            }
        }
    }
    if let Some(c) = crate::tracing::cluster(gw)? {
        clusters.insert(c.name.clone(), any(CLUSTER, &c));
    }
    if let Some(c) = filters::fleet::cluster(gw)? {
        clusters.insert(c.name.clone(), any(CLUSTER, &c));
    }
    out.insert(CLUSTER, clusters);
    out.insert(ENDPOINT, endpoints);
    out.insert(
        ROUTE,
        BTreeMap::from([(GATEWAY.to_string(), any(ROUTE, &routes(gw)?))]),
    );
    out.insert(
        LISTENER,
        BTreeMap::from([(GATEWAY.to_string(), any(LISTENER, &listener(gw)))]),
    );
    let mut ext = BTreeMap::new();
    for (name, json) in filters::configs(gw, resolve_files)? {
        let reads_env = name == "header-auth" || name == filters::CHAIN;
        let env: &[String] = if reads_env { &header_auth_env } else { &[] };
        let cfg = if gw.listener.filter_build == FilterBuild::Native {
            native::extension(name, &json, sensitive(name))
        } else {
            wasm_extension(name, &json, wasm_dir, env, sensitive(name))
        };
        ext.insert(cfg.name.clone(), any(EXTENSION, &cfg));
    }
    out.insert(EXTENSION, ext);
    Ok(out)
}

fn http1_options(c: &mut Cluster) {
    let opts = up::HttpProtocolOptions {
        upstream_protocol_options: Some(up::http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(
            up::http_protocol_options::ExplicitHttpConfig {
                protocol_config: Some(
                    up::http_protocol_options::explicit_http_config::ProtocolConfig::HttpProtocolOptions(
                        Default::default(),
                    ),
                ),
            },
        )),
        ..Default::default()
    };
    c.typed_extension_protocol_options.insert(
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".into(),
        any(
            "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            &opts,
        ),
    );
}

fn tls_socket(host: &str) -> core::TransportSocket {
    let ctx = tls::UpstreamTlsContext {
        sni: host.to_string(),
        common_tls_context: Some(tls::CommonTlsContext {
            validation_context_type: Some(
                tls::common_tls_context::ValidationContextType::ValidationContext(
                    tls::CertificateValidationContext {
                        trusted_ca: Some(core::DataSource {
                            specifier: Some(core::data_source::Specifier::Filename(
                                "/etc/ssl/certs/ca-certificates.crt".into(),
                            )),
                            ..Default::default()
                        }),
                        match_typed_subject_alt_names: vec![tls::SubjectAltNameMatcher {
                            san_type: tls::subject_alt_name_matcher::SanType::Dns as i32,
                            matcher: Some(matcher::StringMatcher {
                                match_pattern: Some(matcher::string_matcher::MatchPattern::Exact(
                                    host.to_string(),
                                )),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }],
                        ..Default::default()
                    },
                ),
            ),
            ..Default::default()
        }),
        ..Default::default()
    };
    core::TransportSocket {
        name: "envoy.transport_sockets.tls".into(),
        config_type: Some(core::transport_socket::ConfigType::TypedConfig(any(
            "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            &ctx,
        ))),
    }
}

/// `cluster`: the endpoint's `aimesh.cluster` metadata, which virtual-model's upstream instance
/// reads to learn which target an attempt reached.
fn lb_endpoint(host: &str, port: u16, weight: Option<u32>, cluster: &str) -> ep::LbEndpoint {
    use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
    let meta = Struct {
        fields: [(
            "cluster".to_string(),
            Value {
                kind: Some(Kind::StringValue(cluster.to_string())),
            },
        )]
        .into(),
    };
    ep::LbEndpoint {
        metadata: Some(core::Metadata {
            filter_metadata: [("aimesh".to_string(), meta)].into(),
            ..Default::default()
        }),
        host_identifier: Some(ep::lb_endpoint::HostIdentifier::Endpoint(ep::Endpoint {
            address: Some(socket(host, port)),
            ..Default::default()
        })),
        load_balancing_weight: weight.map(|value| UInt32Value { value }),
        ..Default::default()
    }
}

/// A cluster to one hosted URL: DNS (or static for an IP), TLS with SNI for https.
pub(crate) fn hosted_cluster(name: &str, u: &Url, connect_ms: u64) -> Cluster {
    let is_ip = u.host.parse::<IpAddr>().is_ok();
    let kind = if is_ip {
        cluster::DiscoveryType::Static
    } else {
        cluster::DiscoveryType::LogicalDns
    };
    let mut c = Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(kind as i32)),
        connect_timeout: Some(dur(connect_ms)),
        dns_lookup_family: cluster::DnsLookupFamily::V4Preferred as i32,
        load_assignment: Some(ep::ClusterLoadAssignment {
            cluster_name: name.to_string(),
            endpoints: vec![ep::LocalityLbEndpoints {
                lb_endpoints: vec![lb_endpoint(&u.host, u.port, None, name)],
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    if u.tls {
        c.transport_socket = Some(tls_socket(&u.host));
    }
    http1_options(&mut c);
    c
}

fn provider(p: &Provider) -> Result<(Cluster, Option<ep::ClusterLoadAssignment>), String> {
    let name = provider_cluster(&p.name);
    let connect_ms = p
        .connect_timeout
        .as_deref()
        .map(parse_duration_ms)
        .transpose()?
        .unwrap_or(5000);
    if !p.kind.self_hosted() {
        let base = p
            .base_url
            .as_deref()
            .or(p.kind.default_base_url())
            .ok_or_else(|| format!("provider {}: no base_url", p.name))?;
        return Ok((hosted_cluster(&name, &parse_url(base)?, connect_ms), None));
    }
    // Self-hosted: group endpoints by (priority, locality) so Envoy fails over by priority.
    let mut groups: BTreeMap<(u32, String), Vec<ep::LbEndpoint>> = BTreeMap::new();
    let mut all_ips = true;
    for e in &p.endpoints {
        let u = parse_url(&e.url)?;
        all_ips &= u.host.parse::<IpAddr>().is_ok();
        groups
            .entry((e.priority, e.locality.clone().unwrap_or_default()))
            .or_default()
            .push(lb_endpoint(&u.host, u.port, e.weight, &name));
    }
    let cla = ep::ClusterLoadAssignment {
        cluster_name: name.clone(),
        endpoints: groups
            .into_iter()
            .map(
                |((priority, region), lb_endpoints)| ep::LocalityLbEndpoints {
                    locality: Some(core::Locality {
                        region,
                        ..Default::default()
                    }),
                    lb_endpoints,
                    priority,
                    load_balancing_weight: Some(UInt32Value { value: 1 }),
                    ..Default::default()
                },
            )
            .collect(),
        ..Default::default()
    };
    let mut c = Cluster {
        name: name.clone(),
        connect_timeout: Some(dur(connect_ms)),
        lb_policy: cluster::LbPolicy::LeastRequest as i32,
        dns_lookup_family: cluster::DnsLookupFamily::V4Preferred as i32,
        ..Default::default()
    };
    if let Some(h) = &p.health_check {
        c.health_checks = vec![core::HealthCheck {
            timeout: Some(dur_str(&h.timeout, 1000)),
            interval: Some(dur_str(&h.interval, 5000)),
            // Envoy's default (60s) would leave a backend that failed before traffic arrived in rotation.
            no_traffic_interval: Some(dur_str(&h.interval, 5000)),
            unhealthy_threshold: Some(UInt32Value {
                value: h.unhealthy_threshold,
            }),
            healthy_threshold: Some(UInt32Value {
                value: h.healthy_threshold,
            }),
            health_checker: Some(core::health_check::HealthChecker::HttpHealthCheck(
                core::health_check::HttpHealthCheck {
                    path: h.path.clone(),
                    ..Default::default()
                },
            )),
            ..Default::default()
        }];
    }
    http1_options(&mut c);
    // EDS needs IP addresses (Envoy does not resolve EDS host names); DNS names stay inline.
    if all_ips {
        c.cluster_discovery_type = Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32,
        ));
        c.eds_cluster_config = Some(cluster::EdsClusterConfig {
            eds_config: Some(ads()),
            service_name: String::new(),
        });
        Ok((c, Some(cla)))
    } else {
        c.cluster_discovery_type = Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::StrictDns as i32,
        ));
        c.load_assignment = Some(cla);
        Ok((c, None))
    }
}

fn header_present(name: &str) -> rt::HeaderMatcher {
    rt::HeaderMatcher {
        name: name.to_string(),
        header_match_specifier: Some(rt::header_matcher::HeaderMatchSpecifier::PresentMatch(true)),
        ..Default::default()
    }
}

fn prefix_match(prefix: &str, headers: Vec<rt::HeaderMatcher>) -> rt::RouteMatch {
    rt::RouteMatch {
        path_specifier: Some(rt::route_match::PathSpecifier::Prefix(prefix.to_string())),
        headers,
        ..Default::default()
    }
}

fn to_cluster(
    name: &str,
    m: rt::RouteMatch,
    spec: rt::route_action::ClusterSpecifier,
    timeout: Duration,
) -> rt::Route {
    rt::Route {
        name: name.to_string(),
        r#match: Some(m),
        action: Some(rt::route::Action::Route(rt::RouteAction {
            cluster_specifier: Some(spec),
            timeout: Some(timeout),
            ..Default::default()
        })),
        // The router drops it after choosing the cluster: it steers routing, never reaches a
        // provider (header-auth's upstream role only runs on fallback clusters).
        request_headers_to_remove: vec!["x-aimesh-cluster".into()],
        ..Default::default()
    }
}

fn rewrite(mut r: rt::Route, prefix: &str, host: &str) -> rt::Route {
    if let Some(rt::route::Action::Route(a)) = r.action.as_mut() {
        a.prefix_rewrite = if prefix.is_empty() {
            "/".into()
        } else {
            prefix.to_string()
        };
        a.host_rewrite_specifier = Some(
            rt::route_action::HostRewriteSpecifier::HostRewriteLiteral(host.to_string()),
        );
    }
    r
}

fn not_found(name: &str, prefix: &str, body: &str) -> rt::Route {
    rt::Route {
        name: name.to_string(),
        r#match: Some(prefix_match(prefix, vec![])),
        action: Some(rt::route::Action::DirectResponse(
            rt::DirectResponseAction {
                status: 404,
                body: None,
                // As a format, so the reply says it is JSON (OpenAI clients parse the error).
                body_format: Some(core::SubstitutionFormatString {
                    format: Some(core::substitution_format_string::Format::TextFormatSource(
                        core::DataSource {
                            specifier: Some(core::data_source::Specifier::InlineString(
                                body.to_string(),
                            )),
                            ..Default::default()
                        },
                    )),
                    content_type: "application/json".into(),
                    ..Default::default()
                }),
            },
        )),
        ..Default::default()
    }
}

fn routes(gw: &Gateway) -> Result<rt::RouteConfiguration, String> {
    use rt::route_action::ClusterSpecifier as C;
    let timeout = dur(parse_duration_ms(&gw.listener.route_timeout)?);
    let mut routes = Vec::new();
    for m in &gw.mcp_servers {
        let u = parse_url(&m.url)?;
        // MCP streams (SSE) stay open for long: no route timeout.
        // On a segment boundary: `/mcp/docs` and `/mcp/docs/...`, never `/mcp/docsX`.
        let r = to_cluster(
            &format!("mcp.{}", m.name),
            rt::RouteMatch {
                path_specifier: Some(rt::route_match::PathSpecifier::PathSeparatedPrefix(
                    format!("/mcp/{}", m.name),
                )),
                ..Default::default()
            },
            C::Cluster(format!("mcp.{}", m.name)),
            dur(0),
        );
        routes.push(rewrite(r, &u.path, &u.host));
    }
    // Virtual models with fallbacks: their aggregate clusters, with the retry policy.
    if gw.virtual_models.iter().any(|vm| !vm.fallbacks.is_empty()) {
        let mut r = to_cluster(
            "fallback",
            prefix_match(
                "/",
                vec![rt::HeaderMatcher {
                    name: "x-aimesh-cluster".into(),
                    header_match_specifier: Some(
                        rt::header_matcher::HeaderMatchSpecifier::StringMatch(
                            matcher::StringMatcher {
                                match_pattern: Some(matcher::string_matcher::MatchPattern::Prefix(
                                    filters::FALLBACK_PREFIX.into(),
                                )),
                                ..Default::default()
                            },
                        ),
                    ),
                    ..Default::default()
                }],
            ),
            C::ClusterHeader("x-aimesh-cluster".into()),
            timeout,
        );
        if let Some(rt::route::Action::Route(a)) = r.action.as_mut() {
            a.retry_policy = Some(fallback_retry_policy());
        }
        routes.push(r);
    }
    // Set by virtual-model (chosen target) and header-auth (custom endpoint, path rewritten).
    routes.push(to_cluster(
        "cluster-header",
        prefix_match("/", vec![header_present("x-aimesh-cluster")]),
        C::ClusterHeader("x-aimesh-cluster".into()),
        timeout,
    ));
    routes.push(not_found("proxy-api.unknown", "/proxy-api/",
        r#"{"error":{"message":"no such custom endpoint","type":"invalid_request_error","param":null,"code":"not_found"}}"#));
    routes.push(not_found("mcp.unknown", "/mcp/",
        r#"{"error":{"message":"no such MCP server","type":"invalid_request_error","param":null,"code":"not_found"}}"#));
    // `/v1/` requests reach a provider only through `x-aimesh-cluster`: auth sets it from the
    // model (provider models, else the default provider), virtual-model for its targets. No
    // route matches the model or falls back to the default provider, so a request whose cluster
    // no filter chose (a provider model whose route was lost) gets this 404 and never reaches
    // another provider with its prompt. A route matching `x-aimesh-model` could not work anyway:
    // header-auth strips that internal fact before the router, and the one-filter build keeps it
    // in the VM.
    routes.push(not_found("v1.unrouted", "/v1/",
        r#"{"error":{"message":"no provider serves this request","type":"invalid_request_error","param":null,"code":"model_not_found"}}"#));
    Ok(rt::RouteConfiguration {
        name: GATEWAY.to_string(),
        virtual_hosts: vec![rt::VirtualHost {
            name: "all".into(),
            domains: vec!["*".into()],
            routes,
            ..Default::default()
        }],
        ..Default::default()
    })
}

#[cfg(test)]
#[path = "routes_tests.rs"]
mod routes_tests;

/// Envoy's buffer limit for connections that carry request bodies: `listener.max_body_bytes`
/// and headroom, so the filters (which hold a body while they read it) answer an oversized one
/// with their own 413 before Envoy's buffer would overflow.
fn buffer_limit(gw: &Gateway) -> Option<UInt32Value> {
    let bytes = gw.listener.max_body_bytes.saturating_add(64 * 1024);
    Some(UInt32Value {
        value: u32::try_from(bytes).unwrap_or(u32::MAX),
    })
}

fn listener(gw: &Gateway) -> lis::Listener {
    let mut http_filters: Vec<hcm::HttpFilter> = filters::loaded(gw)
        .iter()
        .map(|f| hcm::HttpFilter {
            name: filters::extension_name(f),
            config_type: Some(hcm::http_filter::ConfigType::ConfigDiscovery(
                core::ExtensionConfigSource {
                    config_source: Some(ads()),
                    type_urls: vec![if gw.listener.filter_build == FilterBuild::Native {
                        native::DYNAMIC_MODULE.to_string()
                    } else {
                        WASM.to_string()
                    }],
                    ..Default::default()
                },
            )),
            ..Default::default()
        })
        .collect();
    http_filters.push(hcm::HttpFilter {
        name: "envoy.filters.http.router".into(),
        config_type: Some(hcm::http_filter::ConfigType::TypedConfig(any(
            "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
            &Router::default(),
        ))),
        ..Default::default()
    });
    let manager = hcm::HttpConnectionManager {
        stat_prefix: "aimesh".into(),
        codec_type: hcm::http_connection_manager::CodecType::Auto as i32,
        route_specifier: Some(hcm::http_connection_manager::RouteSpecifier::Rds(
            hcm::Rds {
                config_source: Some(ads()),
                route_config_name: GATEWAY.to_string(),
            },
        )),
        http_filters,
        access_log: access_log::audit(
            &gw.listener.access_log,
            gw.listener.filter_build == FilterBuild::Native,
        ),
        local_reply_config: Some(local_reply::openai_shaped()),
        tracing: crate::tracing::hcm_tracing(gw),
        ..edge(gw.listener.trusted_hops)
    };
    lis::Listener {
        name: GATEWAY.to_string(),
        address: Some(socket(&gw.listener.address, gw.listener.port)),
        filter_chains: vec![lis::FilterChain {
            filters: vec![lis::Filter {
                name: "envoy.filters.network.http_connection_manager".into(),
                config_type: Some(lis::filter::ConfigType::TypedConfig(any(
                    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    &manager,
                ))),
            }],
            ..Default::default()
        }],
        per_connection_buffer_limit_bytes: buffer_limit(gw),
        ..Default::default()
    }
}

/// HCM settings of a listener facing untrusted clients (Envoy's edge-proxy guidance), as in
/// `envoy/*.yaml` and the test harness (`config.edge_options`):
/// - paths normalized before any filter or route sees them (dot segments, `%2e` included; `//`
///   merged) and an encoded `/` or `\` refused, so what auth, header-auth and the routes check
///   is what the upstream gets;
/// - the client is whoever connected (or what `trusted_hops` proxies in front put in
///   `x-forwarded-for`): every request is external, so Envoy strips the client's `x-envoy-*`
///   control headers (retries, timeouts, original path, ...); client addresses are not
///   appended to `x-forwarded-for` for a third-party provider;
/// - header names with `_` dropped (some servers read `x_aimesh_key_id` as `x-aimesh-key-id`,
///   which auth strips only in its `-` spelling; refusing them would reset HTTP/2 streams
///   without an answer); a `Host` port ignored for route matching.
fn edge(trusted_hops: u32) -> hcm::HttpConnectionManager {
    use hcm::http_connection_manager::{PathWithEscapedSlashesAction, StripPortMode};
    hcm::HttpConnectionManager {
        normalize_path: Some(BoolValue { value: true }),
        merge_slashes: true,
        path_with_escaped_slashes_action: PathWithEscapedSlashesAction::RejectRequest as i32,
        use_remote_address: Some(BoolValue { value: true }),
        xff_num_trusted_hops: trusted_hops,
        skip_xff_append: true,
        strip_port_mode: Some(StripPortMode::StripAnyHostPort(true)),
        common_http_protocol_options: Some(core::HttpProtocolOptions {
            headers_with_underscores_action:
                core::http_protocol_options::HeadersWithUnderscoresAction::DropHeader as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A filter's `PluginConfig.configuration`: the JSON as a `StringValue`, or, when it holds
/// secret values (`sensitive`), as the `inline_string` of a `GenericSecret`. Envoy's
/// `/config_dump` redacts that message's `secret` field (it is marked sensitive) and still
/// hands the VM the message's bytes, which the Wasm and native builds unwrap (`aimesh_host::config::unwrap_generic_secret`).
pub fn plugin_configuration(json: &str, sensitive: bool) -> Any {
    if !sensitive {
        return any(
            "type.googleapis.com/google.protobuf.StringValue",
            &StringValue {
                value: json.to_string(),
            },
        );
    }
    any(
        GENERIC_SECRET,
        &tls::GenericSecret {
            secret: Some(core::DataSource {
                specifier: Some(core::data_source::Specifier::InlineString(json.to_string())),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
}

/// Type URL of a generic secret (what [`plugin_configuration`] wraps secrets in).
pub const GENERIC_SECRET: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.GenericSecret";

/// The ECDS resource of one filter: the whole Wasm filter config, code from `wasm_dir`.
/// `env`: Envoy environment variables the VM may read; `sensitive`: the JSON holds secret values.
fn wasm_extension(
    filter: &str,
    json: &str,
    wasm_dir: &Path,
    env: &[String],
    sensitive: bool,
) -> core::TypedExtensionConfig {
    let name = filters::extension_name(filter);
    let file = wasm_dir.join(format!("aimesh_{}.wasm", filter.replace('-', "_")));
    let plugin = wasm::PluginConfig {
        name: name.clone(),
        root_id: name.clone(),
        // Filters that read the body pause in on_request_headers; Envoy ignores the pause without it.
        allow_on_headers_stop_iteration: Some(BoolValue { value: true }),
        // A VM that traps is replaced by a fresh one (back-off ~1 s); until then, and for a
        // filter that fails to load, the filter refuses traffic (503), never waves it through.
        failure_policy: wasm::FailurePolicy::FailReload as i32,
        configuration: Some(plugin_configuration(json, sensitive)),
        vm: Some(wasm::plugin_config::Vm::VmConfig(wasm::VmConfig {
            vm_id: name.clone(),
            runtime: "envoy.wasm.runtime.v8".into(),
            code: Some(core::AsyncDataSource {
                specifier: Some(core::async_data_source::Specifier::Local(
                    core::DataSource {
                        specifier: Some(core::data_source::Specifier::Filename(
                            file.display().to_string(),
                        )),
                        ..Default::default()
                    },
                )),
            }),
            environment_variables: (!env.is_empty()).then(|| wasm::EnvironmentVariables {
                host_env_keys: env.to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        })),
        ..Default::default()
    };
    core::TypedExtensionConfig {
        name,
        typed_config: Some(any(
            WASM,
            &Wasm {
                config: Some(plugin),
            },
        )),
    }
}

/// The same Wasm filter inline, for a cluster's `http_filters` (same `vm_id`: the upstream
/// instance shares the downstream one's VM and shared data).
fn wasm_filter(
    filter: &str,
    json: &str,
    wasm_dir: &Path,
    env: &[String],
    sensitive: bool,
) -> hcm::HttpFilter {
    let ext = wasm_extension(filter, json, wasm_dir, env, sensitive);
    hcm::HttpFilter {
        name: ext.name,
        config_type: ext
            .typed_config
            .map(hcm::http_filter::ConfigType::TypedConfig),
        ..Default::default()
    }
}

/// An aggregate cluster over `clusters` (one priority each, in order) whose upstream filters
/// run once per attempt: Envoy's router retries and `previous_priorities` move each retry to the
/// next cluster (virtual-model fallback mode).
fn aggregate_cluster(name: &str, clusters: Vec<String>, upstream: &[hcm::HttpFilter]) -> Cluster {
    use envoy_types::pb::envoy::config::cluster::v3::{circuit_breakers, CircuitBreakers};
    use envoy_types::pb::envoy::extensions::clusters::aggregate::v3::ClusterConfig;
    let mut c = Cluster {
        name: name.to_string(),
        connect_timeout: Some(dur(5000)),
        lb_policy: cluster::LbPolicy::ClusterProvided as i32,
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::ClusterType(
            cluster::CustomClusterType {
                name: "envoy.clusters.aggregate".into(),
                typed_config: Some(any(
                    "type.googleapis.com/envoy.extensions.clusters.aggregate.v3.ClusterConfig",
                    &ClusterConfig { clusters },
                )),
            },
        )),
        // Envoy's default of 3 concurrent retries per cluster would turn fallbacks into 503s
        // under load.
        circuit_breakers: Some(CircuitBreakers {
            thresholds: vec![circuit_breakers::Thresholds {
                max_retries: Some(UInt32Value { value: 10_000 }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    http1_options(&mut c);
    set_upstream_filters(&mut c, upstream);
    c
}

/// Sets `c`'s upstream HTTP filters: `upstream`, then the terminal `upstream_codec`.
fn set_upstream_filters(c: &mut Cluster, upstream: &[hcm::HttpFilter]) {
    use envoy_types::pb::envoy::extensions::filters::http::upstream_codec::v3::UpstreamCodec;
    let key = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
    let mut opts = c
        .typed_extension_protocol_options
        .get(key)
        .and_then(|a| up::HttpProtocolOptions::decode(a.value.as_slice()).ok())
        .unwrap_or_default();
    opts.http_filters = upstream.to_vec();
    opts.http_filters.push(hcm::HttpFilter {
        name: "envoy.filters.http.upstream_codec".into(),
        config_type: Some(hcm::http_filter::ConfigType::TypedConfig(any(
            "type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec",
            &UpstreamCodec::default(),
        ))),
        ..Default::default()
    });
    c.typed_extension_protocol_options.insert(
        key.into(),
        any(&format!("type.googleapis.com/{key}"), &opts),
    );
}

/// Retries of virtual models with fallbacks: the filter sets `x-envoy-max-retries` and the
/// statuses per request; this policy adds `previous_priorities`, so each retry goes to the next
/// cluster of the aggregate (`update_frequency` = the filter's `attempts_per_target`, 1).
fn fallback_retry_policy() -> rt::RetryPolicy {
    use envoy_types::pb::envoy::extensions::retry::priority::previous_priorities::v3::PreviousPrioritiesConfig;
    rt::RetryPolicy {
        retry_on: "retriable-status-codes,connect-failure,reset".into(),
        num_retries: Some(UInt32Value { value: 1 }),
        retriable_status_codes: vec![429, 500, 502, 503],
        retry_back_off: Some(rt::retry_policy::RetryBackOff {
            base_interval: Some(dur(1)),
            max_interval: Some(dur(10)),
        }),
        retry_priority: Some(rt::retry_policy::RetryPriority {
            name: "envoy.retry_priorities.previous_priorities".into(),
            config_type: Some(rt::retry_policy::retry_priority::ConfigType::TypedConfig(any(
                "type.googleapis.com/envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig",
                &PreviousPrioritiesConfig { update_frequency: 1 },
            ))),
        }),
        ..Default::default()
    }
}
