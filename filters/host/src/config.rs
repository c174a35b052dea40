//! Stage configuration: JSON, parsed and validated once, with aimesh-config's types and rules
//! (the same ones aimesh-xds checks a gateway.yaml against).

use serde::de::DeserializeOwned;

pub use aimesh_config::{ConfigError, Validate};

use crate::StageError;

/// Parses and validates a stage config. An empty configuration is `{}`.
pub fn load_config<T: DeserializeOwned + Validate>(raw: &[u8]) -> Result<T, StageError> {
    let raw = if raw.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        raw
    };
    let c: T = serde_json::from_slice(raw).map_err(|e| StageError::Config(e.to_string()))?;
    c.validate()
        .map_err(|e| StageError::Config(e.to_string()))?;
    Ok(c)
}

/// The `secret.inline_string` (or `inline_bytes`) of a serialized
/// `envoy.extensions.transport_sockets.tls.v3.GenericSecret`; `None` for anything else.
///
/// aimesh-xds sends a config that holds secret values in that message because Envoy's
/// `/config_dump` redacts its `secret` field, while Envoy hands a Wasm VM any configuration
/// type other than `StringValue`/`BytesValue` as the message's serialized bytes. Only an exact
/// encoding counts (every byte consumed), so JSON text, even one starting with a newline
/// (the same byte as the message's first tag), is never mistaken for it.
pub fn unwrap_generic_secret(raw: &[u8]) -> Option<&[u8]> {
    // GenericSecret { secret (1): DataSource { inline_bytes (2) | inline_string (3) } }
    let source = field(raw, 0x0a)?;
    field(source, 0x1a).or_else(|| field(source, 0x12))
}

/// The payload of `buf` when it is exactly one length-delimited field with key byte `key`.
fn field(buf: &[u8], key: u8) -> Option<&[u8]> {
    let (&first, rest) = buf.split_first()?;
    if first != key {
        return None;
    }
    let mut len: usize = 0;
    for (i, &b) in rest.iter().enumerate().take(5) {
        len |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            let body = &rest[i + 1..];
            return (body.len() == len).then_some(body);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generic_secret_is_unwrapped_exactly() {
        // aimesh-xds's `plugin_configuration("{}", true)` (its test pins the same bytes).
        assert_eq!(
            unwrap_generic_secret(&[0x0a, 0x04, 0x1a, 0x02, b'{', b'}']),
            Some(&b"{}"[..])
        );
        let json = format!(r#"{{"accounts":{{"a":"{}"}}}}"#, "k".repeat(200));
        // Over 127 bytes: two-byte lengths.
        let mut ds = vec![0x1a];
        ds.extend(varint(json.len()));
        ds.extend(json.as_bytes());
        let mut msg = vec![0x0a];
        msg.extend(varint(ds.len()));
        msg.extend(&ds);
        assert_eq!(unwrap_generic_secret(&msg), Some(json.as_bytes()));
    }

    #[test]
    fn json_and_truncated_messages_are_not_secrets() {
        for raw in [
            &b"{}"[..],
            b"\n{\"accounts\":{}}",
            b"\n{\"auth\":{}}",
            b"\n",
            &[0x0a, 0x05, 0x1a, 0x02, b'{', b'}'],
            &[0x0a, 0x04, 0x22, 0x02, b'{', b'}'],
            &[0x0a, 0x80],
        ] {
            assert_eq!(unwrap_generic_secret(raw), None, "{raw:?}");
        }
    }

    fn varint(mut n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        while n >= 0x80 {
            out.push((n as u8 & 0x7f) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
        out
    }
}
