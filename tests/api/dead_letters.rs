//! Dead letters for operators (issue 9): admins list, read, replay and discard them over
//! the API and with `stampede dlq`, and the lease-held job retries them. No broker: the
//! letters are seeded through the store, as a consumer would keep them, with messages made
//! from real outbox events.
//!
//! In the embedded mode the node earns points for a confirmation by itself, under the same
//! consumer name as the `points-earn` handler, so a replayed confirmation may find its
//! points earned already: either way they are earned exactly once.

use crate::helpers::*;
use crate::points::{confirmed_purchase, history, levels, metric};
use reqwest::Method;
use serde_json::Value;
use stampede::domain::events::Event;
use stampede::events::message::EventMessage;
use stampede::jobs::dead_letters::{DlqRetryJob, DLQ_RETRY_LEASE};
use stampede::jobs::{Job, Scheduler, Scope, Trigger};
use stampede::store::NewDeadLetter;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

const EARN: &str = "points-earn";
const EARN_WAIT: Duration = Duration::from_secs(15);

/// A Kafka offset no other letter of the run has.
fn next_offset() -> i64 {
    static NEXT: AtomicI64 = AtomicI64::new(1);
    NEXT.fetch_add(1, Ordering::SeqCst)
}

/// Keeps `message` as an open dead letter of `handler`, as a consumer gives up on it after
/// three attempts; returns its id.
async fn seed(app: &TestApp, handler: &str, message: &str, event_id: Option<i64>) -> i64 {
    let letter = NewDeadLetter {
        handler: handler.into(),
        topic: "stampede.order".into(),
        partition: 3,
        offset: next_offset(),
        key: Some("42".into()),
        message: message.into(),
        event_id,
        error: "database unavailable".into(),
        attempts: 3,
        first_failed_at: app.state.clock.now(),
    };
    let now = app.state.clock.now();
    app.state
        .store
        .insert_dead_letter(&letter, now)
        .await
        .unwrap()
        .id
}

/// The Kafka message of an outbox event.
fn message_of(event: &Event) -> String {
    String::from_utf8(EventMessage::of(event).to_json()).unwrap()
}

/// The outbox event `event_type` of `order_id`.
async fn order_event(app: &TestApp, order_id: i64, event_type: &str) -> Event {
    app.state
        .store
        .events_after(0, 100_000)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.event_type == event_type && e.aggregate_id == order_id)
        .unwrap_or_else(|| panic!("no {event_type} of order {order_id}"))
}

/// A letter of `points-earn` carrying the `order.confirmed` of a real confirmed purchase;
/// returns the buyer and the letter's id.
async fn confirmation_letter(app: &TestApp) -> (String, i64) {
    let (buyer, order_id) = confirmed_purchase(app).await;
    let event = order_event(app, order_id, "order.confirmed").await;
    let id = seed(app, EARN, &message_of(&event), Some(event.id)).await;
    (buyer, id)
}

async fn letter(app: &TestApp, id: i64) -> Value {
    let admin = app.admin_token().await;
    let reply = app
        .get(&format!("/admin/dead-letters/{id}"), Some(&admin))
        .await;
    expect(&reply, 200).clone()
}

async fn replay(app: &TestApp, id: i64) -> Reply {
    let admin = app.admin_token().await;
    app.post_empty(&format!("/admin/dead-letters/{id}/replay"), Some(&admin))
        .await
}

async fn discard(app: &TestApp, token: Option<&str>, id: i64) -> Reply {
    let path = format!("/admin/dead-letters/{id}");
    app.send(Method::DELETE, &path, token, None, None).await
}

/// Ids of a listing, in its order.
fn ids(page: &Value) -> Vec<i64> {
    array(page, "items").iter().map(|l| int(l, "id")).collect()
}

/// The buyer's points: 1% of the 10,000-won purchase, earned once.
async fn assert_earned_once(app: &TestApp, buyer: &str) {
    eventually(EARN_WAIT, "the purchase's points", || async {
        (levels(app, buyer).await.0 > 0).then_some(())
    })
    .await;
    assert_eq!(levels(app, buyer).await, (100, 0, 100));
    let ledger = history(app, buyer).await;
    assert_eq!(ledger.len(), 1, "earned more than once: {ledger:?}");
    assert_eq!(ledger[0]["kind"], "earn");
}

