//! Paying through PortOne V2 (issue 11), against the stub in `helpers/portone_stub.rs`:
//! real HTTP, the real client, the real secret header. A checkout binds a payment id to
//! the order; `pay` asks the gateway about it and pays the order only for exactly its
//! payable amount in won; money captured that cannot be used is cancelled at the gateway;
//! refunds cancel by payment id with the amount; the reconciler resolves what was left open.

use crate::helpers::*;
use crate::partial_cancel::{reason, shop};
use serde_json::{json, Value};
use stampede::jobs::refunds::RefundRetryJob;
use stampede::jobs::{Job, Scheduler, Scope, Trigger};
use std::time::Duration;

/// A buyer with a pending order of 2 units at 1,500 won (payable 3,000).
async fn pending(app: &TestApp) -> (String, Value) {
    let product = app.simple_product(1_500, 10).await;
    let buyer = app.buyer().await;
    let order = app.order_ok(&buyer, &[(product, 2)]).await;
    assert_eq!(int(&order, "payable"), 3_000);
    (buyer, order)
}

fn payment_id(checkout: &Value) -> String {
    str_of(checkout, "payment_id").to_owned()
}

async fn checkout_ok(app: &TestApp, buyer: &str, order: &Value) -> String {
    payment_id(expect(&app.checkout(buyer, int(order, "id")).await, 200))
}

async fn status(app: &TestApp, buyer: &str, order: &Value) -> String {
    str_of(&app.order(buyer, int(order, "id")).await, "status").to_owned()
}

/// Checkouts of `payment_id` in `status` (0 or 1).
async fn checkouts_in(app: &TestApp, payment_id: &str, status: &str) -> i64 {
    let sql = format!(
        "SELECT COUNT(*) FROM checkouts WHERE payment_id = '{payment_id}' AND status = '{status}'"
    );
    query_int(app, &sql).await
}

async fn payments_of(app: &TestApp, payment_id: &str, outcome: &str) -> i64 {
    let sql = format!(
        "SELECT COUNT(*) FROM payments WHERE payment_key = '{payment_id}' AND outcome = '{outcome}'"
    );
    query_int(app, &sql).await
}

portone_tests!(
    checkout_is_the_owners_and_keeps_its_payment_id,
    config = |_c| {},
    |app, stub| async move {
        let (buyer, order) = pending(&app).await;
        let order_id = int(&order, "id");
        let first = expect(&app.checkout(&buyer, order_id).await, 200).clone();
        assert_eq!(int(&first, "order_id"), order_id);
        assert_eq!(int(&first, "amount"), 3_000);
        assert_eq!(first["currency"], "KRW");
        assert_eq!(first["store_id"], STUB_STORE_ID);
        assert_eq!(first["pay_by"], order["pay_by"]);
        assert!(!str_of(&first, "order_name").is_empty());
        let id = payment_id(&first);
        assert!(id.len() >= 20, "{id}");
        assert!(
            id.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
            "not URL-safe: {id}"
        );
        // Again while unpaid: the same payment id.
        let again = expect(&app.checkout(&buyer, order_id).await, 200).clone();
        assert_eq!(payment_id(&again), id);

        // Another buyer does not see it; an admin sees it but may not pay it.
        let other = app.buyer().await;
        expect_error(&app.checkout(&other, order_id).await, 404, "not_found");
        let admin = app.admin_token().await;
        expect_error(&app.checkout(&admin, order_id).await, 403, "forbidden");
        expect_error(&app.checkout(&buyer, 999_999).await, 404, "not_found");

        // Paid: no more checkouts.
        stub.paid(&id, 3_000);
        expect(&app.pay_with(&buyer, &order, &id).await, 200);
        expect_error(
            &app.checkout(&buyer, order_id).await,
            409,
            "order_not_payable",
        );
        assert_eq!(stub.unauthorized(), 0);
    }
);

