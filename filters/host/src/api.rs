//! The interface: what a stage may ask of its host, and what a host asks of a stage.
//!
//! A stage never calls proxy-wasm (or any other host ABI) itself: every read and edit goes
//! through [`Host`], so the same stage runs in Envoy's Wasm VM (`aimesh-glue`), in a native
//! module, and in [`crate::memory::MemoryHost`] for tests, and the host is free to batch and
//! cache host calls.

use std::rc::Rc;
use std::time::{Duration, SystemTime};

use aimesh_core::accounting::audit::{encode_struct, Value as RecordValue};
use aimesh_core::host::{Metrics, SharedStore};

use crate::{Facts, Family, Headers};

/// What a callback tells the host to do with the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Pass the data on to the next stage / filter.
    Continue,
    /// Hold it (Envoy buffers a paused body and hands the whole buffer on the next callback).
    Pause,
}

/// Which body a call reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// The request body.
    Request,
    /// The response body.
    Response,
}

/// A callout's answer (`dispatch_http_call`).
#[derive(Debug, Clone, Default)]
pub struct CalloutResponse {
    /// Response headers (`:status` among them); empty when the call failed or timed out.
    pub headers: Headers,
    /// Response body.
    pub body: Vec<u8>,
}

impl CalloutResponse {
    /// The `:status` as a number; `None` when the call failed.
    pub fn status(&self) -> Option<u16> {
        self.headers.get(":status").and_then(|s| s.parse().ok())
    }
}

/// Why a callout could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalloutError {
    /// The cluster is unknown to the host or the call was refused.
    #[error("callout to cluster `{0}` refused by the host")]
    Refused(String),
}

