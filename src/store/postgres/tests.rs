//! Runs against a real PostgreSQL when `STAMPEDE_TEST_PG_URL` is set (for example
//! `postgres://postgres@127.0.0.1:5432/postgres`); each test creates its own database and
//! drops it afterwards. Without the variable every test returns at once.

use super::PgStore;
use crate::domain::allocation::{Line, OrderRequest, Rejection};
use crate::domain::events;
use crate::domain::order::{CancelReason, MovementKind};
use crate::domain::{OrderStatus, Quantity, Role, Timestamp};
use crate::store::{
    AuditStore, AuthStore, CatalogStore, NewProduct, NewUser, OrderRecord, OrderStore, OutboxStore,
    PageRequest, PaymentAttempt, PaymentOutcome, PlaceOutcome, PoolOptions, ProductPatch,
    RotateOutcome, Store, StoreError, TransitionOutcome,
};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

const URL_VAR: &str = "STAMPEDE_TEST_PG_URL";
const NOW_MS: i64 = 1_700_000_000_000;
const NOW: Timestamp = Timestamp::from_millis(NOW_MS);
const HOUR_MS: i64 = 3_600_000;

fn options() -> PoolOptions {
    PoolOptions {
        max_connections: 16,
        acquire_timeout: Duration::from_secs(30),
    }
}

/// `url` with its database name replaced by `name` (query string kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let root = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{name}?{q}"),
        None => format!("{root}/{name}"),
    }
}

