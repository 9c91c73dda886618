//! Seller settlement (issue 10): each business day in Asia/Seoul, one statement per partner
//! of the purchases confirmed (and the confirmed parts returned) that day, at the commission rate each partner order was
//! placed with, rounded half up per line; made by the lease-held daily job at 04:00 (or by
//! hand), never twice, and read by the partner's sellers and admins as JSON and CSV.
//!
//! The servers' clock only moves forward, so each test first skips to five minutes before
//! the next midnight in Seoul, then signs everyone up (their tokens live from then) and
//! confirms purchases on both sides of that midnight.

use crate::helpers::*;
use serde_json::Value;
use stampede::clock::Clock;
use stampede::domain::settlement::{BusinessDate, SettlementCalendar};
use stampede::domain::Timestamp;
use stampede::jobs::settlement::{SettlementJob, SETTLEMENT_LEASE};
use stampede::jobs::{Job, Scheduler, Scope, Trigger};
use stampede::store::{PageRequest, SettlementRecord};
use std::time::Duration;

fn seoul() -> SettlementCalendar {
    SettlementCalendar::new("Asia/Seoul", "04:00").unwrap()
}

/// Before the test signs anyone up: moves the servers' clock to five minutes before the
/// next midnight in Seoul (the one after, when that is closer than five minutes); returns
/// the business day that midnight ends. What the test does before midnight must take less
/// than those five minutes.
fn skip_to_seoul_evening(app: &TestApp) -> BusinessDate {
    let calendar = seoul();
    let now = app.clock.now();
    let mut day = calendar.date_of(now).unwrap();
    let mut target = calendar.bounds(day).unwrap().1.millis() - 300_000;
    if target <= now.millis() {
        day = day.next();
        target = calendar.bounds(day).unwrap().1.millis() - 300_000;
    }
    app.clock
        .advance(Duration::from_millis((target - now.millis()) as u64));
    day
}

/// Moves the servers' clock forward to `at`.
fn skip_to(app: &TestApp, at: Timestamp) {
    let now = app.clock.now().millis();
    assert!(at.millis() >= now, "the clock only moves forward");
    app.clock
        .advance(Duration::from_millis((at.millis() - now) as u64));
}

/// `at` local time in Seoul on `day`.
fn seoul_time(day: BusinessDate, hours: i64, minutes: i64) -> Timestamp {
    let start = seoul().bounds(day).unwrap().0.millis();
    Timestamp::from_millis(start + (hours * 60 + minutes) * 60_000)
}

/// The date in UTC+9 (Seoul has no DST): what the statement's business date must be.
fn kst_date(confirmed_at: &str) -> String {
    let at =
        time::OffsetDateTime::parse(confirmed_at, &time::format_description::well_known::Rfc3339)
            .unwrap();
    let kst = at.to_offset(time::UtcOffset::from_hms(9, 0, 0).unwrap());
    format!(
        "{:04}-{:02}-{:02}",
        kst.year(),
        u8::from(kst.month()),
        kst.day()
    )
}

/// North charges 10%, South 5%, each with a product and a seller.
struct Shop {
    north: i64,
    south: i64,
    north_seller: String,
    south_seller: String,
    /// 1,005 won at 10%: 100.5 won of commission, rounded up to 101.
    boots: i64,
    /// 2,009 won at 5%: 100.45 won, rounded down to 100.
    coats: i64,
}

async fn shop(app: &TestApp) -> Shop {
    let north = app.create_partner("North", 1000).await;
    let south = app.create_partner("South", 500).await;
    Shop {
        north,
        south,
        north_seller: app.create_seller(north).await,
        south_seller: app.create_seller(south).await,
        boots: app.product_of(north, 1_005, 50, None).await,
        coats: app.product_of(south, 2_009, 50, None).await,
    }
}

