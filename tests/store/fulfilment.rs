//! Fulfilment on the store: a seller's steps are conditional updates (a step from the
//! wrong status changes nothing and says so), the order learns when its last part was
//! delivered, purchase confirmation waits for it, and concurrent steps on one order never
//! lose a delivery nor ship twice.

use crate::fixtures::{
    assert_verify_clean, buyer, done, event_types, payment, placed, product, request, NOW, NOW_MS,
};
use stampede::domain::events::PartnerOrderChanged;
use stampede::domain::fulfilment::{Advance, PartnerOrderStatus, Shipment};
use stampede::domain::order::CancelReason;
use stampede::domain::{OrderStatus, Timestamp};
use stampede::store::{
    FulfilmentOutcome, OrderRecord, PageRequest, PartnerOrderRecord, PaymentOutcome, Store,
    TransitionOutcome,
};
use std::sync::Arc;

/// Minutes after [`NOW`], for the steps' times.
fn at(minutes: i64) -> Timestamp {
    Timestamp::from_millis(NOW_MS + minutes * 60_000)
}

fn ship(tracking_number: &str) -> Advance {
    Advance::Ship(Shipment::new("CJ Logistics", tracking_number).unwrap())
}

fn moved(outcome: FulfilmentOutcome) -> PartnerOrderRecord {
    match outcome {
        FulfilmentOutcome::Done(partner_order) => partner_order,
        other => panic!("expected the step to happen, got {other:?}"),
    }
}

fn refused(outcome: FulfilmentOutcome) -> PartnerOrderRecord {
    match outcome {
        FulfilmentOutcome::Refused(partner_order) => partner_order,
        other => panic!("expected the step to be refused, got {other:?}"),
    }
}

/// Two partners, a product each, and a buyer's order of both; paid unless `paid` is false.
/// Returns the partners and the order.
async fn split_order(store: &dyn Store, key: &str, paid: bool) -> ([i64; 2], OrderRecord) {
    let north = store.insert_partner("North", 1000, NOW).await.unwrap().id;
    let south = store.insert_partner("South", 500, NOW).await.unwrap().id;
    let boots = product(store, north, 10, None, NOW).await;
    let coats = product(store, south, 10, None, NOW).await;
    let user = buyer(store, &format!("{key}@example.com")).await;
    let pay_by = at(60);
    let batch = [request(user, key, &[(boots, 1), (coats, 2)])];
    let result = store.place_batch(&batch, pay_by, NOW).await.unwrap();
    let order = placed(&result.outcomes[0]).clone();
    if !paid {
        return ([north, south], order);
    }
    let approved = payment(&order, PaymentOutcome::Approved);
    let order = done(store.mark_paid(order.id, &approved, NOW).await.unwrap());
    ([north, south], order)
}

async fn order(store: &dyn Store, id: i64) -> OrderRecord {
    store.order(id).await.unwrap().expect("the order")
}

/// The payloads of the outbox's `partner_order.*` events, oldest first.
async fn partner_order_events(store: &dyn Store) -> Vec<(String, PartnerOrderChanged)> {
    let events = store.events_after(0, 10_000).await.unwrap();
    events
        .into_iter()
        .filter(|e| e.aggregate_type == "partner_order")
        .map(|e| {
            let payload: PartnerOrderChanged = serde_json::from_str(&e.payload).unwrap();
            assert_eq!(e.aggregate_id, payload.partner_order_id);
            (e.event_type, payload)
        })
        .collect()
}

