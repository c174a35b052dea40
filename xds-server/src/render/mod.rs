//! `aimesh-xds render`: the same gateway.yaml as a service mesh's own resources (Istio or
//! Envoy Gateway), for clusters whose Envoys are not fed by `aimesh-xds serve`.
//!
//! The Wasm filters are the ADS path's own ECDS resources ([`crate::resources::build`]), written
//! as JSON into an EnvoyFilter / EnvoyPatchPolicy that inserts them into the gateway's HTTP
//! connection manager: Istio's WasmPlugin and Envoy Gateway's EnvoyExtensionPolicy cannot set
//! `allow_on_headers_stop_iteration`, without which Envoy ignores the body-reading filters'
//! pause in `on_request_headers` (docs/mesh.md). Upstreams become the mesh's services, and
//! routes match the `x-aimesh-cluster` header the filters set, as the ADS route table does.

mod envoy_gateway;
mod fallback;
mod istio;
mod wasm_json;

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::model::{Gateway, SecretRef, SecretSource};
use crate::resources::{self, custom_cluster, provider_cluster, EXTENSION};
use crate::validate::{parse_url, Url};

/// Which mesh to render for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// Istio: EnvoyFilter, ServiceEntry, DestinationRule, VirtualService.
    Istio,
    /// Envoy Gateway: EnvoyPatchPolicy, Backend, HTTPRoute.
    EnvoyGateway,
}

/// `aimesh-xds render` arguments.
#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    /// The mesh.
    #[arg(long, value_enum)]
    pub target: Target,
    /// gateway.yaml.
    pub file: PathBuf,
    /// Namespace of the rendered resources (and of the gateway's proxies).
    #[arg(long, default_value = "aimesh")]
    pub namespace: String,
    /// Where the `.wasm` files are inside the proxy container (a mounted volume).
    #[arg(long, default_value = "/etc/aimesh/wasm")]
    pub wasm_dir: PathBuf,
    /// Istio: the Gateway resource the VirtualService binds to; Envoy Gateway: the Gateway the
    /// HTTPRoute and EnvoyPatchPolicy attach to (its namespace is `--namespace`).
    #[arg(long, default_value = "aimesh-gateway")]
    pub gateway: String,
}

/// What the manifests depend on besides gateway.yaml.
#[derive(Debug, Clone)]
pub struct Options {
    /// Namespace of everything rendered.
    pub namespace: String,
    /// `.wasm` directory inside the proxy.
    pub wasm_dir: PathBuf,
    /// Gateway name (see [`RenderArgs::gateway`]).
    pub gateway: String,
}

/// Secret whose entries the proxy gets as environment variables (provider and MCP keys).
pub const KEYS_SECRET: &str = "aimesh-provider-keys";

