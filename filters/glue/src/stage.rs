//! Hooks that let the filters run as stages of one filter (`aimesh-chain`): one VM per worker and
//! one set of host callbacks for the whole chain instead of five.
//!
//! A standalone filter never sets any of these, so each helper then behaves exactly like the
//! proxy-wasm call it replaces. The chain sets them around each stage's callback:
//! - the stage's own section of the chain config, read in `on_configure`;
//! - the body offset: Envoy hands a filter that buffers (`Action::Pause` on a body chunk) the
//!   whole buffer on its next callback, while a stage before it in the chain already passed the
//!   first bytes on and must see only the new ones;
//! - whether the stage answered the request itself, so the chain stops calling later stages.

use std::cell::{Cell, RefCell};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, Bytes};

thread_local! {
    static CONFIG: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
    static BODY_OFFSET: Cell<usize> = const { Cell::new(0) };
    static REPLIED: Cell<bool> = const { Cell::new(false) };
    static BODY_DELTA: Cell<isize> = const { Cell::new(0) };
}

/// Bytes the body grew (or, negative, shrank) by through [`Body::replace`] since the last call.
/// The size Envoy passed to the chain's callback is stale once a stage rewrote the body; the
/// chain corrects it with this before calling the next stage.
pub fn take_body_delta() -> isize {
    BODY_DELTA.with(|d| d.replace(0))
}

/// Notes that a body of `old` bytes was replaced by `new` ([`Body::replace`] calls it).
pub fn record_body_rewrite(old: usize, new: usize) {
    let delta = isize::try_from(new).unwrap_or(isize::MAX) - isize::try_from(old).unwrap_or(0);
    BODY_DELTA.with(|d| d.set(d.get().saturating_add(delta)));
}

/// The filter's configuration: the chain's section for the stage being configured, else
/// `PluginConfig.configuration` (unwrapped when it came as a generic secret, see
/// [`crate::config::unwrap_generic_secret`]).
pub fn plugin_configuration() -> Option<Bytes> {
    if let Some(section) = CONFIG.with(|c| c.borrow().clone()) {
        return Some(section);
    }
    let raw = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
        .ok()
        .flatten()?;
    match crate::config::unwrap_generic_secret(&raw) {
        Some(inner) => Some(inner.to_vec()),
        None => Some(raw),
    }
}

/// Runs `f` (a stage's `on_configure`) with `section` as its configuration.
pub fn with_config<R>(section: Vec<u8>, f: impl FnOnce() -> R) -> R {
    CONFIG.with(|c| *c.borrow_mut() = Some(section));
    let out = f();
    CONFIG.with(|c| *c.borrow_mut() = None);
    out
}

/// Runs `f` (a stage's body callback) with the first `offset` bytes of the buffer hidden.
pub fn with_body_offset<R>(offset: usize, f: impl FnOnce() -> R) -> R {
    BODY_OFFSET.with(|o| o.set(offset));
    let out = f();
    BODY_OFFSET.with(|o| o.set(0));
    out
}

/// The offset [`with_body_offset`] set (0 outside it).
pub fn body_offset() -> usize {
    BODY_OFFSET.with(Cell::get)
}

/// Notes that the current stage sent a local reply ([`crate::send_error`] does).
pub fn mark_replied() {
    REPLIED.with(|r| r.set(true));
}

/// True once (then reset) when a stage sent a local reply since the last call.
pub fn take_replied() -> bool {
    REPLIED.with(|r| r.replace(false))
}

/// Which body a helper reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// The request body.
    Request,
    /// The response body.
    Response,
}

impl Body {
    fn buffer(self) -> BufferType {
        match self {
            Body::Request => BufferType::HttpRequestBody,
            Body::Response => BufferType::HttpResponseBody,
        }
    }

    /// The `size` bytes of body this callback was given (`usize::MAX`: all there is).
    pub fn read(self, size: usize) -> Option<Bytes> {
        let offset = BODY_OFFSET.with(Cell::get);
        hostcalls::get_buffer(self.buffer(), offset, size)
            .ok()
            .flatten()
    }

    /// Replaces the `size` bytes this callback was given with `data`.
    pub fn replace(self, size: usize, data: &[u8]) {
        let offset = BODY_OFFSET.with(Cell::get);
        if offset == 0 {
            if hostcalls::set_buffer(self.buffer(), 0, size, data).is_ok() {
                record_body_rewrite(size, data.len());
            }
            return;
        }
        // Envoy only prepends, appends or replaces from the start: a range in the middle is
        // `BadArgument`. Rebuild the whole buffer instead (only when stages interleave).
        let whole = hostcalls::get_buffer(self.buffer(), 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        let start = offset.min(whole.len());
        let end = offset.saturating_add(size).min(whole.len());
        let mut out = Vec::with_capacity(whole.len() - (end - start) + data.len());
        out.extend_from_slice(&whole[..start]);
        out.extend_from_slice(data);
        out.extend_from_slice(&whole[end..]);
        if hostcalls::set_buffer(self.buffer(), 0, whole.len(), &out).is_ok() {
            record_body_rewrite(whole.len(), out.len());
        }
    }
}
