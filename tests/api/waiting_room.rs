//! The waiting room: when the writers are saturated, attempts get `202` with a ticket and
//! are placed first-in first-out; a full room answers `503` with `Retry-After`. Tickets are
//! kept in the store: they outlive the node that accepted them, and a stopping node hands
//! the room over.

use crate::helpers::*;
use serde_json::Value;
use stampede::app::placement::waiting_room::LEASE;
use stampede::clock::Clock;
use stampede::domain::allocation::{Line, OrderRequest, Rejection};
use stampede::domain::Quantity;
use stampede::store::{PlaceOutcome, TicketOutcome};
use std::sync::Arc;
use std::time::Duration;

/// Polls a ticket until it has an outcome.
async fn outcome(app: &TestApp, token: &str, ticket: &str) -> Value {
    for _ in 0..200 {
        let reply = app.get(&format!("/queue/{ticket}"), Some(token)).await;
        let body = expect(&reply, 200).clone();
        if !matches!(body["status"].as_str(), Some("waiting" | "placing")) {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("ticket {ticket} never finished");
}

// One order per transaction and a writer queue of one: 300 buyers at once saturate it.
backend_tests!(
    saturated_writers_queue_then_refuse,
    config = |c| {
        c.placement_batch_max = 1;
        c.placement_linger_ms = 0;
        c.placement_queue_depth = 1;
        c.waiting_room_depth = 20;
    },
    |app| async move {
        let product = app.simple_product(1_000, 100).await;
        let buyers: Vec<Arc<String>> = app.buyers(300).await.into_iter().map(Arc::new).collect();
        let replies = all_at_once(buyers.len(), |i| {
            let (app, buyer) = (app.clone(), buyers[i].clone());
            async move {
                let response = app
                    .client
                    .post(app.api("/orders"))
                    .bearer_auth(buyer.as_str())
                    .header("idempotency-key", format!("wr-{i}"))
                    .json(&order_body(&[(product, 1)]))
                    .send()
                    .await
                    .unwrap();
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_owned());
                let location = response
                    .headers()
                    .get("location")
                    .map(|v| v.to_str().unwrap().to_owned());
                let (status, body) = read_reply(response).await;
                (i, status.as_u16(), body, retry_after, location)
            }
        })
        .await;

        let mut placed: i64 = 0;
        let (mut queued, mut refused): (i64, i64) = (0, 0);
        for (i, status, body, retry_after, location) in &replies {
            match status {
                201 => placed += 1,
                202 => {
                    queued += 1;
                    let ticket = body["ticket"].as_str().expect("a ticket");
                    assert!(int(body, "position") >= 0, "{body}");
                    assert_eq!(
                        location.as_deref(),
                        Some(format!("/api/v1/queue/{ticket}").as_str())
                    );
                    let done = outcome(&app, &buyers[*i], ticket).await;
                    assert_eq!(done["status"], "placed", "{done}");
                    assert_eq!(done["position"], 0);
                    assert_eq!(done["order"]["status"], "pending_payment");
                    placed += 1;
                    let stranger = app
                        .get(&format!("/queue/{ticket}"), Some(&buyers[(*i + 1) % 300]))
                        .await;
                    expect_error(&stranger, 404, "not_found");
                }
                503 => {
                    refused += 1;
                    assert_eq!(body["error"]["code"], "overloaded", "{body}");
                    assert_eq!(retry_after.as_deref(), Some("1"));
                }
                409 => assert_eq!(body["error"]["code"], "out_of_stock", "{body}"),
                other => panic!("unexpected {other}: {body}"),
            }
        }
        // The room holds at most 20 at a time; admissions free room for later arrivals.
        assert!(queued > 0, "nobody waited");
        assert!(refused > 0, "a full room must refuse");
        let sold_out = replies.iter().filter(|r| r.1 == 409).count();
        let direct = placed - queued;
        assert_eq!(
            direct + queued + refused + sold_out as i64,
            300,
            "every reply accounted for"
        );
        assert_eq!(
            app.stock(product).await.held,
            placed,
            "every admitted order holds one unit"
        );
        app.assert_verify_clean().await;
    }
);

// A full writer queue of one and a slow single-order writer: the stream of a waiting
// ticket reports a position, then ends with the outcome.
backend_tests!(
    a_ticket_streams_its_position_then_its_outcome,
    config = |c| {
        c.placement_batch_max = 1;
        c.placement_linger_ms = 0;
        c.placement_queue_depth = 1;
    },
    |app| async move {
        let product = app.simple_product(1_000, 1_000).await;
        let buyers: Vec<Arc<String>> = app.buyers(200).await.into_iter().map(Arc::new).collect();
        let replies = all_at_once(buyers.len(), |i| {
            let (app, buyer) = (app.clone(), buyers[i].clone());
            async move { (i, app.place_order(&buyer, &[(product, 1)]).await) }
        })
        .await;
        let (i, ticket) = replies
            .iter()
            .rev()
            .find(|(_, r)| r.0 == 202)
            .map(|(i, r)| (*i, r.1["ticket"].as_str().unwrap().to_owned()))
            .expect("200 buyers at once saturate a queue of one");
        let stream = app
            .client
            .get(app.api(&format!("/queue/{ticket}/events")))
            .bearer_auth(buyers[i].as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(stream.status().as_u16(), 200);
        let text = tokio::time::timeout(Duration::from_secs(20), stream.text())
            .await
            .expect("the stream ends after the outcome")
            .unwrap();
        let outcome = text
            .split("event: outcome")
            .nth(1)
            .expect("an outcome event");
        assert!(outcome.contains("\"status\":\"placed\""), "{text}");
        assert!(
            text.contains("event: position") || text.starts_with("event: outcome"),
            "{text}"
        );
        app.assert_verify_clean().await;
    }
);

/// Queues an attempt straight in the store, as a node that accepted it with `202` would have.
async fn queue_behind_the_api(app: &TestApp, token: &str, key: &str, product: i64) -> String {
    let request = OrderRequest {
        user_id: app.user_id(token).await,
        idempotency_key: key.to_owned(),
        request_hash: format!("hash-{key}"),
        lines: vec![Line {
            product_id: product,
            quantity: Quantity::new("quantity", 1).unwrap(),
        }],
        coupon_id: None,
        points: 0,
    };
    let id = format!("ticket-{key}");
    let ticket = app
        .state
        .store
        .enqueue_ticket(&id, &request, 1_000, app.clock.now())
        .await
        .unwrap()
        .expect("room for a ticket");
    assert_eq!(ticket.id, id);
    id
}

/// The lease of the one node that admits tickets, given to a node that no longer runs.
async fn crashed_node_holds_the_room(app: &TestApp) {
    let now = app.clock.now();
    let taken = app
        .state
        .store
        .try_lease(LEASE, "crashed-node", now.plus_secs(60), now)
        .await
        .unwrap();
    assert!(taken, "the room's lease is free");
}

// A node accepts tickets (202) while the node that admits tickets has crashed holding the
// room, one of them already admitted; the accepting node stops too. A node started later
// takes the room over once the lease lapses, and places every ticket in line order: none is
// lost, the admitted one is not placed twice, and any node answers for them.
backend_tests!(
    tickets_outlive_their_nodes_and_are_placed_in_line_order,
    config = |c| c.waiting_room_lease_ms = 60_000,
    |app| async move {
        let product = app.simple_product(1_000, 10).await;
        let buyers = app.buyers(4).await;
        // This node stops admitting (and gives up the room) as if it were being deployed.
        app.state.app.orders.placement.drain();
        eventually(Duration::from_secs(10), "the drained node idle", || async {
            app.state.app.orders.placement.is_idle().then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        crashed_node_holds_the_room(&app).await;

        let (accepting, accepting_node) = app.another_node(|_| {}).await;
        let mut tickets = vec![queue_behind_the_api(&app, &buyers[0], "first", product).await];
        // The crashed holder had admitted the first ticket; its outcome was never written.
        let admitted = app.state.store.admit_tickets(1).await.unwrap();
        assert_eq!(admitted.len(), 1);
        queue_behind_the_api(&app, &buyers[1], "second", product).await;
        tickets.push("ticket-second".to_owned());
        // Tickets wait, so a new attempt on any node queues behind them.
        eventually(
            Duration::from_secs(10),
            "the line seen by the node",
            || async {
                let room = accepting.state.app.orders.placement.waiting_room();
                (!room.is_empty()).then_some(())
            },
        )
        .await;
        for buyer in &buyers[2..] {
            let reply = accepting.place_order(buyer, &[(product, 1)]).await;
            let body = expect(&reply, 202);
            assert_eq!(body["status"], "waiting", "{body}");
            assert!(int(body, "position") >= 1, "{body}");
            tickets.push(body["ticket"].as_str().unwrap().to_owned());
        }
        accepting_node.stop().await;

        // A minute later the crashed node's lease has lapsed; a new node takes over.
        app.clock.advance(Duration::from_secs(61));
        let (fresh, fresh_node) = app.another_node(|_| {}).await;
        let mut order_ids = Vec::new();
        for (ticket, buyer) in tickets.iter().zip(&buyers) {
            let done = outcome(&fresh, buyer, ticket).await;
            assert_eq!(done["status"], "placed", "{done}");
            order_ids.push(int(&done["order"], "id"));
        }
        assert!(
            order_ids.windows(2).all(|w| w[0] < w[1]),
            "placed in line order: {order_ids:?}"
        );
        assert_eq!(app.stock(product).await.held, 4, "each ticket placed once");
        fresh_node.stop().await;
        app.assert_verify_clean().await;
    }
);

// Found by scripts/faults.sh (issue 12): a holder admitted a ticket and placed its order,
// then died before writing the outcome. The node taking the room over admits the ticket
// again after the product sold out (that order took the last unit); its gate knows the
// product is sold out but not that this attempt was placed. The database must decide, and
// replay the order: refused as out of stock, the buyer would be told no while holding the
// unit.
backend_tests!(
    a_ticket_placed_before_its_holder_died_is_replayed_though_the_product_sold_out,
    config = |c| c.waiting_room_lease_ms = 60_000,
    |app| async move {
        let product = app.simple_product(1_000, 1).await;
        let buyers = app.buyers(2).await;
        room_held_by_the_test(&app).await;
        // Started now, so that its gate sees the product sell out; a short lease of its own,
        // so that it asks for the room every second.
        let (fresh, fresh_node) = app.another_node(|c| c.waiting_room_lease_ms = 3_000).await;

        let ticket = queue_behind_the_api(&app, &buyers[0], "last-unit", product).await;
        let admitted = app.state.store.admit_tickets(1).await.unwrap();
        assert_eq!(admitted.len(), 1);
        let now = app.clock.now();
        let placed = app
            .state
            .store
            .place_batch(&[admitted[0].request.clone()], now.plus_secs(600), now)
            .await
            .unwrap();
        let PlaceOutcome::Placed(order) = &placed.outcomes[0] else {
            panic!("the crashed holder's placement: {:?}", placed.outcomes[0])
        };
        // The new holder's gate has seen the product sell out (its stock.changed event).
        eventually(
            Duration::from_secs(10),
            "the node's gate sold out",
            || async {
                let reply = fresh
                    .place_order_keyed(&buyers[1], "too-late", &[(product, 1)])
                    .await;
                (reply.0.as_u16() == 409).then_some(())
            },
        )
        .await;

        app.clock.advance(Duration::from_secs(61));
        let done = outcome(&fresh, &buyers[0], &ticket).await;
        assert_eq!(done["status"], "replayed", "{done}");
        assert_eq!(int(&done["order"], "id"), order.id, "{done}");
        assert_eq!(app.stock(product).await.held, 1);
        fresh_node.stop().await;
        app.assert_verify_clean().await;
    }
);

/// The app's node stops admitting, and a node that no longer runs holds the room: the test
/// admits and finishes tickets through the store itself, as holders would.
async fn room_held_by_the_test(app: &TestApp) {
    app.state.app.orders.placement.drain();
    eventually(Duration::from_secs(10), "the drained node idle", || async {
        app.state.app.orders.placement.is_idle().then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    crashed_node_holds_the_room(app).await;
}

// Found by scripts/faults.sh (issue 12): a holder whose lease lapsed while it worked through
// a batch finished a ticket that the new holder had admitted again, and its answer (out of
// stock, from a gate that never saw the attempt) stood while the new holder placed the
// order. An outcome answers one admission: only the ticket's current one is written.
backend_tests!(
    only_the_current_admission_of_a_ticket_writes_its_outcome,
    config = |c| c.waiting_room_lease_ms = 60_000,
    |app| async move {
        let product = app.simple_product(1_000, 10).await;
        let buyers = app.buyers(1).await;
        room_held_by_the_test(&app).await;
        let ticket = queue_behind_the_api(&app, &buyers[0], "twice", product).await;
        let store = &app.state.store;
        let stale = store.admit_tickets(1).await.unwrap().remove(0);
        // A new holder takes the room over: the ticket goes back in line and is admitted again.
        assert_eq!(store.readmit_tickets(None).await.unwrap(), 1);
        let current = store.admit_tickets(1).await.unwrap().remove(0);
        assert_eq!(
            (current.seq, current.attempts),
            (stale.seq, stale.attempts + 1)
        );

        let now = app.clock.now();
        let refused = TicketOutcome::Rejected(Rejection::OutOfStock {
            product_id: product,
        });
        let written = store.finish_ticket(stale.seq, stale.attempts, &refused, now);
        assert!(
            !written.await.unwrap(),
            "the stale admission's outcome is dropped"
        );
        let written =
            store.finish_ticket(current.seq, current.attempts, &TicketOutcome::Failed, now);
        assert!(written.await.unwrap());
        let done = outcome(&app, &buyers[0], &ticket).await;
        assert_eq!(done["status"], "failed", "{done}");
    }
);

// The same race inside the database: a ticket finished while another holder's admission
// waits for its row must not be admitted again (it broke the admission of the whole batch:
// `done` without an outcome violates the table's check).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ticket_finished_during_an_admission_is_left_out_of_it() {
    run_on(
        Backend::Postgres,
        &[],
        |c, _| c.waiting_room_lease_ms = 60_000,
        |app| async move {
            use sqlx::Connection;
            let product = app.simple_product(1_000, 10).await;
            let buyers = app.buyers(1).await;
            room_held_by_the_test(&app).await;
            queue_behind_the_api(&app, &buyers[0], "raced", product).await;
            // Another holder has the ticket's row locked, about to finish it.
            let mut other = sqlx::PgConnection::connect(&app.database_url)
                .await
                .unwrap();
            let mut tx = other.begin().await.unwrap();
            sqlx::query("SELECT seq FROM waiting_tickets FOR UPDATE")
                .execute(&mut *tx)
                .await
                .unwrap();
            let store = app.state.store.clone();
            let admission = tokio::spawn(async move { store.admit_tickets(10).await });
            tokio::time::sleep(Duration::from_millis(300)).await;
            sqlx::query(
                "UPDATE waiting_tickets SET status = 'done', outcome = 'failed', finished_at = 0",
            )
            .execute(&mut *tx)
            .await
            .unwrap();
            tx.commit().await.unwrap();
            let admitted = admission.await.unwrap().expect("the admission succeeds");
            assert!(
                admitted.is_empty(),
                "a finished ticket admitted again: {admitted:?}"
            );
        },
    )
    .await;
}

// A stopping node refuses new orders with 503 + Retry-After and says it is not ready, and
// gives the room up at once: another node admits the tickets without waiting the lease out.
backend_tests!(
    a_draining_node_refuses_orders_and_hands_the_room_over,
    config = |c| c.waiting_room_lease_ms = 60_000,
    |app| async move {
        let product = app.simple_product(1_000, 10).await;
        let buyers = app.buyers(2).await;
        let (other, other_node) = app.another_node(|_| {}).await;
        app.state.app.orders.placement.drain();

        let refused = app
            .client
            .post(app.api("/orders"))
            .bearer_auth(&buyers[0])
            .header("idempotency-key", "during-drain")
            .json(&order_body(&[(product, 1)]))
            .send()
            .await
            .unwrap();
        assert_eq!(
            refused
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap()),
            Some("1")
        );
        expect_error(&read_reply(refused).await, 503, "shutting_down");
        let ready = app
            .client
            .get(format!("{}/readyz", app.root))
            .send()
            .await
            .unwrap();
        assert_eq!(ready.status().as_u16(), 503);

        // The same attempt succeeds on the other node, and a ticket queued anywhere is
        // admitted there (the clock never moves: only a released lease lets it take over).
        expect(
            &other
                .place_order_keyed(&buyers[0], "during-drain", &[(product, 1)])
                .await,
            201,
        );
        let ticket = queue_behind_the_api(&app, &buyers[1], "after-drain", product).await;
        let done = outcome(&other, &buyers[1], &ticket).await;
        assert_eq!(done["status"], "placed", "{done}");
        other_node.stop().await;
        app.assert_verify_clean().await;
    }
);

fn ticket_reads(node: &TestApp, source: &str) -> u64 {
    let labels = stampede::metrics::SourceLabels {
        source: source.to_owned(),
    };
    node.state
        .metrics
        .waiting_room_ticket_reads
        .get_or_create(&labels)
        .get()
}

async fn ticket_status(node: &TestApp, token: &str, ticket: &str) -> String {
    let reply = node.get(&format!("/queue/{ticket}"), Some(token)).await;
    expect(&reply, 200)["status"].as_str().unwrap().to_owned()
}

// Found by scripts/faults.sh (issue 12): with a long line, buyers following their tickets
// read each ticket from the database several times a second, starving the placement writers
// of connections. A node answers a ticket still behind the line, as it last read it, and a
// finished one, from what it knows; it reads the ticket again once the line has reached it,
// so no answer is older than the node's last read of the line.
backend_tests!(
    a_ticket_behind_the_line_or_finished_is_answered_without_a_read,
    config = |c| c.waiting_room_lease_ms = 60_000,
    |app| async move {
        let product = app.simple_product(1_000, 10).await;
        let buyers = app.buyers(2).await;
        room_held_by_the_test(&app).await;
        // A node that reads the line every poll but does not admit (the test holds the room).
        let (node, node_stopped) = app.another_node(|_| {}).await;
        queue_behind_the_api(&app, &buyers[0], "ahead", product).await;
        let ticket = queue_behind_the_api(&app, &buyers[1], "behind", product).await;
        let store = &app.state.store;
        eventually(
            Duration::from_secs(10),
            "the line seen by the node",
            || async {
                let room = node.state.app.orders.placement.waiting_room();
                (!room.is_empty()).then_some(())
            },
        )
        .await;

        for _ in 0..10 {
            assert_eq!(ticket_status(&node, &buyers[1], &ticket).await, "waiting");
        }
        assert_eq!(ticket_reads(&node, "store"), 1, "read once");
        assert_eq!(ticket_reads(&node, "known"), 9);
        // The ticket ahead is admitted: this one is still behind the line.
        assert_eq!(store.admit_tickets(1).await.unwrap().len(), 1);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(ticket_status(&node, &buyers[1], &ticket).await, "waiting");
        assert_eq!(ticket_reads(&node, "store"), 1);

        // Admitted: the node sees it at its next read of the line, and reads the ticket.
        let admitted = store.admit_tickets(1).await.unwrap().remove(0);
        assert_eq!(admitted.id, ticket);
        eventually(Duration::from_secs(5), "the admission seen", || async {
            let status = ticket_status(&node, &buyers[1], &ticket).await;
            (status == "placing").then_some(())
        })
        .await;
        let now = app.clock.now();
        let finished =
            store.finish_ticket(admitted.seq, admitted.attempts, &TicketOutcome::Failed, now);
        assert!(finished.await.unwrap());
        // An admitted ticket is about to change: read again within half a second.
        eventually(Duration::from_secs(2), "the outcome seen", || async {
            let status = ticket_status(&node, &buyers[1], &ticket).await;
            (status == "failed").then_some(())
        })
        .await;
        let reads = ticket_reads(&node, "store");
        for _ in 0..5 {
            assert_eq!(ticket_status(&node, &buyers[1], &ticket).await, "failed");
        }
        assert_eq!(
            ticket_reads(&node, "store"),
            reads,
            "a finished ticket is not read again"
        );
        // Another buyer's ticket stays unknown to them, known or not.
        let reply = node
            .get(&format!("/queue/{ticket}"), Some(&buyers[0]))
            .await;
        expect_error(&reply, 404, "not_found");
        node_stopped.stop().await;
    }
);
