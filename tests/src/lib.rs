//! Test support: an isolated database and Redis key prefix per test, the whole stack
//! in-process, and waiting for a condition with a deadline.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use herald::client::ApiClient;
use herald::fixtures;
use herald::stack::{Roles, Stack};
use herald_shared::settings::{RedisSettings, Settings};
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;

/// One test's private world: its own database (migrated) and Redis key prefix.
pub struct TestContext {
    pub settings: Settings,
    pub pool: PgPool,
    database: String,
    server_url: String,
}

impl TestContext {
    pub async fn new() -> Self {
        Self::on_database_server(None).await
    }

    /// A context whose database is on the Postgres server at `server` (a private one), or on
    /// the configured one.
    pub async fn on_database_server(server: Option<&str>) -> Self {
        let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config");
        let mut settings = Settings::load_from(&config, "test").expect("test settings load");
        herald_shared::telemetry::init(&settings.telemetry);
        if let Some(server) = server {
            settings.database.url = SecretString::from(server.to_owned());
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        let database = format!("herald_test_{id}");
        let server_url = fixtures::with_database(settings.database.url.expose_secret(), "postgres");
        settings.database.url = SecretString::from(fixtures::with_database(
            settings.database.url.expose_secret(),
            &database,
        ));
        settings.database.max_connections = 8;
        // Its own database, made and migrated, and its own key prefix.
        let world = fixtures::World::isolate(settings, "test")
            .await
            .expect("Postgres is reachable (scripts/test.sh starts one)");
        Self {
            settings: world.settings,
            pool: world.pool,
            database,
            server_url,
        }
    }

    /// Starts every role (with the simulator) on free ports.
    pub async fn start_stack(&self) -> Stack {
        Stack::start(self.settings.clone(), Roles::ALL_WITH_SIMULATOR)
            .await
            .expect("the stack starts")
    }

    /// A new tenant and a client of the API at `ingest_url` with its key.
    pub async fn tenant(&self, ingest_url: &str) -> ApiClient {
        let (_, key) = herald::tenant::create(&self.pool, "test tenant")
            .await
            .expect("tenant created");
        ApiClient::new(ingest_url, key)
    }

    /// `<binary> <role>` (the `herald` binary a test crate built) with the `test` profile,
    /// this test's database, Redis and key prefix, quiet and killed when dropped; a test adds
    /// its own settings.
    pub fn herald_command(&self, binary: &str, role: &str) -> tokio::process::Command {
        let s = &self.settings;
        let mut command = tokio::process::Command::new(binary);
        command
            .arg(role)
            .env(
                "HERALD_CONFIG_DIR",
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config"),
            )
            .env("HERALD_ENV", "test")
            .env("HERALD__DATABASE__URL", s.database.url.expose_secret())
            .env("HERALD__REDIS__URL", s.redis.url.expose_secret())
            .env("HERALD__REDIS__KEY_PREFIX", &s.redis.key_prefix)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        command
    }

    pub async fn redis(&self) -> herald_shared::stream::Connection {
        herald_shared::stream::conn::connect(&self.settings.redis, Some(Duration::from_secs(5)))
            .await
            .expect("Redis is reachable (scripts/test.sh starts one)")
    }

    /// Drops the database and the test's Redis keys. A failed test skips this, leaving both
    /// for inspection.
    pub async fn cleanup(self) {
        self.pool.close().await;
        herald::fixtures::drop_database(&self.server_url, &self.database)
            .await
            .expect("drop the test database");
        let mut redis = self.redis().await;
        herald_shared::stream::admin::delete_prefixed(&mut redis, &self.settings.redis.key_prefix)
            .await
            .expect("delete the test's keys");
    }
}

/// Checks `condition` until it returns `Some`, failing the test after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut condition: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let poll = Duration::from_millis(20);
    let checked = || {
        let check = condition();
        async move { Ok(check.await) }
    };
    match fixtures::wait_until(what, timeout, poll, checked).await {
        Ok(value) => value,
        Err(e) => panic!("{e}"),
    }
}