store_tests!(steps_move_forward_only, |store| async move {
    let (_, paid) = split_order(&*store, "steps", true).await;
    let [north, south] = [paid.partner_orders[0].id, paid.partner_orders[1].id];

    let preparing = moved(
        store
            .advance_partner_order(north, &Advance::Prepare, at(1))
            .await
            .unwrap(),
    );
    assert_eq!(preparing.status, PartnerOrderStatus::Preparing);
    assert_eq!(preparing.prepared_at, Some(at(1)));
    assert_eq!((preparing.order_id, preparing.items.len()), (paid.id, 1));

    // From the wrong status: refused, as it is, with no event.
    let events_before = event_types(&*store).await;
    for step in [Advance::Prepare, Advance::Deliver] {
        let as_it_is = refused(
            store
                .advance_partner_order(north, &step, at(2))
                .await
                .unwrap(),
        );
        assert_eq!(as_it_is.status, PartnerOrderStatus::Preparing);
        assert_eq!(as_it_is.prepared_at, Some(at(1)), "not stamped again");
    }
    let not_yet = refused(
        store
            .advance_partner_order(south, &ship("X"), at(2))
            .await
            .unwrap(),
    );
    assert_eq!(not_yet.status, PartnerOrderStatus::Paid);
    assert!(not_yet.carrier.is_none() && not_yet.shipped_at.is_none());
    assert_eq!(event_types(&*store).await, events_before);
    let missing = store.advance_partner_order(999_999, &Advance::Prepare, at(2));
    assert!(matches!(
        missing.await.unwrap(),
        FulfilmentOutcome::NotFound
    ));

    let shipped = moved(
        store
            .advance_partner_order(north, &ship("T-1"), at(3))
            .await
            .unwrap(),
    );
    assert_eq!(shipped.status, PartnerOrderStatus::Shipped);
    assert_eq!(shipped.carrier.as_deref(), Some("CJ Logistics"));
    assert_eq!(shipped.tracking_number.as_deref(), Some("T-1"));
    assert_eq!(
        (shipped.prepared_at, shipped.shipped_at),
        (Some(at(1)), Some(at(3)))
    );
    let again = refused(
        store
            .advance_partner_order(north, &ship("T-2"), at(4))
            .await
            .unwrap(),
    );
    assert_eq!(again.tracking_number.as_deref(), Some("T-1"), "kept");

    let delivered = moved(
        store
            .advance_partner_order(north, &Advance::Deliver, at(5))
            .await
            .unwrap(),
    );
    assert_eq!(delivered.status, PartnerOrderStatus::Delivered);
    assert_eq!(delivered.delivered_at, Some(at(5)));
    let read = store.partner_order(north).await.unwrap().expect("readable");
    assert_eq!(read.status, PartnerOrderStatus::Delivered);
    assert_eq!(read.shipped_at, Some(at(3)));

    // The order, read whole, shows each part as it is.
    let now = order(&*store, paid.id).await;
    let statuses: Vec<_> = now.partner_orders.iter().map(|p| p.status).collect();
    assert_eq!(
        statuses,
        [PartnerOrderStatus::Delivered, PartnerOrderStatus::Paid]
    );
    assert_eq!(now.status, OrderStatus::Paid);

    let events = partner_order_events(&*store).await;
    let types: Vec<&str> = events.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        [
            "partner_order.preparing",
            "partner_order.shipped",
            "partner_order.delivered"
        ]
    );
    let (_, shipped_event) = &events[1];
    assert_eq!(
        (shipped_event.order_id, shipped_event.user_id),
        (paid.id, paid.user_id)
    );
    assert_eq!(shipped_event.status, PartnerOrderStatus::Shipped);
    assert_eq!(shipped_event.tracking_number.as_deref(), Some("T-1"));
    assert_eq!(shipped_event.at, at(3));
    assert_verify_clean(&*store).await;
});

store_tests!(unpaid_orders_cannot_be_fulfilled, |store| async move {
    let (_, pending) = split_order(&*store, "unpaid", false).await;
    let part = pending.partner_orders[0].id;
    let as_it_is = refused(
        store
            .advance_partner_order(part, &Advance::Prepare, at(1))
            .await
            .unwrap(),
    );
    assert_eq!(as_it_is.status, PartnerOrderStatus::PendingPayment);
    let cancel = CancelReason::Requested;
    let cancelled = done(store.cancel_order(pending.id, cancel, at(1)).await.unwrap());
    assert!(cancelled
        .partner_orders
        .iter()
        .all(|p| p.status == PartnerOrderStatus::Cancelled));
    let after = store.advance_partner_order(part, &Advance::Prepare, at(2));
    assert_eq!(
        refused(after.await.unwrap()).status,
        PartnerOrderStatus::Cancelled
    );
    assert!(partner_order_events(&*store).await.is_empty());
    assert_verify_clean(&*store).await;
});

