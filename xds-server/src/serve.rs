//! `aimesh-xds serve`: watch gateway.yaml, publish snapshots over ADS, expose health and metrics.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryServiceServer;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::ads::{Ads, Health, Metrics};
use crate::snapshot::Snapshot;
use crate::{resources, validate};

/// Options of `serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// gateway.yaml to serve and watch.
    #[arg(long, short)]
    pub config: PathBuf,
    /// gRPC (ADS) listen address.
    #[arg(long, default_value = "127.0.0.1:18000")]
    pub listen: SocketAddr,
    /// Health and metrics HTTP listen address.
    #[arg(long, default_value = "127.0.0.1:18001")]
    pub admin: SocketAddr,
    /// Directory with the filters' .wasm files, as Envoy sees it.
    #[arg(long)]
    pub wasm_dir: PathBuf,
    /// How often the file is checked for changes, in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub poll_ms: u64,
    /// mTLS of the ADS listener (plaintext is for loopback only).
    #[command(flatten)]
    pub tls: crate::tls::TlsArgs,
    /// Serve the listener on this port instead of gateway.yaml's `listener.port` (one file for
    /// several Envoys on one host, as `make run-fleet` runs them).
    #[arg(long)]
    pub listener_port: Option<u16>,
}

/// Builds a snapshot from a file's text.
pub fn snapshot_of(text: &str, wasm_dir: &Path) -> Result<Snapshot, Vec<String>> {
    snapshot_on(text, wasm_dir, None)
}

/// [`snapshot_of`], the listener on `port` when given.
pub fn snapshot_on(
    text: &str,
    wasm_dir: &Path,
    port: Option<u16>,
) -> Result<Snapshot, Vec<String>> {
    let mut gw = validate::load_str(text)
        .map_err(|es| es.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    if let Some(p) = port {
        gw.listener.port = p;
    }
    let res = resources::build(&gw, wasm_dir, true).map_err(|e| {
        // Build errors start with the field they are about (`providers[0].api_key: ...`).
        let line = e
            .split_once(": ")
            .and_then(|(field, _)| validate::locate(text, field));
        vec![match line {
            Some(l) => format!("line {l}: {e}"),
            None => e,
        }]
    })?;
    Ok(Snapshot::new(res))
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Runs the server until SIGTERM or SIGINT.
pub fn run(args: ServeArgs) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    let mode = args.tls.mode(args.listen).map_err(|e| e.to_string())?;
    let tls = crate::tls::server_config(&mode).map_err(|e| e.to_string())?;
    let text = std::fs::read(&args.config)
        .map_err(|e| format!("cannot read {}: {e}", args.config.display()))?;
    let first = snapshot_on(
        &String::from_utf8_lossy(&text),
        &args.wasm_dir,
        args.listener_port,
    )
    .map_err(|es| format!("invalid {}:\n  {}", args.config.display(), es.join("\n  ")))?;
    eprintln!(
        "serving snapshot {} ({} resources)",
        first.version,
        first.len()
    );
    let metrics = Arc::new(Metrics::default());
    let (snap_tx, snap_rx) = watch::channel(Arc::new(first));
    let (stop_tx, stop_rx) = watch::channel(false);

    let grpc = TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("bind {}: {e}", args.listen))?;
    let admin = TcpListener::bind(args.admin)
        .await
        .map_err(|e| format!("bind {}: {e}", args.admin))?;
    let grpc_port = grpc.local_addr().map_err(|e| e.to_string())?.port();
    let admin_port = admin.local_addr().map_err(|e| e.to_string())?.port();
    // Tests and scripts read the ports from this line (both may have been 0).
    println!("LISTENING {grpc_port} {admin_port}");

    tokio::spawn(watch_file(
        args.config.clone(),
        args.wasm_dir.clone(),
        args.poll_ms,
        args.listener_port,
        digest(&text),
        snap_tx,
        metrics.clone(),
    ));
    let health = Arc::new(Health::default());
    tokio::spawn(admin_http(
        admin,
        snap_rx.clone(),
        metrics.clone(),
        health.clone(),
    ));

    let svc =
        AggregatedDiscoveryServiceServer::new(Ads::new(snap_rx, stop_rx.clone(), metrics, health))
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(256 << 20);
    let mut stop_signal = stop_rx.clone();
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder
            .tls_config(tls)
            .map_err(|e| format!("ADS TLS: {e}"))?;
        eprintln!("ADS: mutual TLS, client certificates required");
    } else {
        eprintln!("ADS: plaintext on {}", args.listen);
    }
    let server = builder
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .add_service(svc)
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(grpc),
            async move {
                let _ = stop_signal.changed().await;
            },
        );
    let signals = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| e.to_string())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        Ok::<(), String>(())
    };
    tokio::pin!(server);
    tokio::select! {
        r = &mut server => return r.map_err(|e| e.to_string()),
        r = signals => r?,
    }
    eprintln!("shutting down: closing ADS streams (Envoys keep their config)");
    let _ = stop_tx.send(true);
    // Streams end at once; give in-flight responses a moment, then stop regardless.
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    Ok(())
}

