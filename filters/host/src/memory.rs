//! An in-memory host: the request, the response, the store, metrics and a clock the test moves.
//!
//! [`World`] is what outlives a request (the shared store, metrics, the clock, properties);
//! [`MemoryHost`] is one request in it; [`Exchange`] drives a [`Flow`] through a request the
//! way Envoy does (a paused body accumulates and is handed whole on the next callback; a
//! continued one moves on), so stage sequences run natively with no Envoy and no sleeps.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use aimesh_core::host::{MemoryStore, Metrics, SharedStore};

use crate::flow::{Flow, PipelineHost};
use crate::{Action, Body, CalloutError, CalloutResponse, Env, Facts, Headers, Host, Stage};

/// Metrics kept in memory, readable by tests.
#[derive(Debug, Default)]
pub struct MemoryMetrics {
    counters: RefCell<HashMap<String, u64>>,
    gauges: RefCell<HashMap<String, u64>>,
    histograms: RefCell<HashMap<String, Vec<u64>>>,
}

impl MemoryMetrics {
    /// A counter's value (0 when never incremented).
    pub fn counter(&self, name: &str) -> u64 {
        self.counters.borrow().get(name).copied().unwrap_or(0)
    }
    /// The name of every counter bumped so far.
    pub fn counter_names(&self) -> Vec<String> {
        self.counters.borrow().keys().cloned().collect()
    }
    /// The name of every histogram sampled so far.
    pub fn histogram_names(&self) -> Vec<String> {
        self.histograms.borrow().keys().cloned().collect()
    }
    /// A gauge's value.
    pub fn gauge_value(&self, name: &str) -> Option<u64> {
        self.gauges.borrow().get(name).copied()
    }
    /// Every sample a histogram got.
    pub fn samples(&self, name: &str) -> Vec<u64> {
        self.histograms
            .borrow()
            .get(name)
            .cloned()
            .unwrap_or_default()
    }
}

impl Metrics for MemoryMetrics {
    fn count(&self, name: &str, delta: u64) {
        *self
            .counters
            .borrow_mut()
            .entry(name.to_string())
            .or_default() += delta;
    }
    fn record(&self, name: &str, value: u64) {
        self.histograms
            .borrow_mut()
            .entry(name.to_string())
            .or_default()
            .push(value);
    }
    fn gauge(&self, name: &str, value: u64) {
        self.gauges.borrow_mut().insert(name.to_string(), value);
    }
}

/// What outlives one request: one Envoy process as the stages see it.
#[derive(Debug, Clone)]
pub struct World {
    /// Shared data (every worker of the process).
    pub store: Rc<MemoryStore>,
    /// Metrics.
    pub metrics: Rc<MemoryMetrics>,
    clock: Rc<Cell<SystemTime>>,
    /// Host properties a stage may read (`"xds.cluster_name"` -> value), keyed by the
    /// path joined with `.`.
    pub properties: Rc<RefCell<HashMap<String, Vec<u8>>>>,
}

impl Default for World {
    fn default() -> Self {
        World {
            store: Rc::default(),
            metrics: Rc::default(),
            // A fixed, realistic instant: tests are reproducible.
            clock: Rc::new(Cell::new(
                SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_000),
            )),
            properties: Rc::default(),
        }
    }
}

impl World {
    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.clock.set(self.clock.get() + by);
    }
    /// Sets the clock.
    pub fn set_now(&self, t: SystemTime) {
        self.clock.set(t);
    }
}

impl Env for World {
    fn now(&self) -> SystemTime {
        self.clock.get()
    }
    fn store(&self) -> &dyn SharedStore {
        self.store.as_ref()
    }
    fn metrics(&self) -> &dyn Metrics {
        self.metrics.as_ref()
    }
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.properties.borrow().get(&path.join(".")).cloned()
    }
    fn declare_property(&self, _args: &[u8]) -> bool {
        true
    }
}

/// A local reply a stage sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Headers the stage gave.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }
}

/// A callout a stage sent.
#[derive(Debug, Clone)]
pub struct Callout {
    /// Token the host returned.
    pub token: u32,
    /// Target cluster.
    pub cluster: String,
    /// Request headers.
    pub headers: Vec<(String, String)>,
    /// Request body.
    pub body: Option<Vec<u8>>,
}

