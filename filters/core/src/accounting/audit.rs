//! The audit record: what the gateway knows about one request, as ONE typed value.
//!
//! The token-accounting filter publishes it once per request (in `on_log`) as a
//! `google.protobuf.Struct` in filter state `wasm.aimesh.audit`, declared with that type so the
//! access log reads typed fields: numbers stay numbers and an absent fact is `null`
//! (`%TYPED_CEL(filter_state['wasm.aimesh.audit'].<field>)%`). One host call replaces one
//! `set_property` per field, and a missing fact can no longer be an empty string on one line and
//! `null` on another. The line's schema is `docs/audit-log.schema.json`.

use crate::endpoints::names::valid_endpoint;
use crate::endpoints::path as proxy;

/// Filter-state name of the record (Envoy prefixes `wasm.`).
pub const PROPERTY: &str = "aimesh.audit";
/// Type URL the property is declared with.
pub const TYPE_URL: &str = "type.googleapis.com/google.protobuf.Struct";
/// Path prefix of MCP servers.
pub const MCP_PREFIX: &str = "/mcp/";

/// One request's facts; `None` is logged as `null`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// Path as the client sent it, before any rewrite (MCP prefix, custom endpoint).
    pub path: Option<String>,
    /// MCP server name of a `/mcp/<server>` request.
    pub mcp_server: Option<String>,
    /// Account of a `/proxy-api/{account}/{endpoint}` request.
    pub account: Option<String>,
    /// Endpoint of a `/proxy-api/{account}/{endpoint}` request.
    pub endpoint: Option<String>,
    /// Caller's key id, from the auth filter.
    pub key_id: Option<String>,
    /// Caller's team, from the auth filter.
    pub team: Option<String>,
    /// Model the client asked for.
    pub model: Option<String>,
    /// Model that served the request.
    pub model_served: Option<String>,
    /// Backend (virtual-model backend, else upstream cluster).
    pub backend: Option<String>,
    /// Status of the response the filter accounted (a limit refusal is 429).
    pub upstream_status: Option<u16>,
    /// Input tokens, cached included.
    pub input_tokens: Option<u64>,
    /// Of the input, tokens from the provider's prompt cache.
    pub cached_input_tokens: Option<u64>,
    /// Of the input, tokens written to the provider's prompt cache (Anthropic's
    /// `cache_creation_input_tokens`).
    pub cache_write_input_tokens: Option<u64>,
    /// Output tokens.
    pub output_tokens: Option<u64>,
    /// True when the token figures are estimates.
    pub usage_estimated: Option<bool>,
    /// True when part of the response was not read (a line, event, body or text past
    /// `max_response_bytes`): the figures then include an estimate for what was skipped.
    pub truncated: Option<bool>,
    /// Cost in micro-USD.
    pub cost_micro_usd: Option<u64>,
    /// Streams: request start to first generated text, ms.
    pub ttft_ms: Option<u64>,
    /// Custom request metadata (the configured header's checked object), as JSON text.
    pub metadata: Option<String>,
}

/// A field value as the access log will show it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// JSON `null`.
    Null,
    /// A JSON number (exact up to 2^53).
    Number(u64),
    /// A JSON string.
    Str(&'a str),
    /// A JSON boolean.
    Bool(bool),
    /// A JSON number that may be negative (a JSON-RPC error code).
    Signed(i64),
}

/// Field names of the record, in the order [`Record::fields`] gives them.
pub const FIELDS: [&str; 19] = [
    "path",
    "mcp_server",
    "account",
    "endpoint",
    "key_id",
    "team",
    "model",
    "model_served",
    "backend",
    "upstream_status",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_input_tokens",
    "output_tokens",
    "usage_estimated",
    "truncated",
    "cost_micro_usd",
    "ttft_ms",
    "metadata",
];

fn s(v: &Option<String>) -> Value<'_> {
    v.as_deref().map_or(Value::Null, Value::Str)
}

fn n(v: Option<u64>) -> Value<'static> {
    v.map_or(Value::Null, Value::Number)
}

impl Record {
    /// Sets `path` and the route names it carries (MCP server, custom endpoint).
    pub fn set_path(&mut self, path: &str) {
        self.path = Some(path.to_string());
        if let Some(rest) = path.strip_prefix(MCP_PREFIX) {
            let name = rest.split(['/', '?']).next().unwrap_or_default();
            // Names are those gateway.yaml accepts; anything else is only in `path`.
            self.mcp_server = valid_endpoint(name).then(|| name.to_string());
        } else if proxy::is_proxy_path(path) {
            if let Ok(p) = proxy::parse(path) {
                self.account = Some(p.account.to_string());
                self.endpoint = Some(p.endpoint.to_string());
            }
        }
    }

