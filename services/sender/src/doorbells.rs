//! The doorbells of this sender's numbers: fan-out rings a number's when it appends to its
//! stream (`stream::doorbell`), and the number's loop, pausing after an empty read, reads
//! at once instead of after up to `block_ms`. A ring for a number this sender does not own
//! is ignored; one missed while Redis is unreachable costs only that wait.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_shared::domain::NumberId;
use herald_shared::stream::{Connection, Keys, doorbell};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How long one read of the rings waits for one.
const BLOCK_MS: usize = 1_000;

#[derive(Default)]
pub struct Doorbells {
    bells: Mutex<HashMap<NumberId, Arc<Notify>>>,
}

impl Doorbells {
    /// `number`'s bell, made on first use.
    pub fn bell(&self, number: NumberId) -> Arc<Notify> {
        self.bells
            .lock()
            .expect("bells lock")
            .entry(number)
            .or_default()
            .clone()
    }

    fn ring(&self, numbers: &[NumberId]) {
        let bells = self.bells.lock().expect("bells lock");
        for number in numbers {
            if let Some(bell) = bells.get(number) {
                bell.notify_one();
            }
        }
    }

    /// Passes on every ring from now until `shutdown`, on `redis`, a connection of its own
    /// (its reads block).
    pub async fn listen(&self, mut redis: Connection, keys: Keys, shutdown: CancellationToken) {
        let mut after = "$".to_owned();
        loop {
            tokio::select! {
                rung = doorbell::rung_after(&mut redis, &keys, &after, BLOCK_MS) => match rung {
                    Ok((numbers, next)) => {
                        self.ring(&numbers);
                        after = next;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot hear fan-out's doorbells; idle numbers read at their own pace");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                            _ = shutdown.cancelled() => return,
                        }
                    }
                },
                _ = shutdown.cancelled() => return,
            }
        }
    }
}