/// One request in a [`World`].
#[derive(Debug)]
pub struct MemoryHost {
    /// The process this request runs in.
    pub world: World,
    request: Rc<Headers>,
    response: Rc<Headers>,
    /// Envoy's request body buffer (what the current callback may read).
    pub request_body: Vec<u8>,
    /// Envoy's response body buffer.
    pub response_body: Vec<u8>,
    /// Filter state set by stages (path joined with `.`).
    pub state: HashMap<String, Vec<u8>>,
    /// Local replies sent (a well-behaved stage sends at most one).
    pub replies: Vec<Reply>,
    /// Callouts sent.
    pub callouts: Vec<Callout>,
    /// The typed request context.
    pub facts: Facts,
    /// `resume_request` calls.
    pub resumed: usize,
    /// Callouts sent detached (nobody waits for their answer).
    pub detached: Vec<Callout>,
    offset: usize,
    replied: bool,
    delta: isize,
    sent: Vec<u32>,
}

impl MemoryHost {
    /// A request with `headers` in `world`.
    pub fn new(world: &World, headers: &[(&str, &str)]) -> Self {
        let pairs = headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.as_bytes().to_vec()))
            .collect();
        MemoryHost {
            world: world.clone(),
            request: Rc::new(Headers::from_pairs(pairs)),
            response: Rc::default(),
            request_body: Vec::new(),
            response_body: Vec::new(),
            state: HashMap::new(),
            replies: Vec::new(),
            callouts: Vec::new(),
            facts: Facts::default(),
            resumed: 0,
            detached: Vec::new(),
            offset: 0,
            replied: false,
            delta: 0,
            sent: Vec::new(),
        }
    }

    /// Replaces the response headers (the upstream answered).
    pub fn set_response(&mut self, headers: &[(&str, &str)]) {
        let pairs = headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.as_bytes().to_vec()))
            .collect();
        self.response = Rc::new(Headers::from_pairs(pairs));
    }

    /// The request headers now (what would leave for the upstream).
    pub fn request(&self) -> &Headers {
        &self.request
    }

    /// The response headers now (what would reach the client).
    pub fn response(&self) -> &Headers {
        &self.response
    }

    /// A filter-state value as text.
    pub fn state_text(&self, path: &str) -> Option<String> {
        self.state
            .get(path)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    fn buffer(&mut self, which: Body) -> &mut Vec<u8> {
        match which {
            Body::Request => &mut self.request_body,
            Body::Response => &mut self.response_body,
        }
    }
}

impl Env for MemoryHost {
    fn now(&self) -> SystemTime {
        self.world.now()
    }
    fn store(&self) -> &dyn SharedStore {
        self.world.store.as_ref()
    }
    fn metrics(&self) -> &dyn Metrics {
        self.world.metrics.as_ref()
    }
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.state
            .get(&path.join("."))
            .cloned()
            .or_else(|| self.world.property(path))
    }
    fn declare_property(&self, args: &[u8]) -> bool {
        self.world.declare_property(args)
    }
}

impl Host for MemoryHost {
    fn request_headers(&mut self) -> Rc<Headers> {
        Rc::clone(&self.request)
    }
    fn response_headers(&mut self) -> Rc<Headers> {
        Rc::clone(&self.response)
    }
    fn set_request_header(&mut self, name: &str, value: Option<&str>) {
        Rc::make_mut(&mut self.request).set(name, value.map(str::as_bytes));
    }
    fn set_response_header(&mut self, name: &str, value: Option<&str>) {
        Rc::make_mut(&mut self.response).set(name, value.map(str::as_bytes));
    }
    fn add_response_header(&mut self, name: &str, value: &[u8]) {
        Rc::make_mut(&mut self.response).add(name, value);
    }
    fn body(&mut self, which: Body, size: usize) -> Option<Vec<u8>> {
        let offset = self.offset;
        let buf = self.buffer(which);
        let start = offset.min(buf.len());
        let end = start.saturating_add(size).min(buf.len());
        Some(buf[start..end].to_vec())
    }
    fn replace_body(&mut self, which: Body, size: usize, data: &[u8]) {
        let offset = self.offset;
        let buf = self.buffer(which);
        let start = offset.min(buf.len());
        let end = start.saturating_add(size).min(buf.len());
        let old = end - start;
        buf.splice(start..end, data.iter().copied());
        let grew =
            isize::try_from(data.len()).unwrap_or(isize::MAX) - isize::try_from(old).unwrap_or(0);
        self.delta = self.delta.saturating_add(grew);
    }
    fn set_property(&mut self, path: &[&str], value: &[u8]) {
        self.state.insert(path.join("."), value.to_vec());
    }
    fn send_reply(&mut self, status: u16, headers: &[(&str, &str)], body: &[u8]) {
        self.replies.push(Reply {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.to_vec(),
        });
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
        _timeout: Duration,
    ) -> Result<u32, CalloutError> {
        if cluster.is_empty() {
            return Err(CalloutError::Refused(cluster.to_string()));
        }
        let token = u32::try_from(self.callouts.len()).unwrap_or(u32::MAX) + 1;
        self.callouts.push(Callout {
            token,
            cluster: cluster.to_string(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.map(<[u8]>::to_vec),
        });
        self.sent.push(token);
        Ok(token)
    }
    fn resume_request(&mut self) {
        self.resumed += 1;
    }
    fn http_call_detached(
        &mut self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        _timeout: Duration,
    ) -> Result<(), CalloutError> {
        if cluster.is_empty() {
            return Err(CalloutError::Refused(cluster.to_string()));
        }
        self.detached.push(Callout {
            token: 0,
            cluster: cluster.to_string(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.map(<[u8]>::to_vec),
        });
        Ok(())
    }
}

impl PipelineHost for MemoryHost {
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
        self.buffer(which).len()
    }
    fn take_callouts(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.sent)
    }
    fn as_host(&mut self) -> &mut dyn Host {
        self
    }
}

