//! First-come coupon campaigns: a burst of claims issues exactly the total and never two to
//! one buyer, with and without the Redis gate; bad campaigns, closed windows, unknown
//! campaigns and the wrong roles change nothing; and when the Redis gate disagrees with the
//! database, verify says so and the repair behind `stampede verify --repair` fixes it.

use crate::helpers::*;
use serde_json::{json, Value};
use stampede::config::Config;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const BURST_BUYERS: usize = 5_000;
const BURST_COUPONS: i64 = 500;
/// Requests in flight during the burst: enough to pile claims up at the gate and the
/// database, few enough that on two cores shared with the rest of the suite no claim waits
/// out a timeout.
const BURST_IN_FLIGHT: usize = 200;

/// One IP and thousands of buyers, far faster than people (no rate limits), on two cores
/// shared with the whole suite: waits for a connection or an answer get room, so every
/// claim gets a decision rather than a 503 or 408.
fn burst_config(config: &mut Config) {
    config.rate_limit_ip_per_sec = 0;
    config.rate_limit_user_per_sec = 0;
    config.db_acquire_timeout_ms = 30_000;
    config.request_timeout_ms = 50_000;
}

fn fixed_campaign(total: i64) -> Value {
    json!({
        "name": unique("campaign"),
        "discount_type": "fixed",
        "discount_value": 1_000,
        "total_quantity": total,
    })
}

async fn create_campaign(app: &TestApp, body: &Value) -> Value {
    let admin = app.admin_token().await;
    expect(&app.post("/coupons", Some(&admin), body).await, 201).clone()
}

async fn issued(app: &TestApp, campaign_id: i64) -> i64 {
    let reply = app.get(&format!("/coupons/{campaign_id}"), None).await;
    int(expect(&reply, 200), "issued")
}

async fn claim(app: &TestApp, campaign_id: i64, token: &str) -> Reply {
    app.post_empty(&format!("/coupons/{campaign_id}/issue"), Some(token))
        .await
}

/// Every buyer claims twice, the two claims next to each other so they race; returns
/// `(buyer, status, error code)` per claim.
async fn burst(
    app: &TestApp,
    campaign_id: i64,
    tokens: &Arc<Vec<String>>,
) -> Vec<(usize, u16, String)> {
    let claims: Arc<Vec<usize>> = Arc::new((0..tokens.len()).flat_map(|b| [b, b]).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let per_worker = all_at_once(BURST_IN_FLIGHT, |_| {
        let (app, tokens, claims, next) =
            (app.clone(), tokens.clone(), claims.clone(), next.clone());
        async move {
            let mut seen = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&buyer) = claims.get(i) else { break };
                let (status, body) = claim(&app, campaign_id, &tokens[buyer]).await;
                let code = body["error"]["code"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                seen.push((buyer, status.as_u16(), code));
            }
            seen
        }
    })
    .await;
    per_worker.into_iter().flatten().collect()
}

async fn burst_issues_exactly_the_total(app: TestApp) {
    let campaign = create_campaign(&app, &fixed_campaign(BURST_COUPONS)).await;
    let id = int(&campaign, "id");
    assert_eq!(int(&campaign, "issued"), 0);
    let tokens = Arc::new(app.buyers(BURST_BUYERS).await);

    let replies = burst(&app, id, &tokens).await;
    assert_eq!(replies.len(), 2 * BURST_BUYERS);
    let mut per_buyer = vec![0u32; BURST_BUYERS];
    for (buyer, status, code) in &replies {
        match status {
            201 => per_buyer[*buyer] += 1,
            409 => assert!(
                code == "coupon_sold_out" || code == "coupon_already_issued",
                "unexpected refusal {code}"
            ),
            other => panic!("unexpected HTTP {other} ({code})"),
        }
    }
    let winners = per_buyer.iter().filter(|n| **n > 0).count() as i64;
    let created = per_buyer.iter().sum::<u32>() as i64;
    assert_eq!(created, BURST_COUPONS, "201 answers");
    assert_eq!(winners, BURST_COUPONS, "a buyer was issued two coupons");
    assert_eq!(issued(&app, id).await, BURST_COUPONS);
    app.assert_verify_clean().await;
    // Group commit: the claims that reached the database shared transactions.
    let claims = app.metric("coupon_claim_batch_size_sum").await;
    let transactions = app.metric("coupon_claim_batch_size_count").await;
    assert!(
        claims >= BURST_COUPONS as f64 && transactions < claims / 2.0,
        "{claims} claims in {transactions} transactions"
    );
    let gate = app.state.cluster.coupons.clone();
    let drift = stampede::app::audit::coupon_gate(&*app.state.store, &gate)
        .await
        .expect("compare the gate");
    assert!(drift.is_empty(), "gate and database disagree: {drift:?}");

    // Sold out is known on this node now: a late claim is refused without a write.
    assert!(gate.is_sold_out(id));
    let late = app.buyer().await;
    expect_error(&claim(&app, id, &late).await, 409, "coupon_sold_out");
    let winner = per_buyer.iter().position(|n| *n == 1).expect("a winner");
    let mine = app.get("/me/coupons", Some(&tokens[winner])).await;
    let mine = expect(&mine, 200);
    assert_eq!(int(mine, "total"), 1, "{mine}");
    assert_eq!(array(mine, "items")[0]["status"], "issued");
    assert_eq!(int(&array(mine, "items")[0], "campaign_id"), id);
}

