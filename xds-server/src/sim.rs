//! `aimesh-xds sim`: simulated ADS clients for the benchmark. Connects N SotW clients, waits
//! until each holds the current config, then replaces the gateway file and measures how long
//! until every client has received the changed clusters.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use crate::filters;
use crate::resources::{CLUSTER, EXTENSION, LISTENER, ROUTE};

/// Options of `sim`.
#[derive(Debug, clap::Args)]
pub struct SimArgs {
    /// ADS server, `http://127.0.0.1:18000`.
    #[arg(long)]
    pub server: String,
    /// Number of simulated clients.
    #[arg(long, default_value_t = 50)]
    pub clients: usize,
    /// File to copy over `--to` once all clients are in sync.
    #[arg(long)]
    pub apply: PathBuf,
    /// The gateway.yaml the server watches.
    #[arg(long)]
    pub to: PathBuf,
    /// Clusters each client must receive after the change.
    #[arg(long)]
    pub expect_clusters: usize,
}

/// Runs the simulation and prints `synced_s`, `propagation_max_s`, `propagation_p50_s`.
pub fn run(args: SimArgs) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(sim(args))
}

async fn sim(args: SimArgs) -> Result<(), String> {
    let (t0_tx, t0_rx) = watch::channel::<Option<Instant>>(None);
    let (synced_tx, mut synced_rx) = mpsc::channel::<()>(args.clients);
    let done: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let start = Instant::now();
    for i in 0..args.clients {
        let server = args.server.clone();
        let t0_rx = t0_rx.clone();
        let synced_tx = synced_tx.clone();
        let done = done.clone();
        let expect = args.expect_clusters;
        tokio::spawn(async move {
            if let Err(e) = client(i, server, t0_rx, synced_tx, done, expect).await {
                eprintln!("client {i}: {e}");
            }
        });
    }
    for _ in 0..args.clients {
        synced_rx.recv().await.ok_or("a client failed")?;
    }
    let synced = start.elapsed();
    let tmp = args.to.with_extension("sim.tmp");
    std::fs::copy(&args.apply, &tmp).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, &args.to).map_err(|e| e.to_string())?;
    let _ = t0_tx.send(Some(Instant::now()));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = done.lock().map(|d| d.len()).unwrap_or(0);
        if n >= args.clients || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut d = done.lock().map(|d| d.clone()).unwrap_or_default();
    if d.len() < args.clients {
        return Err(format!(
            "only {} of {} clients got the change",
            d.len(),
            args.clients
        ));
    }
    d.sort();
    println!("synced_s {:.3}", synced.as_secs_f64());
    println!("propagation_p50_s {:.3}", d[d.len() / 2].as_secs_f64());
    println!("propagation_max_s {:.3}", d[d.len() - 1].as_secs_f64());
    Ok(())
}

async fn client(
    i: usize,
    server: String,
    t0: watch::Receiver<Option<Instant>>,
    synced: mpsc::Sender<()>,
    done: Arc<Mutex<Vec<Duration>>>,
    expect: usize,
) -> Result<(), String> {
    let mut c = AggregatedDiscoveryServiceClient::connect(server)
        .await
        .map_err(|e| e.to_string())?
        .max_decoding_message_size(256 << 20);
    let (tx, rx) = mpsc::channel(16);
    let ecds: Vec<String> = filters::NAMES
        .iter()
        .map(|f| filters::extension_name(f))
        .collect();
    let names = |t: &str| -> Vec<String> {
        match t {
            ROUTE => vec!["gateway".into()],
            EXTENSION => ecds.clone(),
            _ => vec![],
        }
    };
    for (k, t) in [CLUSTER, LISTENER, ROUTE, EXTENSION]
        .into_iter()
        .enumerate()
    {
        let node = (k == 0).then(|| Node {
            id: format!("sim-{i}"),
            cluster: "sim".into(),
            ..Default::default()
        });
        tx.send(DiscoveryRequest {
            type_url: t.into(),
            resource_names: names(t),
            node,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    }
    let mut inbound = c
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    let mut seen = std::collections::HashSet::new();
    let mut reported_sync = false;
    let mut first_cds: Option<String> = None;
    let mut first_ext: Option<String> = None;
    let (mut got_cds, mut got_ext) = (false, false);
    while let Some(r) = inbound.message().await.map_err(|e| e.to_string())? {
        tx.send(DiscoveryRequest {
            type_url: r.type_url.clone(),
            version_info: r.version_info.clone(),
            response_nonce: r.nonce.clone(),
            resource_names: names(&r.type_url),
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
        seen.insert(r.type_url.clone());
        if r.type_url == CLUSTER && first_cds.is_none() {
            first_cds = Some(r.version_info.clone());
        }
        if r.type_url == EXTENSION && first_ext.is_none() {
            first_ext = Some(r.version_info.clone());
        }
        if !reported_sync && seen.len() == 4 {
            reported_sync = true;
            let _ = synced.send(()).await;
        }
        let started = *t0.borrow();
        if let Some(t) = started {
            if r.type_url == CLUSTER && first_cds.as_deref() != Some(r.version_info.as_str()) {
                got_cds |= r.resources.len() >= expect;
            }
            // The virtual models live in the virtual-model filter's ECDS config.
            if r.type_url == EXTENSION && first_ext.as_deref() != Some(r.version_info.as_str()) {
                got_ext = true;
            }
            if got_cds && got_ext {
                if let Ok(mut d) = done.lock() {
                    d.push(t.elapsed());
                }
                return Ok(());
            }
        }
    }
    Ok(())
}
