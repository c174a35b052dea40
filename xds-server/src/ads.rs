//! The ADS gRPC service: moves messages between Envoy and the per-stream protocol state.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryService;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::protocol::{delta::Delta, short_type, sotw::Sotw, Event};
use crate::snapshot::Snapshot;

/// Counters shared by the service and the metrics endpoint.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Open ADS streams.
    pub streams: AtomicU64,
    /// Responses sent.
    pub responses: AtomicU64,
    /// ACKs received.
    pub acks: AtomicU64,
    /// NACKs received.
    pub nacks: AtomicU64,
    /// Config reloads applied.
    pub reloads: AtomicU64,
    /// Config reloads refused (invalid file).
    pub rejected: AtomicU64,
}

/// The ADS service over a stream of snapshots.
#[derive(Clone)]
pub struct Ads {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    shutdown: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

impl Ads {
    /// A service that serves the latest snapshot of `snapshots` until `shutdown` turns true.
    pub fn new(
        snapshots: watch::Receiver<Arc<Snapshot>>,
        shutdown: watch::Receiver<bool>,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
    ) -> Self {
        Self {
            snapshots,
            shutdown,
            metrics,
            health,
        }
    }
}

type Out<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn note(metrics: &Metrics, health: &Health, node: &str, version: Option<&str>, ev: Option<Event>) {
    match ev {
        Some(Event::Ack { .. }) => {
            metrics.acks.fetch_add(1, Ordering::Relaxed);
            if let Some(v) = version {
                health.applied(v);
            }
        }
        Some(Event::Nack { type_url, message }) => {
            metrics.nacks.fetch_add(1, Ordering::Relaxed);
            let version = version.unwrap_or("?");
            let keeps = match health.rejected(version, node, short_type(&type_url), &message) {
                Some(good) => format!("snapshot {good}"),
                None => "its bootstrap config".to_string(),
            };
            // Envoy reports only "Unable to create Wasm plugin <name>" for a filter that refused
            // its config; the filter logged why (one line naming the field) in Envoy's own log.
            let hint = if message.contains("Wasm") {
                " The filter's reason is in that Envoy's log (a 'wasm log aimesh.' line); an \
                 ${env:NAME} secret unset in Envoy's environment is a common one."
            } else {
                ""
            };
            eprintln!(
                "NACK from {node} for {} of snapshot {version}: {message}. That Envoy keeps {keeps}.{hint}",
                short_type(&type_url)
            );
        }
        None => {}
    }
}

/// A snapshot an Envoy rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Snapshot version.
    pub version: String,
    /// Node id of the Envoy that rejected it.
    pub node: String,
    /// Short resource type (`TypedExtensionConfig`).
    pub resource_type: String,
    /// Envoy's `error_detail`.
    pub message: String,
}

/// What the Envoys made of the snapshots: the newest one applied without a rejection, and the
/// newest rejection not yet superseded by an applied snapshot. `/healthz` reports it.
#[derive(Debug, Default)]
pub struct Health {
    state: std::sync::Mutex<HealthState>,
}

#[derive(Debug, Default)]
struct HealthState {
    /// Versions applied, oldest first (a rejected snapshot's other types may still be ACKed).
    applied: VecDeque<String>,
    /// Versions some Envoy rejected.
    nacked: VecDeque<String>,
    rejected: Option<Rejection>,
}

const VERSIONS_KEPT: usize = 16;

fn remember(list: &mut VecDeque<String>, version: &str) {
    list.retain(|v| v != version);
    list.push_back(version.to_string());
    if list.len() > VERSIONS_KEPT {
        list.pop_front();
    }
}

impl HealthState {
    fn last_good(&self) -> Option<String> {
        self.applied
            .iter()
            .rev()
            .find(|v| !self.nacked.contains(v))
            .cloned()
    }
}