/// Prepares, ships and delivers one partner order at `minute`.
async fn deliver(store: &dyn Store, id: i64, minute: i64) -> PartnerOrderRecord {
    moved(
        store
            .advance_partner_order(id, &Advance::Prepare, at(minute))
            .await
            .unwrap(),
    );
    let tracking = format!("T-{id}");
    moved(
        store
            .advance_partner_order(id, &ship(&tracking), at(minute))
            .await
            .unwrap(),
    );
    moved(
        store
            .advance_partner_order(id, &Advance::Deliver, at(minute))
            .await
            .unwrap(),
    )
}

store_tests!(
    confirmation_waits_for_the_last_delivery,
    |store| async move {
        let (_, paid) = split_order(&*store, "confirm", true).await;
        let [north, south] = [paid.partner_orders[0].id, paid.partner_orders[1].id];
        let refused_while = |what: &'static str| {
            let store = store.clone();
            async move {
                match store.confirm_order(paid.id, at(30)).await.unwrap() {
                    TransitionOutcome::Refused(o) => {
                        assert_eq!(o.status, OrderStatus::Paid, "{what}")
                    }
                    other => panic!("{what}: confirmed anyway: {other:?}"),
                }
            }
        };
        refused_while("nothing delivered").await;

        deliver(&*store, north, 10).await;
        assert_eq!(order(&*store, paid.id).await.delivered_at, None, "one left");
        assert!(store
            .due_confirmations(at(1_000), 10)
            .await
            .unwrap()
            .is_empty());
        refused_while("one part delivered").await;

        deliver(&*store, south, 20).await;
        assert_eq!(order(&*store, paid.id).await.delivered_at, Some(at(20)));
        // Due from the last delivery on, not from payment.
        assert!(store
            .due_confirmations(at(19), 10)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            store.due_confirmations(at(20), 10).await.unwrap(),
            [paid.id]
        );

        let confirmed = done(store.confirm_order(paid.id, at(30)).await.unwrap());
        assert_eq!(confirmed.status, OrderStatus::Confirmed);
        for part in &confirmed.partner_orders {
            assert_eq!(part.status, PartnerOrderStatus::Confirmed);
            assert_eq!(part.confirmed_at, Some(at(30)));
            assert!(part.delivered_at.is_some());
        }
        assert!(store
            .due_confirmations(at(1_000), 10)
            .await
            .unwrap()
            .is_empty());
        let late = store.advance_partner_order(north, &Advance::Deliver, at(31));
        assert_eq!(
            refused(late.await.unwrap()).status,
            PartnerOrderStatus::Confirmed
        );
        assert_verify_clean(&*store).await;
    }
);

store_tests!(partner_listing_is_newest_first, |store| async move {
    let ([north, south], first) = split_order(&*store, "list1", true).await;
    let user = first.user_id;
    let boots = first.partner_orders[0].items[0].product_id;
    let mut north_parts = vec![first.partner_orders[0].id];
    let mut later = Vec::new();
    for i in 0..3 {
        let batch = [request(user, &format!("more{i}"), &[(boots, 1)])];
        let result = store.place_batch(&batch, at(60), NOW).await.unwrap();
        let order = placed(&result.outcomes[0]).clone();
        north_parts.push(order.partner_orders[0].id);
        later.push(order);
    }
    let approved = payment(&later[1], PaymentOutcome::Approved);
    done(store.mark_paid(later[1].id, &approved, NOW).await.unwrap());
    moved(
        store
            .advance_partner_order(north_parts[2], &Advance::Prepare, at(1))
            .await
            .unwrap(),
    );

    let page = |n, size| PageRequest { page: n, size };
    let all = store
        .partner_orders(north, None, page(1, 10))
        .await
        .unwrap();
    let ids: Vec<i64> = all.items.iter().map(|p| p.id).collect();
    let mut newest_first = north_parts.clone();
    newest_first.reverse();
    assert_eq!((ids, all.total), (newest_first.clone(), 4));
    assert!(all
        .items
        .iter()
        .all(|p| p.partner_id == north && !p.items.is_empty()));
    assert_eq!(all.items[3].order_id, first.id);

    let second = store.partner_orders(north, None, page(2, 3)).await.unwrap();
    let ids: Vec<i64> = second.items.iter().map(|p| p.id).collect();
    assert_eq!((ids, second.total), (vec![north_parts[0]], 4));

    let preparing = Some(PartnerOrderStatus::Preparing);
    let only = store
        .partner_orders(north, preparing, page(1, 10))
        .await
        .unwrap();
    let ids: Vec<i64> = only.items.iter().map(|p| p.id).collect();
    assert_eq!((ids, only.total), (vec![north_parts[2]], 1));
    let pending = Some(PartnerOrderStatus::PendingPayment);
    let unpaid = store
        .partner_orders(north, pending, page(1, 10))
        .await
        .unwrap();
    assert_eq!(unpaid.total, 2);

    let theirs = store
        .partner_orders(south, None, page(1, 10))
        .await
        .unwrap();
    assert_eq!(theirs.total, 1);
    assert_eq!(theirs.items[0].items[0].quantity, 2);
    let nobody = store
        .partner_orders(999_999, None, page(1, 10))
        .await
        .unwrap();
    assert!(nobody.items.is_empty() && nobody.total == 0);
});

