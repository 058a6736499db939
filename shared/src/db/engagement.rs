//! What recipients do with a campaign after it reaches them: replies, quick-reply taps and
//! opt-outs (design §7). Each inbound message counts once, however often Meta delivers it.

use sqlx::PgExecutor;

use crate::db::counters::Delta;
use crate::domain::CampaignId;

/// An inbound message that answers one of Herald's.
#[derive(Debug, Clone)]
pub struct Inbound<'a> {
    /// The business number it was sent to (`metadata.phone_number_id`).
    pub phone_number_id: &'a str,
    /// The user, E.164 (`+` and their `wa_id`).
    pub recipient: String,
    /// The inbound message's wamid.
    pub wa_message_id: &'a str,
    /// The wamid of the business message it answers, if it says.
    pub context: Option<&'a str>,
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

/// Records an inbound message against its campaign: the one of the message it answers, else
/// of the last message sent to that recipient from that number. Returns the campaign, whose
/// counter the caller moves (through the transition engine, with the transaction's other
/// campaign changes); `None` when it was recorded before or answers nothing Herald sent.
pub async fn record_inbound(
    db: impl PgExecutor<'_>,
    inbound: &Inbound<'_>,
) -> sqlx::Result<Option<CampaignId>> {
    sqlx::query_scalar(
        "WITH number AS (
            SELECT id FROM sender_numbers WHERE phone_number_id = $1
         ), by_context AS (
            SELECT m.campaign_id FROM message_wamids w JOIN messages m ON m.id = w.message_id
            WHERE w.wa_message_id = $4
         ), by_recipient AS (
            SELECT m.campaign_id FROM messages m, number n
            WHERE m.recipient = $2 AND m.sender_number_id = n.id AND m.sent_at IS NOT NULL
            ORDER BY m.sent_at DESC LIMIT 1
         ), campaign AS (
            SELECT campaign_id FROM by_context
            UNION ALL SELECT campaign_id FROM by_recipient
            LIMIT 1
         )
         INSERT INTO engagements (wa_message_id, campaign_id, kind, recipient)
         SELECT $3, campaign_id, $5, $2 FROM campaign
         ON CONFLICT (wa_message_id) DO NOTHING
         RETURNING campaign_id",
    )
    .bind(inbound.phone_number_id)
    .bind(&inbound.recipient)
    .bind(inbound.wa_message_id)
    .bind(inbound.context)
    .bind(inbound.kind.as_str())
    .fetch_optional(db)
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
