//! Fan-out: moves a running campaign's `pending` messages into their numbers' streams.
//!
//! Invariants: a message is appended to its stream at most once, and is `queued` only once it
//! is there. A page is read (its `pending` messages, nothing locked or written), appended
//! through `stream::fanout::append`, which remembers per (number, campaign) the highest message
//! id appended and skips anything at or below it, and then recorded with the other pages of
//! its pass over the lanes (`messages::record_page`):
//! the lane's `fanout_appended` rises to the page's last id, which makes its still-`pending`
//! messages `queued` (`message_status_now`) and moves them so in the counters, in one
//! statement. So a crash anywhere in a page is repaired by running fan-out again: the page is
//! still `pending`, what of it was appended is skipped by the script, and it is recorded then.
//! A message the sender sends before its page is recorded is recorded from `pending`: the
//! recorder reads the lane under a share lock, so the page's count sees that send or the
//! recorder sees the page.
//!
//! Each (campaign, number) has its own cursor, and a number holds at most `window` entries in
//! Redis (its stream and its retry set, where retries and sends held by the daily cap wait):
//! the rest of a campaign waits in Postgres, and a number that does not drain (paused, or
//! slower) holds back none of the others.
//!
//! Redis losing data is found by the stream's record of what was appended falling below
//! Postgres's (`repair`): nothing is appended to such a lane until it is repaired.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use herald_shared::db::campaigns::{self, FanoutRow, Lane};
use herald_shared::db::templates::{self, CampaignTemplate};
use herald_shared::db::{engagement, messages};
use herald_shared::domain::{CampaignId, NumberId};
use herald_shared::settings::IngestSettings;
use herald_shared::stream::fanout::Expect;
use herald_shared::stream::{Connection, Entry, Keys, fanout};
use herald_shared::suppress;
use herald_shared::template::{Filling, Message};
use herald_shared::whatsapp::message::{self, OUTSIDE_WINDOW, SERVICE_WINDOW_S};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

mod repair;

pub use repair::Repaired;

/// How often fan-out tops up a number's stream held at its window: a number at 1,000 msg/s
/// sends 100 entries meanwhile, far fewer than a window holds.
const HELD_POLL: Duration = Duration::from_millis(100);

pub struct FanOut {
    pool: PgPool,
    redis: Connection,
    keys: Keys,
    batch: i64,
    window: usize,
    poll: Duration,
    /// How long a lane that lost entries waits before they are appended again.
    repair_window: Duration,
    wake: Arc<Notify>,
}

