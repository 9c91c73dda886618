//! What the event stream keeps in the database: the relay's progress, and dead letters.

use crate::fixtures::NOW;
use stampede::domain::dead_letter::DeadLetterStatus;
use stampede::domain::Timestamp;
use stampede::store::{NewDeadLetter, PageRequest};

store_tests!(relay_progress_only_moves_forward, |store| async move {
    assert_eq!(store.relay_position("kafka").await.unwrap(), 0);
    store.advance_relay("kafka", 40, NOW).await.unwrap();
    assert_eq!(store.relay_position("kafka").await.unwrap(), 40);
    // A relay that lost its lease records late: nothing moves back.
    store.advance_relay("kafka", 25, NOW).await.unwrap();
    assert_eq!(store.relay_position("kafka").await.unwrap(), 40);
    store.advance_relay("kafka", 41, NOW).await.unwrap();
    assert_eq!(store.relay_position("kafka").await.unwrap(), 41);
    assert_eq!(store.relay_position("other").await.unwrap(), 0);
});

fn letter(offset: i64) -> NewDeadLetter {
    NewDeadLetter {
        handler: "points-earn".into(),
        topic: "stampede.order".into(),
        partition: 3,
        offset,
        key: Some("42".into()),
        message: format!(r#"{{"id": {offset}}}"#),
        event_id: Some(offset),
        error: "gateway down".into(),
        attempts: 3,
        first_failed_at: NOW,
    }
}

store_tests!(
    dead_letters_are_kept_listed_and_settled_once,
    |store| async move {
        let later = Timestamp::from_millis(NOW.millis() + 1_000);
        let first = store.insert_dead_letter(&letter(7), NOW).await.unwrap();
        assert_eq!(
            (first.status, first.attempts, first.retries, first.partition),
            (DeadLetterStatus::Open, 3, 0, 3)
        );
        assert_eq!(first.key.as_deref(), Some("42"));
        assert_eq!(first.event_id, Some(7));
        let second = store.insert_dead_letter(&letter(8), NOW).await.unwrap();
        assert!(second.id > first.id);

        // The retry job's view: open, tried fewer than its maximum, oldest first.
        let due = store.retryable_dead_letters(5, 10).await.unwrap();
        assert_eq!(
            due.iter().map(|l| l.id).collect::<Vec<_>>(),
            [first.id, second.id]
        );
        store
            .dead_letter_failed(first.id, "still down", true, later)
            .await
            .unwrap();
        let failed = store.dead_letter(first.id).await.unwrap().unwrap();
        assert_eq!((failed.attempts, failed.retries), (4, 1));
        assert_eq!(
            (failed.error.as_str(), failed.last_failed_at),
            ("still down", later)
        );
        assert_eq!(store.retryable_dead_letters(1, 10).await.unwrap().len(), 1);

        // Settled once: a second replay or a discard of a settled letter changes nothing.
        assert!(store
            .settle_dead_letter(first.id, DeadLetterStatus::Replayed, later)
            .await
            .unwrap());
        assert!(!store
            .settle_dead_letter(first.id, DeadLetterStatus::Discarded, later)
            .await
            .unwrap());
        assert!(store
            .settle_dead_letter(second.id, DeadLetterStatus::Discarded, later)
            .await
            .unwrap());
        assert!(store
            .retryable_dead_letters(5, 10)
            .await
            .unwrap()
            .is_empty());

        let page = PageRequest { page: 1, size: 10 };
        let all = store.dead_letters(None, page).await.unwrap();
        assert_eq!(all.total, 2);
        assert_eq!(all.items[0].id, second.id, "newest first");
        let replayed = store
            .dead_letters(Some(DeadLetterStatus::Replayed), page)
            .await
            .unwrap();
        assert_eq!(
            replayed.items.iter().map(|l| l.id).collect::<Vec<_>>(),
            [first.id]
        );
        let open = store
            .dead_letters(Some(DeadLetterStatus::Open), page)
            .await
            .unwrap();
        assert_eq!(open.total, 0);

        // The same message dead-lettered again reopens its row.
        let again = store.insert_dead_letter(&letter(7), later).await.unwrap();
        assert_eq!(again.id, first.id);
        assert_eq!((again.status, again.attempts), (DeadLetterStatus::Open, 7));
        assert!(store.dead_letter(999_999).await.unwrap().is_none());
    }
);

store_tests!(
    events_appended_under_a_claim_are_appended_once,
    |store| async move {
        let before = store.last_event_id().await.unwrap();
        let refunded = || stampede::domain::events::payment_refunded(7, Some("pay-7"), 5_000);
        assert!(store
            .append_events(Some(("refund-retrier", 99)), &[refunded()], NOW)
            .await
            .unwrap());
        // A redelivery of event 99 to the same handler appends nothing.
        assert!(!store
            .append_events(Some(("refund-retrier", 99)), &[refunded()], NOW)
            .await
            .unwrap());
        // Another handler's claim on the same event is its own.
        assert!(store
            .append_events(Some(("other", 99)), &[], NOW)
            .await
            .unwrap());
        // Without a claim, every call appends.
        let failed = stampede::domain::events::payment_refund_failed(7, "pay-7", 5_000, "timeout");
        assert!(store.append_events(None, &[failed], NOW).await.unwrap());
        let events = store.events_after(before, 10).await.unwrap();
        let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(types, ["payment.refunded", "payment.refund_failed"]);
        assert!(events
            .iter()
            .all(|e| e.aggregate_type == "order" && e.aggregate_id == 7));
    }
);

store_tests!(
    unprocessed_events_leave_out_the_processed_and_the_dead_lettered,
    |store| async move {
        use stampede::domain::events::payment_refund_failed;
        use stampede::store::Backlog;
        let failed = |order_id| payment_refund_failed(order_id, "pay", 1_000, "timeout");
        let before = store.last_event_id().await.unwrap();
        // Another type, which has its own backlog.
        let confirmed = stampede::domain::events::NewEvent {
            aggregate_type: "order",
            aggregate_id: 9,
            event_type: "order.confirmed",
            payload: "{}".into(),
        };
        store
            .append_events(None, &[failed(1), confirmed, failed(2), failed(3)], NOW)
            .await
            .unwrap();
        let ids: Vec<i64> = store
            .events_after(before, 10)
            .await
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect();
        let (first, second, third) = (ids[0], ids[2], ids[3]);
        let due =
            |limit| store.unprocessed_events("refund-retrier", Backlog::PaymentRefundFailed, limit);
        let listed: Vec<i64> = due(10).await.unwrap().iter().map(|e| e.id).collect();
        assert_eq!(
            listed,
            [first, second, third],
            "oldest first, of the type only"
        );
        assert_eq!(due(1).await.unwrap()[0].id, first);
        let confirmations = store
            .unprocessed_events("points-earn", Backlog::OrderConfirmed, 10)
            .await
            .unwrap();
        assert!(confirmations.iter().any(|e| e.id == ids[1]));
        assert!(confirmations
            .iter()
            .all(|e| e.event_type == "order.confirmed"));

        // Processed by this consumer (another's claim does not count), or kept as its dead
        // letter: left out.
        store
            .append_events(Some(("refund-retrier", first)), &[], NOW)
            .await
            .unwrap();
        store
            .append_events(Some(("other", second)), &[], NOW)
            .await
            .unwrap();
        let mut kept = letter(third);
        kept.handler = "refund-retrier".into();
        store.insert_dead_letter(&kept, NOW).await.unwrap();
        let listed: Vec<i64> = due(10).await.unwrap().iter().map(|e| e.id).collect();
        assert_eq!(listed, [second]);
    }
);