/// Waits until a session running a statement like `query` (a `LIKE` pattern) waits for a lock.
pub async fn waiting_for_a_lock(pool: &PgPool, query: &str) {
    eventually(
        &format!("a statement like {query} waits for a lock"),
        Duration::from_secs(10),
        || async {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE wait_event_type = 'Lock' AND query LIKE $1",
            )
            .bind(query)
            .fetch_one(pool)
            .await
            .unwrap();
            (waiting > 0).then_some(())
        },
    )
    .await;
}

/// Asserts that the campaign's counters equal a `GROUP BY status` over its messages, and each
/// lane's counts a `GROUP BY` over its number's messages, all read in one snapshot: a receipt
/// applied between two reads would move a message after its counters were read.
pub async fn assert_counters_match(pool: &PgPool, campaign: herald_shared::domain::CampaignId) {
    use herald_shared::domain::MessageStatus;
    let mut tx = pool.begin().await.expect("a transaction");
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await
        .expect("one snapshot");
    let row: herald_shared::db::campaigns::CampaignRow =
        sqlx::query_as("SELECT * FROM campaigns WHERE id = $1")
            .bind(campaign)
            .fetch_one(&mut *tx)
            .await
            .expect("campaign");
    let counts = herald_shared::db::campaigns::count_by_status(&mut *tx, campaign)
        .await
        .expect("counts");
    // Each lane's kept counts (total, waiting, sent, failed) against its messages.
    type LaneCounts = Vec<(uuid::Uuid, i64, i64, i64, i64)>;
    let kept: LaneCounts = sqlx::query_as(
        "SELECT sender_number_id, total, waiting, sent, failed FROM lane_counts
         WHERE campaign_id = $1 AND total > 0 ORDER BY 1",
    )
    .bind(campaign)
    .fetch_all(&mut *tx)
    .await
    .expect("lane counts");
    let counted: LaneCounts = sqlx::query_as(
        "SELECT sender_number_id, count(*),
                count(*) FILTER (WHERE status IN ('pending', 'queued')),
                count(*) FILTER (WHERE status IN ('sent', 'delivered', 'read')),
                count(*) FILTER (WHERE status = 'failed')
         FROM messages WHERE campaign_id = $1 GROUP BY 1 ORDER BY 1",
    )
    .bind(campaign)
    .fetch_all(&mut *tx)
    .await
    .expect("lane GROUP BY");
    drop(tx);
    assert_eq!(
        kept, counted,
        "each lane's counts (number, total, waiting, sent, failed) against its messages"
    );
    for status in MessageStatus::ALL {
        let counted = counts
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n);
        assert_eq!(row.counters.of(status), counted, "counter for {status}");
    }
    assert_eq!(
        row.counters.total,
        counts.iter().map(|(_, n)| n).sum::<i64>(),
        "total"
    );
}

/// How many messages the simulator meant to end at each status.
fn intended_final(
    stats: &herald_simulator::StatsReport,
) -> std::collections::HashMap<herald_shared::domain::MessageStatus, i64> {
    use herald_shared::domain::MessageStatus;
    stats
        .intended_final
        .iter()
        .map(|(status, n)| {
            let status = match status.as_str() {
                "sent" => MessageStatus::Sent,
                "delivered" => MessageStatus::Delivered,
                "read" => MessageStatus::Read,
                "failed" => MessageStatus::Failed,
                other => panic!("unexpected intended status {other}"),
            };
            (status, *n as i64)
        })
        .collect()
}

/// The simulator's counters and the campaign's statuses once every one of its `messages` is
/// at the status the simulator meant for it; `None` before.
pub async fn at_intended_statuses(
    pool: &PgPool,
    simulator_url: &str,
    campaign: herald_shared::domain::CampaignId,
    messages: usize,
) -> Option<(
    herald_simulator::StatsReport,
    std::collections::HashMap<herald_shared::domain::MessageStatus, i64>,
)> {
    let stats = simulator_stats(simulator_url).await;
    let statuses: std::collections::HashMap<_, _> =
        herald_shared::db::campaigns::count_by_status(pool, campaign)
            .await
            .unwrap()
            .into_iter()
            .collect();
    let meant = intended_final(&stats);
    (meant.values().sum::<i64>() == messages as i64 && statuses == meant)
        .then_some((stats, statuses))
}

