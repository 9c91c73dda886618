//! Returns after confirmation on the store: taking back a confirmed partner order is one
//! conditional transaction (from any other status nothing changes and it says so; without
//! the part's sale entry it fails as a whole), the points its purchase earned are taken back
//! pro rata as far as the earn lot still has them, and two returns of the same part at once
//! return it once.

use crate::fixtures::{
    assert_verify_clean, buyer, done, event_types, payment, placed, product, request, sql_execute,
    sql_int, NOW, NOW_MS,
};
use stampede::domain::fulfilment::{Advance, PartnerOrderStatus, Shipment};
use stampede::domain::{OrderStatus, Timestamp};
use stampede::store::{
    EarnOutcome, Earning, FulfilmentOutcome, OrderRecord, PaymentOutcome, Store, StoreError,
};

fn at(minutes: i64) -> Timestamp {
    Timestamp::from_millis(NOW_MS + minutes * 60_000)
}

/// A buyer's order of one pair of boots (North, 10%) and three coats (South, 5%), 1,000 won
/// a unit: paid, both parts delivered, the purchase confirmed at `at(30)`, which puts it
/// on the sellers' books. Returns the buyer and the order (its parts: boots, then coats).
async fn confirmed_order(store: &dyn Store, key: &str) -> (i64, OrderRecord) {
    let north = store.insert_partner("North", 1000, NOW).await.unwrap().id;
    let south = store.insert_partner("South", 500, NOW).await.unwrap().id;
    let boots = product(store, north, 10, None, NOW).await;
    let coats = product(store, south, 10, None, NOW).await;
    let user = buyer(store, &format!("{key}@example.com")).await;
    let batch = [request(user, key, &[(boots, 1), (coats, 3)])];
    let result = store.place_batch(&batch, at(60), NOW).await.unwrap();
    let order = placed(&result.outcomes[0]).clone();
    let approved = payment(&order, PaymentOutcome::Approved);
    let order = done(store.mark_paid(order.id, &approved, NOW).await.unwrap());
    for part in &order.partner_orders {
        let shipment = Shipment::new("CJ", &format!("T-{}", part.id)).unwrap();
        for step in [Advance::Prepare, Advance::Ship(shipment), Advance::Deliver] {
            let moved = store
                .advance_partner_order(part.id, &step, at(1))
                .await
                .unwrap();
            assert!(matches!(moved, FulfilmentOutcome::Done(_)), "{moved:?}");
        }
    }
    let order = done(store.confirm_order(order.id, at(30)).await.unwrap());
    (user, order)
}

/// The earning consumer's work for the order, done by hand: 1% of what it earns on.
async fn earn(store: &dyn Store, order_id: i64, now: Timestamp) -> i64 {
    let earning = Earning {
        consumer: "points-earn",
        event_id: 1_000_000 + order_id,
        order_id,
        rate_bps: 100,
        expires_at: at(60 * 24 * 365),
    };
    match store.earn_points(&earning, now).await.unwrap() {
        EarnOutcome::Earned { amount, .. } => amount,
        other => panic!("expected points earned, got {other:?}"),
    }
}

async fn balance(store: &dyn Store, user: i64) -> (i64, i64) {
    let account = store.points_summary(user, NOW).await.unwrap().account;
    (account.balance, account.held)
}

async fn refunded_won(url: &str, order_id: i64) -> i64 {
    let sql = format!(
        "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM payments \
         WHERE order_id = {order_id} AND outcome = 'refunded'"
    );
    sql_int(url, &sql).await
}

/// `what` (an aggregate) over the part's `refund` entries.
async fn refund_entries_sum(url: &str, partner_order_id: i64, what: &str) -> i64 {
    let sql = format!(
        "SELECT CAST(COALESCE({what}, 0) AS BIGINT) FROM settlement_entries \
         WHERE partner_order_id = {partner_order_id} AND kind = 'refund'"
    );
    sql_int(url, &sql).await
}

/// `(subtotal, recorded_at)` summed over the part's `refund` entries, and their count.
async fn refund_entries(url: &str, partner_order_id: i64) -> (i64, i64, i64) {
    (
        refund_entries_sum(url, partner_order_id, "SUM(subtotal)").await,
        refund_entries_sum(url, partner_order_id, "SUM(recorded_at)").await,
        refund_entries_sum(url, partner_order_id, "COUNT(*)").await,
    )
}

fn returned(outcome: FulfilmentOutcome) -> stampede::store::PartnerOrderRecord {
    match outcome {
        FulfilmentOutcome::Done(part) => part,
        other => panic!("expected the return to happen, got {other:?}"),
    }
}

