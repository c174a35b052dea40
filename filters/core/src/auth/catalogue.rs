//! The gateway's model catalogue: which models it serves, where each provider model goes, and
//! the `GET /v1/models` answers built from it.
//!
//! Why auth routes provider models: it is the filter that parses the body, so it knows the model
//! first. It publishes the choice as `x-aimesh-cluster` (the route Envoy picks by
//! `cluster_header`) and `x-aimesh-backend` (the account header-auth keys the request with), the
//! same pair virtual-model sets for its targets. A route matching the model itself could not
//! work: `x-aimesh-model` is an internal fact, which header-auth strips before the router (and
//! the one-filter build never writes into Envoy's map), so a route matching it never matches.

use std::collections::HashMap;

use serde::Serialize;

use super::models::ModelAllow;
pub use aimesh_config::auth::catalogue::{CatalogueConfig, CatalogueModel, ModelRoute};

/// Where a requested model goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination<'a> {
    /// A provider model, or an unlisted one with a default route.
    Route(&'a ModelRoute),
    /// A catalogue model another filter routes (a virtual model).
    Elsewhere,
    /// Not served here.
    Unknown,
}

/// The compiled catalogue.
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    models: Vec<CatalogueModel>,
    by_id: HashMap<String, usize>,
    default_route: Option<ModelRoute>,
}

/// A model object of OpenAI's model list.
#[derive(Serialize)]
struct ModelObject<'a> {
    id: &'a str,
    object: &'static str,
    /// The gateway does not know when a provider created a model; 0 keeps the field an integer.
    created: u64,
    owned_by: &'a str,
}

#[derive(Serialize)]
struct ModelList<'a> {
    object: &'static str,
    data: Vec<ModelObject<'a>>,
}

impl Catalogue {
    /// Compiles a config that passed [`CatalogueConfig::check`] (a duplicate id keeps the first).
    pub fn new(c: CatalogueConfig) -> Self {
        let mut by_id = HashMap::with_capacity(c.models.len());
        for (i, m) in c.models.iter().enumerate() {
            by_id.entry(m.id.clone()).or_insert(i);
        }
        Self {
            models: c.models,
            by_id,
            default_route: c.default_route,
        }
    }

    /// Where a request for `model` goes.
    pub fn destination(&self, model: &str) -> Destination<'_> {
        match self.by_id.get(model).and_then(|&i| self.models.get(i)) {
            Some(m) => m
                .route
                .as_ref()
                .map_or(Destination::Elsewhere, Destination::Route),
            None => self
                .default_route
                .as_ref()
                .map_or(Destination::Unknown, Destination::Route),
        }
    }

    /// Where a request that names no model goes (`GET /v1/files`, ...): the default route.
    pub fn default_route(&self) -> Option<&ModelRoute> {
        self.default_route.as_ref()
    }

    /// `GET /v1/models`: the catalogue's models `allow` admits, in OpenAI's list shape.
    pub fn list(&self, allow: &ModelAllow) -> String {
        let data = self
            .models
            .iter()
            .filter(|m| allow.allows(&m.id))
            .map(object)
            .collect();
        to_json(&ModelList {
            object: "list",
            data,
        })
    }

    /// `GET /v1/models/{id}`: the model object, or `None` when the catalogue has no such model
    /// or `allow` does not admit it (one answer for both, so a key learns nothing of models it
    /// may not use).
    pub fn retrieve(&self, allow: &ModelAllow, id: &str) -> Option<String> {
        let m = self.models.get(*self.by_id.get(id)?)?;
        allow.allows(id).then(|| to_json(&object(m)))
    }
}

fn object(m: &CatalogueModel) -> ModelObject<'_> {
    ModelObject {
        id: &m.id,
        object: "model",
        created: 0,
        owned_by: &m.owned_by,
    }
}

