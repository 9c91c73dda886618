//! An order's whole life on the store: every kind of answer to a placement batch, replays
//! and purchase limits across batches, payment, cancellation, refund and expiry, and the
//! ledger rows, events and balances all of that must leave.

use crate::fixtures::{
    assert_books_balance, buyer, done, payment, placed, product, request, HOUR_MS, NOW, NOW_MS,
};
use stampede::domain::allocation::Rejection;
use stampede::domain::events;
use stampede::domain::fulfilment::PartnerOrderStatus;
use stampede::domain::order::{CancelReason, MovementKind};
use stampede::domain::{OrderStatus, Timestamp};
use stampede::store::{
    OrderRecord, PageRequest, PaymentOutcome, PlaceOutcome, Store, TransitionOutcome,
};

/// Two partners, four products and three buyers.
struct Shop {
    acme: i64,
    bolt: i64,
    /// 5 units, at most 2 per buyer.
    limited: i64,
    /// 1 unit.
    single: i64,
    /// Released an hour from now.
    future: i64,
    /// Created empty, then 3 units come in.
    restock: i64,
    buyers: [i64; 3],
}

async fn shop(store: &dyn Store) -> Shop {
    let acme = store.insert_partner("Acme", 500, NOW).await.unwrap().id;
    let bolt = store.insert_partner("Bolt", 800, NOW).await.unwrap().id;
    let in_an_hour = Timestamp::from_millis(NOW.millis() + HOUR_MS);
    let restock = product(store, bolt, 0, None, NOW).await;
    store.inbound(restock, 3, None, NOW).await.unwrap();
    Shop {
        acme,
        bolt,
        limited: product(store, acme, 5, Some(2), NOW).await,
        single: product(store, bolt, 1, None, NOW).await,
        future: product(store, acme, 10, None, in_an_hour).await,
        restock,
        buyers: [
            buyer(store, "u1@example.com").await,
            buyer(store, "u2@example.com").await,
            buyer(store, "u3@example.com").await,
        ],
    }
}

/// Deadline of the orders placed by [`second_batch`].
const DUE_BY: Timestamp = Timestamp::from_millis(NOW_MS + 1_000);

store_tests!(order_lifecycle_balances, |store| async move {
    let shop = shop(&*store).await;
    let (first, split) = first_batch(&*store, &shop).await;
    let expiring = second_batch(&*store, &shop, &first).await;
    assert_books_balance(&*store).await;
    pay_cancel_refund(&*store, &first, &split).await;
    expire(&*store, &expiring).await;
    assert_ledgers(&*store, shop.limited, shop.restock).await;
    assert_books_balance(&*store).await;

    let page = PageRequest { page: 1, size: 10 };
    let mine = store.list_orders(Some(shop.buyers[0]), page).await.unwrap();
    assert_eq!((mine.total, mine.items[0].id), (1, first.id));
    let page = PageRequest { page: 1, size: 2 };
    let all = store.list_orders(None, page).await.unwrap();
    assert_eq!((all.total, all.items.len()), (3, 2));
    assert!(all.items[0].id > all.items[1].id, "newest first");
});

/// Every kind of answer in one batch. Returns the first order and the split one.
async fn first_batch(store: &dyn Store, shop: &Shop) -> (OrderRecord, OrderRecord) {
    let [u1, u2, u3] = shop.buyers;
    let first = request(u1, "k1", &[(shop.limited, 2)]);
    let batch = [
        first.clone(),
        request(u1, "k2", &[(shop.limited, 1)]),
        request(u2, "k1", &[(shop.single, 1), (shop.limited, 1)]),
        request(u3, "k1", &[(shop.single, 1)]),
        request(u3, "k2", &[(shop.future, 1)]),
        first,
        request(u1, "k1", &[(shop.limited, 1)]),
        request(u3, "k3", &[(999_999, 1)]),
    ];
    let pay_by = Timestamp::from_millis(NOW.millis() + HOUR_MS);
    let result = store.place_batch(&batch, pay_by, NOW).await.unwrap();
    let o = &result.outcomes;
    let order = placed(&o[0]).clone();
    assert_eq!((order.total, order.payable), (2_000, 2_000));
    assert_eq!(order.status, OrderStatus::PendingPayment);
    let limit = Rejection::PurchaseLimit {
        product_id: shop.limited,
        max_per_user: 2,
    };
    assert_eq!(rejection(&o[1]), limit);
    let split = placed(&o[2]).clone();
    let partners: Vec<i64> = split.partner_orders.iter().map(|p| p.partner_id).collect();
    assert_eq!(partners, [shop.acme, shop.bolt]);
    let sold_out = Rejection::OutOfStock {
        product_id: shop.single,
    };
    assert_eq!(rejection(&o[3]), sold_out);
    let early = Rejection::NotReleased {
        product_id: shop.future,
    };
    assert_eq!(rejection(&o[4]), early);
    assert!(matches!(&o[5], PlaceOutcome::Replayed(r) if r.id == order.id));
    assert_eq!(rejection(&o[6]), Rejection::IdempotencyMismatch);
    let unknown = Rejection::UnknownProduct {
        product_id: 999_999,
    };
    assert_eq!(rejection(&o[7]), unknown);
    let available = [(shop.limited, 2), (shop.single, 0), (shop.future, 10)];
    assert_eq!(result.available_after, available);
    let last = store.last_event_id().await.unwrap();
    assert_eq!(
        result.last_event_id,
        Some(last),
        "the batch's events end the outbox"
    );
    // A batch that places nothing writes no event.
    let again = store.place_batch(&batch[5..7], pay_by, NOW).await.unwrap();
    assert_eq!(again.last_event_id, None);
    assert_eq!(store.last_event_id().await.unwrap(), last);
    // The record built in memory is the one a read returns.
    let stored = store.order(split.id).await.unwrap().unwrap();
    assert_eq!(format!("{stored:?}"), format!("{split:?}"));
    (order, split)
}

