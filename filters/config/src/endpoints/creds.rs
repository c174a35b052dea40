//! Upstream credentials: what each provider kind expects, rendered into header sets.
//!
//! Secret values are literals (pushed by the xDS server) or `${env:NAME}` references resolved
//! from the Wasm VM's environment (`vm_config.environment_variables`) when the config loads.
//! Error messages name the field and the variable, never a value.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;

/// Environment lookups, so resolution is tested without a host.
pub trait Env {
    /// Value of `name`, if set.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment; inside Envoy's Wasm VM this is `vm_config.environment_variables`.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdEnv;

impl Env for StdEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// An environment of fixed pairs, for tests and tools that must not read the process's.
#[derive(Debug, Default, Clone)]
pub struct MapEnv(pub std::collections::HashMap<String, String>);

impl MapEnv {
    /// The environment holding exactly `pairs`.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        MapEnv(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }
}

impl Env for MapEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

/// Default `anthropic-version` when an Anthropic account names none.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// How a provider account or endpoint authenticates upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    /// OpenAI and compatible APIs: `authorization: Bearer <api_key>`.
    Openai {
        /// API key (literal or `${env:NAME}`).
        api_key: String,
    },
    /// Self-hosted vLLM (`--api-key`): `authorization: Bearer <api_key>`.
    Vllm {
        /// API key (literal or `${env:NAME}`).
        api_key: String,
    },
    /// Hugging Face TGI: `authorization: Bearer <api_key>`.
    Tgi {
        /// API key / HF token (literal or `${env:NAME}`).
        api_key: String,
    },
    /// Any bearer token: `authorization: Bearer <token>`.
    Bearer {
        /// Token (literal or `${env:NAME}`).
        token: String,
    },
    /// Azure OpenAI: `api-key: <api_key>`.
    Azure {
        /// API key (literal or `${env:NAME}`).
        api_key: String,
    },
    /// Anthropic: `x-api-key: <api_key>` and `anthropic-version` (kept if the client sent one).
    Anthropic {
        /// API key (literal or `${env:NAME}`).
        api_key: String,
        /// `anthropic-version` to send when the client sends none; default `2023-06-01`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<String>,
    },
    /// HTTP Basic (RFC 7617): `authorization: Basic base64(username:password)`.
    Basic {
        /// User name; must not contain `:` (literal or `${env:NAME}`).
        username: String,
        /// Password (literal or `${env:NAME}`).
        password: String,
    },
    /// One header, e.g. `ocp-apim-subscription-key`.
    Header {
        /// Header name.
        name: String,
        /// Header value (literal or `${env:NAME}`).
        value: String,
    },
    /// Any set of headers.
    Headers {
        /// Header name to value (values literal or with `${env:NAME}`).
        headers: std::collections::BTreeMap<String, String>,
    },
    /// No credentials (an endpoint uses it to drop its account's auth).
    None,
}

/// Rendered credentials: headers always set, and headers set only when the client sent none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenderedAuth {
    /// Overwrite or add.
    pub set: Vec<(String, String)>,
    /// Add only if absent (`anthropic-version`).
    pub defaults: Vec<(String, String)>,
    /// The secret values in `set` as a provider could echo them: each whole header value and
    /// the key, token or password inside it (`Plan::secrets`, for the reply scrubber).
    pub secrets: Vec<String>,
}

impl AuthConfig {
    /// Resolves secrets and renders headers; `field` prefixes error messages.
    pub fn render(&self, field: &str, env: &dyn Env) -> Result<RenderedAuth, String> {
        let secrets = RefCell::new(Vec::new());
        let r = |name: &str, v: &str| -> Result<String, String> {
            let value = resolve(&format!("{field}.{name}"), v, env)?;
            if name != "version" && name != "username" {
                secrets.borrow_mut().push(value.clone());
            }
            Ok(value)
        };
        let bearer = |name: &str, v: &str| -> Result<Vec<(String, String)>, String> {
            Ok(vec![(
                "authorization".into(),
                format!("Bearer {}", r(name, v)?),
            )])
        };
        let mut out = RenderedAuth::default();
        match self {
            Self::Openai { api_key } | Self::Vllm { api_key } | Self::Tgi { api_key } => {
                out.set = bearer("api_key", api_key)?;
            }
            Self::Bearer { token } => out.set = bearer("token", token)?,
            Self::Azure { api_key } => out.set = vec![("api-key".into(), r("api_key", api_key)?)],
            Self::Anthropic { api_key, version } => {
                out.set = vec![("x-api-key".into(), r("api_key", api_key)?)];
                let v = match version {
                    Some(v) => r("version", v)?,
                    None => ANTHROPIC_VERSION.to_string(),
                };
                out.defaults = vec![("anthropic-version".into(), v)];
            }
            Self::Basic { username, password } => {
                let user = r("username", username)?;
                if user.contains(':') {
                    return Err(format!("{field}.username: must not contain ':'"));
                }
                let pass = r("password", password)?;
                let token = base64(format!("{user}:{pass}").as_bytes());
                secrets.borrow_mut().push(token.clone());
                out.set = vec![("authorization".into(), format!("Basic {token}"))];
            }
            Self::Header { name, value } => {
                out.set = vec![(
                    header_name(&format!("{field}.name"), name)?,
                    r("value", value)?,
                )];
            }
            Self::Headers { headers } => {
                for (k, v) in headers {
                    let f = format!("{field}.headers.{k}");
                    let value = resolve(&f, v, env)?;
                    secrets.borrow_mut().push(value.clone());
                    out.set.push((header_name(&f, k)?, value));
                }
            }
            Self::None => {}
        }
        for (k, v) in out.set.iter().chain(&out.defaults) {
            header_value(&format!("{field} ({k})"), v)?;
        }
        out.secrets = secrets.into_inner();
        out.secrets.extend(out.set.iter().map(|(_, v)| v.clone()));
        Ok(out)
    }
}

