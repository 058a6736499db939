//! B1's yardstick: a lean prototype of Herald's own hot path (`../shared/benchmarks.md`: B1 is
//! read as a share of it, measured on the same machine in the same session), against the same
//! simulator and the same Redis and Postgres.
//!
//! The design and nothing else: the messages are rows and each number's stream holds their
//! rendered bodies before the clock starts (fan-out is not timed). Then, per number, one task
//! reads its stream (`XREADGROUP`, 256 at a time) and POSTs each entry with hyper's client, at
//! most 64 in flight; one flusher writes the answers (every 500, or 5 ms after the first) in
//! one `UPDATE … FROM UNNEST` and then acknowledges their entries. No leases, pacing, retries,
//! counters, suppressions or events: what Herald adds to this is what B1's share measures.

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use herald_shared::settings::Settings;
use herald_shared::stream::conn::{self, Connection};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use redis::AsyncCommands;
use redis::streams::{StreamReadOptions, StreamReadReply};
use sqlx::PgPool;
use tokio::sync::mpsc;

use super::measure::Meter;
use super::throughput::{Figures, Load};
use crate::fixtures::{Simulator, World};

const GROUP: &str = "prototype";
const READ: usize = 256;
const IN_FLIGHT: usize = 64;
const FLUSH_MAX: usize = 500;
const FLUSH_INTERVAL: Duration = Duration::from_millis(5);

type Http = Client<HttpConnector, Full<Bytes>>;

/// One answered send: the message, its wamid, and its entry (number, stream id).
struct Answer {
    message: i64,
    wamid: String,
    number: usize,
    entry: String,
}

/// Runs B1's load (`w`: its numbers and recipients) through the prototype.
pub async fn run(settings: Settings, simulator: &Simulator, w: &Load) -> anyhow::Result<Figures> {
    let world = World::isolate_database(settings, "prototype").await?;
    simulator.reset_stats().await?;
    simulator.configure(&w.simulator).await?;
    let mut redis = conn::connect(&world.settings.redis, Some(conn::COMMAND_TIMEOUT)).await?;
    let streams: Vec<String> = (0..w.numbers)
        .map(|n| format!("{}:prototype:{n}", world.settings.redis.key_prefix))
        .collect();
    fan_out(&world.pool, &mut redis, &streams, w.recipients).await?;

    // The lean simulator checks neither the number nor the token.
    let url = format!(
        "{}/{}/100000000001/messages",
        world.settings.whatsapp.base_url.trim_end_matches('/'),
        world.settings.whatsapp.api_version,
    );
    let mut tcp = HttpConnector::new();
    tcp.set_nodelay(true);
    let http: Http = Client::builder(TokioExecutor::new()).build(tcp);

    let meter = Meter::start()?;
    let (tx, rx) = mpsc::channel(FLUSH_MAX * 4);
    let mut senders = tokio::task::JoinSet::new();
    for (number, stream) in streams.iter().enumerate() {
        senders.spawn(send_number(
            redis.clone(),
            http.clone(),
            url.parse()?,
            stream.clone(),
            number,
            tx.clone(),
        ));
    }
    drop(tx);
    let recorded = record(&world.pool, &mut redis, &streams, rx).await?;
    while let Some(sent) = senders.join_next().await {
        sent??;
    }
    let spent = meter.stop()?;

    let sent: i64 =
        sqlx::query_scalar("SELECT count(*) FROM prototype_messages WHERE wamid IS NOT NULL")
            .fetch_one(&world.pool)
            .await?;
    anyhow::ensure!(
        recorded == w.recipients && sent == w.recipients as i64,
        "the prototype recorded {recorded} answers and {sent} sent rows of {}",
        w.recipients
    );
    let stats: serde_json::Value = simulator.stats_as().await?;
    world.drop().await?;
    Figures::of(w.recipients, spent, IN_FLIGHT * w.numbers, stats)
}

/// The untimed part: a row per message (`fillfactor` 50, as Herald's `messages`) and its
/// rendered body in its number's stream, round robin over the numbers.
async fn fan_out(
    pool: &PgPool,
    redis: &mut Connection,
    streams: &[String],
    recipients: usize,
) -> anyhow::Result<()> {
    sqlx::query(
        "CREATE TABLE prototype_messages (id bigint PRIMARY KEY, wamid text) \
         WITH (fillfactor = 50)",
    )
    .execute(pool)
    .await?;
    sqlx::query("INSERT INTO prototype_messages (id) SELECT generate_series(1, $1)")
        .bind(recipients as i64)
        .execute(pool)
        .await?;
    for stream in streams {
        let _: () = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(stream)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(redis)
            .await?;
    }
    let last = recipients as i64;
    for first in (1..=last).step_by(1000) {
        let mut pipe = redis::pipe();
        for id in first..=(first + 999).min(last) {
            let stream = &streams[id as usize % streams.len()];
            let body = format!(
                r#"{{"messaging_product":"whatsapp","recipient_type":"individual","to":"+4474{id:08}","type":"template","biz_opaque_callback_data":"{id}","template":{{"name":"spring_sale_2026","language":{{"code":"en_GB"}},"components":[{{"type":"body","parameters":[{{"type":"text","text":"Customer {id}"}}]}}]}}}}"#
            );
            pipe.xadd(stream, "*", &[("m", id.to_string()), ("b", body)])
                .ignore();
        }
        let _: () = pipe.query_async(redis).await?;
    }
    Ok(())
}