/// A new buyer's order of `items`, paid and delivered, waiting for confirmation; returns
/// the buyer and the order id.
async fn delivered_order(app: &TestApp, items: &[(i64, i64)]) -> (String, i64) {
    let buyer = app.buyer().await;
    let order = app.order_ok(&buyer, items).await;
    let paid = expect(&app.pay(&buyer, &order).await, 200).clone();
    app.deliver_all(&paid).await;
    (buyer, int(&order, "id"))
}

/// The buyer confirms the purchase now; returns when each part was confirmed.
async fn confirm(app: &TestApp, (buyer, order_id): &(String, i64)) -> Vec<String> {
    let path = format!("/orders/{order_id}/confirm");
    let confirmed = expect(&app.post_empty(&path, Some(buyer)).await, 200).clone();
    assert_eq!(confirmed["status"], "confirmed", "{confirmed}");
    array(&confirmed, "partner_orders")
        .iter()
        .map(|p| str_of(p, "confirmed_at").to_owned())
        .collect()
}

/// Statements of `partner`, latest day first, read from the store.
async fn statements(app: &TestApp, partner: i64) -> Vec<SettlementRecord> {
    let page = PageRequest { page: 1, size: 100 };
    app.state
        .store
        .settlements(partner, page)
        .await
        .unwrap()
        .items
}

async fn created_events(app: &TestApp) -> usize {
    let events = app.state.store.events_after(0, 100_000).await.unwrap();
    events
        .iter()
        .filter(|e| e.event_type == "settlement.created")
        .count()
}

/// `(gross, commission, net, line_count)`.
fn totals(statement: &Value) -> (i64, i64, i64, i64) {
    (
        int(statement, "gross"),
        int(statement, "commission"),
        int(statement, "net"),
        int(statement, "line_count"),
    )
}

