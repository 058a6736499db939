//! The WhatsApp Business Cloud API: the send client, error classes and webhook shapes
//! (`reference/whatsapp-cloud-api.md`).

mod client;
mod errors;
pub mod webhook;

pub use client::{CloudApiClient, FENCE_HEADER, SendResult, TransportFailure};
pub use errors::{ErrorClass, GraphError, GraphErrorBody, classify};

use serde::{Deserialize, Serialize};

/// Body of a template send (`POST /{version}/{phone_number_id}/messages`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TemplateMessage {
    pub messaging_product: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient_type: Option<String>,
    pub to: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub biz_opaque_callback_data: Option<String>,
    pub template: Template,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Template {
    pub name: String,
    pub language: Language,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Language {
    pub code: String,
}

impl TemplateMessage {
    /// A template message to `to` whose body variables are `body_params`, in order, tagged
    /// with Herald's message id so that receipts can be matched even before the send is
    /// recorded.
    pub fn new(
        to: &str,
        template: &str,
        language: &str,
        body_params: &[String],
        callback: &str,
    ) -> Self {
        let components = if body_params.is_empty() {
            Vec::new()
        } else {
            let parameters: Vec<_> = body_params
                .iter()
                .map(|text| serde_json::json!({"type": "text", "text": text}))
                .collect();
            vec![serde_json::json!({"type": "body", "parameters": parameters})]
        };
        Self {
            messaging_product: "whatsapp".into(),
            recipient_type: Some("individual".into()),
            to: to.into(),
            kind: "template".into(),
            biz_opaque_callback_data: Some(callback.into()),
            template: Template {
                name: template.into(),
                language: Language {
                    code: language.into(),
                },
                components,
            },
        }
    }
}

/// The 200 answer to a send.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendResponse {
    pub messaging_product: String,
    #[serde(default)]
    pub contacts: Vec<SendContact>,
    pub messages: Vec<SentMessage>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendContact {
    pub input: String,
    pub wa_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SentMessage {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_status: Option<String>,
}