/// One number: reads its stream in order and sends each entry, at most `IN_FLIGHT` at once,
/// until the stream has nothing new.
async fn send_number(
    mut redis: Connection,
    http: Http,
    url: hyper::Uri,
    stream: String,
    number: usize,
    answers: mpsc::Sender<Answer>,
) -> anyhow::Result<()> {
    let auth = HeaderValue::from_static("Bearer prototype-token");
    let options = StreamReadOptions::default().group(GROUP, "c").count(READ);
    let mut unsent: VecDeque<(String, i64, Bytes)> = VecDeque::new();
    let mut sending = FuturesUnordered::new();
    let mut drained = false;
    loop {
        if unsent.is_empty() && !drained {
            let reply: StreamReadReply = redis.xread_options(&[&stream], &[">"], &options).await?;
            let entries: Vec<_> = reply.keys.into_iter().flat_map(|k| k.ids).collect();
            drained = entries.is_empty();
            for entry in entries {
                let message: i64 = entry.get("m").context("an entry without its message")?;
                let body: Vec<u8> = entry.get("b").context("an entry without its body")?;
                unsent.push_back((entry.id, message, Bytes::from(body)));
            }
        }
        while sending.len() < IN_FLIGHT
            && let Some((entry, message, body)) = unsent.pop_front()
        {
            let request = Request::post(url.clone())
                .header(AUTHORIZATION, auth.clone())
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(Full::new(body))?;
            let http = http.clone();
            sending.push(async move {
                let response = http.request(request).await?;
                anyhow::ensure!(response.status().is_success(), "HTTP {}", response.status());
                let body = response.into_body().collect().await?.to_bytes();
                let wamid = wamid_of(&body)?;
                anyhow::Ok(Answer {
                    message,
                    wamid,
                    number,
                    entry,
                })
            });
        }
        match sending.next().await {
            Some(answer) => answers.send(answer?).await?,
            None if drained => return Ok(()),
            None => {}
        }
    }
}

fn wamid_of(body: &[u8]) -> anyhow::Result<String> {
    #[derive(serde::Deserialize)]
    struct Sent<'a> {
        #[serde(borrow)]
        messages: Vec<Message<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Message<'a> {
        id: &'a str,
    }
    let sent: Sent = serde_json::from_slice(body)?;
    Ok(sent
        .messages
        .first()
        .context("an answer without a wamid")?
        .id
        .to_owned())
}

/// Writes the answers in batches (at most `FLUSH_MAX`, or what came within `FLUSH_INTERVAL` of
/// the first), each one `UPDATE` and then its entries' `XACK`s in one pipeline; returns how
/// many it recorded once every sender is done.
async fn record(
    pool: &PgPool,
    redis: &mut Connection,
    streams: &[String],
    mut answers: mpsc::Receiver<Answer>,
) -> anyhow::Result<usize> {
    let mut recorded = 0;
    let mut batch = Vec::with_capacity(FLUSH_MAX);
    while let Some(first) = answers.recv().await {
        batch.push(first);
        let deadline = tokio::time::Instant::now() + FLUSH_INTERVAL;
        while batch.len() < FLUSH_MAX {
            match tokio::time::timeout_at(deadline, answers.recv()).await {
                Ok(Some(answer)) => batch.push(answer),
                Ok(None) | Err(_) => break,
            }
        }
        let (ids, wamids): (Vec<i64>, Vec<&str>) =
            batch.iter().map(|a| (a.message, a.wamid.as_str())).unzip();
        sqlx::query(
            "UPDATE prototype_messages m SET wamid = u.wamid \
             FROM UNNEST($1::bigint[], $2::text[]) AS u(id, wamid) WHERE m.id = u.id",
        )
        .bind(&ids)
        .bind(&wamids)
        .execute(pool)
        .await?;
        let mut pipe = redis::pipe();
        for (number, stream) in streams.iter().enumerate() {
            let entries: Vec<&str> = batch
                .iter()
                .filter(|a| a.number == number)
                .map(|a| a.entry.as_str())
                .collect();
            if !entries.is_empty() {
                pipe.xack(stream, GROUP, &entries).ignore();
            }
        }
        let _: () = pipe.query_async(redis).await?;
        recorded += batch.len();
        batch.clear();
    }
    Ok(recorded)
}