async fn watch_file(
    path: PathBuf,
    wasm_dir: PathBuf,
    poll_ms: u64,
    port: Option<u16>,
    mut last: [u8; 32],
    tx: watch::Sender<Arc<Snapshot>>,
    metrics: Arc<Metrics>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(poll_ms.max(10)));
    loop {
        tick.tick().await;
        let Ok(bytes) = tokio::fs::read(&path).await else {
            continue;
        };
        let d = digest(&bytes);
        if d == last {
            continue;
        }
        last = d;
        match snapshot_on(&String::from_utf8_lossy(&bytes), &wasm_dir, port) {
            Ok(s) => {
                if s.version == tx.borrow().version {
                    continue;
                }
                eprintln!("applying snapshot {} ({} resources)", s.version, s.len());
                metrics.reloads.fetch_add(1, Ordering::Relaxed);
                tx.send_replace(Arc::new(s));
            }
            Err(es) => {
                metrics.rejected.fetch_add(1, Ordering::Relaxed);
                eprintln!(
                    "refusing {} (keeping snapshot {}):\n  {}",
                    path.display(),
                    tx.borrow().version,
                    es.join("\n  ")
                );
            }
        }
    }
}

async fn admin_http(
    listener: TcpListener,
    snaps: watch::Receiver<Arc<Snapshot>>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            continue;
        };
        let snaps = snaps.clone();
        let metrics = metrics.clone();
        let health = health.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let n = sock.read(&mut buf).await.unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]);
            let path = req.split_whitespace().nth(1).unwrap_or("/");
            let (status, ctype, body) = match path {
                "/healthz" | "/ready" => {
                    let (status, body) = health_text(&health, &snaps.borrow().version);
                    (status, "text/plain", body)
                }
                "/metrics" => (
                    "200 OK",
                    "text/plain; version=0.0.4",
                    metrics_text(&metrics, &snaps.borrow()),
                ),
                _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}

/// `ok <version>` while no Envoy rejects a snapshot; else 503 with the rejection (Envoy's
/// reason) and the last snapshot the Envoys applied, which is what they still serve.
fn health_text(health: &Health, current: &str) -> (&'static str, String) {
    match health.status() {
        (None, _) => ("200 OK", format!("ok {current}\n")),
        (Some(r), good) => (
            "503 Service Unavailable",
            format!(
                "rejected {} by {} ({}): {}\nlast good {}\n",
                r.version,
                r.node,
                r.resource_type,
                r.message,
                good.as_deref().unwrap_or("none")
            ),
        ),
    }
}

fn metrics_text(m: &Metrics, s: &Snapshot) -> String {
    let g = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let mut out = String::new();
    for (name, help, kind, v) in [
        (
            "aimesh_xds_streams",
            "Open ADS streams.",
            "gauge",
            g(&m.streams),
        ),
        (
            "aimesh_xds_responses_total",
            "Discovery responses sent.",
            "counter",
            g(&m.responses),
        ),
        (
            "aimesh_xds_acks_total",
            "ACKs received.",
            "counter",
            g(&m.acks),
        ),
        (
            "aimesh_xds_nacks_total",
            "NACKs received (Envoy rejected a config).",
            "counter",
            g(&m.nacks),
        ),
        (
            "aimesh_xds_reloads_total",
            "Config changes applied.",
            "counter",
            g(&m.reloads),
        ),
        (
            "aimesh_xds_rejected_total",
            "Invalid config files refused.",
            "counter",
            g(&m.rejected),
        ),
        (
            "aimesh_xds_resources",
            "Resources in the current snapshot.",
            "gauge",
            s.len() as u64,
        ),
    ] {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
        ));
    }
    out.push_str(&format!(
        "aimesh_xds_snapshot_info{{version=\"{}\"}} 1\n",
        s.version
    ));
    out
}
