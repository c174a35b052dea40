//! Native tests of auth's callback sequences through the in-memory host: identity, facts,
//! JWT claims and the model catalogue. Body handling: `tests_body.rs`; limits: `tests_limits.rs`.

use aimesh_core::headers as names;
use aimesh_host::memory::{Exchange, World};
use aimesh_host::{Action, Facts, StageError, StageRoot};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::stage::{is_model_list, presented_key};
use crate::STAGE;

/// The key every test presents, and its config entry's hash.
pub(crate) const KEY: &str = "sk-test-alice";

pub(crate) fn hash(key: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(key.as_bytes())))
}

/// A configured auth stage in `world`.
pub(crate) fn root(world: &World, config: Value) -> Box<dyn StageRoot> {
    match (STAGE.configure)(config.to_string().as_bytes(), world) {
        Ok(r) => r,
        Err(e) => panic!("config refused: {e}"),
    }
}

/// One key `alice` (team `research`) with `extra` fields merged in.
pub(crate) fn alice(extra: Value) -> Value {
    let mut key = json!({"id": "alice", "hash": hash(KEY), "team": "research"});
    if let (Some(k), Some(e)) = (key.as_object_mut(), extra.as_object()) {
        k.extend(e.clone());
    }
    json!({ "keys": [key] })
}

/// A request through `root` with the default headers of a keyed POST plus `extra`.
pub(crate) fn request(
    world: &World,
    root: &dyn StageRoot,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
) -> Exchange {
    let mut hs = vec![(":method", method), (":path", path)];
    hs.extend_from_slice(extra);
    let stage = root.new_stream().into_iter().collect();
    Exchange::new(world, stage, &hs)
}

pub(crate) const BEARER: (&str, &str) = ("authorization", "Bearer sk-test-alice");

pub(crate) fn chat(model: &str) -> Vec<u8> {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
        .to_string()
        .into_bytes()
}

/// The local reply's status and error code.
pub(crate) fn refused(ex: &Exchange) -> Option<(u16, String)> {
    let r = ex.reply()?;
    let code = r.json()["error"]["code"].as_str().unwrap_or("").to_string();
    Some((r.status, code))
}

#[test]
fn a_bad_config_is_refused_naming_the_field_and_never_echoing_the_hash() {
    let w = World::default();
    let raw = json!({"keys": [{"id": "a", "hash": "sha256:zz"}]}).to_string();
    let Err(StageError::Config(msg)) = (STAGE.configure)(raw.as_bytes(), &w) else {
        panic!("accepted a bad hash");
    };
    assert!(msg.starts_with("keys[0].hash:"), "{msg}");
    assert!(!msg.contains("zz"), "{msg}");
    let Err(StageError::Config(msg)) = (STAGE.configure)(br#"{"kyes": []}"#, &w) else {
        panic!("accepted an unknown field");
    };
    assert!(msg.contains("kyes"), "{msg}");
    assert_eq!(STAGE.name, "auth");
}

#[test]
fn a_known_key_publishes_identity_and_body_facts_and_strips_credentials_and_forgeries() {
    let w = World::default();
    let r = root(&w, alice(json!({})));
    let body = json!({"model": "gpt-4o", "stream": true, "stream_options": {"include_usage": true},
                      "max_tokens": 7, "messages": []})
    .to_string();
    let mut ex = request(
        &w,
        r.as_ref(),
        "POST",
        "/v1/chat/completions",
        &[
            BEARER,
            ("x-api-key", "other"),
            (names::MODEL, "forged"),
            (names::KEY_ID, "root"),
        ],
    );
    // A forged fact the host decoded from the client's headers (five-filter build).
    ex.host.facts.model = Some("forged".into());
    assert_eq!(ex.request_headers(false), Action::Pause);
    assert!(!ex.host.request().has(names::MODEL) && !ex.host.request().has(names::KEY_ID));
    for h in ["authorization", "x-api-key"] {
        assert!(!ex.host.request().has(h), "{h} left in the request");
    }
    assert_eq!(ex.host.facts.model, None, "forged fact survived");
    assert_eq!(ex.host.facts.key_id.as_deref(), Some("alice"));
    assert_eq!(
        ex.host.state_text("aimesh.key_id").as_deref(),
        Some("alice")
    );
    assert_eq!(
        ex.host.state_text("aimesh.team").as_deref(),
        Some("research")
    );
    assert_eq!(ex.request_chunk(body.as_bytes(), true), Action::Continue);
    assert_eq!(
        ex.sent_upstream,
        body.as_bytes(),
        "auth never changes the body"
    );
    let want = Facts {
        key_id: Some("alice".into()),
        team: Some("research".into()),
        model: Some("gpt-4o".into()),
        stream: Some(true),
        include_usage: Some(true),
        max_tokens: Some(7),
        ..Facts::default()
    };
    assert_eq!(ex.host.facts, want);
    assert_eq!(w.metrics.counter("aimesh.auth.allowed"), 1);
    assert!(ex.reply().is_none());
}

