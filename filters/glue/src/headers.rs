//! A request's or response's headers, fetched from Envoy in one host call.
//!
//! Envoy answers every header read by calling back into the VM to allocate the result, and that
//! round trip dominates its price: `harness.bench_host` prices one `get_http_request_header`
//! about the same as the whole map (~1.5-3 µs each, run to run). A filter that reads two or more
//! headers reads the map once and looks names up here.
//!
//! Values are kept as bytes: proxy-wasm's `String` getters unwrap `from_utf8`, so a header
//! value with an obs-text byte (legal in HTTP/1.1, e.g. Latin-1) would trap the VM.

use std::cell::RefCell;
use std::time::SystemTime;

use aimesh_core::headers;
use proxy_wasm::traits::HttpContext;

thread_local! {
    static SHARED: RefCell<Shared> = RefCell::new(Shared::default());
}

/// State the stages of the chain build share within one Envoy callback.
///
/// - Header snapshots: each stage reads the header map (one host call, every value copied into
///   the VM); within one callback nothing but the stages changes it, and they change it through
///   [`set_request_header`] and [`set_response_header`], which keep the snapshot current.
/// - Internal request headers: `x-aimesh-*` facts one stage hands the next (the key id, the
///   model, ...) exist only to cross filter boundaries and are stripped before the request
///   leaves. Between stages of one filter they stay in the VM: setting and later removing each
///   would cost two host calls for nothing. `x-aimesh-cluster` stays real: Envoy routes on it.
/// - The clock: the stages of one callback see one instant, read once.
///
/// A standalone filter never turns this on: every read and write then goes to Envoy.
#[derive(Default)]
struct Shared {
    on: bool,
    request: Option<Headers>,
    response: Option<Headers>,
    internal: Headers,
    now: Option<SystemTime>,
}

impl Shared {
    fn slot(&mut self, response: bool) -> &mut Option<Headers> {
        if response {
            &mut self.response
        } else {
            &mut self.request
        }
    }

    /// Records an internal header change in the VM. True when Envoy's map needs no change:
    /// sharing is on, and it is a set, or the removal of a name Envoy's map does not hold (a
    /// client's own `x-aimesh-*` header is real and must really go).
    fn keep_internal(&mut self, name: &str, value: Option<&str>) -> bool {
        if !self.on {
            return false;
        }
        self.internal.set(name, value.map(str::as_bytes));
        value.is_some() || self.request.as_ref().is_some_and(|r| !r.has(name))
    }
}

/// The time, read from Envoy once per callback of the chain build (every call outside it).
pub(crate) fn callback_now(fetch: impl FnOnce() -> SystemTime) -> SystemTime {
    match SHARED.with(|s| {
        let s = s.borrow();
        s.on.then_some(s.now)
    }) {
        None => fetch(),
        Some(Some(t)) => t,
        Some(None) => {
            let t = fetch();
            SHARED.with(|s| s.borrow_mut().now = Some(t));
            t
        }
    }
}

/// Starts an Envoy callback of the chain build: sharing on, with the stream's internal request
/// headers (from [`end_callback`] of its previous callback).
pub fn begin_callback(internal: Headers) {
    SHARED.with(|s| {
        *s.borrow_mut() = Shared {
            on: true,
            internal,
            ..Shared::default()
        }
    });
}

/// Ends an Envoy callback of the chain build; returns the stream's internal request headers.
pub fn end_callback() -> Headers {
    SHARED.with(|s| std::mem::take(&mut *s.borrow_mut()).internal)
}

fn virtual_name(name: &str) -> bool {
    headers::is_internal(name) && !name.eq_ignore_ascii_case(headers::CLUSTER)
}

fn cached(response: bool, fetch: impl FnOnce() -> Headers) -> Headers {
    if !SHARED.with(|s| s.borrow().on) {
        return fetch();
    }
    let real = match SHARED.with(|s| s.borrow_mut().slot(response).clone()) {
        Some(h) => h,
        None => {
            let h = fetch();
            SHARED.with(|s| *s.borrow_mut().slot(response) = Some(h.clone()));
            h
        }
    };
    if response {
        return real;
    }
    SHARED.with(|s| {
        let mut out = real;
        for (k, v) in &s.borrow().internal.pairs {
            out.set(k, Some(v));
        }
        out
    })
}

fn update_cached(response: bool, name: &str, value: Option<&str>) {
    SHARED.with(|s| {
        if let Some(h) = s.borrow_mut().slot(response).as_mut() {
            h.set(name, value.map(str::as_bytes));
        }
    });
}

/// Sets (`Some`) or removes (`None`) a request header, keeping a shared snapshot current; in
/// the chain build an internal header (see [`Shared`]) stays in the VM.
pub fn set_request_header<C: HttpContext + ?Sized>(ctx: &C, name: &str, value: Option<&str>) {
    if virtual_name(name) && SHARED.with(|s| s.borrow_mut().keep_internal(name, value)) {
        return;
    }
    ctx.set_http_request_header(name, value);
    update_cached(false, name, value);
}