fn refused(outcome: FulfilmentOutcome) -> PartnerOrderStatus {
    match outcome {
        FulfilmentOutcome::Refused(part) => part.status,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

store_tests!(
    a_return_is_one_conditional_transaction,
    |store, url| async move {
        let store = &*store;
        let (user, order) = confirmed_order(store, "first").await;
        let (boots, coats) = (order.partner_orders[0].id, order.partner_orders[1].id);
        assert!(matches!(
            store
                .return_partner_order(987_654, "none", at(40))
                .await
                .unwrap(),
            FulfilmentOutcome::NotFound
        ));

        // Returned before the purchase earned: nothing to take back.
        let before = event_types(store).await.len();
        let part = returned(
            store
                .return_partner_order(boots, "worn", at(40))
                .await
                .unwrap(),
        );
        assert_eq!(part.status, PartnerOrderStatus::Refunded);
        assert_eq!(
            (part.returned_at, part.return_reason.as_deref()),
            (Some(at(40)), Some("worn"))
        );
        assert_eq!(part.confirmed_at, Some(at(30)));
        assert_eq!(
            event_types(store).await[before..],
            ["partner_order.returned"]
        );
        assert_eq!(
            refund_entries(&url, boots).await,
            (-1_000, at(40).millis(), 1)
        );
        assert_eq!(refunded_won(&url, order.id).await, 1_000);
        let now = store.order(order.id).await.unwrap().unwrap();
        assert_eq!(now.status, OrderStatus::Confirmed);
        assert_eq!(now.partner_orders[1].status, PartnerOrderStatus::Confirmed);

        // A second return changes nothing and says what the part is.
        let after_first = event_types(store).await.len();
        let again = store.return_partner_order(boots, "again", at(41)).await;
        assert_eq!(refused(again.unwrap()), PartnerOrderStatus::Refunded);
        assert_eq!(event_types(store).await.len(), after_first);
        assert_eq!(
            refund_entries(&url, boots).await,
            (-1_000, at(40).millis(), 1)
        );
        assert_eq!(refunded_won(&url, order.id).await, 1_000);

        // Earned afterwards on the coats alone: returning them takes all of it back.
        let earned = earn(store, order.id, at(50)).await;
        assert_eq!(balance(store, user).await, (earned, 0));
        returned(
            store
                .return_partner_order(coats, "torn", at(60))
                .await
                .unwrap(),
        );
        assert_eq!(balance(store, user).await, (0, 0));
        let types = event_types(store).await;
        assert_eq!(
            types[types.len() - 2..],
            ["points.adjusted", "partner_order.returned"]
        );
        assert_eq!(refunded_won(&url, order.id).await, 4_000);
        assert_verify_clean(store).await;
    }
);

store_tests!(
    a_return_takes_back_its_share_of_the_points_the_lot_still_has,
    |store| async move {
        let store = &*store;
        let (user, order) = confirmed_order(store, "earned").await;
        let (boots, coats) = (order.partner_orders[0].id, order.partner_orders[1].id);
        // 1% of 4,000 won.
        assert_eq!(earn(store, order.id, at(35)).await, 40);
        // The boots' share: 40 × 1,000 / 4,000.
        returned(
            store
                .return_partner_order(boots, "worn", at(40))
                .await
                .unwrap(),
        );
        assert_eq!(balance(store, user).await, (30, 0));
        // A new order holds 25 of the 30 left in the lot: only 5 are there to take back of
        // the coats' share of 30.
        let north = store.insert_partner("East", 1000, NOW).await.unwrap().id;
        let hats = product(store, north, 10, None, NOW).await;
        let mut spending = request(user, "spending", &[(hats, 1)]);
        spending.points = 25;
        let result = store
            .place_batch(&[spending], at(60), at(45))
            .await
            .unwrap();
        placed(&result.outcomes[0]);
        // The points' hold events come last; the batch names the last of them.
        let last = store.last_event_id().await.unwrap();
        assert_eq!(result.last_event_id, Some(last));
        assert_eq!(balance(store, user).await, (30, 25));
        returned(
            store
                .return_partner_order(coats, "torn", at(50))
                .await
                .unwrap(),
        );
        assert_eq!(balance(store, user).await, (25, 25));
        assert_verify_clean(store).await;
    }
);

store_tests!(
    a_confirmed_part_off_the_books_is_not_returned,
    |store, url| async move {
        let store = &*store;
        let (_, order) = confirmed_order(store, "unbooked").await;
        let coats = order.partner_orders[1].id;
        sql_execute(
            &url,
            &format!("DELETE FROM settlement_entries WHERE partner_order_id = {coats}"),
        )
        .await;
        let before = event_types(store).await.len();
        match store.return_partner_order(coats, "torn", at(40)).await {
            Err(StoreError::Corrupt(why)) => assert!(why.contains("sale"), "{why}"),
            other => panic!("expected the return to fail, got {other:?}"),
        }
        let now = store.order(order.id).await.unwrap().unwrap();
        assert_eq!(now.partner_orders[1].status, PartnerOrderStatus::Confirmed);
        assert_eq!(now.partner_orders[1].returned_at, None);
        assert_eq!(refunded_won(&url, order.id).await, 0);
        assert_eq!(event_types(store).await.len(), before);
        assert_eq!(refund_entries(&url, coats).await, (0, 0, 0));
    }
);

store_tests!(
    two_returns_of_one_part_at_once_return_it_once,
    |store, url| async move {
        for round in 0..4 {
            let (_, order) = confirmed_order(&*store, &format!("race{round}")).await;
            let part = order.partner_orders[1].id;
            let attempts: Vec<_> = (0..2)
                .map(|_| {
                    let store = store.clone();
                    tokio::spawn(async move {
                        store
                            .return_partner_order(part, "race", at(40))
                            .await
                            .unwrap()
                    })
                })
                .collect();
            let mut done = 0;
            for attempt in attempts {
                match attempt.await.unwrap() {
                    FulfilmentOutcome::Done(_) => done += 1,
                    FulfilmentOutcome::Refused(p) => {
                        assert_eq!(p.status, PartnerOrderStatus::Refunded)
                    }
                    FulfilmentOutcome::NotFound => panic!("partner order {part} not found"),
                }
            }
            assert_eq!(done, 1, "exactly one return wins");
            assert_eq!(refund_entries(&url, part).await.2, 1);
            assert_eq!(refunded_won(&url, order.id).await, 3_000);
            assert_verify_clean(&*store).await;
        }
    }
);
