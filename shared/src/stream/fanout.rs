//! Appending to number streams. A number's stream records, per campaign, the highest message
//! id appended, so a page appended again (a crash before the page was marked `queued`) adds
//! nothing twice.

use super::scripts::FAN_OUT;
use super::{Connection, Entry, Keys, NumberKeys, RedisResult, registry};
use crate::domain::{CampaignId, NumberId};

/// How many entries each of `numbers` holds in Redis on their way: its stream and its retry
/// set (retries, and sends the daily cap holds back), which fan-out's window bounds together:
/// counting the stream alone, a capped number's stream would drain into its retry set and
/// fan-out would top it up until the whole campaign sat in Redis. Sent together on the
/// multiplexed connection, one pipeline per number (its keys share a slot).
pub async fn lengths(
    conn: &mut Connection,
    keys: &Keys,
    numbers: &[NumberId],
) -> RedisResult<Vec<usize>> {
    futures::future::try_join_all(numbers.iter().map(|number| {
        let mut conn = conn.clone();
        let (stream, retry) = (keys.stream(*number), keys.retry(*number));
        async move {
            let (queued, waiting): (usize, usize) = redis::pipe()
                .xlen(stream)
                .zcard(retry)
                .query_async(&mut conn)
                .await?;
            Ok(queued + waiting)
        }
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
