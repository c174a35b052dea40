//! The listener's `local_reply_config`: Envoy's own local replies (no route, codec errors, body
//! too large, upstream timeout or reset) in the OpenAI error shape the SDKs parse, as in the
//! static configs (`envoy/demo.yaml`). The filters' replies carry no response code details, and
//! routes' own `direct_response`s are deliberate answers: both pass unchanged.

use envoy_types::pb::envoy::config::accesslog::v3 as al;
use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::extensions::access_loggers::filters::cel::v3::ExpressionFilter;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use envoy_types::pb::google::protobuf::Any;
use prost::Message;

fn cel(expression: &str) -> al::AccessLogFilter {
    let config = Any {
        type_url:
            "type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter"
                .into(),
        value: ExpressionFilter {
            expression: expression.into(),
            ..Default::default()
        }
        .encode_to_vec(),
    };
    al::AccessLogFilter {
        filter_specifier: Some(al::access_log_filter::FilterSpecifier::ExtensionFilter(
            al::ExtensionFilter {
                name: "envoy.access_loggers.extension_filters.cel".into(),
                config_type: Some(al::extension_filter::ConfigType::TypedConfig(config)),
            },
        )),
    }
}

/// A text template rather than `json_format`: a `Struct` is a HashMap in envoy-types and would
/// make the listener's content-hash version change on every build. Envoy's local-reply bodies
/// and code details hold no quotes or backslashes, so the template stays valid JSON.
fn body(message: &str) -> core::SubstitutionFormatString {
    let text = format!(
        "{{\"error\":{{\"message\":\"{message}\",\"type\":\"gateway_error\",\"param\":null,\"code\":\"%RESPONSE_CODE_DETAILS%\"}}}}\n"
    );
    core::SubstitutionFormatString {
        format: Some(core::substitution_format_string::Format::TextFormatSource(
            core::DataSource {
                specifier: Some(core::data_source::Specifier::InlineString(text)),
                ..Default::default()
            },
        )),
        content_type: "application/json".into(),
        ..Default::default()
    }
}

/// The mcp stage's `body_too_large` refusal (HTTP 413, JSON-RPC -32600).
const MCP_TOO_LARGE: &str = "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32600,\"message\":\"invalid request: body larger than the gateway reads\",\"data\":{\"code\":\"body_too_large\"}}}\n";

fn json_body(text: &str) -> core::SubstitutionFormatString {
    core::SubstitutionFormatString {
        format: Some(core::substitution_format_string::Format::TextFormatSource(
            core::DataSource {
                specifier: Some(core::data_source::Specifier::InlineString(text.into())),
                ..Default::default()
            },
        )),
        content_type: "application/json".into(),
        ..Default::default()
    }
}

/// Envoy's answer to a path with an encoded `/` or `\\` (the listener refuses them) or one it
/// cannot normalize has an empty body of its own.
const PATH_REFUSED: &str =
    "the request path has an encoded slash or backslash, or cannot be normalized";

/// The mappers: useful messages for "no route" and refused paths, Envoy's own text for
/// everything else.
pub fn openai_shaped() -> hcm::LocalReplyConfig {
    hcm::LocalReplyConfig {
        mappers: vec![
            // An MCP client reads JSON-RPC: a body over Envoy's buffer limit (a chunked one the
            // mcp stage could not refuse from its `content-length`) gets the stage's error.
            hcm::ResponseMapper {
                filter: Some(cel(
                    "response.code_details == 'request_payload_too_large' && request.path.startsWith('/mcp/')",
                )),
                body_format_override: Some(json_body(MCP_TOO_LARGE)),
                ..Default::default()
            },
            hcm::ResponseMapper {
                filter: Some(cel("response.code_details == 'route_not_found'")),
                body_format_override: Some(body("no route for this path")),
                ..Default::default()
            },
            hcm::ResponseMapper {
                filter: Some(cel("response.code_details == 'path_normalization_failed'")),
                body_format_override: Some(body(PATH_REFUSED)),
                ..Default::default()
            },
            hcm::ResponseMapper {
                filter: Some(cel(
                    "response.code_details != '' && response.code_details != 'direct_response' && response.code_details != 'dynamic_module'",
                )),
                body_format_override: Some(body("%LOCAL_REPLY_BODY%")),
                ..Default::default()
            },
        ],
        ..Default::default()
    }
}
