//! Partial cancellation on the store: cancelling a partner order is one conditional
//! transaction (from the wrong status nothing changes and it says so), and a cancellation
//! racing a shipment of the same part lets exactly one of them happen.

use crate::fixtures::{
    assert_verify_clean, buyer, done, event_types, payment, placed, product, request, NOW, NOW_MS,
};
use stampede::domain::fulfilment::{Advance, PartnerOrderStatus, Shipment};
use stampede::domain::{OrderStatus, Timestamp};
use stampede::store::{
    FulfilmentOutcome, OrderRecord, PartialCancelOutcome, PaymentOutcome, Store,
};

fn at(minutes: i64) -> Timestamp {
    Timestamp::from_millis(NOW_MS + minutes * 60_000)
}

/// A buyer's order of one unit from each of two partners; paid when `paid`.
async fn two_part_order(store: &dyn Store, key: &str, paid: bool) -> (Vec<i64>, OrderRecord) {
    let north = store.insert_partner("North", 1000, NOW).await.unwrap().id;
    let south = store.insert_partner("South", 500, NOW).await.unwrap().id;
    let boots = product(store, north, 10, None, NOW).await;
    let coats = product(store, south, 10, None, NOW).await;
    let user = buyer(store, &format!("{key}@example.com")).await;
    let batch = [request(user, key, &[(boots, 1), (coats, 1)])];
    let result = store.place_batch(&batch, at(60), NOW).await.unwrap();
    let order = placed(&result.outcomes[0]).clone();
    if !paid {
        return (vec![boots, coats], order);
    }
    let approved = payment(&order, PaymentOutcome::Approved);
    let order = done(store.mark_paid(order.id, &approved, NOW).await.unwrap());
    (vec![boots, coats], order)
}

async fn on_hand(store: &dyn Store, product_id: i64) -> i64 {
    store.product(product_id).await.unwrap().unwrap().on_hand
}

store_tests!(
    a_part_in_the_wrong_status_is_refused_and_nothing_changes,
    |store| async move {
        // Unpaid: nothing to cancel on its own yet.
        let (products, pending) = two_part_order(&*store, "pending", false).await;
        let events_before = event_types(&*store).await.len();
        let part = pending.partner_orders[0].id;
        match store.cancel_partner_order(part, "no", at(1)).await.unwrap() {
            PartialCancelOutcome::Refused(p) => {
                assert_eq!(p.status, PartnerOrderStatus::PendingPayment)
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        // Shipped: too late.
        let (_, paid) = two_part_order(&*store, "shipped", true).await;
        let part = paid.partner_orders[1].id;
        let shipment = Advance::Ship(Shipment::new("CJ", "T-1").unwrap());
        store
            .advance_partner_order(part, &Advance::Prepare, at(1))
            .await
            .unwrap();
        store
            .advance_partner_order(part, &shipment, at(2))
            .await
            .unwrap();
        let events_before_cancel = event_types(&*store).await.len();
        match store
            .cancel_partner_order(part, "late", at(3))
            .await
            .unwrap()
        {
            PartialCancelOutcome::Refused(p) => assert_eq!(p.status, PartnerOrderStatus::Shipped),
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert_eq!(event_types(&*store).await.len(), events_before_cancel);
        assert!(events_before < events_before_cancel);
        let after = store.order(paid.id).await.unwrap().unwrap();
        assert_eq!(after.status, OrderStatus::Paid);
        assert_eq!(after.partner_orders[1].status, PartnerOrderStatus::Shipped);
        assert!(matches!(
            store
                .cancel_partner_order(987_654, "none", at(3))
                .await
                .unwrap(),
            PartialCancelOutcome::NotFound
        ));
        // Still held by the pending order, still sold by the paid one.
        assert_eq!(on_hand(&*store, products[0]).await, 10);
        assert_verify_clean(&*store).await;
    }
);

store_tests!(
    a_cancel_racing_a_shipment_of_the_same_part_lets_one_happen,
    |store| async move {
        for round in 0..4 {
            let (products, paid) = two_part_order(&*store, &format!("race{round}"), true).await;
            let part = paid.partner_orders[0].id;
            store
                .advance_partner_order(part, &Advance::Prepare, at(1))
                .await
                .unwrap();
            let shipping = {
                let store = store.clone();
                tokio::spawn(async move {
                    let shipment = Advance::Ship(Shipment::new("CJ", "T-9").unwrap());
                    store
                        .advance_partner_order(part, &shipment, at(2))
                        .await
                        .unwrap()
                })
            };
            let cancelling = {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .cancel_partner_order(part, "race", at(2))
                        .await
                        .unwrap()
                })
            };
            let shipped = matches!(shipping.await.unwrap(), FulfilmentOutcome::Done(_));
            let cancelled = matches!(cancelling.await.unwrap(), PartialCancelOutcome::Done { .. });
            assert!(
                shipped != cancelled,
                "exactly one wins: shipped {shipped}, cancelled {cancelled}"
            );
            let now = store.order(paid.id).await.unwrap().unwrap();
            let expected = if shipped {
                PartnerOrderStatus::Shipped
            } else {
                PartnerOrderStatus::Cancelled
            };
            assert_eq!(now.partner_orders[0].status, expected);
            // The stock came back only if the cancel won.
            let back = if cancelled { 10 } else { 9 };
            assert_eq!(on_hand(&*store, products[0]).await, back);
            assert_verify_clean(&*store).await;
        }
    }
);
