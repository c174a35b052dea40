//! [`NativeHost`]: one request's [`Host`] over the dynamic-module ABI.
//!
//! The semantics are `WasmHost`'s (the stages cannot tell the builds apart), and so is the
//! bookkeeping: each header map and body is read once per callback (each read copies), and
//! header edits are held to the end of the callback, where those that change the map go to
//! Envoy (`aimesh_host::edits`). The one real difference in Envoy's model: a dynamic module sees
//! the chunk of this callback and what Envoy buffered before it as two buffers, where proxy-wasm
//! shows one; the host joins them, so a stage that paused still gets the whole body on its next
//! callback.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aimesh_core::accounting::audit;
use aimesh_core::headers as names;
use aimesh_core::host::{Metrics, SharedStore};
use aimesh_host::edits::{Edit, MapEdits};
use aimesh_host::{Body, CalloutError, Env, Facts, Headers, Host, PipelineHost};

use crate::ffi::{Attribute, BodyKind, Filter, HeaderKind, MetadataSource};
use crate::metrics::NativeMetrics;
use crate::mirror;
use crate::store::ProcessStore;

/// What the configuration (and every stream) may use: the clock, the store, the stats.
#[derive(Debug, Clone)]
pub struct NativeEnv {
    metrics: Arc<NativeMetrics>,
}

impl NativeEnv {
    /// An environment whose stats go to `metrics`.
    pub fn new(metrics: Arc<NativeMetrics>) -> Self {
        NativeEnv { metrics }
    }
}

impl Env for NativeEnv {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
    fn store(&self) -> &dyn SharedStore {
        ProcessStore::global()
    }
    fn metrics(&self) -> &dyn Metrics {
        self.metrics.as_ref()
    }
    fn property(&self, _path: &[&str]) -> Option<Vec<u8>> {
        // Outside a stream there is no stream info to read.
        None
    }
    fn declare_property(&self, _args: &[u8]) -> bool {
        // Records go to dynamic metadata field by field (`set_record`), which needs no
        // declaration with Envoy.
        true
    }
}

/// The callback being run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// A request body chunk (Envoy's received request body exists).
    RequestBody,
    /// A response body chunk.
    ResponseBody,
    /// Any other callback.
    Other,
}

/// One request's host.
#[derive(Debug)]
pub struct NativeHost {
    env: NativeEnv,
    filter: Filter,
    phase: Phase,
    /// Request callbacks may still change where the request goes.
    request_side: bool,
    /// The header maps of this callback: read once, edits held until it ends.
    request: MapEdits,
    response: MapEdits,
    /// The body of each direction as the stages see it (buffered + this chunk), read once.
    bodies: [Option<Vec<u8>>; 2],
    facts: Facts,
    /// The cluster last sent as `x-aimesh-cluster`: Envoy's route reads only that fact.
    routed_cluster: Option<String>,
    now: Cell<Option<SystemTime>>,
    offset: usize,
    replied: bool,
    delta: isize,
    sent: Vec<u32>,
}

impl NativeHost {
    /// A request's host.
    pub fn new(env: NativeEnv, filter: Filter) -> Self {
        NativeHost {
            env,
            filter,
            phase: Phase::Other,
            request_side: true,
            request: MapEdits::default(),
            response: MapEdits::default(),
            bodies: [None, None],
            facts: Facts::default(),
            routed_cluster: None,
            now: Cell::new(None),
            offset: 0,
            replied: false,
            delta: 0,
            sent: Vec::new(),
        }
    }

    /// Starts an Envoy callback: what was read in the previous one is stale.
    pub fn begin(&mut self, filter: Filter, phase: Phase, request_side: bool) {
        self.filter = filter;
        self.phase = phase;
        self.request_side = request_side;
        // A callback that panicked never reached `end`: its edits are dropped with it.
        self.request.take();
        self.response.take();
        self.bodies = [None, None];
        self.now.set(None);
    }

    /// Ends an Envoy callback: the one fact Envoy's route reads becomes a header, the edits
    /// that change a map go to Envoy, and the route is picked again if a request header changed.
    pub fn end(&mut self) {
        if self.request_side && self.facts.cluster != self.routed_cluster {
            self.routed_cluster.clone_from(&self.facts.cluster);
            let cluster = self.routed_cluster.clone();
            self.set_request_header(names::CLUSTER, cluster.as_deref());
        }
        let routed = self.flush_request();
        for e in self.response.take() {
            self.send(HeaderKind::Response, &e);
        }
        if routed && self.request_side {
            self.filter.clear_route_cache();
        }
    }

    /// Sends the request map's edits; true when there were any.
    fn flush_request(&mut self) -> bool {
        let edits = self.request.take();
        for e in &edits {
            self.send(HeaderKind::Request, e);
        }
        !edits.is_empty()
    }

    fn send(&self, kind: HeaderKind, e: &Edit) {
        match e {
            Edit::Set(k, v) => self.filter.set_header(kind, k, v.as_deref()),
            Edit::Add(k, v) => self.filter.add_header(kind, k, v),
        }
    }

    fn kinds(which: Body) -> (BodyKind, BodyKind, Phase) {
        match which {
            Body::Request => (
                BodyKind::BufferedRequest,
                BodyKind::ReceivedRequest,
                Phase::RequestBody,
            ),
            Body::Response => (
                BodyKind::BufferedResponse,
                BodyKind::ReceivedResponse,
                Phase::ResponseBody,
            ),
        }
    }

