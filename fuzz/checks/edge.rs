//! Properties of the edge's path and header handling, shared by the `edge` and `proxy_path`
//! fuzz targets and by the deterministic smoke test `make test` runs
//! (`filters/host/tests/fuzz_smoke.rs`): one body, whichever engine feeds it.
//!
//! Input: UTF-8 (lossy) lines: a method, a path, then `name: value` header lines.

use aimesh_core::auth::endpoints::{admit_without_model, validate_endpoint, EndpointAllow};
use aimesh_core::endpoints::path::parse;
use aimesh_core::headers::is_internal;
use aimesh_host::Headers;

/// Runs every property on one input; panics on a violation.
pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let method = lines.next().unwrap_or("");
    let path = lines.next().unwrap_or("");
    let pairs: Vec<(String, Vec<u8>)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().as_bytes().to_vec()))
        .collect();
    headers(pairs);
    grants(method, path);
    proxy_path(path);
}

/// The snapshot answers like a plain list read first-match, case-insensitively; `set` does what
/// Envoy's header-map set does; stripping the internal names leaves none and nothing else moved.
fn headers(pairs: Vec<(String, Vec<u8>)>) {
    let h = Headers::from_pairs(pairs.clone());
    for (name, _) in &pairs {
        let first = pairs.iter().find(|(k, _)| k.eq_ignore_ascii_case(name));
        assert_eq!(
            h.get_bytes(&name.to_ascii_uppercase()),
            first.map(|(_, v)| v.as_slice())
        );
        assert!(h.has(name));
    }
    if let Some((name, _)) = pairs.first() {
        let mut s = h.clone();
        s.set(name, Some(b"v"));
        assert_eq!(s.get_bytes(name), Some(&b"v"[..]));
        assert_eq!(
            s.names().filter(|n| n.eq_ignore_ascii_case(name)).count(),
            1
        );
        s.set(name, None);
        assert!(!s.has(name));
    }
    // The internal-header strip: auth removes every name `is_internal` flags, one by one.
    let mut stripped = h.clone();
    let internal: Vec<String> = h
        .names()
        .filter(|n| is_internal(n))
        .map(String::from)
        .collect();
    for name in &internal {
        stripped.set(name, None);
    }
    assert!(stripped.names().all(|n| !is_internal(n)));
    let kept: Vec<&str> = pairs
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !is_internal(k))
        .collect();
    assert_eq!(stripped.names().collect::<Vec<_>>(), kept);
    for name in kept {
        assert_eq!(stripped.get_bytes(name), h.get_bytes(name));
    }
}

/// Endpoint grants never panic, and a grant other than `*` only admits a plain path on a
/// segment boundary below it.
fn grants(method: &str, path: &str) {
    let grant = "/v1/files";
    let a = EndpointAllow::new(&[grant]);
    if a.allows(method, path) {
        let plain = path.split(['?', '#']).next().unwrap_or("");
        let rest = plain
            .strip_prefix(grant)
            .unwrap_or_else(|| panic!("{path:?} is not below {grant}"));
        assert!(
            rest.is_empty() || rest.starts_with('/'),
            "{path:?}: not on a segment boundary"
        );
        for seg in plain.split('/') {
            let lower = seg.to_ascii_lowercase();
            assert!(
                seg != "." && seg != ".." && !lower.contains("%2e%2e"),
                "{path:?}"
            );
            assert!(
                !lower.contains("%2f") && !lower.contains("%5c") && !seg.contains('\\'),
                "{path:?}"
            );
        }
    }
    // Whatever the path, these decide without panicking.
    let _ = admit_without_model(&a, method, path);
    let _ = admit_without_model(&EndpointAllow::default(), method, path);
    if validate_endpoint(path).is_ok() && path != "*" {
        // A valid entry grants its own path.
        let (m, p) = path.split_once(' ').unwrap_or((method, path));
        assert!(
            EndpointAllow::new(&[path]).allows(m, p),
            "{path:?} does not grant itself"
        );
    }
}

/// The custom-endpoint path parser never panics, and whatever it accepts forwards no traversal
/// (no segment that decodes to `.` or `..`) and no smuggling (encoded slashes or backslashes,
/// CR, LF, NUL, raw or percent-encoded).
pub fn proxy_path(raw: &str) {
    if let Ok(p) = parse(raw) {
        for segment in p.upstream_path.split('/') {
            let d = segment.replace("%2e", ".").replace("%2E", ".");
            assert!(d != "." && d != "..", "{raw:?} forwards a dot segment");
        }
        let lower = p.upstream_path.to_ascii_lowercase();
        for bad in ["%2f", "%5c", "\\", "\r", "\n", "%0d", "%0a", "\0", "%00"] {
            assert!(!lower.contains(bad), "{raw:?} forwards {bad:?}");
        }
    }
}
