//! The one statement that moves statuses: forward only, counters exact, under any order.

use chrono::Utc;
use herald_shared::db::counters::Delta;
use herald_shared::db::transitions::{self, Engine, MessageRef, Sent, Transition};
use herald_shared::domain::{CampaignState, MessageId, MessageStatus};
use herald_tests::{
    TestContext, assert_counters_match, phone_number_of, queue_through, seed_campaign, set_status,
    status_of,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

fn transition(id: MessageId, status: MessageStatus) -> Transition {
    Transition {
        message: MessageRef::Id(id),
        status,
        wa_message_id: None,
        at: Utc::now(),
        error_code: (status == MessageStatus::Failed).then_some(131026),
        error_title: None,
        attempts: 0,
        number: None,
    }
}

#[tokio::test]
async fn random_batches_in_random_order_end_where_the_forward_only_rule_says() {
    let ctx = TestContext::new().await;
    let (campaign, ids) = seed_campaign(&ctx, 40).await;
    let mut rng = StdRng::seed_from_u64(7);
    let mut expected = vec![MessageStatus::Pending; ids.len()];
    for _round in 0..30 {
        let mut batch = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            if rng.random_bool(0.5) {
                let status = MessageStatus::ALL[rng.random_range(0..MessageStatus::ALL.len())];
                batch.push((i, transition(*id, status)));
            }
        }
        batch.shuffle(&mut rng);
        // The model: the reduced batch's one status per message, applied if it advances.
        let reduced = transitions::reduce(batch.iter().map(|(_, t)| t.clone()).collect());
        for t in &reduced {
            let i = ids
                .iter()
                .position(|id| MessageRef::Id(*id) == t.message)
                .unwrap();
            if expected[i].advances_to(t.status) {
                expected[i] = t.status;
            }
        }
        transitions::apply(&ctx.pool, &reduced).await.unwrap();
        assert_counters_match(&ctx.pool, campaign).await;
    }
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(status_of(&ctx.pool, *id).await, expected[i], "message {i}");
    }
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_receipt_applies_only_to_a_message_its_number_sent() {
    let ctx = TestContext::new().await;
    let (campaign, ids) = seed_campaign(&ctx, 3).await;
    let number = phone_number_of(&ctx.pool, ids[0]).await;
    set_status(&ctx.pool, ids[1], MessageStatus::Sent, Some("wamid.one")).await;
    // Another business number on the same Meta app names Herald's message ids and wamids.
    let stranger = Some("999999999999".to_owned());
    let applied = transitions::apply(
        &ctx.pool,
        &[
            Transition {
                number: stranger.clone(),
                ..transition(ids[0], MessageStatus::Failed)
            },
            Transition {
                message: MessageRef::WaId("wamid.one".into()),
                number: stranger,
                ..transition(ids[1], MessageStatus::Read)
            },
        ],
    )
    .await
    .unwrap();
    assert_eq!((applied.changed, applied.foreign), (0, 2));
    assert_eq!(status_of(&ctx.pool, ids[0]).await, MessageStatus::Pending);
    assert_eq!(status_of(&ctx.pool, ids[1]).await, MessageStatus::Sent);
    // The number that sent them moves them.
    let applied = transitions::apply(
        &ctx.pool,
        &[Transition {
            message: MessageRef::WaId("wamid.one".into()),
            number: Some(number),
            ..transition(ids[1], MessageStatus::Read)
        }],
    )
    .await
    .unwrap();
    assert_eq!((applied.changed, applied.foreign), (1, 0));
    assert_eq!(status_of(&ctx.pool, ids[1]).await, MessageStatus::Read);
    assert_counters_match(&ctx.pool, campaign).await;
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_receipt_for_an_unknown_wamid_is_counted_as_unmatched_and_changes_nothing() {
    let ctx = TestContext::new().await;
    let (campaign, _) = seed_campaign(&ctx, 3).await;
    let applied = transitions::apply(
        &ctx.pool,
        &[Transition {
            message: MessageRef::WaId("wamid.nobody".into()),
            ..transition(MessageId(0), MessageStatus::Read)
        }],
    )
    .await
    .unwrap();
    assert_eq!(
        applied,
        transitions::Applied {
            changed: 0,
            unmatched: 1,
            unmatched_wamids: vec!["wamid.nobody".into()],
            foreign: 0,
        }
    );
    assert_counters_match(&ctx.pool, campaign).await;
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_late_sent_after_delivered_keeps_delivered_but_records_the_send() {
    let ctx = TestContext::new().await;
    let (campaign, ids) = seed_campaign(&ctx, 1).await;
    let id = ids[0];
    herald_tests::set_status(&ctx.pool, id, MessageStatus::Queued, None).await;
    // The receipt came first, matched by callback data.
    herald_tests::set_status(&ctx.pool, id, MessageStatus::Delivered, Some("wamid.A")).await;
    herald_tests::set_status(&ctx.pool, id, MessageStatus::Sent, Some("wamid.A")).await;
    assert_eq!(status_of(&ctx.pool, id).await, MessageStatus::Delivered);
    let (wa, sent_at): (Option<String>, Option<chrono::DateTime<Utc>>) = sqlx::query_as(
        "SELECT (SELECT wa_message_id FROM message_wamids WHERE message_id = m.id), sent_at
             FROM messages m WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&ctx.pool)
    .await
    .unwrap();
    assert_eq!(wa.as_deref(), Some("wamid.A"));
    assert!(sent_at.is_some());
    assert_counters_match(&ctx.pool, campaign).await;
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_wamid_claimed_twice_is_recorded_once_and_the_batch_still_lands() {
    let ctx = TestContext::new().await;
    let (campaign, ids) = seed_campaign(&ctx, 3).await;
    herald_tests::set_status(&ctx.pool, ids[0], MessageStatus::Sent, Some("wamid.SAME")).await;
    let batch: Vec<Transition> = ids[1..]
        .iter()
        .map(|id| Transition {
            wa_message_id: Some("wamid.SAME".into()),
            ..transition(*id, MessageStatus::Sent)
        })
        .collect();
    let applied = transitions::apply(&ctx.pool, &batch).await.unwrap();
    assert_eq!(applied.changed, 2);
    let holder: MessageId = sqlx::query_scalar(
        "SELECT message_id FROM message_wamids WHERE wa_message_id = 'wamid.SAME'",
    )
    .fetch_one(&ctx.pool)
    .await
    .unwrap();
    assert_eq!(holder, ids[0]);
    assert_counters_match(&ctx.pool, campaign).await;
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_recorded_page_queues_its_lanes_pending_messages_once() {
    let ctx = TestContext::new().await;
    let (campaign, ids) = seed_campaign(&ctx, 4).await;
    // The sender got to one first.
    herald_tests::set_status(&ctx.pool, ids[0], MessageStatus::Sent, Some("wamid.first")).await;
    assert_eq!(queue_through(&ctx.pool, ids[2]).await, 2);
    assert_eq!(status_of(&ctx.pool, ids[0]).await, MessageStatus::Sent);
    assert_eq!(status_of(&ctx.pool, ids[2]).await, MessageStatus::Queued);
    assert_eq!(status_of(&ctx.pool, ids[3]).await, MessageStatus::Pending);
    assert_counters_match(&ctx.pool, campaign).await;
    // Recorded again (two fan-outs, or one after a crash): nothing more is queued.
    assert_eq!(queue_through(&ctx.pool, ids[2]).await, 0);
    assert_eq!(queue_through(&ctx.pool, ids[3]).await, 1);
    assert_counters_match(&ctx.pool, campaign).await;
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_page_recorded_while_its_send_is_recorded_counts_the_send_once() {
    let ctx = TestContext::new().await;
    let (campaign, ids) = seed_campaign(&ctx, 3).await;
    // The sender sent the first before fan-out recorded its page: its transaction holds the
    // lane's share lock until it commits.
    let mut tx = ctx.pool.begin().await.unwrap();
    let mut engine = Engine::default();
    engine
        .record_sent(&mut tx, &[sent(ids[0])], &[])
        .await
        .unwrap();
    let pool = ctx.pool.clone();
    let through = ids[2];
    let page = tokio::spawn(async move { queue_through(&pool, through).await });
    // The page waits for the lane until the send commits, then counts the two still pending.
    herald_tests::waiting_for_a_lock(&ctx.pool, "%record_fanout_page%").await;
    engine.finish(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(page.await.unwrap(), 2);
    assert_eq!(status_of(&ctx.pool, ids[0]).await, MessageStatus::Sent);
    assert_eq!(status_of(&ctx.pool, ids[1]).await, MessageStatus::Queued);
    assert_counters_match(&ctx.pool, campaign).await;

    // A send recorded after the page: from `queued`.
    transitions::record_sent(&ctx.pool, &[sent(ids[1])])
        .await
        .unwrap();
    assert_counters_match(&ctx.pool, campaign).await;
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_send_with_a_wamid_another_message_holds_is_recorded_and_receipts_find_the_lowest() {
    let ctx = TestContext::new().await;
    let (campaign, ids) = seed_campaign(&ctx, 3).await;
    transitions::record_sent(&ctx.pool, &[sent(ids[0])])
        .await
        .unwrap();
    let wamid = format!("wamid.{}", ids[0].0);
    let same = Sent {
        wa_message_id: wamid.clone(),
        ..sent(ids[1])
    };
    // The batch lands; both keep the wamid (Meta never repeats one, a stand-in might).
    let unrecorded = transitions::record_sent(&ctx.pool, &[same, sent(ids[2])])
        .await
        .unwrap();
    assert!(unrecorded.is_empty());
    for id in &ids {
        assert_eq!(status_of(&ctx.pool, *id).await, MessageStatus::Sent);
    }
    assert_eq!(wamids_of(&ctx, ids[1]).await, vec![wamid.clone()]);
    // A receipt naming it moves one message, the lowest id.
    let receipt = Transition {
        message: MessageRef::WaId(wamid),
        ..transition(ids[0], MessageStatus::Delivered)
    };
    let applied = transitions::apply(&ctx.pool, &[receipt]).await.unwrap();
    assert_eq!(applied.changed, 1);
    assert_eq!(status_of(&ctx.pool, ids[0]).await, MessageStatus::Delivered);
    assert_eq!(status_of(&ctx.pool, ids[1]).await, MessageStatus::Sent);
    assert_counters_match(&ctx.pool, campaign).await;
    ctx.cleanup().await;
}

fn sent(id: MessageId) -> Sent {
    Sent {
        message: id,
        wa_message_id: format!("wamid.{}", id.0),
        at: Utc::now(),
    }
}

async fn wamids_of(ctx: &TestContext, id: MessageId) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT wa_message_id FROM message_wamids WHERE message_id = $1 ORDER BY wa_message_id",
    )
    .bind(id)
    .fetch_all(&ctx.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn recording_sends_moves_queued_and_pending_ones_and_hands_back_the_rest() {
    let ctx = TestContext::new().await;
    let (campaign, ids) = seed_campaign(&ctx, 5).await;
    queue_through(&ctx.pool, ids[2]).await;
    // A receipt got to one first; another already failed.
    herald_tests::set_status(&ctx.pool, ids[1], MessageStatus::Delivered, None).await;
    herald_tests::set_status(&ctx.pool, ids[2], MessageStatus::Failed, None).await;
    let batch: Vec<Sent> = ids.iter().map(|id| sent(*id)).collect();
    let unrecorded = transitions::record_sent(&ctx.pool, &batch).await.unwrap();
    let handed_back: Vec<MessageId> = unrecorded.iter().map(|s| s.message).collect();
    assert_eq!(handed_back, vec![ids[1], ids[2]]);
    for id in [ids[0], ids[3], ids[4]] {
        assert_eq!(status_of(&ctx.pool, id).await, MessageStatus::Sent);
        assert_eq!(wamids_of(&ctx, id).await, vec![format!("wamid.{}", id.0)]);
    }
    assert!(wamids_of(&ctx, ids[1]).await.is_empty());
    let attempts: Vec<i32> =
        sqlx::query_scalar("SELECT attempts FROM messages WHERE campaign_id = $1 ORDER BY id")
            .bind(campaign)
            .fetch_all(&ctx.pool)
            .await
            .unwrap();
    assert_eq!(attempts, vec![1, 0, 0, 1, 1]);
    assert_counters_match(&ctx.pool, campaign).await;

    // What was handed back goes the general way: the delivered one keeps its status and
    // gains its wamid, the failed one stays failed.
    let rest: Vec<Transition> = unrecorded.into_iter().map(Transition::from).collect();
    transitions::apply(&ctx.pool, &rest).await.unwrap();
    assert_eq!(status_of(&ctx.pool, ids[1]).await, MessageStatus::Delivered);
    assert_eq!(status_of(&ctx.pool, ids[2]).await, MessageStatus::Failed);
    assert_eq!(
        wamids_of(&ctx, ids[1]).await,
        vec![format!("wamid.{}", ids[1].0)]
    );
    assert_counters_match(&ctx.pool, campaign).await;
    ctx.cleanup().await;
}

#[tokio::test]
async fn the_recorder_moves_rows_first_and_counts_them_after() {
    let ctx = TestContext::new().await;
    let (campaign, ids) = seed_campaign(&ctx, 4).await;
    queue_through(&ctx.pool, ids[1]).await;
    herald_tests::set_status(&ctx.pool, ids[1], MessageStatus::Delivered, None).await;
    let batch: Vec<Sent> = ids.iter().rev().map(|id| sent(*id)).collect();
    let mut tx = ctx.pool.begin().await.unwrap();
    let mut engine = Engine::default();
    let unrecorded = engine.record_sent(&mut tx, &batch, &[]).await.unwrap();
    // One left `queued`, two left `pending`; the delivered one is handed back.
    assert_eq!(
        engine.deltas().get(campaign),
        Some(Delta {
            queued: -1,
            pending: -2,
            sent: 3,
            ..Delta::default()
        })
    );
    assert_eq!(
        unrecorded.iter().map(|s| s.message).collect::<Vec<_>>(),
        vec![ids[1]]
    );
    for id in [ids[0], ids[2], ids[3]] {
        let status: MessageStatus = sqlx::query_scalar("SELECT status FROM messages WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert_eq!(status, MessageStatus::Sent);
    }
    let sent_counter = || sqlx::query_scalar::<_, i64>("SELECT sent FROM campaigns WHERE id = $1");
    assert_eq!(
        sent_counter()
            .bind(campaign)
            .fetch_one(&mut *tx)
            .await
            .unwrap(),
        0,
        "the counters wait for the engine's finish"
    );
    engine.finish(&mut tx).await.unwrap();
    assert_eq!(
        sent_counter()
            .bind(campaign)
            .fetch_one(&mut *tx)
            .await
            .unwrap(),
        3
    );
    tx.commit().await.unwrap();
    assert_counters_match(&ctx.pool, campaign).await;
    ctx.cleanup().await;
}

#[tokio::test]
async fn recording_the_last_sends_completes_a_running_campaign() {
    let ctx = TestContext::new().await;
    let (campaign, ids) = seed_campaign(&ctx, 3).await;
    sqlx::query("UPDATE campaigns SET state = 'running' WHERE id = $1")
        .bind(campaign)
        .execute(&ctx.pool)
        .await
        .unwrap();
    queue_through(&ctx.pool, ids[ids.len() - 1]).await;
    let state = || async {
        sqlx::query_scalar::<_, CampaignState>("SELECT state FROM campaigns WHERE id = $1")
            .bind(campaign)
            .fetch_one(&ctx.pool)
            .await
            .unwrap()
    };
    transitions::record_sent(&ctx.pool, &[sent(ids[0]), sent(ids[1])])
        .await
        .unwrap();
    assert_eq!(state().await, CampaignState::Running);
    transitions::record_sent(&ctx.pool, &[sent(ids[2])])
        .await
        .unwrap();
    assert_eq!(state().await, CampaignState::Completed);
    assert_counters_match(&ctx.pool, campaign).await;
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_resent_message_is_found_by_either_wamid_and_deleting_it_drops_both() {
    let ctx = TestContext::new().await;
    let (campaign, ids) = seed_campaign(&ctx, 1).await;
    transitions::record_sent(&ctx.pool, &[sent(ids[0])])
        .await
        .unwrap();
    // The first send's outcome was lost; the resend got another wamid.
    let resend = Sent {
        wa_message_id: "wamid.resend".into(),
        ..sent(ids[0])
    };
    let rest = transitions::record_sent(&ctx.pool, &[resend])
        .await
        .unwrap();
    transitions::apply(
        &ctx.pool,
        &rest.into_iter().map(Transition::from).collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    let receipt = |wamid: &str, status| Transition {
        message: MessageRef::WaId(wamid.into()),
        ..transition(ids[0], status)
    };
    let first = format!("wamid.{}", ids[0].0);
    let applied = transitions::apply(&ctx.pool, &[receipt(&first, MessageStatus::Delivered)])
        .await
        .unwrap();
    assert_eq!(
        applied,
        transitions::Applied {
            changed: 1,
            ..Default::default()
        }
    );
    let applied = transitions::apply(&ctx.pool, &[receipt("wamid.resend", MessageStatus::Read)])
        .await
        .unwrap();
    assert_eq!(
        applied,
        transitions::Applied {
            changed: 1,
            ..Default::default()
        }
    );
    assert_eq!(status_of(&ctx.pool, ids[0]).await, MessageStatus::Read);
    assert_counters_match(&ctx.pool, campaign).await;

    sqlx::query("DELETE FROM campaigns WHERE id = $1")
        .bind(campaign)
        .execute(&ctx.pool)
        .await
        .unwrap();
    assert!(wamids_of(&ctx, ids[0]).await.is_empty());
    ctx.cleanup().await;
}

/// The messages of Postgres's notices, which sqlx reports as tracing events.
#[derive(Clone, Default)]
struct Notices(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Notices {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Message(Option<String>);
        impl tracing::field::Visit for Message {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                if field.name() == "message" {
                    self.0 = Some(value.to_owned());
                }
            }
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = Some(format!("{value:?}"));
                }
            }
        }
        if event.metadata().target() == "sqlx::postgres::notice" {
            let mut message = Message(None);
            event.record(&mut message);
            self.0.lock().unwrap().extend(message.0);
        }
    }
}

/// Rows a plan node and those under it compared and threw away in their joins, over all loops.
fn rows_removed_by_joins(node: &serde_json::Value) -> f64 {
    let loops = node["Actual Loops"].as_f64().unwrap_or(1.0);
    let own = node["Rows Removed by Join Filter"].as_f64().unwrap_or(0.0) * loops;
    let below: f64 = node["Plans"]
        .as_array()
        .into_iter()
        .flatten()
        .map(rows_removed_by_joins)
        .sum();
    own + below
}

/// After a burst (Meta delivering a backlog) a webhook processor applies thousands of statuses
/// in one statement. A plan that joins two of a statement's intermediate results compares every
/// row with every other: 5,000 statuses took 4.5 s, 14,000 over 20 s, and receipts waited
/// behind them. Postgres's `auto_explain` reports the plans the recorder's and the processors'
/// statements ran with, generic (what a prepared statement settles on after its first five
/// runs, estimated without the arrays' sizes); their joins must not have thrown away more rows
/// than the batch holds.
#[tokio::test(flavor = "current_thread")]
async fn a_large_batch_is_recorded_and_applied_without_comparing_every_row_with_every_other() {
    use sqlx::{Acquire, Executor};
    use tracing_subscriber::layer::SubscriberExt;

    const BATCH: usize = 3_000;
    let ctx = TestContext::new().await;
    let (campaign, mut ids) = seed_campaign(&ctx, BATCH).await;
    ids.shuffle(&mut StdRng::seed_from_u64(3));
    let sends: Vec<Sent> = ids.iter().map(|id| sent(*id)).collect();
    let receipts: Vec<Transition> = ids
        .iter()
        .map(|id| transition(*id, MessageStatus::Delivered))
        .collect();

    let notices = Notices::default();
    let _subscriber =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(notices.clone()));
    let mut conn = ctx.pool.acquire().await.unwrap();
    conn.execute(
        "LOAD 'auto_explain';
         SET auto_explain.log_min_duration = 0;
         SET auto_explain.log_analyze = on;
         SET auto_explain.log_format = json;
         SET auto_explain.log_level = notice;
         SET plan_cache_mode = force_generic_plan",
    )
    .await
    .unwrap();
    let mut tx = conn.begin().await.unwrap();
    let mut engine = Engine::default();
    let unrecorded = engine.record_sent(&mut tx, &sends, &[]).await.unwrap();
    let applied = engine.apply(&mut tx, &receipts).await.unwrap();
    engine.finish(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    conn.close_on_drop();
    drop(conn);
    assert!(unrecorded.is_empty());
    assert_eq!(applied.changed, BATCH as i64);

    let plans: Vec<serde_json::Value> = notices
        .0
        .lock()
        .unwrap()
        .iter()
        .filter_map(|notice| notice.split_once("plan:").map(|(_, plan)| plan.to_owned()))
        .map(|plan| serde_json::from_str(&plan).expect("auto_explain's plan is JSON"))
        .filter(|plan: &serde_json::Value| {
            plan["Query Text"]
                .as_str()
                .unwrap_or("")
                .contains("message_wamids")
        })
        .collect();
    assert_eq!(plans.len(), 2, "auto_explain reported both statements");
    for plan in plans {
        let removed = rows_removed_by_joins(&plan["Plan"]);
        assert!(
            removed <= BATCH as f64,
            "{BATCH} messages compared and threw away {removed} rows in the joins of\n{}",
            plan["Query Text"].as_str().unwrap_or_default()
        );
    }
    assert_counters_match(&ctx.pool, campaign).await;
    ctx.cleanup().await;
}

/// A webhook batch records a reply to a campaign (a row referencing it) before it moves the
/// campaign's counters; another batch moving the same campaign meanwhile must not wait for it,
/// or the first, taking its own counter lock behind the second, deadlocks with it.
#[tokio::test]
async fn a_row_referencing_a_campaign_does_not_hold_up_its_counters() {
    let ctx = TestContext::new().await;
    let (campaign, _) = seed_campaign(&ctx, 1).await;
    let mut replying = ctx.pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO engagements (wa_message_id, campaign_id, kind, recipient)
         VALUES ('wamid.reply', $1, 'replied', '+447400000000')",
    )
    .bind(campaign)
    .execute(&mut *replying)
    .await
    .unwrap();
    let mut counting = ctx.pool.begin().await.unwrap();
    sqlx::query("SET LOCAL lock_timeout = '5s'")
        .execute(&mut *counting)
        .await
        .unwrap();
    let mut engine = Engine::default();
    engine.deltas().of(campaign).clicked += 1;
    engine
        .finish(&mut counting)
        .await
        .expect("the counters move while the reply's transaction is open");
    counting.commit().await.unwrap();
    let mut engine = Engine::default();
    engine.deltas().of(campaign).replied += 1;
    engine.finish(&mut replying).await.unwrap();
    replying.commit().await.unwrap();
    let (replied, clicked): (i64, i64) =
        sqlx::query_as("SELECT replied, clicked FROM campaigns WHERE id = $1")
            .bind(campaign)
            .fetch_one(&ctx.pool)
            .await
            .unwrap();
    assert_eq!((replied, clicked), (1, 1));
    ctx.cleanup().await;
}
