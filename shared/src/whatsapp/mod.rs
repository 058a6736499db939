//! The WhatsApp Business Cloud API: the send client, management reads, error classes and
//! webhook shapes (`reference/whatsapp-cloud-api.md`). Send bodies are `crate::template`'s.

pub mod account;
mod client;
mod errors;
pub mod message;
pub mod webhook;

pub use client::{
    CloudApiClient, Endpoint, FENCE_HEADER, GraphFailure, SendResult, TransportFailure,
};
pub use errors::{ErrorClass, GraphError, GraphErrorBody, classify};

use serde::Deserialize;

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
