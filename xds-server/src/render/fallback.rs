//! Virtual models with `fallbacks` in a mesh: the ADS path's aggregate clusters and fallback
//! route, written as Envoy JSON for an EnvoyFilter / EnvoyPatchPolicy to add.
//!
//! A fallback attempt must run virtual-model's and header-auth's upstream instances (the body's
//! model and the credentials are redone per attempt), which only an aggregate cluster's
//! `http_filters` can do, and its endpoints must carry the `aimesh.cluster` metadata the
//! upstream instance reads to learn which target an attempt reached. Neither Istio's nor Envoy
//! Gateway's own clusters can carry either, so the manifests add aimesh's own clusters, with
//! the ADS names (`provider.<name>` under `fallback.<vm>.<i>`), used only by fallback traffic.
//! The aggregate clusters are decoded from [`crate::resources::build`]'s CDS output, so their
//! member order and upstream filters are exactly the standalone gateway's.

use envoy_types::pb::envoy::config::cluster::v3::{cluster, Cluster};
use envoy_types::pb::envoy::extensions::clusters::aggregate::v3::ClusterConfig;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use serde_json::{json, Value};

use super::{wasm_json, Upstream};
use crate::model::Gateway;
use crate::resources::{self, CLUSTER};
use crate::validate::parse_duration_ms;

const PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/// What a mesh adds for fallbacks: clusters (members first, then aggregates) and one route.
pub struct Fallbacks {
    /// Complete Envoy `Cluster` JSON values.
    pub clusters: Vec<Value>,
    /// The route sending `x-aimesh-cluster: fallback.*` to that aggregate, with the retry
    /// policy that moves each retry to the aggregate's next cluster.
    pub route: Value,
}

/// `None` when no virtual model has fallbacks.
pub fn build(
    gw: &Gateway,
    all: &resources::Resources,
    ups: &[Upstream],
) -> Result<Option<Fallbacks>, String> {
    if gw.virtual_models.iter().all(|vm| vm.fallbacks.is_empty()) {
        return Ok(None);
    }
    let cds = all.get(CLUSTER).ok_or("no clusters")?;
    let mut members: Vec<String> = vec![];
    let mut aggregates = vec![];
    for vm in gw
        .virtual_models
        .iter()
        .filter(|vm| !vm.fallbacks.is_empty())
    {
        for i in 0..crate::filters::entries(vm).count() {
            let name = crate::filters::fallback_cluster(vm, i);
            let any = cds.get(&name).ok_or_else(|| format!("{name}: not built"))?;
            let c = Cluster::decode(any.value.as_slice()).map_err(|e| e.to_string())?;
            let (json, order) = aggregate(&c)?;
            for m in order {
                if !members.contains(&m) {
                    members.push(m);
                }
            }
            aggregates.push(json);
        }
    }
    let mut clusters = vec![];
    for m in &members {
        let u = ups
            .iter()
            .find(|u| &u.cluster == m)
            .ok_or_else(|| format!("{m}: no such upstream"))?;
        clusters.push(member(u));
    }
    clusters.extend(aggregates);
    Ok(Some(Fallbacks {
        clusters,
        route: route(gw)?,
    }))
}

fn typed(any: &Any) -> Result<Value, String> {
    match any.type_url.as_str() {
        "type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec" => {
            Ok(json!({"@type": any.type_url}))
        }
        _ => wasm_json::wasm_filter(any),
    }
}

fn http_filter(f: &hcm::HttpFilter) -> Result<Value, String> {
    match &f.config_type {
        Some(hcm::http_filter::ConfigType::TypedConfig(any)) => {
            Ok(json!({"name": f.name, "typed_config": typed(any)?}))
        }
        _ => Err(format!("{}: upstream filter without typed_config", f.name)),
    }
}

