//! Local replies and header hygiene.

use aimesh_core::{headers, ApiError, ErrorKind};
use proxy_wasm::traits::HttpContext;

use crate::Headers;

/// Answers the request with an OpenAI-shaped error; the request goes no further.
pub fn send_error<C: HttpContext + ?Sized>(ctx: &C, err: &dyn ErrorKind) {
    let api = ApiError::from_kind(err);
    let hs: Vec<(&str, &str)> = api
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    send_json(ctx, api.status, &hs, api.body.as_bytes());
}

/// Answers the request itself with a JSON body; the request goes no further.
pub fn send_json<C: HttpContext + ?Sized>(
    ctx: &C,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
) {
    let mut hs: Vec<(&str, &str)> = vec![("content-type", "application/json")];
    hs.extend_from_slice(headers);
    ctx.send_http_response(u32::from(status), hs, Some(body));
    crate::stage::mark_replied();
}

/// Removes every `x-aimesh-*` request header named in `hs` (the request's headers).
pub fn strip_internal_headers<C: HttpContext + ?Sized>(ctx: &C, hs: &Headers) {
    for name in hs.names() {
        if headers::is_internal(name) {
            crate::set_request_header(ctx, name, None);
        }
    }
}
