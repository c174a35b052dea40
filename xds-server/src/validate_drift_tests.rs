//! gateway.yaml and the filters once had two rules each for names, egress patterns, URLs and
//! prices; now aimesh-xds calls the filters' own (aimesh-config). Each case here was accepted by
//! one side and refused by the other.

use aimesh_config::egress::{Egress, EgressConfig};
use aimesh_config::names::valid_endpoint;
use aimesh_config::url::BaseUrl;

use crate::validate::{load_str, parse_url, ConfigError};

fn errs(yaml: &str) -> Vec<ConfigError> {
    load_str(yaml).err().unwrap_or_default()
}

#[test]
fn custom_endpoint_names_follow_header_auths_rule() {
    let long = "e".repeat(62);
    let too_long = "e".repeat(63);
    for name in [
        "tts", "Geo.v2", "x1", "..a", &long, "a", "1tts", "..", &too_long, "a b",
    ] {
        let yaml =
            format!("custom_endpoints:\n- {{name: '{name}', url: 'https://tts.example.com'}}\n");
        let e = errs(&yaml);
        let refused = e.iter().any(|e| e.field == "custom_endpoints[0].name");
        assert_eq!(refused, !valid_endpoint(name), "{name}: {e:?}");
        // One rule, one message (64 and 62 used to be two).
        assert!(e.len() <= 1, "{name}: {e:?}");
    }
}

#[test]
fn egress_patterns_follow_header_auths_rule() {
    for entry in [
        "*.com",
        "*.example.com",
        "api.openai.com",
        "10.0.0.0/8",
        "10.0.0.0/33",
        "a/b",
    ] {
        let yaml = format!("egress: {{allow: ['{entry}']}}\n");
        let filter = Egress::compile(&EgressConfig {
            hosts: vec![entry.to_string()],
            cidrs: vec![],
        });
        let e = errs(&yaml);
        assert_eq!(e.is_empty(), filter.is_ok(), "{entry}: {e:?}");
        if let Some(e) = e.first() {
            assert_eq!(
                (e.field.as_str(), e.line),
                ("egress.allow[0]", Some(1)),
                "{e}"
            );
        }
    }
}

#[test]
fn urls_are_parsed_by_header_auths_parser() {
    for url in [
        "https://h.example.com/a/../b",
        "https://h_x.example.com",
        "https://h.example.com:0",
        "https://h.example.com/a%2fb",
        "https://tts.example.com/v1/",
        "http://[fd00::1]:8080",
        "HTTPS://h.example.com",
    ] {
        let ours = parse_url(url);
        let filters = BaseUrl::parse(url.strip_suffix('/').unwrap_or(url));
        assert_eq!(ours.is_ok(), filters.is_ok(), "{url}: {ours:?}");
        let yaml = format!("custom_endpoints:\n- {{name: tts, url: '{url}'}}\n");
        let e = errs(&yaml);
        assert_eq!(e.is_empty(), filters.is_ok(), "{url}: {e:?}");
    }
}

#[test]
fn prices_are_token_accountings_type_and_rule() {
    // The same type: a gateway price is what the filter prices with.
    let p: aimesh_config::accounting::Price = crate::model::Price {
        input: 1.0,
        cached_input: None,
        cache_write: None,
        output: 2.0,
    };
    assert_eq!(p.validate(), Ok(()));
    let e = errs("prices:\n  m: {input: 2000000, output: 1}\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(
        (e[0].field.as_str(), e[0].line),
        ("prices.m.input", Some(2))
    );
    let e = errs("prices:\n  'a*b': {input: 1, output: 1}\n");
    assert_eq!(e[0].field, "prices.a*b", "{e:?}");
}

#[test]
fn what_a_filter_would_refuse_is_refused_at_validate() {
    // Two keys with one hash: the auth filter refuses its whole config (Envoy NACKs it).
    let h = format!("sha256:{}", "a".repeat(64));
    let e = errs(&format!(
        "keys:\n- {{id: a, hash: '{h}'}}\n- {{id: b, hash: '{h}'}}\n"
    ));
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!((e[0].field.as_str(), e[0].line), ("keys[1].hash", Some(3)));
    assert!(
        !e[0].to_string().contains(&"a".repeat(64)),
        "a hash is never echoed"
    );
}
