//! Webhook notification shapes (reference §4.5–§4.7). Unknown fields are ignored and most
//! fields are optional, because Meta adds and removes them between API versions.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Notification {
    pub object: String,
    #[serde(default)]
    pub entry: Vec<NotificationEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NotificationEntry {
    pub id: String,
    #[serde(default)]
    pub changes: Vec<Change>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Change {
    pub field: String,
    pub value: ChangeValue,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChangeValue {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messaging_product: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statuses: Vec<StatusUpdate>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contacts: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<WebhookError>,
    /// `field: "user_preferences"`: marketing opt-outs and opt-ins (reference §4.8).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_preferences: Vec<UserPreference>,
    /// `field: "message_template_status_update"`: `APPROVED`, `PAUSED`, `DISABLED`…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<TemplateEvent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_template_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_template_language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One inbound message (`messages[]`), as far as Herald reads it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InboundMessage {
    /// The user's WhatsApp id (their number's digits).
    pub from: String,
    /// The inbound message's own wamid.
    pub id: String,
    #[serde(default)]
    pub timestamp: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    /// The business message this one answers (a quick-reply tap, or a quoted reply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<InboundContext>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<InboundText>,
    /// A template quick-reply button tap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub button: Option<InboundButton>,
    /// A reply to an interactive message: a reply button or a list row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interactive: Option<InboundInteractive>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<InboundMedia>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<InboundMedia>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<InboundMedia>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<InboundMedia>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticker: Option<InboundMedia>,
    /// A reaction to a business message: its emoji and the message it reacts to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reaction: Option<InboundReaction>,
}

impl InboundMessage {
    /// What the user said or chose: a text's body, a tapped button's or list row's title, a
    /// media item's caption, a reaction's emoji.
    pub fn said(&self) -> Option<&str> {
        self.text
            .as_ref()
            .map(|t| t.body.as_str())
            .or(self.button.as_ref().map(|b| b.text.as_str()))
            .or(self
                .interactive
                .as_ref()
                .and_then(|i| i.reply())
                .map(|r| r.title.as_str()))
            .or(self.media().and_then(|m| m.caption.as_deref()))
            .or(self.reaction.as_ref().map(|r| r.emoji.as_str()))
    }

    /// What the tap carries for the business: a quick-reply button's payload, a reply
    /// button's or list row's id.
    pub fn payload(&self) -> Option<&str> {
        self.button.as_ref().map(|b| b.payload.as_str()).or(self
            .interactive
            .as_ref()
            .and_then(|i| i.reply())
            .map(|r| r.id.as_str()))
    }

    /// The media item it carries, if any.
    pub fn media(&self) -> Option<&InboundMedia> {
        [
            &self.image,
            &self.video,
            &self.audio,
            &self.document,
            &self.sticker,
        ]
        .into_iter()
        .find_map(Option::as_ref)
    }

    /// The business message it answers: the one quoted or tapped, or the one reacted to.
    pub fn answers(&self) -> Option<&str> {
        self.context
            .as_ref()
            .map(|c| c.id.as_str())
            .or(self.reaction.as_ref().map(|r| r.message_id.as_str()))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InboundContext {
    /// The wamid of the business message.
    pub id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InboundText {
    pub body: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InboundButton {
    #[serde(default)]
    pub payload: String,
    #[serde(default)]
    pub text: String,
}

/// `interactive`: which reply button or list row the user chose.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InboundInteractive {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub button_reply: Option<InboundReply>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_reply: Option<InboundReply>,
}

impl InboundInteractive {
    pub fn reply(&self) -> Option<&InboundReply> {
        self.button_reply.as_ref().or(self.list_reply.as_ref())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InboundReply {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub title: String,
}

/// A media item a user sent: Meta's media id (to download through the Graph API), its type
/// and hash, and a caption or file name where it has one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InboundMedia {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InboundReaction {
    /// The wamid of the message reacted to.
    pub message_id: String,
    #[serde(default)]
    pub emoji: String,
}

/// One inbound message as a notification carries it.
#[derive(Debug, Clone)]
pub struct InboundItem<'a> {
    /// The business number it was sent to (`metadata.phone_number_id`).
    pub number: &'a str,
    pub message: InboundMessage,
    /// The item as Meta sent it.
    pub raw: &'a serde_json::Value,
    /// The sender's profile name (`contacts[].profile.name`).
    pub profile_name: Option<&'a str>,
}

/// One `user_preferences[]` item.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserPreference {
    pub wa_id: String,
    #[serde(default)]
    pub category: PreferenceCategory,
    pub value: PreferenceValue,
    /// When the user chose, in Unix seconds (a number or a string): a later-arriving older
    /// choice must not undo a newer one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<serde_json::Value>,
}

/// What kind of messages a user's preference is about; Herald acts on marketing only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PreferenceCategory {
    MarketingMessages,
    #[default]
    #[serde(other)]
    Other,
}

/// A user's choice: stop or resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PreferenceValue {
    Stop,
    Resume,
    #[serde(other)]
    Other,
}

/// A `message_template_status_update` event (reference §4.7, §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TemplateEvent {
    Approved,
    Pending,
    Rejected,
    Paused,
    Disabled,
    InAppeal,
    PendingDeletion,
    Deleted,
    Archived,
    LimitExceeded,
    Locked,
    Flagged,
    Reinstated,
    Unarchived,
    #[serde(other)]
    Other,
}

impl std::fmt::Display for TemplateEvent {
    /// The event's name as Meta writes it (`PENDING_DELETION`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::String(name)) => f.write_str(&name),
            _ => write!(f, "{self:?}"),
        }
    }
}

