//! The one statement that moves statuses: forward only, counters exact, under any order.

use chrono::Utc;
use herald_shared::db::messages::{self, MessageRef, Transition};
use herald_shared::domain::{MessageId, MessageStatus};
use herald_tests::{TestContext, assert_counters_match, seed_campaign, status_of};
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
        let reduced = messages::reduce(batch.iter().map(|(_, t)| t.clone()).collect());
        for t in &reduced {
            let i = ids
                .iter()
                .position(|id| MessageRef::Id(*id) == t.message)
                .unwrap();
            if expected[i].advances_to(t.status) {
                expected[i] = t.status;
            }
        }
        messages::apply_transitions(&ctx.pool, &reduced)
            .await
            .unwrap();
        assert_counters_match(&ctx.pool, campaign).await;
    }
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(status_of(&ctx.pool, *id).await, expected[i], "message {i}");
    }
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_receipt_for_an_unknown_wamid_is_counted_as_unmatched_and_changes_nothing() {
    let ctx = TestContext::new().await;
    let (campaign, _) = seed_campaign(&ctx, 3).await;
    let applied = messages::apply_transitions(
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
        messages::Applied {
            changed: 0,
            unmatched: 1
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
    let (wa, sent_at): (Option<String>, Option<chrono::DateTime<Utc>>) =
        sqlx::query_as("SELECT wa_message_id, sent_at FROM messages WHERE id = $1")
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
    let applied = messages::apply_transitions(&ctx.pool, &batch)
        .await
        .unwrap();
    assert_eq!(applied.changed, 2);
    let holders: i64 =
        sqlx::query_scalar("SELECT count(*) FROM messages WHERE wa_message_id = 'wamid.SAME'")
            .fetch_one(&ctx.pool)
            .await
            .unwrap();
    assert_eq!(holders, 1);
    assert_counters_match(&ctx.pool, campaign).await;
    ctx.cleanup().await;
}

#[tokio::test]
async fn marking_queued_moves_only_pending_messages_and_their_counters() {
    let ctx = TestContext::new().await;
    let (campaign, ids) = seed_campaign(&ctx, 4).await;
    // The sender got to one first.
    herald_tests::set_status(&ctx.pool, ids[0], MessageStatus::Sent, Some("wamid.first")).await;
    let moved = messages::mark_queued(&ctx.pool, &ids, Utc::now())
        .await
        .unwrap();
    assert_eq!(moved, 3);
    assert_eq!(status_of(&ctx.pool, ids[0]).await, MessageStatus::Sent);
    assert_eq!(status_of(&ctx.pool, ids[3]).await, MessageStatus::Queued);
    assert_eq!(
        messages::mark_queued(&ctx.pool, &ids, Utc::now())
            .await
            .unwrap(),
        0
    );
    assert_counters_match(&ctx.pool, campaign).await;
    ctx.cleanup().await;
}