#[test]
fn a_missing_unknown_or_non_bearer_key_gets_401_before_the_body() {
    let w = World::default();
    let r = root(&w, alice(json!({})));
    for hs in [
        vec![],
        vec![("authorization", "Bearer sk-wrong")],
        vec![("authorization", "Basic sk-test-alice")],
        vec![("authorization", "sk-test-alice")],
    ] {
        let mut ex = request(&w, r.as_ref(), "POST", "/v1/chat/completions", &hs);
        assert_eq!(ex.request_headers(false), Action::Pause);
        assert_eq!(
            refused(&ex),
            Some((401, "invalid_api_key".into())),
            "{hs:?}"
        );
        assert!(!ex.host.request().has("authorization"));
        assert_eq!(ex.host.facts, Facts::default());
        // A body Envoy still delivers after the reply is never read: no second reply.
        ex.request_chunk(&chat("gpt-4o"), true);
        assert_eq!(ex.host.replies.len(), 1);
        assert_eq!(ex.host.facts.model, None);
        ex.log();
    }
    assert_eq!(w.metrics.counter("aimesh.auth.denied.invalid_key"), 4);
    assert_eq!(w.metrics.counter("aimesh.auth.allowed"), 0);
}

#[test]
fn anthropic_and_azure_key_headers_present_the_key() {
    assert_eq!(
        presented_key(&hs(&[("x-api-key", " k1 ")])).as_deref(),
        Some("k1")
    );
    assert_eq!(
        presented_key(&hs(&[("api-key", "k2")])).as_deref(),
        Some("k2")
    );
    assert_eq!(
        presented_key(&hs(&[("authorization", "bearer  k3 ")])).as_deref(),
        Some("k3")
    );
    // Authorization wins, even when it presents nothing usable.
    assert_eq!(
        presented_key(&hs(&[("authorization", "Basic x"), ("x-api-key", "k")])),
        None
    );
    let latin1 = aimesh_host::Headers::from_pairs(vec![("x-api-key".into(), vec![0xe9])]);
    assert_eq!(presented_key(&latin1), None);
    let w = World::default();
    let r = root(&w, alice(json!({})));
    let mut ex = request(&w, r.as_ref(), "GET", "/v1/files", &[("api-key", KEY)]);
    assert_eq!(ex.request_headers(true), Action::Continue);
    assert!(!ex.host.request().has("api-key"));
}

fn hs(pairs: &[(&str, &str)]) -> aimesh_host::Headers {
    aimesh_host::Headers::from_pairs(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect(),
    )
}

const PAYLOAD: &str = "metadata.filter_metadata.envoy.filters.http.jwt_authn.jwt_payload";

fn jwt_world(sub: &str, groups: Option<Vec<u8>>) -> World {
    let w = World::default();
    let mut p = w.properties.borrow_mut();
    p.insert(PAYLOAD.into(), b"{}".to_vec());
    p.insert(format!("{PAYLOAD}.sub"), sub.as_bytes().to_vec());
    if let Some(g) = groups {
        p.insert(format!("{PAYLOAD}.groups"), g);
    }
    drop(p);
    w
}

fn jwt_config() -> Value {
    let mut c = alice(json!({}));
    c["jwt"] = json!({"payload_key": "jwt_payload", "rules": [
        {"id": "ml", "group": "ml-team", "team": "ml"},
        {"id": "bob", "sub": "bob@example.com"}]});
    c
}

