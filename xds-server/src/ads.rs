//! The ADS gRPC service: moves messages between Envoy and the per-stream protocol state.

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
}

impl Ads {
    /// A service that serves the latest snapshot of `snapshots` until `shutdown` turns true.
    pub fn new(
        snapshots: watch::Receiver<Arc<Snapshot>>,
        shutdown: watch::Receiver<bool>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            snapshots,
            shutdown,
            metrics,
        }
    }
}

type Out<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn note(metrics: &Metrics, node: &str, ev: Option<Event>) {
    match ev {
        Some(Event::Ack { .. }) => {
            metrics.acks.fetch_add(1, Ordering::Relaxed);
        }
        Some(Event::Nack { type_url, message }) => {
            metrics.nacks.fetch_add(1, Ordering::Relaxed);
            eprintln!("NACK from {node} for {}: {message}", short_type(&type_url));
        }
        None => {}
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
        tokio::spawn(async move {
            let mut state = $state;
            let mut node = String::from("?");
            metrics.streams.fetch_add(1, Ordering::Relaxed);
            loop {
                let out = tokio::select! {
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
                            note(&metrics, &node, ev);
                            out
                        }
                        _ => break,
                    },
                    changed = snaps.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        let snap = snaps.borrow_and_update().clone();
                        state.on_snapshot(&snap)
                    }
                    _ = shutdown.changed() => break,
                };
                for r in out {
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
