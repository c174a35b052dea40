//! Auth filter: virtual API keys in front of every LLM request.
//!
//! The client's key is hashed (SHA-256) and looked up among the configured hashes; plaintext keys
//! never appear in config, logs or stats. On success the filter strips the client's credential and
//! any forged `x-aimesh-*` header, then publishes the caller's identity as `x-aimesh-key-id` and
//! `x-aimesh-team` for later filters and routes.

mod config;

use std::rc::Rc;

use aimesh_core::{headers, ErrorKind};
use aimesh_glue::{load_config, send_error, strip_internal_headers};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

pub use config::{AuthConfig, KeyEntry};

// `proxy_wasm::main!` defines the undocumented `_start` export the host calls.
#[allow(missing_docs)]
mod start {
    use super::*;

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Info);
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
    }}
}

#[derive(Default)]
struct Root {
    config: Option<Rc<config::Compiled>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let raw = self.get_plugin_configuration();
        match load_config::<AuthConfig>("auth", raw.as_deref()) {
            Some(c) => {
                self.config = Some(Rc::new(config::Compiled::new(c)));
                true
            }
            None => false,
        }
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        let config = self.config.clone()?;
        Some(Box::new(Auth { config }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Auth {
    config: Rc<config::Compiled>,
}

/// Auth failures.
#[derive(Debug, thiserror::Error)]
enum AuthError {
    /// Missing, unknown, expired or disabled: one answer so callers learn nothing.
    #[error("Incorrect API key provided.")]
    InvalidKey,
}

impl ErrorKind for AuthError {
    fn status(&self) -> u16 {
        401
    }
    fn code(&self) -> &'static str {
        "invalid_api_key"
    }
}

/// Credential headers clients use: OpenAI, Anthropic and Azure styles.
const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "x-api-key", "api-key"];

impl Context for Auth {}

impl HttpContext for Auth {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        strip_internal_headers(self);
        let presented = self.presented_key();
        for h in CREDENTIAL_HEADERS {
            self.set_http_request_header(h, None);
        }
        let Some(entry) = presented.and_then(|k| self.config.lookup(&k)) else {
            send_error(self, &AuthError::InvalidKey);
            return Action::Pause;
        };
        self.set_http_request_header(headers::KEY_ID, Some(&entry.id));
        if let Some(team) = &entry.team {
            self.set_http_request_header(headers::TEAM, Some(team));
        }
        Action::Continue
    }
}

impl Auth {
    fn presented_key(&self) -> Option<String> {
        if let Some(v) = self.get_http_request_header("authorization") {
            let (scheme, rest) = v.trim().split_once(' ')?;
            return scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| rest.trim().to_string());
        }
        self.get_http_request_header("x-api-key")
            .or_else(|| self.get_http_request_header("api-key"))
            .map(|v| v.trim().to_string())
    }
}
