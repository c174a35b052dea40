//! The native build's filter: `envoy.filters.http.dynamic_modules` loading `libaimesh.so`
//! (module `aimesh`, from Envoy's `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`) with the chain's JSON.

use envoy_types::pb::envoy::config::core::v3::TypedExtensionConfig;
use envoy_types::pb::google::protobuf::Any;
use prost::Message;

use crate::filters;
use crate::resources::plugin_configuration;

/// Type URL of Envoy's dynamic-module HTTP filter.
pub const DYNAMIC_MODULE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter";

/// Module name: Envoy loads `lib<name>.so`.
pub const MODULE: &str = "aimesh";

/// Stats namespace of the module: the Wasm builds' prefix, so both builds' stats have the same
/// names (`wasmcustom.aimesh.auth.allowed`, see filters/native/src/metrics.rs).
pub const METRICS_NAMESPACE: &str = "wasmcustom";

// Wire mirrors of `DynamicModuleConfig` and `DynamicModuleFilter`: envoy-types predates
// `metrics_namespace` (field 5 in Envoy 1.40's dynamic_modules.proto).
#[derive(Clone, PartialEq, Message)]
struct DynamicModuleConfig {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "5")]
    metrics_namespace: String,
}

#[derive(Clone, PartialEq, Message)]
struct DynamicModuleFilter {
    #[prost(message, optional, tag = "1")]
    dynamic_module_config: Option<DynamicModuleConfig>,
    #[prost(string, tag = "2")]
    filter_name: String,
    #[prost(message, optional, tag = "3")]
    filter_config: Option<Any>,
}

/// The ECDS resource of the native filter. `filter` is the chain (the only pipeline the
/// module runs); `sensitive`: the JSON holds secret values and travels as a `GenericSecret`,
/// which `/config_dump` redacts and the module unwraps.
pub fn extension(filter: &str, json: &str, sensitive: bool) -> TypedExtensionConfig {
    let f = DynamicModuleFilter {
        dynamic_module_config: Some(DynamicModuleConfig {
            name: MODULE.into(),
            metrics_namespace: METRICS_NAMESPACE.into(),
        }),
        filter_name: filter.to_string(),
        filter_config: Some(plugin_configuration(json, sensitive)),
    };
    TypedExtensionConfig {
        name: filters::extension_name(filter),
        typed_config: Some(Any {
            type_url: DYNAMIC_MODULE.into(),
            value: f.encode_to_vec(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FilterBuild, Gateway};

    #[test]
    fn the_extension_loads_libaimesh_with_the_wasm_stat_namespace_and_the_chain_json() {
        let ext = extension(filters::CHAIN, r#"{"auth":{}}"#, false);
        assert_eq!(ext.name, "aimesh.chain");
        let any = ext.typed_config.unwrap_or_default();
        assert_eq!(any.type_url, DYNAMIC_MODULE);
        let f = DynamicModuleFilter::decode(any.value.as_slice()).unwrap_or_default();
        let m = f.dynamic_module_config.unwrap_or_default();
        assert_eq!(
            (m.name.as_str(), m.metrics_namespace.as_str()),
            ("aimesh", "wasmcustom")
        );
        assert_eq!(f.filter_name, "chain");
        let cfg = f.filter_config.unwrap_or_default();
        assert!(cfg.type_url.ends_with("StringValue"));
        // A config with secrets travels as a GenericSecret, which /config_dump redacts.
        let secret = extension(filters::CHAIN, "{}", true);
        let f =
            DynamicModuleFilter::decode(secret.typed_config.unwrap_or_default().value.as_slice())
                .unwrap_or_default();
        assert!(f
            .filter_config
            .unwrap_or_default()
            .type_url
            .ends_with("GenericSecret"));
    }

    #[test]
    fn native_loads_the_chain_and_a_mesh_render_refuses_it() {
        let mut gw = Gateway::default();
        gw.listener.filter_build = FilterBuild::Native;
        assert_eq!(filters::loaded(&gw), vec![filters::CHAIN]);
        let opts = crate::render::Options {
            namespace: "aimesh".into(),
            wasm_dir: "/wasm".into(),
            gateway: "gw".into(),
        };
        let err = crate::render::render(&gw, crate::render::Target::Istio, &opts)
            .err()
            .unwrap_or_default();
        assert!(err.contains("listener.filter_build"), "{err}");
    }
}
