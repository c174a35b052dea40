//! `mock-llm`: a fake OpenAI upstream for tests and benchmarks.
//!
//! Behaviour is chosen per request by `x-mock-*` headers (see `controls.rs`) or process-wide with
//! `PUT /__mock/defaults` (a JSON `Controls`). Every reply carries `x-upstream-id`, so a test can
//! prove which backend served it, and `--record FILE` appends every request as a JSON line.

mod anthropic;
mod controls;
mod openai_more;
mod replies;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};

use controls::{Controls, Reset, Split};
use replies::Reply;

/// Fake OpenAI upstream.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port; 0 picks a free one. The bound port is printed as `LISTENING <port>`.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Upstream id sent back as `x-upstream-id`.
    #[arg(long, default_value = "mock")]
    id: String,
    /// Append every request as a JSON line to this file.
    #[arg(long)]
    record: Option<std::path::PathBuf>,
    /// Models listed by `GET /v1/models`.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "gpt-4o-mini,gpt-4o,text-embedding-3-small"
    )]
    models: Vec<String>,
}

/// Totals of what this upstream served, for conservation tests (`GET /__mock/stats`).
#[derive(Default)]
struct Served {
    requests: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    cache_read_tokens: AtomicU64,
    cache_creation_tokens: AtomicU64,
    without_usage: AtomicU64,
}

struct State {
    served: Served,
    id: String,
    models: Vec<String>,
    record: Option<Mutex<std::fs::File>>,
    defaults: RwLock<Controls>,
}

type Body = BoxBody<Bytes, std::io::Error>;

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

fn json_response(
    state: &State,
    status: u16,
    v: &Value,
    extra: &[(&str, String)],
) -> Response<Body> {
    let mut r = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .header("x-upstream-id", &state.id);
    for (k, val) in extra {
        r = r.header(*k, val.as_str());
    }
    r.body(full(v.to_string()))
        .unwrap_or_else(|_| Response::new(full("")))
}

fn record(state: &State, req: &hyper::http::request::Parts, body: &[u8]) {
    let Some(file) = &state.record else { return };
    let headers: serde_json::Map<String, Value> = req
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
            )
        })
        .collect();
    let mut line = json!({
        "upstream": state.id,
        "method": req.method.as_str(),
        "path": req.uri.path(),
        "query": req.uri.query(),
        "headers": headers,
    });
    match std::str::from_utf8(body) {
        Ok(s) => line["body"] = Value::String(s.to_string()),
        Err(_) => {
            line["body_b64"] = Value::String(base64::engine::general_purpose::STANDARD.encode(body))
        }
    }
    if let Ok(mut f) = file.lock() {
        let _ = writeln!(f, "{line}");
        let _ = f.flush();
    }
}

/// Cuts the event stream into frames as the controls ask.
fn frames(events: Vec<Vec<u8>>, split: Split) -> Vec<Vec<u8>> {
    let all: Vec<u8> = match split {
        Split::Events => return events,
        _ => events.concat(),
    };
    let mut out = Vec::new();
    let mut rng = match split {
        Split::Random { seed, .. } => seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407),
        _ => 0,
    };
    let mut i = 0;
    while i < all.len() {
        let n = match split {
            Split::Fixed(n) => n,
            Split::Random { max, .. } => {
                // xorshift64*: deterministic per seed, no dependency.
                rng ^= rng >> 12;
                rng ^= rng << 25;
                rng ^= rng >> 27;
                (rng.wrapping_mul(2685821657736338717) % max as u64) as usize + 1
            }
            Split::Events => all.len(),
        };
        let end = (i + n).min(all.len());
        out.push(all[i..end].to_vec());
        i = end;
    }
    out
}

fn streamed(frames: Vec<Vec<u8>>, gap: u64, reset: Reset) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
    tokio::spawn(async move {
        let mut sent = 0usize;
        for (i, mut f) in frames.into_iter().enumerate() {
            if i > 0 && gap > 0 {
                tokio::time::sleep(Duration::from_millis(gap)).await;
            }
            let mut abort = false;
            if let Reset::AfterBytes(limit) = reset {
                if sent + f.len() >= limit {
                    f.truncate(limit.saturating_sub(sent));
                    abort = true;
                }
            }
            sent += f.len();
            if !f.is_empty() && tx.send(Ok(Frame::data(Bytes::from(f)))).await.is_err() {
                return;
            }
            if abort {
                let _ = tx
                    .send(Err(std::io::Error::other("reset by x-mock-reset")))
                    .await;
                return;
            }
        }
    });
    StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx)).boxed()
}