backend_tests!(
    a_burst_without_redis_issues_exactly_the_total_and_nobody_twice,
    config = |c| burst_config(c),
    |app| async move { burst_issues_exactly_the_total(app).await }
);

redis_tests!(
    a_burst_through_the_redis_gate_issues_exactly_the_total_and_nobody_twice,
    config = |c| {
        burst_config(c);
        c.redis_timeout_ms = 2_000;
    },
    |app| async move { burst_issues_exactly_the_total(app).await }
);

backend_tests!(
    bad_campaigns_are_refused_and_change_nothing,
    |app| async move {
        let admin = app.admin_token().await;
        let buyer = app.buyer().await;
        let hour = 3_600;
        let now = stampede::clock::Clock::now(&stampede::clock::SystemClock);
        let valid = fixed_campaign(10);
        let with = |key: &str, value: Value| {
            let mut body = valid.clone();
            body[key] = value;
            body
        };
        let percent = |value: i64| {
            let mut body = with("discount_type", json!("percent"));
            body["discount_value"] = json!(value);
            body
        };
        let bad = [
            with("name", json!("  ")),
            with("discount_type", json!("bogus")),
            with("discount_value", json!(0)),
            with("discount_value", json!(-5)),
            with("max_discount", json!(500)),
            percent(0),
            percent(101),
            with("total_quantity", json!(0)),
            with("total_quantity", json!(10_000_001)),
            with("valid_days", json!(0)),
            with("valid_days", json!(3651)),
            with("min_order_amount", json!(-1)),
            with("issue_ends_at", json!(now.minus_secs(hour).to_rfc3339())),
            with("issue_ends_at", json!("not a time")),
            with("unknown_field", json!(1)),
        ];
        for body in &bad {
            let reply = app.post("/coupons", Some(&admin), body).await;
            expect_error(&reply, 422, "validation_failed");
        }
        let mut capped_zero = percent(10);
        capped_zero["max_discount"] = json!(0);
        expect_error(
            &app.post("/coupons", Some(&admin), &capped_zero).await,
            422,
            "validation_failed",
        );
        expect_error(
            &app.post("/coupons", Some(&buyer), &valid).await,
            403,
            "forbidden",
        );
        expect_error(
            &app.post("/coupons", None, &valid).await,
            401,
            "unauthorized",
        );
        let audit = app.state.store.coupon_audit().await.expect("coupon audit");
        assert!(
            audit.is_empty(),
            "a refused campaign was written: {audit:?}"
        );

        // A percent discount may come without a cap.
        let uncapped = create_campaign(&app, &percent(15)).await;
        assert_eq!(uncapped["max_discount"], Value::Null);
        assert_eq!(uncapped["discount_type"], "percent");
        assert_eq!(int(&uncapped, "discount_value"), 15);
    }
);

