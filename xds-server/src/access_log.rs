//! The listener's audit log: one JSON line per request with the token-accounting filter's
//! facts (`wasm.aimesh.*` filter state). No prompt or completion text is ever logged.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::accesslog::v3 as al;
use envoy_types::pb::google::protobuf::{value::Kind, Any, Value};
use prost::Message;

/// The audit line, field for field as in `envoy/token-accounting.yaml` (a test keeps them equal).
pub const FIELDS: [(&str, &str); 17] = [
    ("time", "%START_TIME%"),
    ("request_id", "%REQ(X-REQUEST-ID)%"),
    ("path", "%REQ(:PATH)%"),
    ("status", "%RESPONSE_CODE%"),
    ("key_id", "%FILTER_STATE(wasm.aimesh.key_id:PLAIN)%"),
    ("team", "%FILTER_STATE(wasm.aimesh.team:PLAIN)%"),
    ("model", "%FILTER_STATE(wasm.aimesh.model:PLAIN)%"),
    (
        "model_served",
        "%FILTER_STATE(wasm.aimesh.model_served:PLAIN)%",
    ),
    ("backend", "%FILTER_STATE(wasm.aimesh.backend:PLAIN)%"),
    (
        "upstream_status",
        "%FILTER_STATE(wasm.aimesh.status:PLAIN)%",
    ),
    (
        "input_tokens",
        "%FILTER_STATE(wasm.aimesh.input_tokens:PLAIN)%",
    ),
    (
        "cached_input_tokens",
        "%FILTER_STATE(wasm.aimesh.cached_input_tokens:PLAIN)%",
    ),
    (
        "output_tokens",
        "%FILTER_STATE(wasm.aimesh.output_tokens:PLAIN)%",
    ),
    (
        "usage_estimated",
        "%FILTER_STATE(wasm.aimesh.usage_estimated:PLAIN)%",
    ),
    (
        "cost_micro_usd",
        "%FILTER_STATE(wasm.aimesh.cost_micro_usd:PLAIN)%",
    ),
    ("ttft_ms", "%FILTER_STATE(wasm.aimesh.ttft_ms:PLAIN)%"),
    (
        "duration_ms",
        "%FILTER_STATE(wasm.aimesh.duration_ms:PLAIN)%",
    ),
];

// Wire-compatible mirrors of `FileAccessLog { path, log_format: SubstitutionFormatString {
// json_format: Struct } }` with a sorted map: envoy-types' `Struct` is a `HashMap`, whose
// random order would change the listener's bytes, hence its content-hash version, on every
// build, and each key rotation would then drain the listener.
#[derive(Clone, PartialEq, Message)]
struct SortedStruct {
    #[prost(btree_map = "string, message", tag = "1")]
    fields: BTreeMap<String, Value>,
}

#[derive(Clone, PartialEq, Message)]
struct JsonFormat {
    #[prost(message, optional, tag = "2")]
    json_format: Option<SortedStruct>,
}

#[derive(Clone, PartialEq, Message)]
struct FileAccessLog {
    #[prost(string, tag = "1")]
    path: String,
    #[prost(message, optional, tag = "5")]
    log_format: Option<JsonFormat>,
}

/// The audit access log to `path`; none when `path` is empty.
pub fn audit(path: &str) -> Vec<al::AccessLog> {
    if path.is_empty() {
        return vec![];
    }
    let fields = FIELDS
        .iter()
        .map(|(k, v)| {
            let value = Value {
                kind: Some(Kind::StringValue((*v).to_string())),
            };
            ((*k).to_string(), value)
        })
        .collect();
    let log = FileAccessLog {
        path: path.to_string(),
        log_format: Some(JsonFormat {
            json_format: Some(SortedStruct { fields }),
        }),
    };
    vec![al::AccessLog {
        name: "envoy.access_loggers.file".into(),
        config_type: Some(al::access_log::ConfigType::TypedConfig(Any {
            type_url: "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"
                .into(),
            value: log.encode_to_vec(),
        })),
        ..Default::default()
    }]
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::extensions::access_loggers::file::v3 as file;
    use prost::Message;

    #[test]
    fn fields_are_those_of_the_shipped_audit_log() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../envoy/token-accounting.yaml"
        );
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap_or_default();
        let fmt = &doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"]["access_log"][0]["typed_config"]["log_format"]["json_format"];
        let shipped: Vec<(String, String)> = fmt
            .as_mapping()
            .into_iter()
            .flatten()
            .map(|(k, v)| {
                let s = |x: &serde_yaml::Value| x.as_str().unwrap_or_default().to_string();
                (s(k), s(v))
            })
            .collect();
        let ours: Vec<(String, String)> = super::FIELDS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(ours, shipped);
    }

    #[test]
    fn encoding_is_envoys_file_access_log_and_stable() {
        let a = super::audit("/tmp/audit.log");
        let b = super::audit("/tmp/audit.log");
        assert_eq!(a, b);
        let Some(super::al::access_log::ConfigType::TypedConfig(any)) = &a[0].config_type else {
            panic!("no typed config")
        };
        let decoded =
            file::FileAccessLog::decode(any.value.as_slice()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(decoded.path, "/tmp/audit.log");
        let Some(file::file_access_log::AccessLogFormat::LogFormat(f)) = decoded.access_log_format
        else {
            panic!("no log_format")
        };
        let Some(envoy_types::pb::envoy::config::core::v3::substitution_format_string::Format::JsonFormat(s)) = f.format else {
            panic!("not json")
        };
        assert_eq!(s.fields.len(), super::FIELDS.len());
        assert!(super::audit("").is_empty());
    }
}