/// What the simulator at `url` has seen.
pub async fn simulator_stats(url: &str) -> herald_simulator::StatsReport {
    fixtures::Simulator::new(url)
        .stats()
        .await
        .expect("the simulator answers")
}

/// Applies a JSON merge patch to the configuration of the stack's simulator.
pub async fn configure_simulator(stack: &Stack, patch: serde_json::Value) {
    fixtures::Simulator::new(stack.simulator_url.clone())
        .configure(&patch)
        .await
        .expect("the simulator takes the configuration");
}

/// Signs `body` as Meta would with the test app secret.
pub fn signed(settings: &Settings, body: &[u8]) -> String {
    herald_shared::signature::sign(&settings.webhook.app_secrets[0], body)
}

pub use herald::fixtures::recipients;

/// A tenant, one sender number and a draft campaign of `n` recipients, made directly in the
/// database (for tests of one role).
pub async fn seed_campaign(
    ctx: &TestContext,
    n: usize,
) -> (
    herald_shared::domain::CampaignId,
    Vec<herald_shared::domain::MessageId>,
) {
    let (campaign, _) = seed_campaign_over(ctx, 1, n).await;
    let ids = sqlx::query_scalar("SELECT id FROM messages WHERE campaign_id = $1 ORDER BY id")
        .bind(campaign)
        .fetch_all(&ctx.pool)
        .await
        .unwrap();
    (campaign, ids)
}

