//! Syntax of the model patterns and endpoint grants a key or JWT rule lists.

use crate::path::check_base_path;

/// Methods an `endpoints` entry may name.
pub const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// Checks one `endpoints` entry: `*`, or an optional method and a space, then an absolute plain
/// path (`/v1/files`, `GET /v1/batches`).
pub fn validate_endpoint(e: &str) -> Result<(), String> {
    if e == "*" {
        return Ok(());
    }
    let path = match e.split_once(' ') {
        Some((m, p)) if METHODS.contains(&m) => p,
        Some((m, _)) => {
            return Err(format!(
                "'{m}': method must be one of {}",
                METHODS.join(", ")
            ))
        }
        None => e,
    };
    if !path.starts_with('/') {
        return Err(format!("'{e}': the path must start with '/'"));
    }
    if path.contains(['?', '#', '*']) {
        return Err(format!(
            "'{e}': a path only ('*' alone grants every endpoint)"
        ));
    }
    if check_base_path(path).is_err() {
        return Err(format!(
            "'{e}': not a plain path (dot segments, empty segments or encoded separators)"
        ));
    }
    Ok(())
}

/// Checks one allow-list pattern: non-empty; `*` only alone or as the last character after `/`.
pub fn validate_pattern(p: &str) -> Result<(), String> {
    if p.is_empty() {
        return Err("empty model pattern".into());
    }
    if p == "*" {
        return Ok(());
    }
    match p.find('*') {
        None => Ok(()),
        Some(i) if i + 1 == p.len() && p[..i].ends_with('/') => Ok(()),
        Some(_) => Err(format!("'{p}': '*' is allowed only alone or as 'prefix/*'")),
    }
}
