//! Paying, cancelling, refunding and the payment deadline: each commits or releases the
//! holds that placement made, and leaves a ledger row for it.

use crate::helpers::*;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// A buyer with a pending order of 2 units from a product of 10 at 1,500 won.
async fn pending_order(app: &TestApp) -> (String, i64, Value) {
    let product = app.simple_product(1_500, 10).await;
    let buyer = app.buyer().await;
    let order = app.order_ok(&buyer, &[(product, 2)]).await;
    assert_eq!(int(&order, "payable"), 3_000);
    (buyer, product, order)
}

fn pay_path(order: &Value) -> String {
    format!("/orders/{}/pay", int(order, "id"))
}

backend_tests!(
    paying_the_payable_amount_commits_the_holds,
    |app| async move {
        let (buyer, product, order) = pending_order(&app).await;
        let order_id = int(&order, "id");

        let paid = app.pay(&buyer, &order).await;
        let body = expect(&paid, 200);
        assert_eq!(body["status"], "paid", "{body}");
        assert_eq!(int(body, "id"), order_id);
        assert_eq!(app.order(&buyer, order_id).await["status"], "paid");

        assert_eq!(
            app.stock(product).await,
            Stock {
                on_hand: 8,
                held: 0,
                available: 8
            }
        );
        let commits = app.movements_of_kind(product, "commit").await;
        assert_eq!(commits.len(), 1, "{commits:?}");
        assert_eq!(int(&commits[0], "quantity"), 2);
        assert_eq!(int(&commits[0], "order_id"), order_id);
        assert_eq!(int(&commits[0], "on_hand_after"), 8);
        assert_eq!(int(&commits[0], "held_after"), 0);

        // A paid order cannot be paid again, and paying again commits nothing.
        expect_error(&app.pay(&buyer, &order).await, 409, "order_not_payable");
        assert_eq!(app.movements_of_kind(product, "commit").await.len(), 1);
        assert_eq!(app.stock(product).await.on_hand, 8);
        app.assert_verify_clean().await;
    }
);

backend_tests!(
    wrong_amount_is_refused_and_commits_nothing,
    |app| async move {
        let (buyer, product, order) = pending_order(&app).await;
        let order_id = int(&order, "id");

        for amount in [2_999, 3_001, 0, -3_000] {
            let body = json!({"payment_key": unique("pk"), "amount": amount});
            let reply = app.post(&pay_path(&order), Some(&buyer), &body).await;
            // A negative amount may be refused as invalid input before it is compared.
            if amount < 0 && reply.0 == 422 && reply.1["error"]["code"] == "validation_failed" {
                continue;
            }
            expect_error(&reply, 409, "payment_amount_mismatch");
        }
        assert_eq!(
            app.order(&buyer, order_id).await["status"],
            "pending_payment"
        );
        assert!(app.movements_of_kind(product, "commit").await.is_empty());
        assert_eq!(
            app.stock(product).await,
            Stock {
                on_hand: 10,
                held: 2,
                available: 8
            }
        );

        // The order is still payable with the right amount.
        expect(&app.pay(&buyer, &order).await, 200);
        assert_eq!(
            app.stock(product).await,
            Stock {
                on_hand: 8,
                held: 0,
                available: 8
            }
        );
        app.assert_verify_clean().await;
    }
);

backend_tests!(
    declined_payment_leaves_the_order_pending,
    |app| async move {
        let (buyer, product, order) = pending_order(&app).await;
        let order_id = int(&order, "id");

        let body = json!({"payment_key": "decline-insufficient-funds", "amount": 3_000});
        expect_error(
            &app.post(&pay_path(&order), Some(&buyer), &body).await,
            402,
            "payment_declined",
        );
        assert_eq!(
            app.order(&buyer, order_id).await["status"],
            "pending_payment"
        );
        assert!(app.movements_of_kind(product, "commit").await.is_empty());
        assert!(app.movements_of_kind(product, "release").await.is_empty());
        assert_eq!(
            app.stock(product).await,
            Stock {
                on_hand: 10,
                held: 2,
                available: 8
            }
        );

        // The buyer may try another card.
        expect(&app.pay(&buyer, &order).await, 200);
        app.assert_verify_clean().await;
    }
);

backend_tests!(
    cancelling_a_pending_order_releases_its_holds,
    |app| async move {
        let (buyer, product, order) = pending_order(&app).await;
        let order_id = int(&order, "id");
        assert_eq!(app.stock(product).await.available, 8);

        let cancelled = app.cancel(&buyer, order_id).await;
        let body = expect(&cancelled, 200);
        assert_eq!(body["status"], "cancelled", "{body}");
        assert_eq!(app.order(&buyer, order_id).await["status"], "cancelled");
        assert_eq!(
            app.stock(product).await,
            Stock {
                on_hand: 10,
                held: 0,
                available: 10
            }
        );
        let releases = app.movements_of_kind(product, "release").await;
        assert_eq!(releases.len(), 1, "{releases:?}");
        assert_eq!(int(&releases[0], "quantity"), 2);
        assert_eq!(int(&releases[0], "order_id"), order_id);
        assert_eq!(int(&releases[0], "held_after"), 0);

        // Twice is refused, and so is paying what was cancelled.
        expect_error(
            &app.cancel(&buyer, order_id).await,
            409,
            "order_not_cancellable",
        );
        expect_error(&app.pay(&buyer, &order).await, 409, "order_not_payable");
        assert_eq!(app.movements_of_kind(product, "release").await.len(), 1);
        assert!(app.movements_of_kind(product, "commit").await.is_empty());
        assert_eq!(
            app.stock(product).await,
            Stock {
                on_hand: 10,
                held: 0,
                available: 10
            }
        );
        app.assert_verify_clean().await;
    }
);

