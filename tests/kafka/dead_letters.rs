//! Issue 9, test 3: a poison message — a forged `order.confirmed` for an order that is paid
//! but not confirmed, which the points handler refuses — is dead-lettered after exactly the
//! configured attempts (a `dead_letters` row and a copy on `stampede.dlq`) while the other
//! messages keep flowing; after the order really is confirmed and the letter replayed, it
//! is processed once and the buyer has earned once.
//!
//! The poison goes to the partition of another buyer's order, ahead of that order's
//! confirmation: that buyer earning proves the partition moved on past it (on any other
//! partition, the confirmation would never have been behind it).

use crate::harness::{
    confirm_ok, earning, outbox_events, pay_ok, points_balance, read_until_published, run,
    wait_for_balance, KafkaTest, TestProducer, TopicReader, PREFIX,
};
use crate::helpers::{eventually, expect, int};
use serde_json::{json, Value};
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(60);
/// Not the default (3), so the test tells "the configured number" from "three".
const MAX_ATTEMPTS: u32 = 4;
/// No outbox of a test comes near this many events.
const FORGED_ID_BASE: i64 = 1_000_000_000;

/// A dead letter as the `dead_letters` table holds it.
#[derive(Debug)]
struct Letter {
    id: i64,
    handler: String,
    topic: String,
    kafka_partition: i64,
    kafka_offset: i64,
    message_key: Option<String>,
    message: String,
    event_id: Option<i64>,
    attempts: i64,
    status: String,
}

async fn letters_of(k: &KafkaTest, event_id: i64) -> Vec<Letter> {
    use sqlx::{Connection, Row};
    let mut conn = sqlx::PgConnection::connect(&k.app.database_url)
        .await
        .expect("connect to the test database");
    let rows = sqlx::query(
        "SELECT id, handler, topic, kafka_partition, kafka_offset, message_key, message,
                event_id, attempts, status
         FROM dead_letters WHERE event_id = $1 ORDER BY id",
    )
    .bind(event_id)
    .fetch_all(&mut conn)
    .await
    .expect("read dead_letters");
    let _ = conn.close().await;
    rows.iter()
        .map(|row| Letter {
            id: row.get("id"),
            handler: row.get("handler"),
            topic: row.get("topic"),
            kafka_partition: row.get("kafka_partition"),
            kafka_offset: row.get("kafka_offset"),
            message_key: row.get("message_key"),
            message: row.get("message"),
            event_id: row.get("event_id"),
            attempts: row.get("attempts"),
            status: row.get("status"),
        })
        .collect()
}

