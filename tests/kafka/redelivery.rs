//! Issue 9, test 4: the same `order.confirmed` delivered twice earns points once. The
//! second delivery is the relay's own message, read back from the topic and produced again
//! unchanged (key, value, headers), as a producer retry or a republishing relay would.

use crate::harness::{
    committed_offset, confirm_ok, earning, outbox_events, pay_ok, run, wait_for_balance,
    TestProducer, TopicReader, PREFIX,
};
use crate::helpers::{eventually, int};
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_order_confirmed_delivered_twice_earns_points_once() {
    run(|_| {}, |k| async move {
        let app = &k.app;
        let product = app.simple_product(123_400, 5).await;
        let buyer = app.buyer().await;
        let order = app.order_ok(&buyer, &[(product, 1)]).await;
        let order_id = int(&order, "id");
        pay_ok(app, &buyer, &order).await;
        confirm_ok(app, &buyer, order_id).await;
        let points = earning(&order);
        assert!(points > 0);
        wait_for_balance(app, &buyer, points, WITHIN).await;

        let confirmed = outbox_events(&app.database_url)
            .await
            .into_iter()
            .find(|e| e.event_type == "order.confirmed" && e.aggregate_id == order_id)
            .expect("the order.confirmed event in the outbox");
        let topic = format!("{PREFIX}order");
        let mut reader = TopicReader::open(&k.broker.bootstrap(), std::slice::from_ref(&topic), WITHIN).await;
        let is_it = |m: &crate::harness::Received| m.event_id() == Some(confirmed.id);
        reader
            .read_until(
                WITHIN,
                "the relay's order.confirmed message",
                |received| received.iter().any(is_it),
                |received| format!("{} messages", received.len()),
            )
            .await;
        let original = reader.received().iter().find(|m| is_it(m)).unwrap().clone();

        let producer = TestProducer::new(&k.broker.bootstrap());
        let key = original.key.clone().expect("the relay's message has a key");
        let (partition, offset) = producer
            .produce(&topic, &key, &original.value, &original.headers)
            .await;
        assert_eq!(
            partition, original.partition,
            "the same key went to another partition"
        );

        // Offsets are committed only after the handler's transaction: once the points
        // group's committed offset is past the copy, the copy was handled.
        let group = format!("{PREFIX}points-earn");
        let bootstrap = k.broker.bootstrap();
        eventually(WITHIN, "the points group to commit past the copy", || {
            let (bootstrap, group, topic) = (bootstrap.clone(), group.clone(), topic.clone());
            async move {
                let committed = committed_offset(&bootstrap, &group, &topic, partition).await;
                committed.filter(|next| *next > offset)
            }
        })
        .await;

        assert_eq!(crate::harness::points_balance(app, &buyer).await, points);
        let earn_rows = k
            .count(
                "SELECT COUNT(*) FROM point_ledger WHERE kind = 'earn' AND order_id = $1",
                &[order_id],
            )
            .await;
        assert_eq!(earn_rows, 1, "earn ledger rows of order {order_id}");
        let lots = k
            .count(
                "SELECT COUNT(*) FROM point_lots WHERE source = 'earn' AND order_id = $1",
                &[order_id],
            )
            .await;
        assert_eq!(lots, 1, "earned lots of order {order_id}");
        let processed = k
            .count(
                "SELECT COUNT(*) FROM processed_events WHERE consumer = 'points-earn' AND event_id = $1",
                &[confirmed.id],
            )
            .await;
        assert_eq!(processed, 1, "processed_events rows of event {}", confirmed.id);
    })
    .await;
}
