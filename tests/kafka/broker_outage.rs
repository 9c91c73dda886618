//! Issue 9, test 5: the broker is down (paused with SIGSTOP) for ten seconds in the middle
//! of a drop. Placement keeps answering 201 all along — the outbox is in the database, the
//! broker is not on the order's path — and after the broker is back the relay catches up:
//! every outbox event is on its topic, none lost, per key in outbox order (a batch whose
//! acks the pause swallowed may be sent again, so repeats are allowed).

use crate::harness::{
    assert_published_none_lost, outbox_events, pay_ok, read_until_published, run,
};
use crate::helpers::{eventually, TestApp};
use std::time::{Duration, Instant};

const PAUSE: Duration = Duration::from_secs(10);
const WITHIN: Duration = Duration::from_secs(90);
const BUYERS: usize = 20;
/// Placement does not wait on the broker; on two shared cores an order takes milliseconds
/// to tens of milliseconds, far below this.
const SLOWEST_ORDER: Duration = Duration::from_secs(3);

/// Places `count` orders round robin over `buyers` (every other one paid), each answered
/// 201; returns the slowest placement.
async fn place(
    app: &TestApp,
    buyers: &[String],
    product: i64,
    from: usize,
    count: usize,
) -> Duration {
    let mut slowest = Duration::ZERO;
    for n in from..from + count {
        let token = &buyers[n % buyers.len()];
        let started = Instant::now();
        let order = app.order_ok(token, &[(product, 1)]).await;
        slowest = slowest.max(started.elapsed());
        if n % 2 == 0 {
            pay_ok(app, token, &order).await;
        }
    }
    slowest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_down_for_ten_seconds_stops_no_order_and_loses_no_event() {
    run(
        |_| {},
        |k| async move {
            let app = &k.app;
            let product = app.simple_product(9_900, 100_000).await;
            let buyers = app.buyers(BUYERS).await;

            // The relay is publishing before the outage.
            place(app, &buyers, product, 0, 10).await;
            let before = outbox_events(&app.database_url).await;
            read_until_published(&k.broker.bootstrap(), &before, WITHIN).await;

            let paused = k.broker.pause();
            let started = Instant::now();
            let mut during = 0;
            let mut slowest = Duration::ZERO;
            while started.elapsed() < PAUSE {
                slowest = slowest.max(place(app, &buyers, product, 10 + during, 1).await);
                during += 1;
            }
            // The relay is behind while it cannot publish, by about what was written since
            // (the holder refreshes the gauge every third of its lease).
            let lag = k.metric("relay_lag_events", &[]).await;
            let written = outbox_events(&app.database_url).await.len() - before.len();
            paused.resume();
            assert!(
                during >= 10,
                "only {during} orders in {PAUSE:?} with the broker down"
            );
            assert!(
                slowest < SLOWEST_ORDER,
                "placement waited on the broker: an order took {slowest:?}"
            );
            assert!(
                lag >= written as f64 / 2.0,
                "relay_lag_events was {lag} with the broker down and {written} events written"
            );

            let resumed = Instant::now();
            place(app, &buyers, product, 10 + during, 5).await;
            let events = outbox_events(&app.database_url).await;
            let received = read_until_published(&k.broker.bootstrap(), &events, WITHIN).await;
            let caught_up = resumed.elapsed();
            let repeats = assert_published_none_lost(&events, &received);
            eventually(WITHIN, "relay_lag_events back to 0", || async {
                (k.metric("relay_lag_events", &[]).await == 0.0).then_some(())
            })
            .await;
            eprintln!(
                "broker outage: {during} orders placed during {PAUSE:?} (slowest \
                 {slowest:?}); {} events, all on their topics {caught_up:?} after the broker \
                 was back; {repeats} republished",
                events.len()
            );
        },
    )
    .await;
}
