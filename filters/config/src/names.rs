//! Account and endpoint names: the only parts of a `/proxy-api/` path that select config.

/// True for an account name: 3–32 characters of `a-z`, `0-9`, `-`.
pub fn valid_account(name: &str) -> bool {
    (3..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// True for an endpoint name: 2–62 characters of letters, digits, `-`, `_`, `.`, not starting
/// with a digit.
///
/// `.` and `..` cannot pass (too short / all dots is refused) so a name is never a path
/// traversal segment by itself.
pub fn valid_endpoint(name: &str) -> bool {
    let b = name.as_bytes();
    (2..=62).contains(&b.len())
        && !b[0].is_ascii_digit()
        && !b.iter().all(|c| *c == b'.')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_names() {
        for ok in ["abc", "speech-1", "a1b", &"a".repeat(32)] {
            assert!(valid_account(ok), "{ok}");
        }
        for bad in [
            "ab",
            "Abc",
            "a_b",
            "a.b",
            "",
            &"a".repeat(33),
            "ab/",
            "ab%2e",
            "äbc",
        ] {
            assert!(!valid_account(bad), "{bad}");
        }
    }

    #[test]
    fn endpoint_names() {
        for ok in ["tts", "Speech_V2", "a.b-c", "x1", "..a", &"e".repeat(62)] {
            assert!(valid_endpoint(ok), "{ok}");
        }
        for bad in [
            "a",
            "1tts",
            "..",
            "...",
            "a/b",
            "a b",
            "a%2e",
            "",
            &"e".repeat(63),
            "é1",
        ] {
            assert!(!valid_endpoint(bad), "{bad}");
        }
    }
}
