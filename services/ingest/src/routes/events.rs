//! `GET /v1/campaigns/{id}/events`: a campaign live, as Server-Sent Events. A `progress` event
//! (the campaign as `GET /v1/campaigns/{id}` shows it, with its rate and ETA) at once and then
//! each second while it runs; a `state` event for each change of state as soon as it is seen
//! (four times a second). Each event's id is `<state change>.<progress>`: a client that comes
//! back with `Last-Event-ID` first gets the state changes it missed. The stream ends after the
//! campaign ends (completed, cancelled, failed), with a last `progress`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use herald_shared::db::campaigns;
use herald_shared::domain::{CampaignId, CampaignState, TenantId};

use super::campaigns::CampaignView;
use super::{ApiPath, CampaignPath, Tenant};
use crate::{ApiError, AppState};

/// How often state changes are looked for, and progress sent.
const POLL: Duration = Duration::from_millis(250);
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// The campaign live: `progress` events (the campaign, as `GET /v1/campaigns/{id}` shows it)
/// each second while it runs, `state` events (`{"id", "state", "reason", "at"}`) at once; ends after
/// the campaign ends. `Last-Event-ID` resumes.
#[utoipa::path(get, path = "/v1/campaigns/{id}/events", tag = "campaigns", operation_id = "campaign_events",
    params(
        CampaignPath,
        ("Last-Event-ID" = Option<String>, Header, description = "the id of the last event seen, to resume after it"),
    ),
    responses(
        (status = 200, description = "Server-Sent Events: `event: progress` (data: the campaign) and `event: state`", body = String, content_type = "text/event-stream"),
        (status = 404, description = "no such campaign"),
    ))]
pub async fn stream(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiPath(id): ApiPath<CampaignId>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    if campaigns::get_campaign(&state.pool, tenant, id)
        .await?
        .is_none()
    {
        return Err(ApiError::NotFound("campaign"));
    }
    let (last_change, progress_sent) = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_event_id)
        .unwrap_or((0, 0));
    let live = Live {
        state,
        tenant,
        campaign: id,
        last_change,
        progress_sent,
        next_progress: Instant::now(),
        queue: VecDeque::new(),
        ended: false,
    };
    let events = futures::stream::unfold(live, |mut live| async move {
        let event = live.next().await?;
        Some((Ok(event), live))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// `<state change>.<progress>`.
fn parse_event_id(id: &str) -> Option<(i64, u64)> {
    let (change, progress) = id.trim().split_once('.')?;
    Some((change.parse().ok()?, progress.parse().ok()?))
}

fn ended(state: CampaignState) -> bool {
    matches!(
        state,
        CampaignState::Completed | CampaignState::Cancelled | CampaignState::Failed
    )
}

struct Live {
    state: Arc<AppState>,
    tenant: TenantId,
    campaign: CampaignId,
    /// The last state change sent (its id in `campaign_state_changes`).
    last_change: i64,
    /// Progress events sent so far.
    progress_sent: u64,
    next_progress: Instant,
    queue: VecDeque<Event>,
    ended: bool,
}

impl Live {
    fn id(&self) -> String {
        format!("{}.{}", self.last_change, self.progress_sent)
    }

    /// The next event, or `None` once the campaign has ended (or ingest stops).
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Some(event);
            }
            if self.ended || self.state.closing.is_cancelled() {
                return None;
            }
            match self.look().await {
                Ok(()) if !self.queue.is_empty() => continue,
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(campaign = %self.campaign, error = %e, "live view cannot read the campaign")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = self.state.closing.cancelled() => return None,
            }
        }
    }

    /// Queues the state changes not sent yet, and progress when due (or when it ended).
    async fn look(&mut self) -> sqlx::Result<()> {
        let pool = &self.state.pool;
        let mut over = false;
        for change in campaigns::state_changes(pool, self.campaign, self.last_change).await? {
            self.last_change = change.id;
            over |= ended(change.state);
            let event = Event::default()
                .event("state")
                .id(self.id())
                .json_data(&change)
                .expect("a state change serializes");
            self.queue.push_back(event);
        }
        let now = Instant::now();
        if now < self.next_progress && !over {
            return Ok(());
        }
        let Some(row) = campaigns::get_campaign(pool, self.tenant, self.campaign).await? else {
            // Deleted with its tenant.
            self.ended = true;
            return Ok(());
        };
        self.ended = ended(row.state);
        let rate = self.state.progress.rate(self.campaign);
        let view = CampaignView::new(row, Vec::new(), rate);
        self.progress_sent += 1;
        self.next_progress = now + PROGRESS_EVERY;
        let event = Event::default()
            .event("progress")
            .id(self.id())
            .json_data(&view)
            .expect("a campaign serializes");
        self.queue.push_back(event);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn event_ids_carry_the_last_state_change_and_the_progress_count() {
        assert_eq!(super::parse_event_id("12.7"), Some((12, 7)));
        assert_eq!(super::parse_event_id("12"), None);
        assert_eq!(super::parse_event_id("x.y"), None);
    }
}
