//! Admission and settlement on Redis: one Lua script each, so every replica's update is atomic.

use std::time::{Duration, SystemTime};

use aimesh_config::fleet::{
    AdmitRequest, AdmitResponse, Kind, Left, Refused, SettleRequest, Ticket,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;
use tokio::sync::Mutex;

use crate::windows;

/// Every key lives in one hash slot (`{aimesh}`), so a script may touch several of them on a
/// Redis Cluster too.
const PREFIX: &str = "{aimesh}";

/// Why the store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis is unreachable, slow or refused the script.
    #[error("redis: {0}")]
    Redis(String),
    /// Redis answered something the script never returns.
    #[error("unexpected answer from the admission script")]
    Answer,
}

/// The Redis side of the service.
pub struct Store {
    client: redis::Client,
    conn: Mutex<Option<ConnectionManager>>,
    timeout: Duration,
    lease: Duration,
    admit: Script,
    settle: Script,
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Rpm => "rpm",
        Kind::Tpm => "tpm",
        Kind::Concurrent => "concurrent",
        Kind::UsdDay => "usd_day",
        Kind::UsdMonth => "usd_month",
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Store {
    /// A store on `url`; Redis is dialled on first use and again after it went away.
    pub fn new(url: &str, timeout: Duration, lease: Duration) -> Result<Store, StoreError> {
        let client = redis::Client::open(url).map_err(|e| StoreError::Redis(e.to_string()))?;
        Ok(Store {
            client,
            conn: Mutex::new(None),
            timeout,
            lease,
            admit: Script::new(include_str!("lua/admit.lua")),
            settle: Script::new(include_str!("lua/settle.lua")),
        })
    }

    async fn connection(&self) -> Result<ConnectionManager, StoreError> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(self.timeout)
            .set_number_of_retries(1);
        let c = tokio::time::timeout(
            self.timeout,
            ConnectionManager::new_with_config(self.client.clone(), config),
        )
        .await
        .map_err(|_| StoreError::Redis("connect timed out".into()))?
        .map_err(|e| StoreError::Redis(e.to_string()))?;
        *slot = Some(c.clone());
        Ok(c)
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        call: redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let mut c = self.connection().await?;
        let out = match tokio::time::timeout(self.timeout, call.invoke_async(&mut c)).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => StoreError::Redis(e.to_string()),
            Err(_) => StoreError::Redis("timed out".into()),
        };
        self.forget().await;
        Err(out)
    }

    /// Drops the connection after a failure: the next call dials afresh instead of waiting
    /// out the manager's reconnect back-off, so counting resumes as soon as Redis is back.
    async fn forget(&self) {
        *self.conn.lock().await = None;
    }

    /// Redis is there.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut c = self.connection().await?;
        let pong: Result<Result<String, _>, _> =
            tokio::time::timeout(self.timeout, redis::cmd("PING").query_async(&mut c)).await;
        match pong {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                self.forget().await;
                Err(StoreError::Redis(e.to_string()))
            }
            Err(_) => {
                self.forget().await;
                Err(StoreError::Redis("timed out".into()))
            }
        }
    }

    /// Takes every bucket of `req` or none.
    pub async fn admit(&self, req: &AdmitRequest) -> Result<AdmitResponse, StoreError> {
        let now = now_ms();
        let now_s = now / 1000;
        let mut call = self.admit.prepare_invoke();
        call.arg(now)
            .arg(&req.id)
            .arg(u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX));
        let mut keys = Vec::with_capacity(req.buckets.len());
        for b in &req.buckets {
            let (key, ttl, end) = match b.kind {
                Kind::UsdDay | Kind::UsdMonth => {
                    let w = if b.kind == Kind::UsdDay {
                        windows::day(now_s)
                    } else {
                        windows::month(now_s)
                    };
                    let key = format!("{PREFIX}:{}:{}:{}", kind_name(b.kind), b.scope, w.suffix);
                    // A day past the window, so a late settlement still finds its key.
                    (key, w.end_s - now_s + 86_400, w.end_s)
                }
                k => (format!("{PREFIX}:{}:{}", kind_name(k), b.scope), 0, 0),
            };
            call.key(&key)
                .arg(kind_name(b.kind))
                .arg(b.limit)
                .arg(b.amount)
                .arg(ttl)
                .arg(end);
            keys.push(key);
        }
        let out: Vec<i64> = self.run(call).await?;
        let num = |i: usize| out.get(i).and_then(|v| u64::try_from(*v).ok());
        match out.first() {
            Some(1) => {
                let step = num(1).ok_or(StoreError::Answer)?;
                let mut tickets = Vec::new();
                let mut left = Vec::new();
                for (i, (b, key)) in req.buckets.iter().zip(keys).enumerate() {
                    left.push(Left {
                        kind: b.kind,
                        limit: b.limit,
                        remaining: num(2 + i).ok_or(StoreError::Answer)?,
                    });
                    tickets.push(Ticket {
                        kind: b.kind,
                        key,
                        step: if b.kind == Kind::Tpm { step } else { 0 },
                        reserved: b.amount,
                    });
                }
                Ok(AdmitResponse {
                    admitted: true,
                    tickets,
                    left,
                    refused: None,
                })
            }
            Some(0) => {
                let i = num(1)
                    .and_then(|i| usize::try_from(i).ok())
                    .ok_or(StoreError::Answer)?;
                let b = req
                    .buckets
                    .get(i.wrapping_sub(1))
                    .ok_or(StoreError::Answer)?;
                Ok(AdmitResponse {
                    admitted: false,
                    tickets: Vec::new(),
                    left: Vec::new(),
                    refused: Some(Refused {
                        kind: b.kind,
                        scope: b.scope.clone(),
                        limit: b.limit,
                        remaining: num(2).ok_or(StoreError::Answer)?,
                        retry_after_s: num(3).ok_or(StoreError::Answer)?,
                    }),
                })
            }
            _ => Err(StoreError::Answer),
        }
    }

    /// Replaces the reservations of `req`'s tickets with its real figures.
    pub async fn settle(&self, req: &SettleRequest) -> Result<(), StoreError> {
        let mut call = self.settle.prepare_invoke();
        call.arg(&req.id);
        for t in &req.tickets {
            let actual = match t.kind {
                Kind::Tpm => req.tokens,
                Kind::UsdDay | Kind::UsdMonth => req.micro_usd,
                Kind::Rpm | Kind::Concurrent => t.reserved,
            };
            // Keys come back from the caller: only ours are touched.
            if !t.key.starts_with(PREFIX) {
                continue;
            }
            call.key(&t.key)
                .arg(kind_name(t.kind))
                .arg(t.step)
                .arg(t.reserved)
                .arg(actual);
        }
        let _: i64 = self.run(call).await?;
        Ok(())
    }
}
