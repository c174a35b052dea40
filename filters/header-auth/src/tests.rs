//! The stage through the in-memory host: credentials per account, stripping, custom-endpoint
//! routing and refusals, the upstream role per attempt, and scrubbing of replies.

use std::collections::HashMap;

use aimesh_core::endpoints::{EndpointError, Env as Vars};
use aimesh_host::memory::{Exchange, World};
use aimesh_host::{Action, StageRoot};

use crate::stage::metric_for;

const KEY: &str = "sk-oa-secret-1234";

const CONFIG: &str = r#"{
  "default_account": "openai-main",
  "egress": {"hosts": ["*.example.com", "api.openai.com"]},
  "accounts": {
    "openai-main": {"auth": {"type": "openai", "api_key": "${env:OA}"}},
    "claude": {"auth": {"type": "anthropic", "api_key": "${env:AN}"}},
    "speech": {
      "auth": {"type": "header", "name": "Ocp-Apim-Subscription-Key", "value": "${env:SUB}"},
      "endpoints": {
        "tts": {"base_url": "https://tts.example.com/cognitiveservices/v1", "cluster": "speech-tts",
                "allow": {"teams": ["voice"]}}
      }
    }
  }
}"#;

struct MapVars(HashMap<String, String>);

impl Vars for MapVars {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

fn vars() -> MapVars {
    MapVars(
        [
            ("OA", KEY),
            ("AN", "sk-an-secret-5678"),
            ("SUB", "sub-secret-9"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    )
}

fn root(config: &str) -> Box<dyn StageRoot> {
    crate::configure_with(config.as_bytes(), &vars()).unwrap()
}

fn upstream_config() -> String {
    CONFIG.replacen('{', r#"{"role": "upstream","#, 1)
}

fn exchange(world: &World, root: &dyn StageRoot, headers: &[(&str, &str)]) -> Exchange {
    Exchange::new(world, vec![root.new_stream().unwrap()], headers)
}

#[test]
fn a_request_leaves_with_its_accounts_credentials_and_none_of_the_clients() {
    let world = World::default();
    let r = root(CONFIG);
    let mut ex = exchange(
        &world,
        r.as_ref(),
        &[
            (":path", "/v1/messages"),
            ("authorization", "Bearer client-key"),
            ("x-api-key", "client-key"),
            ("x-aimesh-team", "forged"),
            ("x-aimesh-cluster", "provider-claude"),
            ("content-type", "application/json"),
        ],
    );
    ex.host.facts.backend = Some("claude".into());
    assert_eq!(ex.request_headers(true), Action::Continue);
    let hs = ex.host.request();
    assert_eq!(hs.get("x-api-key"), Some("sk-an-secret-5678"));
    assert_eq!(hs.get("anthropic-version"), Some("2023-06-01"));
    assert!(!hs.has("authorization") && !hs.has("x-aimesh-team"));
    // The route still needs the cluster; it removes it itself.
    assert_eq!(hs.get("x-aimesh-cluster"), Some("provider-claude"));
    assert_eq!(hs.get("content-type"), Some("application/json"));
    // Without a backend fact the default account signs.
    let mut ex = exchange(&world, r.as_ref(), &[(":path", "/v1/chat/completions")]);
    ex.request_headers(true);
    let bearer = format!("Bearer {KEY}");
    assert_eq!(
        ex.host.request().get("authorization"),
        Some(bearer.as_str())
    );
    assert_eq!(world.metrics.counter("aimesh.header_auth.injected"), 2);
    assert_eq!(world.metrics.counter("aimesh.header_auth.requests"), 2);
}

#[test]
fn a_custom_endpoint_is_routed_for_an_allowed_team_and_refused_otherwise() {
    let world = World::default();
    let r = root(CONFIG);
    let path = "/proxy-api/speech/tts/voices?locale=en";
    let mut ex = exchange(&world, r.as_ref(), &[(":path", path), (":authority", "gw")]);
    ex.host.facts.team = Some("voice".into());
    ex.host.facts.key_id = Some("app-1".into());
    assert_eq!(ex.request_headers(false), Action::Continue);
    assert_eq!(
        ex.request_chunk(&[0xff, 0x00, 0x01], true),
        Action::Continue
    );
    assert_eq!(
        ex.sent_upstream,
        [0xff, 0x00, 0x01],
        "bodies stream through untouched"
    );
    assert_eq!(ex.host.facts.cluster.as_deref(), Some("speech-tts"));
    let hs = ex.host.request();
    assert_eq!(hs.get(":authority"), Some("tts.example.com"));
    assert_eq!(
        hs.get(":path"),
        Some("/cognitiveservices/v1/voices?locale=en")
    );
    assert_eq!(hs.get("ocp-apim-subscription-key"), Some("sub-secret-9"));
    assert_eq!(world.metrics.counter("aimesh.header_auth.proxied"), 1);

    for (team, path, status, code) in [
        (Some("ops"), path, 403, "endpoint_not_allowed"),
        (
            Some("voice"),
            "/proxy-api/speech/nope/x",
            404,
            "endpoint_not_found",
        ),
        (
            Some("voice"),
            "/proxy-api/speech/tts/%2e%2e/x",
            400,
            "invalid_upstream_path",
        ),
    ] {
        let mut ex = exchange(&world, r.as_ref(), &[(":path", path)]);
        ex.host.facts.team = team.map(str::to_string);
        assert_eq!(ex.request_headers(false), Action::Pause);
        let reply = ex.reply().expect("a refusal");
        assert_eq!(
            (reply.status, reply.json()["error"]["code"].as_str()),
            (status, Some(code))
        );
        assert!(
            !String::from_utf8_lossy(&reply.body).contains("%2e"),
            "the path is echoed"
        );
        assert!(ex.host.facts.cluster.is_none());
        ex.log();
    }
    let m = &world.metrics;
    let counts = [
        "aimesh.header_auth.forbidden",
        "aimesh.header_auth.not_found",
        "aimesh.header_auth.rejected_path",
    ]
    .map(|n| m.counter(n));
    assert_eq!(counts, [1, 1, 1]);
}

#[test]
fn an_unknown_backend_is_a_500_naming_no_secret() {
    let world = World::default();
    let r = root(CONFIG);
    let mut ex = exchange(&world, r.as_ref(), &[(":path", "/v1/chat/completions")]);
    ex.host.facts.backend = Some("azure-east".into());
    assert_eq!(ex.request_headers(true), Action::Pause);
    let reply = ex.reply().expect("500");
    assert_eq!(
        (reply.status, reply.json()["error"]["code"].as_str()),
        (500, Some("backend_not_configured"))
    );
    assert!(!String::from_utf8_lossy(&reply.body).contains(KEY));
    assert_eq!(
        world.metrics.counter("aimesh.header_auth.unknown_backend"),
        1
    );
}

#[test]
fn the_upstream_role_re_keys_each_attempt_and_strips_every_internal_header() {
    let world = World::default();
    let r = root(&upstream_config());
    for (backend, header, value) in [
        ("claude", "x-api-key", "sk-an-secret-5678"),
        ("openai-main", "authorization", "Bearer sk-oa-secret-1234"),
    ] {
        let mut ex = exchange(
            &world,
            r.as_ref(),
            &[
                (":path", "/v1/chat/completions"),
                ("x-aimesh-cluster", "vm.a"),
                ("x-aimesh-backend", backend),
                ("authorization", "Bearer sk-an-secret-5678"),
            ],
        );
        ex.host.facts.backend = Some(backend.into());
        assert_eq!(ex.request_headers(false), Action::Continue);
        let hs = ex.host.request();
        assert_eq!(hs.get(header), Some(value));
        assert!(!hs.has("x-aimesh-cluster") && !hs.has("x-aimesh-backend"));
        if backend == "claude" {
            // The previous attempt's credential does not follow the request to this provider.
            assert!(!hs.has("authorization"));
        }
    }
}

#[test]
fn an_error_reply_is_held_to_its_end_and_scrubbed_keeping_its_framing() {
    let world = World::default();
    let r = root(CONFIG);
    let mut ex = exchange(&world, r.as_ref(), &[(":path", "/v1/chat/completions")]);
    ex.request_headers(true);
    let body = format!(r#"{{"error":{{"message":"bad key Bearer {KEY}, try again"}}}}"#);
    let len = body.len().to_string();
    let a = ex.response_headers(
        &[
            (":status", "401"),
            ("content-length", &len),
            ("x-debug", KEY),
            ("x-debug", "plain"),
        ],
        false,
    );
    assert_eq!(a, Action::Pause, "headers wait for the scrubbed length");
    let hs = ex.host.response();
    let debug: Vec<&[u8]> = hs
        .pairs()
        .filter(|(n, _)| *n == "x-debug")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(debug, [&b"[REDACTED]"[..], b"plain"]);
    // The secret is split across chunks: only the whole body can be scrubbed.
    let chunks: Vec<&[u8]> = body.as_bytes().chunks(9).collect();
    for (i, c) in chunks.iter().enumerate() {
        let last = i + 1 == chunks.len();
        assert_eq!(ex.response_chunk(c, last) == Action::Continue, last);
    }
    let out = String::from_utf8(ex.sent_downstream.clone()).unwrap();
    assert!(
        !out.contains(KEY) && out.contains("bad key [REDACTED], try again"),
        "{out}"
    );
    let len = out.len().to_string();
    assert_eq!(ex.host.response().get("content-length"), Some(len.as_str()));
    assert_eq!(world.metrics.counter("aimesh.header_auth.scrubbed"), 2);
}

#[test]
fn good_and_compressed_replies_stream_through() {
    let world = World::default();
    let r = root(CONFIG);
    for headers in [
        &[(":status", "200")][..],
        &[(":status", "500"), ("content-encoding", "gzip")][..],
    ] {
        let mut ex = exchange(&world, r.as_ref(), &[(":path", "/v1/chat/completions")]);
        ex.request_headers(true);
        assert_eq!(ex.response_headers(headers, false), Action::Continue);
        assert_eq!(ex.response_chunk(b"data: {}\n\n", false), Action::Continue);
        assert_eq!(ex.sent_downstream, b"data: {}\n\n");
    }
}

#[test]
fn configs_are_refused_naming_the_field_and_unset_secrets_say_which() {
    let err = crate::configure_with(br#"{"acounts":{}}"#, &vars())
        .err()
        .unwrap();
    assert!(
        err.to_string().starts_with("invalid configuration: "),
        "{err}"
    );
    assert!(err.to_string().contains("acounts"), "{err}");
    let err = crate::configure_with(br#"{"accounts":{"ab":{}}}"#, &vars())
        .err()
        .unwrap();
    assert!(err.to_string().contains("accounts.ab:"), "{err}");
    let unset = MapVars(HashMap::new());
    let err = crate::configure_with(CONFIG.as_bytes(), &unset)
        .err()
        .unwrap();
    let err = err.to_string();
    assert!(
        err.contains("auth.api_key: environment variable") && err.contains("is not set"),
        "{err}"
    );
    assert_eq!(crate::STAGE.name, "header-auth");
}

#[test]
fn every_error_has_a_metric() {
    for e in [
        EndpointError::NotFound,
        EndpointError::Forbidden,
        EndpointError::UnknownAccount,
        EndpointError::Disabled,
    ] {
        assert!(metric_for(&e).starts_with("aimesh.header_auth."));
    }
}