impl Health {
    fn with<R>(&self, f: impl FnOnce(&mut HealthState) -> R) -> R {
        // A poisoned lock only means another stream panicked mid-update: the state is still usable.
        let mut g = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut g)
    }

    /// An Envoy applied (part of) snapshot `version`.
    pub fn applied(&self, version: &str) {
        self.with(|s| {
            if s.nacked.iter().any(|v| v == version) {
                return;
            }
            remember(&mut s.applied, version);
            s.rejected = None;
        });
    }

    /// An Envoy rejected snapshot `version`; returns the last good version.
    pub fn rejected(
        &self,
        version: &str,
        node: &str,
        resource_type: &str,
        message: &str,
    ) -> Option<String> {
        self.with(|s| {
            remember(&mut s.nacked, version);
            s.rejected = Some(Rejection {
                version: version.to_string(),
                node: node.to_string(),
                resource_type: resource_type.to_string(),
                message: message.to_string(),
            });
            s.last_good()
        })
    }

    /// The standing rejection and the last good version.
    pub fn status(&self) -> (Option<Rejection>, Option<String>) {
        self.with(|s| (s.rejected.clone(), s.last_good()))
    }
}

/// Snapshot versions of the responses a stream sent, by nonce (the last few).
#[derive(Default)]
struct Sent(VecDeque<(String, String)>);

impl Sent {
    fn record(&mut self, nonce: &str, version: &str) {
        if self.0.len() >= 64 {
            self.0.pop_front();
        }
        self.0.push_back((nonce.to_string(), version.to_string()));
    }

    fn version(&self, nonce: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(n, _)| n == nonce)
            .map(|(_, v)| v.as_str())
    }
}

/// Runs one stream: `on_req` and `on_snap` are the protocol state's two inputs.
macro_rules! run_stream {
    ($self:ident, $req:ident, $state:expr, $node_of:expr) => {{
        let mut inbound = $req.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let mut snaps = $self.snapshots.clone();
        let mut shutdown = $self.shutdown.clone();
        let metrics = $self.metrics.clone();
        let health = $self.health.clone();
        tokio::spawn(async move {
            let mut state = $state;
            let mut node = String::from("?");
            let mut sent = Sent::default();
            metrics.streams.fetch_add(1, Ordering::Relaxed);
            loop {
                let (out, version) = tokio::select! {
                    msg = inbound.message() => match msg {
                        Ok(Some(r)) => {
                            if let Some(n) = $node_of(&r) {
                                if node == "?" {
                                    eprintln!("stream from node {n}");
                                }
                                node = n;
                            }
                            let snap = snaps.borrow().clone();
                            let (out, ev) = state.on_request(&r, &snap);
                            note(&metrics, &health, &node, sent.version(&r.response_nonce), ev);
                            (out, snap.version.clone())
                        }
                        _ => break,
                    },
                    changed = snaps.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        let snap = snaps.borrow_and_update().clone();
                        (state.on_snapshot(&snap), snap.version.clone())
                    }
                    _ = shutdown.changed() => break,
                };
                for r in out {
                    sent.record(&r.nonce, &version);
                    metrics.responses.fetch_add(1, Ordering::Relaxed);
                    if tx.send(Ok(r)).await.is_err() {
                        break;
                    }
                }
            }
            metrics.streams.fetch_sub(1, Ordering::Relaxed);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx)) as Out<_>))
    }};
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for Ads {
    type StreamAggregatedResourcesStream = Out<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = Out<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        req: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        run_stream!(self, req, Sotw::default(), |r: &DiscoveryRequest| r
            .node
            .as_ref()
            .map(|n| n.id.clone()))
    }

    async fn delta_aggregated_resources(
        &self,
        req: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        run_stream!(self, req, Delta::default(), |r: &DeltaDiscoveryRequest| r
            .node
            .as_ref()
            .map(|n| n.id.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::Health;

    #[test]
    fn a_rejection_stands_until_a_later_snapshot_is_applied() {
        let h = Health::default();
        h.applied("v1");
        assert_eq!(h.status(), (None, Some("v1".into())));
        // v2's listener was ACKed before its Wasm config was NACKed: v1 is still the last good.
        h.applied("v2");
        assert_eq!(
            h.rejected("v2", "gw-1", "TypedExtensionConfig", "no"),
            Some("v1".into())
        );
        // More of v2 ACKed later (another type, another Envoy) does not clear it.
        h.applied("v2");
        let (r, good) = h.status();
        assert_eq!(r.map(|r| r.version), Some("v2".into()));
        assert_eq!(good.as_deref(), Some("v1"));
        h.applied("v3");
        assert_eq!(h.status(), (None, Some("v3".into())));
    }
}