/// Replaces the request body this callback was given (see [`crate::Body::replace`]) and sets
/// `content-length` to match: a rewrite that left the old length would cut or stall the
/// upstream request.
pub fn replace_request_body<C: HttpContext + ?Sized>(ctx: &C, size: usize, body: &[u8]) {
    crate::Body::Request.replace(size, body);
    set_request_header(ctx, "content-length", Some(&body.len().to_string()));
}

/// Sets (`Some`) or removes (`None`) a response header, keeping a shared snapshot current.
pub fn set_response_header<C: HttpContext + ?Sized>(ctx: &C, name: &str, value: Option<&str>) {
    ctx.set_http_response_header(name, value);
    update_cached(true, name, value);
}

/// A snapshot of one header map (names lower-case, as Envoy keeps them).
#[derive(Debug, Clone, Default)]
pub struct Headers {
    pairs: Vec<(String, Vec<u8>)>,
}

impl Headers {
    /// The request headers as they are now.
    pub fn request<C: HttpContext + ?Sized>(ctx: &C) -> Self {
        cached(false, || Headers {
            pairs: ctx.get_http_request_headers_bytes(),
        })
    }

    /// The response headers as they are now.
    pub fn response<C: HttpContext + ?Sized>(ctx: &C) -> Self {
        cached(true, || Headers {
            pairs: ctx.get_http_response_headers_bytes(),
        })
    }

    /// Builds a snapshot from pairs (tests, and callers that already hold the map).
    pub fn from_pairs(pairs: Vec<(String, Vec<u8>)>) -> Self {
        Headers { pairs }
    }

    /// The first value of `name` as text; `None` when absent or not UTF-8.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_bytes(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The first value of `name`, non-empty, as text.
    pub fn get_nonempty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    /// The first value of `name` as bytes.
    pub fn get_bytes(&self, name: &str) -> Option<&[u8]> {
        self.pairs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// True when `name` is present (with any value).
    pub fn has(&self, name: &str) -> bool {
        self.get_bytes(name).is_some()
    }

    /// What Envoy's `set_http_*_header` does to the map: every value of `name` replaced by
    /// `value` (one, added at the end when absent), or removed.
    pub fn set(&mut self, name: &str, value: Option<&[u8]>) {
        let name = name.to_ascii_lowercase();
        match value {
            None => self.pairs.retain(|(k, _)| *k != name),
            Some(v) => {
                let mut first = true;
                self.pairs.retain_mut(|(k, old)| {
                    if *k != name {
                        return true;
                    }
                    if first {
                        first = false;
                        *old = v.to_vec();
                        return true;
                    }
                    false
                });
                if first {
                    self.pairs.push((name, v.to_vec()));
                }
            }
        }
    }

    /// Every header name, in order (a repeated header appears once per value).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.pairs.iter().map(|(k, _)| k.as_str())
    }

    /// Every `(name, value)`, in order.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hs() -> Headers {
        Headers::from_pairs(vec![
            (":path".into(), b"/v1/chat/completions".to_vec()),
            ("x-latin1".into(), vec![b'c', 0xe9]),
            ("x-empty".into(), Vec::new()),
            ("x-two".into(), b"first".to_vec()),
            ("x-two".into(), b"second".to_vec()),
        ])
    }

    #[test]
    fn lookups_are_by_lower_or_mixed_case_name_and_take_the_first_value() {
        let h = hs();
        assert_eq!(h.get(":path"), Some("/v1/chat/completions"));
        assert_eq!(h.get("X-Two"), Some("first"));
        assert_eq!(h.get("absent"), None);
        assert!(h.has("x-empty") && !h.has("absent"));
    }

    #[test]
    fn a_non_utf8_value_reads_as_absent_text_but_keeps_its_bytes() {
        let h = hs();
        assert_eq!(h.get("x-latin1"), None);
        assert_eq!(h.get_bytes("x-latin1"), Some(&[b'c', 0xe9][..]));
    }

    #[test]
    fn set_replaces_every_value_adds_or_removes() {
        let mut h = hs();
        h.set("X-Two", Some(b"only"));
        assert_eq!(h.names().filter(|n| *n == "x-two").count(), 1);
        assert_eq!(h.get("x-two"), Some("only"));
        h.set("x-new", Some(b"v"));
        assert_eq!(h.get("x-new"), Some("v"));
        h.set(":path", None);
        assert!(!h.has(":path"));
    }

    #[test]
    fn empty_values_are_present_but_not_nonempty() {
        let h = hs();
        assert_eq!(h.get("x-empty"), Some(""));
        assert_eq!(h.get_nonempty("x-empty"), None);
        assert_eq!(h.names().filter(|n| *n == "x-two").count(), 2);
    }

    #[test]
    fn the_stages_of_one_callback_read_the_clock_once() {
        let (t1, t2) = (SystemTime::UNIX_EPOCH, SystemTime::now());
        // Outside the chain every read is the host's.
        assert_eq!(callback_now(|| t1), t1);
        assert_eq!(callback_now(|| t2), t2);
        begin_callback(Headers::default());
        assert_eq!(callback_now(|| t1), t1);
        assert_eq!(callback_now(|| t2), t1);
        let _ = end_callback();
        begin_callback(Headers::default());
        assert_eq!(callback_now(|| t2), t2);
        let _ = end_callback();
    }
}