/// `GET` as text: status, content type, body.
async fn get_text(app: &TestApp, path: &str, token: &str) -> (u16, String, String) {
    let response = app
        .client
        .get(app.api(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, response.text().await.unwrap())
}

backend_tests!(
    a_day_is_settled_per_partner_with_half_up_commission_once,
    |app| async move {
        let day = skip_to_seoul_evening(&app);
        let shop = shop(&app).await;
        let first = delivered_order(&app, &[(shop.boots, 1)]).await;
        let second = delivered_order(&app, &[(shop.boots, 1), (shop.coats, 1)]).await;
        let next_day = delivered_order(&app, &[(shop.boots, 2)]).await;

        // Before midnight in Seoul: two North parts and one South part are confirmed on
        // day D…
        let mut on_day = confirm(&app, &first).await;
        on_day.extend(confirm(&app, &second).await);
        for at in &on_day {
            assert_eq!(kst_date(at), day.to_string(), "{at}");
        }
        // …and one more North part just after midnight, on D+1.
        skip_to(&app, seoul_time(day.next(), 0, 0));
        let after = confirm(&app, &next_day).await;
        assert_eq!(kst_date(&after[0]), day.next().to_string());

        let settlement = &app.state.app.settlement;
        let refused = settlement.settle_day(day.next()).await.unwrap_err();
        assert!(refused.to_string().contains("has not ended"), "{refused}");
        let made = settlement.settle_day(day).await.unwrap().statements;
        assert_eq!(made.len(), 2, "one statement per partner: {made:?}");
        // Running the day again changes nothing.
        assert!(settlement
            .settle_day(day)
            .await
            .unwrap()
            .statements
            .is_empty());
        assert_eq!(created_events(&app).await, 2);
        assert_eq!(statements(&app, shop.north).await.len(), 1);

        // North: 1,005 + 1,005 at 10%, each line rounded up (101 + 101, not 201).
        let admin = app.admin_token().await;
        let listed = expect(
            &app.get(
                &format!("/partners/{}/settlements", shop.north),
                Some(&shop.north_seller),
            )
            .await,
            200,
        )
        .clone();
        assert_eq!(int(&listed, "total"), 1);
        let north = &array(&listed, "items")[0];
        assert_eq!(str_of(north, "business_date"), day.to_string());
        assert_eq!(int(north, "partner_id"), shop.north);
        assert_eq!(totals(north), (2_010, 202, 1_808, 2));
        // South: 2,009 at 5% is 100.45, rounded down.
        let south_listed = expect(
            &app.get(
                &format!("/partners/{}/settlements", shop.south),
                Some(&admin),
            )
            .await,
            200,
        )
        .clone();
        let south = &array(&south_listed, "items")[0];
        assert_eq!(totals(south), (2_009, 100, 1_909, 1));

        // The statement with its lines, paged by partner order.
        let north_id = int(north, "id");
        let one = expect(
            &app.get(
                &format!("/settlements/{north_id}?size=1"),
                Some(&shop.north_seller),
            )
            .await,
            200,
        )
        .clone();
        assert_eq!(totals(&one), (2_010, 202, 1_808, 2));
        assert_eq!(int(&one["lines"], "total"), 2);
        let lines = array(&one["lines"], "items");
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        assert_eq!(
            (
                int(line, "order_id"),
                int(line, "subtotal"),
                int(line, "commission_rate_bps"),
                int(line, "commission"),
                int(line, "net")
            ),
            (first.1, 1_005, 1000, 101, 904)
        );
        assert_eq!(str_of(line, "confirmed_at"), on_day[0]);
        assert_eq!(str_of(line, "recorded_at"), on_day[0]);
        assert_eq!(str_of(line, "kind"), "sale");

        // The same lines as CSV.
        let (status, content_type, csv) = get_text(
            &app,
            &format!("/settlements/{north_id}/lines.csv"),
            &shop.north_seller,
        )
        .await;
        assert_eq!(status, 200, "{csv}");
        assert!(content_type.starts_with("text/csv"), "{content_type}");
        let rows: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(
            rows[0],
            "kind,partner_order_id,order_id,subtotal,commission_rate_bps,commission,net,\
             confirmed_at,recorded_at"
        );
        assert_eq!(
            rows.len(),
            4,
            "a header, two lines, and the final CRLF: {csv:?}"
        );
        assert_eq!(rows[3], "");
        assert_eq!(
            rows[1],
            format!(
                "sale,{},{},1005,1000,101,904,{},{}",
                int(line, "partner_order_id"),
                first.1,
                on_day[0],
                on_day[0]
            )
        );
        let page_two = expect(
            &app.get(
                &format!("/settlements/{north_id}?size=1&page=2"),
                Some(&shop.north_seller),
            )
            .await,
            200,
        )
        .clone();
        let other = &array(&page_two["lines"], "items")[0];
        assert_eq!(int(other, "order_id"), second.1);
        assert_eq!(
            rows[2],
            format!(
                "sale,{},{},1005,1000,101,904,{},{}",
                int(other, "partner_order_id"),
                second.1,
                str_of(other, "confirmed_at"),
                str_of(other, "recorded_at")
            )
        );

        // Who may read: the partner's sellers and admins; another partner's seller sees
        // neither its listing (403) nor its statements (404); buyers are refused.
        let north_path = format!("/partners/{}/settlements", shop.north);
        let statement_path = format!("/settlements/{north_id}");
        let csv_path = format!("/settlements/{north_id}/lines.csv");
        expect_error(
            &app.get(&north_path, Some(&shop.south_seller)).await,
            403,
            "forbidden",
        );
        for path in [&statement_path, &csv_path] {
            expect_error(
                &app.get(path, Some(&shop.south_seller)).await,
                404,
                "not_found",
            );
            expect_error(&app.get(path, Some(&first.0)).await, 403, "forbidden");
            expect_error(&app.get(path, None).await, 401, "unauthorized");
            expect(&app.get(path, Some(&admin)).await, 200);
        }
        expect_error(
            &app.get(&north_path, Some(&first.0)).await,
            403,
            "forbidden",
        );
        expect_error(&app.get(&north_path, None).await, 401, "unauthorized");
        expect_error(
            &app.get("/partners/987654/settlements", Some(&admin)).await,
            404,
            "not_found",
        );
        expect_error(
            &app.get("/settlements/987654", Some(&admin)).await,
            404,
            "not_found",
        );
        app.assert_verify_clean().await;

        // Verify notices a statement that is not the sum of its lines.
        execute_sql(
            &app,
            &format!(
                "UPDATE settlements SET gross = gross + 1, net = net + 1 WHERE id = {north_id}"
            ),
        )
        .await;
        let report = stampede::app::audit::run(&*app.state.store).await.unwrap();
        let expected = format!(
            "settlement {north_id}: states gross 2011, commission 202, net 1809 over 2 lines, \
             its lines sum to 2010, 202, 1808 over 2"
        );
        assert_eq!(report.problems, [expected]);
    }
);

backend_tests!(
    a_return_after_its_statement_is_a_negative_line_on_the_next,
    |app| async move {
        let day = skip_to_seoul_evening(&app);
        let shop = shop(&app).await;
        // A North seller who signs in again the morning after (tokens live 15 minutes).
        let clerk = unique_email("clerk");
        let body = serde_json::json!({"email": clerk, "password": PASSWORD});
        let admin = app.admin_token().await;
        let path = format!("/partners/{}/sellers", shop.north);
        expect(&app.post(&path, Some(&admin), &body).await, 201);
        let (buyer, order_id) = delivered_order(&app, &[(shop.boots, 1), (shop.coats, 1)]).await;
        let sold_at = confirm(&app, &(buyer.clone(), order_id)).await;
        assert_eq!(kst_date(&sold_at[0]), day.to_string());

        // Day D is settled just after it ends (the tokens live 15 minutes, so the test
        // stays near midnight): North is paid for the boots.
        skip_to(&app, seoul_time(day.next(), 0, 1));
        let settlement = &app.state.app.settlement;
        settlement.settle_day(day).await.unwrap();
        let paid = statements(&app, shop.north).await;
        assert_eq!(paid.len(), 1);
        let paid = paid[0].clone();
        assert_eq!(
            (paid.gross, paid.commission, paid.net, paid.line_count),
            (1_005, 101, 904, 1)
        );

        // Then, on D+1, the buyer sends the boots back and North takes them.
        skip_to(&app, seoul_time(day.next(), 0, 2));
        let order = app.order(&buyer, order_id).await;
        let boots_part = array(&order, "partner_orders")
            .iter()
            .find(|p| int(p, "partner_id") == shop.north)
            .map(|p| int(p, "id"))
            .unwrap();
        let reply = app
            .post(
                &format!("/partner-orders/{boots_part}/return"),
                Some(&shop.north_seller),
                &serde_json::json!({"reason": "sent back unworn"}),
            )
            .await;
        let returned = expect(&reply, 200).clone();
        assert_eq!(str_of(&returned, "status"), "refunded");
        let returned_at = str_of(&returned, "returned_at").to_owned();

        // D+1's statement for North is the refund alone: a negative line; South has
        // nothing on D+1.
        skip_to(&app, seoul_time(day.next().next(), 4, 0));
        let made = settlement.settle_day(day.next()).await.unwrap().statements;
        assert_eq!(made.len(), 1, "{made:?}");
        let refund = &made[0];
        assert_eq!(refund.partner_id, shop.north);
        assert_eq!(refund.business_date, day.next());
        assert_eq!(
            (
                refund.gross,
                refund.commission,
                refund.net,
                refund.line_count
            ),
            (-1_005, -101, -904, 1)
        );
        // The morning after, read by North's clerk, signed in afresh.
        let clerk = str_of(&app.login(&clerk, PASSWORD).await, "access_token").to_owned();
        let read = expect(
            &app.get(&format!("/settlements/{}", refund.id), Some(&clerk))
                .await,
            200,
        )
        .clone();
        assert_eq!(totals(&read), (-1_005, -101, -904, 1));
        let line = &array(&read["lines"], "items")[0];
        assert_eq!(str_of(line, "kind"), "refund");
        assert_eq!(
            (
                int(line, "partner_order_id"),
                int(line, "order_id"),
                int(line, "subtotal"),
                int(line, "commission_rate_bps"),
                int(line, "commission"),
                int(line, "net")
            ),
            (boots_part, order_id, -1_005, 1000, -101, -904)
        );
        assert_eq!(str_of(line, "confirmed_at"), sold_at[0]);
        assert_eq!(str_of(line, "recorded_at"), returned_at);
        assert_eq!(kst_date(&returned_at), day.next().to_string());
        let (status, _, csv) = get_text(
            &app,
            &format!("/settlements/{}/lines.csv", refund.id),
            &clerk,
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(
            csv.split("\r\n").nth(1).unwrap(),
            format!(
                "refund,{boots_part},{order_id},-1005,1000,-101,-904,{},{returned_at}",
                sold_at[0]
            )
        );

        // D's statement is never edited: the same totals and its one sale line.
        let before = app.state.store.settlement(paid.id).await.unwrap().unwrap();
        assert_eq!(before, paid);
        let lines = app.state.store.all_settlement_lines(paid.id).await.unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].subtotal, 1_005);
        app.assert_verify_clean().await;
    }
);