/// Runs `render`: the manifests as one YAML stream on stdout.
pub fn run(args: RenderArgs) -> Result<(), String> {
    let gw = crate::validate::load_file(&args.file).map_err(|es| {
        es.iter()
            .map(|e| format!("{}: {e}", args.file.display()))
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    let opts = Options {
        namespace: args.namespace,
        wasm_dir: args.wasm_dir,
        gateway: args.gateway,
    };
    print!("{}", to_yaml(&render(&gw, args.target, &opts)?)?);
    Ok(())
}

/// The manifests of a validated gateway, in apply order.
pub fn render(gw: &Gateway, target: Target, opts: &Options) -> Result<Vec<Value>, String> {
    refuse_unrenderable(gw)?;
    let gw = &in_proxy_env(gw);
    let all = resources::build(gw, &opts.wasm_dir, false)?;
    let mut filters = http_filters(gw, &all)?;
    let keys = keys_to_env(&mut filters)?;
    let ups = upstreams(gw)?;
    let fallbacks = fallback::build(gw, &all, &ups)?;
    let mut docs = vec![keys_secret(gw, &opts.namespace)];
    docs.extend(keys.map(|k| virtual_keys_secret(&k, &opts.namespace)));
    docs.extend(match target {
        Target::Istio => istio::render(gw, &filters, &ups, fallbacks.as_ref(), opts),
        Target::EnvoyGateway => envoy_gateway::render(&filters, &ups, fallbacks.as_ref(), opts),
    });
    Ok(docs)
}

/// A YAML stream (`---` between documents).
pub fn to_yaml(docs: &[Value]) -> Result<String, String> {
    let mut out = String::new();
    for d in docs {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(d).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

/// What a mesh cannot carry yet, refused by field rather than rendered wrong.
fn refuse_unrenderable(gw: &Gateway) -> Result<(), String> {
    if gw.listener.filter_build == crate::model::FilterBuild::Native {
        // Istio's and Envoy Gateway's extension paths load Wasm (and the mesh's Envoy is not the
        // release the module is pinned to): render `separate` or `chain` for a mesh.
        return Err(
            "listener.filter_build: `native` is for a standalone Envoy of the pinned release; \
             a mesh loads the Wasm builds (use `chain` or `separate`)"
                .into(),
        );
    }
    if gw.pii.hash_key.is_some() {
        return Err(
            "pii.hash_key: a mesh would carry it in plain text in a custom resource; \
                    not rendered (use the standalone gateway)"
                .into(),
        );
    }
    Ok(())
}

/// `${file:/path}` provider and MCP keys become `${env:AIMESH_FILE_...}`: in a mesh no control
/// plane reads files, so every key reaches header-auth through the proxy's environment, filled
/// from [`KEYS_SECRET`].
fn in_proxy_env(gw: &Gateway) -> Gateway {
    let mut gw = gw.clone();
    let keys = gw.providers.iter_mut().map(|p| &mut p.api_key);
    let keys = keys.chain(gw.mcp_servers.iter_mut().map(|m| &mut m.api_key));
    for r in keys.flatten() {
        if let Some(SecretSource::File(path)) = r.source() {
            *r = SecretRef(format!("${{env:{}}}", file_env_name(path)));
        }
    }
    gw
}

/// `/run/secrets/azure-openai-key` -> `AIMESH_FILE_AZURE_OPENAI_KEY`.
pub fn file_env_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let name: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("AIMESH_FILE_{name}")
}

/// The Secret the proxy's environment is filled from: one entry per `${env:NAME}` key, empty
/// here (render never sees key values); the operator sets them (docs/mesh.md).
fn keys_secret(gw: &Gateway, namespace: &str) -> Value {
    let names = crate::filters::header_auth_env(gw);
    let data: serde_json::Map<String, Value> = names.into_iter().map(|n| (n, json!(""))).collect();
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": KEYS_SECRET, "namespace": namespace,
                     "annotations": {"aimesh.dev/fill": "kubectl create secret generic --dry-run=client; values never rendered"}},
        "type": "Opaque",
        "stringData": data,
    })
}

/// The aimesh HTTP filters, in chain order, as HCM `http_filters` entries: the ADS path's ECDS
/// resources.
fn http_filters(gw: &Gateway, all: &resources::Resources) -> Result<Vec<Value>, String> {
    let ext = all.get(EXTENSION).ok_or("no filter configs")?;
    crate::filters::loaded(gw)
        .iter()
        .map(|f| {
            let name = crate::filters::extension_name(f);
            let any = ext.get(&name).ok_or_else(|| format!("{name}: not built"))?;
            let cfg = <envoy_types::pb::envoy::config::core::v3::TypedExtensionConfig as prost::Message>::decode(any.value.as_slice())
                .map_err(|e| e.to_string())?;
            wasm_json::http_filter(&cfg)
        })
        .collect()
}

/// Secret holding the virtual keys (their hashes, ids, teams, models) as [`VIRTUAL_KEYS_ENV`].
pub const VIRTUAL_KEYS_SECRET: &str = "aimesh-virtual-keys";

/// The proxy environment variable auth reads the virtual keys from (its `keys_env`).
pub const VIRTUAL_KEYS_ENV: &str = "AIMESH_VIRTUAL_KEYS";

