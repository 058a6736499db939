//! What users send to a tenant's numbers: every inbound message stored for the tenant's inbox,
//! and counted on the campaign it answers as a reply or a tap (design §7). Each counts once,
//! however often Meta delivers it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::db::counters::Delta;
use crate::db::notifications;
use crate::domain::{CampaignId, NumberId, TenantId};
use crate::whatsapp::webhook::{InboundItem, InboundMedia};

/// An inbound message, as the webhook role records it.
#[derive(Debug, Clone)]
pub struct Inbound<'a> {
    pub item: &'a InboundItem<'a>,
    /// The user, E.164 (`+` and their `wa_id`).
    pub recipient: String,
    /// Meta's time for it.
    pub sent_at: DateTime<Utc>,
    /// What it counts as on the campaign it answers.
    pub kind: Engagement,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engagement {
    Replied,
    Clicked,
}

impl Engagement {
    fn as_str(self) -> &'static str {
        match self {
            Self::Replied => "replied",
            Self::Clicked => "clicked",
        }
    }

    /// The campaign counter it moves.
    pub fn counter(self, delta: &mut Delta) -> &mut i64 {
        match self {
            Self::Replied => &mut delta.replied,
            Self::Clicked => &mut delta.clicked,
        }
    }
}

/// A message a user sent to one of the tenant's numbers, as the API lists it and the
/// `inbound.message` event carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct InboundRecord {
    /// Its place in the tenant's inbox: later messages have larger ids.
    pub id: i64,
    /// Its wamid.
    pub wa_message_id: String,
    /// The tenant's number it was sent to.
    pub number_id: Uuid,
    pub phone_number_id: String,
    /// The user, E.164.
    #[sqlx(rename = "sender")]
    pub from: String,
    /// Their WhatsApp profile name.
    pub profile_name: Option<String>,
    /// Meta's message type: `text`, `button`, `interactive`, `image`, `document`, `reaction`…
    #[sqlx(rename = "kind")]
    #[serde(rename = "type")]
    pub kind: String,
    /// What the user said or chose: a text's body, a button's or list row's title, a
    /// caption, a reaction's emoji.
    pub text: Option<String>,
    /// A quick-reply button's payload, or a reply button's or list row's id.
    pub payload: Option<String>,
    /// The media it carries (its id is fetched through the Graph API).
    #[schema(value_type = Option<InboundMedia>)]
    pub media: Option<Json<InboundMedia>>,
    /// The wamid of the business message it answers (quoted, tapped or reacted to).
    pub context_wa_message_id: Option<String>,
    /// The campaign it answers: that of the message named by its context, else of the last
    /// message sent to this user from this number.
    pub campaign_id: Option<CampaignId>,
    /// Meta's time for it.
    pub sent_at: DateTime<Utc>,
    /// When Herald recorded it.
    pub received_at: DateTime<Utc>,
    /// The message as Meta sent it, for the kinds Herald does not read (location, contacts…).
    #[schema(value_type = Object)]
    pub message: Json<serde_json::Value>,
}

#[derive(sqlx::FromRow)]
struct Stored {
    #[sqlx(flatten)]
    record: InboundRecord,
    tenant_id: TenantId,
    /// The campaign it was counted on.
    counted: Option<CampaignId>,
}

