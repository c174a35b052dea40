//! MCP stage: governance of Model Context Protocol traffic (Streamable HTTP) on `/mcp/<server>`.
//!
//! It reads each JSON-RPC POST body (one message or a batch) and refuses, with a JSON-RPC error
//! that never reaches the server, a `tools/call` / `prompts/get` / `resources/read` the caller
//! may not use, a tool call whose arguments do not match the tool's `inputSchema` (learned from
//! the server's own `tools/list` replies, cached per server in the shared store), and a call over
//! a per-tool limit. It filters `tools/list`, `prompts/list`, `resources/list` (and templates)
//! replies, JSON or SSE split anywhere, so a denied name never reaches the caller. The caller is
//! who auth says (the typed facts: key id or JWT rule id, team). Decisions live in [`access`],
//! [`rpc`], [`schema`] and [`sse`]; [`stage`] sequences them over [`aimesh_host::Host`].

pub mod access;
mod limits;
pub mod rpc;
pub mod schema;
pub mod sse;
mod stage;

#[cfg(test)]
mod tests;

use std::rc::Rc;

use aimesh_config::mcp::McpConfig;
use aimesh_core::accounting::audit::declaration_of;
use aimesh_host::{load_config, Env, Stage, StageDef, StageError, StageRoot};

const NAME: &str = "mcp";

/// The mcp entry of the table of stages.
pub const STAGE: StageDef = StageDef {
    name: NAME,
    configure,
    counters: &["aimesh.mcp.list_filtered"],
    families: |_| {
        vec![aimesh_host::Family::histogram(
            stage::TOOL_DURATION,
            ["operation_name", "tool_name"],
        )]
    },
};

fn configure(raw: &[u8], env: &dyn Env) -> Result<Box<dyn StageRoot>, StageError> {
    let cfg = load_config::<McpConfig>(raw)?;
    // Typed, so the access log shows numbers and nulls; a reconfiguration finds it declared.
    if !env.declare_property(&declaration_of(stage::PROPERTY)) {
        log::debug!("mcp: record already declared");
    }
    limits::init(&cfg, env);
    Ok(Box::new(Root { cfg: Rc::new(cfg) }))
}

struct Root {
    cfg: Rc<McpConfig>,
}

impl StageRoot for Root {
    fn new_stream(&self) -> Option<Box<dyn Stage>> {
        Some(Box::new(stage::Mcp::new(Rc::clone(&self.cfg))))
    }
}