    /// Every field with its value, in [`FIELDS`] order.
    pub fn fields(&self) -> [(&'static str, Value<'_>); 19] {
        let vals = [
            s(&self.path),
            s(&self.mcp_server),
            s(&self.account),
            s(&self.endpoint),
            s(&self.key_id),
            s(&self.team),
            s(&self.model),
            s(&self.model_served),
            s(&self.backend),
            n(self.upstream_status.map(u64::from)),
            n(self.input_tokens),
            n(self.cached_input_tokens),
            n(self.cache_write_input_tokens),
            n(self.output_tokens),
            self.usage_estimated.map_or(Value::Null, Value::Bool),
            self.truncated.map_or(Value::Null, Value::Bool),
            n(self.cost_micro_usd),
            n(self.ttft_ms),
            s(&self.metadata),
        ];
        let mut i = 0;
        vals.map(|v| {
            i += 1;
            (FIELDS[i - 1], v)
        })
    }

    /// The record as a serialized `google.protobuf.Struct`.
    pub fn encode(&self) -> Vec<u8> {
        encode_struct(&self.fields())
    }
}

/// A `google.protobuf.Value`.
fn encode_value(v: Value<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    match v {
        // `null_value` (field 1, enum NULL_VALUE = 0), written explicitly: an empty Value
        // would have no kind at all.
        Value::Null => proto::varint_field(&mut out, 1, 0),
        Value::Number(x) => {
            proto::key(&mut out, 2, 1);
            #[allow(clippy::cast_precision_loss)] // exact below 2^53, far above any count
            out.extend_from_slice(&(x as f64).to_le_bytes());
        }
        Value::Str(t) => proto::bytes(&mut out, 3, t.as_bytes()),
        Value::Bool(b) => proto::varint_field(&mut out, 4, u64::from(b)),
        Value::Signed(x) => {
            proto::key(&mut out, 2, 1);
            #[allow(clippy::cast_precision_loss)] // error codes are small
            out.extend_from_slice(&(x as f64).to_le_bytes());
        }
    }
    out
}

/// Protocol-buffer wire writing, the little the audit record and its declaration need.
pub mod proto {
    /// A base-128 varint.
    pub fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// A field key.
    pub fn key(out: &mut Vec<u8>, field: u32, wire_type: u8) {
        varint(out, (u64::from(field) << 3) | u64::from(wire_type));
    }

    /// A varint field.
    pub fn varint_field(out: &mut Vec<u8>, field: u32, v: u64) {
        key(out, field, 0);
        varint(out, v);
    }

    /// A length-delimited field (string, bytes, message).
    pub fn bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
        key(out, field, 2);
        varint(out, b.len() as u64);
        out.extend_from_slice(b);
    }
}

/// Arguments of Envoy's `declare_property` foreign function declaring [`PROPERTY`] as a
/// protobuf `Struct` living as long as the filter chain (`DeclarePropertyArguments`).
pub fn declaration() -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    proto::bytes(&mut out, 1, PROPERTY.as_bytes());
    // type = Protobuf (3); readonly and span keep their defaults (false, FilterChain).
    proto::varint_field(&mut out, 3, 3);
    proto::bytes(&mut out, 4, TYPE_URL.as_bytes());
    out
}

/// Any `(name, value)` list as a serialized `google.protobuf.Struct`: another stage's record
/// (the mcp stage's `wasm.aimesh.mcp`), typed the same way as [`Record::encode`].
pub fn encode_struct(fields: &[(&str, Value<'_>)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    for (name, value) in fields {
        let v = encode_value(*value);
        let mut entry = Vec::with_capacity(name.len() + v.len() + 6);
        proto::bytes(&mut entry, 1, name.as_bytes());
        proto::bytes(&mut entry, 2, &v);
        proto::bytes(&mut out, 1, &entry);
    }
    out
}

/// [`declaration`] for another property name.
pub fn declaration_of(property: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    proto::bytes(&mut out, 1, property.as_bytes());
    proto::varint_field(&mut out, 3, 3);
    proto::bytes(&mut out, 4, TYPE_URL.as_bytes());
    out
}

#[cfg(test)]
#[path = "audit_tests.rs"]
mod tests;