backend_tests!(
    cancelling_a_paid_order_refunds_and_returns_stock,
    |app| async move {
        let (buyer, product, order) = pending_order(&app).await;
        let order_id = int(&order, "id");
        expect(&app.pay(&buyer, &order).await, 200);
        assert_eq!(app.stock(product).await.on_hand, 8);

        let refunded = app.cancel(&buyer, order_id).await;
        assert_eq!(
            expect(&refunded, 200)["status"],
            "refunded",
            "{:?}",
            refunded
        );
        assert_eq!(app.order(&buyer, order_id).await["status"], "refunded");
        assert_eq!(
            app.stock(product).await,
            Stock {
                on_hand: 10,
                held: 0,
                available: 10
            }
        );
        let returns = app.movements_of_kind(product, "return").await;
        assert_eq!(returns.len(), 1, "{returns:?}");
        assert_eq!(int(&returns[0], "quantity"), 2);
        assert_eq!(int(&returns[0], "order_id"), order_id);
        assert_eq!(int(&returns[0], "on_hand_after"), 10);

        expect_error(
            &app.cancel(&buyer, order_id).await,
            409,
            "order_not_cancellable",
        );
        assert_eq!(app.movements_of_kind(product, "return").await.len(), 1);
        assert_eq!(app.stock(product).await.on_hand, 10);
        app.assert_verify_clean().await;
    }
);

backend_tests!(admin_may_cancel_a_buyers_order, |app| async move {
    let (buyer, product, order) = pending_order(&app).await;
    let admin = app.admin_token().await;
    let cancelled = app.cancel(&admin, int(&order, "id")).await;
    assert_eq!(expect(&cancelled, 200)["status"], "cancelled");
    assert_eq!(
        app.order(&buyer, int(&order, "id")).await["status"],
        "cancelled"
    );
    assert_eq!(app.stock(product).await.held, 0);
});

backend_tests!(
    unpaid_orders_expire_and_release_their_holds,
    config = |c| c.sweeper_interval_ms = 100,
    |app| async move {
        let (buyer, product, order) = pending_order(&app).await;
        let order_id = int(&order, "id");
        let mut events = SseReader::new(app.subscribe(&buyer, order_id).await);
        assert_eq!(
            events.next_event(Duration::from_secs(10)).await["status"],
            "pending_payment"
        );
        app.clock
            .advance(Duration::from_secs(app.limits.hold_ttl_secs + 1));

        let expired = eventually(
            Duration::from_secs(10),
            "the sweeper to expire the order",
            || {
                let app = app.clone();
                let buyer = buyer.clone();
                async move {
                    let current = app.order(&buyer, order_id).await;
                    (current["status"] != "pending_payment").then_some(current)
                }
            },
        )
        .await;
        assert_eq!(expired["status"], "cancelled", "{expired}");
        assert_eq!(expired["cancel_reason"], "expired", "{expired}");

        let event = events.next_event(Duration::from_secs(10)).await;
        assert_eq!(event["status"], "cancelled", "{event}");
        assert_eq!(event["reason"], "expired", "{event}");

        assert_eq!(
            app.stock(product).await,
            Stock {
                on_hand: 10,
                held: 0,
                available: 10
            }
        );
        let releases = app.movements_of_kind(product, "release").await;
        assert_eq!(releases.len(), 1, "{releases:?}");
        assert_eq!(int(&releases[0], "order_id"), order_id);
        assert_eq!(int(&releases[0], "quantity"), 2);

        expect_error(&app.pay(&buyer, &order).await, 409, "order_not_payable");
        assert!(app.movements_of_kind(product, "commit").await.is_empty());
        app.assert_verify_clean().await;
    }
);

backend_tests!(
    paying_after_the_deadline_is_refused_even_before_the_sweep,
    config = |c| c.sweeper_interval_ms = 60_000,
    |app| async move {
        let (buyer, product, order) = pending_order(&app).await;
        app.clock
            .advance(Duration::from_secs(app.limits.hold_ttl_secs + 1));
        expect_error(&app.pay(&buyer, &order).await, 409, "order_not_payable");
        assert!(app.movements_of_kind(product, "commit").await.is_empty());
        assert_eq!(app.stock(product).await.on_hand, 10);
        app.assert_verify_clean().await;
    }
);