/// Creates a fresh database, migrates it, runs `body`, then drops the database even when
/// `body` panicked (the panic is re-raised afterwards).
async fn with_store<F, Fut>(body: F)
where
    F: FnOnce(Arc<PgStore>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Ok(url) = std::env::var(URL_VAR) else {
        eprintln!("{URL_VAR} not set; skipping PostgreSQL test");
        return;
    };
    // A random suffix rather than the time: nothing in the store reads the clock.
    let suffix: u64 = rand::random();
    let name = format!("stampede_test_{}_{suffix}", std::process::id());
    let admin = PgStore::connect(&url, &options()).await.expect("connect");
    // Identifiers cannot be bound as parameters; `name` is generated above from digits.
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(admin.pool())
        .await
        .expect("create database");
    let store = Arc::new(
        PgStore::connect(&with_database(&url, &name), &options())
            .await
            .expect("connect to test database"),
    );
    // Two nodes starting at once: the advisory lock makes the second a no-op.
    let (a, b) = tokio::join!(store.migrate(NOW), store.migrate(NOW));
    a.expect("migrate");
    b.expect("migrate concurrently");
    store.migrate(NOW).await.expect("migrate again");
    let outcome = tokio::spawn(body(store.clone())).await;
    store.close().await;
    sqlx::raw_sql(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(admin.pool())
        .await
        .expect("drop database");
    admin.close().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

fn request(user_id: i64, key: &str, lines: &[(i64, i64)]) -> OrderRequest {
    let mut lines: Vec<Line> = lines
        .iter()
        .map(|(product_id, q)| Line {
            product_id: *product_id,
            quantity: Quantity::new("quantity", *q).expect("quantity"),
        })
        .collect();
    lines.sort_by_key(|l| l.product_id);
    OrderRequest {
        user_id,
        idempotency_key: key.to_owned(),
        request_hash: format!("{lines:?}"),
        lines,
        coupon_id: None,
        points: 0,
    }
}

async fn buyer(store: &PgStore, email: &str) -> i64 {
    let user = NewUser {
        email: email.to_owned(),
        password_hash: "hash".into(),
        role: Role::Buyer,
        partner_id: None,
    };
    store.insert_user(&user, NOW).await.expect("insert user").id
}

async fn product(
    store: &PgStore,
    partner_id: i64,
    stock: i64,
    max: Option<i64>,
    release_at: Timestamp,
) -> i64 {
    let new = NewProduct {
        partner_id,
        name: format!("drop {stock}"),
        price: 1_000,
        stock,
        release_at,
        max_per_user: max,
    };
    store
        .insert_product(&new, NOW)
        .await
        .expect("insert product")
        .id
}

fn placed(outcome: &PlaceOutcome) -> &OrderRecord {
    match outcome {
        PlaceOutcome::Placed(order) => order,
        other => panic!("expected a placed order, got {other:?}"),
    }
}

fn done(outcome: TransitionOutcome) -> OrderRecord {
    match outcome {
        TransitionOutcome::Done(order) => order,
        other => panic!("expected the transition to happen, got {other:?}"),
    }
}

fn payment(order: &OrderRecord, outcome: PaymentOutcome) -> PaymentAttempt {
    PaymentAttempt {
        order_id: order.id,
        payment_key: format!("pay-{}", order.id),
        amount: order.payable,
        outcome,
        detail: None,
    }
}

/// Recomputes every balance with `verify`, which must find nothing.
async fn assert_books_balance(store: &PgStore) {
    let audit = store.audit().await.expect("audit");
    let report = crate::app::audit::check(&audit);
    assert!(report.is_clean(), "verify found: {:#?}", report.problems);
}

#[tokio::test]
async fn catalog_products_and_stock() {
    with_store(|store| async move {
        let partner = store.insert_partner("Acme", 500, NOW).await.unwrap();
        let stored = store.partner(partner.id).await.unwrap().unwrap();
        assert_eq!(stored.name, "Acme");
        let id = product(&store, partner.id, 0, None, NOW).await;
        let levels = store.inbound(id, 3, Some("truck"), NOW).await.unwrap();
        let levels = levels.unwrap();
        assert_eq!((levels.on_hand, levels.held), (3, 0));
        let missing = store.inbound(999_999, 1, None, NOW).await.unwrap();
        assert!(missing.is_none());

        let patch = ProductPatch {
            name: Some("renamed".into()),
            max_per_user: Some(Some(2)),
            ..Default::default()
        };
        let updated = store.update_product(id, &patch, NOW).await.unwrap();
        let updated = updated.unwrap();
        assert_eq!((updated.max_per_user, updated.on_hand), (Some(2), 3));
        let clear = ProductPatch {
            max_per_user: Some(None),
            ..Default::default()
        };
        let updated = store.update_product(id, &clear, NOW).await.unwrap();
        let updated = updated.unwrap();
        assert_eq!(
            (updated.name.as_str(), updated.max_per_user),
            ("renamed", None)
        );

        let page = PageRequest { page: 1, size: 10 };
        let movements = store.movements(id, page).await.unwrap();
        assert_eq!(movements.total, 1);
        assert_eq!(movements.items[0].memo.as_deref(), Some("truck"));
        let list = store.list_products(page).await.unwrap();
        assert_eq!((list.total, list.items.len()), (1, 1));
        // A product created empty announces its stock only with its first inbound.
        let types = event_types(&store).await;
        let expected = [
            events::PARTNER_CREATED,
            events::PRODUCT_CREATED,
            events::STOCK_CHANGED,
            events::PRODUCT_UPDATED,
            events::PRODUCT_UPDATED,
        ];
        assert_eq!(types, expected);
    })
    .await;
}

async fn event_types(store: &PgStore) -> Vec<String> {
    let events = store.events_after(0, 1_000).await.unwrap();
    events.into_iter().map(|e| e.event_type).collect()
}

#[tokio::test]
async fn auth_users_sessions_and_settings() {
    with_store(|store| async move {
        let user = buyer(&store, "a@example.com").await;
        let again = NewUser {
            email: "a@example.com".into(),
            password_hash: "x".into(),
            role: Role::Buyer,
            partner_id: None,
        };
        let taken = store.insert_user(&again, NOW).await;
        assert!(matches!(taken, Err(StoreError::Conflict("email_taken"))));
        let bulk: Vec<NewUser> = (0..3)
            .map(|i| NewUser {
                email: format!("bulk{i}@example.com"),
                ..again.clone()
            })
            .collect();
        let ids = store.insert_users_bulk(&bulk, NOW).await.unwrap();
        let found = store.user_by_email("bulk2@example.com").await.unwrap();
        assert_eq!(found.map(|u| u.id), Some(ids[2]));
        let by_id = store.user_by_id(user).await.unwrap().unwrap();
        assert_eq!(
            (by_id.email.as_str(), by_id.role),
            ("a@example.com", Role::Buyer)
        );
        let clash = store.insert_users_bulk(&bulk[..1], NOW).await;
        assert!(matches!(clash, Err(StoreError::Conflict("email_taken"))));

        sessions(&store, user).await;
        let first = store.setting_or_insert("jwt", "first").await.unwrap();
        let second = store.setting_or_insert("jwt", "second").await.unwrap();
        assert_eq!((first.as_str(), second.as_str()), ("first", "first"));
        // Every change is an event (the refused inserts wrote none): four users
        // (one single, three bulk), then login, refresh, replay (revokes), login, logout.
        let expected = [
            events::USER_CREATED,
            events::USER_CREATED,
            events::USER_CREATED,
            events::USER_CREATED,
            events::SESSION_STARTED,
            events::SESSION_ROTATED,
            events::SESSION_REVOKED,
            events::SESSION_STARTED,
            events::SESSION_REVOKED,
        ];
        assert_eq!(event_types(&store).await, expected);
    })
    .await;
}

/// Rotation, reuse detection and revocation, as the SQLite store does them.
async fn sessions(store: &PgStore, user: i64) {
    let later = Timestamp::from_millis(NOW.millis() + HOUR_MS);
    let rotate = |old: &'static str, new: &'static str| async move {
        store.rotate_refresh(old, new, later, NOW).await.unwrap()
    };
    let session = store.create_session(user, "h1", later, NOW).await.unwrap();
    let rotated = RotateOutcome::Rotated {
        user_id: user,
        session_id: session,
    };
    assert_eq!(rotate("h1", "h2").await, rotated);
    assert_eq!(rotate("h1", "h3").await, RotateOutcome::Reused);
    assert_eq!(rotate("h2", "h4").await, RotateOutcome::Invalid, "revoked");
    assert_eq!(
        rotate("h1", "h5").await,
        RotateOutcome::Invalid,
        "revoked once"
    );
    assert_eq!(rotate("nope", "h6").await, RotateOutcome::Invalid);
    store.create_session(user, "s1", NOW, NOW).await.unwrap();
    assert_eq!(rotate("s1", "s2").await, RotateOutcome::Invalid, "expired");

    store
        .revoke_session(user, session, "jti-1", later, NOW)
        .await
        .unwrap();
    assert_eq!(store.revoked_tokens(NOW).await.unwrap(), ["jti-1"]);
    assert!(store.revoked_tokens(later).await.unwrap().is_empty());
}

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

async fn shop(store: &PgStore) -> Shop {
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

#[tokio::test]
async fn order_lifecycle_balances() {
    with_store(|store| async move {
        let shop = shop(&store).await;
        let (first, split) = first_batch(&store, &shop).await;
        let expiring = second_batch(&store, &shop, &first).await;
        assert_books_balance(&store).await;
        pay_cancel_refund(&store, &first, &split).await;
        expire(&store, &expiring).await;
        assert_ledgers(&store, shop.limited, shop.restock).await;
        assert_books_balance(&store).await;

        let page = PageRequest { page: 1, size: 10 };
        let mine = store.list_orders(Some(shop.buyers[0]), page).await.unwrap();
        assert_eq!((mine.total, mine.items[0].id), (1, first.id));
        let page = PageRequest { page: 1, size: 2 };
        let all = store.list_orders(None, page).await.unwrap();
        assert_eq!((all.total, all.items.len()), (3, 2));
        assert!(all.items[0].id > all.items[1].id, "newest first");
    })
    .await;
}

/// Every kind of answer in one batch. Returns the first order and the split one.
async fn first_batch(store: &PgStore, shop: &Shop) -> (OrderRecord, OrderRecord) {
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
async fn second_batch(store: &PgStore, shop: &Shop, first: &OrderRecord) -> OrderRecord {
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

async fn pay_cancel_refund(store: &PgStore, first: &OrderRecord, split: &OrderRecord) {
    let approved = payment(first, PaymentOutcome::Approved);
    let paid = done(store.mark_paid(first.id, &approved, NOW).await.unwrap());
    assert_eq!(paid.status, OrderStatus::Paid);
    assert!(paid.partner_orders.iter().all(|p| p.status == "paid"));
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
        .all(|p| p.status == "refunded"));
    let missing = store.cancel_order(999_999, requested, NOW).await.unwrap();
    assert!(matches!(missing, TransitionOutcome::NotFound));
}

/// The sweeper's view: not due, then due; paying after the deadline is refused.
async fn expire(store: &PgStore, order: &OrderRecord) {
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
async fn assert_ledgers(store: &PgStore, limited: i64, restock: i64) {
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

/// Many batches from many tasks on a few hot products, lines in both orders: no deadlock,
/// no oversell, the books balance, and a reader tailing the outbox meanwhile misses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_batches_never_oversell() {
    with_store(|store| async move {
        let partner = store.insert_partner("Acme", 0, NOW).await.unwrap().id;
        let mut products = Vec::new();
        for _ in 0..3 {
            products.push(product(&store, partner, 40, Some(3), NOW).await);
        }
        let users: Vec<NewUser> = (0..40)
            .map(|i| NewUser {
                email: format!("c{i}@example.com"),
                password_hash: "x".into(),
                role: Role::Buyer,
                partner_id: None,
            })
            .collect();
        let users = store.insert_users_bulk(&users, NOW).await.unwrap();
        let tail = tokio::spawn(tail_outbox(store.clone()));
        let mut tasks = Vec::new();
        for task in 0..8usize {
            let (store, products, users) = (store.clone(), products.clone(), users.clone());
            tasks.push(tokio::spawn(async move {
                let mut placed_units = 0;
                for round in 0..12usize {
                    let batch: Vec<OrderRequest> = (0..10usize)
                        .map(|i| {
                            let user = users[(task * 7 + round * 3 + i) % users.len()];
                            let a = products[(task + i) % 3];
                            let b = products[(task + i + 1) % 3];
                            request(user, &format!("t{task}r{round}i{i}"), &[(a, 1), (b, 1)])
                        })
                        .collect();
                    let result = store.place_batch(&batch, NOW, NOW).await.expect("batch");
                    placed_units += result
                        .outcomes
                        .iter()
                        .filter(|o| matches!(o, PlaceOutcome::Placed(_)))
                        .count()
                        * 2;
                }
                placed_units
            }));
        }
        let mut units = 0;
        for task in tasks {
            units += task.await.unwrap();
        }
        assert!(units <= 120, "sold {units} units of 120");
        let mut held = 0;
        for id in &products {
            let p = store.product(*id).await.unwrap().unwrap();
            assert!(p.held <= p.on_hand);
            held += p.held as usize;
        }
        assert_eq!(held, units, "every placed unit is held, and nothing else");
        let seen = tail.await.unwrap();
        let events = store.events_after(0, 100_000).await.unwrap();
        let all: Vec<i64> = events.iter().map(|e| e.id).collect();
        assert_eq!(seen, all, "the tailing reader skipped or repeated an event");
        assert_books_balance(&store).await;
    })
    .await;
}

/// Tails the outbox like the dispatcher until it has seen 1,000 quiet milliseconds.
async fn tail_outbox(store: Arc<PgStore>) -> Vec<i64> {
    let mut seen = Vec::new();
    let mut cursor = 0;
    let mut quiet = 0;
    while quiet < 100 {
        let events = store.events_after(cursor, 50).await.unwrap();
        if events.is_empty() {
            quiet += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        quiet = 0;
        for event in events {
            cursor = event.id;
            seen.push(event.id);
        }
    }
    seen
}

/// Two nodes placing the same key for different products at the same moment: one wins,
/// the other either sees the stored order (a mismatch, since the body differs) or loses
/// the race and is told to retry alone. Never two orders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_race_across_nodes() {
    with_store(|store| async move {
        let partner = store.insert_partner("Acme", 0, NOW).await.unwrap().id;
        let a = product(&store, partner, 100, None, NOW).await;
        let b = product(&store, partner, 100, None, NOW).await;
        let user = buyer(&store, "race@example.com").await;
        let (mut mismatches, mut races) = (0, 0);
        for round in 0..20 {
            let key = format!("race-{round}");
            let (first, second) = (
                [request(user, &key, &[(a, 1)])],
                [request(user, &key, &[(b, 1)])],
            );
            let one = store.place_batch(&first, NOW, NOW);
            let two = store.place_batch(&second, NOW, NOW);
            let (one, two) = tokio::join!(one, two);
            let mut placed = 0;
            for result in [one, two] {
                match result {
                    Ok(r) => match &r.outcomes[0] {
                        PlaceOutcome::Placed(_) => placed += 1,
                        PlaceOutcome::Rejected(Rejection::IdempotencyMismatch) => mismatches += 1,
                        other => panic!("unexpected outcome {other:?}"),
                    },
                    Err(StoreError::Conflict("idempotency_race")) => races += 1,
                    Err(e) => panic!("unexpected error {e}"),
                }
            }
            assert_eq!(placed, 1, "round {round}");
        }
        eprintln!(
            "same key on two nodes: {mismatches} saw the stored order, {races} lost the race"
        );
        let orders = store
            .list_orders(Some(user), PageRequest { page: 1, size: 100 })
            .await
            .unwrap();
        assert_eq!(orders.total, 20);
        assert_books_balance(&store).await;
    })
    .await;
}

/// The outbox horizon (see `outbox.rs`): a writer that drew a lower id but commits later
/// must not be skipped by a reader that already sees a higher id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_reader_waits_for_open_writers() {
    with_store(|store| async move {
        let event = |id| events::product_changed(events::PRODUCT_UPDATED, id);
        let mut slow = store.pool().begin().await.unwrap();
        super::outbox::append(&mut slow, &[event(1)], NOW)
            .await
            .unwrap();
        let mut fast = store.pool().begin().await.unwrap();
        super::outbox::append(&mut fast, &[event(2)], NOW)
            .await
            .unwrap();
        fast.commit().await.unwrap();

        let reader = tokio::spawn({
            let store = store.clone();
            async move { store.events_after(0, 10).await.unwrap() }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !reader.is_finished(),
            "the reader must wait for the open writer"
        );
        slow.commit().await.unwrap();
        let seen: Vec<i64> = reader
            .await
            .unwrap()
            .iter()
            .map(|e| e.aggregate_id)
            .collect();
        assert_eq!(seen, vec![1, 2]);
    })
    .await;
}
