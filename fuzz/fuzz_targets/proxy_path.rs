//! The custom-endpoint path parser never panics, and whatever it accepts forwards no traversal
//! and no smuggling (`edge::proxy_path`, shared with the `edge` target and `make test`).
#![no_main]

// Only `proxy_path` of the shared checks runs here.
#[allow(dead_code)]
#[path = "../checks/edge.rs"]
mod edge;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(raw) = std::str::from_utf8(data) {
        edge::proxy_path(raw);
    }
});