impl FanOut {
    pub fn new(
        pool: PgPool,
        redis: Connection,
        keys: Keys,
        settings: &IngestSettings,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            pool,
            redis,
            keys,
            batch: settings.fanout_batch.max(1),
            window: settings.fanout_window.max(1),
            poll: Duration::from_millis(settings.fanout_poll_ms),
            repair_window: Duration::from_millis(settings.repair_window_ms),
            wake,
        }
    }

    /// Fans out every running campaign whenever woken, and every `poll` in case a campaign
    /// was started by another process or this one restarted mid-campaign; every `HELD_POLL`
    /// while a number's stream is full, to top it up as its sender drains it.
    pub async fn run(mut self, shutdown: CancellationToken) {
        // Streams are checked for lost entries every `poll`, not on each quick top-up pass.
        let mut next_check = tokio::time::Instant::now();
        loop {
            if tokio::time::Instant::now() >= next_check {
                next_check = tokio::time::Instant::now() + self.poll;
                if let Err(e) = self.repair(self.repair_window).await {
                    tracing::error!(error = %format!("{e:#}"), "checking streams for lost entries failed; will retry");
                }
            }
            let wait = match self.process_running().await {
                Ok(fanned) if fanned.held => HELD_POLL.min(self.poll),
                Ok(_) => self.poll,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "fan-out failed; will retry");
                    self.poll
                }
            };
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// Fans out all running campaigns with pending messages, as far as the numbers' windows
    /// allow.
    pub async fn process_running(&mut self) -> anyhow::Result<Fanned> {
        let mut fanned = Fanned::default();
        for campaign in campaigns::running_campaigns(&self.pool).await? {
            let span = tracing::info_span!("fanout", campaign = %campaign);
            let one = self.fan_out_campaign(campaign).instrument(span).await?;
            fanned.queued += one.queued;
            fanned.held |= one.held;
        }
        Ok(fanned)
    }

    /// Appends the campaign's pending messages, each number's in id order, in passes over the
    /// numbers of a page each (a page is a span of ids holding at most `width` of them), until
    /// each number is done or its stream has no room left for a page within `window` entries.
    /// A page is recorded `queued` once it is in the stream.
    async fn fan_out_campaign(&mut self, campaign: CampaignId) -> anyhow::Result<Fanned> {
        // The first pages are small, doubling up to `batch`, so that sending starts at once.
        const FIRST_PAGE: i64 = 128;
        // How many ids a page's span may hold per message it is after: an upload spreads a
        // campaign's messages over its numbers (each number's stored together, a batch at a
        // time), so a number has about one id in `lanes`; twice that leaves room for a number
        // given more than its share. The span bounds a page's cost whatever the plan.
        const SPREAD: i64 = 2;
        let mut fanned = Fanned::default();
        let Some(last) = campaigns::last_message_id(&self.pool, campaign).await? else {
            return Ok(fanned);
        };
        let mut lanes = campaigns::fanout_lanes(&self.pool, campaign).await?;
        let mix = templates::campaign_templates(&self.pool, campaign).await?;
        let free_form = mix.iter().any(|t| t.message.is_some());
        let mut width = self.batch.min(FIRST_PAGE);
        lanes.retain(|lane| lane.cursor < last);
        let pass = Pass {
            campaign,
            mix: &mix,
            free_form,
            last,
            ids_per_message: SPREAD * lanes.len().max(1) as i64,
        };
        while !lanes.is_empty() {
            let rooms = self.rooms(&lanes).await?;
            // The lanes' pages are read and appended a few at once: each is a few round trips
            // to Postgres and Redis, and a pass over 40 lanes one after the other let the
            // first lanes' streams run dry before the last lanes' had their first page.
            let steps: Vec<Step> = futures::stream::iter(lanes.into_iter().zip(rooms))
                .map(|(lane, room)| self.step(&pass, lane, room, width))
                .buffered(AT_ONCE)
                .try_collect()
                .await?;
            let mut going = Vec::with_capacity(steps.len());
            let mut appended = Vec::with_capacity(steps.len());
            for step in steps {
                match step {
                    Step::Held => fanned.held = true,
                    Step::Done => {}
                    Step::Lost(lane) => {
                        self.found_lost(campaign, lane.number, lane.appended)
                            .await?;
                    }
                    Step::Moved { lane, page } => {
                        if let Some((through, highest, count)) = page {
                            appended.push((lane.number, through, highest));
                            fanned.queued += count;
                        }
                        if lane.cursor < last {
                            going.push(lane);
                        }
                    }
                }
            }
            self.record_pages(campaign, appended).await?;
            lanes = going;
            width = self.batch.min(width.saturating_mul(2));
        }
        if fanned.queued > 0 {
            tracing::info!(queued = fanned.queued, held = fanned.held, "fanned out");
        }
        Ok(fanned)
    }

    /// One lane's part of a pass: its next page, read and appended to its stream when it has
    /// `room` for a page of up to `width`.
    async fn step(
        &self,
        pass: &Pass<'_>,
        mut lane: Lane,
        room: usize,
        width: i64,
    ) -> anyhow::Result<Step> {
        if room < self.batch.min(self.window as i64 / 2).max(1) as usize {
            // Full, or nearly: topped up later by a page worth its statements.
            return Ok(Step::Held);
        }
        let campaign = pass.campaign;
        let next =
            campaigns::next_message_id(&self.pool, campaign, lane.number, lane.cursor).await?;
        let Some(next) = next.filter(|next| *next <= pass.last) else {
            return Ok(Step::Done);
        };
        // A page is a span of ids from the number's next message, holding no more of them
        // than its stream has room for; when it is full, it ends at its last.
        let limit = width.min(room as i64);
        let span_end = pass
            .last
            .min((next - 1).saturating_add(limit * pass.ids_per_message));
        let mut page =
            messages::read_page(&self.pool, campaign, lane.number, next - 1, span_end, limit)
                .await?;
        let through = match page.last() {
            Some(row) if page.len() as i64 == limit => row.id.0,
            _ => span_end,
        };
        if pass.free_form && !page.is_empty() {
            // Only users inside their window get a free-form message.
            self.skip_outside_window(campaign, lane.number, &mut page)
                .await?;
        }
        let mut recorded = None;
        if !page.is_empty() {
            let expect = Expect {
                appended: lane.appended,
                raise_to: 0,
            };
            if self
                .append(campaign, pass.mix, lane.number, expect, &page)
                .await?
                .is_none()
            {
                return Ok(Step::Lost(lane));
            }
            // Queued once recorded: a crash before leaves the page `pending`, to be read
            // again (what of it was appended, the stream's script skips).
            let highest = page.last().map_or(lane.appended, |m| m.id.0);
            recorded = Some((through, highest, page.len() as u64));
            lane.appended = lane.appended.max(highest);
        }
        lane.cursor = through;
        Ok(Step::Moved {
            lane,
            page: recorded,
        })
    }

    /// Records a pass's appended pages, `(number, through, highest)`, a few at once: recording
    /// waits for the lane's lock behind the recorder's transactions, and one lane's wait should
    /// not hold back the pages of the others (with 40 numbers, a pass spent most of its time
    /// in those waits while the streams appended last ran dry).
    async fn record_pages(
        &self,
        campaign: CampaignId,
        pages: Vec<(NumberId, i64, i64)>,
    ) -> anyhow::Result<()> {
        futures::stream::iter(pages)
            .map(|(number, through, highest)| {
                messages::record_page(&self.pool, campaign, number, through, highest)
            })
            .buffer_unordered(AT_ONCE)
            .try_collect::<Vec<_>>()
            .await?;
        Ok(())
    }

    /// Marks `skipped` the page's messages to users who have not written to `number` within
    /// the customer-service window, and keeps the others in `page`.
    async fn skip_outside_window(
        &self,
        campaign: CampaignId,
        number: NumberId,
        page: &mut Vec<FanoutRow>,
    ) -> anyhow::Result<()> {
        let keys: Vec<String> = page.iter().map(|r| suppress::key(&r.recipient)).collect();
        let since = Utc::now() - chrono::Duration::seconds(SERVICE_WINDOW_S);
        let inside: std::collections::HashSet<String> =
            engagement::wrote_since(&self.pool, number, &keys, since)
                .await?
                .into_iter()
                .collect();
        let mut outside = Vec::new();
        let mut kept = Vec::with_capacity(page.len());
        for (row, key) in page.drain(..).zip(keys) {
            if inside.contains(&key) {
                kept.push(row);
            } else {
                outside.push(row.id);
            }
        }
        *page = kept;
        if !outside.is_empty() {
            let skipped =
                messages::skip(&self.pool, campaign, number, &outside, OUTSIDE_WINDOW).await?;
            tracing::info!(campaign = %campaign, skipped, "messages skipped: outside the window");
        }
        Ok(())
    }

    /// How many more entries each lane's stream may take.
    async fn rooms(&mut self, lanes: &[Lane]) -> anyhow::Result<Vec<usize>> {
        let numbers: Vec<NumberId> = lanes.iter().map(|l| l.number).collect();
        let lengths = fanout::lengths(&mut self.redis, &self.keys, &numbers).await?;
        Ok(lengths
            .into_iter()
            .map(|length| self.window.saturating_sub(length))
            .collect())
    }

    /// Appends one number's page to its stream in one script call; `None` when the stream
    /// lost entries (see `stream::fanout::append`).
    async fn append(
        &self,
        campaign: CampaignId,
        mix: &[CampaignTemplate],
        number: NumberId,
        expect: Expect,
        rows: &[FanoutRow],
    ) -> anyhow::Result<Option<usize>> {
        let mut entries = Vec::with_capacity(rows.len());
        for row in rows {
            let callback = row.id.0.to_string();
            let template = mix
                .iter()
                .find(|t| t.position == row.template)
                .with_context(|| format!("campaign {campaign} has no template {}", row.template))?;
            let payload = match &template.message {
                // A free-form message, the recipient's values written into it.
                Some(content) => {
                    let rendered = message::render(content, &row.variables);
                    let body = message::body(&row.recipient, &template.name, rendered, &callback);
                    serde_json::to_vec(&body)?
                }
                None => {
                    let filling = Filling {
                        name: &template.name,
                        language: &template.language,
                        spec: &template.spec,
                        fixed: &template.fixed,
                    };
                    let body = Message::new(&row.recipient, filling, &row.variables, &callback);
                    serde_json::to_vec(&body)?
                }
            };
            entries.push(Entry {
                message: row.id,
                campaign,
                attempt: 0,
                recipient: row.recipient.clone(),
                payload: Bytes::from(payload),
            });
        }
        fanout::append(
            &mut self.redis.clone(),
            &self.keys,
            &self.keys.number(number),
            campaign,
            expect,
            &entries,
        )
        .await
        .with_context(|| format!("appending to the stream of number {number}"))
    }
}

/// How many lanes' pages are read, appended or recorded at once.
const AT_ONCE: usize = 4;

/// What a pass over a campaign's lanes shares.
struct Pass<'a> {
    campaign: CampaignId,
    mix: &'a [CampaignTemplate],
    free_form: bool,
    /// The campaign's last message id.
    last: i64,
    /// How many ids a page's span may hold per message it is after.
    ids_per_message: i64,
}

/// What became of a lane in a pass.
enum Step {
    /// Its stream is full: topped up later.
    Held,
    /// Nothing left to append.
    Done,
    /// Its stream lost entries: nothing is appended until it is repaired.
    Lost(Lane),
    /// Its cursor moved on, with the page it appended, `(through, highest, messages)`.
    Moved {
        lane: Lane,
        page: Option<(i64, i64, u64)>,
    },
}

/// What a fan-out pass did: messages queued, and whether a number's full stream held some
/// back.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Fanned {
    pub queued: u64,
    pub held: bool,
}
