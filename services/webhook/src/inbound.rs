//! What users and Meta tell Herald besides statuses: replies count as `replied` and
//! quick-reply taps as `clicked` on their campaign; a STOP keyword, or Meta's marketing
//! opt-out, suppresses the user for the number's tenant (and a `resume` lifts it); a template
//! Meta paused or disabled pauses the running campaigns that send it.

use anyhow::Context;
use herald_shared::db::engagement::{self, Engagement, Inbound};
use herald_shared::db::{campaigns, templates, transitions::Engine};
use herald_shared::domain::CampaignId;
use herald_shared::whatsapp::webhook::{Notification, PreferenceCategory, PreferenceValue};
use sqlx::PgConnection;

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
) -> anyhow::Result<Vec<TemplatePause>> {
    for (number, message) in notification.inbound() {
        let recipient = format!("+{}", message.from.trim_start_matches('+'));
        let (kind, said) = match (&message.button, &message.text) {
            (Some(button), _) => (Engagement::Clicked, [&button.text, &button.payload]),
            (None, Some(text)) => (Engagement::Replied, [&text.body, &text.body]),
            // Media, reactions, locations…: a reply all the same.
            (None, None) => (Engagement::Replied, [&String::new(), &String::new()]),
        };
        let inbound = Inbound {
            phone_number_id: number,
            recipient: recipient.clone(),
            wa_message_id: &message.id,
            context: message.context.as_ref().map(|c| c.id.as_str()),
            kind,
        };
        let campaign = engagement::record_inbound(&mut *tx, &inbound)
            .await
            .context("counting a reply")?;
        if let Some(campaign) = campaign {
            *kind.counter(engine.deltas().of(campaign)) += 1;
            counted.engagements += 1;
        }
        if said
            .iter()
            .any(|s| engagement::is_stop_keyword(s, stop_keywords))
            && engagement::set_opt_out(&mut *tx, number, &recipient, true)
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
        let recipient = format!("+{}", preference.wa_id.trim_start_matches('+'));
        if engagement::set_opt_out(&mut *tx, number, &recipient, stop)
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
