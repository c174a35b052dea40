//! One request through the mcp stage: the POST body checked message by message, the reply's
//! lists filtered, the limits released and the request counted when the stream ends.

use std::rc::Rc;

use aimesh_config::mcp::McpConfig;
use aimesh_core::accounting::audit::Value as AuditValue;
use aimesh_core::ErrorKind;
use aimesh_host::{send_error, send_json, Action, Body, Host, Stage};
use serde_json::Value;

use crate::access::{Access, Kind};
use crate::rpc::{self, Message, RpcError};
use crate::{limits, schema, sse};

/// 403 in the OpenAI error shape: the caller may use nothing on this server.
#[derive(Debug, thiserror::Error)]
#[error("this key may not use MCP server `{0}`")]
pub struct ServerNotAllowed(pub String);

impl ErrorKind for ServerNotAllowed {
    fn status(&self) -> u16 {
        403
    }
    fn code(&self) -> &'static str {
        "mcp_server_not_allowed"
    }
}

/// How the reply body is read.
enum Reply {
    /// Not read (not an MCP route, an error status, a local reply).
    Pass,
    /// One JSON document, read whole.
    Json,
    /// An SSE stream, read event by event.
    Sse(sse::Splitter),
}

pub struct Mcp {
    cfg: Rc<McpConfig>,
    server: Option<String>,
    access: Option<Access>,
    caller: String,
    /// The request was answered or passed on: later request callbacks pass data on.
    decided: bool,
    replied: bool,
    reply: Reply,
    held: Vec<String>,
    started_ms: u64,
    /// For the counters: the first message's method and tool, the refusal's code.
    method: Option<String>,
    tool: Option<String>,
    refusal: Option<&'static str>,
    refusal_code: Option<i64>,
    /// The body asked for a list (or was a batch): a JSON reply is held whole and filtered.
    /// Other JSON replies (tool results, possibly large) stream through untouched.
    wants_list: bool,
    /// The record for the access log and the span is out: it is written once the request is
    /// decided, because Envoy finalizes the span before `log`.
    published: bool,
}

/// The server a path names: `/mcp/<name>`, `/mcp/<name>/...`, `/mcp/<name>?...`.
pub fn server_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/mcp/")?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    Some(&rest[..end]).filter(|s| !s.is_empty())
}

/// `gen_ai.client.operation.duration` of `tools/call` requests (GenAI conventions,
/// `gen_ai.operation.name = execute_tool`), labelled `.operation_name.execute_tool.tool_name.<t>`.
pub const TOOL_DURATION: &str = "aimesh.gen_ai.client.operation.duration.milliseconds";

/// Filter-state name of the record the access log reads (`wasm.aimesh.mcp`).
pub const PROPERTY: &str = "aimesh.mcp";

fn schema_key(server: &str, tool: &str) -> String {
    format!("aimesh.mcp.schema.{server}.{tool}")
}

