use std::collections::BTreeMap;

use prost::Message;

use super::*;

// Mirrors of google.protobuf.Struct / Value: the record must decode as Envoy decodes it.
#[derive(Clone, PartialEq, Message)]
struct PbStruct {
    #[prost(btree_map = "string, message", tag = "1")]
    fields: BTreeMap<String, PbValue>,
}

#[derive(Clone, PartialEq, Message)]
struct PbValue {
    #[prost(oneof = "Kind", tags = "1, 2, 3, 4")]
    kind: Option<Kind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Kind {
    #[prost(enumeration = "i32", tag = "1")]
    Null(i32),
    #[prost(double, tag = "2")]
    Number(f64),
    #[prost(string, tag = "3")]
    Str(String),
    #[prost(bool, tag = "4")]
    Bool(bool),
}

fn decode(r: &Record) -> BTreeMap<String, Option<Kind>> {
    let s = PbStruct::decode(r.encode().as_slice()).unwrap();
    s.fields.into_iter().map(|(k, v)| (k, v.kind)).collect()
}

#[test]
fn every_field_is_present_typed_or_null() {
    let r = Record {
        key_id: Some("team-a".into()),
        input_tokens: Some(12),
        cached_input_tokens: Some(0),
        usage_estimated: Some(false),
        upstream_status: Some(200),
        cost_micro_usd: Some(9_007_199_254_740_992),
        ..Record::default()
    };
    let d = decode(&r);
    assert_eq!(d.len(), FIELDS.len());
    assert_eq!(d["key_id"], Some(Kind::Str("team-a".into())));
    assert_eq!(d["input_tokens"], Some(Kind::Number(12.0)));
    assert_eq!(d["cached_input_tokens"], Some(Kind::Number(0.0)));
    assert_eq!(d["upstream_status"], Some(Kind::Number(200.0)));
    assert_eq!(d["usage_estimated"], Some(Kind::Bool(false)));
    assert_eq!(
        d["cost_micro_usd"],
        Some(Kind::Number(9_007_199_254_740_992.0))
    );
    for absent in [
        "team",
        "output_tokens",
        "ttft_ms",
        "truncated",
        "path",
        "mcp_server",
    ] {
        assert_eq!(d[absent], Some(Kind::Null(0)), "{absent}");
    }
}

#[test]
fn strings_are_carried_byte_for_byte() {
    let r = Record {
        model: Some("gpt-4o \"mini\" é\n".into()),
        ..Record::default()
    };
    assert_eq!(
        decode(&r)["model"],
        Some(Kind::Str("gpt-4o \"mini\" é\n".into()))
    );
}

#[test]
fn mcp_paths_name_their_server() {
    for (path, server) in [
        ("/mcp/docs", Some("docs")),
        ("/mcp/docs/sse?x=1", Some("docs")),
        ("/mcp/docs?x=1", Some("docs")),
        ("/mcp/", None),
        ("/mcp/a", None),
        ("/mcp/%2e%2e/x", None),
        ("/v1/chat/completions", None),
    ] {
        let mut r = Record::default();
        r.set_path(path);
        assert_eq!(r.path.as_deref(), Some(path));
        assert_eq!(r.mcp_server.as_deref(), server, "{path}");
        assert_eq!(r.account, None);
    }
}

#[test]
fn custom_endpoint_paths_name_account_and_endpoint() {
    let mut r = Record::default();
    r.set_path("/proxy-api/acme/search/v2/query?q=1");
    assert_eq!(r.account.as_deref(), Some("acme"));
    assert_eq!(r.endpoint.as_deref(), Some("search"));
    assert_eq!(r.mcp_server, None);
    // A refused (unsafe or badly named) path names nothing; the path alone is logged.
    for bad in [
        "/proxy-api/acme/search/%2e%2e/x",
        "/proxy-api/A!/search",
        "/proxy-api",
    ] {
        let mut r = Record::default();
        r.set_path(bad);
        assert_eq!((r.account, r.endpoint), (None, None), "{bad}");
    }
}

#[test]
fn declaration_is_a_protobuf_struct_property() {
    #[derive(Clone, PartialEq, Message)]
    struct DeclarePropertyArguments {
        #[prost(string, tag = "1")]
        name: String,
        #[prost(bool, tag = "2")]
        readonly: bool,
        #[prost(int32, tag = "3")]
        r#type: i32,
        #[prost(bytes = "vec", tag = "4")]
        schema: Vec<u8>,
        #[prost(int32, tag = "5")]
        span: i32,
    }
    let d = DeclarePropertyArguments::decode(declaration().as_slice()).unwrap();
    assert_eq!(d.name, "aimesh.audit");
    assert_eq!(d.r#type, 3, "WasmType::Protobuf");
    assert_eq!(d.schema, TYPE_URL.as_bytes());
    assert!(!d.readonly);
    assert_eq!(d.span, 0, "LifeSpan::FilterChain");
}

#[test]
fn field_names_are_the_schemas() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/audit-log.schema.json"
    );
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let props = schema["properties"].as_object().unwrap();
    for f in FIELDS {
        assert!(props.contains_key(f), "{f} missing from {path}");
    }
}
