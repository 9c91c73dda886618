//! The use case against a real SQLite store and handlers of the test's own: who may act,
//! what a replay runs, what a failure records, and how the retry job counts.

use super::*;
use crate::clock::ManualClock;
use crate::domain::events::Event;
use crate::events::Handler;
use crate::store::open::TempSqlite;
use crate::store::NewDeadLetter;
use async_trait::async_trait;
use std::sync::Mutex;

const NOW: Timestamp = Timestamp::from_millis(1_764_000_000_000);
/// The aggregate whose events the test handler always fails on.
const POISON: i64 = 13;

/// Acts on `order.confirmed`, once per event id; fails on the [`POISON`] aggregate.
#[derive(Default)]
struct Recorder {
    /// Event ids in the order they were handled, each once.
    handled: Mutex<Vec<i64>>,
}

#[async_trait]
impl Handler for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }

    fn aggregates(&self) -> &'static [&'static str] {
        &["order"]
    }

    fn wants(&self, event_type: &str) -> bool {
        event_type == "order.confirmed"
    }

    async fn handle(&self, event: &Event) -> anyhow::Result<()> {
        if event.aggregate_id == POISON {
            anyhow::bail!("gateway down\nsecond line");
        }
        let mut handled = self.handled.lock().unwrap();
        if !handled.contains(&event.id) {
            handled.push(event.id);
        }
        Ok(())
    }
}

struct Fixture {
    letters: DeadLetters,
    recorder: Arc<Recorder>,
    db: TempSqlite,
}

impl Fixture {
    async fn new() -> Fixture {
        let db = TempSqlite::open(NOW).await;
        let store = db.store.clone();
        let recorder = Arc::new(Recorder::default());
        let letters = DeadLetters {
            store,
            handlers: Handlers::new(vec![recorder.clone()]),
            clock: ManualClock::at(NOW),
            metrics: Arc::new(Metrics::default()),
        };
        Fixture {
            letters,
            recorder,
            db,
        }
    }

    /// A dead letter of `handler` (at offset `event_id`) carrying `message`.
    async fn letter(&self, handler: &str, event_id: i64, message: String) -> i64 {
        let letter = NewDeadLetter {
            handler: handler.into(),
            topic: "stampede.order".into(),
            partition: 0,
            offset: event_id,
            key: Some("7".into()),
            message,
            event_id: Some(event_id),
            error: "consumer gave up".into(),
            attempts: 3,
            first_failed_at: NOW,
        };
        self.letters
            .store
            .insert_dead_letter(&letter, NOW)
            .await
            .unwrap()
            .id
    }

