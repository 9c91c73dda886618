//! Loyalty points (issue 4, item 3): admins' grants and adjustments, the buyer's balance and
//! ledger, earning exactly once on purchase confirmation, and expiry on one node. Holds,
//! spending, releases and refunds happen through orders: see `order_benefits.rs`.

use crate::helpers::*;
use serde_json::{json, Value};
use stampede::app::points::ExpiryRun;
use stampede::domain::Timestamp;
use stampede::jobs::points::{ExpiryJob, EXPIRY_LEASE};
use stampede::jobs::{Job, Schedule, Scope};
use stampede::store::{
    EarnOutcome, NewPointsOperation, PointsOperationKind, PointsOperationOutcome,
};
use std::time::Duration;

const DAY_SECS: u64 = 86_400;
const EARN_WAIT: Duration = Duration::from_secs(15);

pub(crate) fn in_days(days: u64) -> String {
    stampede::clock::Clock::now(&stampede::clock::SystemClock)
        .plus_secs(days * DAY_SECS)
        .to_rfc3339()
}

async fn grant(app: &TestApp, token: &str, key: &str, body: &Value) -> Reply {
    app.post_idem("/admin/points/grant", Some(token), key, body)
        .await
}

pub(crate) async fn adjust(app: &TestApp, token: &str, key: &str, body: &Value) -> Reply {
    app.post_idem("/admin/points/adjust", Some(token), key, body)
        .await
}

async fn points(app: &TestApp, token: &str) -> Value {
    expect(&app.get("/me/points", Some(token)).await, 200).clone()
}

/// `(balance, held, available)` as `GET /me/points` shows them.
pub(crate) async fn levels(app: &TestApp, token: &str) -> (i64, i64, i64) {
    let p = points(app, token).await;
    let levels = (int(&p, "balance"), int(&p, "held"), int(&p, "available"));
    assert_eq!(
        levels.2,
        levels.0 - levels.1,
        "available != balance - held: {p}"
    );
    levels
}

/// The buyer's whole ledger, newest first.
pub(crate) async fn history(app: &TestApp, token: &str) -> Vec<Value> {
    let reply = app
        .get("/me/points/history?page=1&size=100", Some(token))
        .await;
    let body = expect(&reply, 200);
    assert_eq!(
        array(body, "items").len() as i64,
        int(body, "total"),
        "{body}"
    );
    array(body, "items").clone()
}

/// `(kind, amount, lot_id)` of each row, newest first.
fn rows(history: &[Value]) -> Vec<(String, i64, Option<i64>)> {
    history
        .iter()
        .map(|r| {
            (
                str_of(r, "kind").to_owned(),
                int(r, "amount"),
                r["lot_id"].as_i64(),
            )
        })
        .collect()
}

/// Grants `amount` to the buyer through the API; returns the new lot's id.
pub(crate) async fn grant_lot(
    app: &TestApp,
    buyer: &str,
    amount: i64,
    expires_at: Option<String>,
) -> i64 {
    let admin = app.admin_token().await;
    let user_id = app.user_id(buyer).await;
    let mut body = json!({"user_id": user_id, "amount": amount, "reason": "welcome"});
    if let Some(at) = expires_at {
        body["expires_at"] = json!(at);
    }
    expect(&grant(app, &admin, &unique("grant"), &body).await, 201);
    let newest = history(app, buyer).await.remove(0);
    assert_eq!(newest["kind"], "earn", "{newest}");
    int(&newest, "lot_id")
}

/// A pending order of the buyer (one 1,000-won unit of a fresh product) that holds
/// `points` of their points; returns its id.
async fn order_with_points(app: &TestApp, buyer: &str, points: i64) -> i64 {
    let product = app.simple_product(1_000, 1).await;
    let mut body = order_body(&[(product, 1)]);
    body["points"] = json!(points);
    let reply = app
        .post_idem("/orders", Some(buyer), &unique("order"), &body)
        .await;
    let order = expect(&reply, 201);
    assert_eq!(int(order, "points_used"), points, "{order}");
    int(order, "id")
}

