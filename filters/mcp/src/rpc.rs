//! JSON-RPC 2.0 as MCP uses it: reading a POST body (one message or a batch), the refusals as
//! JSON-RPC error objects, and the filtering of list results.

use serde_json::{json, Map, Value};

use crate::access::{Access, Kind};

/// Why a JSON-RPC message is refused. Each has a JSON-RPC code, a stable string code (in the
/// error's `data.code`, the audit log and metrics) and the HTTP status of the reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// The body is not JSON.
    #[error("parse error: the body is not JSON")]
    Parse,
    /// The body is JSON but not a JSON-RPC 2.0 request.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A batch with more messages than allowed, or an empty one.
    #[error("invalid request: a batch holds 1 to {max} messages")]
    Batch {
        /// The most allowed.
        max: usize,
    },
    /// The body is larger than the stage reads.
    #[error("invalid request: body larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The caller may not use this tool, prompt or resource.
    #[error("{} `{name}` is not allowed for this caller", kind.noun())]
    NotAllowed {
        /// Tool, prompt or resource.
        kind: Kind,
        /// Its name (or URI).
        name: String,
    },
    /// The params do not match what the method or the tool's `inputSchema` requires.
    #[error("invalid params: {0}")]
    Params(String),
    /// A per-tool limit refused the call.
    #[error("tool `{tool}` is rate limited: {why}")]
    Limited {
        /// The tool.
        tool: String,
        /// Which limit.
        why: &'static str,
        /// When to retry, if a rate limit.
        retry_after_ms: Option<u64>,
    },
    /// Another message of the same batch was refused, so the batch never reached the server.
    #[error("invalid request: another message of this batch was refused")]
    BatchRefused,
}

impl RpcError {
    /// The JSON-RPC error code.
    pub fn rpc_code(&self) -> i64 {
        match self {
            RpcError::Parse => -32700,
            RpcError::Invalid(_)
            | RpcError::Batch { .. }
            | RpcError::TooLarge { .. }
            | RpcError::BatchRefused => -32600,
            RpcError::Params(_) => -32602,
            RpcError::NotAllowed { .. } => -32003,
            RpcError::Limited { .. } => -32029,
        }
    }

    /// Stable string code.
    pub fn code(&self) -> &'static str {
        match self {
            RpcError::Parse => "parse_error",
            RpcError::Invalid(_) => "invalid_request",
            RpcError::Batch { .. } => "batch_too_large",
            RpcError::TooLarge { .. } => "body_too_large",
            RpcError::BatchRefused => "batch_refused",
            RpcError::Params(_) => "invalid_params",
            RpcError::NotAllowed { kind, .. } => match kind {
                Kind::Tool => "tool_not_allowed",
                Kind::Prompt => "prompt_not_allowed",
                Kind::Resource => "resource_not_allowed",
            },
            RpcError::Limited { .. } => "tool_rate_limited",
        }
    }

    /// HTTP status of a reply that carries only this error: what a Streamable HTTP server
    /// answers (400 for a body it cannot take, 200 for a JSON-RPC-level refusal).
    pub fn http_status(&self) -> u16 {
        match self {
            RpcError::Parse | RpcError::Invalid(_) | RpcError::Batch { .. } => 400,
            RpcError::TooLarge { .. } => 413,
            _ => 200,
        }
    }

    /// The JSON-RPC error response for request `id` (`null` when unknown).
    pub fn response(&self, id: &Value) -> Value {
        let mut data = Map::new();
        data.insert("code".into(), self.code().into());
        if let RpcError::Limited {
            retry_after_ms: Some(ms),
            ..
        } = self
        {
            data.insert("retry_after_ms".into(), (*ms).into());
        }
        json!({"jsonrpc": "2.0", "id": id, "error": {
            "code": self.rpc_code(), "message": self.to_string(), "data": data}})
    }
}

/// One message of a POST body.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A request (it has an id: it gets an answer).
    Request {
        /// Its id (string or number).
        id: Value,
        /// The method.
        method: String,
        /// Its params (`Null` when absent).
        params: Value,
    },
    /// A notification, or a response the client sends to a server's request: forwarded as is.
    Other,
}

/// A POST body, read.
#[derive(Debug, Clone, PartialEq)]
pub struct Body {
    /// The body was a JSON array.
    pub batch: bool,
    /// Each message, or why it is not one.
    pub messages: Vec<Result<Message, (Value, RpcError)>>,
}

