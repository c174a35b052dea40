//! Tests of the compiled plan: override rules, access control, routing and config errors.

use aimesh_config::endpoints::creds::MapEnv;

fn env(pairs: &[(&str, &str)]) -> MapEnv {
    MapEnv::from_pairs(pairs)
}

use super::*;
use crate::error::ErrorKind;

const CONFIG: &str = r#"{
  "default_account": "openai-main",
  "egress": {"hosts": ["*.example.com", "api.openai.com"], "cidrs": ["10.0.0.0/8"]},
  "accounts": {
    "openai-main": {"auth": {"type": "openai", "api_key": "${env:OA}"},
                    "headers": {"OpenAI-Organization": "org-1"}},
    "claude": {"auth": {"type": "anthropic", "api_key": "${env:AN}"}},
    "speech": {
      "auth": {"type": "basic", "username": "svc", "password": "${env:PW}"},
      "headers": {"x-tenant": "acme", "x-shared": "account"},
      "endpoints": {
        "tts": {"base_url": "https://tts.example.com/cognitiveservices/v1", "cluster": "speech-tts",
                "headers": {"x-shared": "endpoint"},
                "allow": {"key_ids": ["app-1"], "teams": ["voice"]}},
        "stt.v2": {"base_url": "http://10.1.2.3:8080", "cluster": "speech-stt",
                   "auth": {"type": "header", "name": "Ocp-Apim-Subscription-Key", "value": "${env:SUB}"}}
      }
    }
  }
}"#;

fn plan() -> Plan {
    let c: Config = serde_json::from_str(CONFIG).unwrap();
    c.check().unwrap();
    Plan::compile(
        &c,
        &env(&[
            ("OA", "sk-oa"),
            ("AN", "sk-an"),
            ("PW", "pw"),
            ("SUB", "sub-1"),
        ]),
    )
    .unwrap()
}

fn req(path: &str) -> Request<'_> {
    Request {
        path,
        ..Request::default()
    }
}

