//! The sweeper goes order by order (issue 12): an order whose transition keeps failing is
//! logged, counted in `sweeper_failures_total` and stepped over, and the due orders behind
//! it are still expired or confirmed. Each test runs a batch of one, where a failing order
//! at the head of the due list used to end every pass before the rest.

use crate::helpers::*;
use serde_json::Value;
use stampede::metrics::TransitionLabels;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);
/// Ten minutes, skipped on the servers' clock (within the 15-minute life of the tokens).
const AUTO_CONFIRM_AFTER_SECS: u64 = 600;

/// From now on the database refuses every change to order `order_id`, as it would for a
/// row it can no longer write: a trigger, on either backend.
async fn poison(app: &TestApp, order_id: i64) {
    let sql = match app.backend {
        Backend::Sqlite => format!(
            "CREATE TRIGGER poisoned_order BEFORE UPDATE ON orders WHEN OLD.id = {order_id} \
             BEGIN SELECT RAISE(ABORT, 'poisoned order'); END;"
        ),
        Backend::Postgres => format!(
            "CREATE FUNCTION poisoned_order() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'poisoned order'; END $$; \
             CREATE TRIGGER poisoned_order BEFORE UPDATE ON orders FOR EACH ROW \
             WHEN (OLD.id = {order_id}) EXECUTE FUNCTION poisoned_order();"
        ),
    };
    execute_sql(app, &sql).await;
}

/// Failed transitions of one kind counted so far on this node.
fn failures(app: &TestApp, transition: &'static str) -> u64 {
    app.state
        .metrics
        .sweeper_failures
        .get_or_create(&TransitionLabels { transition })
        .get()
}

/// Waits until order `order_id` has left `status`; returns it as it is then.
async fn left(app: &TestApp, buyer: &str, order_id: i64, status: &str) -> Value {
    eventually(
        WAIT,
        "the sweeper to move the order behind the failing one",
        || {
            let (app, buyer) = (app.clone(), buyer.to_owned());
            let status = status.to_owned();
            async move {
                let order = app.order(&buyer, order_id).await;
                (order["status"] != status.as_str()).then_some(order)
            }
        },
    )
    .await
}

backend_tests!(
    an_order_that_cannot_expire_does_not_hold_back_the_others,
    config = |c| {
        c.sweeper_interval_ms = 100;
        c.sweeper_batch_max = 1;
    },
    |app| async move {
        let product = app.simple_product(1_000, 10).await;
        let buyer = app.buyer().await;
        let stuck = int(&app.order_ok(&buyer, &[(product, 1)]).await, "id");
        // A later deadline: the failing order heads the due list.
        app.clock.advance(Duration::from_secs(1));
        let next = int(&app.order_ok(&buyer, &[(product, 2)]).await, "id");
        poison(&app, stuck).await;
        app.clock
            .advance(Duration::from_secs(app.limits.hold_ttl_secs + 1));

        let expired = left(&app, &buyer, next, "pending_payment").await;
        assert_eq!(expired["status"], "cancelled", "{expired}");
        assert_eq!(expired["cancel_reason"], "expired", "{expired}");
        assert_eq!(app.order(&buyer, stuck).await["status"], "pending_payment");
        assert_eq!(
            app.stock(product).await.held,
            1,
            "only the failing order holds"
        );
        assert!(failures(&app, "expire") >= 1, "the failure is counted");
        assert_eq!(failures(&app, "confirm"), 0);
    }
);

backend_tests!(
    an_order_that_cannot_be_confirmed_does_not_hold_back_the_others,
    config = |c| {
        c.sweeper_interval_ms = 100;
        c.sweeper_batch_max = 1;
        c.auto_confirm_after_secs = AUTO_CONFIRM_AFTER_SECS;
    },
    |app| async move {
        let product = app.simple_product(1_000, 10).await;
        let buyer = app.buyer().await;
        let delivered = |quantity| {
            let (app, buyer) = (app.clone(), buyer.clone());
            async move {
                let order = app.order_ok(&buyer, &[(product, quantity)]).await;
                let paid = expect(&app.pay(&buyer, &order).await, 200).clone();
                app.deliver_all(&paid).await;
                int(&paid, "id")
            }
        };
        let stuck = delivered(1).await;
        // A later delivery: the failing order heads the due list.
        app.clock.advance(Duration::from_secs(1));
        let next = delivered(2).await;
        poison(&app, stuck).await;
        app.clock
            .advance(Duration::from_secs(AUTO_CONFIRM_AFTER_SECS + 1));

        let confirmed = left(&app, &buyer, next, "paid").await;
        assert_eq!(confirmed["status"], "confirmed", "{confirmed}");
        assert_eq!(app.order(&buyer, stuck).await["status"], "paid");
        assert!(failures(&app, "confirm") >= 1, "the failure is counted");
        assert_eq!(failures(&app, "expire"), 0);
    }
);