backend_tests!(
    two_nodes_at_four_make_one_statement_per_partner_and_catch_up,
    |app| async move {
        let day = skip_to_seoul_evening(&app);
        let shop = shop(&app).await;
        let late = delivered_order(&app, &[(shop.boots, 1), (shop.coats, 1)]).await;
        let early = delivered_order(&app, &[(shop.boots, 3)]).await;
        confirm(&app, &late).await;
        skip_to(&app, seoul_time(day.next(), 0, 0));
        confirm(&app, &early).await;

        let job = SettlementJob {
            settlement: app.state.app.settlement.clone(),
        };
        assert_eq!(
            (job.name(), job.schedule().scope),
            (SETTLEMENT_LEASE, Scope::OneNode)
        );
        let store = app.state.store.clone();
        let node_a = Scheduler::new(store.clone(), app.clock.clone(), "node-a".into());
        let node_b = Scheduler::new(store, app.clock.clone(), "node-b".into());

        // 03:59 the next morning: day D is not due yet.
        skip_to(&app, seoul_time(day.next(), 3, 59));
        assert!(node_a.run_once(&job, Trigger::Timer).await.unwrap());
        assert!(statements(&app, shop.north).await.is_empty());

        // No node ran at 04:00 that day. At 04:00 a day later both nodes fire at once:
        // one holds the lease and settles D and D+1, the days it missed.
        skip_to(&app, seoul_time(day.next().next(), 4, 0));
        let (a, b) = tokio::join!(
            node_a.run_once(&job, Trigger::Timer),
            node_b.run_once(&job, Trigger::Timer)
        );
        let ran = [a.unwrap(), b.unwrap()];
        assert_eq!(ran.iter().filter(|r| **r).count(), 1, "one holder: {ran:?}");

        let north = statements(&app, shop.north).await;
        let days: Vec<String> = north.iter().map(|s| s.business_date.to_string()).collect();
        assert_eq!(days, [day.next().to_string(), day.to_string()]);
        let amounts: Vec<(i64, i64, i64)> = north
            .iter()
            .map(|s| (s.gross, s.commission, s.net))
            .collect();
        // 3 boots on one line: 3,015 at 10% is 301.5, rounded up.
        assert_eq!(amounts, [(3_015, 302, 2_713), (1_005, 101, 904)]);
        let south = statements(&app, shop.south).await;
        assert_eq!(south.len(), 1);
        assert_eq!((south[0].gross, south[0].commission), (2_009, 100));
        assert_eq!(created_events(&app).await, 3);

        // Whoever runs next, and a hand-run of a settled day, change nothing.
        let holder = if ran[0] { &node_a } else { &node_b };
        assert!(holder.run_once(&job, Trigger::Timer).await.unwrap());
        let again = app.state.app.settlement.settle_day(day).await.unwrap();
        assert!(again.statements.is_empty());
        assert_eq!(statements(&app, shop.north).await.len(), 2);
        assert_eq!(created_events(&app).await, 3);
        app.assert_verify_clean().await;
    }
);