/// A `data:` line of `n` bytes (a JSON string that never closes, before any `choices`: nothing
/// tells what the event is), then silence with the stream open until the client leaves.
fn endless_line(n: usize) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
    tokio::spawn(async move {
        let head = Bytes::from_static(
            b"data: {\"id\":\"chatcmpl-endless\",\"model\":\"gpt-4o-mini\",\"padding\":\"",
        );
        let mut left = n.saturating_sub(head.len());
        if tx.send(Ok(Frame::data(head))).await.is_err() {
            return;
        }
        let block = Bytes::from(vec![b'a'; 64 * 1024]);
        while left > 0 {
            let part = block.slice(..left.min(block.len()));
            left -= part.len();
            if tx.send(Ok(Frame::data(part))).await.is_err() {
                return;
            }
        }
        tx.closed().await;
    });
    StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx)).boxed()
}

/// The credential a request carried, for `echo_credentials`.
fn credential(h: &hyper::HeaderMap) -> Option<String> {
    ["authorization", "x-api-key", "api-key"]
        .iter()
        .find_map(|n| h.get(*n).and_then(|v| v.to_str().ok()))
        .map(str::to_string)
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Body>, std::io::Error> {
    let echo = {
        let defaults = state.defaults.read().map(|d| d.clone()).unwrap_or_default();
        Controls::from_headers(&defaults, req.headers(), &state.id).echo_credentials
    };
    let cred = credential(req.headers()).filter(|_| echo);
    let mut resp = reply(state, req, cred.as_deref()).await?;
    if let Some(v) = cred.and_then(|c| c.parse().ok()) {
        resp.headers_mut().insert("x-echo-credential", v);
    }
    Ok(resp)
}

async fn reply(
    state: Arc<State>,
    req: Request<Incoming>,
    echoed: Option<&str>,
) -> Result<Response<Body>, std::io::Error> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    let path = parts.uri.path().to_string();
    if let Some(rest) = path.strip_prefix("/__mock/") {
        return Ok(admin(&state, rest, &body));
    }
    record(&state, &parts, &body);
    let defaults = state.defaults.read().map(|d| d.clone()).unwrap_or_default();
    let c = Controls::from_headers(&defaults, &parts.headers, &state.id);
    if c.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(c.latency_ms)).await;
    }
    if c.reset == Reset::BeforeHeaders {
        // An error from the service makes hyper drop the connection without a response.
        return Err(std::io::Error::other("reset before headers"));
    }
    let retry = c
        .retry_after
        .clone()
        .map(|r| vec![("retry-after", r)])
        .unwrap_or_default();
    if let Some(status) = c.status.filter(|s| *s >= 400) {
        let mut err = if path.starts_with("/v1/messages") {
            anthropic::error(status)
        } else {
            replies::error(status)
        };
        if let Some(cred) = echoed {
            err["error"]["message"] = json!(format!("Incorrect API key provided: {cred}"));
        }
        return Ok(json_response(&state, status, &err, &retry));
    }
    if path == "/healthz" {
        let s = c.health_status.unwrap_or(200);
        return Ok(json_response(&state, s, &json!({"status": s}), &[]));
    }
    if path == "/v1/models" && parts.method == hyper::Method::GET {
        let data: Vec<Value> = state
            .models
            .iter()
            .map(|m| json!({"id": m, "object": "model", "created": 0, "owned_by": "mock"}))
            .collect();
        return Ok(json_response(
            &state,
            200,
            &json!({"object": "list", "data": data}),
            &[],
        ));
    }
    if let Some(n) = c.endless_line {
        return Ok(response(&state, 200, "text/event-stream", endless_line(n)));
    }
    if let Some(more) = openai_more::reply(&parts.method, &path, &parts.headers, &body, &c) {
        return Ok(match more {
            openai_more::More::Reply(r) => serve(&state, r, &c),
            openai_more::More::Bytes(status, ct, b) => response(&state, status, &ct, full(b)),
        });
    }
    if path.starts_with("/v1/") && parts.method == hyper::Method::POST {
        let Ok(req_json) = serde_json::from_slice::<Value>(&body) else {
            return Ok(json_response(&state, 400, &replies::error(400), &[]));
        };
        let reply = replies::openai(&path, &req_json, &c)
            .or_else(|| anthropic::messages(&path, &req_json, &c));
        if let Some(r) = reply {
            return Ok(serve(&state, r, &c));
        }
    }
    Ok(echo(&state, &parts, body))
}

/// Counts a reply's usage and sends it as the controls ask (split, gaps, resets).
fn serve(state: &State, reply: Reply, c: &Controls) -> Response<Body> {
    count_served(state, &reply);
    match reply {
        Reply::Json(status, v) => {
            let bytes = v.to_string().into_bytes();
            let body = if c.reset == Reset::None && c.split == Split::Events {
                full(bytes)
            } else {
                streamed(frames(vec![bytes], c.split), c.chunk_gap_ms, c.reset)
            };
            response(state, status, "application/json", body)
        }
        Reply::Sse(events) => {
            let body = streamed(frames(events, c.split), c.chunk_gap_ms, c.reset);
            response(state, 200, "text/event-stream", body)
        }
    }
}