/// The ADS aggregate cluster as JSON, and its member clusters in order.
fn aggregate(c: &Cluster) -> Result<(Value, Vec<String>), String> {
    let Some(cluster::ClusterDiscoveryType::ClusterType(t)) = &c.cluster_discovery_type else {
        return Err(format!("{}: not an aggregate cluster", c.name));
    };
    let cfg = t.typed_config.as_ref().ok_or("aggregate without config")?;
    let members = ClusterConfig::decode(cfg.value.as_slice())
        .map_err(|e| e.to_string())?
        .clusters;
    let opts = c
        .typed_extension_protocol_options
        .get(PROTOCOL_OPTIONS)
        .ok_or("aggregate without protocol options")?;
    let opts = HttpProtocolOptions::decode(opts.value.as_slice()).map_err(|e| e.to_string())?;
    let filters: Vec<Value> = opts
        .http_filters
        .iter()
        .map(http_filter)
        .collect::<Result<_, _>>()?;
    let max_retries = c
        .circuit_breakers
        .as_ref()
        .and_then(|b| b.thresholds.first())
        .and_then(|t| t.max_retries.as_ref())
        .map_or(3, |v| v.value);
    let json = json!({
        "name": c.name,
        "connect_timeout": "5s",
        "lb_policy": "CLUSTER_PROVIDED",
        "cluster_type": {"name": t.name, "typed_config": {
            "@type": cfg.type_url, "clusters": members}},
        "circuit_breakers": {"thresholds": [{"max_retries": max_retries}]},
        "typed_extension_protocol_options": {PROTOCOL_OPTIONS: {
            "@type": format!("type.googleapis.com/{PROTOCOL_OPTIONS}"),
            "explicit_http_config": {"http_protocol_options": {}},
            "http_filters": filters}},
    });
    Ok((json, members))
}

/// A member cluster as the ADS path builds it for the upstream: HTTP/1.1, TLS with SNI and the
/// system CAs for `https`, each endpoint tagged with its cluster name. Self-hosted pools keep
/// their priorities and weights; their active health checks are left to the mesh (outlier
/// detection, docs/mesh.md).
fn member(u: &Upstream) -> Value {
    let tagged = |host: &str, port: u16, weight: Option<u32>| {
        let mut e = json!({
            "endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}},
            "metadata": {"filter_metadata": {"aimesh": {"cluster": u.cluster}}},
        });
        if let Some(w) = weight {
            e["load_balancing_weight"] = json!(w);
        }
        e
    };
    let all_ips = u
        .endpoints
        .iter()
        .all(|e| e.host.parse::<std::net::IpAddr>().is_ok());
    let localities: Vec<Value> = if u.pool.is_empty() {
        u.endpoints
            .iter()
            .map(|e| json!({"lb_endpoints": [tagged(&e.host, e.port, None)]}))
            .collect()
    } else {
        u.pool
            .iter()
            .zip(&u.endpoints)
            .map(|(p, e)| {
                let mut l = json!({"priority": p.priority,
                                   "lb_endpoints": [tagged(&e.host, e.port, p.weight)]});
                if let Some(name) = &p.locality {
                    l["locality"] = json!({"zone": name});
                }
                l
            })
            .collect()
    };
    let kind = match (all_ips, u.pool.is_empty()) {
        (true, _) => "STATIC",
        (false, true) => "LOGICAL_DNS",
        (false, false) => "STRICT_DNS",
    };
    let mut c = json!({
        "name": u.cluster,
        "type": kind,
        "connect_timeout": "5s",
        "dns_lookup_family": "V4_PREFERRED",
        "load_assignment": {"cluster_name": u.cluster, "endpoints": localities},
        "typed_extension_protocol_options": {PROTOCOL_OPTIONS: {
            "@type": format!("type.googleapis.com/{PROTOCOL_OPTIONS}"),
            "explicit_http_config": {"http_protocol_options": {}}}},
    });
    if !u.pool.is_empty() {
        c["lb_policy"] = json!("LEAST_REQUEST");
    }
    if u.tls() {
        let host = u.host();
        c["transport_socket"] = json!({"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": host,
            "common_tls_context": {"validation_context": {
                "trusted_ca": {"filename": "/etc/ssl/certs/ca-certificates.crt"},
                "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": host}}]}}}});
    }
    c
}

/// The ADS `fallback` route: `x-aimesh-cluster` starting with `fallback.` to that cluster, the
/// router retrying on the statuses the filter sets per request and `previous_priorities`
/// moving each retry to the aggregate's next cluster.
fn route(gw: &Gateway) -> Result<Value, String> {
    let ms = parse_duration_ms(&gw.listener.route_timeout)?;
    Ok(json!({
        "name": "aimesh-fallback",
        "match": {"prefix": "/", "headers": [{"name": "x-aimesh-cluster",
            "string_match": {"prefix": crate::filters::FALLBACK_PREFIX}}]},
        "route": {
            "cluster_header": "x-aimesh-cluster",
            "timeout": format!("{}.{:03}s", ms / 1000, ms % 1000),
            "retry_policy": {
                "retry_on": "retriable-status-codes,connect-failure,reset",
                "num_retries": 1,
                "retriable_status_codes": [429, 500, 502, 503],
                "retry_back_off": {"base_interval": "0.001s", "max_interval": "0.010s"},
                "retry_priority": {"name": "envoy.retry_priorities.previous_priorities",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig",
                        "update_frequency": 1}},
            },
        },
        "request_headers_to_remove": ["x-aimesh-cluster"],
    }))
}