backend_tests!(admins_see_each_job_with_its_last_run, |app| async move {
    let admin = app.admin_token().await;
    let buyer = app.buyer().await;
    // The dead-letter job does not run at start: the run below is the only one recorded.
    let config = &app.state.config;
    let job = stampede::jobs::dead_letters::DlqRetryJob {
        dead_letters: app.state.app.dead_letters.clone(),
        interval: Duration::from_secs(config.dlq_retry_interval_secs),
        max_retries: config.dlq_retry_max,
    };
    let node = Scheduler::new(app.state.store.clone(), app.clock.clone(), "node-x".into());
    let before = app.clock.now();
    assert!(node.run_once(&job, Trigger::Timer).await.unwrap());

    let jobs = expect(&app.get("/admin/jobs", Some(&admin)).await, 200).clone();
    let find = |name: &str| {
        jobs.as_array()
            .unwrap()
            .iter()
            .find(|j| j["name"] == name)
            .unwrap_or_else(|| panic!("no job {name} in {jobs}"))
            .clone()
    };
    let dlq = find("dlq-retry");
    assert_eq!(
        (
            str_of(&dlq, "schedule"),
            str_of(&dlq, "runs_on"),
            str_of(&dlq, "holder"),
            str_of(&dlq, "last_outcome")
        ),
        ("every 300 s", "one_node", "node-x", "ok")
    );
    assert!(dlq["last_error"].is_null());
    assert!(int(&dlq, "last_duration_ms") >= 0);
    let started = parse_time(&dlq, "last_started_at");
    assert!(started.unix_timestamp() * 1000 >= before.millis() / 1000 * 1000);
    let settlement = find("settlement");
    assert_eq!(
        str_of(&settlement, "schedule"),
        "daily at 04:00 Asia/Seoul (checked every 60 s)"
    );
    assert_eq!(str_of(&settlement, "runs_on"), "one_node");
    // Jobs on every node are listed, never recorded.
    let sweeper = find("sweeper");
    assert_eq!(str_of(&sweeper, "runs_on"), "every_node");
    assert!(sweeper["holder"].is_null() && sweeper["last_started_at"].is_null());

    expect_error(
        &app.get("/admin/jobs", Some(&buyer)).await,
        403,
        "forbidden",
    );
    expect_error(&app.get("/admin/jobs", None).await, 401, "unauthorized");
});