/// Moves auth's `keys` (in the auth filter, or the chain's `auth` section) out of the filter
/// config into the proxy's environment: the config says `keys_env`, the VM may read that
/// variable, and the keys' JSON is returned for [`VIRTUAL_KEYS_SECRET`]. A mesh's EnvoyFilter /
/// EnvoyPatchPolicy is readable by whoever may read networking resources; a Secret is not.
fn keys_to_env(filters: &mut [Value]) -> Result<Option<String>, String> {
    let mut moved = None;
    for f in filters.iter_mut() {
        let name = f["name"].as_str().unwrap_or_default().to_string();
        let section = if name == crate::filters::extension_name("auth") {
            None
        } else if name == crate::filters::extension_name(crate::filters::CHAIN) {
            Some("auth")
        } else {
            continue;
        };
        let config = &mut f["typed_config"]["config"];
        let value = &mut config["configuration"]["value"];
        let mut json: Value = serde_json::from_str(value.as_str().ok_or("configuration")?)
            .map_err(|e| format!("{name}: {e}"))?;
        let auth = match section {
            Some(s) => match json.get_mut(s) {
                Some(a) => a,
                None => continue,
            },
            None => &mut json,
        };
        let Some(obj) = auth.as_object_mut() else {
            continue;
        };
        let keys = obj.remove("keys").unwrap_or_else(|| json!([]));
        obj.insert("keys_env".into(), json!(VIRTUAL_KEYS_ENV));
        moved = Some(serde_json::to_string(&keys).map_err(|e| e.to_string())?);
        *value = json!(serde_json::to_string(&json).map_err(|e| e.to_string())?);
        let env = &mut config["vm_config"]["environment_variables"]["host_env_keys"];
        match env.as_array_mut() {
            Some(list) => list.push(json!(VIRTUAL_KEYS_ENV)),
            None => *env = json!([VIRTUAL_KEYS_ENV]),
        }
    }
    Ok(moved)
}

/// The Secret the gateway's proxy gets [`VIRTUAL_KEYS_ENV`] from (`envFrom`, docs/mesh.md).
fn virtual_keys_secret(keys: &str, namespace: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": VIRTUAL_KEYS_SECRET, "namespace": namespace},
        "type": "Opaque",
        "stringData": {VIRTUAL_KEYS_ENV: keys},
    })
}

/// One upstream the filters route to by its ADS cluster name.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// ADS cluster name, the value of `x-aimesh-cluster` (`provider.openai`).
    pub cluster: String,
    /// Kubernetes-safe name (`provider-openai`).
    pub name: String,
    /// Servers (one for a hosted API).
    pub endpoints: Vec<Url>,
    /// MCP servers: the route is `/mcp/<name>`, rewritten to the URL's path.
    pub mcp_path: Option<String>,
    /// Self-hosted servers with their locality and weight (empty for a hosted API).
    pub pool: Vec<crate::model::Endpoint>,
}

impl Upstream {
    /// Host the mesh knows the upstream by: the API's host, or `<name>.aimesh.internal` for a
    /// pool of self-hosted servers.
    pub fn host(&self) -> String {
        if self.pool.is_empty() {
            self.endpoints
                .first()
                .map(|u| u.host.clone())
                .unwrap_or_default()
        } else {
            format!("{}.aimesh.internal", self.name)
        }
    }

    /// Port of the upstream (the first server's).
    pub fn port(&self) -> u16 {
        self.endpoints.first().map_or(80, |u| u.port)
    }

    /// TLS to the upstream (hosted `https` APIs).
    pub fn tls(&self) -> bool {
        self.endpoints.first().is_some_and(|u| u.tls)
    }
}

fn k8s_name(cluster: &str) -> String {
    cluster
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// Every provider, custom endpoint and MCP server.
fn upstreams(gw: &Gateway) -> Result<Vec<Upstream>, String> {
    let mut out = vec![];
    let mut push = |cluster: String, endpoints, mcp_path, pool| {
        let name = k8s_name(&cluster);
        out.push(Upstream {
            cluster,
            name,
            endpoints,
            mcp_path,
            pool,
        });
    };
    for p in &gw.providers {
        match p.base_url.as_deref().or(p.kind.default_base_url()) {
            Some(base) if !p.kind.self_hosted() => push(
                provider_cluster(&p.name),
                vec![parse_url(base)?],
                None,
                vec![],
            ),
            _ => {
                let urls = p.endpoints.iter().map(|e| parse_url(&e.url));
                let urls = urls.collect::<Result<_, _>>()?;
                push(provider_cluster(&p.name), urls, None, p.endpoints.clone())
            }
        }
    }
    for e in &gw.custom_endpoints {
        push(custom_cluster(e), vec![parse_url(&e.url)?], None, vec![]);
    }
    for m in &gw.mcp_servers {
        let u = parse_url(&m.url)?;
        let path = if u.path.is_empty() {
            "/".to_string()
        } else {
            u.path.clone()
        };
        push(format!("mcp.{}", m.name), vec![u], Some(path), vec![]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
