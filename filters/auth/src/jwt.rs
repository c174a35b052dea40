//! Reading the claims Envoy's `jwt_authn` filter verified (its `payload_in_metadata`).
//!
//! Envoy serializes property values by type: a string claim comes back as its raw bytes; a list
//! of strings (`groups`) as the proxy-wasm pair encoding used for header maps, each element in
//! the key position (see `parse_string_list`).

use aimesh_core::auth::table::JwtTable;
use aimesh_host::Env;

/// `sub` and groups of the verified token, when `jwt_authn` left one in the metadata.
pub struct Claims {
    /// The `sub` claim.
    pub sub: Option<String>,
    /// The groups claim.
    pub groups: Vec<String>,
}

/// Reads the claims; `None` when no verified token is in the request's metadata.
pub fn read<E: Env + ?Sized>(env: &E, jwt: &JwtTable) -> Option<Claims> {
    let base = [
        "metadata",
        "filter_metadata",
        jwt.namespace.as_str(),
        jwt.payload_key.as_str(),
    ];
    // The payload itself: present exactly when a token was verified.
    env.property(&base)?;
    let claim = |name: &str| {
        let mut path = base.to_vec();
        path.push(name);
        env.property(&path)
    };
    let sub = claim("sub").and_then(|b| String::from_utf8(b).ok());
    let groups = claim(&jwt.groups_claim)
        .map(|b| parse_string_list(&b))
        .unwrap_or_default();
    Some(Claims { sub, groups })
}

/// Decodes a list property: proxy-wasm pairs (`u32 n`, `n × (u32 klen, u32 vlen)`, then each key
/// and value NUL-terminated) whose keys are the elements; anything else is one plain string.
pub fn parse_string_list(b: &[u8]) -> Vec<String> {
    parse_pairs(b).unwrap_or_else(|| {
        std::str::from_utf8(b)
            .ok()
            .filter(|s| !s.is_empty())
            .map(|s| vec![s.to_string()])
            .unwrap_or_default()
    })
}

fn parse_pairs(b: &[u8]) -> Option<Vec<String>> {
    let word = |at: usize| -> Option<usize> {
        let w: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(w)).ok()
    };
    let n = word(0)?;
    let mut sizes = Vec::with_capacity(n.min(1024));
    let mut at = 4;
    for _ in 0..n {
        sizes.push((word(at)?, word(at + 4)?));
        at += 8;
    }
    let mut out = Vec::with_capacity(sizes.len());
    for (k, v) in sizes {
        let key = std::str::from_utf8(b.get(at..at + k)?).ok()?;
        if *b.get(at + k)? != 0 {
            return None;
        }
        at += k + 1;
        // Element values (if Envoy put any) are ignored; keys are the list items.
        if *b.get(at + v)? != 0 {
            return None;
        }
        at += v + 1;
        out.push(key.to_string());
    }
    (at == b.len()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_pairs_and_plain_strings() {
        let mut b = Vec::new();
        b.extend(2u32.to_le_bytes());
        b.extend(2u32.to_le_bytes());
        b.extend(0u32.to_le_bytes());
        b.extend(3u32.to_le_bytes());
        b.extend(0u32.to_le_bytes());
        b.extend(b"ml\0\0ops\0\0");
        assert_eq!(parse_string_list(&b), ["ml", "ops"]);
        assert_eq!(parse_string_list(b"admins"), ["admins"]);
        assert!(parse_string_list(b"").is_empty());
    }
}
