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
use secrecy::SecretString;
use sqlx::PgPool;

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

    /// Deletes every Redis key of the world.
    pub async fn clear_keys(&self) -> anyhow::Result<()> {
        let mut redis = conn::connect(&self.settings.redis, Some(conn::COMMAND_TIMEOUT)).await?;
        admin::delete_prefixed(&mut redis, &self.settings.redis.key_prefix).await?;
        Ok(())
    }
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