/// Replaces every byte outside `[A-Za-z0-9_-]` (a stat name's label value).
fn clean(v: &str) -> String {
    v.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Mcp {
    pub fn new(cfg: Rc<McpConfig>) -> Self {
        Self {
            cfg,
            server: None,
            access: None,
            caller: String::new(),
            decided: false,
            replied: false,
            reply: Reply::Pass,
            held: Vec::new(),
            started_ms: 0,
            method: None,
            tool: None,
            refusal: None,
            refusal_code: None,
            wants_list: false,
            published: false,
        }
    }

    fn answer(&mut self, host: &mut dyn Host, status: u16, body: &Value) -> Action {
        self.decided = true;
        self.replied = true;
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        send_json(host, status, &[], &bytes);
        Action::Pause
    }

    fn refuse_body(&mut self, host: &mut dyn Host, e: &RpcError) -> Action {
        self.refusal = Some(e.code());
        self.refusal_code = Some(e.rpc_code());
        let action = self.answer(host, e.http_status(), &e.response(&Value::Null));
        self.publish(host);
        action
    }

    /// Writes the request's record (`wasm.aimesh.mcp`): method, tool, refusal.
    fn publish(&mut self, host: &mut dyn Host) {
        if self.published || self.server.is_none() {
            return;
        }
        self.published = true;
        fn text(v: &Option<String>) -> AuditValue<'_> {
            v.as_deref().map_or(AuditValue::Null, AuditValue::Str)
        }
        let error = self.refusal.map_or(AuditValue::Null, AuditValue::Str);
        let code = self
            .refusal_code
            .map_or(AuditValue::Null, AuditValue::Signed);
        host.set_record(
            PROPERTY,
            &[
                ("method", text(&self.method)),
                ("tool", text(&self.tool)),
                ("error_code", code),
                ("error", error),
            ],
        );
    }

    /// Checks one request: access, params, arguments against the learned schema.
    fn check(
        &self,
        host: &dyn Host,
        server: &str,
        method: &str,
        params: &Value,
    ) -> Result<(), RpcError> {
        let Some(target) = rpc::target(method, params) else {
            return Ok(());
        };
        let (kind, name) = target?;
        let allowed = self.access.as_ref().is_some_and(|a| a.allows(kind, name));
        if !allowed {
            return Err(RpcError::NotAllowed {
                kind,
                name: name.to_string(),
            });
        }
        if kind != Kind::Tool {
            return Ok(());
        }
        let args = match params.get("arguments") {
            None | Some(Value::Null) => Value::Object(Default::default()),
            Some(a @ Value::Object(_)) => a.clone(),
            Some(_) => return Err(RpcError::Params("`arguments` must be an object".into())),
        };
        if self.cfg.validate_arguments {
            if let Ok((Some(raw), _)) = host.store().get(&schema_key(server, name)) {
                if let Ok(s) = serde_json::from_slice::<Value>(&raw) {
                    schema::check(&s, &args).map_err(RpcError::Params)?;
                }
            }
        }
        Ok(())
    }

    fn check_body(&mut self, host: &mut dyn Host, server: &str, body: &[u8]) -> Action {
        let parsed = match rpc::read(body, self.cfg.max_batch) {
            Ok(p) => p,
            Err(e) => return self.refuse_body(host, &e),
        };
        self.wants_list = parsed.batch
            || parsed.messages.iter().any(
                |m| matches!(m, Ok(Message::Request { method, .. }) if method.ends_with("/list")),
            );
        let mut verdicts: Vec<Option<(Value, RpcError)>> = Vec::new();
        let mut calls: Vec<String> = Vec::new();
        for m in &parsed.messages {
            let v = match m {
                Err((id, e)) => Some((id.clone(), e.clone())),
                Ok(Message::Other) => None,
                Ok(Message::Request { id, method, params }) => {
                    if self.method.is_none() {
                        self.method = Some(method.clone());
                        self.tool = rpc::target(method, params)
                            .and_then(Result::ok)
                            .map(|(_, n)| n.to_string());
                    }
                    match self.check(host, server, method, params) {
                        Err(e) => Some((id.clone(), e)),
                        Ok(()) => {
                            if method == "tools/call" {
                                if let Some(Ok((_, n))) = rpc::target(method, params) {
                                    calls.push(n.to_string());
                                }
                            }
                            None
                        }
                    }
                }
            };
            verdicts.push(v);
        }
        if verdicts.iter().all(Option::is_none) {
            // Limits last: a refused message must not use up a call.
            let now = host.unix_millis();
            for tool in &calls {
                match limits::take(&self.cfg, host.store(), now, server, tool, &self.caller) {
                    Ok(h) => self.held.extend(h),
                    Err(e) => {
                        limits::release(host.store(), &std::mem::take(&mut self.held));
                        let i = parsed.messages.iter().position(|m| {
                            matches!(m, Ok(Message::Request { params, .. })
                                if params.get("name").and_then(Value::as_str) == Some(tool))
                        });
                        let id = i
                            .and_then(|i| match &parsed.messages[i] {
                                Ok(Message::Request { id, .. }) => Some(id.clone()),
                                _ => None,
                            })
                            .unwrap_or_default();
                        if let Some(i) = i {
                            verdicts[i] = Some((id, e));
                        }
                        break;
                    }
                }
            }
        }
        let Some((_, first)) = verdicts.iter().flatten().next() else {
            return Action::Continue;
        };
        self.refusal = Some(first.code());
        self.refusal_code = Some(first.rpc_code());
        let status = first.http_status();
        if !parsed.batch {
            let (id, e) = verdicts
                .remove(0)
                .unwrap_or((Value::Null, RpcError::BatchRefused));
            return self.answer(host, e.http_status(), &e.response(&id));
        }
        // A batch goes to the server whole or not at all: each request gets its own answer.
        let answers: Vec<Value> = parsed
            .messages
            .iter()
            .zip(verdicts)
            .filter_map(|(m, v)| match (m, v) {
                (_, Some((id, e))) => Some(e.response(&id)),
                (Ok(Message::Request { id, .. }), None) => {
                    Some(RpcError::BatchRefused.response(id))
                }
                _ => None,
            })
            .collect();
        let status = if status == 200 { 200 } else { 400 };
        self.answer(host, status, &Value::Array(answers))
    }

    /// Filters one JSON document; `Some` when it changed. Learns the tools' schemas.
    fn filter(&self, host: &dyn Host, doc: &[u8]) -> Option<Vec<u8>> {
        let server = self.server.as_deref()?;
        let access = self.access.as_ref()?;
        let mut v: Value = serde_json::from_slice(doc).ok()?;
        let mut learned: Vec<(String, Value)> = Vec::new();
        let changed = rpc::filter_lists(&mut v, access, &mut |n, s| {
            learned.push((n.to_string(), s.clone()));
        });
        for (name, s) in learned {
            let key = schema_key(server, &name);
            let bytes = serde_json::to_vec(&s).unwrap_or_default();
            let current = host.store().get(&key).ok().and_then(|(v, _)| v);
            if current.as_deref() != Some(bytes.as_slice()) {
                if let Err(e) = host.store().set(&key, &bytes, None) {
                    log::warn!("mcp: schema of `{name}` not cached: {e}");
                }
            }
        }
        if changed {
            host.metrics().count("aimesh.mcp.list_filtered", 1);
        }
        changed.then(|| serde_json::to_vec(&v).ok()).flatten()
    }
}