fn read_one(v: Value) -> Result<Message, (Value, RpcError)> {
    let Value::Object(mut o) = v else {
        return Err((
            Value::Null,
            RpcError::Invalid("a message is a JSON object".into()),
        ));
    };
    let id = o.remove("id");
    let id_ok = matches!(&id, Some(Value::String(_) | Value::Number(_)));
    let echo = if id_ok {
        id.clone().unwrap_or_default()
    } else {
        Value::Null
    };
    if o.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err((echo, RpcError::Invalid("`jsonrpc` must be \"2.0\"".into())));
    }
    let method = match o.remove("method") {
        Some(Value::String(m)) => m,
        Some(_) => return Err((echo, RpcError::Invalid("`method` must be a string".into()))),
        // A response to a server's request (sampling, elicitation): the client's own answer.
        None if o.contains_key("result") || o.contains_key("error") => return Ok(Message::Other),
        None => return Err((echo, RpcError::Invalid("no `method`".into()))),
    };
    let params = o.remove("params").unwrap_or(Value::Null);
    if !matches!(params, Value::Null | Value::Object(_) | Value::Array(_)) {
        return Err((echo, RpcError::Invalid("`params` must be an object".into())));
    }
    match id {
        None => {
            if gated(&method).is_some() {
                // A call nobody answers would still run the tool: a request needs an id.
                return Err((
                    Value::Null,
                    RpcError::Invalid(format!("`{method}` needs an id")),
                ));
            }
            Ok(Message::Other)
        }
        Some(_) if !id_ok => Err((
            Value::Null,
            RpcError::Invalid("`id` must be a string or a number".into()),
        )),
        Some(id) => Ok(Message::Request { id, method, params }),
    }
}

/// Reads a POST body: one message or a batch of 1 to `max_batch`.
pub fn read(body: &[u8], max_batch: usize) -> Result<Body, RpcError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| RpcError::Parse)?;
    match v {
        Value::Array(items) => {
            if items.is_empty() || items.len() > max_batch {
                return Err(RpcError::Batch { max: max_batch });
            }
            Ok(Body {
                batch: true,
                messages: items.into_iter().map(read_one).collect(),
            })
        }
        v => Ok(Body {
            batch: false,
            messages: vec![read_one(v)],
        }),
    }
}

/// What a gated method names, and where: `(kind, params field)`.
pub fn gated(method: &str) -> Option<(Kind, &'static str)> {
    match method {
        "tools/call" => Some((Kind::Tool, "name")),
        "prompts/get" => Some((Kind::Prompt, "name")),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            Some((Kind::Resource, "uri"))
        }
        _ => None,
    }
}

/// The name a gated request targets, or why its params are unusable.
pub fn target<'a>(method: &str, params: &'a Value) -> Option<Result<(Kind, &'a str), RpcError>> {
    let (kind, field) = gated(method)?;
    Some(match params.get(field).and_then(Value::as_str) {
        Some(name) => Ok((kind, name)),
        None => Err(RpcError::Params(format!(
            "`params.{field}` must be a string"
        ))),
    })
}

/// The list fields of a result and the key of their items the patterns match.
const LISTS: [(&str, Kind, &str); 4] = [
    ("tools", Kind::Tool, "name"),
    ("prompts", Kind::Prompt, "name"),
    ("resources", Kind::Resource, "uri"),
    ("resourceTemplates", Kind::Resource, "uriTemplate"),
];