/// Adds a reply's reported usage to the totals (a reply cut by `x-mock-reset` still counts:
/// the totals are what the upstream meant to report).
fn count_served(state: &State, reply: &Reply) {
    if let Some((prompt, completion, read, write)) = anthropic::served_usage(reply) {
        let s = &state.served;
        s.requests.fetch_add(1, Ordering::Relaxed);
        s.prompt_tokens.fetch_add(prompt, Ordering::Relaxed);
        s.completion_tokens.fetch_add(completion, Ordering::Relaxed);
        s.cache_read_tokens.fetch_add(read, Ordering::Relaxed);
        s.cache_creation_tokens.fetch_add(write, Ordering::Relaxed);
        return;
    }
    let usage = match reply {
        Reply::Json(_, v) => v.get("usage").cloned(),
        Reply::Sse(events) => events.iter().rev().find_map(|e| {
            // Responses events start with an `event:` line; its usage is in `response`.
            let text = std::str::from_utf8(e).ok()?;
            let data = text.lines().find_map(|l| l.strip_prefix("data: "))?;
            let v: Value = serde_json::from_str(data.trim()).ok()?;
            v.get("usage")
                .or_else(|| v.pointer("/response/usage"))
                .filter(|u| !u.is_null())
                .cloned()
        }),
    }
    .filter(|u| !u.is_null());
    let s = &state.served;
    s.requests.fetch_add(1, Ordering::Relaxed);
    match usage {
        Some(u) => {
            // OpenAI chat names, else the Responses / images / audio names.
            let n = |k: &str, alt: &str| {
                u.get(k)
                    .or_else(|| u.get(alt))
                    .and_then(Value::as_u64)
                    .unwrap_or(0)
            };
            s.prompt_tokens
                .fetch_add(n("prompt_tokens", "input_tokens"), Ordering::Relaxed);
            s.completion_tokens
                .fetch_add(n("completion_tokens", "output_tokens"), Ordering::Relaxed);
        }
        None => {
            s.without_usage.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn response(state: &State, status: u16, content_type: &str, body: Body) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::OK))
        .header("content-type", content_type)
        .header("x-upstream-id", &state.id)
        .body(body)
        .unwrap_or_else(|_| Response::new(full("")))
}

/// Any other path: with `x-mock-echo-body` the body comes back as sent (binary included),
/// otherwise a JSON description of the request.
fn echo(state: &State, parts: &hyper::http::request::Parts, body: Bytes) -> Response<Body> {
    if parts.headers.contains_key("x-mock-echo-body") {
        let ct = parts
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_string();
        return response(state, 200, &ct, full(body));
    }
    let v = json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "body_bytes": body.len(),
    });
    json_response(state, 200, &v, &[])
}

fn admin(state: &State, rest: &str, body: &[u8]) -> Response<Body> {
    match rest {
        "defaults" => match serde_json::from_slice::<Controls>(body) {
            Ok(c) => {
                if let Ok(mut d) = state.defaults.write() {
                    *d = c;
                }
                json_response(state, 200, &json!({"ok": true}), &[])
            }
            Err(e) => json_response(state, 400, &json!({"error": e.to_string()}), &[]),
        },
        "stats" => {
            let s = &state.served;
            let v = json!({
                "requests": s.requests.load(Ordering::Relaxed),
                "prompt_tokens": s.prompt_tokens.load(Ordering::Relaxed),
                "completion_tokens": s.completion_tokens.load(Ordering::Relaxed),
                "cache_read_tokens": s.cache_read_tokens.load(Ordering::Relaxed),
                "cache_creation_tokens": s.cache_creation_tokens.load(Ordering::Relaxed),
                "without_usage": s.without_usage.load(Ordering::Relaxed),
            });
            json_response(state, 200, &v, &[])
        }
        _ => json_response(state, 404, &json!({"error": "unknown admin path"}), &[]),
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let record = match &args.record {
        Some(p) => Some(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?,
        )),
        None => None,
    };
    let state = Arc::new(State {
        id: args.id.clone(),
        models: args.models.clone(),
        record,
        defaults: RwLock::new(Controls::default()),
        served: Served::default(),
    });
    let addr: SocketAddr = format!("{}:{}", args.host, args.port)
        .parse()
        .map_err(std::io::Error::other)?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("LISTENING {}", listener.local_addr()?.port());
    std::io::stdout().flush()?;
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => r?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(state.clone(), req));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
