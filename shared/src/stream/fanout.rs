//! Appending to number streams. A number's stream records, per campaign, the highest message
//! id appended, so a page appended again (a crash before the page was marked `queued`) adds
//! nothing twice.

use redis::AsyncCommands;

use super::scripts::FAN_OUT;
use super::{Connection, Entry, Keys, NumberKeys, RedisResult, doorbell, registry};
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

/// How far a lane stands: `appended`, the highest message id Postgres knows fan-out appended,
/// and (for a repair) `raise_to`, an id the stream's record is raised to with the page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expect {
    pub appended: i64,
    pub raise_to: i64,
}

/// Appends a page of `campaign`'s entries, in ascending message id order, to the number's
/// stream (skipping those already appended), then lists the number for the senders and rings
/// its doorbell, those two at once (their keys are in other Cluster slots than the stream's,
/// so they cannot share its pipeline). Returns how many were appended, or `None` when the
/// stream's record of what was appended is below `expect.appended`: Redis lost entries, and
/// nothing is appended until the lane is repaired.
pub async fn append(
    conn: &mut Connection,
    keys: &Keys,
    number: &NumberKeys,
    campaign: CampaignId,
    expect: Expect,
    entries: &[Entry],
) -> RedisResult<Option<usize>> {
    let mut script = FAN_OUT.key(&number.stream);
    script
        .key(&number.fanout)
        .arg(campaign.to_string())
        .arg(expect.appended)
        .arg(expect.raise_to);
    for entry in entries {
        script.arg(entry.message.0).arg(entry.encode());
    }
    let added: i64 = script.invoke_async(&mut *conn).await?;
    let Ok(added) = usize::try_from(added) else {
        return Ok(None);
    };
    let mut ringing = conn.clone();
    let ring = async {
        if added > 0 {
            doorbell::ring(&mut ringing, keys, number.number).await?;
        }
        Ok(())
    };
    tokio::try_join!(registry::add_number(conn, keys, number.number), ring)?;
    Ok(Some(added))
}

/// For each (number, campaign), the highest message id its stream records as appended (0 when
/// it records none: never appended, or lost).
pub async fn appended(
    conn: &mut Connection,
    keys: &Keys,
    lanes: &[(NumberId, CampaignId)],
) -> RedisResult<Vec<i64>> {
    futures::future::try_join_all(lanes.iter().map(|(number, campaign)| {
        let mut conn = conn.clone();
        let key = keys.number(*number).fanout;
        async move {
            let id: Option<i64> = conn.hget(key, campaign.to_string()).await?;
            Ok(id.unwrap_or(0))
        }
    }))
    .await
}