async fn processed(k: &KafkaTest, event_id: i64) -> i64 {
    k.count(
        "SELECT COUNT(*) FROM processed_events WHERE consumer = 'points-earn' AND event_id = $1",
        &[event_id],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poison_message_is_dead_lettered_while_others_flow_and_replays_once() {
    run(
        |c| {
            c.consumer_max_attempts = MAX_ATTEMPTS;
            // The retry job leaves the letter to the operator: the test replays it.
            c.dlq_retry_max = 0;
        },
        |k| async move {
            let app = &k.app;
            let product = app.simple_product(250_000, 10).await;
            let buyers = app.buyers(2).await;
            let (ann, bob) = (&buyers[0], &buyers[1]);
            let ann_order = app.order_ok(ann, &[(product, 1)]).await;
            let bob_order = app.order_ok(bob, &[(product, 1)]).await;
            let ann_id = int(&ann_order, "id");
            pay_ok(app, ann, &ann_order).await;
            pay_ok(app, bob, &bob_order).await;

            // The forged confirmation looks like the real one would: ann's `order.paid`
            // with the status changed, under an event id no outbox row has.
            let events = outbox_events(&app.database_url).await;
            let paid_event = |order_id: i64| {
                events
                    .iter()
                    .find(|e| e.event_type == "order.paid" && e.aggregate_id == order_id)
                    .expect("the order.paid event in the outbox")
                    .clone()
            };
            let paid = paid_event(ann_id);
            let bob_paid = paid_event(int(&bob_order, "id"));
            let published = read_until_published(
                &k.broker.bootstrap(),
                &[paid.clone(), bob_paid.clone()],
                WITHIN,
            )
            .await;
            let bob_partition = published
                .iter()
                .find(|m| m.event_id() == Some(bob_paid.id))
                .unwrap()
                .partition;
            let forged_id = FORGED_ID_BASE + ann_id;
            let mut payload: Value = serde_json::from_str(&paid.payload).unwrap();
            payload["status"] = json!("confirmed");
            let created_at = time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap();
            let forged = json!({
                "id": forged_id,
                "type": "order.confirmed",
                "aggregate_type": "order",
                "aggregate_id": ann_id,
                "payload": payload,
                "created_at": created_at,
            })
            .to_string();
            let topic = format!("{PREFIX}order");
            let headers = vec![
                ("event-id".to_owned(), Some(forged_id.to_string())),
                ("event-type".to_owned(), Some("order.confirmed".to_owned())),
            ];
            let producer = TestProducer::new(&k.broker.bootstrap());
            let (partition, offset) = producer
                .produce_to(
                    &topic,
                    Some(bob_partition),
                    &ann_id.to_string(),
                    forged.as_bytes(),
                    &headers,
                )
                .await;
            assert_eq!(partition, bob_partition);

            // Others keep flowing: bob confirms after the poison was sent, his confirmation
            // lands behind it on the same partition, and he earns.
            confirm_ok(app, bob, int(&bob_order, "id")).await;
            wait_for_balance(app, bob, earning(&bob_order), WITHIN).await;

            let letter = eventually(WITHIN, "the forged message's dead letter", || async {
                letters_of(&k, forged_id).await.into_iter().next()
            })
            .await;
            assert_eq!(letter.handler, "points-earn", "{letter:?}");
            assert_eq!(letter.attempts, i64::from(MAX_ATTEMPTS), "{letter:?}");
            assert_eq!(letter.status, "open", "{letter:?}");
            assert_eq!(
                (
                    letter.topic.as_str(),
                    letter.kafka_partition,
                    letter.kafka_offset
                ),
                (topic.as_str(), i64::from(partition), offset),
                "{letter:?}"
            );
            assert_eq!(letter.message_key, Some(ann_id.to_string()), "{letter:?}");
            assert_eq!(letter.message, forged, "{letter:?}");
            assert_eq!(letter.event_id, Some(forged_id));
            // Every attempt, as the handler's own counters saw them: nothing else failed
            // in this test.
            let handler = [("handler", "points-earn")];
            assert_eq!(
                k.metric("consumer_failed_total", &handler).await,
                f64::from(MAX_ATTEMPTS)
            );
            assert_eq!(
                k.metric("consumer_dead_lettered_total", &handler).await,
                1.0
            );
            assert_eq!(
                processed(&k, forged_id).await,
                0,
                "a refused event was recorded"
            );
            assert_eq!(
                points_balance(app, ann).await,
                0,
                "ann earned from a forgery"
            );

            // Its copy on the dead-letter topic: the message as it was.
            let dlq = format!("{PREFIX}dlq");
            let mut reader =
                TopicReader::open(&k.broker.bootstrap(), std::slice::from_ref(&dlq), WITHIN).await;
            let is_copy = |m: &crate::harness::Received| m.value == forged.as_bytes();
            reader
                .read_until(
                    WITHIN,
                    "the forged message's copy on the dead-letter topic",
                    |received| received.iter().any(is_copy),
                    |received| format!("{received:?}"),
                )
                .await;
            let copy = reader.received().iter().find(|m| is_copy(m)).unwrap();
            assert_eq!(copy.key.as_deref(), Some(ann_id.to_string().as_str()));

            // Ann really confirms: the real event earns, once.
            confirm_ok(app, ann, ann_id).await;
            let ann_points = earning(&ann_order);
            wait_for_balance(app, ann, ann_points, WITHIN).await;

            let admin = app.admin_token().await;
            let replay = app
                .post_empty(
                    &format!("/admin/dead-letters/{}/replay", letter.id),
                    Some(&admin),
                )
                .await;
            assert_eq!(expect(&replay, 200)["status"], "replayed", "{:?}", replay.1);
            eventually(WITHIN, "the replayed event to be recorded", || async {
                (processed(&k, forged_id).await == 1).then_some(())
            })
            .await;

            let letters = letters_of(&k, forged_id).await;
            assert_eq!(
                letters.len(),
                1,
                "dead-lettered more than once: {letters:?}"
            );
            assert_eq!(letters[0].status, "replayed", "{letters:?}");
            assert_eq!(
                points_balance(app, ann).await,
                ann_points,
                "ann earned twice"
            );
            let earned = k
                .count(
                    "SELECT COUNT(*) FROM point_ledger WHERE kind = 'earn' AND order_id = $1",
                    &[ann_id],
                )
                .await;
            assert_eq!(earned, 1, "earn rows of ann's order");
            assert_eq!(processed(&k, forged_id).await, 1);
        },
    )
    .await;
}