/// What every context (root or stream) may use: time, the shared store, metrics.
pub trait Env {
    /// The current time (one instant per host callback: stages of one callback agree).
    fn now(&self) -> SystemTime;
    /// Milliseconds since the Unix epoch.
    fn unix_millis(&self) -> u64 {
        self.now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
    /// The key-value store shared by every worker of this proxy.
    fn store(&self) -> &dyn SharedStore;
    /// Metrics sink.
    fn metrics(&self) -> &dyn Metrics;
    /// A host property (`["xds", "cluster_name"]`, metadata paths, ...); `None` when absent.
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    /// Declares a typed filter-state property (Envoy's `declare_property` foreign function;
    /// `args` its serialized `DeclarePropertyArguments`). False when the host refused.
    fn declare_property(&self, args: &[u8]) -> bool;
}

/// One request as a stage sees it: the header maps, bodies, filter state, local replies, the
/// typed request context and callouts, on top of [`Env`].
///
/// Header reads are snapshots taken once per host callback and kept current by the edits made
/// through this interface; edits go straight to the host, which may batch them.
pub trait Host: Env {
    /// The request headers as they are now.
    fn request_headers(&mut self) -> Rc<Headers>;
    /// The response headers as they are now (empty before the response).
    fn response_headers(&mut self) -> Rc<Headers>;
    /// Sets (`Some`) or removes (`None`) a request header.
    fn set_request_header(&mut self, name: &str, value: Option<&str>);
    /// Sets (`Some`) or removes (`None`) a response header.
    fn set_response_header(&mut self, name: &str, value: Option<&str>);
    /// Appends a response header value (repeated headers such as `set-cookie`).
    fn add_response_header(&mut self, name: &str, value: &[u8]);
    /// The `size` bytes of body this callback was given (`usize::MAX`: all there is).
    fn body(&mut self, which: Body, size: usize) -> Option<Vec<u8>>;
    /// Replaces the `size` bytes this callback was given with `data`.
    fn replace_body(&mut self, which: Body, size: usize, data: &[u8]);
    /// Sets a filter-state property (readable in access logs).
    fn set_property(&mut self, path: &[&str], value: &[u8]);
    /// Publishes a typed record (the audit record, `aimesh.mcp`) whose fields the access log
    /// reads one by one. By default the record is a serialized `google.protobuf.Struct` set as
    /// property `name` (the Wasm builds declare it typed); a host that can write the fields
    /// directly (the native build, to dynamic metadata) skips the encoding.
    fn set_record(&mut self, name: &str, fields: &[(&str, RecordValue<'_>)]) {
        self.set_property(&[name], &encode_struct(fields));
    }
    /// Answers the request; the request goes no further and later stages never see it.
    fn send_reply(&mut self, status: u16, headers: &[(&str, &str)], body: &[u8]);
    /// The typed request context shared by the stages.
    fn facts(&mut self) -> &mut Facts;
    /// Sends an HTTP request to `cluster`; its answer arrives in
    /// [`Stage::callout_response`] with the returned token.
    fn http_call(
        &mut self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, CalloutError>;
    /// Resumes a request paused while a callout was in flight.
    fn resume_request(&mut self);
    /// Sends an HTTP request whose answer nobody waits for and which must outlive the stream
    /// (a settlement sent from `log`): hosts that cancel a stream's callouts when it ends send
    /// it on behalf of the plugin instead. The default sends it as a stream callout.
    fn http_call_detached(
        &mut self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<(), CalloutError> {
        self.http_call(cluster, headers, body, timeout).map(drop)
    }
}

/// One request's callbacks, in the order Envoy calls them. Every method has a default that
/// passes the data on, so a stage implements only the phases it cares about.
#[allow(unused_variables)]
pub trait Stage {
    /// Request headers arrived (`eos`: the request has no body).
    fn request_headers(&mut self, host: &mut dyn Host, eos: bool) -> Action {
        Action::Continue
    }
    /// A request body chunk of `size` bytes (the whole buffer after a `Pause`).
    fn request_body(&mut self, host: &mut dyn Host, size: usize, eos: bool) -> Action {
        Action::Continue
    }
    /// Request trailers arrived (the body is complete).
    fn request_trailers(&mut self, host: &mut dyn Host) -> Action {
        Action::Continue
    }
    /// Response headers arrived.
    fn response_headers(&mut self, host: &mut dyn Host, eos: bool) -> Action {
        Action::Continue
    }
    /// A response body chunk.
    fn response_body(&mut self, host: &mut dyn Host, size: usize, eos: bool) -> Action {
        Action::Continue
    }
    /// Response trailers arrived.
    fn response_trailers(&mut self, host: &mut dyn Host) -> Action {
        Action::Continue
    }
    /// The stream is over (completed, reset or answered locally): write the access-log facts,
    /// release what the request held. Called exactly once.
    fn log(&mut self, host: &mut dyn Host) {}
    /// The answer to a callout this stage sent. A stage that paused the complete request body
    /// for it returns `Continue` to pass the request on (the pipeline runs the stages after it
    /// and resumes the request), `Pause` to keep holding it (or after answering it).
    fn callout_response(
        &mut self,
        host: &mut dyn Host,
        token: u32,
        response: CalloutResponse,
    ) -> Action {
        Action::Pause
    }
}

/// A configured stage: makes one [`Stage`] per request.
pub trait StageRoot {
    /// A stage for a new request; `None` refuses the stream (the host then passes it through).
    fn new_stream(&self) -> Option<Box<dyn Stage>>;
    /// How often [`StageRoot::tick`] should run; `None`: never.
    fn tick_period(&self) -> Option<Duration> {
        None
    }
    /// Periodic work (creating tomorrow's limit keys, ...).
    fn tick(&self, env: &dyn Env) {
        let _ = env;
    }
}

/// Why a stage could not be configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StageError {
    /// The configuration does not parse or does not validate; the message names the field.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The configuration is valid but the host could not set the stage up.
    #[error("cannot start: {0}")]
    Init(String),
    /// A stage's own error, named: `auth: invalid configuration: keys[0].hash: ...`.
    #[error("{stage}: {source}")]
    In {
        /// The stage.
        stage: &'static str,
        /// Its error.
        source: Box<StageError>,
    },
}

impl StageError {
    /// This error, as stage `stage`'s.
    pub fn of(self, stage: &'static str) -> StageError {
        match self {
            e @ StageError::In { .. } => e,
            e => StageError::In {
                stage,
                source: Box::new(e),
            },
        }
    }
}

/// How a stage is configured: its JSON configuration in, its root out.
pub type ConfigureStage = fn(&[u8], &dyn Env) -> Result<Box<dyn StageRoot>, StageError>;

/// One entry of the table of stages: its name (the filter's and its chain section's) and how
/// to configure it from its JSON configuration.
#[derive(Clone, Copy)]
pub struct StageDef {
    /// `auth`, `pii-redaction`, ...
    pub name: &'static str,
    /// Builds the stage's root from its configuration.
    pub configure: ConfigureStage,
    /// The counters the stage bumps under a fixed name (no labels in the name). A native host
    /// defines them up front, as plain counters: cheaper to bump than a labelled one, and
    /// named in Prometheus as the Wasm builds name them. A name missing here still counts,
    /// the slower way.
    pub counters: &'static [&'static str],
    /// The labelled stats the stage records, given its configuration section (which may add
    /// labels). A native host defines them up front with real labels, so Prometheus shows the
    /// Wasm builds' tags; a stat of no family still counts, under one catch-all label.
    pub families: fn(&[u8]) -> Vec<Family>,
}

/// [`StageDef::families`] of a stage that records no labelled stat the gateway tags.
pub fn no_families(_config: &[u8]) -> Vec<Family> {
    Vec::new()
}

impl std::fmt::Debug for StageDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageDef")
            .field("name", &self.name)
            .finish()
    }
}

/// A configured pipeline: what a module runs.
pub struct Configured {
    /// Stages in chain order, each with its name.
    pub stages: Vec<(&'static str, Box<dyn StageRoot>)>,
    /// Count the time each stage spends in each callback (`aimesh.chain.<stage>.<phase>.ns`).
    pub stage_timings: bool,
}

impl Configured {
    /// A pipeline of one stage, configured from `raw` (a filter's own module).
    pub fn one(def: &StageDef, raw: &[u8], env: &dyn Env) -> Result<Configured, StageError> {
        Ok(Configured {
            stages: vec![(
                def.name,
                (def.configure)(raw, env).map_err(|e| e.of(def.name))?,
            )],
            stage_timings: false,
        })
    }
}