#[test]
fn a_verified_jwt_maps_to_its_rule_and_one_no_rule_maps_is_401_even_with_a_key() {
    let w = jwt_world("carol", Some(b"ml-team".to_vec()));
    let r = root(&w, jwt_config());
    let mut ex = request(&w, r.as_ref(), "GET", "/v1/files", &[]);
    assert_eq!(ex.request_headers(true), Action::Continue);
    assert_eq!(ex.host.facts.key_id.as_deref(), Some("ml"));
    assert_eq!(ex.host.facts.team.as_deref(), Some("ml"));
    assert_eq!(w.metrics.counter("aimesh.auth.jwt_authenticated"), 1);

    let w = jwt_world("bob@example.com", None);
    let r = root(&w, jwt_config());
    let mut ex = request(&w, r.as_ref(), "GET", "/v1/files", &[]);
    ex.request_headers(true);
    assert_eq!(ex.host.facts.key_id.as_deref(), Some("bob"));

    let w = jwt_world("mallory", Some(b"other".to_vec()));
    let r = root(&w, jwt_config());
    let mut ex = request(&w, r.as_ref(), "GET", "/v1/files", &[BEARER]);
    ex.request_headers(true);
    assert_eq!(refused(&ex), Some((401, "invalid_api_key".into())));
    assert_eq!(w.metrics.counter("aimesh.auth.jwt_authenticated"), 0);

    // No verified token in the metadata: the API key decides.
    let w = World::default();
    let r = root(&w, jwt_config());
    let mut ex = request(&w, r.as_ref(), "GET", "/v1/files", &[BEARER]);
    assert_eq!(ex.request_headers(true), Action::Continue);
    assert_eq!(ex.host.facts.key_id.as_deref(), Some("alice"));
}

fn catalogue(extra: Value) -> Value {
    let mut c = alice(extra);
    c["catalogue"] = json!({"models": [
        {"id": "llama", "owned_by": "gpu", "route": {"cluster": "provider.gpu", "backend": "gpu"}},
        {"id": "smart", "owned_by": "aimesh"},
        {"id": "secret", "owned_by": "gpu", "route": {"cluster": "provider.gpu", "backend": "gpu"}}]});
    c
}