/// A tenant, `numbers` sender numbers and a draft campaign over them of `n` recipients, given
/// to the numbers in turn, made directly in the database.
pub async fn seed_campaign_over(
    ctx: &TestContext,
    numbers: usize,
    n: usize,
) -> (
    herald_shared::domain::CampaignId,
    Vec<herald_shared::domain::NumberId>,
) {
    use herald_shared::db::{campaigns, messages, numbers as db_numbers};
    use herald_shared::domain::{CampaignId, NumberId};
    let (tenant, _) = herald::tenant::create(&ctx.pool, "seeded").await.unwrap();
    let numbers: Vec<NumberId> = (0..numbers.max(1)).map(|_| NumberId::new()).collect();
    for &number in &numbers {
        // The random end of the id: its start is the time, shared by numbers made in one moment.
        let phone_number_id = format!("9{}", &number.0.simple().to_string()[22..]);
        assert!(
            db_numbers::insert_number(
                &ctx.pool,
                &db_numbers::NewNumber {
                    tested: None,
                    id: number,
                    tenant,
                    phone_number_id: &phone_number_id,
                    waba_id: "waba",
                    display_number: "+447400000000",
                    access_token: b"not used",
                    throughput_ceiling: 80,
                    current_rate: 80,
                    portfolio_id: None,
                },
            )
            .await
            .unwrap()
        );
    }
    let campaign = CampaignId::new();
    let mut tx = ctx.pool.begin().await.unwrap();
    campaigns::insert_campaign(
        &mut tx,
        &campaigns::NewCampaign {
            id: campaign,
            tenant,
            name: "seeded",
            templates: &[campaigns::CampaignTemplate::only("t", "en", 2)],
            numbers: &numbers,
            scheduled_at: None,
            overdue: "start",
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let rows: Vec<messages::NewMessage> = recipients(n)
        .into_iter()
        .enumerate()
        .map(|(i, (phone, vars))| messages::NewMessage {
            template: 0,
            number: numbers[i % numbers.len()],
            recipient: phone,
            variables: serde_json::json!(vars),
        })
        .collect();
    messages::insert_recipients(&ctx.pool, campaign, &rows)
        .await
        .unwrap();
    (campaign, numbers)
}

/// Applies one transition to one message, as Herald's own code would.
pub async fn set_status(
    pool: &PgPool,
    message: herald_shared::domain::MessageId,
    status: herald_shared::domain::MessageStatus,
    wa_message_id: Option<&str>,
) {
    use herald_shared::db::transitions::{self, Transition};
    let transition = Transition {
        wa_message_id: wa_message_id.map(str::to_owned),
        ..Transition::to(message, status, chrono::Utc::now())
    };
    transitions::apply(pool, &[transition]).await.unwrap();
}

/// The business `phone_number_id` of the number a message goes from (what its receipts name).
pub async fn phone_number_of(pool: &PgPool, message: herald_shared::domain::MessageId) -> String {
    sqlx::query_scalar(
        "SELECT n.phone_number_id FROM messages m
         JOIN sender_numbers n ON n.id = m.sender_number_id WHERE m.id = $1",
    )
    .bind(message)
    .fetch_one(pool)
    .await
    .expect("the message and its number exist")
}

/// The message of `campaign` to `recipient`, as `GET /v1/campaigns/{id}/messages` lists it
/// (the first page: for campaigns of a few recipients).
pub async fn message_to(
    api: &herald::client::ApiClient,
    campaign: impl std::fmt::Display,
    recipient: &str,
) -> serde_json::Value {
    let page: serde_json::Value = api
        .get(&format!("/v1/campaigns/{campaign}/messages"))
        .await
        .expect("the campaign's messages");
    page["items"]
        .as_array()
        .and_then(|items| items.iter().find(|m| m["recipient"] == recipient))
        .unwrap_or_else(|| panic!("no message to {recipient} in {page}"))
        .clone()
}

/// Records `message`'s lane appended up to it, as fan-out does once a page is in its stream:
/// the lane's messages up to it still `pending` are `queued` from then on. Returns how many.
pub async fn queue_through(pool: &PgPool, message: herald_shared::domain::MessageId) -> i64 {
    let (campaign, number): (
        herald_shared::domain::CampaignId,
        herald_shared::domain::NumberId,
    ) = sqlx::query_as("SELECT campaign_id, sender_number_id FROM messages WHERE id = $1")
        .bind(message)
        .fetch_one(pool)
        .await
        .expect("the message exists");
    herald_shared::db::messages::record_page(pool, campaign, number, message.0, message.0)
        .await
        .unwrap()
}

/// The status of one message.
pub async fn status_of(
    pool: &PgPool,
    message: herald_shared::domain::MessageId,
) -> herald_shared::domain::MessageStatus {
    let statuses = herald_shared::db::messages::statuses(pool, &[message])
        .await
        .unwrap();
    statuses.first().expect("the message exists").1
}

/// A Redis of the test's own, on a free port in a temp dir, that the test may stop and start
/// again (never the machine's): plain, TLS-only, or a node of a private cluster.
pub struct PrivateRedis {
    pub port: u16,
    dir: PathBuf,
    child: Option<std::process::Child>,
    /// Extra `redis-server` arguments (TLS, cluster).
    args: Vec<String>,
    /// The certificate authority of a TLS-only server.
    ca_file: Option<PathBuf>,
    /// Whether it keeps its data in an append-only file across restarts.
    aof: bool,
}

impl PrivateRedis {
    pub async fn start() -> Self {
        let mut redis = Self::new(free_port());
        redis.restart().await;
        redis
    }

    /// A server with `appendonly yes` (fsync every second, Redis's default): a restart keeps
    /// its data.
    pub async fn start_with_aof() -> Self {
        let mut redis = Self::new(free_port());
        redis.aof = true;
        redis.restart().await;
        redis
    }

    /// A server that speaks only TLS, with a certificate for 127.0.0.1 signed by a CA of its
    /// own (made with `openssl`): `settings()` names the CA in `redis.ca_file`.
    pub async fn start_tls() -> Self {
        let mut redis = Self::new(free_port());
        let dir = redis.dir.clone();
        let openssl = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .expect("openssl runs");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509", "-days", "1", "-subj", "/CN=herald test CA"][..],
                &ec,
                &["-keyout", "ca.key", "-out", "ca.crt"],
            ]
            .concat(),
        );
        openssl(
            &[
                &["req", "-subj", "/CN=127.0.0.1"][..],
                &ec,
                &["-keyout", "server.key", "-out", "server.csr"],
            ]
            .concat(),
        );
        std::fs::write(
            dir.join("san.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .expect("san.ext");
        openssl(&[
            "x509",
            "-req",
            "-days",
            "1",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        ]);
        let path = |f: &str| dir.join(f).display().to_string();
        // `restart` gives it `--port 0`: no plain listener.
        redis.args = vec![
            "--tls-port".into(),
            redis.port.to_string(),
            "--tls-cert-file".into(),
            path("server.crt"),
            "--tls-key-file".into(),
            path("server.key"),
            "--tls-ca-cert-file".into(),
            path("ca.crt"),
            "--tls-auth-clients".into(),
            "no".into(),
        ];
        redis.ca_file = Some(dir.join("ca.crt"));
        redis.restart().await;
        redis
    }

    fn new(port: u16) -> Self {
        let dir = std::env::temp_dir().join(format!("herald-redis-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        Self {
            port,
            dir,
            child: None,
            args: Vec::new(),
            ca_file: None,
            aof: false,
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.ca_file.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Points `settings` at this server.
    pub fn configure(&self, settings: &mut RedisSettings) {
        settings.url = SecretString::from(self.url());
        settings.cluster = false;
        settings.ca_file = self
            .ca_file
            .as_ref()
            .map(|f| f.display().to_string())
            .unwrap_or_default();
    }

    /// Kills it (SIGKILL) and waits until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops it as an orchestrator would (SIGTERM: it writes out its data and exits), and waits
    /// until it is gone.
    pub fn shut_down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Starts it (again) on the same port and waits until it answers.
    pub async fn restart(&mut self) {
        self.stop();
        let port = if self.ca_file.is_some() {
            "0".to_owned()
        } else {
            self.port.to_string()
        };
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port, "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                if self.aof { "yes" } else { "no" },
            ])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server starts (scripts/test.sh installs it)");
        self.child = Some(child);
        let mut settings = RedisSettings {
            url: SecretString::from(String::new()),
            key_prefix: "ping".into(),
            cluster: false,
            ca_file: String::new(),
        };
        self.configure(&mut settings);
        eventually("the private Redis answers", Duration::from_secs(10), || {
            let settings = settings.clone();
            async move {
                let mut conn = herald_shared::stream::conn::connect(&settings, None)
                    .await
                    .ok()?;
                herald_shared::stream::admin::ping(&mut conn).await.ok()
            }
        })
        .await;
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A PostgreSQL server of the test's own, on a free port in a temp dir, that the test may stop
/// and start again (never the machine's). Run as `nobody` when the test runs as root: `initdb`
/// refuses root.
pub struct PrivatePostgres {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
}

impl PrivatePostgres {
    pub async fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("initdb").exists())
            .max()
            .expect(
                "PostgreSQL's binaries under /usr/lib/postgresql (scripts/test.sh installs them)",
            );
        let dir = std::env::temp_dir().join(format!("herald-pg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let postgres = Self {
            port: free_port(),
            dir,
            bin,
        };
        if Self::as_root() {
            postgres.run(
                "chown",
                &["nobody:nogroup", &postgres.dir.display().to_string()],
            );
        }
        let data = postgres.dir.join("data").display().to_string();
        postgres.run_as_owner(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        postgres.restart().await;
        postgres
    }

    fn as_root() -> bool {
        std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
    }

    fn run(&self, program: &str, args: &[&str]) {
        let out = std::process::Command::new(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{program} runs: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs one of Postgres's programs as the owner of its files.
    fn run_as_owner(&self, program: &str, args: &[&str]) {
        let program = self.bin.join(program).display().to_string();
        if Self::as_root() {
            let home = format!("HOME={}", self.dir.display());
            let mut all = vec![
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                "env",
                &home,
                &program,
            ];
            all.extend_from_slice(args);
            self.run("setpriv", &all);
        } else {
            self.run(&program, args);
        }
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops it at once, as a crash would (`pg_ctl -m immediate`).
    pub fn stop(&self) {
        let data = self.dir.join("data").display().to_string();
        self.run_as_owner("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
    }

    /// Starts it (again) and waits until it answers.
    pub async fn restart(&self) {
        let data = self.dir.join("data").display().to_string();
        let log = self.dir.join("postgres.log").display().to_string();
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        self.run_as_owner(
            "pg_ctl",
            &["-D", &data, "-l", &log, "-w", "start", "-o", &options],
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.dir.join("data").display().to_string();
        let program = self.bin.join("pg_ctl").display().to_string();
        let mut stop = if Self::as_root() {
            let mut c = std::process::Command::new("setpriv");
            c.args([
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                &program,
            ]);
            c
        } else {
            std::process::Command::new(&program)
        };
        let _ = stop.args(["-D", &data, "-m", "immediate", "stop"]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A free port on loopback; with its cluster bus port (+10,000) free too.
fn free_port() -> u16 {
    use std::net::TcpListener;
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// A private three-master Redis Cluster, made with `redis-cli --cluster create`.
pub struct RedisCluster {
    pub nodes: Vec<PrivateRedis>,
}

impl RedisCluster {
    pub async fn start() -> Self {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let mut node = PrivateRedis::new(free_port());
            node.args = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ]
            .map(String::from)
            .to_vec();
            node.restart().await;
            nodes.push(node);
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = std::process::Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli runs");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        for node in &nodes {
            let url = node.url();
            eventually("the cluster is formed", Duration::from_secs(20), || {
                let url = url.clone();
                async move {
                    let client = redis::Client::open(url).ok()?;
                    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
                    let info: String = redis::cmd("CLUSTER")
                        .arg("INFO")
                        .query_async(&mut conn)
                        .await
                        .ok()?;
                    info.contains("cluster_state:ok").then_some(())
                }
            })
            .await;
        }
        Self { nodes }
    }

    /// Points `settings` at the cluster (every node's URL).
    pub fn configure(&self, settings: &mut RedisSettings) {
        let urls: Vec<String> = self.nodes.iter().map(PrivateRedis::url).collect();
        settings.url = SecretString::from(urls.join(","));
        settings.cluster = true;
        settings.ca_file = String::new();
    }

    /// How many keys each node holds.
    pub async fn keys_per_node(&self) -> Vec<usize> {
        let mut counts = Vec::new();
        for node in &self.nodes {
            let client = redis::Client::open(node.url()).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            counts.push(redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap());
        }
        counts
    }
}

/// The API's refusal behind an error of `ApiClient`.
pub fn refusal(e: anyhow::Error) -> herald::client::ApiRefusal {
    e.downcast::<herald::client::ApiRefusal>()
        .expect("an API refusal")
}

/// POSTs `body` to the stack's webhook, signed as Meta signs; it must be taken (200).
pub async fn post_webhook(ctx: &TestContext, stack: &Stack, body: &[u8]) {
    let status = reqwest::Client::new()
        .post(format!("{}/webhook", stack.webhook_url))
        .header("x-hub-signature-256", signed(&ctx.settings, body))
        .body(body.to_vec())
        .send()
        .await
        .expect("the webhook answers")
        .status();
    assert_eq!(status, 200);
}

/// A Cloud API stand-in (wiremock) that already lists the templates campaigns in tests use
/// (`spring_sale_2026` in `en_GB`, two body values) for any WABA; a test mounts its own answers
/// to sends.
pub async fn cloud_api() -> wiremock::MockServer {
    use wiremock::matchers::{method, path_regex};
    let server = wiremock::MockServer::start().await;
    wiremock::Mock::given(method("GET"))
        .and(path_regex(r"/message_templates$"))
        .respond_with(
            wiremock::ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "data": [{"name": "spring_sale_2026", "language": "en_GB", "status": "APPROVED",
                          "category": "MARKETING", "parameter_format": "POSITIONAL", "id": "1",
                          "components": [{"type": "BODY", "text": "Hi {{1}}, take {{2}} off"}]}],
                "paging": {"cursors": {"before": "a", "after": "a"}}
            })),
        )
        .mount(&server)
        .await;
    server
}

/// Accepts every send with a new wamid (`wamid.OK1`, `wamid.OK2`…), as Meta does.
pub fn accepted() -> Accepting {
    Accepting(std::sync::atomic::AtomicU64::new(0))
}

pub struct Accepting(std::sync::atomic::AtomicU64);

impl wiremock::Respond for Accepting {
    fn respond(&self, _: &wiremock::Request) -> wiremock::ResponseTemplate {
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        wiremock::ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "messaging_product": "whatsapp",
            "contacts": [{"input": "+447400000000", "wa_id": "447400000000"}],
            "messages": [{"id": format!("wamid.OK{n}"), "message_status": "accepted"}]}))
    }
}

/// The sends (POSTs) a Cloud API stand-in received, oldest first.
pub async fn sends(server: &wiremock::MockServer) -> Vec<wiremock::Request> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.method == wiremock::http::Method::POST)
        .collect()
}
