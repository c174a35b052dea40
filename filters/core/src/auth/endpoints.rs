//! Endpoint grants: which requests that bring no model to check a policy may make.
//!
//! A model allow-list only means something if the requests it cannot see are governed too:
//! `GET /v1/files`, `DELETE /v1/files/{id}` or a batch cancel name no model, yet reach the
//! provider with its credential. So a request auth cannot check a model on (no body, or a path
//! whose body it does not read) is admitted only when the policy's `endpoints` grant it; a key
//! with a partial model list grants none by default.

use crate::api::{self, Model};
use crate::endpoints::path::{check_base_path, is_proxy_path};

pub use aimesh_config::auth::grants::{validate_endpoint, METHODS};

/// Why a request without a model to check was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A `POST` to an inference endpoint with no body (400 `missing_model`).
    MissingBody,
    /// The policy's `endpoints` do not grant this method and path (403).
    NotGranted,
}

/// One compiled grant: an optional method and a path covering itself and everything below it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Grant {
    method: Option<String>,
    path: String,
}

/// A compiled `endpoints` list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointAllow {
    any: bool,
    grants: Vec<Grant>,
}

impl EndpointAllow {
    /// Every endpoint (`["*"]`).
    pub fn all() -> Self {
        Self {
            any: true,
            grants: Vec::new(),
        }
    }

    /// Compiles entries already checked by [`validate_endpoint`].
    pub fn new<S: AsRef<str>>(entries: &[S]) -> Self {
        let mut out = Self::default();
        for e in entries {
            let e = e.as_ref();
            if e == "*" {
                out.any = true;
                continue;
            }
            let (method, path) = match e.split_once(' ') {
                Some((m, p)) => (Some(m.to_string()), p),
                None => (None, e),
            };
            out.grants.push(Grant {
                method,
                path: path.trim_end_matches('/').to_string(),
            });
        }
        out
    }