backend_tests!(
    settle_from_the_command_line_refuses_what_it_cannot_settle,
    |app| async move {
        // A day long past with nothing confirmed: settled, nothing to state.
        let (ok, out, err) = app.command(&["settle", "--date", "2020-01-01"]).await;
        assert!(ok, "{out}{err}");
        assert!(out.contains("2020-01-01: no new statements"), "{out}");
        // No date: yesterday in the settlement time zone, and again changes nothing.
        for _ in 0..2 {
            let (ok, out, err) = app.command(&["settle"]).await;
            assert!(ok, "{out}{err}");
            assert!(out.contains(": no new statements"), "{out}");
        }
        // A day that has not ended, and dates that are no dates: a reason, non-zero.
        let tomorrow = seoul().date_of(app.clock.now()).unwrap().next().next();
        let (ok, _, err) = app
            .command(&["settle", "--date", &tomorrow.to_string()])
            .await;
        assert!(!ok && err.contains("has not ended"), "{err}");
        for bad in ["2020-02-30", "yesterday", "2020-1-1"] {
            let (ok, _, err) = app.command(&["settle", "--date", bad]).await;
            assert!(!ok && err.contains("--date"), "{bad}: {err}");
        }
        assert!(statements(&app, 1).await.is_empty());
        assert_eq!(created_events(&app).await, 0);
    }
);
