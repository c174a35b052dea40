//! The PII scanner and the JSON request redactor never panic, and a redacted body is still JSON
//! whenever the input was.
#![no_main]

use aimesh_core::pii::config::PiiConfig;
use aimesh_core::pii::engine::{Engine, Session};
use aimesh_core::pii::json::redact_request;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| {
        let cfg: PiiConfig = serde_json::from_str("{}").expect("default config");
        Engine::new(&cfg).expect("default engine")
    })
}

fuzz_target!(|data: &[u8]| {
    let e = engine();
    let policy = e.policy(e.select(None, "/v1/chat/completions", &|_| None));
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = e.redact(text, policy, &mut Session::default());
    }
    if let Ok(Some(out)) = redact_request(e, policy, &mut Session::default(), data) {
        if serde_json::from_slice::<serde_json::Value>(data).is_ok() {
            assert!(serde_json::from_slice::<serde_json::Value>(&out).is_ok(), "redaction broke the JSON");
        }
    }
});
