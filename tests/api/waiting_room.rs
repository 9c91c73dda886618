//! The waiting room: when the writers are saturated, attempts get `202` with a ticket and
//! are placed first-in first-out; a full room answers `503` with `Retry-After`.

use crate::helpers::*;
use serde_json::Value;
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
