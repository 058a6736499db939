//! What the demo, the benchmarks and the tests set up alike: an isolated world (a Redis key
//! prefix of its own and a migrated database), recipients, sender numbers, waiting for a
//! condition with a deadline, and the simulator's control API, typed.

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use herald_ingest::views::CampaignView;
use herald_shared::crypto::TokenCipher;
use herald_shared::db::{self, numbers};
use herald_shared::domain::{CampaignId, NumberId, TenantId};
use herald_shared::settings::Settings;
use herald_shared::stream::{Keys, admin, conn, registry};
use herald_simulator::StatsReport;
use secrecy::{ExposeSecret, SecretString};
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection, PgPool};

use crate::client::ApiClient;

/// Settings whose Redis keys no other run shares, and a pool to their migrated database.
pub struct World {
    pub settings: Settings,
    pub pool: PgPool,
}

impl World {
    /// Gives `settings` a key prefix of its own (`<prefix>:<label>-<random>`) and makes and
    /// migrates its database if need be.
    pub async fn isolate(mut settings: Settings, label: &str) -> anyhow::Result<Self> {
        settings.redis.key_prefix = format!(
            "{}:{label}-{}",
            settings.redis.key_prefix,
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        db::ensure_database(&settings.database).await?;
        let pool = db::pool(&settings.database)?;
        db::migrate(&pool).await.context("migrating the database")?;
        Ok(Self { settings, pool })
    }

    /// Like `isolate`, in a database of its own (the configured one's name, then
    /// `_<label>_<random>`) that `drop` removes: a benchmark run starts from empty tables, not
    /// from the campaigns earlier runs left (they made later runs slower, run by run).
    pub async fn isolate_database(mut settings: Settings, label: &str) -> anyhow::Result<Self> {
        let url = settings.database.url.expose_secret().to_owned();
        let configured = database_of(&url).unwrap_or("herald");
        let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let own = with_database(&url, &format!("{configured}_{label}_{id}"));
        settings.database.url = SecretString::from(own);
        Self::isolate(settings, label).await
    }

    /// Drops the world's database (made by `isolate_database`) and deletes its Redis keys.
    /// Postgres ends the database's last sessions itself (`WITH (FORCE)`): sqlx's
    /// `force_drop_database` ends them one by one from a list, and a session of the closed
    /// pool that left in between made Postgres warn that its PID was no backend.
    pub async fn drop(self) -> anyhow::Result<()> {
        self.pool.close().await;
        let url = self.settings.database.url.expose_secret();
        let database = database_of(url).context("the run's database has no name")?;
        drop_database(&with_database(url, "postgres"), database)
            .await
            .context("dropping the run's database")?;
        self.clear_keys().await
    }

    /// Deletes every Redis key of the world.
    pub async fn clear_keys(&self) -> anyhow::Result<()> {
        let mut redis = conn::connect(&self.settings.redis, Some(conn::COMMAND_TIMEOUT)).await?;
        admin::delete_prefixed(&mut redis, &self.settings.redis.key_prefix).await?;
        Ok(())
    }
}

/// `url` with its database name replaced.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{database}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// The database `url` names, if it names one.
/// Drops `database` through a connection to `admin_url` (another database of the same
/// server), ending whatever sessions are still in it.
pub async fn drop_database(admin_url: &str, database: &str) -> sqlx::Result<()> {
    let mut admin = PgConnection::connect(admin_url).await?;
    admin
        .execute(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
        )))
        .await?;
    admin.close().await
}

fn database_of(url: &str) -> Option<&str> {
    let base = url.split_once('?').map_or(url, |(b, _)| b);
    let path = &base[base.find("://").map_or(0, |i| i + 3)..];
    path.split_once('/')
        .map(|(_, db)| db)
        .filter(|db| !db.is_empty())
}

/// `n` distinct valid recipients (UK mobiles, `+447400000000` on), each with the template's
/// two variables.
pub fn recipients(n: usize) -> Vec<(String, Vec<String>)> {
    (0..n)
        .map(|i| {
            (
                format!("+4474{i:08}"),
                vec![format!("Customer {i}"), "25%".into()],
            )
        })
        .collect()
}

/// `recipients(n)` as a CSV whose header names the template's parameters.
pub fn recipients_csv(n: usize) -> String {
    let mut csv = String::from("phone,body.1,body.2\n");
    for (phone, values) in recipients(n) {
        csv.push_str(&format!("{phone},{},{}\n", values[0], values[1]));
    }
    csv
}

/// Uploads `n` recipients (see `recipients`) to a draft campaign, in chunks the API takes.
pub async fn upload_recipients(
    api: &ApiClient,
    campaign: CampaignId,
    n: usize,
) -> anyhow::Result<()> {
    for chunk in recipients(n).chunks(10_000) {
        let report = api.upload(campaign, chunk).await?;
        anyhow::ensure!(
            report.rejected.is_empty(),
            "generated recipients were refused: {:?}",
            report.rejected.first()
        );
    }
    Ok(())
}

