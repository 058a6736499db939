//! Postgres access: the pool, the embedded migrator and every SQL statement Herald runs,
//! one small function per statement.

pub mod campaigns;
pub mod counters;
pub mod engagement;
pub mod idempotency;
pub mod messages;
pub mod notifications;
pub mod numbers;
pub mod repairs;
pub mod suppressions;
pub mod templates;
pub mod tenants;
pub mod transitions;
pub mod uploads;
pub mod webhook_events;

use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::migrate::{MigrateDatabase, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};

use crate::settings::DatabaseSettings;

pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

impl DatabaseSettings {
    pub fn connect_options(&self) -> Result<PgConnectOptions, sqlx::Error> {
        self.url.expose_secret().parse()
    }
}

/// A pool to the configured database. Connections are made lazily, so this fails only on a
/// malformed URL; the first query reports an unreachable server.
pub fn pool(settings: &DatabaseSettings) -> Result<PgPool, sqlx::Error> {
    pool_with_timeout(settings, Duration::ZERO)
}

/// A pool whose statements Postgres cancels after `statement_timeout` (none when zero).
pub fn pool_with_timeout(
    settings: &DatabaseSettings,
    statement_timeout: Duration,
) -> Result<PgPool, sqlx::Error> {
    let mut options = settings.connect_options()?;
    if !statement_timeout.is_zero() {
        let ms = statement_timeout.as_millis().to_string();
        options = options.options([("statement_timeout", ms.as_str())]);
    }
    Ok(PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout())
        .connect_lazy_with(options))
}

/// Whether Postgres cancelled the statement (`statement_timeout`).
pub fn is_timeout(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|code| code == "57014")
}

/// Creates the configured database if it does not exist yet.
pub async fn ensure_database(settings: &DatabaseSettings) -> Result<(), sqlx::Error> {
    let url = settings.url.expose_secret();
    if !Postgres::database_exists(url).await? {
        Postgres::create_database(url).await?;
    }
    Ok(())
}

/// Deadlocks Postgres has detected in the current database since its statistics were reset
/// (as far as its backends have reported them).
pub async fn deadlocks(pool: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        .fetch_one(pool)
        .await
}

/// Applies every pending migration.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}