backend_tests!(admins_list_and_read_dead_letters, |app| async move {
    let admin = app.admin_token().await;
    let (_, oldest) = confirmation_letter(&app).await;
    let garbled = seed(&app, EARN, "not json {", None).await;
    let newest = seed(&app, "waitlist-offers", r#"{"type":"stock.changed"}"#, None).await;
    expect(&discard(&app, Some(&admin), newest).await, 200);

    let all = app.get("/admin/dead-letters", Some(&admin)).await;
    let all = expect(&all, 200);
    assert_eq!(ids(all), [newest, garbled, oldest], "newest first: {all}");
    assert_eq!(int(all, "total"), 3);
    let open = app
        .get("/admin/dead-letters?status=open", Some(&admin))
        .await;
    assert_eq!(ids(expect(&open, 200)), [garbled, oldest]);
    let page = app
        .get(
            "/admin/dead-letters?status=open&page=2&size=1",
            Some(&admin),
        )
        .await;
    let page = expect(&page, 200);
    assert_eq!((ids(page), int(page, "total")), (vec![oldest], 2));
    let discarded = app
        .get("/admin/dead-letters?status=discarded", Some(&admin))
        .await;
    assert_eq!(ids(expect(&discarded, 200)), [newest]);
    for bad in ["?status=lost", "?size=0", "?page=x"] {
        let reply = app
            .get(&format!("/admin/dead-letters{bad}"), Some(&admin))
            .await;
        expect_error(&reply, 400, "invalid_query");
    }

    let one = letter(&app, oldest).await;
    assert_eq!(
        (
            str_of(&one, "handler"),
            str_of(&one, "topic"),
            int(&one, "partition"),
            str_of(&one, "key"),
            str_of(&one, "status"),
            str_of(&one, "event_type"),
            str_of(&one, "error"),
            int(&one, "attempts"),
            int(&one, "retries"),
        ),
        (
            EARN,
            "stampede.order",
            3,
            "42",
            "open",
            "order.confirmed",
            "database unavailable",
            3,
            0
        ),
        "{one}"
    );
    assert_eq!(int(&one, "event_id"), int(&one["message"], "id"), "{one}");
    assert_eq!(
        one["message"]["type"], "order.confirmed",
        "parsed JSON: {one}"
    );
    int(&one, "offset");
    parse_time(&one, "first_failed_at");
    parse_time(&one, "last_failed_at");
    let raw = letter(&app, garbled).await;
    assert_eq!(raw["message"], "not json {", "kept as a string: {raw}");
    assert!(
        raw["event_type"].is_null() && raw["event_id"].is_null(),
        "{raw}"
    );
    expect_error(
        &app.get("/admin/dead-letters/987654", Some(&admin)).await,
        404,
        "not_found",
    );
});

backend_tests!(only_admins_see_or_touch_dead_letters, |app| async move {
    let buyer = app.buyer().await;
    let id = seed(&app, EARN, "not json", None).await;
    let replay_path = format!("/admin/dead-letters/{id}/replay");
    let path = format!("/admin/dead-letters/{id}");
    for token in [None, Some(buyer.as_str())] {
        let (status, code) = match token {
            None => (401, "unauthorized"),
            Some(_) => (403, "forbidden"),
        };
        expect_error(&app.get("/admin/dead-letters", token).await, status, code);
        expect_error(&app.get(&path, token).await, status, code);
        expect_error(&app.post_empty(&replay_path, token).await, status, code);
        expect_error(&discard(&app, token, id).await, status, code);
    }
    let untouched = letter(&app, id).await;
    assert_eq!(
        (str_of(&untouched, "status"), int(&untouched, "attempts")),
        ("open", 3),
        "{untouched}"
    );

    let docs = app.client.get(app.url("/api/openapi.json")).send().await;
    let docs: Value = docs.unwrap().json().await.unwrap();
    for documented in [
        "/api/v1/admin/dead-letters",
        "/api/v1/admin/dead-letters/{id}",
        "/api/v1/admin/dead-letters/{id}/replay",
    ] {
        assert!(docs["paths"][documented].is_object(), "{documented}");
    }
});

backend_tests!(a_replayed_letter_earns_once_and_settles, |app| async move {
    let (buyer, id) = confirmation_letter(&app).await;
    let replayed = replay(&app, id).await;
    let replayed = expect(&replayed, 200);
    assert_eq!(
        (str_of(replayed, "status"), int(replayed, "attempts")),
        ("replayed", 3),
        "{replayed}"
    );
    assert_earned_once(&app, &buyer).await;
    expect_error(&replay(&app, id).await, 409, "dead_letter_not_open");
    assert_eq!(letter(&app, id).await["status"], "replayed");
    assert_earned_once(&app, &buyer).await;
    assert_eq!(metric(&app, "dead_letters_replayed_total").await, 1.0);
    app.assert_verify_clean().await;
});

backend_tests!(
    replaying_an_event_processed_meanwhile_does_nothing_twice,
    |app| async move {
        let (buyer, id) = confirmation_letter(&app).await;
        // The confirmation got through after all (here: the node's own earner).
        assert_earned_once(&app, &buyer).await;
        let replayed = replay(&app, id).await;
        assert_eq!(expect(&replayed, 200)["status"], "replayed");
        assert_earned_once(&app, &buyer).await;
        let user_id = app.user_id(&buyer).await;
        assert_eq!(
            crate::points::points_events(&app, user_id).await,
            ["points.earned"]
        );
        app.assert_verify_clean().await;
    }
);

backend_tests!(
    a_letter_that_cannot_be_processed_is_refused_and_stays_open,
    |app| async move {
        // Not an event at all.
        let garbled = seed(&app, EARN, "not json", None).await;
        expect_error(&replay(&app, garbled).await, 409, "invalid_message");
        let kept = letter(&app, garbled).await;
        assert_eq!(
            (
                str_of(&kept, "status"),
                int(&kept, "attempts"),
                int(&kept, "retries")
            ),
            ("open", 4, 0),
            "one more attempt, by an operator: {kept}"
        );
        assert!(
            str_of(&kept, "error").contains("cannot be replayed"),
            "{kept}"
        );

        // A handler this node does not run.
        let (_, order_id) = confirmed_purchase(&app).await;
        let confirmed = order_event(&app, order_id, "order.confirmed").await;
        let orphan = seed(&app, "retired-handler", &message_of(&confirmed), None).await;
        expect_error(&replay(&app, orphan).await, 409, "unknown_handler");
        assert_eq!(letter(&app, orphan).await["status"], "open");

        // The handler fails again: a confirmation of an order that is only paid.
        let product = app.simple_product(10_000, 5).await;
        let buyer = app.buyer().await;
        let order = app.order_ok(&buyer, &[(product, 1)]).await;
        expect(&app.pay(&buyer, &order).await, 200);
        let mut forged = order_event(&app, int(&order, "id"), "order.paid").await;
        forged.event_type = "order.confirmed".into();
        let failing = seed(&app, EARN, &message_of(&forged), Some(forged.id)).await;
        expect_error(&replay(&app, failing).await, 409, "replay_failed");
        let kept = letter(&app, failing).await;
        assert_eq!(
            (str_of(&kept, "status"), int(&kept, "attempts")),
            ("open", 4),
            "{kept}"
        );
        assert_eq!(levels(&app, &buyer).await, (0, 0, 0));
        assert_eq!(metric(&app, "dead_letters_replay_failed_total").await, 3.0);
        app.assert_verify_clean().await;
    }
);

backend_tests!(a_discarded_letter_stays_discarded, |app| async move {
    let admin = app.admin_token().await;
    let (buyer, id) = confirmation_letter(&app).await;
    let discarded = discard(&app, Some(&admin), id).await;
    assert_eq!(expect(&discarded, 200)["status"], "discarded");
    expect_error(
        &discard(&app, Some(&admin), id).await,
        409,
        "dead_letter_not_open",
    );
    expect_error(&replay(&app, id).await, 409, "dead_letter_not_open");
    assert_eq!(letter(&app, id).await["status"], "discarded");
    expect_error(
        &discard(&app, Some(&admin), 987_654).await,
        404,
        "not_found",
    );
    expect_error(&replay(&app, 987_654).await, 404, "not_found");
    // Discarding gives up on the letter, not on the purchase: the node earned by itself.
    assert_earned_once(&app, &buyer).await;
});

backend_tests!(
    the_retry_job_settles_good_letters_and_gives_up_after_its_maximum,
    config = |c| c.dlq_retry_max = 2,
    |app| async move {
        let (buyer, good) = confirmation_letter(&app).await;
        let bad = seed(&app, EARN, "not json", None).await;
        let config = &app.state.config;
        let job = DlqRetryJob {
            dead_letters: app.state.app.dead_letters.clone(),
            interval: Duration::from_secs(config.dlq_retry_interval_secs),
            max_retries: config.dlq_retry_max,
        };
        assert_eq!(
            (job.name(), job.schedule().scope, job.schedule().every),
            (DLQ_RETRY_LEASE, Scope::OneNode, Duration::from_secs(300))
        );
        let store = app.state.store.clone();
        let node_a = Scheduler::new(store.clone(), app.clock.clone(), "node-a".into());
        let node_b = Scheduler::new(store, app.clock.clone(), "node-b".into());

        assert!(node_a.run_once(&job, Trigger::Timer).await.unwrap());
        assert!(
            !node_b.run_once(&job, Trigger::Timer).await.unwrap(),
            "one node at a time"
        );
        assert_eq!(letter(&app, good).await["status"], "replayed");
        assert_earned_once(&app, &buyer).await;
        let kept = letter(&app, bad).await;
        assert_eq!((int(&kept, "attempts"), int(&kept, "retries")), (4, 1));

        // Each run, one more retry, up to dlq_retry_max; then it waits for an operator.
        for _ in 0..3 {
            assert!(node_a.run_once(&job, Trigger::Timer).await.unwrap());
        }
        let kept = letter(&app, bad).await;
        assert_eq!(
            (
                str_of(&kept, "status"),
                int(&kept, "attempts"),
                int(&kept, "retries")
            ),
            ("open", 5, 2),
            "{kept}"
        );
        assert_eq!(metric(&app, "dead_letters_replayed_total").await, 1.0);
        assert_eq!(metric(&app, "dead_letters_retry_failed_total").await, 2.0);
        assert_eq!(metric(&app, "dead_letters_open").await, 1.0);
        // The operator can still act on it.
        expect_error(&replay(&app, bad).await, 409, "invalid_message");
        let admin = app.admin_token().await;
        expect(&discard(&app, Some(&admin), bad).await, 200);
        app.assert_verify_clean().await;
    }
);

backend_tests!(
    operators_list_and_replay_from_the_command_line,
    |app| async move {
        let (buyer, good) = confirmation_letter(&app).await;
        let bad = seed(&app, EARN, "not json", None).await;

        let (ok, out, err) = app.command(&["dlq", "list", "--json"]).await;
        assert!(ok, "dlq list failed: {err}");
        let listed: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!((ids(&listed), int(&listed, "total")), (vec![bad, good], 2));
        let api = letter(&app, good).await;
        assert_eq!(array(&listed, "items")[1], api, "the API's shape");
        let (ok, out, _) = app
            .command(&["dlq", "list", "--json", "--status", "replayed"])
            .await;
        assert!(ok);
        assert_eq!(int(&serde_json::from_str(&out).unwrap(), "total"), 0);

        let (ok, out, err) = app.command(&["dlq", "replay", &good.to_string()]).await;
        assert!(ok, "dlq replay failed: {err}");
        assert!(out.contains("replayed"), "{out}");
        assert_eq!(letter(&app, good).await["status"], "replayed");
        assert_earned_once(&app, &buyer).await;

        let (ok, _, err) = app.command(&["dlq", "replay", &good.to_string()]).await;
        assert!(!ok, "a second replay succeeded");
        assert!(err.contains("not open"), "{err}");
        let (ok, _, err) = app.command(&["dlq", "replay", &bad.to_string()]).await;
        assert!(!ok, "a bad message replayed");
        assert!(err.contains("cannot be replayed"), "{err}");
        assert_eq!(int(&letter(&app, bad).await, "attempts"), 4);
        let (ok, out, _) = app.command(&["dlq", "replay", "--all"]).await;
        assert!(!ok, "replay --all hid a failure: {out}");
        assert!(out.contains("replayed 0, failed 1"), "{out}");
        let (ok, _, err) = app.command(&["dlq", "discard", &bad.to_string()]).await;
        assert!(ok, "dlq discard failed: {err}");
        assert_eq!(letter(&app, bad).await["status"], "discarded");
        app.assert_verify_clean().await;
    }
);
