//! Where the consumer workers run: `serve` with `STAMPEDE_WORKERS=off` consumes nothing (the
//! relay still publishes), and a `stampede worker` process on the same database and broker
//! does the once-per-cluster work — here, the points of a confirmed purchase.

use crate::harness::{
    committed_offset, confirm_ok, earning, outbox_events, pay_ok, points_balance,
    read_until_published, run, wait_for_balance, NodeProcess, PREFIX,
};
use crate::helpers::int;
use stampede::config::Workers;
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_process_does_what_a_node_with_workers_off_leaves() {
    run(
        |config| config.workers = Workers::Off,
        |k| async move {
            let app = &k.app;
            let product = app.simple_product(250_000, 5).await;
            let buyer = app.buyer().await;
            let order = app.order_ok(&buyer, &[(product, 1)]).await;
            let order_id = int(&order, "id");
            pay_ok(app, &buyer, &order).await;
            confirm_ok(app, &buyer, order_id).await;

            // The relay publishes the confirmation; with workers off, no group reads it.
            let events = outbox_events(&app.database_url).await;
            let received = read_until_published(&k.broker.bootstrap(), &events, WITHIN).await;
            let confirmed = received
                .iter()
                .find(|m| {
                    m.topic == format!("{PREFIX}order")
                        && m.header_values("event-type") == [Some("order.confirmed")]
                })
                .expect("the order.confirmed message")
                .clone();
            let group = format!("{PREFIX}points-earn");
            let topic = format!("{PREFIX}order");
            let bootstrap = k.broker.bootstrap();
            assert_eq!(
                committed_offset(&bootstrap, &group, &topic, confirmed.partition).await,
                None,
                "a group consumed with every node's workers off"
            );
            assert_eq!(points_balance(app, &buyer).await, 0);

            // A worker process earns the points once it runs.
            let mut worker = NodeProcess::worker("worker", &k.node_env());
            wait_for_balance(app, &buyer, earning(&order), WITHIN).await;
            assert!(
                worker.is_running(),
                "the worker exited:\n{}",
                worker.log_tail()
            );
            let lots = k
                .count(
                    "SELECT COUNT(*) FROM point_lots WHERE order_id = $1 AND source = 'earn'",
                    &[order_id],
                )
                .await;
            assert_eq!(lots, 1);
        },
    )
    .await;
}
