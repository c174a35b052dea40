//! Model allow-lists: exact names, `prefix/*` patterns and `*`.

use serde_json::Value;

/// A compiled allow-list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelAllow {
    any: bool,
    exact: Vec<String>,
    prefixes: Vec<String>,
}

impl ModelAllow {
    /// Compiles patterns already checked by [`validate_pattern`].
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Self {
        let mut out = Self::default();
        for p in patterns {
            let p = p.as_ref();
            if p == "*" {
                out.any = true;
            } else if let Some(prefix) = p.strip_suffix('*') {
                out.prefixes.push(prefix.to_string());
            } else {
                out.exact.push(p.to_string());
            }
        }
        out
    }

    /// True when every model is allowed (`*`).
    pub fn allows_all(&self) -> bool {
        self.any
    }

    /// Whether `model` is on the list (names are case-sensitive, as providers treat them).
    pub fn allows(&self, model: &str) -> bool {
        self.any
            || self.exact.iter().any(|m| m == model)
            || self.prefixes.iter().any(|p| model.starts_with(p.as_str()))
    }

    /// Rewrites a `GET /v1/models` reply to the models this list allows.
    ///
    /// `None` when the body is not an OpenAI model list (then it is passed on untouched).
    pub fn filter_model_list(&self, body: &[u8]) -> Option<Vec<u8>> {
        let mut v: Value = serde_json::from_slice(body).ok()?;
        let data = v.get_mut("data")?.as_array_mut()?;
        data.retain(|m| {
            m.get("id")
                .and_then(Value::as_str)
                .is_some_and(|id| self.allows(id))
        });
        serde_json::to_vec(&v).ok()
    }
}

pub use aimesh_config::auth::grants::validate_pattern;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_prefix_and_any() {
        let a = ModelAllow::new(&["gpt-4o-mini", "openai/*"]);
        assert!(a.allows("gpt-4o-mini"));
        assert!(!a.allows("gpt-4o"));
        assert!(!a.allows("GPT-4o-mini"));
        assert!(a.allows("openai/gpt-4o"));
        assert!(!a.allows("openai"));
        assert!(!a.allows("openai-gpt"));
        assert!(!a.allows_all());
        assert!(ModelAllow::new(&["*"]).allows("anything"));
        assert!(!ModelAllow::new::<&str>(&[]).allows("gpt-4o"));
    }

    #[test]
    fn patterns_are_validated() {
        assert!(validate_pattern("a/*").is_ok());
        assert!(validate_pattern("*").is_ok());
        assert!(validate_pattern("gpt-*").is_err());
        assert!(validate_pattern("a/*/b").is_err());
        assert!(validate_pattern("").is_err());
    }

    #[test]
    fn filters_model_lists() {
        let a = ModelAllow::new(&["gpt-4o-mini", "team/*"]);
        let body = br#"{"object":"list","data":[{"id":"gpt-4o-mini","object":"model"},
            {"id":"gpt-4o"},{"id":"team/x"},{"nope":1}]}"#;
        let out: Value = serde_json::from_slice(&a.filter_model_list(body).unwrap()).unwrap();
        let ids: Vec<&str> = out["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["gpt-4o-mini", "team/x"]);
        assert_eq!(out["object"], "list");
        assert_eq!(a.filter_model_list(b"not json"), None);
        assert_eq!(a.filter_model_list(br#"{"error":{}}"#), None);
    }
}
