//! Local replies and header hygiene, over any [`Host`].

use aimesh_core::{headers, ApiError, ErrorKind};

use crate::Host;

/// Answers the request with an error in the client's dialect (OpenAI's, or Anthropic's for
/// `/v1/messages`); the request goes no further.
pub fn send_error(host: &mut dyn Host, err: &dyn ErrorKind) {
    let hs = host.request_headers();
    let dialect = host.facts().dialect_or(&hs);
    let api = ApiError::in_dialect(err, dialect);
    let hs: Vec<(&str, &str)> = api
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    send_json(host, api.status, &hs, api.body.as_bytes());
}

/// Answers the request itself with a JSON body; the request goes no further.
pub fn send_json(host: &mut dyn Host, status: u16, headers: &[(&str, &str)], body: &[u8]) {
    let mut hs: Vec<(&str, &str)> = vec![("content-type", "application/json")];
    hs.extend_from_slice(headers);
    host.send_reply(status, &hs, body);
}

/// Removes every `x-aimesh-*` request header the request carries (a client's are forgeries).
pub fn strip_internal_headers(host: &mut dyn Host) {
    let hs = host.request_headers();
    for name in hs.names() {
        if headers::is_internal(name) {
            host.set_request_header(name, None);
        }
    }
}

/// Replaces the request body this callback was given and sets `content-length` to match: a
/// rewrite that left the old length would cut or stall the upstream request.
pub fn replace_request_body(host: &mut dyn Host, size: usize, body: &[u8]) {
    host.replace_body(crate::Body::Request, size, body);
    host.set_request_header("content-length", Some(&body.len().to_string()));
}