/// Drops what `access` does not allow from every list result in `msg` (one message or a batch
/// of them); calls `seen` with each allowed tool (name, inputSchema). True when anything was
/// dropped. A result is recognised by its shape, not by the request it answers, so replays
/// (resumed streams, batches) are filtered too.
pub fn filter_lists(msg: &mut Value, access: &Access, seen: &mut dyn FnMut(&str, &Value)) -> bool {
    if let Value::Array(items) = msg {
        let mut changed = false;
        for m in items {
            changed |= filter_lists(m, access, seen);
        }
        return changed;
    }
    let Some(result) = msg.get_mut("result").and_then(Value::as_object_mut) else {
        return false;
    };
    let mut changed = false;
    for (field, kind, key) in LISTS {
        let Some(Value::Array(items)) = result.get_mut(field) else {
            continue;
        };
        let before = items.len();
        items.retain(|item| {
            item.get(key)
                .and_then(Value::as_str)
                .is_some_and(|name| access.allows(kind, name))
        });
        changed |= items.len() != before;
        if kind == Kind::Tool {
            for item in items.iter() {
                if let (Some(name), Some(schema)) = (
                    item.get("name").and_then(Value::as_str),
                    item.get("inputSchema"),
                ) {
                    seen(name, schema);
                }
            }
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(body: &str) -> Result<Message, (Value, RpcError)> {
        let mut b = read(body.as_bytes(), 4).expect("readable");
        assert!(!b.batch);
        b.messages.remove(0)
    }

    #[test]
    fn messages_and_refusals() {
        assert_eq!(
            one(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}}"#),
            Ok(Message::Request {
                id: json!(1),
                method: "tools/call".into(),
                params: json!({"name": "a"})
            })
        );
        assert_eq!(
            one(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Ok(Message::Other)
        );
        assert_eq!(
            one(r#"{"jsonrpc":"2.0","id":"s1","result":{}}"#),
            Ok(Message::Other)
        );
        let bad = [
            (r#"{"id":1,"method":"x"}"#, json!(1)),
            (r#"{"jsonrpc":"2.0","id":1}"#, json!(1)),
            (r#"{"jsonrpc":"2.0","id":{},"method":"x"}"#, Value::Null),
            (
                r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"a"}}"#,
                Value::Null,
            ),
            (
                r#"{"jsonrpc":"2.0","id":2,"method":"x","params":3}"#,
                json!(2),
            ),
            ("[1]", Value::Null),
        ];
        for (body, id) in bad {
            let b = read(body.as_bytes(), 4).expect("json");
            let Err((got_id, e)) = &b.messages[0] else {
                panic!("{body} accepted")
            };
            assert_eq!((got_id, e.rpc_code()), (&id, -32600), "{body}");
        }
        assert_eq!(read(b"nope", 4), Err(RpcError::Parse));
        assert_eq!(read(b"[]", 4), Err(RpcError::Batch { max: 4 }));
        assert_eq!(
            read(b"[{},{},{},{},{}]", 4),
            Err(RpcError::Batch { max: 4 })
        );
    }

    #[test]
    fn error_objects() {
        let e = RpcError::NotAllowed {
            kind: Kind::Tool,
            name: "rm".into(),
        };
        assert_eq!(
            e.response(&json!(7)),
            json!({"jsonrpc": "2.0", "id": 7, "error": {"code": -32003,
                "message": "tool `rm` is not allowed for this caller",
                "data": {"code": "tool_not_allowed"}}})
        );
        assert_eq!(
            (
                RpcError::Parse.http_status(),
                RpcError::Params("x".into()).rpc_code()
            ),
            (400, -32602)
        );
    }

    #[test]
    fn lists_are_filtered_by_shape_and_tools_learned() {
        let cfg: aimesh_config::mcp::McpConfig = serde_json::from_value(json!({
            "servers": {"d": {"tools": ["add"], "resources": ["file:///pub/*"]}}}))
        .unwrap();
        let access = Access::of(&cfg, "d", None, None, false).unwrap();
        let mut m = json!([
            {"jsonrpc": "2.0", "id": 1, "result": {"tools": [
                {"name": "add", "inputSchema": {"type": "object"}}, {"name": "rm"}, {"nameless": 1}]}},
            {"jsonrpc": "2.0", "id": 2, "result": {"resources": [
                {"uri": "file:///pub/a"}, {"uri": "file:///etc/passwd"}]}},
            {"jsonrpc": "2.0", "id": 3, "result": {"content": []}}
        ]);
        let mut learned = Vec::new();
        assert!(filter_lists(&mut m, &access, &mut |n, s| learned
            .push((n.to_string(), s.clone()))));
        assert_eq!(
            m[0]["result"]["tools"],
            json!([{"name": "add", "inputSchema": {"type": "object"}}])
        );
        assert_eq!(
            m[1]["result"]["resources"],
            json!([{"uri": "file:///pub/a"}])
        );
        assert_eq!(
            learned,
            vec![("add".to_string(), json!({"type": "object"}))]
        );
        let mut untouched =
            json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": [{"name": "add"}]}});
        assert!(!filter_lists(&mut untouched, &access, &mut |_, _| {}));
    }
}
