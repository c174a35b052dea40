//! gateway.yaml's `limits`: the rules, and where their counts live.
//!
//! The short form, a list of rules, is what every gateway.yaml written before fleet-wide limits
//! says; it means `store: local`. The long form adds the store, the limits service and the
//! failure policy. Both forms deserialize with the rules' own errors (no "did not match any
//! variant"), and the rules are reachable as a slice either way (`Deref`).

use std::ops::Deref;

use aimesh_config::fleet::FailurePolicy;
use schemars::JsonSchema;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::{Deserialize, Deserializer, Serialize};

use crate::model::Limit;

/// Where limit counts live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Store {
    /// Each Envoy counts on its own (proxy-wasm shared data): N replicas admit N times the
    /// limit.
    #[default]
    Local,
    /// Every replica shares one count on Redis, through the `aimesh-limits` service.
    Redis,
}

/// `limits` in its long form.
#[derive(Debug, Clone, Default, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// `local` (default) or `redis`.
    #[serde(default)]
    pub store: Store,
    /// URL of the `aimesh-limits` service (`http://127.0.0.1:8089`); required with `redis`.
    /// Only the service talks to Redis (its `--redis` flag holds the Redis URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// How long admission waits for the service, e.g. `200ms`; then the failure policy
    /// applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Per limit kind, what happens when the service or Redis cannot answer: `open` (admit,
    /// uncounted) or `closed` (503 `limits_unavailable`). Budgets fail closed by default, the
    /// rest open.
    #[serde(default)]
    pub failure: FailurePolicy,
    /// Completion tokens a request without `max_tokens` reserves against TPM and budgets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_max_tokens: Option<u64>,
    /// The rules.
    #[serde(default)]
    pub rules: Vec<Limit>,
}

/// The schema of both forms.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum LimitsForm {
    /// The rules, counted by each Envoy.
    Rules(Vec<Limit>),
    /// The long form.
    Table(Limits),
}

impl Limits {
    /// True when the counts are fleet-wide.
    pub fn fleet(&self) -> bool {
        self.store == Store::Redis
    }

    /// gateway.yaml path of rule `i` in the form the file used.
    pub fn rule_field(&self, i: usize, long: bool) -> String {
        if long {
            format!("limits.rules[{i}]")
        } else {
            format!("limits[{i}]")
        }
    }

    /// The file used the long form (anything beyond rules is set).
    pub fn long_form(&self) -> bool {
        *self
            != Limits {
                rules: self.rules.clone(),
                ..Limits::default()
            }
    }
}

impl Deref for Limits {
    type Target = Vec<Limit>;
    fn deref(&self) -> &Vec<Limit> {
        &self.rules
    }
}

impl<'de> Deserialize<'de> for Limits {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Form;
        impl<'de> serde::de::Visitor<'de> for Form {
            type Value = Limits;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of limit rules, or a mapping with store and rules")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Limits, A::Error> {
                Ok(Limits {
                    rules: Vec::deserialize(SeqAccessDeserializer::new(seq))?,
                    ..Limits::default()
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Limits, A::Error> {
                #[derive(Deserialize)]
                #[serde(remote = "Limits", deny_unknown_fields)]
                struct Table {
                    #[serde(default)]
                    store: Store,
                    #[serde(default)]
                    service: Option<String>,
                    #[serde(default)]
                    timeout: Option<String>,
                    #[serde(default)]
                    failure: FailurePolicy,
                    #[serde(default)]
                    default_max_tokens: Option<u64>,
                    #[serde(default)]
                    rules: Vec<Limit>,
                }
                Table::deserialize(MapAccessDeserializer::new(map))
            }
            fn visit_unit<E>(self) -> Result<Limits, E> {
                Ok(Limits::default())
            }
        }
        d.deserialize_any(Form)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_load_with_the_rules_errors() {
        let short: Limits =
            serde_yaml_ng::from_str("- key: a\n  requests_per_minute: 3\n").unwrap();
        assert_eq!((short.store, short.len()), (Store::Local, 1));
        assert!(!short.long_form());
        let long: Limits = serde_yaml_ng::from_str(
            "store: redis\nservice: http://127.0.0.1:8089\nrules:\n- subject: '*'\n  requests_per_minute: 3\n",
        )
        .unwrap();
        assert!(long.fleet() && long.long_form());
        assert_eq!(long[0].subject.as_deref(), Some("*"));
        let e = serde_yaml_ng::from_str::<Limits>("store: redis\nbogus: 1\n").unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        let e = serde_yaml_ng::from_str::<Limits>("- key: a\n  rpm: 3\n").unwrap_err();
        assert!(e.to_string().contains("rpm"), "{e}");
        let e = serde_yaml_ng::from_str::<Limits>("store: cloud\n").unwrap_err();
        assert!(e.to_string().contains("cloud"), "{e}");
    }
}
