//! The bindings: Envoy 1.40.0's dynamic-module ABI (`source/extensions/dynamic_modules/abi/abi.h`
//! of that release), the part of it this module uses. Every `unsafe` of the crate is here.
//!
//! Two directions:
//! - callbacks Envoy exports (`envoy_dynamic_module_callback_*`), wrapped in [`Filter`] and
//!   [`FilterConfig`], whose safe methods copy what Envoy owns into Rust values;
//! - event hooks Envoy calls (`envoy_dynamic_module_on_*`), which turn the raw pointers into
//!   those handles and hand over to [`crate::module`]. A panic never crosses into Envoy: each hook
//!   catches it (the native profile unwinds) and answers as if the module did nothing.
//!
//! The ABI is C: enums are `int`-sized, buffers are `(pointer, length)` pairs passed by value.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use aimesh_host::Headers;

use crate::module;

/// `envoy_dynamic_module_type_envoy_buffer`: bytes Envoy owns, valid during the hook.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyBuffer {
    ptr: *const u8,
    len: usize,
}

/// `envoy_dynamic_module_type_module_buffer`: bytes this module owns, lent for one call.
#[repr(C)]
#[derive(Clone, Copy)]
struct ModuleBuffer {
    ptr: *const u8,
    len: usize,
}

impl ModuleBuffer {
    fn of(b: &[u8]) -> Self {
        ModuleBuffer {
            ptr: b.as_ptr(),
            len: b.len(),
        }
    }
    /// A null buffer: "absent" (a header set to null is removed).
    fn null() -> Self {
        ModuleBuffer {
            ptr: ptr::null(),
            len: 0,
        }
    }
}

/// `envoy_dynamic_module_type_envoy_http_header`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyHeader {
    key_ptr: *const u8,
    key_len: usize,
    value_ptr: *const u8,
    value_len: usize,
}

/// `envoy_dynamic_module_type_module_http_header`; also the ABI's
/// `envoy_dynamic_module_type_module_key_value_pair`, which has the same layout.
#[repr(C)]
struct ModuleHeader {
    key_ptr: *const u8,
    key_len: usize,
    value_ptr: *const u8,
    value_len: usize,
}

/// `envoy_dynamic_module_type_http_header_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum HeaderKind {
    /// Request headers.
    Request = 0,
    /// Response headers.
    Response = 2,
}

/// `envoy_dynamic_module_type_http_body_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum BodyKind {
    /// The request chunk of this callback.
    ReceivedRequest = 0,
    /// What Envoy buffered of the request so far.
    BufferedRequest = 1,
    /// The response chunk of this callback.
    ReceivedResponse = 2,
    /// What Envoy buffered of the response so far.
    BufferedResponse = 3,
}

/// `envoy_dynamic_module_type_metadata_source`.
#[derive(Debug, Clone, Copy)]
#[repr(u32)]
pub enum MetadataSource {
    /// The stream's dynamic metadata.
    Dynamic = 0,
    /// The upstream host's (LbEndpoint) metadata.
    Host = 3,
}

/// `envoy_dynamic_module_type_attribute_id` values this module reads.
#[derive(Debug, Clone, Copy)]
#[repr(u32)]
pub enum Attribute {
    /// `xds.cluster_name`.
    XdsClusterName = 57,
    /// `xds.route_name`.
    XdsRouteName = 61,
}

/// `envoy_dynamic_module_type_log_level`.
#[derive(Debug, Clone, Copy)]
#[repr(u32)]
pub enum LogLevel {
    /// Debug.
    Debug = 1,
    /// Info.
    Info = 2,
    /// Warn.
    Warn = 3,
    /// Error.
    Error = 4,
}

type EnvoyPtr = *mut c_void;
type ModulePtr = *const c_void;

