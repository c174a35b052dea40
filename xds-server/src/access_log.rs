//! The listener's audit log: one JSON line per request with the token-accounting filter's
//! typed record (`wasm.aimesh.audit` filter state). No prompt or completion text is ever logged.

use std::collections::BTreeMap;

use aimesh_core::accounting::audit::FIELDS;
use envoy_types::pb::envoy::config::accesslog::v3 as al;
use envoy_types::pb::google::protobuf::{value::Kind, Any, Value};
use prost::Message;

/// Fields Envoy itself knows best: when, which request, what the client got and how long it took.
const ENVOY_FIELDS: [(&str, &str); 4] = [
    ("time", "%START_TIME%"),
    ("request_id", "%REQ(X-REQUEST-ID)%"),
    ("status", "%RESPONSE_CODE%"),
    ("duration_ms", "%DURATION%"),
];

/// The audit line, field for field as in `envoy/token-accounting.yaml` and
/// `docs/audit-log.schema.json` (tests keep the three equal).
pub fn fields() -> Vec<(String, String)> {
    let envoy = ENVOY_FIELDS
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()));
    // The token-accounting filter's typed record (`wasm.aimesh.audit`, a protobuf `Struct`):
    // read with `TYPED_CEL`, numbers stay numbers and an absent fact (or no record) is `null`.
    let record = FIELDS.iter().map(|f| {
        let v = format!("%TYPED_CEL(filter_state['wasm.aimesh.audit'].{f})%");
        ((*f).to_string(), v)
    });
    let mcp = MCP_FIELDS
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()));
    envoy.chain(record).chain(mcp).collect()
}

/// The audit line of a build. The native build cannot declare a typed filter-state property;
/// it writes each typed record's fields, typed, to the dynamic-metadata namespace of the
/// record's name (`aimesh.audit`), which the log reads the same way: numbers stay numbers and
/// an absent fact is `null`.
pub fn fields_of(native: bool) -> Vec<(String, String)> {
    let all = fields();
    if !native {
        return all;
    }
    all.into_iter()
        .map(|(k, v)| (k, native_value(&v)))
        .collect()
}

/// `%TYPED_CEL(filter_state['wasm.<record>'].<field>)%` as `%DYNAMIC_METADATA(<record>:<field>)%`;
/// anything else unchanged.
pub fn native_value(v: &str) -> String {
    let Some(rest) = v.strip_prefix("%TYPED_CEL(filter_state['wasm.") else {
        return v.to_string();
    };
    let Some((record, rest)) = rest.split_once("'].") else {
        return v.to_string();
    };
    match rest.strip_suffix(")%") {
        Some(field) if !field.contains(['(', ')', '%', '[']) => {
            format!("%DYNAMIC_METADATA({record}:{field})%")
        }
        _ => v.to_string(),
    }
}

/// The mcp stage's record (`wasm.aimesh.mcp`, a `Struct` like the audit record) and the bytes
/// each way: `null` on requests that are not JSON-RPC over `/mcp/`.
const MCP_FIELDS: [(&str, &str); 6] = [
    (
        "mcp_method",
        "%TYPED_CEL(filter_state['wasm.aimesh.mcp'].method)%",
    ),
    (
        "mcp_tool",
        "%TYPED_CEL(filter_state['wasm.aimesh.mcp'].tool)%",
    ),
    (
        "mcp_error_code",
        "%TYPED_CEL(filter_state['wasm.aimesh.mcp'].error_code)%",
    ),
    (
        "mcp_error",
        "%TYPED_CEL(filter_state['wasm.aimesh.mcp'].error)%",
    ),
    ("bytes_received", "%BYTES_RECEIVED%"),
    ("bytes_sent", "%BYTES_SENT%"),
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
pub fn audit(path: &str, native: bool) -> Vec<al::AccessLog> {
    if path.is_empty() {
        return vec![];
    }
    let fields = fields_of(native)
        .into_iter()
        .map(|(k, v)| {
            let value = Value {
                kind: Some(Kind::StringValue(v)),
            };
            (k, value)
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
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap_or_default();
        let fmt = &doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"]["access_log"][0]["typed_config"]["log_format"]["json_format"];
        let shipped: Vec<(String, String)> = fmt
            .as_mapping()
            .into_iter()
            .flatten()
            .map(|(k, v)| {
                let s = |x: &serde_yaml_ng::Value| x.as_str().unwrap_or_default().to_string();
                (s(k), s(v))
            })
            .collect();
        assert_eq!(super::fields(), shipped);
    }

    #[test]
    fn fields_are_those_of_the_schema() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/audit-log.schema.json");
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let schema: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let mut props: Vec<&str> = schema["properties"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k.as_str())
            .collect();
        let mut required: Vec<&str> = schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
            .collect();
        let ours = super::fields();
        let mut ours: Vec<&str> = ours.iter().map(|(k, _)| k.as_str()).collect();
        props.sort_unstable();
        required.sort_unstable();
        ours.sort_unstable();
        assert_eq!(ours, props);
        assert_eq!(ours, required);
    }

    #[test]
    fn encoding_is_envoys_file_access_log_and_stable() {
        let a = super::audit("/tmp/audit.log", false);
        let b = super::audit("/tmp/audit.log", false);
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
        assert_eq!(s.fields.len(), super::fields().len());
        assert!(super::audit("", false).is_empty());
    }

    #[test]
    fn the_native_line_has_the_same_fields_read_from_dynamic_metadata() {
        let (wasm, native) = (super::fields_of(false), super::fields_of(true));
        let names = |v: &[(String, String)]| v.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
        assert_eq!(names(&wasm), names(&native));
        let input = native
            .iter()
            .find(|(k, _)| k == "input_tokens")
            .map(|(_, v)| v.as_str());
        assert_eq!(input, Some("%DYNAMIC_METADATA(aimesh.audit:input_tokens)%"));
        assert!(!native.iter().any(|(_, v)| v.contains("filter_state")));
        assert_eq!(
            super::native_value("%TYPED_CEL(filter_state['wasm.aimesh.mcp'].tool)%"),
            "%DYNAMIC_METADATA(aimesh.mcp:tool)%"
        );
        assert_eq!(super::native_value("%DURATION%"), "%DURATION%");
    }
}
