//! The entry schema. An entry is one field, `e`, holding
//! `message id \t campaign id \t attempt \t recipient \t payload`: the retry and parked sets
//! store the same string as their members, so moving an entry between them and the stream is
//! a copy; the payload is the rendered Cloud API request body, so the hot path reads no
//! Postgres; and the recipient rides beside it, so nothing re-parses the payload.

use bytes::Bytes;

use crate::domain::{CampaignId, MessageId};

/// The one field of a stream entry.
pub const ENTRY_FIELD: &str = "e";

/// One message to send, as carried by a number's stream and retry set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub message: MessageId,
    pub campaign: CampaignId,
    /// Sends already tried (0 for the first).
    pub attempt: u32,
    /// The recipient, E.164 (the payload's `to`).
    pub recipient: String,
    /// The Cloud API request body, ready to POST.
    pub payload: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed stream entry: {0}")]
pub struct EntryError(&'static str);

impl Entry {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.payload.len() + self.recipient.len() + 64);
        for field in [
            self.message.to_string().as_bytes(),
            self.campaign.to_string().as_bytes(),
            self.attempt.to_string().as_bytes(),
            self.recipient.as_bytes(),
        ] {
            out.extend_from_slice(field);
            out.push(b'\t');
        }
        out.extend_from_slice(&self.payload);
        out
    }

    pub fn decode(raw: &[u8]) -> Result<Self, EntryError> {
        let mut parts = raw.splitn(5, |b| *b == b'\t');
        let mut text = |what| {
            parts
                .next()
                .and_then(|p| std::str::from_utf8(p).ok())
                .ok_or(EntryError(what))
        };
        let message = text("message id")?
            .parse()
            .map_err(|_| EntryError("message id"))?;
        let campaign = text("campaign id")?
            .parse()
            .map_err(|_| EntryError("campaign id"))?;
        let attempt = text("attempt")?
            .parse()
            .map_err(|_| EntryError("attempt"))?;
        let recipient = text("recipient")?.to_owned();
        if recipient.is_empty() {
            return Err(EntryError("recipient"));
        }
        let payload = parts.next().ok_or(EntryError("payload"))?;
        Ok(Self {
            message,
            campaign,
            attempt,
            recipient,
            payload: Bytes::copy_from_slice(payload),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_truncated_entry_is_an_error() {
        assert!(Entry::decode(b"12\tnot-a-uuid\t0\t+447400000001\t{}").is_err());
        assert!(Entry::decode(b"12").is_err());
        let campaign = CampaignId::new();
        assert!(Entry::decode(format!("12\t{campaign}\t0\t\t{{}}").as_bytes()).is_err());
    }

    proptest! {
        #[test]
        fn entries_round_trip(
            id in 1i64..,
            attempt in 0u32..10,
            recipient in "\\+[0-9]{8,15}",
            payload in ".*",
        ) {
            let entry = Entry {
                message: MessageId(id),
                campaign: CampaignId::new(),
                attempt,
                recipient,
                payload: Bytes::from(payload.into_bytes()),
            };
            prop_assert_eq!(Entry::decode(&entry.encode()).unwrap(), entry);
        }
    }
}
