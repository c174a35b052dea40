//! The custom-endpoint path parser never panics, and whatever it accepts forwards no traversal
//! (no segment that decodes to `.` or `..`) and no smuggling (encoded slashes or backslashes,
//! CR, LF, NUL, raw or percent-encoded).
#![no_main]

use aimesh_core::endpoints::path::parse;
use libfuzzer_sys::fuzz_target;

/// `%2e`/`%2E` decoded to `.`; other escapes are left as they are.
fn decode_dots(segment: &str) -> String {
    segment.replace("%2e", ".").replace("%2E", ".")
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    if let Ok(p) = parse(raw) {
        for segment in p.upstream_path.split('/') {
            let d = decode_dots(segment);
            assert!(d != "." && d != "..", "{raw:?} forwards a dot segment");
        }
        let lower = p.upstream_path.to_ascii_lowercase();
        for bad in ["%2f", "%5c", "\\", "\r", "\n", "%0d", "%0a", "\0", "%00"] {
            assert!(!lower.contains(bad), "{raw:?} forwards {bad:?}");
        }
    }
});
