//! Liveness and readiness, for every role's `/livez` and `/readyz`: live while the process
//! serves; ready only while Postgres and Redis both answer, and no longer once a shutdown has
//! begun (the drain), so that traffic and new work go elsewhere first.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyper::StatusCode;
use sqlx::PgPool;

use crate::stream::{Connection, admin};

/// How long a dependency may take to answer a probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct Probes {
    pool: PgPool,
    redis: Connection,
    draining: Arc<AtomicBool>,
}

impl Probes {
    pub fn new(pool: PgPool, redis: Connection) -> Self {
        Self {
            pool,
            redis,
            draining: Arc::default(),
        }
    }

    /// From now on, not ready: the role is stopping.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Marks the role draining once `shutdown` is cancelled.
    pub fn drain_on(&self, shutdown: tokio_util::sync::CancellationToken) {
        let probes = self.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            probes.drain();
        });
    }

    /// Why the role is not ready, if it is not.
    pub async fn ready(&self) -> Result<(), String> {
        if self.draining.load(Ordering::Acquire) {
            return Err("draining: the role is shutting down".into());
        }
        let postgres = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&self.pool);
        match tokio::time::timeout(PROBE_TIMEOUT, postgres).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("Postgres does not answer: {e}")),
            Err(_) => return Err("Postgres does not answer within 1 s".into()),
        }
        let mut redis = self.redis.clone();
        match tokio::time::timeout(PROBE_TIMEOUT, admin::ping(&mut redis)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("Redis does not answer: {e}")),
            Err(_) => Err("Redis does not answer within 1 s".into()),
        }
    }

    /// `/readyz`'s answer: 200 `ready`, or 503 with the reason.
    pub async fn readiness(&self) -> (StatusCode, String) {
        match self.ready().await {
            Ok(()) => (StatusCode::OK, "ready".into()),
            Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
        }
    }
}