/// The template every fixture campaign sends, and its language (the simulator knows it).
pub const TEMPLATE: &str = "spring_sale_2026";
pub const LANGUAGE: &str = "en_GB";

/// A draft campaign of `TEMPLATE` over `numbers` with `n` recipients (see `recipients`).
pub async fn campaign(
    api: &ApiClient,
    name: &str,
    numbers: &[NumberId],
    n: usize,
) -> anyhow::Result<CampaignView> {
    let campaign = api
        .create_campaign(name, TEMPLATE, LANGUAGE, numbers)
        .await?;
    upload_recipients(api, campaign.id, n).await?;
    Ok(campaign)
}

/// Sender numbers straight into the database (and listed for the senders), at any rate: the
/// API caps a number at Meta's 1,000 msg/s.
pub async fn register_numbers(
    world: &World,
    tenant: TenantId,
    count: usize,
    rate: u32,
) -> anyhow::Result<Vec<NumberId>> {
    let settings = &world.settings;
    let cipher = TokenCipher::from_base64(&settings.security.token_encryption_key)?;
    let mut redis = conn::connect(&settings.redis, Some(conn::COMMAND_TIMEOUT)).await?;
    let keys = Keys::new(settings.redis.key_prefix.clone());
    let run: u32 = rand::random::<u32>() % 1_000_000;
    let mut ids = Vec::with_capacity(count);
    for i in 0..count {
        let id = NumberId::new();
        let token = cipher.encrypt(&SecretString::from("fixture-token"), id.0.as_bytes());
        let phone_number_id = format!("2{run:06}{i:04}");
        numbers::insert_number(
            &world.pool,
            &numbers::NewNumber {
                tested: None,
                id,
                tenant,
                phone_number_id: &phone_number_id,
                waba_id: "fixtures",
                display_number: &phone_number_id,
                access_token: &token,
                throughput_ceiling: rate as i32,
                current_rate: rate as i32,
                portfolio_id: None,
            },
        )
        .await?;
        registry::add_number(&mut redis, &keys, id).await?;
        ids.push(id);
    }
    Ok(ids)
}

/// Checks `condition` every `poll` until it returns `Some`; an error after `timeout`.
pub async fn wait_until<T, F, Fut>(
    what: &str,
    timeout: Duration,
    poll: Duration,
    mut condition: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = condition().await? {
            return Ok(value);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(poll).await;
    }
}

/// The simulator's control API (`/sim`).
#[derive(Clone)]
pub struct Simulator {
    url: String,
    http: reqwest::Client,
}

impl Simulator {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            http: reqwest::Client::new(),
        }
    }

    /// Applies a JSON merge patch to its configuration (`SimConfig`'s shape).
    pub async fn configure(&self, patch: &serde_json::Value) -> anyhow::Result<()> {
        self.http
            .post(format!("{}/sim/config", self.url))
            .json(patch)
            .send()
            .await?
            .error_for_status()
            .context("configuring the simulator")?;
        Ok(())
    }

    /// Forgets its counters.
    pub async fn reset_stats(&self) -> anyhow::Result<()> {
        self.http
            .delete(format!("{}/sim/stats", self.url))
            .send()
            .await?
            .error_for_status()
            .context("resetting the simulator's counters")?;
        Ok(())
    }

    pub async fn stats(&self) -> anyhow::Result<StatsReport> {
        self.stats_as().await
    }

    /// Its configuration in force, as JSON.
    pub async fn config(&self) -> anyhow::Result<serde_json::Value> {
        let config = self
            .http
            .get(format!("{}/sim/config", self.url))
            .send()
            .await?
            .error_for_status()
            .context("reading the simulator's configuration")?
            .json()
            .await?;
        Ok(config)
    }

    /// The send bodies it accepted and kept (`capture` in its configuration), oldest first.
    pub async fn sent(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        let answer: serde_json::Value = self
            .http
            .get(format!("{}/sim/sent", self.url))
            .send()
            .await?
            .error_for_status()
            .context("reading the sends the simulator kept")?
            .json()
            .await?;
        Ok(answer["sent"].as_array().cloned().unwrap_or_default())
    }

    /// Its counters as any shape (the benchmarks keep them as JSON).
    pub async fn stats_as<T: serde::de::DeserializeOwned>(&self) -> anyhow::Result<T> {
        let stats = self
            .http
            .get(format!("{}/sim/stats", self.url))
            .send()
            .await?
            .error_for_status()
            .context("reading the simulator's counters")?
            .json()
            .await?;
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::{database_of, with_database};

    #[test]
    fn the_database_name_is_replaced_and_the_rest_kept() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/herald?sslmode=disable", "x"),
            "postgres://u:p@h:5432/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    }

    #[test]
    fn the_database_name_is_read_from_a_url() {
        let url = "postgres://u:p@h:5432/herald_bench?sslmode=disable";
        assert_eq!(database_of(url), Some("herald_bench"));
        assert_eq!(database_of("postgres://h/"), None);
        assert_eq!(database_of("postgres://h"), None);
    }
}