portone_tests!(
    paid_at_the_gateway_pays_the_order_and_a_second_call_is_a_replay,
    config = |_c| {},
    |app, stub| async move {
        let (buyer, order) = pending(&app).await;
        let (id, paid) = app.pay_at(&stub, &buyer, &order).await;
        let body = expect(&paid, 200);
        assert_eq!(body["status"], "paid", "{body}");
        assert!(stub.lookups() >= 1);
        assert_eq!(stub.unauthorized(), 0, "the secret header was sent");
        assert_eq!(checkouts_in(&app, &id, "paid").await, 1);
        assert_eq!(payments_of(&app, &id, "approved").await, 1);

        // The same payment again (the webhook and the client race): the order as it is,
        // and nothing is paid twice or cancelled.
        let replay = app.pay_with(&buyer, &order, &id).await;
        assert_eq!(expect(&replay, 200)["status"], "paid");
        assert_eq!(payments_of(&app, &id, "approved").await, 1);
        assert!(stub.cancels().is_empty(), "{:?}", stub.cancels());
        app.assert_verify_clean().await;
    }
);

portone_tests!(
    an_amount_or_currency_mismatch_is_cancelled_at_the_gateway,
    config = |_c| {},
    |app, stub| async move {
        let (buyer, order) = pending(&app).await;
        let id = checkout_ok(&app, &buyer, &order).await;
        stub.paid(&id, 2_999);
        expect_error(
            &app.pay_with(&buyer, &order, &id).await,
            409,
            "payment_amount_mismatch",
        );
        assert_eq!(stub.cancels(), [(id.clone(), None)]);
        assert_eq!(stub.payment(&id).unwrap().status, "CANCELLED");
        assert_eq!(status(&app, &buyer, &order).await, "pending_payment");
        assert_eq!(checkouts_in(&app, &id, "voided").await, 1);

        // A fresh checkout, paid in the wrong currency.
        let second = checkout_ok(&app, &buyer, &order).await;
        assert_ne!(second, id, "a voided payment id is not handed out again");
        stub.set(&second, "PAID", 3_000, "USD");
        expect_error(
            &app.pay_with(&buyer, &order, &second).await,
            409,
            "payment_amount_mismatch",
        );
        assert_eq!(stub.cancels().len(), 2);
        assert_eq!(status(&app, &buyer, &order).await, "pending_payment");

        // The right payment still pays it.
        let (_, paid) = app.pay_at(&stub, &buyer, &order).await;
        assert_eq!(expect(&paid, 200)["status"], "paid");
        app.assert_verify_clean().await;
    }
);

portone_tests!(
    a_payment_not_completed_or_unknown_pays_nothing,
    config = |_c| {},
    |app, stub| async move {
        let (buyer, order) = pending(&app).await;
        let id = checkout_ok(&app, &buyer, &order).await;
        // Unknown to the gateway.
        expect_error(
            &app.pay_with(&buyer, &order, &id).await,
            409,
            "payment_not_found",
        );
        // Known, not paid yet.
        for waiting in ["READY", "PAY_PENDING", "VIRTUAL_ACCOUNT_ISSUED"] {
            stub.set(&id, waiting, 3_000, "KRW");
            expect_error(
                &app.pay_with(&buyer, &order, &id).await,
                409,
                "payment_not_completed",
            );
        }
        // Failed at the gateway: declined, as before.
        stub.set(&id, "FAILED", 3_000, "KRW");
        expect_error(
            &app.pay_with(&buyer, &order, &id).await,
            402,
            "payment_declined",
        );
        // Another store's payment is none of ours.
        stub.set_payment(
            &id,
            StubPayment {
                status: "PAID".into(),
                amount: 3_000,
                currency: "KRW".into(),
                store_id: "store-someone-else".into(),
                cancelled: 0,
            },
        );
        expect_error(
            &app.pay_with(&buyer, &order, &id).await,
            409,
            "payment_not_found",
        );
        // A key no checkout issued is never asked about.
        let lookups = stub.lookups();
        stub.paid("made-up-key", 3_000);
        expect_error(
            &app.pay_with(&buyer, &order, "made-up-key").await,
            409,
            "payment_not_found",
        );
        assert_eq!(stub.lookups(), lookups);
        assert_eq!(status(&app, &buyer, &order).await, "pending_payment");
        assert!(stub.cancels().is_empty());
        assert_eq!(checkouts_in(&app, &id, "open").await, 1);

        // Paid at last.
        stub.paid(&id, 3_000);
        expect(&app.pay_with(&buyer, &order, &id).await, 200);
        app.assert_verify_clean().await;
    }
);

