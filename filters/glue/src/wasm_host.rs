//! [`WasmHost`]: one request's [`Host`] over proxy-wasm host calls.
//!
//! Prices, not semantics, shape it (docs/architecture.md has the per-call figures): Envoy
//! answers every read by calling back into the VM to allocate the result, so each header map is
//! read once per callback and kept current by the edits made through it; the clock is read once
//! per callback; facts cross to Envoy only where something outside the VM needs them.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use aimesh_core::headers as names;
use aimesh_core::host::{Metrics, SharedStore};
use aimesh_host::{Body, CalloutError, Env, Facts, Headers, Host, PipelineHost};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType};

use crate::header_map::HeaderMap;
use crate::host::{host_now, HostMetrics, HostStore};

/// What a root context (and every stream) may use: stats, shared data, the clock, properties.
#[derive(Debug, Default, Clone)]
pub struct WasmEnv {
    metrics: Rc<HostMetrics>,
}

impl WasmEnv {
    /// An environment whose stats are cached in `metrics`.
    pub fn new(metrics: Rc<HostMetrics>) -> Self {
        WasmEnv { metrics }
    }

    /// The stats cache.
    pub fn host_metrics(&self) -> Rc<HostMetrics> {
        Rc::clone(&self.metrics)
    }
}

fn property(path: &[&str]) -> Option<Vec<u8>> {
    // proxy-wasm's `Context::get_property` unwraps the host's answer and so traps the VM when a
    // property cannot be serialized; here any failure is just "absent".
    hostcalls::get_property(path.to_vec()).ok().flatten()
}

impl Env for WasmEnv {
    fn now(&self) -> SystemTime {
        host_now()
    }
    fn store(&self) -> &dyn SharedStore {
        &HostStore
    }
    fn metrics(&self) -> &dyn Metrics {
        self.metrics.as_ref()
    }
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        property(path)
    }
    fn declare_property(&self, args: &[u8]) -> bool {
        hostcalls::call_foreign_function("declare_property", Some(args)).is_ok()
    }
}

/// How the typed facts reach the other filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactsMode {
    /// Each filter is its own VM: facts are published as `x-aimesh-*` request headers and read
    /// back from them.
    Headers,
    /// All stages share this VM: facts stay here; only `x-aimesh-cluster`, which Envoy's route
    /// matches on, becomes a real header.
    Shared,
}

fn buffer(which: Body) -> BufferType {
    match which {
        Body::Request => BufferType::HttpRequestBody,
        Body::Response => BufferType::HttpResponseBody,
    }
}

/// One request's host. The adapter calls [`WasmHost::begin`] and [`WasmHost::end`] around
/// every Envoy callback.
#[derive(Debug)]
pub struct WasmHost {
    env: WasmEnv,
    mode: FactsMode,
    request: HeaderMap,
    response: HeaderMap,
    /// Each body buffer, read whole once per callback (every stage reads the same bytes).
    bodies: [Option<Vec<u8>>; 2],
    facts: Facts,
    /// The facts as Envoy's headers hold them now.
    published: Facts,
    /// `facts` was read from the headers (mode `Headers`: on first use).
    loaded: bool,
    /// The callback is on the request path (facts may still change Envoy's headers).
    request_side: bool,
    now: Cell<Option<SystemTime>>,
    offset: usize,
    replied: bool,
    delta: isize,
    sent: Vec<u32>,
    /// The root context's id and this stream's (0: unknown).
    ids: (u32, u32),
}

impl WasmHost {
    /// Names the root context and this stream, so detached callouts outlive the stream.
    pub fn with_ids(mut self, root: u32, stream: u32) -> Self {
        self.ids = (root, stream);
        self
    }

    /// A request's host.
    pub fn new(env: WasmEnv, mode: FactsMode) -> Self {
        WasmHost {
            env,
            mode,
            request: HeaderMap::new(MapType::HttpRequestHeaders),
            response: HeaderMap::new(MapType::HttpResponseHeaders),
            bodies: [None, None],
            facts: Facts::default(),
            published: Facts::default(),
            loaded: mode == FactsMode::Shared,
            request_side: true,
            now: Cell::new(None),
            offset: 0,
            replied: false,
            delta: 0,
            sent: Vec::new(),
            ids: (0, 0),
        }
    }

    /// Starts an Envoy callback: what was read in the previous one is stale.
    pub fn begin(&mut self, request_side: bool) {
        self.bodies = [None, None];
        self.now.set(None);
        self.request_side = request_side;
    }

    /// Ends an Envoy callback: changed facts reach Envoy's headers where they must, and every
    /// pending header edit goes out.
    pub fn end(&mut self) {
        if self.request_side && self.facts != self.published {
            let edits = self.facts.edits(&self.published);
            for (name, value) in edits {
                let real = self.mode == FactsMode::Headers || name == names::CLUSTER;
                if real {
                    self.request.set(name, value.as_deref().map(str::as_bytes));
                }
            }
            self.published = self.facts.clone();
        }
        self.request.flush();
        self.response.flush();
    }