fn set(d: &Decision<'_>) -> Vec<(String, String)> {
    d.headers.map(|h| h.set.clone()).unwrap_or_default()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn llm_requests_get_the_selected_accounts_credentials() {
    let p = plan();
    let d = p.decide(&req("/v1/chat/completions")).unwrap();
    assert_eq!(d.account, Some("openai-main"));
    assert_eq!(
        set(&d),
        pairs(&[
            ("openai-organization", "org-1"),
            ("authorization", "Bearer sk-oa")
        ])
    );
    let d = p
        .decide(&Request {
            backend: Some("claude"),
            ..req("/v1/messages")
        })
        .unwrap();
    assert_eq!(set(&d), pairs(&[("x-api-key", "sk-an")]));
    assert_eq!(
        d.headers.unwrap().defaults,
        pairs(&[("anthropic-version", "2023-06-01")])
    );
    assert_eq!(
        p.decide(&Request {
            backend: Some("nope"),
            ..req("/v1/x")
        }),
        Err(EndpointError::UnknownAccount)
    );
    let empty = Plan::compile(&Config::default(), &env(&[])).unwrap();
    assert_eq!(empty.decide(&req("/v1/x")).unwrap().headers, None);
    let named = Request {
        backend: Some("local-vllm"),
        ..req("/v1/x")
    };
    assert_eq!(empty.decide(&named).unwrap().headers, None);
    assert_eq!(
        empty.decide(&req("/proxy-api/speech/tts/x")),
        Err(EndpointError::NotFound)
    );
}

#[test]
fn custom_endpoint_routes_and_merges_headers() {
    let p = plan();
    let d = p
        .decide(&Request {
            key_id: Some("app-1"),
            ..req("/proxy-api/speech/tts/voices/list?locale=en-US")
        })
        .unwrap();
    let r = d.route.clone().unwrap();
    assert_eq!(r.cluster, "speech-tts");
    assert_eq!(r.authority, "tts.example.com");
    assert_eq!(r.path, "/cognitiveservices/v1/voices/list?locale=en-US");
    // Account auth (Basic) applies; endpoint header wins over the account's of the same name.
    assert_eq!(
        set(&d),
        pairs(&[
            ("x-tenant", "acme"),
            ("x-shared", "endpoint"),
            ("authorization", "Basic c3ZjOnB3"),
        ])
    );
    // Endpoint auth replaces the account's.
    let d = p.decide(&req("/proxy-api/speech/stt.v2?x=1")).unwrap();
    assert_eq!(d.route.as_ref().unwrap().path, "/?x=1");
    assert_eq!(d.route.as_ref().unwrap().authority, "10.1.2.3:8080");
    assert_eq!(
        set(&d),
        pairs(&[
            ("x-shared", "account"),
            ("x-tenant", "acme"),
            ("ocp-apim-subscription-key", "sub-1"),
        ])
    );
}

#[test]
fn access_control_by_key_or_team() {
    let p = plan();
    let path = "/proxy-api/speech/tts/x";
    let ok = |key: Option<&str>, team: Option<&str>| {
        p.decide(&Request {
            key_id: key,
            team,
            ..req(path)
        })
    };
    assert!(ok(Some("app-1"), None).is_ok());
    assert!(ok(Some("other"), Some("voice")).is_ok());
    assert_eq!(
        ok(Some("other"), Some("ops")),
        Err(EndpointError::Forbidden)
    );
    assert_eq!(ok(None, None), Err(EndpointError::Forbidden));
    assert!(p.decide(&req("/proxy-api/speech/stt.v2/x")).is_ok());
}

#[test]
fn unknown_and_invalid_endpoints() {
    let p = plan();
    assert_eq!(
        p.decide(&req("/proxy-api/speech/nope/x")),
        Err(EndpointError::NotFound)
    );
    assert_eq!(
        p.decide(&req("/proxy-api/nobody/tts/x")),
        Err(EndpointError::NotFound)
    );
    let e = p
        .decide(&req("/proxy-api/speech/tts/%2e%2e/x"))
        .unwrap_err();
    assert_eq!((e.status(), e.code()), (400, "invalid_upstream_path"));
    let e = p.decide(&req("/proxy-api/Speech/tts/x")).unwrap_err();
    assert_eq!((e.status(), e.code()), (400, "invalid_endpoint_name"));
}

#[test]
fn strips_client_credentials_and_internal_headers() {
    let p = plan();
    let d = p.decide(&req("/v1/x")).unwrap();
    for h in [
        "Authorization",
        "x-api-key",
        "api-key",
        "ocp-apim-subscription-key",
        "x-aimesh-key-id",
        "X-Aimesh-Backend",
    ] {
        assert!(p.strips(h, &d), "{h}");
    }
    for h in [
        "x-aimesh-cluster",
        "content-type",
        "anthropic-version",
        "x-tenant",
        "openai-organization",
    ] {
        assert!(!p.strips(h, &d), "{h}");
    }
}

fn upstream_plan() -> Plan {
    let mut c: Config = serde_json::from_str(CONFIG).unwrap();
    c.role = Role::Upstream;
    Plan::compile(
        &c,
        &env(&[
            ("OA", "sk-oa"),
            ("AN", "sk-an"),
            ("PW", "pw"),
            ("SUB", "sub-1"),
        ]),
    )
    .unwrap()
}

#[test]
fn upstream_role_rekeys_only_when_an_attempt_names_a_backend() {
    let p = upstream_plan();
    // No backend: whatever the downstream instance set stays, internal headers go.
    let d = p.decide(&req("/cognitiveservices/v1/x")).unwrap();
    assert_eq!(
        d,
        Decision {
            headers: None,
            route: None,
            account: None
        }
    );
    assert!(p.strips("x-aimesh-cluster", &d));
    assert!(!p.strips("authorization", &d));
    // Backend named: every credential and account header is replaced, even a custom-endpoint path.
    let d = p
        .decide(&Request {
            backend: Some("claude"),
            ..req("/proxy-api/speech/tts/x")
        })
        .unwrap();
    assert_eq!(d.account, Some("claude"));
    assert_eq!(d.route, None);
    for h in [
        "authorization",
        "openai-organization",
        "x-api-key",
        "x-aimesh-backend",
        "x-aimesh-cluster",
    ] {
        assert!(p.strips(h, &d), "{h}");
    }
    assert!(!p.strips("anthropic-version", &d));
    assert!(!p.strips("content-type", &d));
}

fn config_error(json: &str) -> String {
    let c: Config = serde_json::from_str(json).unwrap();
    c.check().unwrap_err().to_string()
}

#[test]
fn config_errors_name_the_field() {
    let cases = [
        (r#"{"accounts": {"AB": {}}}"#, "accounts.AB:"),
        (
            r#"{"default_account": "x", "accounts": {}}"#,
            "default_account:",
        ),
        (
            r#"{"accounts": {"abc": {"endpoints": {"1x": {"base_url": "https://a.example.com", "cluster": "c"}}}}}"#,
            "accounts.abc.endpoints.1x:",
        ),
        (
            r#"{"accounts": {"abc": {"endpoints": {"ep": {"base_url": "https://a.example.com", "cluster": "c"}}}}}"#,
            "accounts.abc.endpoints.ep.base_url: an egress allow-list is required",
        ),
        (
            r#"{"egress": {"hosts": ["*.example.com"]}, "accounts": {"abc": {"endpoints": {"ep": {"base_url": "https://evil.net/x", "cluster": "c"}}}}}"#,
            "accounts.abc.endpoints.ep.base_url: host 'evil.net' is not in the egress allow-list",
        ),
        (
            r#"{"egress": {"cidrs": ["10.0.0.0/8"]}, "accounts": {"abc": {"endpoints": {"ep": {"base_url": "http://169.254.169.254", "cluster": "c"}}}}}"#,
            "accounts.abc.endpoints.ep.base_url: host '169.254.169.254'",
        ),
        (
            r#"{"egress": {"hosts": ["a.example.com"]}, "accounts": {"abc": {"endpoints": {"ep": {"base_url": "https://a.example.com/", "cluster": "c"}}}}}"#,
            "accounts.abc.endpoints.ep.base_url: must not end with '/'",
        ),
        (
            r#"{"accounts": {"abc": {"headers": {"x-a": "v\r\nx-b: 1"}}}}"#,
            "accounts.abc.headers.x-a: header value contains CR, LF",
        ),
        (
            r#"{"accounts": {"abc": {"auth": {"type": "bearer", "token": "a\nb"}}}}"#,
            "accounts.abc.auth (authorization): header value contains CR, LF",
        ),
        (
            r#"{"egress": {"hosts": ["a.example.com"]}, "accounts": {"abc": {"endpoints": {"ep": {"base_url": "https://a.example.com", "cluster": "c", "allow": {}}}}}}"#,
            "accounts.abc.endpoints.ep.allow:",
        ),
        (
            r#"{"accounts": {"abc": {"headers": {"host": "x"}}}}"#,
            "accounts.abc.headers.host:",
        ),
    ];
    for (json, want) in cases {
        let err = config_error(json);
        assert!(err.starts_with(want), "{json}\n got: {err}\nwant: {want}");
    }
    assert!(serde_json::from_str::<Config>(r#"{"acounts": {}}"#).is_err());
}

#[test]
fn check_never_reads_the_environment_but_compile_does() {
    let c: Config = serde_json::from_str(
        r#"{"accounts": {"abc": {"auth": {"type": "openai", "api_key": "${env:NOPE}"}}}}"#,
    )
    .unwrap();
    assert!(c.check().is_ok());
    let err = Plan::compile(&c, &env(&[])).unwrap_err();
    assert_eq!(
        err,
        "accounts.abc.auth.api_key: environment variable NOPE is not set"
    );
}

#[test]
fn missing_variables_can_disable_just_their_account() {
    let mut c: Config = serde_json::from_str(CONFIG).unwrap();
    c.on_missing_env = MissingEnv::DisableAccount;
    let p = Plan::compile(&c, &env(&[("OA", "sk-oa"), ("SUB", "sub-1")])).unwrap();
    assert_eq!(
        p.warnings,
        vec![
            "accounts.claude: disabled, environment variable(s) not set: AN".to_string(),
            "accounts.speech: disabled, environment variable(s) not set: PW".to_string(),
        ]
    );
    assert!(p.decide(&req("/v1/x")).is_ok());
    let e = p
        .decide(&Request {
            backend: Some("claude"),
            ..req("/v1/x")
        })
        .unwrap_err();
    assert_eq!((e.status(), e.code()), (503, "account_unavailable"));
    assert_eq!(
        p.decide(&req("/proxy-api/speech/stt.v2/x")),
        Err(EndpointError::Disabled)
    );
}

#[test]
fn path_rules_get_their_own_credentials_or_none_never_the_default_accounts() {
    let mut c: Config = serde_json::from_str(CONFIG).unwrap();
    c.paths = serde_json::from_str(
        r#"[{"prefix": "/mcp/docs", "auth": {"type": "bearer", "token": "${env:MCP}"}},
            {"prefix": "/mcp/"}]"#,
    )
    .unwrap();
    let p = Plan::compile(
        &c,
        &env(&[
            ("OA", "sk-oa"),
            ("AN", "sk-an"),
            ("PW", "pw"),
            ("SUB", "s"),
            ("MCP", "mcp-1"),
        ]),
    )
    .unwrap();
    let d = p.decide(&req("/mcp/docs/tools")).unwrap();
    assert_eq!(set(&d), pairs(&[("authorization", "Bearer mcp-1")]));
    assert_eq!(d.account, None);
    // An MCP server without credentials, and one `x-aimesh-backend` would name: nothing.
    let bare = Request {
        backend: Some("claude"),
        ..req("/mcp/other")
    };
    assert_eq!(set(&p.decide(&bare).unwrap()), Vec::new());
    // Client credentials are still removed on those routes.
    assert!(p.strips("authorization", &p.decide(&bare).unwrap()));
    // Other paths keep the default account.
    assert_eq!(
        set(&p.decide(&req("/v1/chat/completions")).unwrap())[0],
        ("openai-organization".to_string(), "org-1".to_string())
    );
}

#[test]
fn path_rules_are_validated_and_an_unset_secret_disables_only_its_rule() {
    let e = config_error(r#"{"paths": [{"prefix": "mcp/x"}]}"#);
    assert!(e.starts_with("paths[0].prefix"), "{e}");
    let e = config_error(r#"{"paths": [{"prefix": "/proxy-api/a/b"}]}"#);
    assert!(e.starts_with("paths[0].prefix"), "{e}");
    let c: Config = serde_json::from_str(
        r#"{"on_missing_env": "disable_account",
            "paths": [{"prefix": "/mcp/a", "auth": {"type": "bearer", "token": "${env:UNSET}"}}]}"#,
    )
    .unwrap();
    let p = Plan::compile(&c, &env(&[])).unwrap();
    assert_eq!(p.decide(&req("/mcp/a")), Err(EndpointError::Disabled));
    assert!(p.warnings[0].starts_with("paths[0]"), "{:?}", p.warnings);
}

#[test]
fn the_scrubber_knows_every_injected_credential_and_nothing_else() {
    let c: Config = serde_json::from_str(CONFIG).unwrap();
    let p = Plan::compile(
        &c,
        &env(&[
            ("OA", "sk-oa-0123456789"),
            ("AN", "sk-an-0123456789"),
            ("PW", "password-0123"),
            ("SUB", "sub-key-0123456789"),
        ]),
    )
    .unwrap();
    let sc = p.scrubber();
    let basic = creds::base64(b"svc:password-0123");
    for secret in [
        "sk-oa-0123456789",
        "Bearer sk-oa-0123456789",
        "sk-an-0123456789",
        "password-0123",
        basic.as_str(),
        "sub-key-0123456789",
    ] {
        let echoed = format!("echo: {secret}!");
        assert_eq!(
            sc.scrub(echoed.as_bytes()).as_deref(),
            Some(&b"echo: [REDACTED]!"[..]),
            "{secret}"
        );
    }
    // Custom headers, the Basic user name and anthropic-version are not secrets.
    for plain in ["org-1", "acme", "svc", "2023-06-01", "Basic"] {
        assert_eq!(sc.scrub(plain.as_bytes()), None, "{plain}");
    }
    assert!(Plan::default().scrubber().is_empty());
}