portone_tests!(
    a_payment_id_pays_one_order_only,
    config = |_c| {},
    |app, stub| async move {
        let (buyer, first) = pending(&app).await;
        let (id, paid) = app.pay_at(&stub, &buyer, &first).await;
        expect(&paid, 200);
        let product = app.simple_product(1_500, 10).await;
        let second = app.order_ok(&buyer, &[(product, 2)]).await;
        // Refused before the gateway is asked: nothing about another order's payment is
        // looked up, let alone cancelled, on behalf of this one.
        let lookups = stub.lookups();
        expect_error(
            &app.pay_with(&buyer, &second, &id).await,
            409,
            "payment_key_reused",
        );
        // Nor another buyer's order.
        let (other, theirs) = pending(&app).await;
        expect_error(
            &app.pay_with(&other, &theirs, &id).await,
            409,
            "payment_key_reused",
        );
        assert_eq!(stub.lookups(), lookups);
        assert_eq!(status(&app, &buyer, &second).await, "pending_payment");
        assert_eq!(status(&app, &other, &theirs).await, "pending_payment");
        assert_eq!(payments_of(&app, &id, "approved").await, 1);
        assert!(stub.cancels().is_empty());
        app.assert_verify_clean().await;
    }
);

portone_tests!(
    money_captured_after_the_deadline_is_cancelled_at_the_gateway,
    config = |_c| {},
    |app, stub| async move {
        let (buyer, order) = pending(&app).await;
        let id = checkout_ok(&app, &buyer, &order).await;
        stub.paid(&id, 3_000);
        app.clock
            .advance(Duration::from_secs(app.limits.hold_ttl_secs + 1));
        expect_error(
            &app.pay_with(&buyer, &order, &id).await,
            409,
            "order_not_payable",
        );
        assert_eq!(stub.cancels(), [(id.clone(), None)]);
        assert_eq!(stub.payment(&id).unwrap().status, "CANCELLED");
        assert_eq!(checkouts_in(&app, &id, "voided").await, 1);
        assert_eq!(payments_of(&app, &id, "voided").await, 1);
        assert_eq!(payments_of(&app, &id, "approved").await, 0);
        assert_ne!(status(&app, &buyer, &order).await, "paid");
        app.assert_verify_clean().await;
    }
);

portone_tests!(
    the_gateways_failures_and_timeouts_change_nothing,
    config = |_c| {},
    |app, stub| async move {
        let (buyer, order) = pending(&app).await;
        let id = checkout_ok(&app, &buyer, &order).await;
        stub.paid(&id, 3_000);
        stub.fail_next(1);
        let failed = app.pay_with(&buyer, &order, &id).await;
        expect_error(&failed, 503, "payment_gateway_unavailable");
        stub.hang_next(1);
        let started = std::time::Instant::now();
        let timed_out = app.pay_with(&buyer, &order, &id).await;
        expect_error(&timed_out, 503, "payment_gateway_unavailable");
        assert!(
            started.elapsed() < Duration::from_millis(STUB_TIMEOUT_MS * 4),
            "the timeout did not cut the call: {:?}",
            started.elapsed()
        );
        assert_eq!(status(&app, &buyer, &order).await, "pending_payment");
        assert_eq!(checkouts_in(&app, &id, "open").await, 1);
        // The gateway is back: the same payment pays the order.
        expect(&app.pay_with(&buyer, &order, &id).await, 200);
        assert!(stub.cancels().is_empty());
        app.assert_verify_clean().await;
    }
);

portone_tests!(
    a_cancelled_partner_order_cancels_its_share_of_the_payment,
    config = |_c| {},
    |app, stub| async move {
        let shop = shop(&app).await;
        let buyer = app.buyer().await;
        let order = app.order_ok(&buyer, &[(shop.a.0, 1), (shop.b.0, 1)]).await;
        assert_eq!(int(&order, "payable"), 4_000);
        let (id, paid) = app.pay_at(&stub, &buyer, &order).await;
        let paid = expect(&paid, 200).clone();
        let part_a = &array(&paid, "partner_orders")[0];
        assert_eq!(int(part_a, "payable"), 3_000);

        let path = format!("/partner-orders/{}/cancel", int(part_a, "id"));
        expect(&app.post(&path, Some(&shop.a.1), &reason()).await, 200);
        assert_eq!(stub.cancels(), [(id.clone(), Some(3_000))]);
        assert_eq!(stub.payment(&id).unwrap().status, "PARTIAL_CANCELLED");

        // The buyer cancels the rest: what is left of the payment goes back.
        expect(&app.cancel(&buyer, int(&order, "id")).await, 200);
        assert_eq!(
            stub.cancels(),
            [(id.clone(), Some(3_000)), (id.clone(), Some(1_000))]
        );
        assert_eq!(stub.payment(&id).unwrap().status, "CANCELLED");
        app.assert_verify_clean().await;
    }
);