    /// A letter of the recorder with the event `id` of `event_type` on order `order`.
    async fn event_letter(&self, id: i64, event_type: &str, order: i64) -> i64 {
        let event = Event {
            id,
            aggregate_type: "order".into(),
            aggregate_id: order,
            event_type: event_type.into(),
            payload: format!(r#"{{"order_id":{order}}}"#),
            created_at: NOW,
        };
        let message = String::from_utf8(EventMessage::of(&event).to_json()).unwrap();
        self.letter("recorder", id, message).await
    }

    fn handled(&self) -> Vec<i64> {
        self.recorder.handled.lock().unwrap().clone()
    }

    async fn close(self) {
        self.db.close().await;
    }
}

const ADMIN: Actor = Actor::OPERATOR;
const BUYER: Actor = Actor {
    id: 5,
    role: Role::Buyer,
    partner_id: None,
};

#[tokio::test]
async fn a_replay_runs_the_handler_once_and_settles_the_letter() {
    let f = Fixture::new().await;
    let id = f.event_letter(41, "order.confirmed", 7).await;
    assert!(matches!(
        f.letters.replay(&BUYER, id).await,
        Err(AppError::Forbidden)
    ));
    let replayed = f.letters.replay(&ADMIN, id).await.unwrap();
    assert_eq!(replayed.status, DeadLetterStatus::Replayed);
    assert_eq!(
        (replayed.attempts, replayed.retries),
        (3, 0),
        "a success adds no attempt"
    );
    assert_eq!(f.handled(), [41]);
    assert!(matches!(
        f.letters.replay(&ADMIN, id).await,
        Err(AppError::DeadLetterNotOpen)
    ));
    assert!(matches!(
        f.letters.replay(&ADMIN, 999).await,
        Err(AppError::NotFound(_))
    ));
    assert_eq!(f.handled(), [41]);
    assert_eq!(f.letters.metrics.dead_letters_replayed.get(), 1);

    // An event type its consumer passes over is done with, without running the handler.
    let other = f.event_letter(42, "order.paid", 7).await;
    let passed = f.letters.replay(&ADMIN, other).await.unwrap();
    assert_eq!(passed.status, DeadLetterStatus::Replayed);
    assert_eq!(f.handled(), [41]);
    f.close().await;
}

#[tokio::test]
async fn a_failed_replay_keeps_the_letter_open_with_the_reason() {
    let f = Fixture::new().await;
    let poison = f.event_letter(50, "order.confirmed", POISON).await;
    let refused = f.letters.replay(&ADMIN, poison).await.unwrap_err();
    let AppError::ReplayFailed(message) = refused else {
        panic!("{refused:?}");
    };
    assert_eq!(message, "recorder failed again: gateway down second line");
    let letter = f.letters.get(&ADMIN, poison).await.unwrap();
    assert_eq!(letter.status, DeadLetterStatus::Open);
    assert_eq!((letter.attempts, letter.retries), (4, 0));
    assert_eq!(letter.error, message);

    let garbled = f.letter("recorder", 51, "not json".into()).await;
    let refused = f.letters.replay(&ADMIN, garbled).await.unwrap_err();
    assert!(
        matches!(refused, AppError::InvalidMessage(_)),
        "{refused:?}"
    );
    let letter = f.letters.get(&ADMIN, garbled).await.unwrap();
    assert_eq!(
        (letter.status, letter.attempts),
        (DeadLetterStatus::Open, 4)
    );

    let message = String::from_utf8(
        EventMessage::of(&Event {
            id: 52,
            aggregate_type: "order".into(),
            aggregate_id: 7,
            event_type: "order.confirmed".into(),
            payload: "{}".into(),
            created_at: NOW,
        })
        .to_json(),
    )
    .unwrap();
    let orphan = f.letter("retired-handler", 52, message).await;
    let refused = f.letters.replay(&ADMIN, orphan).await.unwrap_err();
    assert!(
        matches!(refused, AppError::UnknownHandler(_)),
        "{refused:?}"
    );
    assert!(f.handled().is_empty());
    assert_eq!(f.letters.metrics.dead_letters_replay_failed.get(), 3);
    f.close().await;
}

#[tokio::test]
async fn replay_all_goes_oldest_first_past_failures() {
    let f = Fixture::new().await;
    let first = f.event_letter(60, "order.confirmed", 1).await;
    f.event_letter(61, "order.confirmed", POISON).await;
    f.event_letter(62, "order.confirmed", 2).await;
    let settled = f.event_letter(63, "order.confirmed", 3).await;
    f.letters.discard(&ADMIN, settled).await.unwrap();
    assert!(matches!(
        f.letters.replay_all(&BUYER).await,
        Err(AppError::Forbidden)
    ));
    let done = f.letters.replay_all(&ADMIN).await.unwrap();
    assert_eq!(
        done,
        ReplayAll {
            replayed: 2,
            failed: 1,
            skipped: 0
        }
    );
    assert_eq!(f.handled(), [60, 62]);
    let open = f
        .letters
        .list(
            &ADMIN,
            Some(DeadLetterStatus::Open),
            PageRequest { page: 1, size: 10 },
        )
        .await
        .unwrap();
    assert_eq!(
        open.items.iter().map(|l| l.event_id).collect::<Vec<_>>(),
        [Some(61)]
    );
    let all = f
        .letters
        .list(&ADMIN, None, PageRequest { page: 1, size: 10 })
        .await
        .unwrap();
    assert_eq!(
        (all.total, all.items[0].id > first),
        (4, true),
        "newest first"
    );
    f.close().await;
}

#[tokio::test]
async fn discarding_settles_an_open_letter_once() {
    let f = Fixture::new().await;
    let id = f.event_letter(70, "order.confirmed", 1).await;
    assert!(matches!(
        f.letters.discard(&BUYER, id).await,
        Err(AppError::Forbidden)
    ));
    let discarded = f.letters.discard(&ADMIN, id).await.unwrap();
    assert_eq!(discarded.status, DeadLetterStatus::Discarded);
    assert!(matches!(
        f.letters.discard(&ADMIN, id).await,
        Err(AppError::DeadLetterNotOpen)
    ));
    assert!(matches!(
        f.letters.replay(&ADMIN, id).await,
        Err(AppError::DeadLetterNotOpen)
    ));
    assert!(matches!(
        f.letters.discard(&ADMIN, 999).await,
        Err(AppError::NotFound(_))
    ));
    assert!(f.handled().is_empty());
    f.close().await;
}

#[tokio::test]
async fn the_retry_job_counts_failures_and_stops_at_its_maximum() {
    let f = Fixture::new().await;
    let good = f.event_letter(80, "order.confirmed", 1).await;
    let poison = f.event_letter(81, "order.confirmed", POISON).await;
    let run = f.letters.retry_due(NOW, 2).await.unwrap();
    assert_eq!(
        run,
        RetryRun {
            replayed: 1,
            failed: 1,
            open: 1
        }
    );
    let letter = f.letters.get(&ADMIN, good).await.unwrap();
    assert_eq!(letter.status, DeadLetterStatus::Replayed);
    let run = f.letters.retry_due(NOW, 2).await.unwrap();
    assert_eq!((run.replayed, run.failed), (0, 1));
    // Retried twice: left to an operator.
    let run = f.letters.retry_due(NOW, 2).await.unwrap();
    assert_eq!((run.replayed, run.failed, run.open), (0, 0, 1));
    let letter = f.letters.get(&ADMIN, poison).await.unwrap();
    assert_eq!((letter.attempts, letter.retries), (5, 2));
    assert_eq!(letter.status, DeadLetterStatus::Open);
    let metrics = &f.letters.metrics;
    assert_eq!(metrics.dead_letters_retry_failed.get(), 2);
    assert_eq!(metrics.dead_letters_open.get(), 1);
    // An operator's replay is not one of the job's retries.
    assert!(f.letters.replay(&ADMIN, poison).await.is_err());
    let letter = f.letters.get(&ADMIN, poison).await.unwrap();
    assert_eq!((letter.attempts, letter.retries), (6, 2));
    f.close().await;
}

#[test]
fn refusals_are_one_bounded_line() {
    assert_eq!(limited("a\nb\tc", 10), "a b c");
    assert_eq!(limited("abcdef", 3), "abc…");
    assert_eq!(limited("abc", 3), "abc");
    assert_eq!(
        message_json("{\"type\":\"order.paid\"}")["type"],
        "order.paid"
    );
    assert_eq!(event_type(&message_json("not json")), None);
    assert_eq!(
        event_type(&message_json("{\"type\":\"order.paid\"}")).as_deref(),
        Some("order.paid")
    );
}
