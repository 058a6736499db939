//! The WhatsApp Business Cloud API: the send client, error classes and webhook shapes
//! (`reference/whatsapp-cloud-api.md`).

mod client;
mod errors;
pub mod webhook;

pub use client::{CloudApiClient, FENCE_HEADER, SendResult, TransportFailure};
pub use errors::{ErrorClass, GraphError, GraphErrorBody, classify};

use serde::ser::{SerializeSeq, SerializeStruct};
use serde::{Deserialize, Serialize, Serializer};

/// Body of a template send (`POST /{version}/{phone_number_id}/messages`), borrowed from the
/// message's row and written straight to JSON: fan-out renders one per message.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct TemplateMessage<'a> {
    messaging_product: &'static str,
    recipient_type: &'static str,
    to: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    biz_opaque_callback_data: &'a str,
    template: Template<'a>,
}

#[derive(Debug, Clone, Copy, Serialize)]
struct Template<'a> {
    name: &'a str,
    language: Language<'a>,
    #[serde(skip_serializing_if = "BodyComponent::is_empty")]
    components: BodyComponent<'a>,
}

#[derive(Debug, Clone, Copy, Serialize)]
struct Language<'a> {
    code: &'a str,
}

/// `[{"type": "body", "parameters": [{"type": "text", "text": …}, …]}]`.
#[derive(Debug, Clone, Copy)]
struct BodyComponent<'a>(&'a [String]);

/// `{"type": "text", "text": …}`.
struct TextParameter<'a>(&'a str);

impl BodyComponent<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for BodyComponent<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Parameters<'a>(&'a [String]);
        impl Serialize for Parameters<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq(self.0.iter().map(|text| TextParameter(text)))
            }
        }
        struct Body<'a>(&'a [String]);
        impl Serialize for Body<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut body = s.serialize_struct("Component", 2)?;
                body.serialize_field("type", "body")?;
                body.serialize_field("parameters", &Parameters(self.0))?;
                body.end()
            }
        }
        let mut components = s.serialize_seq(Some(1))?;
        components.serialize_element(&Body(self.0))?;
        components.end()
    }
}

impl Serialize for TextParameter<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut parameter = s.serialize_struct("Parameter", 2)?;
        parameter.serialize_field("type", "text")?;
        parameter.serialize_field("text", self.0)?;
        parameter.end()
    }
}

impl<'a> TemplateMessage<'a> {
    /// A template message to `to` whose body variables are `body_params`, in order, tagged
    /// with Herald's message id so that receipts can be matched even before the send is
    /// recorded.
    pub fn new(
        to: &'a str,
        template: &'a str,
        language: &'a str,
        body_params: &'a [String],
        callback: &'a str,
    ) -> Self {
        Self {
            messaging_product: "whatsapp",
            recipient_type: "individual",
            to,
            kind: "template",
            biz_opaque_callback_data: callback,
            template: Template {
                name: template,
                language: Language { code: language },
                components: BodyComponent(body_params),
            },
        }
    }
}

/// What the sender reads of a 200 answer to a send: the message's id (`messages[0].id`).
#[derive(Debug, Deserialize)]
pub struct SendResponse<'a> {
    #[serde(borrow)]
    pub messages: Vec<SentMessage<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct SentMessage<'a> {
    #[serde(borrow)]
    pub id: std::borrow::Cow<'a, str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_message_is_the_cloud_api_body() {
        let params = vec!["Ada \"Countess\"".to_owned(), "25%".to_owned()];
        let body = TemplateMessage::new("+447400000001", "spring_sale", "en_GB", &params, "42");
        assert_eq!(
            serde_json::to_value(body).unwrap(),
            serde_json::json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": "+447400000001",
                "type": "template",
                "biz_opaque_callback_data": "42",
                "template": {
                    "name": "spring_sale",
                    "language": {"code": "en_GB"},
                    "components": [{"type": "body", "parameters": [
                        {"type": "text", "text": "Ada \"Countess\""},
                        {"type": "text", "text": "25%"}
                    ]}]
                }
            })
        );
    }

    #[test]
    fn a_template_without_variables_has_no_components() {
        let body = TemplateMessage::new("+447400000001", "hello", "en", &[], "7");
        let json = serde_json::to_value(body).unwrap();
        assert!(json["template"].get("components").is_none(), "{json}");
    }
}