#[test]
fn the_catalogue_answers_model_requests_itself_with_what_the_key_may_use() {
    let w = World::default();
    let r = root(&w, catalogue(json!({"models": ["llama", "smart"]})));
    let mut ex = request(&w, r.as_ref(), "GET", "/v1/models", &[BEARER]);
    assert_eq!(ex.request_headers(true), Action::Pause);
    let reply = ex
        .reply()
        .cloned()
        .unwrap_or_else(|| panic!("not answered"));
    assert_eq!(reply.status, 200);
    let ids: Vec<String> = reply.json()["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["id"].as_str().map(String::from))
        .collect();
    assert_eq!(ids, ["llama", "smart"]);
    for (method, path, want) in [
        ("GET", "/v1/models/secret", (404, "model_not_found")),
        ("GET", "/v1/models/nope", (404, "model_not_found")),
        ("POST", "/v1/models", (405, "method_not_allowed")),
    ] {
        let mut ex = request(&w, r.as_ref(), method, path, &[BEARER]);
        ex.request_headers(true);
        assert_eq!(
            refused(&ex),
            Some((want.0, want.1.into())),
            "{method} {path}"
        );
    }
    let mut ex = request(&w, r.as_ref(), "GET", "/v1/models/llama", &[BEARER]);
    ex.request_headers(true);
    assert_eq!(
        ex.reply().map(|r| r.json()["id"].clone()),
        Some(json!("llama"))
    );
    assert_eq!(w.metrics.counter("aimesh.auth.catalogue_answered"), 5);
}

#[test]
fn the_catalogue_routes_by_model_in_the_body_callback_and_refuses_unknown_models() {
    let w = World::default();
    let r = root(&w, catalogue(json!({})));
    let mut ex = request(&w, r.as_ref(), "POST", "/v1/chat/completions", &[BEARER]);
    ex.request_headers(false);
    assert_eq!(
        ex.host.facts.cluster, None,
        "routed before the body was read"
    );
    assert_eq!(ex.request_chunk(&chat("llama"), true), Action::Continue);
    assert_eq!(ex.host.facts.cluster.as_deref(), Some("provider.gpu"));
    assert_eq!(ex.host.facts.backend.as_deref(), Some("gpu"));

    // A virtual model is left to virtual-model.
    let mut ex = request(&w, r.as_ref(), "POST", "/v1/chat/completions", &[BEARER]);
    ex.request(&chat("smart"));
    assert!(ex.reply().is_none() && ex.host.facts.cluster.is_none());

    let mut ex = request(&w, r.as_ref(), "POST", "/v1/chat/completions", &[BEARER]);
    ex.request(&chat("gpt-4o"));
    assert_eq!(refused(&ex), Some((404, "model_not_found".into())));
    assert!(ex.sent_upstream.is_empty());
    assert_eq!(w.metrics.counter("aimesh.auth.denied.model_not_found"), 1);
}

#[test]
fn the_default_route_takes_unlisted_models_and_requests_without_a_model() {
    let w = World::default();
    let mut c = catalogue(json!({}));
    c["catalogue"]["default_route"] = json!({"cluster": "provider.openai", "backend": "openai"});
    let r = root(&w, c);
    let mut ex = request(&w, r.as_ref(), "POST", "/v1/chat/completions", &[BEARER]);
    ex.request(&chat("gpt-4o"));
    assert_eq!(ex.host.facts.cluster.as_deref(), Some("provider.openai"));
    let mut ex = request(&w, r.as_ref(), "GET", "/v1/files", &[BEARER]);
    assert_eq!(ex.request_headers(true), Action::Continue);
    assert_eq!(ex.host.facts.backend.as_deref(), Some("openai"));
    // Not a `/v1/` model-carrying path: no route.
    let mut ex = request(&w, r.as_ref(), "POST", "/proxy-api/x", &[BEARER]);
    assert_eq!(ex.request_headers(false), Action::Continue);
    assert_eq!(ex.host.facts.cluster, None);
}

#[test]
fn without_a_catalogue_the_providers_model_list_is_filtered_however_it_is_split() {
    assert!(is_model_list("GET", "/v1/models/?x=1") && !is_model_list("POST", "/v1/models"));
    let w = World::default();
    let r = root(&w, alice(json!({"models": ["gpt-4o"]})));
    let list = json!({"object": "list", "data": [{"id": "gpt-4o"}, {"id": "o1"}]}).to_string();
    for split in [1, 7, list.len()] {
        let mut ex = request(
            &w,
            r.as_ref(),
            "GET",
            "/v1/models",
            &[BEARER, ("accept-encoding", "gzip")],
        );
        assert_eq!(ex.request_headers(true), Action::Continue);
        assert!(!ex.host.request().has("accept-encoding"));
        let hs = [(":status", "200"), ("content-length", "60")];
        assert_eq!(ex.response(&hs, list.as_bytes(), split), Action::Continue);
        assert!(!ex.host.response().has("content-length"));
        let got: Value = serde_json::from_slice(&ex.sent_downstream).unwrap_or_default();
        assert_eq!(got["data"], json!([{"id": "gpt-4o"}]), "split {split}");
    }
    // An error answer passes untouched.
    let mut ex = request(&w, r.as_ref(), "GET", "/v1/models", &[BEARER]);
    ex.request_headers(true);
    ex.response(&[(":status", "500"), ("content-length", "5")], b"oops!", 2);
    assert_eq!(ex.sent_downstream, b"oops!");
    assert!(ex.host.response().has("content-length"));
}

#[test]
fn an_anthropic_client_gets_anthropic_errors_and_its_messages_body_is_read() {
    let w = World::default();
    let r = root(&w, alice(json!({"models": ["claude-sonnet-4"]})));
    // A wrong key in `x-api-key`, as the anthropic SDK sends it.
    let mut ex = request(
        &w,
        r.as_ref(),
        "POST",
        "/v1/messages",
        &[("x-api-key", "sk-wrong")],
    );
    ex.request_headers(false);
    let reply = ex.reply().expect("refused");
    let v = reply.json();
    assert_eq!(reply.status, 401);
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "authentication_error");
    assert_eq!(v["error"]["details"]["error_code"], "invalid_api_key");
    // The right key in `x-api-key`: a Messages body (content blocks, `max_tokens`, `system`)
    // yields its facts; a model outside the list is refused in Anthropic's shape.
    for (model, status) in [("claude-sonnet-4", None), ("claude-opus-4", Some(403))] {
        let body = json!({"model": model, "max_tokens": 64, "stream": true,
            "system": [{"type": "text", "text": "be brief"}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]})
        .to_string();
        let mut ex = request(
            &w,
            r.as_ref(),
            "POST",
            "/v1/messages?beta=true",
            &[("x-api-key", KEY)],
        );
        ex.request_headers(false);
        assert_eq!(ex.host.facts.dialect, Some(aimesh_core::Dialect::Anthropic));
        ex.request_chunk(body.as_bytes(), true);
        match status {
            None => {
                assert!(ex.reply().is_none());
                assert_eq!(ex.host.facts.model.as_deref(), Some(model));
                assert_eq!(ex.host.facts.stream, Some(true));
                assert_eq!(ex.host.facts.max_tokens, Some(64));
                assert!(!ex.host.request().has("x-api-key"));
            }
            Some(s) => {
                let reply = ex.reply().expect("refused");
                assert_eq!(reply.status, s);
                assert_eq!(reply.json()["error"]["type"], "permission_error");
            }
        }
    }
}
