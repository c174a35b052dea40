//! Local replies and header hygiene.

use aimesh_core::{headers, ApiError, ErrorKind};
use proxy_wasm::traits::HttpContext;

use crate::Headers;

/// Answers the request with an OpenAI-shaped error; the request goes no further.
pub fn send_error<C: HttpContext + ?Sized>(ctx: &C, err: &dyn ErrorKind) {
    let api = ApiError::from_kind(err);
    let mut hs: Vec<(&str, &str)> = vec![("content-type", "application/json")];
    hs.extend(api.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    ctx.send_http_response(u32::from(api.status), hs, Some(api.body.as_bytes()));
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
