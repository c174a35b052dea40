//! Body field extraction never panics, and a body it accepts has a non-empty model.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(facts) = aimesh_core::openai::request_facts(data) {
        assert!(!facts.model.is_empty());
    }
});
