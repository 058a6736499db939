//! Redis's one home (design §5): every key name, the entry schema, every script and every
//! command Herald sends. Outside this module no code builds a Redis command or script; it
//! calls the typed operations here.
//!
//! - `keys`: key names; a number's keys share one hash tag.
//! - `entry`: what a number's stream carries.
//! - `group`: reading a stream through a consumer group (read, claim, ack-and-delete), for
//!   the sender's number streams and the webhook buffer alike.
//! - `queue`: one number's queue around its stream: retry, parked and handback sets.
//! - `fanout`: appending pages to number streams, once each; `doorbell`: telling their senders.
//! - `lease`, `registry`: number ownership and the live senders.
//! - `holds`: app and WABA holds, and portfolios' daily recipient limits.
//! - `webhooks`: the webhook buffer and receipts held for an unknown wamid.
//! - `conn`: connections; `admin`: what the demo and tests need to check and clean up.

pub mod admin;
pub mod conn;
pub mod doorbell;
mod entry;
pub mod fanout;
mod group;
pub mod holds;
mod keys;
pub mod lease;
mod queue;
pub mod registry;
mod scripts;
pub mod suppressions;
pub mod webhooks;

pub use entry::{ENTRY_FIELD, Entry, EntryError};
pub use group::{GroupReader, Read};
pub use keys::{Keys, NumberKeys};
pub use queue::{Aside, NumberQueue, QueueGauges};

/// The consumer group every number stream is read through.
pub const SENDER_GROUP: &str = "senders";
/// The consumer group of the webhook buffer.
pub const WEBHOOK_GROUP: &str = "processors";

/// Every Redis operation fails with this.
pub type RedisResult<T> = redis::RedisResult<T>;
pub use conn::Connection;
