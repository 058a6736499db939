//! Domain types: typed ids, parsed phone numbers and the statuses shared with Postgres.
//! Raw strings stop at the edge: everything past it holds one of these.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema)]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new, time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

uuid_id!(
    /// A tenant: every API resource belongs to one.
    TenantId
);
uuid_id!(
    /// A campaign.
    CampaignId
);
uuid_id!(
    /// One of Herald's sender numbers (not Meta's `phone_number_id`).
    NumberId
);

/// A message: one recipient of one campaign. Also what `biz_opaque_callback_data` carries.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    sqlx::Type,
    utoipa::ToSchema,
)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct MessageId(pub i64);

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for MessageId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Self)
    }
}

/// A message's place in its lifecycle (design §4). Mirrors the Postgres enum.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
)]
#[sqlx(type_name = "message_status", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    Pending,
    Queued,
    Sent,
    Delivered,
    Read,
    Failed,
    Cancelled,
    Suppressed,
    /// Not sent, by Herald's choice: a free-form message to a user outside their 24-hour
    /// window.
    Skipped,
}

impl MessageStatus {
    pub const ALL: [MessageStatus; 9] = [
        Self::Pending,
        Self::Queued,
        Self::Sent,
        Self::Delivered,
        Self::Read,
        Self::Failed,
        Self::Cancelled,
        Self::Suppressed,
        Self::Skipped,
    ];

    /// Whether a message in `self` may move to `new`. The same rule as the Postgres function
    /// `message_status_advances`, which is what the database applies; this copy lets callers
    /// reduce a batch before sending it.
    pub fn advances_to(self, new: MessageStatus) -> bool {
        use MessageStatus::*;
        match (self, new) {
            (Read | Failed | Suppressed | Skipped, _) => false,
            // A send already under way when the campaign was cancelled went out after all.
            (Cancelled, new) => matches!(new, Sent | Delivered | Read),
            (old, Failed) => matches!(old, Pending | Queued | Sent),
            (old, Cancelled | Suppressed | Skipped) => matches!(old, Pending | Queued),
            (old, new) => new.rank() > old.rank(),
        }
    }

    /// Every allowed move goes up this order; it also picks the furthest status when one
    /// batch holds several for the same message. `failed` sits between `sent` and
    /// `delivered`: it can end a sent message but not one already delivered; `cancelled`
    /// sits below `sent`, which a send already under way can still reach.
    pub fn rank(self) -> u8 {
        match self {
            Self::Pending => 0,
            Self::Queued => 1,
            Self::Cancelled | Self::Suppressed | Self::Skipped => 2,
            Self::Sent => 3,
            Self::Failed => 4,
            Self::Delivered => 5,
            Self::Read => 6,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Queued => "queued",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Suppressed => "suppressed",
            Self::Skipped => "skipped",
        }
    }
}

impl fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A campaign's state. Mirrors the Postgres enum.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
)]
#[sqlx(type_name = "campaign_state", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum CampaignState {
    Draft,
    Scheduled,
    Running,
    Paused,
    Completed,
    Cancelled,
    Failed,
}

impl CampaignState {
    /// As the API and Postgres spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Scheduled => "scheduled",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
        }
    }
}

impl fmt::Display for CampaignState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A sender number's state. Mirrors the Postgres enum.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
)]
#[sqlx(type_name = "number_state", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum NumberState {
    Active,
    PausedAuth,
    PausedQuality,
    Disabled,
}

/// Why a phone number was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneNumberError {
    #[error("is empty")]
    Empty,
    #[error("needs a country code: write it as +<country code><number>")]
    NoCountryCode,
    #[error("is not a phone number: {0}")]
    Unparseable(String),
    #[error("is not a valid number for its country")]
    Invalid,
}