extern "C" {
    fn envoy_dynamic_module_callback_log(level: u32, message: ModuleBuffer);
    fn envoy_dynamic_module_callback_log_enabled(level: u32) -> bool;

    fn envoy_dynamic_module_callback_http_get_headers_size(f: EnvoyPtr, kind: u32) -> usize;
    fn envoy_dynamic_module_callback_http_get_headers(
        f: EnvoyPtr,
        kind: u32,
        out: *mut EnvoyHeader,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_set_header(
        f: EnvoyPtr,
        kind: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_add_header(
        f: EnvoyPtr,
        kind: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_send_response(
        f: EnvoyPtr,
        status: u32,
        headers: *mut ModuleHeader,
        headers_len: usize,
        body: ModuleBuffer,
        details: ModuleBuffer,
    );
    fn envoy_dynamic_module_callback_http_get_body_chunks_size(f: EnvoyPtr, kind: u32) -> usize;
    fn envoy_dynamic_module_callback_http_get_body_chunks(
        f: EnvoyPtr,
        kind: u32,
        out: *mut EnvoyBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_append_body(
        f: EnvoyPtr,
        kind: u32,
        data: ModuleBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_drain_body(f: EnvoyPtr, kind: u32, n: usize) -> bool;
    fn envoy_dynamic_module_callback_http_received_buffered_request_body(f: EnvoyPtr) -> bool;
    fn envoy_dynamic_module_callback_http_received_buffered_response_body(f: EnvoyPtr) -> bool;
    fn envoy_dynamic_module_callback_http_set_dynamic_metadata_string_batch(
        f: EnvoyPtr,
        ns: ModuleBuffer,
        pairs: *const ModuleHeader,
        count: usize,
    );
    fn envoy_dynamic_module_callback_http_set_dynamic_metadata_number(
        f: EnvoyPtr,
        ns: ModuleBuffer,
        key: ModuleBuffer,
        value: f64,
    );
    fn envoy_dynamic_module_callback_http_set_dynamic_metadata_bool(
        f: EnvoyPtr,
        ns: ModuleBuffer,
        key: ModuleBuffer,
        value: bool,
    );
    fn envoy_dynamic_module_callback_http_get_metadata_string(
        f: EnvoyPtr,
        source: u32,
        ns: ModuleBuffer,
        key: ModuleBuffer,
        out: *mut EnvoyBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_set_filter_state_bytes(
        f: EnvoyPtr,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_get_filter_state_bytes(
        f: EnvoyPtr,
        key: ModuleBuffer,
        out: *mut EnvoyBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        f: EnvoyPtr,
        attribute: u32,
        out: *mut EnvoyBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_filter_http_callout(
        f: EnvoyPtr,
        id_out: *mut u64,
        cluster: ModuleBuffer,
        headers: *mut ModuleHeader,
        headers_len: usize,
        body: ModuleBuffer,
        timeout_ms: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_continue_decoding(f: EnvoyPtr);
    fn envoy_dynamic_module_callback_http_clear_route_cache(f: EnvoyPtr);

    fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        c: EnvoyPtr,
        name: ModuleBuffer,
        labels: *mut ModuleBuffer,
        labels_len: usize,
        id_out: *mut usize,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_define_gauge(
        c: EnvoyPtr,
        name: ModuleBuffer,
        labels: *mut ModuleBuffer,
        labels_len: usize,
        id_out: *mut usize,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_define_histogram(
        c: EnvoyPtr,
        name: ModuleBuffer,
        labels: *mut ModuleBuffer,
        labels_len: usize,
        id_out: *mut usize,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_increment_counter(
        c: EnvoyPtr,
        id: usize,
        labels: *mut ModuleBuffer,
        labels_len: usize,
        value: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_set_gauge(
        c: EnvoyPtr,
        id: usize,
        labels: *mut ModuleBuffer,
        labels_len: usize,
        value: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_record_histogram_value(
        c: EnvoyPtr,
        id: usize,
        labels: *mut ModuleBuffer,
        labels_len: usize,
        value: u64,
    ) -> u32;
}

/// Copies `len` bytes Envoy owns.
fn copy(ptr: *const u8, len: usize) -> Vec<u8> {
    if ptr.is_null() || len == 0 {
        return Vec::new();
    }
    // SAFETY: Envoy hands out (ptr, len) pairs that stay valid until the end of the current
    // hook (abi.h, every getter), and the copy is made before the hook returns.
    unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec()
}

/// The bytes a getter callback points `out` at (a valid place to write, alive for the call),
/// copied before the hook returns; `None` when the getter answers false.
fn envoy_bytes(get: impl FnOnce(*mut EnvoyBuffer) -> bool) -> Option<Vec<u8>> {
    let mut out = EnvoyBuffer {
        ptr: ptr::null(),
        len: 0,
    };
    get(&mut out).then(|| copy(out.ptr, out.len))
}

/// Envoy's `(ptr, len)` as a slice, for copying out before the hook returns.
fn borrowed<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if ptr.is_null() || len == 0 {
        return &[];
    }
    // SAFETY: as `copy`; every caller copies the slice into a snapshot at once, within the
    // hook, and keeps no reference to it.
    unsafe { std::slice::from_raw_parts(ptr, len) }
}

/// A snapshot of Envoy's header map, each name and value copied once into it.
fn headers_of(raw: &[EnvoyHeader]) -> Headers {
    let bytes = raw.iter().map(|h| h.key_len + h.value_len).sum();
    Headers::from_slices_sized(
        raw.iter().map(|h| {
            (
                borrowed(h.key_ptr, h.key_len),
                borrowed(h.value_ptr, h.value_len),
            )
        }),
        bytes,
    )
}

fn module_headers(headers: &[(&str, &str)]) -> Vec<ModuleHeader> {
    headers
        .iter()
        .map(|(k, v)| ModuleHeader {
            key_ptr: k.as_ptr(),
            key_len: k.len(),
            value_ptr: v.as_ptr(),
            value_len: v.len(),
        })
        .collect()
}

/// Writes a line to Envoy's log (`[dynamic_modules]`).
pub fn log(level: LogLevel, message: &str) {
    // SAFETY: the buffer borrows `message`, alive for the call; Envoy copies it.
    unsafe { envoy_dynamic_module_callback_log(level as u32, ModuleBuffer::of(message.as_bytes())) }
}

/// True when Envoy would print a line of `level`.
pub fn log_enabled(level: LogLevel) -> bool {
    // SAFETY: no pointers involved.
    unsafe { envoy_dynamic_module_callback_log_enabled(level as u32) }
}

/// One stream's filter in Envoy (`DynamicModuleHttpFilter*`), valid from `on_http_filter_new`
/// until `on_http_filter_destroy`; only used on the worker thread that runs the stream.
#[derive(Debug, Clone, Copy)]
pub struct Filter(EnvoyPtr);

impl Filter {
    /// Every header of a map.
    pub fn headers(self, kind: HeaderKind) -> Headers {
        // SAFETY: `self.0` is a live filter (see the type); the array has room for the count
        // Envoy just reported, and Envoy writes at most that many entries.
        unsafe {
            let n = envoy_dynamic_module_callback_http_get_headers_size(self.0, kind as u32);
            if n == 0 {
                return Headers::default();
            }
            let mut raw: Vec<EnvoyHeader> = Vec::with_capacity(n);
            if !envoy_dynamic_module_callback_http_get_headers(
                self.0,
                kind as u32,
                raw.as_mut_ptr(),
            ) {
                return Headers::default();
            }
            raw.set_len(n);
            headers_of(&raw)
        }
    }

    /// Sets (`Some`) or removes (`None`) a header.
    pub fn set_header(self, kind: HeaderKind, name: &str, value: Option<&[u8]>) {
        let v = value.map_or_else(ModuleBuffer::null, ModuleBuffer::of);
        // SAFETY: live filter; both buffers borrow data alive for the call, Envoy copies them.
        unsafe {
            envoy_dynamic_module_callback_http_set_header(
                self.0,
                kind as u32,
                ModuleBuffer::of(name.as_bytes()),
                v,
            );
        }
    }

    /// Adds a header value.
    pub fn add_header(self, kind: HeaderKind, name: &str, value: &[u8]) {
        // SAFETY: as `set_header`.
        unsafe {
            envoy_dynamic_module_callback_http_add_header(
                self.0,
                kind as u32,
                ModuleBuffer::of(name.as_bytes()),
                ModuleBuffer::of(value),
            );
        }
    }

    /// Answers the request locally. No response-code details: like proxy-wasm's local replies,
    /// so the listener's local-reply mappers tell them from Envoy's own.
    pub fn send_response(self, status: u16, headers: &[(&str, &str)], body: &[u8]) {
        let mut hs = module_headers(headers);
        // SAFETY: live filter; `hs` and the strings it points into outlive the call.
        unsafe {
            envoy_dynamic_module_callback_http_send_response(
                self.0,
                u32::from(status),
                hs.as_mut_ptr(),
                hs.len(),
                ModuleBuffer::of(body),
                ModuleBuffer::null(),
            );
        }
    }

    /// One body buffer, copied (empty when Envoy has none).
    pub fn body(self, kind: BodyKind) -> Vec<u8> {
        // SAFETY: live filter; the array has room for the count Envoy reported; each chunk is
        // copied before the hook returns.
        unsafe {
            let n = envoy_dynamic_module_callback_http_get_body_chunks_size(self.0, kind as u32);
            if n == 0 {
                return Vec::new();
            }
            let mut raw: Vec<EnvoyBuffer> = Vec::with_capacity(n);
            if !envoy_dynamic_module_callback_http_get_body_chunks(
                self.0,
                kind as u32,
                raw.as_mut_ptr(),
            ) {
                return Vec::new();
            }
            raw.set_len(n);
            let mut out = Vec::new();
            for c in &raw {
                out.extend_from_slice(&copy(c.ptr, c.len));
            }
            out
        }
    }

    /// Drains a body buffer and appends `data` to it; false when Envoy has no such buffer.
    pub fn replace_body(self, kind: BodyKind, data: &[u8]) -> bool {
        // SAFETY: live filter; `data` is alive for the call and Envoy copies it.
        unsafe {
            if !envoy_dynamic_module_callback_http_drain_body(self.0, kind as u32, usize::MAX) {
                return false;
            }
            data.is_empty()
                || envoy_dynamic_module_callback_http_append_body(
                    self.0,
                    kind as u32,
                    ModuleBuffer::of(data),
                )
        }
    }

    /// Empties a body buffer.
    pub fn drain_body(self, kind: BodyKind) {
        // SAFETY: live filter.
        unsafe {
            envoy_dynamic_module_callback_http_drain_body(self.0, kind as u32, usize::MAX);
        }
    }

    /// True when this callback's chunk is the buffer itself (an earlier filter resumed).
    pub fn received_is_buffered(self, request: bool) -> bool {
        // SAFETY: live filter.
        unsafe {
            if request {
                envoy_dynamic_module_callback_http_received_buffered_request_body(self.0)
            } else {
                envoy_dynamic_module_callback_http_received_buffered_response_body(self.0)
            }
        }
    }

    /// Sets several strings of one namespace of the stream's dynamic metadata in one call
    /// (Envoy merges them at once, where one call per string merges each).
    pub fn set_metadata_strings(self, ns: &str, pairs: &[(&str, &str)]) {
        if pairs.is_empty() {
            return;
        }
        let pairs = module_headers(pairs);
        // SAFETY: live filter; `pairs` (key/value pairs borrowing the caller's strings) and
        // `ns` are alive for the call, and Envoy copies them.
        unsafe {
            envoy_dynamic_module_callback_http_set_dynamic_metadata_string_batch(
                self.0,
                ModuleBuffer::of(ns.as_bytes()),
                pairs.as_ptr(),
                pairs.len(),
            );
        }
    }

    /// Sets a number in the stream's dynamic metadata.
    pub fn set_metadata_number(self, ns: &str, key: &str, value: f64) {
        // SAFETY: live filter; the buffers are alive for the call, Envoy copies them.
        unsafe {
            envoy_dynamic_module_callback_http_set_dynamic_metadata_number(
                self.0,
                ModuleBuffer::of(ns.as_bytes()),
                ModuleBuffer::of(key.as_bytes()),
                value,
            );
        }
    }

    /// Sets a bool in the stream's dynamic metadata.
    pub fn set_metadata_bool(self, ns: &str, key: &str, value: bool) {
        // SAFETY: as `set_metadata_number`.
        unsafe {
            envoy_dynamic_module_callback_http_set_dynamic_metadata_bool(
                self.0,
                ModuleBuffer::of(ns.as_bytes()),
                ModuleBuffer::of(key.as_bytes()),
                value,
            );
        }
    }

    /// A string of some metadata (`None`: absent or not a string).
    pub fn metadata_string(self, source: MetadataSource, ns: &str, key: &str) -> Option<Vec<u8>> {
        // SAFETY: live filter; the buffers are alive for the call; `out` as `envoy_bytes` says.
        envoy_bytes(|out| unsafe {
            envoy_dynamic_module_callback_http_get_metadata_string(
                self.0,
                source as u32,
                ModuleBuffer::of(ns.as_bytes()),
                ModuleBuffer::of(key.as_bytes()),
                out,
            )
        })
    }

    /// Sets a filter-state value (a string accessor; `%FILTER_STATE(key:PLAIN)%` reads it).
    pub fn set_filter_state(self, key: &str, value: &[u8]) {
        // SAFETY: live filter; the buffers are alive for the call, Envoy copies them.
        unsafe {
            envoy_dynamic_module_callback_http_set_filter_state_bytes(
                self.0,
                ModuleBuffer::of(key.as_bytes()),
                ModuleBuffer::of(value),
            );
        }
    }

    /// A string filter-state value (`None`: absent, or not a string accessor).
    pub fn filter_state(self, key: &str) -> Option<Vec<u8>> {
        // SAFETY: live filter; the key is alive for the call; `out` as `envoy_bytes` says.
        envoy_bytes(|out| unsafe {
            envoy_dynamic_module_callback_http_get_filter_state_bytes(
                self.0,
                ModuleBuffer::of(key.as_bytes()),
                out,
            )
        })
    }

    /// A string attribute (`None`: not available in this phase).
    pub fn attribute(self, id: Attribute) -> Option<Vec<u8>> {
        // SAFETY: live filter; `out` as `envoy_bytes` says.
        envoy_bytes(|out| unsafe {
            envoy_dynamic_module_callback_http_filter_get_attribute_string(self.0, id as u32, out)
        })
    }

    /// Sends an HTTP callout; its id, or `None` when Envoy refused it.
    pub fn http_callout(
        self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u64,
    ) -> Option<u64> {
        let mut hs = module_headers(headers);
        let mut id = 0u64;
        // SAFETY: live filter; every buffer outlives the call; `id` is a valid place to write.
        let r = unsafe {
            envoy_dynamic_module_callback_http_filter_http_callout(
                self.0,
                &mut id,
                ModuleBuffer::of(cluster.as_bytes()),
                hs.as_mut_ptr(),
                hs.len(),
                ModuleBuffer::of(body),
                timeout_ms,
            )
        };
        (r == 0).then_some(id)
    }

    /// Resumes a request this filter stopped.
    pub fn continue_decoding(self) {
        // SAFETY: live filter.
        unsafe { envoy_dynamic_module_callback_http_filter_continue_decoding(self.0) }
    }

    /// Makes Envoy pick the route again (a header the route matches on changed).
    pub fn clear_route_cache(self) {
        // SAFETY: live filter.
        unsafe { envoy_dynamic_module_callback_http_clear_route_cache(self.0) }
    }
}

/// A metric kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Counter.
    Counter,
    /// Gauge.
    Gauge,
    /// Histogram.
    Histogram,
}

/// Most labels a family may have (`NativeMetrics` defines no wider one).
pub const MAX_LABELS: usize = 16;

/// The filter's configuration in Envoy (`DynamicModuleHttpFilterConfig*`), valid until
/// `on_http_filter_config_destroy`; its metric calls are thread-safe (Envoy's stats are).
#[derive(Debug, Clone, Copy)]
pub struct FilterConfig(usize);

impl FilterConfig {
    /// A handle to no configuration, for tests that never reach Envoy.
    #[cfg(test)]
    pub fn detached() -> Self {
        FilterConfig(0)
    }

    fn raw(self) -> EnvoyPtr {
        self.0 as EnvoyPtr
    }

    /// Defines a metric (`labels` empty) or a family labelled `labels`; its id, `None` when
    /// Envoy refused (Envoy only accepts definitions while the configuration is being created).
    pub fn define(self, kind: MetricKind, name: &str, labels: &[&str]) -> Option<usize> {
        let mut id = 0usize;
        let n = ModuleBuffer::of(name.as_bytes());
        let mut labels: Vec<ModuleBuffer> = labels
            .iter()
            .map(|l| ModuleBuffer::of(l.as_bytes()))
            .collect();
        let (ptr, len) = (labels.as_mut_ptr(), labels.len());
        // SAFETY: live config; `len` labels at `ptr`, alive for the call; `id` is a valid place
        // to write.
        let r = unsafe {
            match kind {
                MetricKind::Counter => {
                    envoy_dynamic_module_callback_http_filter_config_define_counter(
                        self.raw(),
                        n,
                        ptr,
                        len,
                        &mut id,
                    )
                }
                MetricKind::Gauge => envoy_dynamic_module_callback_http_filter_config_define_gauge(
                    self.raw(),
                    n,
                    ptr,
                    len,
                    &mut id,
                ),
                MetricKind::Histogram => {
                    envoy_dynamic_module_callback_http_filter_config_define_histogram(
                        self.raw(),
                        n,
                        ptr,
                        len,
                        &mut id,
                    )
                }
            }
        };
        if r != 0 {
            log::debug!("aimesh: Envoy refused to define stat `{name}` (result {r})");
        }
        (r == 0).then_some(id)
    }

    /// Adds to a counter, sets a gauge or records a histogram value; `values` are the label
    /// values of a family (as many as it was defined with), empty for a plain metric.
    pub fn update(self, kind: MetricKind, id: usize, values: &[&str], value: u64) {
        let mut labels = [ModuleBuffer::of(&[]); MAX_LABELS];
        if values.len() > MAX_LABELS {
            return;
        }
        for (slot, v) in labels.iter_mut().zip(values) {
            *slot = ModuleBuffer::of(v.as_bytes());
        }
        let (ptr, len) = (labels.as_mut_ptr(), values.len());
        // SAFETY: live config; `id` came from `define` on the same config with `len` labels;
        // the label values are alive for the call and Envoy copies them.
        unsafe {
            match kind {
                MetricKind::Counter => {
                    envoy_dynamic_module_callback_http_filter_config_increment_counter(
                        self.raw(),
                        id,
                        ptr,
                        len,
                        value,
                    )
                }
                MetricKind::Gauge => envoy_dynamic_module_callback_http_filter_config_set_gauge(
                    self.raw(),
                    id,
                    ptr,
                    len,
                    value,
                ),
                MetricKind::Histogram => {
                    envoy_dynamic_module_callback_http_filter_config_record_histogram_value(
                        self.raw(),
                        id,
                        ptr,
                        len,
                        value,
                    )
                }
            }
        };
    }
}

// ------------------------------------------------------------------------------------------
// Event hooks. Each runs its body under `catch_unwind`: a bug in a stage answers like a module
// that does nothing (continue, or no config) instead of aborting Envoy.

fn guard<R>(fallback: R, f: impl FnOnce() -> R) -> R {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

fn bytes(b: EnvoyBuffer) -> Vec<u8> {
    copy(b.ptr, b.len)
}

/// The ABI version this module was written against (Envoy 1.40.0 reports a mismatch as a
/// warning only; `docs/native.md` says how an upgrade is checked).
static ABI_VERSION: &[u8] = b"v0.2.0\0";

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_program_init() -> *const u8 {
    guard((), module::program_init);
    ABI_VERSION.as_ptr()
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy: EnvoyPtr,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> ModulePtr {
    let (name, config) = (bytes(name), bytes(config));
    let cfg = FilterConfig(config_envoy as usize);
    guard(ptr::null(), || {
        match module::config_new(cfg, &name, &config) {
            Some(c) => Box::into_raw(c) as ModulePtr,
            None => ptr::null(),
        }
    })
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: ModulePtr) {
    if config.is_null() {
        return;
    }
    // SAFETY: `config` is the pointer `config_new` made with `Box::into_raw`; Envoy destroys
    // it once, after every filter it created is gone.
    let c = unsafe { Box::from_raw(config as *mut module::Config) };
    guard((), move || drop(c));
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_new(
    _name: EnvoyBuffer,
    _config: EnvoyBuffer,
) -> ModulePtr {
    // No per-route configuration: refusing it rejects such a config instead of ignoring it.
    ptr::null()
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_destroy(_c: ModulePtr) {}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: ModulePtr,
    filter_envoy: EnvoyPtr,
) -> ModulePtr {
    if config.is_null() {
        return ptr::null();
    }
    // SAFETY: `config` came from `config_new` and lives until its destroy hook, which Envoy
    // calls only after every filter it created is destroyed.
    let c = unsafe { &*(config as *const module::Config) };
    guard(ptr::null(), || {
        Box::into_raw(Box::new(module::Stream::new(c, Filter(filter_envoy)))) as ModulePtr
    })
}

/// The stream a hook is about.
///
/// SAFETY (for callers): `p` is a pointer `on_http_filter_new` made with `Box::into_raw`; Envoy
/// passes it to hooks of that stream only, on the stream's worker thread, one hook at a time, and
/// never after `on_http_filter_destroy`.
unsafe fn stream<'a>(p: ModulePtr) -> Option<&'a mut module::Stream> {
    (p as *mut module::Stream).as_mut()
}

macro_rules! stream_hook {
    ($name:ident, $method:ident $(, $arg:ident : $ty:ty)*) => {
        #[no_mangle]
        extern "C" fn $name(filter_envoy: EnvoyPtr, m: ModulePtr $(, $arg: $ty)*) -> u32 {
            // SAFETY: see `stream`.
            let Some(s) = (unsafe { stream(m) }) else { return 0 };
            guard(0, || s.$method(Filter(filter_envoy) $(, $arg)*))
        }
    };
}

stream_hook!(envoy_dynamic_module_on_http_filter_request_headers, request_headers, eos: bool);
stream_hook!(envoy_dynamic_module_on_http_filter_request_body, request_body, eos: bool);
stream_hook!(
    envoy_dynamic_module_on_http_filter_request_trailers,
    request_trailers
);
stream_hook!(envoy_dynamic_module_on_http_filter_response_headers, response_headers, eos: bool);
stream_hook!(envoy_dynamic_module_on_http_filter_response_body, response_body, eos: bool);
stream_hook!(
    envoy_dynamic_module_on_http_filter_response_trailers,
    response_trailers
);

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    filter_envoy: EnvoyPtr,
    m: ModulePtr,
) {
    // SAFETY: see `stream`.
    if let Some(s) = unsafe { stream(m) } {
        guard((), || s.complete(Filter(filter_envoy)));
    }
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_destroy(m: ModulePtr) {
    if m.is_null() {
        return;
    }
    // SAFETY: `m` came from `Box::into_raw` in `on_http_filter_new`; Envoy destroys it once.
    let s = unsafe { Box::from_raw(m as *mut module::Stream) };
    guard((), move || drop(s));
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    filter_envoy: EnvoyPtr,
    m: ModulePtr,
    id: u64,
    result: u32,
    headers: *const EnvoyHeader,
    headers_len: usize,
    body: *const EnvoyBuffer,
    body_len: usize,
) {
    // SAFETY: see `stream`.
    let Some(s) = (unsafe { stream(m) }) else {
        return;
    };
    let hs = if headers.is_null() || result != 0 {
        Headers::default()
    } else {
        // SAFETY: Envoy passes `headers_len` headers, valid during this hook.
        headers_of(unsafe { std::slice::from_raw_parts(headers, headers_len) })
    };
    let mut b = Vec::new();
    if !body.is_null() && result == 0 {
        // SAFETY: Envoy passes `body_len` chunks, valid during this hook.
        for c in unsafe { std::slice::from_raw_parts(body, body_len) } {
            b.extend_from_slice(&copy(c.ptr, c.len));
        }
    }
    guard((), || s.callout_done(Filter(filter_envoy), id, hs, b));
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_local_reply(
    _f: EnvoyPtr,
    _m: ModulePtr,
    _status: u32,
    _details: EnvoyBuffer,
    _reset: bool,
) -> u32 {
    0
}

// Hooks of ABI features this module does not use (streamed callouts, schedulers, watermarks,
// config-level callouts): exported because Envoy may resolve them when it loads the module.
#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(_f: EnvoyPtr, _m: ModulePtr, _e: u64) {}
#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    _c: EnvoyPtr,
    _m: ModulePtr,
    _e: u64,
) {
}
#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _f: EnvoyPtr,
    _m: ModulePtr,
) {
}
#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _f: EnvoyPtr,
    _m: ModulePtr,
) {
}
#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _f: EnvoyPtr,
    _m: ModulePtr,
    _id: u64,
    _h: *const EnvoyHeader,
    _n: usize,
    _end: bool,
) {
}
#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _f: EnvoyPtr,
    _m: ModulePtr,
    _id: u64,
    _d: *const EnvoyBuffer,
    _n: usize,
    _end: bool,
) {
}
#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _f: EnvoyPtr,
    _m: ModulePtr,
    _id: u64,
    _h: *const EnvoyHeader,
    _n: usize,
) {
}
#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _f: EnvoyPtr,
    _m: ModulePtr,
    _id: u64,
) {
}
#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _f: EnvoyPtr,
    _m: ModulePtr,
    _id: u64,
    _reason: u32,
) {
}
#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    _c: EnvoyPtr,
    _m: ModulePtr,
    _id: u64,
    _result: u32,
    _h: *const EnvoyHeader,
    _hn: usize,
    _b: *const EnvoyBuffer,
    _bn: usize,
) {
}
#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_headers(
    _c: EnvoyPtr,
    _m: ModulePtr,
    _id: u64,
    _h: *const EnvoyHeader,
    _n: usize,
    _end: bool,
) {
}
#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_data(
    _c: EnvoyPtr,
    _m: ModulePtr,
    _id: u64,
    _d: *const EnvoyBuffer,
    _n: usize,
    _end: bool,
) {
}
#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_trailers(
    _c: EnvoyPtr,
    _m: ModulePtr,
    _id: u64,
    _h: *const EnvoyHeader,
    _n: usize,
) {
}
#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_complete(
    _c: EnvoyPtr,
    _m: ModulePtr,
    _id: u64,
) {
}
#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_reset(
    _c: EnvoyPtr,
    _m: ModulePtr,
    _id: u64,
    _reason: u32,
) {
}