/// Stores an inbound message for the tenant of the number it was sent to and counts it on
/// the campaign it answers: the one of the message it names, else of the last message sent to
/// that user from that number. Returns the campaign whose counter the caller moves (through
/// the transition engine, with the transaction's other campaign changes); `None` when it
/// answers none, was recorded before or was sent to a number Herald does not know. Emits
/// `inbound.message` to the tenant's endpoints that subscribe.
pub async fn record_inbound(
    conn: &mut PgConnection,
    inbound: &Inbound<'_>,
) -> sqlx::Result<Option<CampaignId>> {
    let item = inbound.item;
    let message = &item.message;
    let row: Option<Stored> = sqlx::query_as(
        "WITH number AS (
            SELECT id, tenant_id, phone_number_id FROM sender_numbers
            WHERE phone_number_id = $1
         ), by_context AS (
            SELECT m.campaign_id FROM message_wamids w JOIN messages m ON m.id = w.message_id
            WHERE w.wa_message_id = $4 ORDER BY w.message_id LIMIT 1
         ), by_recipient AS (
            SELECT m.campaign_id FROM messages m, number n
            WHERE m.recipient = $2 AND m.sender_number_id = n.id AND m.sent_at IS NOT NULL
            ORDER BY m.sent_at DESC LIMIT 1
         ), campaign AS (
            SELECT campaign_id FROM by_context
            UNION ALL SELECT campaign_id FROM by_recipient
            LIMIT 1
         ), stored AS (
            INSERT INTO inbound_messages (tenant_id, number_id, phone_number_id, wa_message_id,
                sender, profile_name, kind, text, payload, media, context_wa_message_id,
                campaign_id, sent_at, message, sender_key)
            SELECT n.tenant_id, n.id, n.phone_number_id, $3, $2, $6, $7, $8, $9, $10, $4,
                   (SELECT campaign_id FROM campaign), $11, $12, $13
            FROM number n
            ON CONFLICT (wa_message_id) DO NOTHING
            RETURNING *
         ), engaged AS (
            INSERT INTO engagements (wa_message_id, campaign_id, kind, recipient)
            SELECT wa_message_id, campaign_id, $5, sender FROM stored
            WHERE campaign_id IS NOT NULL
            ON CONFLICT (wa_message_id) DO NOTHING
            RETURNING campaign_id
         )
         SELECT s.*, (SELECT campaign_id FROM engaged) AS counted FROM stored s",
    )
    .bind(item.number)
    .bind(&inbound.recipient)
    .bind(&message.id)
    .bind(message.answers())
    .bind(inbound.kind.as_str())
    .bind(item.profile_name)
    .bind(&message.kind)
    .bind(message.said())
    .bind(message.payload())
    .bind(message.media().map(Json))
    .bind(inbound.sent_at)
    .bind(Json(item.raw))
    .bind(crate::suppress::key(&inbound.recipient))
    .fetch_optional(&mut *conn)
    .await?;
    let Some(Stored {
        record,
        tenant_id,
        counted,
    }) = row
    else {
        return Ok(None);
    };
    notifications::emit(
        &mut *conn,
        tenant_id,
        "inbound.message",
        &record.from,
        &serde_json::to_value(&record).expect("a record serializes"),
    )
    .await?;
    Ok(counted)
}

/// Of the users `keys` (`suppress::key` forms), those who wrote to `number` since `since`:
/// the ones inside their customer-service window.
pub async fn wrote_since(
    db: impl PgExecutor<'_>,
    number: NumberId,
    keys: &[String],
    since: DateTime<Utc>,
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT DISTINCT sender_key FROM inbound_messages
         WHERE number_id = $1 AND sender_key = ANY($2) AND sent_at > $3",
    )
    .bind(number)
    .bind(keys)
    .bind(since)
    .fetch_all(db)
    .await
}

/// Everyone who wrote to the tenant's numbers (E.164, each once): only those answering
/// `campaign`, or writing since `since`, when given.
pub async fn senders(
    db: impl PgExecutor<'_>,
    tenant: TenantId,
    campaign: Option<CampaignId>,
    since: Option<DateTime<Utc>>,
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT DISTINCT sender FROM inbound_messages
         WHERE tenant_id = $1 AND ($2::uuid IS NULL OR campaign_id = $2)
           AND ($3::timestamptz IS NULL OR sent_at >= $3)
         ORDER BY sender",
    )
    .bind(tenant)
    .bind(campaign)
    .bind(since)
    .fetch_all(db)
    .await
}

/// A page of the tenant's inbound messages, newest first, after the one with id `before`;
/// only those answering `campaign`, or sent by `from`, when given.
pub async fn page(
    db: impl PgExecutor<'_>,
    tenant: TenantId,
    campaign: Option<CampaignId>,
    from: Option<&str>,
    before: Option<i64>,
    limit: i64,
) -> sqlx::Result<Vec<InboundRecord>> {
    sqlx::query_as(
        "SELECT id, wa_message_id, number_id, phone_number_id, sender, profile_name, kind,
                text, payload, media, context_wa_message_id, campaign_id, sent_at, received_at,
                message
         FROM inbound_messages
         WHERE tenant_id = $1 AND ($2::uuid IS NULL OR campaign_id = $2)
           AND ($3::text IS NULL OR sender = $3) AND ($4::bigint IS NULL OR id < $4)
         ORDER BY id DESC LIMIT $5",
    )
    .bind(tenant)
    .bind(campaign)
    .bind(from)
    .bind(before)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Whether a text is an opt-out: it is, trimmed of spaces and trailing punctuation, one of
/// `keywords`, case aside.
pub fn is_stop_keyword(text: &str, keywords: &[String]) -> bool {
    let text = text
        .trim()
        .trim_end_matches(|c: char| c.is_ascii_punctuation() || c.is_whitespace())
        .to_lowercase();
    !text.is_empty() && keywords.iter().any(|k| k.trim().to_lowercase() == text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_keywords_match_whole_texts_case_and_trailing_punctuation_aside() {
        let keywords: Vec<String> = ["stop", "ARRÊT", "baja"].map(String::from).into();
        for yes in ["STOP", " stop ", "Stop!", "arrêt", "Baja."] {
            assert!(is_stop_keyword(yes, &keywords), "{yes}");
        }
        for no in ["please stop sending", "stopper", "", "!"] {
            assert!(!is_stop_keyword(no, &keywords), "{no}");
        }
    }
}