fn to_json<T: Serialize>(v: &T) -> String {
    // Plain strings and integers always serialize; an empty list keeps the reply valid anyway.
    serde_json::to_string(v).unwrap_or_else(|_| String::from(r#"{"object":"list","data":[]}"#))
}

/// A request for the model catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelsRequest {
    /// `GET /v1/models`.
    List,
    /// `GET /v1/models/{id}` (id percent-decoded; `None` when it does not decode to UTF-8).
    Retrieve(Option<String>),
    /// Another method on those paths (`DELETE /v1/models/{id}` deletes a fine-tuned model at
    /// the provider: through a shared provider account no key may do that).
    OtherMethod,
}

/// Classifies a request: `None` when it is not for `/v1/models` or `/v1/models/{id}`.
pub fn models_request(method: &str, path: &str) -> Option<ModelsRequest> {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let rest = path.strip_prefix("/v1/models")?;
    let id = match rest.strip_prefix('/') {
        None if rest.is_empty() => None,
        None => return None,
        Some("") => None,
        Some(id) => Some(id),
    };
    if method != "GET" && method != "HEAD" {
        return Some(ModelsRequest::OtherMethod);
    }
    Some(match id {
        None => ModelsRequest::List,
        Some(id) => ModelsRequest::Retrieve(percent_decode(id)),
    })
}

/// Decodes `%XX` escapes (SDKs escape `/` and `:` in ids such as `openai/gpt-4o`).
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn catalogue(default: bool) -> Catalogue {
        let mut c: CatalogueConfig = serde_json::from_value(json!({"models": [
            {"id": "private-llm", "owned_by": "gpu",
             "route": {"cluster": "provider.gpu", "backend": "gpu"}},
            {"id": "team/a", "owned_by": "openai",
             "route": {"cluster": "provider.openai", "backend": "openai"}},
            {"id": "smart", "owned_by": "aimesh"},
        ]}))
        .unwrap();
        if default {
            c.default_route = Some(ModelRoute {
                cluster: "provider.openai".into(),
                backend: "openai".into(),
            });
        }
        c.check().unwrap();
        Catalogue::new(c)
    }

    #[test]
    fn provider_models_never_take_the_default_route() {
        for default in [true, false] {
            let c = catalogue(default);
            let Destination::Route(r) = c.destination("private-llm") else {
                panic!("private-llm must be routed");
            };
            assert_eq!(
                (r.cluster.as_str(), r.backend.as_str()),
                ("provider.gpu", "gpu")
            );
            assert_eq!(c.destination("smart"), Destination::Elsewhere);
            // Names are exact: a near miss is another (unlisted) model.
            assert_ne!(c.destination("Private-llm"), c.destination("private-llm"));
        }
        let with = catalogue(true);
        assert!(
            matches!(with.destination("gpt-x"), Destination::Route(r) if r.backend == "openai")
        );
        assert_eq!(catalogue(false).destination("gpt-x"), Destination::Unknown);
        assert!(catalogue(false).default_route().is_none());
    }

    fn ids(body: &str) -> Vec<String> {
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["object"], "list");
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                assert_eq!(m["object"], "model");
                assert!(m["created"].is_u64() && m["owned_by"].is_string());
                m["id"].as_str().unwrap().to_string()
            })
            .collect()
    }

    #[test]
    fn lists_what_the_key_may_use() {
        let c = catalogue(true);
        assert_eq!(
            ids(&c.list(&ModelAllow::new(&["*"]))),
            ["private-llm", "team/a", "smart"]
        );
        assert_eq!(ids(&c.list(&ModelAllow::new(&["smart"]))), ["smart"]);
        assert_eq!(ids(&c.list(&ModelAllow::new(&["team/*"]))), ["team/a"]);
        assert!(ids(&c.list(&ModelAllow::new::<&str>(&[]))).is_empty());
    }

    #[test]
    fn retrieves_one_model_or_nothing() {
        let c = catalogue(true);
        let one: Value =
            serde_json::from_str(&c.retrieve(&ModelAllow::new(&["*"]), "smart").unwrap()).unwrap();
        assert_eq!(
            one,
            json!({"id": "smart", "object": "model", "created": 0, "owned_by": "aimesh"})
        );
        let only_smart = ModelAllow::new(&["smart"]);
        assert!(c.retrieve(&only_smart, "private-llm").is_none());
        assert!(c.retrieve(&ModelAllow::new(&["*"]), "nope").is_none());
    }

    #[test]
    fn classifies_model_requests() {
        use ModelsRequest::*;
        assert_eq!(models_request("GET", "/v1/models"), Some(List));
        assert_eq!(models_request("GET", "/v1/models/?x=1"), Some(List));
        assert_eq!(models_request("HEAD", "/v1/models"), Some(List));
        assert_eq!(
            models_request("GET", "/v1/models/openai%2Fgpt-4o"),
            Some(Retrieve(Some("openai/gpt-4o".into())))
        );
        assert_eq!(
            models_request("GET", "/v1/models/team/a?x"),
            Some(Retrieve(Some("team/a".into())))
        );
        assert_eq!(
            models_request("GET", "/v1/models/%ff"),
            Some(Retrieve(None))
        );
        assert_eq!(models_request("GET", "/v1/models/%4"), Some(Retrieve(None)));
        assert_eq!(
            models_request("DELETE", "/v1/models/ft:x"),
            Some(OtherMethod)
        );
        assert_eq!(models_request("POST", "/v1/models"), Some(OtherMethod));
        assert_eq!(models_request("GET", "/v1/modelsx"), None);
        assert_eq!(models_request("GET", "/v1/chat/completions"), None);
    }

    #[test]
    fn errors_name_the_field() {
        let err = |v: Value| {
            serde_json::from_value::<CatalogueConfig>(v)
                .map_err(|e| e.to_string())
                .and_then(|c| c.check().map_err(|e| e.to_string()))
                .unwrap_err()
        };
        let route = json!({"cluster": "provider.a", "backend": "a"});
        assert!(err(json!({"models": [{"id": "", "owned_by": "a"}]}))
            .starts_with("catalogue.models[0].id:"));
        assert!(err(json!({"models": [{"id": "m", "owned_by": "a"},
                                      {"id": "m", "owned_by": "b"}]}))
        .starts_with("catalogue.models[1].id: duplicate"));
        assert!(err(json!({"models": [{"id": "m", "owned_by": "a",
                                       "route": {"cluster": "a b", "backend": "a"}}]}))
        .starts_with("catalogue.models[0].route.cluster:"));
        assert!(
            err(json!({"default_route": {"cluster": "c", "backend": ""}}))
                .starts_with("catalogue.default_route.backend:")
        );
        assert!(err(json!({"models": [], "colour": 1})).contains("unknown field"));
        assert!(
            err(json!({"models": [{"id": "m", "owned_by": "a", "route": route, "x": 1}]}))
                .contains("unknown field")
        );
    }
}
