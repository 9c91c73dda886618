//! Issue 9, test 1: after a drop with payments, every outbox event is on its topic with
//! its key, in order per key, exactly as in the outbox — one node, no failure, so exactly
//! once.

use crate::harness::{
    assert_published_exactly_once, confirm_ok, earning, metrics, outbox_events, pay_ok,
    read_until_published, run, sample, wait_for_balance, PREFIX,
};
use crate::helpers::{all_at_once, eventually, expect, int, unique};
use std::time::Duration;

/// Generous on two shared cores: the relay publishes within milliseconds when idle.
const WITHIN: Duration = Duration::from_secs(60);
const BUYERS: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_a_drop_every_outbox_event_is_on_its_topic_in_order_per_key() {
    run(
        |_| {},
        |k| async move {
            let app = &k.app;
            // Two sellers, so orders split per seller; stock short of the demand, so the drop
            // sells out and refuses some.
            let (kicks, caps) = (
                app.create_partner(&unique("kicks"), 1000).await,
                app.create_partner(&unique("caps"), 500).await,
            );
            let products = [
                app.product_of(kicks, 199_000, 5, Some(1)).await,
                app.product_of(kicks, 89_000, 8, Some(2)).await,
                app.product_of(caps, 35_000, 12, None).await,
            ];
            let buyers = app.buyers(BUYERS).await;

            let replies = all_at_once(BUYERS, |i| {
                let (app, token) = (app.clone(), buyers[i].clone());
                let items = [(products[i % 3], 1), (products[(i + 1) % 3], 1)];
                async move { app.place_order(&token, &items).await }
            })
            .await;
            let placed: Vec<(usize, serde_json::Value)> = replies
                .iter()
                .enumerate()
                .filter(|(_, reply)| reply.0 == 201)
                .map(|(i, reply)| (i, reply.1.clone()))
                .collect();
            let refused = replies.iter().filter(|r| r.0 == 409).count();
            assert_eq!(
                placed.len() + refused,
                BUYERS,
                "every attempt is placed or refused: {replies:?}"
            );
            assert!(placed.len() >= 6 && refused >= 1, "not a drop: {replies:?}");

            // Every fourth order is cancelled, the others paid, and every third of those
            // confirmed (its points are earned by the points consumer).
            let mut confirmed = Vec::new();
            for (n, (buyer, order)) in placed.iter().enumerate() {
                let token = &buyers[*buyer];
                let id = int(order, "id");
                if n % 4 == 0 {
                    expect(&app.cancel(token, id).await, 200);
                    continue;
                }
                pay_ok(app, token, order).await;
                if n % 3 == 0 {
                    confirm_ok(app, token, id).await;
                    confirmed.push((token.clone(), earning(order)));
                }
            }
            assert!(!confirmed.is_empty());
            // Their `points.earned` events belong to the outbox this test compares.
            for (token, points) in &confirmed {
                wait_for_balance(app, token, *points, WITHIN).await;
            }

            let events = outbox_events(&app.database_url).await;
            for kind in [
                "order.placed",
                "order.paid",
                "order.cancelled",
                "order.confirmed",
                "stock.changed",
                "points.earned",
            ] {
                assert!(
                    events.iter().any(|e| e.event_type == kind),
                    "the drop wrote no {kind} event"
                );
            }
            let received = read_until_published(&k.broker.bootstrap(), &events, WITHIN).await;
            assert_published_exactly_once(&events, &received);

            // The node reports what it published and each group's lag per partition (from
            // the client's statistics, every few seconds), caught up to 0.
            assert!(k.metric("relay_published_total", &[]).await >= events.len() as f64);
            let group = format!("{PREFIX}points-earn");
            let topic = format!("{PREFIX}order");
            eventually(WITHIN, "consumer_lag of the points group", || async {
                let text = metrics(&app.client, &app.root).await?;
                let labels = [("group", group.as_str()), ("topic", topic.as_str())];
                (sample(&text, "consumer_lag", &labels)? == 0.0).then_some(())
            })
            .await;
            assert!(
                k.metric("consumer_processed_total", &[("handler", "points-earn")])
                    .await
                    >= confirmed.len() as f64
            );
        },
    )
    .await;
}
