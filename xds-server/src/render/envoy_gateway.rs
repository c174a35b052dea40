//! Envoy Gateway: an EnvoyPatchPolicy adding the Wasm filters to the Gateway's listener, a
//! Backend per upstream and one HTTPRoute.

use serde_json::{json, Value};

use super::fallback::Fallbacks;
use super::{Options, Upstream};

const EG: &str = "gateway.envoyproxy.io/v1alpha1";

fn meta(name: &str, opts: &Options) -> Value {
    json!({"name": name, "namespace": opts.namespace, "labels": {"app.kubernetes.io/managed-by": "aimesh-xds"}})
}

/// Name of the Gateway's HTTP listener the filters go into.
pub const LISTENER: &str = "http";

/// The Envoy Gateway manifests.
pub fn render(
    filters: &[Value],
    ups: &[Upstream],
    fallbacks: Option<&Fallbacks>,
    opts: &Options,
) -> Vec<Value> {
    let mut docs = vec![patch_policy(filters, fallbacks, opts)];
    docs.extend(ups.iter().map(|u| backend(u, opts)));
    docs.push(route(ups, opts));
    docs
}

/// Envoy Gateway names a listener `<namespace>/<gateway>/<listener>`; a plain HTTP listener
/// keeps its HCM in the default filter chain. Filter `i` is added at index `i`, ahead of Envoy
/// Gateway's own filters and the router, in chain order.
///
/// Virtual models with fallbacks add aimesh's own clusters (a new resource: path `""`) and the
/// fallback route first in the listener's route configuration (same name as the listener).
fn patch_policy(filters: &[Value], fallbacks: Option<&Fallbacks>, opts: &Options) -> Value {
    let listener = format!("{}/{}/{LISTENER}", opts.namespace, opts.gateway);
    let mut patches: Vec<Value> = filters
        .iter()
        .enumerate()
        .map(|(i, f)| {
            json!({
                "type": "type.googleapis.com/envoy.config.listener.v3.Listener",
                "name": listener,
                "operation": {"op": "add",
                              "path": format!("/default_filter_chain/filters/0/typed_config/http_filters/{i}"),
                              "value": f},
            })
        })
        .collect();
    if let Some(f) = fallbacks {
        for c in &f.clusters {
            patches.push(json!({
                "type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
                "name": c["name"],
                "operation": {"op": "add", "path": "", "value": c},
            }));
        }
        patches.push(json!({
            "type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
            "name": listener,
            "operation": {"op": "add", "path": "/virtual_hosts/0/routes/0", "value": f.route},
        }));
    }
    json!({
        "apiVersion": EG, "kind": "EnvoyPatchPolicy", "metadata": meta("aimesh-filters", opts),
        "spec": {"targetRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": opts.gateway},
                 "type": "JSONPatch", "jsonPatches": patches},
    })
}

fn backend(u: &Upstream, opts: &Options) -> Value {
    let endpoints: Vec<Value> = u
        .endpoints
        .iter()
        .map(|e| {
            if e.host.parse::<std::net::IpAddr>().is_ok() {
                json!({"ip": {"address": e.host, "port": e.port}})
            } else {
                json!({"fqdn": {"hostname": e.host, "port": e.port}})
            }
        })
        .collect();
    let mut spec = json!({"endpoints": endpoints});
    if u.tls() {
        spec["tls"] = json!({"wellKnownCACertificates": "System", "sni": u.host()});
    }
    json!({"apiVersion": EG, "kind": "Backend", "metadata": meta(&format!("aimesh-{}", u.name), opts), "spec": spec})
}

/// One rule per upstream: MCP servers by path (rewritten to the server's path and host), the
/// rest by the `x-aimesh-cluster` header the filters set, which is then removed.
fn route(ups: &[Upstream], opts: &Options) -> Value {
    let rules: Vec<Value> = ups
        .iter()
        .map(|u| {
            let backend = json!([{"group": "gateway.envoyproxy.io", "kind": "Backend",
                                  "name": format!("aimesh-{}", u.name)}]);
            let remove = json!({"type": "RequestHeaderModifier", "requestHeaderModifier": {"remove": ["x-aimesh-cluster"]}});
            match &u.mcp_path {
                Some(path) => json!({
                    "matches": [{"path": {"type": "PathPrefix", "value": format!("/{}", u.cluster.replacen('.', "/", 1))}}],
                    "filters": [remove, {"type": "URLRewrite", "urlRewrite": {
                        "hostname": u.host(),
                        "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": path}}}],
                    "backendRefs": backend,
                }),
                None => json!({
                    "matches": [{"headers": [{"type": "Exact", "name": "x-aimesh-cluster", "value": u.cluster}]}],
                    "filters": [remove],
                    "backendRefs": backend,
                }),
            }
        })
        .collect();
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": meta("aimesh-routes", opts),
        "spec": {"parentRefs": [{"name": opts.gateway, "sectionName": LISTENER}], "rules": rules},
    })
}
