//! The Wasm HTTP filter config the ADS path builds (`resources::build`'s ECDS resources),
//! written as the proto3 JSON that EnvoyFilter and EnvoyPatchPolicy patches carry.
//!
//! Only the fields aimesh sets are written; a field set that is not known here is an error, so
//! a change in `resources.rs` cannot silently go missing from the mesh manifests.

use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::extensions::filters::http::wasm::v3::Wasm;
use envoy_types::pb::envoy::extensions::wasm::v3 as wasm;
use envoy_types::pb::google::protobuf::{Any, StringValue};
use prost::Message;
use serde_json::{json, Value};

use crate::resources::{GENERIC_SECRET, WASM};

const STRING_VALUE: &str = "type.googleapis.com/google.protobuf.StringValue";

/// `{"name": ..., "typed_config": {"@type": Wasm, "config": {...}}}`: an HCM HTTP filter entry.
pub fn http_filter(ext: &core::TypedExtensionConfig) -> Result<Value, String> {
    let any = ext
        .typed_config
        .as_ref()
        .ok_or_else(|| format!("{}: no typed_config", ext.name))?;
    Ok(json!({
        "name": ext.name,
        "typed_config": wasm_filter(any).map_err(|e| format!("{}: {e}", ext.name))?,
    }))
}

/// A Wasm filter `Any` as JSON.
pub fn wasm_filter(any: &Any) -> Result<Value, String> {
    if any.type_url != WASM {
        return Err(format!("not a Wasm filter: {}", any.type_url));
    }
    let w = Wasm::decode(any.value.as_slice()).map_err(|e| e.to_string())?;
    let p = w.config.ok_or("Wasm without config")?;
    Ok(json!({ "@type": WASM, "config": plugin(p)? }))
}

fn plugin(mut p: wasm::PluginConfig) -> Result<Value, String> {
    let mut out = json!({
        "name": std::mem::take(&mut p.name),
        "root_id": std::mem::take(&mut p.root_id),
        "failure_policy": wasm::FailurePolicy::try_from(p.failure_policy)
            .map_err(|e| e.to_string())?
            .as_str_name(),
    });
    p.failure_policy = 0;
    if let Some(b) = p.allow_on_headers_stop_iteration.take() {
        out["allow_on_headers_stop_iteration"] = json!(b.value);
    }
    if let Some(c) = p.configuration.take() {
        out["configuration"] = configuration(&c)?;
    }
    if let Some(wasm::plugin_config::Vm::VmConfig(vm)) = p.vm.take() {
        out["vm_config"] = vm_config(vm)?;
    }
    if p != wasm::PluginConfig::default() {
        return Err(format!("PluginConfig fields not rendered: {p:?}"));
    }
    Ok(out)
}

fn configuration(c: &Any) -> Result<Value, String> {
    match c.type_url.as_str() {
        STRING_VALUE => {
            let s = StringValue::decode(c.value.as_slice()).map_err(|e| e.to_string())?;
            Ok(json!({ "@type": STRING_VALUE, "value": s.value }))
        }
        GENERIC_SECRET => Err(
            "a configuration holding secret values (`${file:...}`) is not \
                               rendered into a manifest"
                .into(),
        ),
        other => Err(format!("configuration type {other} not rendered")),
    }
}

fn vm_config(mut vm: wasm::VmConfig) -> Result<Value, String> {
    let mut out = json!({
        "vm_id": std::mem::take(&mut vm.vm_id),
        "runtime": std::mem::take(&mut vm.runtime),
    });
    match vm.code.take().and_then(|c| c.specifier) {
        Some(core::async_data_source::Specifier::Local(core::DataSource {
            specifier: Some(core::data_source::Specifier::Filename(f)),
            ..
        })) => out["code"] = json!({ "local": { "filename": f } }),
        other => return Err(format!("Wasm code source not rendered: {other:?}")),
    }
    if let Some(env) = vm.environment_variables.take() {
        if !env.key_values.is_empty() {
            return Err("environment key_values not rendered".into());
        }
        out["environment_variables"] = json!({ "host_env_keys": env.host_env_keys });
    }
    if vm != wasm::VmConfig::default() {
        return Err(format!("VmConfig fields not rendered: {vm:?}"));
    }
    Ok(out)
}