    /// Whether `method` on `path` (query included or not) is granted. A grant covers its path
    /// and everything below it on a segment boundary (`/v1/files` covers `/v1/files/x`, not
    /// `/v1/filesx`). A path that is not plain (dot segments, encoded slashes or dots, ...)
    /// matches no grant but `*`: it could mean another path to the server behind.
    pub fn allows(&self, method: &str, path: &str) -> bool {
        if self.any {
            return true;
        }
        let path = path_only(path);
        if check_base_path(path).is_err() {
            return false;
        }
        self.grants.iter().any(|g| {
            g.method.as_deref().is_none_or(|m| m == method)
                && path
                    .strip_prefix(g.path.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    }
}

/// The path without its query.
fn path_only(path: &str) -> &str {
    path.split(['?', '#']).next().unwrap_or("")
}

/// Decides a request that brings no model to check: it has no body, or auth does not read its
/// body (not under `/v1/`). `Ok` lets it through on the key alone.
///
/// Always allowed: custom endpoints (`/proxy-api/...`, governed by header-auth's own `allow`
/// lists) and `GET`/`HEAD` of the model catalogue (`/v1/models`, `/v1/models/{id}`).
pub fn admit_without_model(
    endpoints: &EndpointAllow,
    method: &str,
    path: &str,
) -> Result<(), Refusal> {
    if is_proxy_path(path) {
        return Ok(());
    }
    let plain = path_only(path);
    // Inference endpoints: a `POST` to one always carries a body naming the model, so one
    // without a body is refused instead of forwarded.
    let inference = api::lookup(plain).is_some_and(|e| e.model != Model::Absent);
    if method == "POST" && inference {
        return Err(Refusal::MissingBody);
    }
    if is_model_catalogue(method, plain) || endpoints.allows(method, path) {
        return Ok(());
    }
    Err(Refusal::NotGranted)
}

fn is_model_catalogue(method: &str, path: &str) -> bool {
    if method != "GET" && method != "HEAD" {
        return false;
    }
    let Some(rest) = path.strip_prefix("/v1/models") else {
        return false;
    };
    // `/v1/models`, `/v1/models/` or `/v1/models/{id}`: one id segment, nothing that walks away.
    rest.is_empty() || rest == "/" || (rest.starts_with('/') && check_base_path(path).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_cover_a_path_and_what_is_below_it() {
        let a = EndpointAllow::new(&["/v1/files", "GET /v1/batches/"]);
        assert!(a.allows("GET", "/v1/files"));
        assert!(a.allows("DELETE", "/v1/files/file-1"));
        assert!(a.allows("GET", "/v1/files/file-1/content?x=1"));
        assert!(!a.allows("GET", "/v1/filesx"));
        assert!(a.allows("GET", "/v1/batches"));
        assert!(a.allows("GET", "/v1/batches/b1"));
        assert!(!a.allows("POST", "/v1/batches/b1/cancel"));
        assert!(!a.allows("GET", "/v1/fine_tuning/jobs"));
        assert!(EndpointAllow::all().allows("DELETE", "/anything/../x"));
        assert!(!EndpointAllow::default().allows("GET", "/v1/files"));
    }

    #[test]
    fn paths_that_walk_away_match_no_grant() {
        let a = EndpointAllow::new(&["/v1/files"]);
        for p in [
            "/v1/files/../../admin",
            "/v1/files/%2e%2e/admin",
            "/v1/files/.%2E/admin",
            "/v1/files/a%2fb",
            "/v1/files/a%5cb",
            "/v1/files/a\\..\\b",
            "/v1/files//x",
        ] {
            assert!(!a.allows("GET", p), "{p}");
        }
    }

    #[test]
    fn requests_without_a_model() {
        let none = EndpointAllow::default();
        let files = EndpointAllow::new(&["/v1/files"]);
        let ok = |a: &EndpointAllow, m: &str, p: &str| admit_without_model(a, m, p);
        assert_eq!(ok(&none, "GET", "/v1/models"), Ok(()));
        assert_eq!(ok(&none, "GET", "/v1/models/"), Ok(()));
        assert_eq!(ok(&none, "HEAD", "/v1/models/gpt-4o?x"), Ok(()));
        assert_eq!(
            ok(&none, "DELETE", "/v1/models/ft:gpt"),
            Err(Refusal::NotGranted)
        );
        assert_eq!(
            ok(&none, "GET", "/v1/models/../files"),
            Err(Refusal::NotGranted)
        );
        assert_eq!(ok(&none, "GET", "/v1/files"), Err(Refusal::NotGranted));
        assert_eq!(ok(&files, "DELETE", "/v1/files/f1"), Ok(()));
        assert_eq!(ok(&none, "GET", "/mcp/docs"), Err(Refusal::NotGranted));
        assert_eq!(ok(&none, "POST", "/proxy-api/a/ep/x"), Ok(()));
        for p in [
            "/v1/chat/completions",
            "/v1/embeddings/",
            "/v1/responses?x=1",
        ] {
            assert_eq!(ok(&none, "POST", p), Err(Refusal::MissingBody), "{p}");
            // Even a key granted everything may not send an inference request without a body.
            assert_eq!(
                ok(&EndpointAllow::all(), "POST", p),
                Err(Refusal::MissingBody)
            );
        }
        assert_eq!(ok(&EndpointAllow::all(), "GET", "/v1/responses/r1"), Ok(()));
    }

    #[test]
    fn entries_are_validated() {
        for e in [
            "*",
            "/",
            "/v1/files",
            "GET /v1/batches",
            "DELETE /v1/files/",
        ] {
            assert!(validate_endpoint(e).is_ok(), "{e}");
        }
        for e in [
            "",
            "v1/files",
            "get /v1/files",
            "FETCH /v1/files",
            "/v1/files/*",
            "/v1/files?x",
            "/v1/../admin",
            "/v1/%2e%2e",
            "/v1//files",
            "/v1/files//",
            "GET  /v1/files",
        ] {
            assert!(validate_endpoint(e).is_err(), "{e:?}");
        }
    }
}
