//! Appending to number streams. A number's stream records, per campaign, the highest message
//! id appended, so a page appended again (a crash before the page was marked `queued`) adds
//! nothing twice.

use redis::AsyncCommands;

use super::scripts::FAN_OUT;
use super::{Connection, Entry, Keys, NumberKeys, RedisResult, registry};
use crate::domain::{CampaignId, NumberId};

/// The lengths of the streams of `numbers`, in one round trip (sent together on the
/// multiplexed connection; not one pipeline, whose keys a cluster needs in one slot).
pub async fn lengths(
    conn: &mut Connection,
    keys: &Keys,
    numbers: &[NumberId],
) -> RedisResult<Vec<usize>> {
    futures::future::try_join_all(numbers.iter().map(|number| {
        let mut conn = conn.clone();
        let stream = keys.stream(*number);
        async move { conn.xlen(stream).await }
    }))
    .await
}

/// Appends a page of `campaign`'s entries, in ascending message id order, to the number's
/// stream (skipping those already appended) and lists the number for the senders. Returns how
/// many were appended.
pub async fn append(
    conn: &mut Connection,
    keys: &Keys,
    number: &NumberKeys,
    campaign: CampaignId,
    entries: &[Entry],
) -> RedisResult<usize> {
    let mut script = FAN_OUT.key(&number.stream);
    script.key(&number.fanout).arg(campaign.to_string());
    for entry in entries {
        script.arg(entry.message.0).arg(entry.encode());
    }
    let added: usize = script.invoke_async(&mut *conn).await?;
    registry::add_number(conn, keys, number.number).await?;
    Ok(added)
}