portone_tests!(
    a_refund_the_gateway_failed_is_retried_by_payment_id,
    config = |_c| {},
    |app, stub| async move {
        let (buyer, order) = pending(&app).await;
        let (id, paid) = app.pay_at(&stub, &buyer, &order).await;
        expect(&paid, 200);
        stub.fail_next(1);
        let refunded = expect(&app.cancel(&buyer, int(&order, "id")).await, 200).clone();
        assert_eq!(refunded["status"], "refunded");
        assert!(stub.cancels().is_empty(), "the gateway failed");

        // Never dropped: a `payment.refund_failed` event carries what the retrier needs.
        let events = app.state.store.events_after(0, 10_000).await.unwrap();
        let failed = events
            .iter()
            .find(|e| e.event_type == "payment.refund_failed")
            .expect("a payment.refund_failed event")
            .clone();
        let due: Value = serde_json::from_str(&failed.payload).unwrap();
        assert_eq!(due["payment_id"], json!(id));
        assert_eq!(int(&due, "amount"), 3_000);

        // The retrier (a consumer of that event) asks again and the money goes back.
        app.state
            .app
            .payments
            .retry_refund("refund-retrier", &failed)
            .await
            .unwrap();
        assert_eq!(stub.cancels(), [(id.clone(), Some(3_000))]);
        assert_eq!(stub.payment(&id).unwrap().status, "CANCELLED");
        // Delivered again: recorded once, and the gateway's "already cancelled" is done.
        app.state
            .app
            .payments
            .retry_refund("refund-retrier", &failed)
            .await
            .unwrap();
        let events = app.state.store.events_after(0, 10_000).await.unwrap();
        let done = events
            .iter()
            .filter(|e| e.event_type == "payment.refunded")
            .count();
        assert_eq!(done, 1);
        app.assert_verify_clean().await;
    }
);

/// A paid order whose refund the gateway failed: its payment id.
async fn refund_failed_at_the_gateway(app: &TestApp, stub: &PortOneStub) -> String {
    let (buyer, order) = pending(app).await;
    let (id, paid) = app.pay_at(stub, &buyer, &order).await;
    expect(&paid, 200);
    stub.fail_next(1);
    let refunded = expect(&app.cancel(&buyer, int(&order, "id")).await, 200).clone();
    assert_eq!(refunded["status"], "refunded");
    assert!(stub.cancels().is_empty(), "the gateway failed");
    id
}

/// The refund retrier as the node registers it without Kafka, and a scheduler to run it
/// by hand (it does not run at start, so the node's own scheduler holds no lease yet).
fn refund_retrier(app: &TestApp) -> (RefundRetryJob, Scheduler) {
    let config = &app.state.config;
    assert!(config.kafka_brokers.is_none(), "the embedded configuration");
    let job = RefundRetryJob::new(
        app.state.app.payments.clone(),
        app.state.metrics.clone(),
        Duration::from_secs(config.refund_retry_interval_secs),
        config.consumer_max_attempts,
    );
    assert_eq!(
        (job.name(), job.schedule().scope),
        ("refund-retrier", Scope::OneNode)
    );
    let node = Scheduler::new(app.state.store.clone(), app.clock.clone(), "node-r".into());
    (job, node)
}

async fn refunded_events(app: &TestApp) -> usize {
    let events = app.state.store.events_after(0, 10_000).await.unwrap();
    events
        .iter()
        .filter(|e| e.event_type == "payment.refunded")
        .count()
}