fn rejection(outcome: &PlaceOutcome) -> Rejection {
    match outcome {
        PlaceOutcome::Rejected(rejection) => rejection.clone(),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// A later batch replays a stored key and counts units bought before against the limit.
/// Returns an order due at [`DUE_BY`].
async fn second_batch(store: &dyn Store, shop: &Shop, first: &OrderRecord) -> OrderRecord {
    let [u1, u2, u3] = shop.buyers;
    let batch = [
        request(u1, "k1", &[(shop.limited, 2)]),
        request(u3, "k4", &[(shop.restock, 3)]),
        request(u2, "k2", &[(shop.limited, 2)]),
    ];
    let result = store.place_batch(&batch, DUE_BY, NOW).await.unwrap();
    let o = &result.outcomes;
    assert!(matches!(&o[0], PlaceOutcome::Replayed(r) if r.id == first.id));
    let limit = Rejection::PurchaseLimit {
        product_id: shop.limited,
        max_per_user: 2,
    };
    assert_eq!(rejection(&o[2]), limit);
    placed(&o[1]).clone()
}

async fn pay_cancel_refund(store: &dyn Store, first: &OrderRecord, split: &OrderRecord) {
    let approved = payment(first, PaymentOutcome::Approved);
    let paid = done(store.mark_paid(first.id, &approved, NOW).await.unwrap());
    assert_eq!(paid.status, OrderStatus::Paid);
    assert!(paid
        .partner_orders
        .iter()
        .all(|p| p.status == PartnerOrderStatus::Paid));
    let twice = store.mark_paid(first.id, &approved, NOW).await.unwrap();
    assert!(matches!(twice, TransitionOutcome::Refused(_)));

    let requested = CancelReason::Requested;
    let cancelled = done(store.cancel_order(split.id, requested, NOW).await.unwrap());
    assert_eq!(cancelled.status, OrderStatus::Cancelled);
    assert_eq!(cancelled.cancel_reason.as_deref(), Some("requested"));
    let refunded = done(store.cancel_order(first.id, requested, NOW).await.unwrap());
    assert_eq!(refunded.status, OrderStatus::Refunded);
    assert!(refunded
        .partner_orders
        .iter()
        .all(|p| p.status == PartnerOrderStatus::Refunded));
    let missing = store.cancel_order(999_999, requested, NOW).await.unwrap();
    assert!(matches!(missing, TransitionOutcome::NotFound));
}

/// The sweeper's view: not due, then due; paying after the deadline is refused.
async fn expire(store: &dyn Store, order: &OrderRecord) {
    let late = Timestamp::from_millis(DUE_BY.millis() + 1);
    assert!(store.due_orders(NOW, 10).await.unwrap().is_empty());
    assert_eq!(store.due_orders(late, 10).await.unwrap(), [order.id]);
    let expired = CancelReason::Expired;
    let early = store.cancel_order(order.id, expired, NOW).await.unwrap();
    assert!(matches!(early, TransitionOutcome::Refused(_)));
    let approved = payment(order, PaymentOutcome::Approved);
    let too_late = store.mark_paid(order.id, &approved, late).await.unwrap();
    assert!(matches!(too_late, TransitionOutcome::Refused(_)));
    let voided = payment(order, PaymentOutcome::Voided);
    store.record_payment(&voided, late).await.unwrap();
    let cancelled = done(store.cancel_order(order.id, expired, late).await.unwrap());
    assert_eq!(cancelled.status, OrderStatus::Cancelled);
    assert_eq!(cancelled.cancel_reason.as_deref(), Some("expired"));
    assert!(store.due_orders(late, 10).await.unwrap().is_empty());
}

/// The ledger rows and events the lifecycle above must have written.
async fn assert_ledgers(store: &dyn Store, limited: i64, restock: i64) {
    let page = store
        .movements(limited, PageRequest { page: 1, size: 50 })
        .await
        .unwrap();
    let kinds: Vec<(MovementKind, i64, i64, i64)> = page
        .items
        .iter()
        .rev()
        .map(|m| (m.kind, m.quantity, m.on_hand_after, m.held_after))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (MovementKind::Inbound, 5, 5, 0),
            (MovementKind::Hold, 2, 5, 2),
            (MovementKind::Hold, 1, 5, 3),
            (MovementKind::Commit, 2, 3, 1),
            (MovementKind::Release, 1, 3, 0),
            (MovementKind::Return, 2, 5, 0),
        ]
    );
    let product = store.product(restock).await.unwrap().unwrap();
    assert_eq!((product.on_hand, product.held), (3, 0));
    let events = store.events_after(0, 1_000).await.unwrap();
    let count = |t: &str| events.iter().filter(|e| e.event_type == t).count();
    assert_eq!(count(events::ORDER_PLACED), 3);
    assert_eq!(count(events::ORDER_PAID), 1);
    assert_eq!(count(events::ORDER_CANCELLED), 1);
    assert_eq!(count(events::ORDER_EXPIRED), 1);
    assert_eq!(count(events::ORDER_REFUNDED), 1);
    assert!(events.windows(2).all(|w| w[0].id < w[1].id));
}