backend_tests!(
    claims_outside_the_window_unknown_or_by_the_wrong_role_change_nothing,
    |app| async move {
        let now = stampede::clock::Clock::now(&stampede::clock::SystemClock);
        let buyer = app.buyer().await;
        let admin = app.admin_token().await;
        let partner = app.create_partner(&unique("partner"), 1000).await;
        let seller = app.create_seller(partner).await;

        let mut later = fixed_campaign(5);
        later["issue_starts_at"] = json!(now.plus_secs(3_600).to_rfc3339());
        let later = int(&create_campaign(&app, &later).await, "id");
        let mut over = fixed_campaign(5);
        over["issue_starts_at"] = json!(now.minus_secs(7_200).to_rfc3339());
        over["issue_ends_at"] = json!(now.minus_secs(3_600).to_rfc3339());
        let over = int(&create_campaign(&app, &over).await, "id");
        for id in [later, over] {
            expect_error(&claim(&app, id, &buyer).await, 409, "coupon_not_issuable");
            assert_eq!(issued(&app, id).await, 0);
        }

        expect_error(&claim(&app, 987_654_321, &buyer).await, 404, "not_found");
        expect_error(&app.get("/coupons/987654321", None).await, 404, "not_found");

        let open = int(&create_campaign(&app, &fixed_campaign(1)).await, "id");
        expect_error(&claim(&app, open, &admin).await, 403, "forbidden");
        expect_error(&claim(&app, open, &seller).await, 403, "forbidden");
        expect_error(
            &app.post_empty(&format!("/coupons/{open}/issue"), None)
                .await,
            401,
            "unauthorized",
        );
        expect_error(
            &app.get("/me/coupons", Some(&seller)).await,
            403,
            "forbidden",
        );
        assert_eq!(issued(&app, open).await, 0);
        app.assert_verify_clean().await;
    }
);

