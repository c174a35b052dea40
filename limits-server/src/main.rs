//! `aimesh-limits`: fleet-wide rate limits and hard USD budgets for aimesh, on Redis.
//!
//! Every Envoy replica's token-accounting stage calls it through an Envoy cluster
//! (HTTP/JSON, the contract in `aimesh_config::fleet`): `POST /v1/admit` takes a request's
//! counters (requests and tokens per minute, concurrency, USD per day and month) or refuses,
//! `POST /v1/settle` replaces the reservation with the real figures. The service keeps no state
//! of its own: run as many as you like in front of one Redis.

mod store;
mod windows;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aimesh_config::fleet::{AdmitRequest, ServiceError, SettleRequest, ADMIT_PATH, SETTLE_PATH};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::io::Write;

use store::Store;

/// Command line.
#[derive(Parser, Debug)]
#[command(
    name = "aimesh-limits",
    about = "Fleet-wide limits for aimesh, on Redis"
)]
struct Args {
    /// Address to listen on (port 0: any free port, printed as `LISTENING <port>`).
    #[arg(long, default_value = "127.0.0.1:8089")]
    listen: SocketAddr,
    /// Redis URL (`redis://host:6379/0`; `rediss://` for TLS).
    #[arg(long, default_value = "redis://127.0.0.1:6379/0")]
    redis: String,
    /// How long one Redis call may take before the caller's failure policy applies, ms.
    #[arg(long, default_value_t = 150)]
    redis_timeout_ms: u64,
    /// How long a concurrency slot is held when its request is never settled (a replica
    /// died), seconds.
    #[arg(long, default_value_t = 600)]
    lease_s: u64,
}

/// Why a call failed: each with its status and stable code.
#[derive(Debug, thiserror::Error)]
enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("no such endpoint")]
    NotFound,
    #[error("limits store unavailable: {0}")]
    Store(#[from] store::StoreError),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::NotFound => "not_found",
            ApiError::Store(_) => "store_unavailable",
        }
    }
}

/// Largest request body accepted (a request touches a handful of counters).
const MAX_BODY: usize = 64 * 1024;

fn json(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

async fn read<T: serde::de::DeserializeOwned>(req: Request<Incoming>) -> Result<T, ApiError> {
    let body = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| ApiError::BadRequest(format!("body: {e}")))?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(e.to_string()))
}

async fn route(store: &Store, req: Request<Incoming>) -> Result<Vec<u8>, ApiError> {
    match (req.method(), req.uri().path()) {
        (&Method::POST, ADMIT_PATH) => {
            let r: AdmitRequest = read(req).await?;
            Ok(serde_json::to_vec(&store.admit(&r).await?).unwrap_or_default())
        }
        (&Method::POST, SETTLE_PATH) => {
            let r: SettleRequest = read(req).await?;
            store.settle(&r).await?;
            Ok(b"{}".to_vec())
        }
        (&Method::GET, "/healthz") => {
            store.ping().await?;
            Ok(b"{}".to_vec())
        }
        _ => Err(ApiError::NotFound),
    }
}

async fn handle(
    store: Arc<Store>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    Ok(match route(&store, req).await {
        Ok(body) => json(StatusCode::OK, body),
        Err(e) => {
            if let ApiError::Store(_) = e {
                eprintln!("aimesh-limits: {e}");
            }
            let body = ServiceError {
                code: e.code().to_string(),
                message: e.to_string(),
            };
            json(e.status(), serde_json::to_vec(&body).unwrap_or_default())
        }
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let store = Arc::new(Store::new(
        &args.redis,
        Duration::from_millis(args.redis_timeout_ms),
        Duration::from_secs(args.lease_s),
    )?);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("LISTENING {}", listener.local_addr()?.port());
    std::io::stdout().flush()?;
    loop {
        let (stream, _) = listener.accept().await?;
        let store = store.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(store.clone(), req));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
