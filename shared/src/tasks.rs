//! The background tasks a role cannot do without (the recorder, fan-out, the scheduler, the
//! webhook processors, the followers of suppressions and paused campaigns). One that ends
//! before the role is told to stop — returned, failed or panicked — ends the role with an
//! error naming it, and with it the process: left up, the process would answer ready while
//! silently doing half its job. What it had in hand is as safe as after `kill -9`, and the
//! orchestrator starts it again.

use std::collections::HashMap;
use std::future::Future;

use tokio::task::{Id, JoinError, JoinSet};
use tokio_util::sync::CancellationToken;

/// What a task gives back: nothing, or whether it failed.
pub trait Outcome: Send + 'static {
    fn into_result(self) -> anyhow::Result<()>;
}

impl Outcome for () {
    fn into_result(self) -> anyhow::Result<()> {
        Ok(())
    }
}

impl Outcome for anyhow::Result<()> {
    fn into_result(self) -> anyhow::Result<()> {
        self
    }
}

/// Named tasks, watched together until `stop`.
pub struct Tasks {
    set: JoinSet<anyhow::Result<()>>,
    names: HashMap<Id, &'static str>,
    stop: CancellationToken,
    /// A failure seen by `ended` after the stop, for `join`.
    failed: Option<anyhow::Error>,
}

type Done = Result<(Id, anyhow::Result<()>), JoinError>;

impl Tasks {
    /// Tasks of a role that stops when `stop` is cancelled: ending after it is their job.
    pub fn new(stop: CancellationToken) -> Self {
        Self {
            set: JoinSet::new(),
            names: HashMap::new(),
            stop,
            failed: None,
        }
    }

    pub fn spawn<F>(&mut self, name: &'static str, task: F)
    where
        F: Future + Send + 'static,
        F::Output: Outcome,
    {
        let handle = self.set.spawn(async move { task.await.into_result() });
        self.names.insert(handle.id(), name);
    }

    /// Resolves when a task ends before the stop, with why that is an error; pending while
    /// none has (and for ever when there are none). For `select!` beside what the role serves.
    pub async fn ended(&mut self) -> anyhow::Error {
        loop {
            let Some(done) = self.set.join_next_with_id().await else {
                return std::future::pending().await;
            };
            let (name, failure) = self.outcome(done);
            if !self.stop.is_cancelled() {
                return failure.unwrap_or_else(|| anyhow::anyhow!("{name} stopped unexpectedly"));
            }
            if let Some(failure) = failure {
                self.failed.get_or_insert(failure);
            }
        }
    }

    /// After the stop: waits for every task to finish; the first failure, if any.
    pub async fn join(mut self) -> anyhow::Result<()> {
        while let Some(done) = self.set.join_next_with_id().await {
            if let (_, Some(failure)) = self.outcome(done) {
                self.failed.get_or_insert(failure);
            }
        }
        self.failed.map_or(Ok(()), Err)
    }

    fn outcome(&self, done: Done) -> (&'static str, Option<anyhow::Error>) {
        let name = |id| self.names.get(&id).copied().unwrap_or("a background task");
        match done {
            Ok((id, Ok(()))) => (name(id), None),
            Ok((id, Err(e))) => (name(id), Some(e.context(format!("{} failed", name(id))))),
            Err(e) => (
                name(e.id()),
                Some(anyhow::anyhow!("{} panicked: {e}", name(e.id()))),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boom() {
        panic!("boom")
    }

    #[tokio::test]
    async fn a_task_that_ends_before_the_stop_is_an_error_naming_it() {
        let stop = CancellationToken::new();
        let mut tasks = Tasks::new(stop.clone());
        let s = stop.clone();
        tasks.spawn("follower", async move { s.cancelled().await });
        tasks.spawn("recorder", async { boom() });
        let why = tasks.ended().await.to_string();
        assert!(why.contains("recorder panicked"), "{why}");

        let mut tasks = Tasks::new(stop.clone());
        tasks.spawn("fan-out", async {});
        assert_eq!(
            tasks.ended().await.to_string(),
            "fan-out stopped unexpectedly"
        );

        let mut tasks = Tasks::new(stop.clone());
        tasks.spawn("processor", async { Err(anyhow::anyhow!("no Redis")) });
        let why = format!("{:#}", tasks.ended().await);
        assert_eq!(why, "processor failed: no Redis");
    }

    #[tokio::test(start_paused = true)]
    async fn after_the_stop_every_task_is_waited_for() {
        let stop = CancellationToken::new();
        let mut tasks = Tasks::new(stop.clone());
        for name in ["a", "b"] {
            let s = stop.clone();
            tasks.spawn(name, async move { s.cancelled().await });
        }
        let ended = tokio::time::timeout(std::time::Duration::from_secs(60), tasks.ended()).await;
        assert!(ended.is_err(), "nothing ended before the stop");
        // Ending after the stop is what they do: `ended` stays pending, `join` is fine.
        stop.cancel();
        let ended = tokio::time::timeout(std::time::Duration::from_secs(60), tasks.ended()).await;
        assert!(ended.is_err(), "ending after the stop is no failure");
        tasks.join().await.unwrap();

        let mut tasks = Tasks::new(stop.clone());
        tasks.spawn("ok", async {});
        tasks.spawn("bad", async { Err(anyhow::anyhow!("lost")) });
        let why = format!("{:#}", tasks.join().await.unwrap_err());
        assert_eq!(why, "bad failed: lost");
    }
}
