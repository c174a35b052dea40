//! Istio: an EnvoyFilter inserting the Wasm filters, and per upstream a ServiceEntry, a
//! DestinationRule (TLS origination to hosted APIs) and a VirtualService route.

use serde_json::{json, Value};

use super::fallback::Fallbacks;
use super::{Options, Upstream};
use crate::model::Gateway;

const NETWORKING: &str = "networking.istio.io/v1";

fn meta(name: &str, opts: &Options) -> Value {
    json!({"name": name, "namespace": opts.namespace, "labels": {"app.kubernetes.io/managed-by": "aimesh-xds"}})
}

/// The Istio manifests.
pub fn render(
    gw: &Gateway,
    filters: &[Value],
    ups: &[Upstream],
    fallbacks: Option<&Fallbacks>,
    opts: &Options,
) -> Vec<Value> {
    let mut docs = vec![envoy_filter(filters, opts)];
    if let Some(f) = fallbacks {
        docs.push(fallback_filter(f, ups, opts));
    }
    for u in ups {
        docs.push(service_entry(u, opts));
        if let Some(dr) = destination_rule(u, opts) {
            docs.push(dr);
        }
    }
    docs.push(virtual_service(gw, ups, opts));
    docs
}

/// The filters go in before the router of the gateway's HTTP connection manager, in chain
/// order (each is inserted right before the router, after the previous one).
fn envoy_filter(filters: &[Value], opts: &Options) -> Value {
    let patches: Vec<Value> = filters
        .iter()
        .map(|f| {
            json!({
                "applyTo": "HTTP_FILTER",
                "match": {"context": "GATEWAY", "listener": {"filterChain": {"filter": {
                    "name": "envoy.filters.network.http_connection_manager",
                    "subFilter": {"name": "envoy.filters.http.router"}}}}},
                "patch": {"operation": "INSERT_BEFORE", "value": f},
            })
        })
        .collect();
    json!({
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "EnvoyFilter",
        "metadata": meta("aimesh-filters", opts),
        "spec": {
            "workloadSelector": {"labels": {"aimesh.dev/gateway": opts.gateway}},
            "configPatches": patches,
        },
    })
}

/// Virtual models with fallbacks: aimesh's own member and aggregate clusters, and the fallback
/// route inserted before the VirtualService's routes (they match exact `x-aimesh-cluster`
/// values, so the order only keeps the lookup short).
fn fallback_filter(f: &Fallbacks, ups: &[Upstream], opts: &Options) -> Value {
    let mut patches: Vec<Value> = f
        .clusters
        .iter()
        .map(|c| {
            json!({"applyTo": "CLUSTER", "match": {"context": "GATEWAY"},
                   "patch": {"operation": "ADD", "value": c}})
        })
        .collect();
    let first = ups
        .iter()
        .find(|u| u.mcp_path.is_none())
        .map_or_else(String::new, |u| u.name.clone());
    patches.push(json!({
        "applyTo": "HTTP_ROUTE",
        "match": {"context": "GATEWAY", "routeConfiguration": {"vhost": {"route": {"name": first}}}},
        "patch": {"operation": "INSERT_BEFORE", "value": f.route},
    }));
    json!({
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "EnvoyFilter",
        "metadata": meta("aimesh-fallbacks", opts),
        "spec": {
            "workloadSelector": {"labels": {"aimesh.dev/gateway": opts.gateway}},
            "configPatches": patches,
        },
    })
}

fn service_entry(u: &Upstream, opts: &Options) -> Value {
    let port = u.port();
    let ip_pool = !u.pool.is_empty()
        && u.endpoints
            .iter()
            .all(|e| e.host.parse::<std::net::IpAddr>().is_ok());
    let mut spec = json!({
        "hosts": [u.host()],
        "location": "MESH_EXTERNAL",
        // Plain HTTP from the gateway; the DestinationRule originates TLS, so the filters see
        // and rewrite requests before they are encrypted.
        "ports": [{"number": port, "name": format!("http-{port}"), "protocol": "HTTP"}],
        "resolution": if ip_pool { "STATIC" } else { "DNS" },
        "exportTo": ["."],
    });
    if !u.pool.is_empty() {
        spec["endpoints"] = u
            .pool
            .iter()
            .zip(&u.endpoints)
            .map(|(e, url)| {
                let mut ep =
                    json!({"address": url.host, "ports": {format!("http-{port}"): url.port}});
                if let Some(l) = &e.locality {
                    ep["locality"] = json!(l);
                }
                if let Some(w) = e.weight {
                    ep["weight"] = json!(w);
                }
                ep
            })
            .collect();
    }
    json!({"apiVersion": NETWORKING, "kind": "ServiceEntry",
           "metadata": meta(&format!("aimesh-{}", u.name), opts), "spec": spec})
}

fn destination_rule(u: &Upstream, opts: &Options) -> Option<Value> {
    u.tls().then(|| {
        json!({"apiVersion": NETWORKING, "kind": "DestinationRule",
               "metadata": meta(&format!("aimesh-{}", u.name), opts),
               "spec": {"host": u.host(), "exportTo": ["."],
                        "trafficPolicy": {"tls": {"mode": "SIMPLE", "sni": u.host()}}}})
    })
}

/// Routes as the ADS route table has them: MCP servers by path (rewritten to the server's
/// path and host), everything else by the `x-aimesh-cluster` header the filters set.
fn virtual_service(gw: &Gateway, ups: &[Upstream], opts: &Options) -> Value {
    let mut http = vec![];
    let remove = json!({"request": {"remove": ["x-aimesh-cluster"]}});
    let dest =
        |u: &Upstream| json!([{"destination": {"host": u.host(), "port": {"number": u.port()}}}]);
    for u in ups {
        let Some(path) = &u.mcp_path else { continue };
        let prefix = format!("/{}", u.cluster.replacen('.', "/", 1));
        // `/mcp/<name>` and `/mcp/<name>/...`, never `/mcp/<name>x`.
        let sub = format!("{}/", path.trim_end_matches('/'));
        for (m, to) in [
            (json!({"exact": prefix}), path.clone()),
            (json!({"prefix": format!("{prefix}/")}), sub),
        ] {
            http.push(json!({
                "name": format!("{}-{}", u.name, if m.get("exact").is_some() { "exact" } else { "prefix" }),
                "match": [{"uri": m}],
                "rewrite": {"uri": to, "authority": u.host()},
                "route": dest(u), "headers": remove, "timeout": "0s",
            }));
        }
    }
    for u in ups.iter().filter(|u| u.mcp_path.is_none()) {
        http.push(json!({
            "name": u.name,
            "match": [{"headers": {"x-aimesh-cluster": {"exact": u.cluster}}}],
            "route": dest(u), "headers": remove, "timeout": gw.listener.route_timeout,
        }));
    }
    json!({"apiVersion": NETWORKING, "kind": "VirtualService",
           "metadata": meta("aimesh-routes", opts),
           "spec": {"hosts": ["*"], "gateways": [opts.gateway], "http": http}})
}
