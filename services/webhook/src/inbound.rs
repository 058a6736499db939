//! What users and Meta tell Herald besides statuses: every inbound message is stored for the
//! tenant (and forwarded as `inbound.message`); replies count as `replied` and taps as
//! `clicked` on their campaign; a STOP keyword, or Meta's marketing
//! opt-out, suppresses the user for the number's tenant (and a `resume` lifts it); a template
//! Meta paused or disabled pauses the running campaigns that send it.

use anyhow::Context;
use herald_shared::db::engagement::{self, Engagement, Inbound};
use herald_shared::db::suppressions::{self, Change, Reason};
use herald_shared::db::{campaigns, templates, transitions::Engine};
use herald_shared::domain::CampaignId;
use herald_shared::stream::suppressions::Announced;
use herald_shared::suppress;
use herald_shared::whatsapp::webhook::{Notification, PreferenceCategory, PreferenceValue};
use sqlx::PgConnection;

/// Records a user's stop (or resume) at Meta's time `at` for the tenant of business number
/// `number`, keyed by the canonical form of their WhatsApp ID; `true` when it changed what
/// was stored (a change older than the stored one does not).
async fn opt(
    tx: &mut PgConnection,
    number: &str,
    wa_id: &str,
    stop: bool,
    at: chrono::DateTime<chrono::Utc>,
    changes: &mut Vec<Announced>,
) -> sqlx::Result<bool> {
    let key = suppress::key(wa_id);
    let change = Change {
        key: &key,
        active: stop,
        reason: Reason::OptOut,
        note: None,
        at,
        lift_any: false,
    };
    let Some(tenant) = suppressions::set_by_number(&mut *tx, number, &change).await? else {
        return Ok(false);
    };
    changes.push(Announced {
        tenant,
        key,
        active: stop,
    });
    Ok(true)
}

/// A webhook's Unix-seconds timestamp; now when it has none.
fn unix_seconds(text: &str) -> chrono::DateTime<chrono::Utc> {
    text.trim()
        .parse::<i64>()
        .ok()
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .unwrap_or_else(chrono::Utc::now)
}

/// Campaigns to pause because Meta stopped their template, with the reason.
pub struct TemplatePause {
    pub campaigns: Vec<CampaignId>,
    pub reason: String,
}

/// What `apply` did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    /// Replies and taps counted.
    pub engagements: usize,
    /// Opt-outs (or opt-ins) recorded.
    pub opt_outs: usize,
}

/// Records one notification's replies, taps and opt-outs in `tx`, and adds their counters to
/// `engine`. The campaigns of a stopped template are locked with the engine's others and
/// returned, to be paused once the engine has finished.
pub async fn apply(
    tx: &mut PgConnection,
    engine: &mut Engine,
    notification: &Notification,
    stop_keywords: &[String],
    counted: &mut Counted,
    changes: &mut Vec<Announced>,
) -> anyhow::Result<Vec<TemplatePause>> {
    for item in notification.inbound() {
        let (number, message) = (item.number, &item.message);
        let recipient = format!("+{}", message.from.trim_start_matches('+'));
        let kind = if message.payload().is_some() {
            Engagement::Clicked
        } else {
            Engagement::Replied
        };
        let at = unix_seconds(&message.timestamp);
        let inbound = Inbound {
            item: &item,
            recipient,
            sent_at: at,
            kind,
        };
        let counted_on = engagement::record_inbound(&mut *tx, &inbound)
            .await
            .context("recording an inbound message")?;
        if let Some(campaign) = counted_on {
            *kind.counter(engine.deltas().of(campaign)) += 1;
            counted.engagements += 1;
        }
        let said = [message.said(), message.payload()];
        if said
            .into_iter()
            .flatten()
            .any(|s| engagement::is_stop_keyword(s, stop_keywords))
            && opt(&mut *tx, number, &message.from, true, at, changes)
                .await
                .context("recording an opt-out")?
        {
            counted.opt_outs += 1;
            tracing::info!(number, "recipient opted out");
        }
    }
    for (number, preference) in notification.preferences() {
        if preference.category != PreferenceCategory::MarketingMessages {
            continue;
        }
        let stop = match preference.value {
            PreferenceValue::Stop => true,
            PreferenceValue::Resume => false,
            PreferenceValue::Other => continue,
        };
        let at = preference
            .timestamp
            .as_ref()
            .map(|t| unix_seconds(t.to_string().trim_matches('"')))
            .unwrap_or_else(chrono::Utc::now);
        if opt(&mut *tx, number, &preference.wa_id, stop, at, changes)
            .await
            .context("recording a marketing preference")?
        {
            counted.opt_outs += 1;
        }
    }
    let mut pauses = Vec::new();
    for (waba, update) in notification.template_updates() {
        let (Some(event), Some(name)) = (update.event, &update.message_template_name) else {
            continue;
        };
        let language = update.message_template_language.as_deref();
        if let Some(status) = event.status() {
            templates::set_status(&mut *tx, waba, name, language, &status)
                .await
                .context("recording a template's status")?;
        }
        if !event.stops_sending() {
            continue;
        }
        let running = campaigns::running_with_template(&mut *tx, waba, name, language)
            .await
            .context("finding campaigns of a stopped template")?;
        if running.is_empty() {
            continue;
        }
        for campaign in &running {
            engine.deltas().lock(*campaign);
        }
        let reason = format!(
            "template {name} {event} by Meta{}",
            update
                .reason
                .as_deref()
                .filter(|r| !r.is_empty() && *r != "NONE")
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        );
        pauses.push(TemplatePause {
            campaigns: running,
            reason,
        });
    }
    Ok(pauses)
}

/// Pauses the campaigns of stopped templates (locked by the engine's finish).
pub async fn pause(tx: &mut PgConnection, pauses: &[TemplatePause]) -> anyhow::Result<()> {
    for pause in pauses {
        let paused = campaigns::pause_running(&mut *tx, &pause.campaigns, &pause.reason)
            .await
            .context("pausing campaigns of a stopped template")?;
        if paused > 0 {
            tracing::warn!(paused, reason = %pause.reason, "campaigns paused: their template was stopped");
        }
    }
    Ok(())
}