/// Replaces every `${env:NAME}` in `raw`; an unset variable is an error naming it.
pub fn resolve(field: &str, raw: &str, env: &dyn Env) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find("${env:") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 6..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("{field}: unterminated '${{env:' reference"))?;
        let name = &after[..end];
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("{field}: invalid environment variable name"));
        }
        let value = env
            .var(name)
            .ok_or_else(|| format!("{field}: environment variable {name} is not set"))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Prefix of the gateway's own headers (`x-aimesh-*`), never client- or config-settable.
pub const INTERNAL_PREFIX: &str = "x-aimesh-";

/// True for header names in the internal namespace (case-insensitive, as HTTP names are).
pub fn is_internal(name: &str) -> bool {
    name.len() >= INTERNAL_PREFIX.len()
        && name.as_bytes()[..INTERNAL_PREFIX.len()].eq_ignore_ascii_case(INTERNAL_PREFIX.as_bytes())
}

/// Header names the filter must never be told to set.
const RESERVED: [&str; 7] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "keep-alive",
];

/// Lowercases and checks a configured header name (an HTTP token, not pseudo, not internal).
pub fn header_name(field: &str, name: &str) -> Result<String, String> {
    let lower = name.to_ascii_lowercase();
    let token = !lower.is_empty()
        && lower
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token {
        return Err(format!("{field}: not a valid header name"));
    }
    if RESERVED.contains(&lower.as_str()) || is_internal(&lower) {
        return Err(format!("{field}: header '{lower}' cannot be configured"));
    }
    Ok(lower)
}

/// Refuses values that would split a header (CR, LF, NUL) or other control characters.
pub fn header_value(field: &str, value: &str) -> Result<(), String> {
    if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(format!(
            "{field}: header value contains CR, LF or another control character"
        ));
    }
    Ok(())
}

/// Standard base64 with padding (RFC 4648), as HTTP Basic needs.
pub fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> MapEnv {
        MapEnv::from_pairs(pairs)
    }

    fn auth(json: &str) -> AuthConfig {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
        assert_eq!(base64(&[0xff, 0xfe, 0x3f]), "//4/");
    }

    #[test]
    fn renders_each_kind() {
        let e = env(&[("K", "sk-1"), ("P", "p@ss:w")]);
        let r = auth(r#"{"type":"openai","api_key":"${env:K}"}"#)
            .render("a", &e)
            .unwrap();
        assert_eq!(r.set, vec![("authorization".into(), "Bearer sk-1".into())]);
        let r = auth(r#"{"type":"azure","api_key":"lit"}"#)
            .render("a", &e)
            .unwrap();
        assert_eq!(r.set, vec![("api-key".into(), "lit".into())]);
        let r = auth(r#"{"type":"anthropic","api_key":"${env:K}"}"#)
            .render("a", &e)
            .unwrap();
        assert_eq!(r.set, vec![("x-api-key".into(), "sk-1".into())]);
        assert_eq!(
            r.defaults,
            vec![("anthropic-version".into(), ANTHROPIC_VERSION.into())]
        );
        // RFC 7617 example: Aladdin / open sesame.
        let r = auth(r#"{"type":"basic","username":"Aladdin","password":"open sesame"}"#)
            .render("a", &e)
            .unwrap();
        assert_eq!(
            r.set,
            vec![(
                "authorization".into(),
                "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==".into()
            )]
        );
        let r = auth(r#"{"type":"headers","headers":{"X-A":"1","x-b":"t-${env:K}"}}"#)
            .render("a", &e)
            .unwrap();
        assert_eq!(
            r.set,
            vec![("x-a".into(), "1".into()), ("x-b".into(), "t-sk-1".into())]
        );
        assert_eq!(
            auth(r#"{"type":"none"}"#).render("a", &e).unwrap(),
            RenderedAuth::default()
        );
    }

    #[test]
    fn errors_name_field_not_value() {
        let e = env(&[("BAD", "sec\r\nx: y"), ("K", "supersecret")]);
        let err = auth(r#"{"type":"openai","api_key":"${env:MISSING}"}"#)
            .render("accounts.oa.auth", &e)
            .unwrap_err();
        assert_eq!(
            err,
            "accounts.oa.auth.api_key: environment variable MISSING is not set"
        );
        let err = auth(r#"{"type":"bearer","token":"${env:BAD}"}"#)
            .render("x", &e)
            .unwrap_err();
        assert!(err.contains("CR, LF") && !err.contains("sec"), "{err}");
        let err = auth(r#"{"type":"basic","username":"a:b","password":"${env:K}"}"#)
            .render("x", &e)
            .unwrap_err();
        assert!(!err.contains("supersecret"));
        assert!(
            auth(r#"{"type":"header","name":"x-aimesh-team","value":"v"}"#)
                .render("x", &e)
                .is_err()
        );
        assert!(auth(r#"{"type":"header","name":"bad name","value":"v"}"#)
            .render("x", &e)
            .is_err());
        assert!(
            serde_json::from_str::<AuthConfig>(r#"{"type":"openai","api_key":"k","x":1}"#).is_err()
        );
        assert!(resolve("f", "${env:A", &e).is_err());
        assert!(resolve("f", "${env:A-B}", &e).is_err());
        assert_eq!(resolve("f", "$x ${env:K}$", &e).unwrap(), "$x supersecret$");
    }
}
