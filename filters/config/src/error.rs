//! The one error type of config validation: which field, and what is wrong with it.

use std::fmt;

/// A refused configuration value. `field` is the path from the config's root
/// (`keys[2].hash`, `accounts.oa.endpoints.tts.base_url`); messages never echo secret values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// Path of the offending field; empty for the config as a whole.
    pub field: String,
    /// What is wrong.
    pub problem: Problem,
}

/// What is wrong with a field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The value breaks a rule (syntax, range, character set).
    #[error("{0}")]
    Invalid(String),
    /// The value repeats one that must be unique.
    #[error("duplicate {0}")]
    Duplicate(String),
    /// The value names something the config does not define.
    #[error("{0}")]
    UnknownReference(String),
    /// A value other settings depend on is absent.
    #[error("{0}")]
    Missing(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.problem)
        } else {
            write!(f, "{}: {}", self.field, self.problem)
        }
    }
}

impl ConfigError {
    /// The value of `field` breaks a rule.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(field, Problem::Invalid(message.into()))
    }

    /// The value of `field` repeats `what` (`id 'a'`).
    pub fn duplicate(field: impl Into<String>, what: impl Into<String>) -> Self {
        Self::new(field, Problem::Duplicate(what.into()))
    }

    /// `field` names something undefined.
    pub fn unknown(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(field, Problem::UnknownReference(message.into()))
    }

    /// `field` is required here.
    pub fn missing(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(field, Problem::Missing(message.into()))
    }

    fn new(field: impl Into<String>, problem: Problem) -> Self {
        Self {
            field: field.into(),
            problem,
        }
    }

    /// The same error seen from an enclosing config (`auth` + `keys[0].id` = `auth.keys[0].id`).
    pub fn within(mut self, prefix: &str) -> Self {
        self.field = match (prefix.is_empty(), self.field.is_empty()) {
            (true, _) => self.field,
            (false, true) => prefix.to_string(),
            (false, false) => format!("{prefix}.{}", self.field),
        };
        self
    }

    /// Stable machine-readable code of the problem.
    pub fn code(&self) -> &'static str {
        match self.problem {
            Problem::Invalid(_) => "invalid_value",
            Problem::Duplicate(_) => "duplicate_value",
            Problem::UnknownReference(_) => "unknown_reference",
            Problem::Missing(_) => "missing_value",
        }
    }

    /// HTTP status for an API that rejects the config (a control-plane push): always 400.
    pub fn status(&self) -> u16 {
        400
    }
}

/// Semantic checks a config runs after it deserializes.
pub trait Validate {
    /// `Err` names the offending field and what is wrong with it.
    fn validate(&self) -> Result<(), ConfigError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_field_and_nesting_prefixes_it() {
        let e = ConfigError::duplicate("keys[1].id", "id 'a'").within("auth");
        assert_eq!(e.to_string(), "auth.keys[1].id: duplicate id 'a'");
        assert_eq!((e.code(), e.status()), ("duplicate_value", 400));
        let whole = ConfigError::missing("", "no stage configured").within("");
        assert_eq!(whole.to_string(), "no stage configured");
        assert_eq!(whole.within("chain").field, "chain");
    }
}
