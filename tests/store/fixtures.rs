//! Building blocks of the store tests: a fixed "now", users, products, order requests, and
//! the unwrapping of outcomes.

use stampede::domain::allocation::{Line, OrderRequest};
use stampede::domain::{Quantity, Role, Timestamp};
use stampede::store::{
    NewProduct, NewUser, OrderRecord, PaymentAttempt, PaymentOutcome, PlaceOutcome, Store,
    TransitionOutcome,
};

pub const NOW_MS: i64 = 1_700_000_000_000;
pub const NOW: Timestamp = Timestamp::from_millis(NOW_MS);
pub const HOUR_MS: i64 = 3_600_000;

pub fn request(user_id: i64, key: &str, lines: &[(i64, i64)]) -> OrderRequest {
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

pub async fn buyer(store: &dyn Store, email: &str) -> i64 {
    let user = NewUser {
        email: email.to_owned(),
        password_hash: "hash".into(),
        role: Role::Buyer,
        partner_id: None,
    };
    store.insert_user(&user, NOW).await.expect("insert user").id
}

pub async fn product(
    store: &dyn Store,
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

pub fn placed(outcome: &PlaceOutcome) -> &OrderRecord {
    match outcome {
        PlaceOutcome::Placed(order) => order,
        other => panic!("expected a placed order, got {other:?}"),
    }
}

pub fn done(outcome: TransitionOutcome) -> OrderRecord {
    match outcome {
        TransitionOutcome::Done(order) => order,
        other => panic!("expected the transition to happen, got {other:?}"),
    }
}

pub fn payment(order: &OrderRecord, outcome: PaymentOutcome) -> PaymentAttempt {
    PaymentAttempt {
        order_id: order.id,
        payment_key: format!("pay-{}", order.id),
        amount: order.payable,
        outcome,
        detail: None,
    }
}

/// Recomputes every balance with `verify`, which must find nothing.
pub async fn assert_books_balance(store: &dyn Store) {
    let audit = store.audit().await.expect("audit");
    let report = stampede::app::audit::check(&audit);
    assert!(report.is_clean(), "verify found: {:#?}", report.problems);
}

/// Everything `stampede verify` checks must find nothing.
pub async fn assert_verify_clean(store: &dyn Store) {
    let report = stampede::app::audit::run(store).await.expect("verify");
    assert!(report.is_clean(), "verify found: {:#?}", report.problems);
}

/// The types of every event in the outbox, oldest first.
pub async fn event_types(store: &dyn Store) -> Vec<String> {
    let events = store.events_after(0, 1_000).await.unwrap();
    events.into_iter().map(|e| e.event_type).collect()
}

/// Runs one statement on the test's database behind the store's back, on a connection of
/// its own, whichever backend `url` names. A prepared statement rather than
/// `common::databases`' raw SQL, whose future a spawned test body cannot prove `Send`.
pub async fn sql_execute(url: &str, sql: &str) {
    use sqlx::Connection;
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.expect(url);
        sqlx::query(sql).execute(&mut conn).await.expect(sql);
        let _ = conn.close().await;
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.expect("PostgreSQL");
        sqlx::query(sql).execute(&mut conn).await.expect(sql);
        let _ = conn.close().await;
    }
}

/// The one integer `sql` selects from the test's database, behind the store's back.
pub async fn sql_int(url: &str, sql: &str) -> i64 {
    use crate::common::databases::{pg_int, sqlite_int};
    if url.starts_with("sqlite:") {
        sqlite_int(url, sql).await
    } else {
        pg_int(url, sql).await
    }
}