backend_tests!(
    a_coupon_is_issued_once_expires_and_sells_out,
    |app| async move {
        let (first, second, third) = (app.buyer().await, app.buyer().await, app.buyer().await);
        let mut body = fixed_campaign(2);
        body["valid_days"] = json!(7);
        let id = int(&create_campaign(&app, &body).await, "id");
        let reply = claim(&app, id, &first).await;
        let coupon = expect(&reply, 201);
        assert_eq!(coupon["status"], "issued");
        assert_eq!(int(coupon, "campaign_id"), id);
        let lifetime = parse_time(coupon, "expires_at") - parse_time(coupon, "issued_at");
        assert_eq!(lifetime, time::Duration::days(7), "{coupon}");
        expect_error(&claim(&app, id, &first).await, 409, "coupon_already_issued");
        expect(&claim(&app, id, &second).await, 201);
        // The last coupon is gone: refused from the node's sold-out flag from now on.
        assert!(app.state.cluster.coupons.is_sold_out(id));
        expect_error(&claim(&app, id, &third).await, 409, "coupon_sold_out");
        assert_eq!(issued(&app, id).await, 2);

        // Without valid_days a coupon lives until the window closes; then it shows expired.
        let mut short = fixed_campaign(3);
        // Ten minutes: within the life of the test's access tokens.
        let ends = app.state.clock.now().plus_secs(600);
        short["issue_ends_at"] = json!(ends.to_rfc3339());
        let short = int(&create_campaign(&app, &short).await, "id");
        let reply = claim(&app, short, &second).await;
        assert_eq!(str_of(expect(&reply, 201), "expires_at"), ends.to_rfc3339());
        app.clock.advance(Duration::from_secs(600));
        let reply = app.get("/me/coupons", Some(&second)).await;
        let mine = array(expect(&reply, 200), "items").clone();
        assert_eq!(mine[0]["status"], "expired", "{mine:?}");
        assert_eq!(int(&mine[0], "campaign_id"), short);
        expect_error(
            &claim(&app, short, &first).await,
            409,
            "coupon_not_issuable",
        );
        app.assert_verify_clean().await;

        let metrics = app
            .client
            .get(app.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body");
        for line in [
            "coupons_issued_total 3",
            "coupons_refused_total{reason=\"sold_out\"} 1",
            "coupons_refused_total{reason=\"already_issued\"} 1",
            "coupons_refused_total{reason=\"not_issuable\"} 1",
        ] {
            assert!(
                metrics.lines().any(|l| l == line),
                "no {line} in:\n{metrics}"
            );
        }
        let openapi = app.client.get(app.url("/api/openapi.json")).send().await;
        let openapi: Value = openapi
            .expect("openapi")
            .json()
            .await
            .expect("openapi json");
        for path in [
            "/api/v1/coupons",
            "/api/v1/coupons/{id}/issue",
            "/api/v1/me/coupons",
        ] {
            assert!(
                openapi["paths"][path].is_object(),
                "openapi.json lacks {path}"
            );
        }
    }
);

redis_tests!(
    verify_reports_a_redis_gate_that_disagrees_and_repair_resets_it,
    |app| async move {
        let store = app.state.store.clone();
        let gate = app.state.cluster.coupons.clone();
        let id = int(&create_campaign(&app, &fixed_campaign(5)).await, "id");
        let buyers = app.buyers(3).await;
        for token in &buyers[..2] {
            expect(&claim(&app, id, token).await, 201);
        }
        let differences = || async {
            stampede::app::audit::coupon_gate(&*store, &gate)
                .await
                .expect("compare the gate")
        };
        assert!(differences().await.is_empty());

        // Behind the server's back: the counter says sold out, a stranger is a member.
        let prefix = app.state.config.redis_prefix.clone();
        let mut redis = raw_redis(&app).await;
        let _: () = redis::pipe()
            .cmd("SET")
            .arg(format!("{prefix}coupon:{id}:n"))
            .arg(5)
            .cmd("SADD")
            .arg(format!("{prefix}coupon:{id}:users"))
            .arg(987_654_321)
            .query_async(&mut redis)
            .await
            .unwrap();
        let found = differences().await.join("\n");
        assert!(
            found.contains("counts 5 but the database issued 2"),
            "{found}"
        );
        assert!(
            found.contains("1 buyer(s) in the Redis gate hold no coupon"),
            "{found}"
        );

        // The drifted gate refuses a buyer the database would accept, but never writes,
        // and never makes the node believe the campaign is sold out.
        expect_error(&claim(&app, id, &buyers[2]).await, 409, "coupon_sold_out");
        assert_eq!(issued(&app, id).await, 2);
        assert!(!gate.is_sold_out(id));

        let repaired = stampede::app::audit::repair_coupon_gate(&*store, &gate)
            .await
            .expect("repair");
        assert_eq!(repaired.len(), 1, "{repaired:?}");
        assert!(
            repaired[0].contains(&format!("campaign {id}")),
            "{repaired:?}"
        );
        assert!(differences().await.is_empty());
        expect(&claim(&app, id, &buyers[2]).await, 201);
        assert!(differences().await.is_empty());
        app.assert_verify_clean().await;
    }
);

backend_tests!(
    an_issued_coupon_reaches_the_buyers_own_stream,
    |app| async move {
        let campaign = create_campaign(&app, &fixed_campaign(5)).await;
        let buyer = app.buyer().await;
        let user_id = app.user_id(&buyer).await;
        let mut stream = crate::waitlist::my_events(&app, &buyer).await;
        expect(&claim(&app, int(&campaign, "id"), &buyer).await, 201);
        let event = crate::waitlist::next_of_type(&mut stream, user_id, "coupon.issued").await;
        assert_eq!(event["payload"]["campaign_id"], campaign["id"], "{event}");
    }
);

redis_tests!(
    another_node_learns_a_sold_out_campaign_from_the_redis_marker,
    |app| async move {
        let (other, node) = app.another_node(|_| {}).await;
        let id = int(&create_campaign(&app, &fixed_campaign(2)).await, "id");
        for buyer in app.buyers(2).await {
            expect(&claim(&app, id, &buyer).await, 201);
        }
        // The claim that took the last coupon told this node and left the marker.
        assert!(app.state.cluster.coupons.is_sold_out(id));
        let gate = other.state.cluster.coupons.clone();
        assert!(!gate.is_sold_out(id), "the other node has not asked yet");
        let late = other.buyer().await;
        expect_error(&claim(&other, id, &late).await, 409, "coupon_sold_out");
        // One look at the marker: from now on the other node refuses without Redis.
        assert!(gate.is_sold_out(id));
        assert_eq!(issued(&other, id).await, 2);
        node.stop().await;
        app.assert_verify_clean().await;
    }
);
