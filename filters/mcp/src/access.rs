//! Who may use what: a caller's effective allow-lists on one server, and pattern matching.

use aimesh_config::mcp::{Grant, McpConfig};

/// What a list or call names: a tool, a prompt or a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `tools/list`, `tools/call`: matched on the tool name.
    Tool,
    /// `prompts/list`, `prompts/get`: matched on the prompt name.
    Prompt,
    /// `resources/list`, `resources/read`, `resources/subscribe`: matched on the URI.
    Resource,
}

impl Kind {
    /// The field of a list item the patterns match (`name`, or `uri` for resources).
    pub fn item_key(self) -> &'static str {
        match self {
            Kind::Resource => "uri",
            _ => "name",
        }
    }
    /// Singular, for error messages and audit: `tool`, `prompt`, `resource`.
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Tool => "tool",
            Kind::Prompt => "prompt",
            Kind::Resource => "resource",
        }
    }
}

/// Does `name` match the pattern: exact, `prefix*`, or `*`.
pub fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// One caller's allow-lists on one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    tools: Vec<String>,
    prompts: Vec<String>,
    resources: Vec<String>,
}

impl Access {
    /// The lists of `caller` (then its `team`, then the server's default) on `server`; `None`
    /// when the server is not configured. `jwt`: the caller id is a JWT rule's (auth verified a
    /// token), looked up in `jwt_rules` rather than among the keys.
    pub fn of(
        cfg: &McpConfig,
        server: &str,
        caller: Option<&str>,
        team: Option<&str>,
        jwt: bool,
    ) -> Option<Access> {
        let base = cfg.servers.get(server)?;
        let grant = |g: Option<&Grant>, pick: fn(&Grant) -> &Option<Vec<String>>| {
            g.and_then(|g| pick(g).clone())
        };
        let callers = if jwt { &cfg.jwt_rules } else { &cfg.callers };
        let mine = caller.and_then(|c| callers.get(c)?.get(server));
        let teams = team.and_then(|t| cfg.teams.get(t)?.get(server));
        let list = |pick: fn(&Grant) -> &Option<Vec<String>>, default: &Vec<String>| {
            grant(mine, pick)
                .or_else(|| grant(teams, pick))
                .unwrap_or_else(|| default.clone())
        };
        Some(Access {
            tools: list(|g| &g.tools, &base.tools),
            prompts: list(|g| &g.prompts, &base.prompts),
            resources: list(|g| &g.resources, &base.resources),
        })
    }

    /// May the caller use `name` of this kind.
    pub fn allows(&self, kind: Kind, name: &str) -> bool {
        let list = match kind {
            Kind::Tool => &self.tools,
            Kind::Prompt => &self.prompts,
            Kind::Resource => &self.resources,
        };
        list.iter().any(|p| matches(p, name))
    }

    /// Nothing at all is allowed: the server is closed to this caller.
    pub fn is_closed(&self) -> bool {
        self.tools.is_empty() && self.prompts.is_empty() && self.resources.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> McpConfig {
        serde_json::from_value(serde_json::json!({
            "servers": {"demo": {"tools": ["add", "search_*"]}, "other": {}},
            "callers": {"k1": {"demo": {"tools": ["*"]}}, "k2": {"demo": {"tools": []}},
                        "k3": {"demo": {"tools": [], "prompts": [], "resources": []}}},
            "jwt_rules": {"k2": {"demo": {"tools": ["rm_*"], "prompts": ["p1"]}}},
            "teams": {"ops": {"demo": {"tools": ["add", "delete_all"]}}}
        }))
        .unwrap()
    }

    #[test]
    fn caller_then_team_then_server_default() {
        let c = cfg();
        let d = Access::of(&c, "demo", None, None, false).unwrap();
        assert!(d.allows(Kind::Tool, "add") && d.allows(Kind::Tool, "search_web"));
        assert!(!d.allows(Kind::Tool, "delete_all") && !d.allows(Kind::Tool, "search"));
        assert!(d.allows(Kind::Prompt, "anything"));
        let k1 = Access::of(&c, "demo", Some("k1"), Some("ops"), false).unwrap();
        assert!(k1.allows(Kind::Tool, "delete_all"));
        let ops = Access::of(&c, "demo", Some("nobody"), Some("ops"), false).unwrap();
        assert!(ops.allows(Kind::Tool, "delete_all") && !ops.allows(Kind::Tool, "search_x"));
        let k2 = Access::of(&c, "demo", Some("k2"), None, false).unwrap();
        assert!(!k2.allows(Kind::Tool, "add") && !k2.is_closed());
        assert!(Access::of(&c, "demo", Some("k3"), None, false)
            .unwrap()
            .is_closed());
        assert!(Access::of(&c, "nope", None, None, false).is_none());
        // A JWT rule's grant is its own, even when a key has the same id.
        let rule = Access::of(&c, "demo", Some("k2"), None, true).unwrap();
        assert!(rule.allows(Kind::Tool, "rm_x") && !rule.allows(Kind::Tool, "add"));
        assert!(rule.allows(Kind::Prompt, "p1") && !rule.allows(Kind::Prompt, "p2"));
        assert!(rule.allows(Kind::Resource, "any://thing"));
        // A grant on one server says nothing about another.
        assert!(Access::of(&c, "other", Some("k2"), None, false)
            .unwrap()
            .allows(Kind::Tool, "x"));
    }
}