    /// True when this callback's chunk is separate from Envoy's buffer.
    fn separate_chunk(&self, which: Body) -> bool {
        let (_, _, phase) = Self::kinds(which);
        self.phase == phase && !self.filter.received_is_buffered(which == Body::Request)
    }

    fn whole_body(&mut self, which: Body) -> &mut Vec<u8> {
        let i = which as usize;
        if self.bodies[i].is_none() {
            let (buffered, received, _) = Self::kinds(which);
            let mut b = self.filter.body(buffered);
            if self.separate_chunk(which) {
                b.extend_from_slice(&self.filter.body(received));
            }
            self.bodies[i] = Some(b);
        }
        self.bodies[i].get_or_insert_with(Vec::new)
    }
}

impl Env for NativeHost {
    fn now(&self) -> SystemTime {
        // One instant per callback, as in the Wasm builds: stages of one callback agree.
        if let Some(t) = self.now.get() {
            return t;
        }
        let t = SystemTime::now();
        self.now.set(Some(t));
        t
    }
    fn store(&self) -> &dyn SharedStore {
        ProcessStore::global()
    }
    fn metrics(&self) -> &dyn Metrics {
        self.env.metrics.as_ref()
    }
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        match path {
            ["xds", "cluster_name"] => self.filter.attribute(Attribute::XdsClusterName),
            ["xds", "route_name"] => self.filter.attribute(Attribute::XdsRouteName),
            ["xds", "upstream_host_metadata", "filter_metadata", ns, key] => {
                self.filter.metadata_string(MetadataSource::Host, ns, key)
            }
            ["metadata", "filter_metadata", ns, key, rest @ ..] => {
                // A mirrored value first: asking the ABI for a struct as a string makes Envoy
                // log an error on every request (a missing filter state logs at debug).
                match self.filter.filter_state(&mirror::key(ns, key)) {
                    Some(json) => mirror::lookup(&json, rest),
                    None if rest.is_empty() => {
                        self.filter
                            .metadata_string(MetadataSource::Dynamic, ns, key)
                    }
                    None => None,
                }
            }
            _ => None,
        }
    }
    fn declare_property(&self, args: &[u8]) -> bool {
        self.env.declare_property(args)
    }
}

impl Host for NativeHost {
    fn request_headers(&mut self) -> Rc<Headers> {
        let f = self.filter;
        self.request.read(|| f.headers(HeaderKind::Request))
    }

    fn response_headers(&mut self) -> Rc<Headers> {
        let f = self.filter;
        self.response.read(|| f.headers(HeaderKind::Response))
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
        let offset = self.offset;
        let separate = self.separate_chunk(which);
        let mut whole = std::mem::take(self.whole_body(which));
        let start = offset.min(whole.len());
        let end = start.saturating_add(size).min(whole.len());
        whole.splice(start..end, data.iter().copied());
        // Envoy joins its buffer and this callback's chunk after the callback, in that order:
        // the new body goes into the chunk, the buffer is emptied.
        let (buffered, received, _) = Self::kinds(which);
        let ok = if separate {
            self.filter.drain_body(buffered);
            self.filter.replace_body(received, &whole)
        } else {
            self.filter.replace_body(buffered, &whole)
        };
        if ok {
            let grew = isize::try_from(data.len()).unwrap_or(isize::MAX)
                - isize::try_from(end - start).unwrap_or(0);
            self.delta = self.delta.saturating_add(grew);
        }
        self.bodies[which as usize] = Some(whole);
    }

    fn set_property(&mut self, path: &[&str], value: &[u8]) {
        // `wasm.` as the Wasm builds' filter state, so access logs read either build.
        if let [name] = path {
            self.filter.set_filter_state(&format!("wasm.{name}"), value);
        }
    }

    fn set_record(&mut self, name: &str, fields: &[(&str, audit::Value<'_>)]) {
        // Straight to dynamic metadata (namespace = the record's name): no Struct to encode
        // here and decode again; the strings in one call.
        let mut texts = Vec::with_capacity(fields.len());
        for (field, value) in fields {
            match *value {
                #[allow(clippy::cast_precision_loss)] // exact below 2^53, far above any count
                audit::Value::Number(n) => self.filter.set_metadata_number(name, field, n as f64),
                #[allow(clippy::cast_precision_loss)] // JSON-RPC error codes are small
                audit::Value::Signed(n) => self.filter.set_metadata_number(name, field, n as f64),
                audit::Value::Str(t) => texts.push((*field, t)),
                audit::Value::Bool(b) => self.filter.set_metadata_bool(name, field, b),
                // Absent metadata is what the access log prints as null.
                audit::Value::Null => {}
            }
        }
        self.filter.set_metadata_strings(name, &texts);
    }

    fn send_reply(&mut self, status: u16, headers: &[(&str, &str)], body: &[u8]) {
        self.filter.send_response(status, headers, body);
        self.replied = true;
    }

    fn facts(&mut self) -> &mut Facts {
        &mut self.facts
    }

    fn http_call(
        &mut self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, CalloutError> {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let id = self
            .filter
            .http_callout(cluster, headers, body.unwrap_or_default(), ms)
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| CalloutError::Refused(cluster.to_string()))?;
        self.sent.push(id);
        Ok(id)
    }

    fn resume_request(&mut self) {
        // Envoy passes the request on within this call: the stages' edits must be there first.
        if self.flush_request() {
            self.filter.clear_route_cache();
        }
        self.filter.continue_decoding();
    }
}

impl PipelineHost for NativeHost {
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
