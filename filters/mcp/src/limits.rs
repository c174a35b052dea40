//! Per-tool limits in the shared store (every worker of the proxy), with compare-and-swap: calls
//! per minute as a token bucket, calls in flight as a counter released when the stream ends.

use aimesh_config::mcp::McpConfig;
use aimesh_core::host::SharedStore;
use aimesh_core::limits::{counter_add, init_if_absent, Admission, TokenBucket};
use aimesh_host::Env;

use crate::rpc::RpcError;

const MINUTE_MS: u64 = 60_000;

fn rate_key(server: &str, tool: &str, caller: &str) -> String {
    format!("aimesh.mcp.rate.{server}.{tool}.{caller}")
}

fn inflight_key(server: &str, tool: &str, caller: &str) -> String {
    format!("aimesh.mcp.inflight.{server}.{tool}.{caller}")
}

/// Creates every known caller's limit state, so compare-and-swap holds from the first call.
pub fn init(cfg: &McpConfig, env: &dyn Env) {
    let now = env.unix_millis();
    for l in &cfg.limits {
        for caller in &cfg.known_callers {
            if let Some(cpm) = l.calls_per_minute {
                let bucket = TokenBucket {
                    capacity: cpm,
                    period_ms: MINUTE_MS,
                };
                let _ = bucket.init(env.store(), &rate_key(&l.server, &l.tool, caller), now);
            }
            if l.max_concurrent.is_some() {
                let _ =
                    init_if_absent(env.store(), &inflight_key(&l.server, &l.tool, caller), b"0");
            }
        }
    }
}

/// Takes the limits of one call; `Ok` holds the in-flight keys to release.
pub fn take(
    cfg: &McpConfig,
    store: &dyn SharedStore,
    now_ms: u64,
    server: &str,
    tool: &str,
    caller: &str,
) -> Result<Vec<String>, RpcError> {
    let mut held = Vec::new();
    for l in cfg
        .limits
        .iter()
        .filter(|l| l.server == server && l.tool == tool)
    {
        if let Some(max) = l.max_concurrent {
            let key = inflight_key(server, tool, caller);
            let ceiling = i64::try_from(max).unwrap_or(i64::MAX);
            match counter_add(store, &key, 1, Some(ceiling)) {
                Ok(Some(_)) => held.push(key),
                Ok(None) => {
                    release(store, &held);
                    return Err(RpcError::Limited {
                        tool: tool.to_string(),
                        why: "too many calls in flight",
                        retry_after_ms: None,
                    });
                }
                // The store being unavailable is the gateway's fault: the call is not held back.
                Err(e) => log::warn!("mcp: in-flight limit not applied: {e}"),
            }
        }
        if let Some(cpm) = l.calls_per_minute {
            let bucket = TokenBucket {
                capacity: cpm,
                period_ms: MINUTE_MS,
            };
            match bucket.acquire(store, &rate_key(server, tool, caller), 1, now_ms) {
                Ok(Admission::Allowed { .. }) => {}
                Ok(Admission::Limited { retry_after_ms, .. }) => {
                    release(store, &held);
                    return Err(RpcError::Limited {
                        tool: tool.to_string(),
                        why: "calls per minute exceeded",
                        retry_after_ms: Some(retry_after_ms),
                    });
                }
                Err(e) => log::warn!("mcp: rate limit not applied: {e}"),
            }
        }
    }
    Ok(held)
}

/// Gives back in-flight slots.
pub fn release(store: &dyn SharedStore, held: &[String]) {
    for key in held {
        if let Err(e) = counter_add(store, key, -1, None) {
            log::warn!("mcp: in-flight slot not released: {e}");
        }
    }
}
