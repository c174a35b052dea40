//! The edge's path and header handling (`fuzz/checks/edge.rs`): endpoint grants, the header
//! snapshot, the internal-header strip and custom-endpoint paths. `make test` runs the same body
//! over the seed corpus and derived inputs (`filters/host/tests/fuzz_smoke.rs`).
#![no_main]

#[path = "../checks/edge.rs"]
mod edge;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| edge::check(data));