/// Drives one request through a [`Flow`] as Envoy would, recording what passed on.
pub struct Exchange {
    /// The request's host.
    pub host: MemoryHost,
    /// The stages.
    pub flow: Flow,
    /// Request body bytes passed on to the upstream.
    pub sent_upstream: Vec<u8>,
    /// Response body bytes passed on to the client.
    pub sent_downstream: Vec<u8>,
    /// The request headers were let through (not paused or answered).
    pub request_headers_passed: bool,
}

impl Exchange {
    /// A request with `headers` through `stages`, in `world`.
    pub fn new(world: &World, stages: Vec<Box<dyn Stage>>, headers: &[(&str, &str)]) -> Self {
        Exchange {
            host: MemoryHost::new(world, headers),
            flow: Flow::new(stages),
            sent_upstream: Vec::new(),
            sent_downstream: Vec::new(),
            request_headers_passed: false,
        }
    }

    /// The first local reply, if a stage answered.
    pub fn reply(&self) -> Option<&Reply> {
        self.host.replies.first()
    }

    /// Request headers; `eos` when the request has no body.
    pub fn request_headers(&mut self, eos: bool) -> Action {
        let a = self.flow.request_headers(&mut self.host, eos);
        self.request_headers_passed = a == Action::Continue && self.host.replies.is_empty();
        a
    }

    /// One request body chunk.
    pub fn request_chunk(&mut self, chunk: &[u8], eos: bool) -> Action {
        self.host.request_body.extend_from_slice(chunk);
        let n = self.host.request_body.len();
        let a = self.flow.request_body(&mut self.host, n, eos);
        if a == Action::Continue {
            self.sent_upstream
                .extend(std::mem::take(&mut self.host.request_body));
        }
        a
    }

    /// A whole request: headers, then `body` in one chunk (none when empty).
    pub fn request(&mut self, body: &[u8]) -> Action {
        let a = self.request_headers(body.is_empty());
        if body.is_empty() || !self.host.replies.is_empty() {
            return a;
        }
        self.request_chunk(body, true)
    }

    /// Request trailers (the request body is complete).
    pub fn request_trailers(&mut self) -> Action {
        let a = self.flow.request_trailers(&mut self.host);
        if a == Action::Continue {
            self.sent_upstream
                .extend(std::mem::take(&mut self.host.request_body));
        }
        a
    }

    /// Response headers from the upstream (`eos`: no body).
    pub fn response_headers(&mut self, headers: &[(&str, &str)], eos: bool) -> Action {
        self.host.set_response(headers);
        self.flow.response_headers(&mut self.host, eos)
    }

    /// One response body chunk.
    pub fn response_chunk(&mut self, chunk: &[u8], eos: bool) -> Action {
        self.host.response_body.extend_from_slice(chunk);
        let n = self.host.response_body.len();
        let a = self.flow.response_body(&mut self.host, n, eos);
        if a == Action::Continue {
            self.sent_downstream
                .extend(std::mem::take(&mut self.host.response_body));
        }
        a
    }

    /// Response trailers (the response body is complete).
    pub fn response_trailers(&mut self) -> Action {
        self.flow.response_trailers(&mut self.host)
    }

    /// A whole response in chunks of `split` bytes (the last chunk ends the stream).
    pub fn response(&mut self, headers: &[(&str, &str)], body: &[u8], split: usize) -> Action {
        let a = self.response_headers(headers, body.is_empty());
        if body.is_empty() {
            return a;
        }
        let chunks: Vec<&[u8]> = body.chunks(split.max(1)).collect();
        let mut last = Action::Continue;
        for (i, c) in chunks.iter().enumerate() {
            last = self.response_chunk(c, i + 1 == chunks.len());
        }
        last
    }

    /// The stream ends (`on_log`).
    pub fn log(&mut self) {
        self.flow.log(&mut self.host);
    }

    /// Delivers a callout's answer.
    pub fn callout_response(&mut self, token: u32, response: CalloutResponse) {
        self.flow.callout_response(&mut self.host, token, response);
    }
}