impl Stage for Mcp {
    fn request_headers(&mut self, host: &mut dyn Host, eos: bool) -> Action {
        let hs = host.request_headers();
        let path = hs.get(":path").unwrap_or_default();
        let Some(server) = server_of(path).filter(|s| self.cfg.servers.contains_key(*s)) else {
            self.decided = true;
            return Action::Continue;
        };
        let server = server.to_string();
        self.started_ms = host.unix_millis();
        let facts = host.facts().clone();
        self.caller = facts.key_id.clone().unwrap_or_else(|| "-".into());
        let access = Access::of(
            &self.cfg,
            &server,
            facts.key_id.as_deref(),
            facts.team.as_deref(),
            facts.subject.is_some(),
        );
        self.server = Some(server.clone());
        if access.as_ref().is_none_or(Access::is_closed) {
            self.decided = true;
            self.replied = true;
            self.refusal = Some("mcp_server_not_allowed");
            send_error(host, &ServerNotAllowed(server));
            self.publish(host);
            return Action::Pause;
        }
        self.access = access;
        // Lists are filtered in the reply: it must come back readable.
        host.set_request_header("accept-encoding", None);
        if eos || hs.get(":method") != Some("POST") {
            self.decided = true;
            self.publish(host);
            return Action::Continue;
        }
        // Refused before a byte is buffered: a body over Envoy's own buffer limit would
        // otherwise get Envoy's 413, not a JSON-RPC error.
        let declared = hs
            .get("content-length")
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > self.cfg.max_body_bytes) {
            let e = RpcError::TooLarge {
                limit: self.cfg.max_body_bytes,
            };
            return self.refuse_body(host, &e);
        }
        Action::Pause
    }

    fn request_body(&mut self, host: &mut dyn Host, size: usize, eos: bool) -> Action {
        if self.decided {
            return Action::Continue;
        }
        if size > self.cfg.max_body_bytes {
            let e = RpcError::TooLarge {
                limit: self.cfg.max_body_bytes,
            };
            return self.refuse_body(host, &e);
        }
        if !eos {
            return Action::Pause;
        }
        self.decided = true;
        let body = host.body(Body::Request, size).unwrap_or_default();
        let server = self.server.clone().unwrap_or_default();
        let action = self.check_body(host, &server, &body);
        self.publish(host);
        action
    }

    fn request_trailers(&mut self, host: &mut dyn Host) -> Action {
        if self.decided {
            return Action::Continue;
        }
        self.decided = true;
        let body = host.body(Body::Request, usize::MAX).unwrap_or_default();
        let server = self.server.clone().unwrap_or_default();
        let action = self.check_body(host, &server, &body);
        self.publish(host);
        action
    }

    fn response_headers(&mut self, host: &mut dyn Host, _eos: bool) -> Action {
        if self.replied || self.access.is_none() {
            return Action::Continue;
        }
        let hs = host.response_headers();
        if hs.get(":status") != Some("200") {
            return Action::Continue;
        }
        let ctype = hs
            .get("content-type")
            .unwrap_or_default()
            .to_ascii_lowercase();
        self.reply = if ctype.starts_with("application/json") && self.wants_list {
            Reply::Json
        } else if ctype.starts_with("text/event-stream") {
            Reply::Sse(sse::Splitter::default())
        } else {
            Reply::Pass
        };
        if !matches!(self.reply, Reply::Pass) {
            host.set_response_header("content-length", None);
        }
        Action::Continue
    }

    fn response_body(&mut self, host: &mut dyn Host, size: usize, eos: bool) -> Action {
        match &mut self.reply {
            Reply::Pass => Action::Continue,
            Reply::Json => {
                if !eos {
                    return Action::Pause;
                }
                let body = host.body(Body::Response, size).unwrap_or_default();
                if let Some(out) = self.filter(host, &body) {
                    host.replace_body(Body::Response, size, &out);
                }
                Action::Continue
            }
            Reply::Sse(splitter) => {
                let chunk = host.body(Body::Response, size).unwrap_or_default();
                let events = splitter.push(&chunk);
                let rest = if eos { splitter.rest() } else { Vec::new() };
                let mut out = Vec::with_capacity(chunk.len());
                for ev in events {
                    match ev.data.as_deref().and_then(|d| self.filter(host, d)) {
                        Some(data) => out.extend_from_slice(&ev.with_data(&data)),
                        None => out.extend_from_slice(&ev.raw),
                    }
                }
                out.extend_from_slice(&rest);
                if out != chunk {
                    host.replace_body(Body::Response, size, &out);
                }
                Action::Continue
            }
        }
    }

    fn log(&mut self, host: &mut dyn Host) {
        limits::release(host.store(), &std::mem::take(&mut self.held));
        let Some(server) = self.server.as_deref() else {
            return;
        };
        let method = self.method.as_deref().unwrap_or("none");
        let tool = self.tool.as_deref().unwrap_or("none");
        let outcome = self.refusal.unwrap_or("forwarded");
        let labels = format!(".server.{}.tool.{}", clean(server), clean(tool));
        host.metrics().count(
            &format!(
                "aimesh.mcp.requests{labels}.method.{}.outcome.{outcome}",
                clean(method)
            ),
            1,
        );
        let elapsed = host.unix_millis().saturating_sub(self.started_ms);
        host.metrics()
            .record(&format!("aimesh.mcp.duration_ms{labels}"), elapsed);
        if method == "tools/call" {
            // The OpenTelemetry GenAI conventions' operation for a tool call.
            host.metrics().record(
                &format!(
                    "{TOOL_DURATION}.operation_name.execute_tool.tool_name.{}",
                    clean(tool)
                ),
                elapsed,
            );
        }
        self.publish(host);
    }
}