    fn whole_body(&mut self, which: Body) -> &[u8] {
        let slot = &mut self.bodies[which as usize];
        slot.get_or_insert_with(|| {
            hostcalls::get_buffer(buffer(which), 0, usize::MAX)
                .ok()
                .flatten()
                .unwrap_or_default()
        })
    }
}

impl Env for WasmHost {
    fn now(&self) -> SystemTime {
        if let Some(t) = self.now.get() {
            return t;
        }
        let t = host_now();
        self.now.set(Some(t));
        t
    }
    fn store(&self) -> &dyn SharedStore {
        &HostStore
    }
    fn metrics(&self) -> &dyn Metrics {
        self.env.metrics.as_ref()
    }
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        property(path)
    }
    fn declare_property(&self, args: &[u8]) -> bool {
        self.env.declare_property(args)
    }
}

impl Host for WasmHost {
    fn request_headers(&mut self) -> Rc<Headers> {
        self.request.read()
    }

    fn response_headers(&mut self) -> Rc<Headers> {
        self.response.read()
    }

    fn set_request_header(&mut self, name: &str, value: Option<&str>) {
        self.request.set(name, value.map(str::as_bytes));
    }

    fn set_response_header(&mut self, name: &str, value: Option<&str>) {
        self.response.set(name, value.map(str::as_bytes));
    }

    fn add_response_header(&mut self, name: &str, value: &[u8]) {
        self.response.add(name, value);
    }

    fn body(&mut self, which: Body, size: usize) -> Option<Vec<u8>> {
        let offset = self.offset;
        let whole = self.whole_body(which);
        let start = offset.min(whole.len());
        let end = start.saturating_add(size).min(whole.len());
        Some(whole[start..end].to_vec())
    }

    fn replace_body(&mut self, which: Body, size: usize, data: &[u8]) {
        // Envoy only prepends, appends or replaces from the start (a range in the middle is
        // `BadArgument`), so a window past the start rewrites the whole buffer; the cached copy
        // is edited alike so later stages of this callback read the new bytes.
        let offset = self.offset;
        // The cached buffer is edited in place (taken, not copied: this runs per chunk).
        self.whole_body(which);
        let mut whole = self.bodies[which as usize].take().unwrap_or_default();
        let start = offset.min(whole.len());
        let end = start.saturating_add(size).min(whole.len());
        let old_len = whole.len();
        whole.splice(start..end, data.iter().copied());
        let ok = if start == 0 {
            hostcalls::set_buffer(buffer(which), 0, end, data).is_ok()
        } else {
            hostcalls::set_buffer(buffer(which), 0, old_len, &whole).is_ok()
        };
        if ok {
            let grew = isize::try_from(data.len()).unwrap_or(isize::MAX)
                - isize::try_from(end - start).unwrap_or(0);
            self.delta = self.delta.saturating_add(grew);
            self.bodies[which as usize] = Some(whole);
        }
    }

    fn set_property(&mut self, path: &[&str], value: &[u8]) {
        // A missing access-log field must not fail the request: errors are ignored.
        let _ = hostcalls::set_property(path.to_vec(), Some(value));
    }

    fn send_reply(&mut self, status: u16, headers: &[(&str, &str)], body: &[u8]) {
        let _ = hostcalls::send_http_response(u32::from(status), headers.to_vec(), Some(body));
        self.replied = true;
    }

    fn facts(&mut self) -> &mut Facts {
        if !self.loaded {
            self.loaded = true;
            let hs = self.request_headers();
            self.facts = Facts::decode(&hs);
            self.published = self.facts.clone();
        }
        &mut self.facts
    }

    fn http_call(
        &mut self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, CalloutError> {
        let token =
            hostcalls::dispatch_http_call(cluster, headers.to_vec(), body, Vec::new(), timeout)
                .map_err(|_| CalloutError::Refused(cluster.to_string()))?;
        self.sent.push(token);
        Ok(token)
    }

    fn resume_request(&mut self) {
        let _ = hostcalls::resume_http_request();
    }

    fn http_call_detached(
        &mut self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<(), CalloutError> {
        // Envoy cancels a stream's callouts when the stream is destroyed, which follows `log`
        // at once: sent as the root context's, the call lives as long as the plugin. Its
        // answer reaches the stream (if still there), whose pipeline ignores unknown tokens.
        let (root, stream) = self.ids;
        let rooted = root != 0 && hostcalls::set_effective_context(root).is_ok();
        let sent =
            hostcalls::dispatch_http_call(cluster, headers.to_vec(), body, Vec::new(), timeout);
        if rooted {
            let _ = hostcalls::set_effective_context(stream);
        }
        sent.map(drop)
            .map_err(|_| CalloutError::Refused(cluster.to_string()))
    }
}

impl PipelineHost for WasmHost {
    fn set_body_offset(&mut self, offset: usize) {
        self.offset = offset;
    }
    fn take_replied(&mut self) -> bool {
        std::mem::take(&mut self.replied)
    }
    fn take_body_delta(&mut self) -> isize {
        std::mem::take(&mut self.delta)
    }
    fn buffered_len(&mut self, which: Body) -> usize {
        self.whole_body(which).len()
    }
    fn take_callouts(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.sent)
    }
    fn as_host(&mut self) -> &mut dyn Host {
        self
    }
}