portone_tests!(
    without_kafka_the_refund_retrier_job_gives_a_failed_refund_back_once,
    config = |_c| {},
    |app, stub| async move {
        let id = refund_failed_at_the_gateway(&app, &stub).await;
        let (job, node) = refund_retrier(&app);

        assert!(node.run_once(&job, Trigger::Timer).await.unwrap());
        assert_eq!(stub.cancels(), [(id.clone(), Some(3_000))]);
        assert_eq!(stub.payment(&id).unwrap().status, "CANCELLED");
        assert_eq!(refunded_events(&app).await, 1);

        // Again: nothing is left to give back, and the gateway is not asked.
        assert!(node.run_once(&job, Trigger::Timer).await.unwrap());
        assert_eq!(stub.cancels(), [(id.clone(), Some(3_000))]);
        assert_eq!(refunded_events(&app).await, 1);

        // Listed among the jobs, with the run it made.
        let admin = app.admin_token().await;
        let jobs = expect(&app.get("/admin/jobs", Some(&admin)).await, 200).clone();
        let retrier = jobs
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["name"] == "refund-retrier")
            .unwrap_or_else(|| panic!("no refund-retrier in {jobs}"))
            .clone();
        assert_eq!(
            (
                str_of(&retrier, "schedule"),
                str_of(&retrier, "runs_on"),
                str_of(&retrier, "holder"),
                str_of(&retrier, "last_outcome")
            ),
            ("every 60 s", "one_node", "node-r", "ok")
        );
        app.assert_verify_clean().await;
    }
);

portone_tests!(
    a_refund_failing_past_the_retries_becomes_a_dead_letter,
    config = |c| c.consumer_max_attempts = 2,
    |app, stub| async move {
        let id = refund_failed_at_the_gateway(&app, &stub).await;
        let (job, node) = refund_retrier(&app);

        // The first retry fails: left for the next run, which also fails and gives up.
        stub.fail_next(1);
        let failed = node.run_once(&job, Trigger::Timer).await.unwrap_err();
        assert!(
            failed
                .to_string()
                .contains("1 left for the next run, 0 kept"),
            "{failed:#}"
        );
        let admin = app.admin_token().await;
        let open = "/admin/dead-letters?status=open";
        let letters = expect(&app.get(open, Some(&admin)).await, 200).clone();
        assert_eq!(int(&letters, "total"), 0, "not yet: {letters}");
        stub.fail_next(1);
        let failed = node.run_once(&job, Trigger::Timer).await.unwrap_err();
        assert!(
            failed
                .to_string()
                .contains("0 left for the next run, 1 kept"),
            "{failed:#}"
        );
        assert!(stub.cancels().is_empty());

        let letters = expect(&app.get(open, Some(&admin)).await, 200).clone();
        assert_eq!(int(&letters, "total"), 1, "{letters}");
        let letter = array(&letters, "items")[0].clone();
        assert_eq!(letter["handler"], "refund-retrier");
        assert_eq!(letter["event_type"], "payment.refund_failed");
        assert_eq!(int(&letter, "attempts"), 2);
        assert_eq!(letter["message"]["payload"]["payment_id"], json!(id));

        // Left to the dead-letter job and operators: this job passes it over.
        assert!(node.run_once(&job, Trigger::Timer).await.unwrap());
        assert!(stub.cancels().is_empty());
        assert_eq!(refunded_events(&app).await, 0);

        // An operator's replay gives the money back, once.
        let replay = format!("/admin/dead-letters/{}/replay", int(&letter, "id"));
        let replayed = expect(&app.post_empty(&replay, Some(&admin)).await, 200).clone();
        assert_eq!(replayed["status"], "replayed");
        assert_eq!(stub.cancels(), [(id.clone(), Some(3_000))]);
        assert!(node.run_once(&job, Trigger::Timer).await.unwrap());
        assert_eq!(stub.cancels().len(), 1);
        assert_eq!(refunded_events(&app).await, 1);
        app.assert_verify_clean().await;
    }
);