// Two sellers ship the same partner order at once: one ships it, the other is refused and
// sees the winner's shipment.
store_tests!(two_concurrent_ships_one_wins, |store| async move {
    let (_, paid) = split_order(&*store, "race", true).await;
    let part = paid.partner_orders[0].id;
    moved(
        store
            .advance_partner_order(part, &Advance::Prepare, at(1))
            .await
            .unwrap(),
    );
    let attempts: Vec<_> = ["A-1", "B-2"]
        .into_iter()
        .map(|tracking| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .advance_partner_order(part, &ship(tracking), at(2))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut losers = Vec::new();
    for attempt in attempts {
        match attempt.await.unwrap() {
            FulfilmentOutcome::Done(p) => winners.push(p),
            FulfilmentOutcome::Refused(p) => losers.push(p),
            FulfilmentOutcome::NotFound => panic!("the partner order vanished"),
        }
    }
    assert_eq!((winners.len(), losers.len()), (1, 1));
    assert_eq!(losers[0].status, PartnerOrderStatus::Shipped);
    assert_eq!(losers[0].tracking_number, winners[0].tracking_number);
    let events = partner_order_events(&*store).await;
    let shipped = events
        .iter()
        .filter(|(t, _)| t == "partner_order.shipped")
        .count();
    assert_eq!(shipped, 1, "one shipment, one event");
});

// The last two parts of orders delivered at once, by two sellers: whichever commits last
// must see the other's delivery, so every order learns it was delivered.
store_tests!(
    concurrent_last_deliveries_mark_the_order,
    |store| async move {
        let mut orders = Vec::new();
        for i in 0..8 {
            let (_, paid) = split_order(&*store, &format!("last{i}"), true).await;
            for part in &paid.partner_orders {
                moved(
                    store
                        .advance_partner_order(part.id, &Advance::Prepare, at(1))
                        .await
                        .unwrap(),
                );
                let tracking = format!("T-{}", part.id);
                moved(
                    store
                        .advance_partner_order(part.id, &ship(&tracking), at(1))
                        .await
                        .unwrap(),
                );
            }
            orders.push(paid);
        }
        let mut deliveries = Vec::new();
        for paid in &orders {
            for part in &paid.partner_orders {
                let store: Arc<dyn Store> = store.clone();
                let id = part.id;
                deliveries.push(tokio::spawn(async move {
                    store
                        .advance_partner_order(id, &Advance::Deliver, at(2))
                        .await
                        .unwrap()
                }));
            }
        }
        for delivery in deliveries {
            moved(delivery.await.unwrap());
        }
        for paid in &orders {
            assert_eq!(order(&*store, paid.id).await.delivered_at, Some(at(2)));
        }
        let mut due = store.due_confirmations(at(2), 100).await.unwrap();
        due.sort_unstable();
        let ids: Vec<i64> = orders.iter().map(|o| o.id).collect();
        assert_eq!(due, ids);
        assert_verify_clean(&*store).await;
    }
);