/// A recipient's phone number in E.164 form (`+447400900123`), parsed once at the edge.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Parses a number written by a person: spaces, dashes, brackets and a leading `00` are
    /// accepted; a country code is required, because Meta would otherwise prepend the sender's.
    pub fn parse(input: &str) -> Result<Self, PhoneNumberError> {
        Self::parse_in(input, None)
    }

    /// Parses a number, reading one written without a country code (`07400 123456`,
    /// `919876543210`) as a number of `default_country` when one is given.
    pub fn parse_in(
        input: &str,
        default_country: Option<phonenumber::country::Id>,
    ) -> Result<Self, PhoneNumberError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(PhoneNumberError::Empty);
        }
        if let Some(e164) = crate::phone::fast_e164(trimmed) {
            return Ok(Self(e164));
        }
        let parsed = if let Some(rest) = trimmed.strip_prefix("00") {
            phonenumber::parse(None, format!("+{rest}"))
        } else if trimmed.starts_with('+') {
            phonenumber::parse(None, trimmed)
        } else if let Some(country) = default_country {
            phonenumber::parse(Some(country), trimmed)
        } else {
            return Err(PhoneNumberError::NoCountryCode);
        }
        .map_err(|e| PhoneNumberError::Unparseable(e.to_string()))?;
        if !phonenumber::is_valid(&parsed) {
            return Err(PhoneNumberError::Invalid);
        }
        Ok(Self(
            parsed.format().mode(phonenumber::Mode::E164).to_string(),
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digits only, as Meta's `wa_id` and `recipient_id` carry them.
    pub fn digits(&self) -> &str {
        &self.0[1..]
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PhoneNumber {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        PhoneNumber::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_default_country_reads_numbers_written_without_a_country_code() {
        use phonenumber::country::Id;
        let read = |input: &str, country| PhoneNumber::parse_in(input, Some(country)).unwrap();
        assert_eq!(read("919876543210", Id::IN).as_str(), "+919876543210");
        assert_eq!(read("9876543210", Id::IN).as_str(), "+919876543210");
        assert_eq!(read("07400 123456", Id::GB).as_str(), "+447400123456");
        // A number that says its country keeps it.
        assert_eq!(read("+33 6 12 34 56 78", Id::GB).as_str(), "+33612345678");
        assert_eq!(
            PhoneNumber::parse("07400 123456"),
            Err(PhoneNumberError::NoCountryCode)
        );
    }

    #[test]
    fn a_formatted_uk_number_becomes_e164() {
        let n = PhoneNumber::parse(" +44 7400 900123 ").unwrap();
        assert_eq!(n.as_str(), "+447400900123");
        assert_eq!(n.digits(), "447400900123");
    }

    #[test]
    fn a_double_zero_prefix_counts_as_plus() {
        assert_eq!(
            PhoneNumber::parse("0044 (7400) 900-123").unwrap().as_str(),
            "+447400900123"
        );
    }

    #[test]
    fn a_number_without_country_code_is_refused() {
        assert_eq!(
            PhoneNumber::parse("07400 900123"),
            Err(PhoneNumberError::NoCountryCode)
        );
    }

    #[test]
    fn the_drama_range_is_not_a_real_number() {
        // Ofcom's 07700 900xxx numbers are reserved for fiction and do not validate.
        assert_eq!(
            PhoneNumber::parse("+447700900123"),
            Err(PhoneNumberError::Invalid)
        );
    }

    #[test]
    fn garbage_and_impossible_numbers_are_refused() {
        assert!(PhoneNumber::parse("").is_err());
        assert!(PhoneNumber::parse("+hello").is_err());
        assert!(PhoneNumber::parse("+44 12").is_err());
    }

    #[test]
    fn statuses_only_move_forward() {
        use MessageStatus::*;
        assert!(Queued.advances_to(Sent));
        assert!(Queued.advances_to(Read));
        assert!(Sent.advances_to(Failed));
        assert!(!Delivered.advances_to(Sent));
        assert!(!Read.advances_to(Delivered));
        assert!(!Failed.advances_to(Read));
        assert!(!Delivered.advances_to(Failed));
        assert!(!Sent.advances_to(Cancelled));
        assert!(Cancelled.advances_to(Sent));
        assert!(!Cancelled.advances_to(Failed));
        assert!(!Suppressed.advances_to(Sent));
        assert!(Pending.advances_to(Skipped) && Queued.advances_to(Skipped));
        assert!(!Sent.advances_to(Skipped) && !Skipped.advances_to(Sent));
    }

    proptest! {
        #[test]
        fn parsing_is_idempotent_on_its_own_output(national in 7_400_000_000u64..7_400_999_999) {
            let first = PhoneNumber::parse(&format!("+44{national}")).unwrap();
            let again = PhoneNumber::parse(first.as_str()).unwrap();
            prop_assert_eq!(first, again);
        }

        #[test]
        fn no_status_sequence_moves_backwards(seq in proptest::collection::vec(0usize..8, 1..20)) {
            let mut current = MessageStatus::Pending;
            for i in seq {
                let next = MessageStatus::ALL[i];
                if current.advances_to(next) {
                    prop_assert!(next.rank() > current.rank());
                    current = next;
                }
            }
        }
    }
}