/// The value of one sample line of `/metrics`, 0 when absent.
pub(crate) async fn metric(app: &TestApp, sample: &str) -> f64 {
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    let text = response.text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Event types of the buyer's points, oldest first.
pub(crate) async fn points_events(app: &TestApp, user_id: i64) -> Vec<String> {
    app.state
        .store
        .events_after(0, 100_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.aggregate_type == "points" && e.aggregate_id == user_id)
        .map(|e| e.event_type)
        .collect()
}

backend_tests!(grants_adjustments_history_and_balance, |app| async move {
    let admin = app.admin_token().await;
    let buyer = app.buyer().await;
    let user_id = app.user_id(&buyer).await;
    assert_eq!(levels(&app, &buyer).await, (0, 0, 0));

    let soon = in_days(10);
    let body =
        json!({"user_id": user_id, "amount": 1000, "reason": " welcome ", "expires_at": soon});
    let first = expect(&grant(&app, &admin, "grant-1", &body).await, 201).clone();
    assert_eq!(first["kind"], "grant");
    assert_eq!(first["reason"], "welcome", "trimmed: {first}");
    assert_eq!((int(&first, "balance"), int(&first, "held")), (1000, 0));
    // Same key, same body: the same answer, and nothing granted twice.
    let replay = grant(&app, &admin, "grant-1", &body).await;
    assert_eq!(expect(&replay, 200), &first);
    assert_eq!(levels(&app, &buyer).await, (1000, 0, 1000));
    // Same key, another body: refused, nothing changes.
    let other = json!({"user_id": user_id, "amount": 999, "reason": "welcome", "expires_at": soon});
    expect_error(
        &grant(&app, &admin, "grant-1", &other).await,
        422,
        "idempotency_mismatch",
    );
    assert_eq!(levels(&app, &buyer).await, (1000, 0, 1000));

    // Without expires_at a grant lasts points_valid_days (365): not "expiring" within 30.
    let body = json!({"user_id": user_id, "amount": 500, "reason": "sorry"});
    expect(&grant(&app, &admin, "grant-2", &body).await, 201);
    let p = points(&app, &buyer).await;
    assert_eq!(int(&p, "balance"), 1500);
    let expiring = array(&p, "expiring");
    assert_eq!(expiring.len(), 1, "{p}");
    assert_eq!(int(&expiring[0], "amount"), 1000);

    // A deduction takes from the lot that expires first.
    let body = json!({"user_id": user_id, "amount": -300, "reason": "fraud"});
    let adjusted = expect(&adjust(&app, &admin, "adjust-1", &body).await, 201).clone();
    assert_eq!(
        (int(&adjusted, "amount"), int(&adjusted, "balance")),
        (-300, 1200)
    );
    expect(&adjust(&app, &admin, "adjust-1", &body).await, 200);
    let body = json!({"user_id": user_id, "amount": 50, "reason": "fix"});
    expect(&adjust(&app, &admin, "adjust-2", &body).await, 201);
    assert_eq!(levels(&app, &buyer).await, (1250, 0, 1250));
    assert_eq!(
        int(&array(&points(&app, &buyer).await, "expiring")[0], "amount"),
        700
    );

    let ledger = history(&app, &buyer).await;
    let soon_lot = ledger[3]["lot_id"].as_i64();
    assert_eq!(
        rows(&ledger),
        [
            ("adjust".to_owned(), 50, ledger[0]["lot_id"].as_i64()),
            ("adjust".to_owned(), -300, soon_lot),
            ("earn".to_owned(), 500, ledger[2]["lot_id"].as_i64()),
            ("earn".to_owned(), 1000, soon_lot),
        ]
    );
    assert_eq!(ledger[1]["reason"], "fraud");
    let page = expect(
        &app.get("/me/points/history?page=2&size=3", Some(&buyer))
            .await,
        200,
    )
    .clone();
    assert_eq!((array(&page, "items").len(), int(&page, "total")), (1, 4));
    assert_eq!(
        points_events(&app, user_id).await,
        [
            "points.granted",
            "points.granted",
            "points.adjusted",
            "points.adjusted"
        ]
    );
    app.assert_verify_clean().await;
});

backend_tests!(bad_points_requests_change_nothing, |app| async move {
    let admin = app.admin_token().await;
    let buyer = app.buyer().await;
    let user_id = app.user_id(&buyer).await;
    grant_lot(&app, &buyer, 1000, None).await;
    let before = history(&app, &buyer).await;
    let body = |amount: i64| json!({"user_id": user_id, "amount": amount, "reason": "x"});

    for amount in [0, -5, 1_000_000_001] {
        let reply = grant(&app, &admin, &unique("k"), &body(amount)).await;
        expect_error(&reply, 422, "validation_failed");
    }
    for amount in [0, 1_000_000_001, -1_000_000_001] {
        let reply = adjust(&app, &admin, &unique("k"), &body(amount)).await;
        expect_error(&reply, 422, "validation_failed");
    }
    let long = "r".repeat(201);
    for reason in ["", "   ", long.as_str()] {
        let bad = json!({"user_id": user_id, "amount": 5, "reason": reason});
        expect_error(
            &grant(&app, &admin, &unique("k"), &bad).await,
            422,
            "validation_failed",
        );
    }
    let past = json!({"user_id": user_id, "amount": 5, "reason": "x",
        "expires_at": stampede::clock::Clock::now(&stampede::clock::SystemClock).minus_secs(60).to_rfc3339()});
    expect_error(
        &grant(&app, &admin, &unique("k"), &past).await,
        422,
        "validation_failed",
    );
    let unknown = json!({"user_id": 987_654_321, "amount": 5, "reason": "x"});
    expect_error(
        &grant(&app, &admin, &unique("k"), &unknown).await,
        404,
        "not_found",
    );
    let not_a_buyer = json!({"user_id": app.user_id(&admin).await, "amount": 5, "reason": "x"});
    expect_error(
        &grant(&app, &admin, &unique("k"), &not_a_buyer).await,
        404,
        "not_found",
    );
    // More than the buyer has.
    let key = unique("k");
    expect_error(
        &adjust(&app, &admin, &key, &body(-1001)).await,
        409,
        "insufficient_points",
    );
    let missing_key = app
        .post("/admin/points/grant", Some(&admin), &body(5))
        .await;
    expect_error(&missing_key, 400, "idempotency_key_required");
    expect_error(
        &grant(&app, &buyer, &unique("k"), &body(5)).await,
        403,
        "forbidden",
    );
    expect_error(&app.get("/me/points", Some(&admin)).await, 403, "forbidden");
    expect_error(&app.get("/me/points", None).await, 401, "unauthorized");

    assert_eq!(levels(&app, &buyer).await, (1000, 0, 1000));
    assert_eq!(history(&app, &buyer).await, before);
    // A refused request does not use up its key.
    expect(&adjust(&app, &admin, &key, &body(-1000)).await, 201);

    // Never below what open orders hold: 800 held leaves 200 to deduct.
    expect(&adjust(&app, &admin, &unique("k"), &body(1000)).await, 201);
    order_with_points(&app, &buyer, 800).await;
    expect_error(
        &adjust(&app, &admin, &unique("k"), &body(-201)).await,
        409,
        "insufficient_points",
    );
    expect(&adjust(&app, &admin, &unique("k"), &body(-200)).await, 201);
    assert_eq!(levels(&app, &buyer).await, (800, 800, 0));
    app.assert_verify_clean().await;
});

backend_tests!(verify_notices_tampered_points, |app| async move {
    let buyer = app.buyer().await;
    let user_id = app.user_id(&buyer).await;
    grant_lot(&app, &buyer, 1000, None).await;
    app.assert_verify_clean().await;
    let sql = format!("UPDATE point_accounts SET balance = balance + 5 WHERE user_id = {user_id}");
    execute_sql(&app, &sql).await;
    execute_sql(&app, "UPDATE point_lots SET held = 1").await;
    let report = stampede::app::audit::run(&*app.state.store).await.unwrap();
    let text = report.problems.join("\n");
    let account =
        format!("points of user {user_id}: balance/held are 1005/0 but the ledger sums to 1000/0");
    assert!(text.contains(&account), "{text}");
    let lot = "remaining/held are 1000/1 but its ledger rows sum to 1000/0";
    assert!(text.contains(lot), "{text}");
});

/// A buyer's order of one 10,000-won unit, paid, delivered and confirmed; returns the
/// buyer and id.
pub(crate) async fn confirmed_purchase(app: &TestApp) -> (String, i64) {
    let product = app.simple_product(10_000, 5).await;
    let buyer = app.buyer().await;
    let order = app.order_ok(&buyer, &[(product, 1)]).await;
    let paid = expect(&app.pay(&buyer, &order).await, 200).clone();
    app.deliver_all(&paid).await;
    let id = int(&order, "id");
    let confirmed = app
        .post_empty(&format!("/orders/{id}/confirm"), Some(&buyer))
        .await;
    assert_eq!(expect(&confirmed, 200)["status"], "confirmed");
    (buyer, id)
}

backend_tests!(a_confirmed_purchase_earns_once, |app| async move {
    // A second node: both dispatchers see the same `order.confirmed`.
    let (_other, node) = app.another_node(|_| {}).await;
    let (buyer, order_id) = confirmed_purchase(&app).await;
    eventually(EARN_WAIT, "1% of 10,000 won earned", || async {
        (levels(&app, &buyer).await.0 == 100).then_some(())
    })
    .await;
    let event = app
        .state
        .store
        .events_after(0, 100_000)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.event_type == "order.confirmed" && e.aggregate_id == order_id)
        .expect("the order.confirmed event");
    // The same event delivered again, twice at once and once more: nothing more.
    let earner = &app.state.app.points;
    let now = app.state.clock.now();
    let (a, b) = tokio::join!(earner.earn(&event, now), earner.earn(&event, now));
    assert_eq!(a.unwrap(), EarnOutcome::AlreadyProcessed);
    assert_eq!(b.unwrap(), EarnOutcome::AlreadyProcessed);
    assert_eq!(
        earner.earn(&event, now).await.unwrap(),
        EarnOutcome::AlreadyProcessed
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    node.stop().await;

    assert_eq!(levels(&app, &buyer).await, (100, 0, 100));
    let ledger = history(&app, &buyer).await;
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    assert_eq!(
        (ledger[0]["kind"].as_str(), int(&ledger[0], "order_id")),
        (Some("earn"), order_id)
    );
    let expiring = points(&app, &buyer).await;
    assert!(
        array(&expiring, "expiring").is_empty(),
        "a year away: {expiring}"
    );
    let user_id = app.user_id(&buyer).await;
    assert_eq!(points_events(&app, user_id).await, ["points.earned"]);
    app.assert_verify_clean().await;
});

/// What the scheduler does for the expiry job on the node named `holder`: take the job's
/// lease, and run the expiry only while holding it.
async fn expire_as(
    app: &TestApp,
    holder: &str,
    schedule: Schedule,
    now: Timestamp,
) -> anyhow::Result<Option<ExpiryRun>> {
    let store = app.state.store.as_ref();
    if !stampede::jobs::scheduler::lease(store, EXPIRY_LEASE, holder, &schedule, now).await? {
        return Ok(None);
    }
    Ok(Some(app.state.app.points.expire_due(now).await?))
}

backend_tests!(
    due_points_expire_on_one_node,
    config = |c| c.points_expiry_interval_secs = 3600,
    |app| async move {
        let buyer = app.buyer().await;
        let user_id = app.user_id(&buyer).await;
        // A lot due in an hour and one in 10 days.
        let due = stampede::clock::Clock::now(&stampede::clock::SystemClock)
            .plus_secs(3600)
            .to_rfc3339();
        grant_lot(&app, &buyer, 300, Some(due)).await;
        grant_lot(&app, &buyer, 200, Some(in_days(10))).await;
        // An open order holds 100 of the lot due first: that part must not expire under it.
        let order = order_with_points(&app, &buyer, 100).await;

        let job = ExpiryJob {
            points: app.state.app.points.clone(),
            interval: Duration::from_secs(3600),
        };
        assert_eq!(
            (job.name(), job.schedule().scope),
            (EXPIRY_LEASE, Scope::OneNode)
        );
        // The runs happen two hours from now, when the first lot is due.
        let now = stampede::clock::Clock::now(&stampede::clock::SystemClock).plus_secs(7200);
        let run_once = |holder: &'static str| expire_as(&app, holder, job.schedule(), now);
        let (a, b) = tokio::join!(run_once("node-a"), run_once("node-b"));
        let runs: Vec<_> = [a.unwrap(), b.unwrap()].into_iter().flatten().collect();
        assert_eq!(runs.len(), 1, "exactly one node runs the expiry: {runs:?}");
        assert_eq!((runs[0].users, runs[0].lots, runs[0].points), (1, 1, 200));
        assert_eq!(levels(&app, &buyer).await, (300, 100, 200));
        let newest = history(&app, &buyer).await.remove(0);
        assert_eq!(
            (newest["kind"].as_str(), int(&newest, "amount")),
            (Some("expire"), 200)
        );
        app.assert_verify_clean().await;

        // Released, the held part of the due lot expires at the next run, on the node
        // that holds the lease; the other still finds it taken.
        let cancelled = app.cancel(&buyer, order).await;
        assert_eq!(expect(&cancelled, 200)["status"], "cancelled");
        assert_eq!(levels(&app, &buyer).await, (300, 0, 300));
        let winner = if run_once("node-a").await.unwrap().is_some() {
            "node-a"
        } else {
            "node-b"
        };
        if winner == "node-b" {
            let run = run_once("node-b").await.unwrap().expect("holder runs");
            assert_eq!(run.points, 100);
        } else {
            assert!(run_once("node-b").await.unwrap().is_none());
        }
        assert_eq!(levels(&app, &buyer).await, (200, 0, 200));
        let user_events = points_events(&app, user_id).await;
        assert_eq!(
            user_events
                .iter()
                .filter(|e| *e == "points.expired")
                .count(),
            2
        );
        app.assert_verify_clean().await;
    }
);

backend_tests!(
    the_expiry_job_runs_by_itself,
    config = |c| c.points_expiry_interval_secs = 1,
    |app| async move {
        let buyer = app.buyer().await;
        let user_id = app.user_id(&buyer).await;
        let admin_id = app.user_id(&app.admin_token().await).await;
        let op = NewPointsOperation {
            admin_id,
            idempotency_key: unique("past"),
            request_hash: "test".into(),
            user_id,
            kind: PointsOperationKind::Grant,
            amount: 70,
            reason: "old".into(),
            expires_at: Some(
                stampede::clock::Clock::now(&stampede::clock::SystemClock).minus_secs(1),
            ),
        };
        let outcome = app
            .state
            .store
            .apply_points_operation(
                &op,
                stampede::clock::Clock::now(&stampede::clock::SystemClock),
            )
            .await;
        assert!(
            matches!(outcome, Ok(PointsOperationOutcome::Done(_))),
            "{outcome:?}"
        );
        eventually(Duration::from_secs(15), "the due lot to expire", || async {
            (levels(&app, &buyer).await == (0, 0, 0)).then_some(())
        })
        .await;
        assert_eq!(rows(&history(&app, &buyer).await)[0].0, "expire");
        app.assert_verify_clean().await;
    }
);