portone_tests!(
    the_reconciler_resolves_checkouts_left_open,
    config = |c| c.payment_reconcile_interval_secs = 1,
    |app, stub| async move {
        // Paid at the gateway, but the client never came back (a crash, a lost answer).
        let (buyer, order) = pending(&app).await;
        let paid_id = checkout_ok(&app, &buyer, &order).await;
        stub.paid(&paid_id, 3_000);
        // An injected failure after the capture: the buyer's `pay` never hears the
        // gateway's answer (it hangs past the timeout), so nothing is committed.
        stub.hang_next(1);
        let lost = app.pay_with(&buyer, &order, &paid_id).await;
        expect_error(&lost, 503, "payment_gateway_unavailable");
        // Paid at the gateway after the buyer cancelled the order.
        let (late_buyer, late) = pending(&app).await;
        let late_id = checkout_ok(&app, &late_buyer, &late).await;
        expect(&app.cancel(&late_buyer, int(&late, "id")).await, 200);
        stub.paid(&late_id, 3_000);
        // Never paid, and the order was cancelled.
        let (gone_buyer, gone) = pending(&app).await;
        let gone_id = checkout_ok(&app, &gone_buyer, &gone).await;
        expect(&app.cancel(&gone_buyer, int(&gone, "id")).await, 200);

        // Within the grace period nothing is touched.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        assert_eq!(status(&app, &buyer, &order).await, "pending_payment");
        assert_eq!(checkouts_in(&app, &paid_id, "open").await, 1);

        app.clock.advance(Duration::from_secs(31));
        eventually(Duration::from_secs(20), "the reconciler's pass", || {
            let app = app.clone();
            let (paid_id, late_id, gone_id) = (paid_id.clone(), late_id.clone(), gone_id.clone());
            async move {
                let done = checkouts_in(&app, &paid_id, "paid").await
                    + checkouts_in(&app, &late_id, "voided").await
                    + checkouts_in(&app, &gone_id, "abandoned").await;
                (done == 3).then_some(())
            }
        })
        .await;
        assert_eq!(status(&app, &buyer, &order).await, "paid");
        assert_eq!(status(&app, &late_buyer, &late).await, "cancelled");
        assert_eq!(stub.cancels(), [(late_id.clone(), None)]);
        assert_eq!(payments_of(&app, &late_id, "voided").await, 1);
        assert_eq!(payments_of(&app, &paid_id, "approved").await, 1);

        // The client's late call is a replay.
        let replay = app.pay_with(&buyer, &order, &paid_id).await;
        assert_eq!(expect(&replay, 200)["status"], "paid");
        let jobs = expect(
            &app.get("/admin/jobs", Some(&app.admin_token().await)).await,
            200,
        )
        .clone();
        assert!(jobs.to_string().contains("payment-reconciler"), "{jobs}");
        app.assert_verify_clean().await;
    }
);

/// `POST /orders/{id}/pay` as [`TestApp::pay_with`]: status, error code and `Retry-After`.
async fn pay_seeing_retry_after(
    app: &TestApp,
    token: &str,
    order: &Value,
    payment_id: &str,
) -> (u16, String, Option<u64>) {
    let body = json!({"payment_key": payment_id, "amount": int(order, "payable")});
    let response = app
        .client
        .post(app.api(&format!("/orders/{}/pay", int(order, "id"))))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (status, code, retry_after)
}

portone_tests!(
    a_failing_gateway_opens_the_breaker_and_a_probe_closes_it,
    config = |_c| {},
    |app, stub| async move {
        let (buyer, order) = pending(&app).await;
        let id = checkout_ok(&app, &buyer, &order).await;
        stub.paid(&id, 3_000);

        // Five failures in a row — three 5xx, two timeouts — open it (seed 002: at least 5
        // calls, 50 % failed); each is answered 503 with a retry in a second.
        for i in 0..5 {
            if i < 3 {
                stub.fail_next(1);
            } else {
                stub.hang_next(1);
            }
            let (code_status, code, retry_after) =
                pay_seeing_retry_after(&app, &buyer, &order, &id).await;
            assert_eq!(
                (code_status, code.as_str(), retry_after),
                (503, "payment_gateway_unavailable", Some(1))
            );
        }
        // Open: the gateway is not asked, and the buyer is told to come back in 30 s.
        let asked = stub.lookups();
        let (code_status, code, retry_after) =
            pay_seeing_retry_after(&app, &buyer, &order, &id).await;
        assert_eq!(
            (code_status, code.as_str()),
            (503, "payment_gateway_unavailable")
        );
        assert_eq!(retry_after, Some(30));
        assert_eq!(stub.lookups(), asked, "an open breaker asked the gateway");
        assert_eq!(app.state.metrics.payment_gateway_breaker_state.get(), 2);
        assert_eq!(status(&app, &buyer, &order).await, "pending_payment");

        // 30 s later a probe goes through; the gateway has recovered and the order is paid
        // before its deadline.
        app.clock.advance(Duration::from_secs(30));
        let (answered, _, _) = pay_seeing_retry_after(&app, &buyer, &order, &id).await;
        assert_eq!(answered, 200);
        assert_eq!(stub.lookups(), asked + 1);
        assert_eq!(status(&app, &buyer, &order).await, "paid");
        app.assert_verify_clean().await;
    }
);
