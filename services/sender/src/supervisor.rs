//! Finds the numbers to send for and runs one worker per number.

use std::collections::HashMap;
use std::time::Duration;

use herald_shared::crypto::TokenCipher;
use herald_shared::db::numbers;
use herald_shared::domain::{NumberId, NumberState};
use herald_shared::settings::Settings;
use herald_shared::stream::Keys;
use herald_shared::whatsapp::CloudApiClient;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::recorder::Outcome;
use crate::worker::{NumberWorker, WorkerConfig};

pub struct Supervisor {
    settings: Settings,
    pool: PgPool,
    redis: ConnectionManager,
    keys: Keys,
    client: CloudApiClient,
    cipher: TokenCipher,
    outcomes: mpsc::Sender<Outcome>,
    consumer: String,
}

impl Supervisor {
    pub fn new(
        settings: Settings,
        pool: PgPool,
        redis: ConnectionManager,
        keys: Keys,
        client: CloudApiClient,
        outcomes: mpsc::Sender<Outcome>,
    ) -> anyhow::Result<Self> {
        let cipher = TokenCipher::from_base64(&settings.security.token_encryption_key)?;
        Ok(Self {
            settings,
            pool,
            redis,
            keys,
            client,
            cipher,
            outcomes,
            consumer: format!("sender-{}", uuid::Uuid::new_v4().simple()),
        })
    }

    /// Starts a worker for every number in the active set, checking again every
    /// `discovery_interval`, until `shutdown`; then waits for the workers to drain.
    pub async fn run(self, shutdown: CancellationToken) {
        let interval = Duration::from_millis(self.settings.sender.discovery_interval_ms);
        // The task running each number, so a worker that ends is started again.
        let mut running: HashMap<tokio::task::Id, NumberId> = HashMap::new();
        let mut workers = JoinSet::new();
        loop {
            match self.discover().await {
                Ok(ids) => {
                    for id in ids {
                        if running.values().any(|n| *n == id) {
                            continue;
                        }
                        match self.worker(id).await {
                            Ok(Some(worker)) => {
                                let task = workers.spawn(worker.run(shutdown.child_token()));
                                running.insert(task.id(), id);
                            }
                            Ok(None) => {}
                            Err(e) => {
                                tracing::error!(number = %id, error = %format!("{e:#}"), "cannot start the number")
                            }
                        }
                    }
                }
                Err(e) => tracing::error!(error = %format!("{e:#}"), "cannot list numbers"),
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                Some(done) = workers.join_next_with_id() => {
                    let task = match done {
                        Ok((task, ())) => task,
                        Err(e) => {
                            tracing::error!(error = %e, "a number worker panicked");
                            e.id()
                        }
                    };
                    // Its number is started again at the next discovery.
                    running.remove(&task);
                }
                _ = shutdown.cancelled() => break,
            }
        }
        while workers.join_next().await.is_some() {}
    }

    async fn discover(&self) -> anyhow::Result<Vec<NumberId>> {
        let mut redis = self.redis.clone();
        let members: Vec<String> = redis.smembers(self.keys.numbers()).await?;
        Ok(members.iter().filter_map(|m| m.parse().ok()).collect())
    }

    /// A worker for `id`, or `None` when the number is unknown here or may not send.
    async fn worker(&self, id: NumberId) -> anyhow::Result<Option<NumberWorker>> {
        let Some(row) = numbers::get_number(&self.pool, id).await? else {
            tracing::warn!(number = %id, "number in the active set is not in the database");
            return Ok(None);
        };
        if row.state != NumberState::Active {
            return Ok(None);
        }
        let token = self.cipher.decrypt(&row.access_token, id.0.as_bytes())?;
        let s = &self.settings.sender;
        let worker = NumberWorker::new(
            WorkerConfig {
                number: id,
                phone_number_id: row.phone_number_id,
                token,
                rate: u32::try_from(row.current_rate)
                    .unwrap_or(s.default_rate)
                    .max(1),
                in_flight: s.in_flight,
                read_count: s.read_count,
                block_ms: s.block_ms,
                retry_poll: Duration::from_millis(s.retry_poll_ms),
                consumer: self.consumer.clone(),
            },
            &self.settings.redis,
            self.redis.clone(),
            &self.keys,
            self.client.clone(),
            self.outcomes.clone(),
        )
        .await?;
        tracing::info!(number = %id, rate = row.current_rate, "sending for number");
        Ok(Some(worker))
    }
}