backend_tests!(concurrent_payments_commit_once, |app| async move {
    let (buyer, product, order) = pending_order(&app).await;
    let (buyer, order) = (Arc::new(buyer), Arc::new(order));
    let replies = all_at_once(10, |_| {
        let (app, buyer, order) = (app.clone(), buyer.clone(), order.clone());
        async move { app.pay(&buyer, &order).await }
    })
    .await;
    let paid = replies.iter().filter(|r| r.0 == 200).count();
    let refused = replies
        .iter()
        .filter(|r| r.0 == 409 && r.1["error"]["code"] == "order_not_payable")
        .count();
    assert_eq!((paid, refused), (1, 9), "replies: {replies:?}");
    assert_eq!(app.movements_of_kind(product, "commit").await.len(), 1);
    assert_eq!(
        app.stock(product).await,
        Stock {
            on_hand: 8,
            held: 0,
            available: 8
        }
    );
    app.assert_verify_clean().await;
});

// Paying and cancelling race on each of 20 orders. Whichever wins, the two replies must
// agree with the final status, and all the stock must come back.
backend_tests!(pay_and_cancel_race_ends_consistently, |app| async move {
    let product = app.simple_product(1_000, 20).await;
    let tokens = app.buyers(20).await;
    let mut orders = Vec::new();
    for token in &tokens {
        orders.push((token.clone(), app.order_ok(token, &[(product, 1)]).await));
    }
    let orders = Arc::new(orders);
    let replies = all_at_once(40, |i| {
        let (app, orders) = (app.clone(), orders.clone());
        async move {
            let (token, order) = &orders[i / 2];
            if i % 2 == 0 {
                app.pay(token, order).await
            } else {
                app.cancel(token, int(order, "id")).await
            }
        }
    })
    .await;
    for (n, (token, order)) in orders.iter().enumerate() {
        let (pay, cancel) = (&replies[2 * n], &replies[2 * n + 1]);
        let status = app.order(token, int(order, "id")).await["status"].clone();
        match status.as_str() {
            // Paid first, then refunded.
            Some("refunded") => {
                expect(pay, 200);
                assert_eq!(expect(cancel, 200)["status"], "refunded");
            }
            // Cancelled first; the payment then found nothing to pay.
            Some("cancelled") => {
                expect_error(pay, 409, "order_not_payable");
                assert_eq!(expect(cancel, 200)["status"], "cancelled");
            }
            other => panic!("order ended {other:?}; pay {pay:?}, cancel {cancel:?}"),
        }
    }
    assert_eq!(
        app.stock(product).await,
        Stock {
            on_hand: 20,
            held: 0,
            available: 20
        }
    );
    app.assert_verify_clean().await;
});

backend_tests!(
    with_the_simulator_a_clients_own_key_pays_and_the_reconciler_pays_nothing,
    config = |c| c.payment_reconcile_interval_secs = 1,
    |app| async move {
        let (buyer, _product, order) = pending_order(&app).await;
        let order_id = int(&order, "id");
        // A checkout works with the simulator too; it is the same one until paid.
        let checkout = expect(&app.checkout(&buyer, order_id).await, 200).clone();
        assert_eq!(checkout["store_id"], "simulated");
        let issued = str_of(&checkout, "payment_id").to_owned();
        let again = expect(&app.checkout(&buyer, order_id).await, 200).clone();
        assert_eq!(str_of(&again, "payment_id"), issued);

        // Left open past the grace period: the simulator captured nothing, so the
        // reconciler must not pay the order, only abandon the checkout of an order that can
        // no longer be paid.
        let (other_buyer, _, unpaid) = pending_order(&app).await;
        let other_id = int(&unpaid, "id");
        expect(&app.checkout(&other_buyer, other_id).await, 200);
        expect(&app.cancel(&other_buyer, other_id).await, 200);
        app.clock.advance(Duration::from_secs(31));
        let abandoned = format!(
            "SELECT COUNT(*) FROM checkouts WHERE order_id = {other_id} AND status = 'abandoned'"
        );
        eventually(Duration::from_secs(20), "the reconciler's pass", || {
            let (app, abandoned) = (app.clone(), abandoned.clone());
            async move { (query_int(&app, &abandoned).await == 1).then_some(()) }
        })
        .await;
        assert_eq!(
            app.order(&buyer, order_id).await["status"],
            "pending_payment"
        );
        let open = format!(
            "SELECT COUNT(*) FROM checkouts WHERE order_id = {order_id} AND status = 'open'"
        );
        assert_eq!(query_int(&app, &open).await, 1);

        // A key of the client's own pays it, as before checkouts existed, and the
        // issued checkout is abandoned for it; the key then pays no other order.
        let own = unique("pk_own");
        let paid = app
            .post(
                &pay_path(&order),
                Some(&buyer),
                &json!({"payment_key": own, "amount": 3_000}),
            )
            .await;
        assert_eq!(expect(&paid, 200)["status"], "paid");
        assert_eq!(query_int(&app, &open).await, 0);
        let (third_buyer, _, third) = pending_order(&app).await;
        let reused = json!({"payment_key": own, "amount": 3_000});
        expect_error(
            &app.post(&pay_path(&third), Some(&third_buyer), &reused)
                .await,
            409,
            "payment_key_reused",
        );
        app.assert_verify_clean().await;
    }
);