impl TemplateEvent {
    /// The template's status after this event, as Meta writes statuses; `None` when the
    /// event is no status (a quality flag, an unknown event).
    pub fn status(self) -> Option<String> {
        match self {
            Self::Flagged | Self::Other => None,
            Self::Reinstated | Self::Unarchived => Some("APPROVED".into()),
            other => Some(other.to_string()),
        }
    }

    /// Whether a template after this event cannot be sent: its campaigns must pause.
    pub fn stops_sending(self) -> bool {
        matches!(
            self,
            Self::Paused
                | Self::Disabled
                | Self::Rejected
                | Self::PendingDeletion
                | Self::Deleted
                | Self::Locked
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Metadata {
    pub display_phone_number: String,
    pub phone_number_id: String,
}

/// One `statuses[]` item.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusUpdate {
    /// The wamid from the send response.
    pub id: String,
    pub status: ReceiptStatus,
    /// Unix seconds, as a string.
    pub timestamp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub biz_opaque_callback_data: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<WebhookError>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReceiptStatus {
    Sent,
    Delivered,
    Read,
    Failed,
    /// Voice messages; ranks like `read`.
    Played,
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebhookError {
    pub code: i64,
    #[serde(default)]
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Notification {
    /// Every inbound message, with the business `phone_number_id` it was sent to and the
    /// sender's profile name. Items that do not read as messages (a shape Meta added) are
    /// skipped.
    pub fn inbound(&self) -> impl Iterator<Item = InboundItem<'_>> {
        self.values("messages").flat_map(|(number, value)| {
            value.messages.iter().filter_map(move |raw| {
                let message = InboundMessage::deserialize(raw).ok()?;
                let profile_name = value
                    .contacts
                    .iter()
                    .find(|c| c["wa_id"].as_str() == Some(message.from.as_str()))
                    .or(value.contacts.first())
                    .and_then(|c| c["profile"]["name"].as_str());
                Some(InboundItem {
                    number: number?,
                    message,
                    raw,
                    profile_name,
                })
            })
        })
    }

    /// Every marketing preference change, with the business `phone_number_id`.
    pub fn preferences(&self) -> impl Iterator<Item = (&str, &UserPreference)> {
        self.values("user_preferences").flat_map(|(number, value)| {
            value
                .user_preferences
                .iter()
                .filter_map(move |p| Some((number?, p)))
        })
    }

    /// Every template status change, with the WABA it belongs to (the entry's id).
    pub fn template_updates(&self) -> impl Iterator<Item = (&str, &ChangeValue)> {
        self.entry.iter().flat_map(|e| {
            e.changes
                .iter()
                .filter(|c| c.field == "message_template_status_update")
                .map(move |c| (e.id.as_str(), &c.value))
        })
    }

    fn values(&self, field: &'static str) -> impl Iterator<Item = (Option<&str>, &ChangeValue)> {
        self.entry
            .iter()
            .flat_map(|e| e.changes.iter())
            .filter(move |c| c.field == field)
            .map(|c| {
                let number = c
                    .value
                    .metadata
                    .as_ref()
                    .map(|m| m.phone_number_id.as_str());
                (number, &c.value)
            })
    }

    /// Whose the notification is: the business `phone_number_id`s its changes name, and the
    /// WABA ids of its entries that name no number (template updates, say). A WABA may hold
    /// the numbers of several tenants, so a number, when named, is what decides.
    pub fn accounts(&self) -> (Vec<&str>, Vec<&str>) {
        let mut numbers = Vec::new();
        let mut wabas = Vec::new();
        for entry in &self.entry {
            let named = numbers.len();
            numbers.extend(
                entry
                    .changes
                    .iter()
                    .filter_map(|c| c.value.metadata.as_ref())
                    .map(|m| m.phone_number_id.as_str()),
            );
            if numbers.len() == named {
                wabas.push(entry.id.as_str());
            }
        }
        (numbers, wabas)
    }

    /// Every status update in the notification, in order, with the business
    /// `phone_number_id` it is for.
    pub fn statuses(&self) -> impl Iterator<Item = (Option<&str>, &StatusUpdate)> {
        self.values("messages")
            .flat_map(|(number, value)| value.statuses.iter().map(move |s| (number, s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    /// Any JSON value, keys drawn from Meta's vocabulary so that the shapes Herald reads are
    /// met with every type in every place.
    fn any_json() -> impl Strategy<Value = Value> {
        let key = prop_oneof![
            Just("object"),
            Just("entry"),
            Just("id"),
            Just("changes"),
            Just("field"),
            Just("value"),
            Just("metadata"),
            Just("phone_number_id"),
            Just("statuses"),
            Just("messages"),
            Just("status"),
            Just("timestamp"),
            Just("errors"),
            Just("code"),
            Just("biz_opaque_callback_data"),
            Just("user_preferences"),
            Just("wa_id"),
            Just("from"),
            Just("type"),
            Just("text"),
            Just("button"),
            Just("interactive"),
        ]
        .prop_map(str::to_owned);
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| json!(f)),
            Just(json!("messages")),
            Just(json!("user_preferences")),
            Just(json!("message_template_status_update")),
            "[\\PC]{0,8}".prop_map(Value::from),
        ];
        leaf.prop_recursive(6, 64, 6, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::btree_map(key.clone(), inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn read_everything(n: &Notification) {
        let _ = n.statuses().count();
        let _ = n.inbound().count();
        let _ = n.preferences().count();
        let _ = n.template_updates().count();
        let _ = n.accounts();
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        #[test]
        fn any_json_reads_without_panicking(value in any_json()) {
            if let Ok(n) = serde_json::from_value::<Notification>(value) {
                read_everything(&n);
            }
        }

        #[test]
        fn any_bytes_read_without_panicking(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(n) = serde_json::from_slice::<Notification>(&body) {
                read_everything(&n);
            }
        }
    }
}
