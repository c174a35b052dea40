//! The gateway.yaml loader never panics, and a file it accepts is turned into Envoy resources without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(gw) = aimesh_xds::validate::load_str(text) {
        // `false`: do not read `${file:...}` secrets from the fuzzing machine.
        let _ = aimesh_xds::resources::build(&gw, std::path::Path::new("/wasm"), false);
    }
});
