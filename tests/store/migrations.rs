//! Migrations that rewrite existing rows, tested on a database that has them: the schema up
//! to the version before (`Store::migrate_to`), orders written the way that schema wrote
//! them, on a side connection, then the rest of the migrations.
//!
//! - 0009 (partial cancellation) shares each order's discount and points among its partner
//!   orders by largest remainder (`domain::shares`), marks refunded points holds as wholly
//!   refunded and books the money of refunded orders as `refunded` payment rows;
//! - 0010 (the settlement ledger) gives each confirmed partner order its `sale` entry and
//!   each statement the span of the lines it had;
//! - 0011 (a real payment gateway) renames all but the first approval of a payment key the
//!   simulator approved for several orders, so that one payment pays one order.

use crate::fixtures::{HOUR_MS, NOW, NOW_MS};
use sqlx::{Connection, PgConnection, Row, SqliteConnection};
use stampede::domain::shares::share_benefits;
use stampede::domain::Won;

/// A connection of the test's own, beside the store's pools.
enum Side {
    Pg(PgConnection),
    Sqlite(SqliteConnection),
}

impl Side {
    async fn connect(backend: &str, url: &str) -> Side {
        match backend {
            "postgres" => Side::Pg(PgConnection::connect(url).await.expect("connect")),
            _ => Side::Sqlite(SqliteConnection::connect(url).await.expect("open")),
        }
    }

    /// The one integer `sql` returns (an `INSERT … RETURNING id`, a count).
    async fn int(&mut self, sql: &str) -> i64 {
        let value = match self {
            Side::Pg(c) => sqlx::query_scalar(sql).fetch_one(c).await,
            Side::Sqlite(c) => sqlx::query_scalar(sql).fetch_one(c).await,
        };
        value.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Every row of `sql`, whose columns are all integers.
    async fn ints(&mut self, sql: &str) -> Vec<Vec<i64>> {
        fn columns<R: Row>(row: &R) -> Vec<i64>
        where
            for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            usize: sqlx::ColumnIndex<R>,
        {
            (0..row.len()).map(|i| row.get::<i64, _>(i)).collect()
        }
        let rows = match self {
            Side::Pg(c) => sqlx::query(sql)
                .fetch_all(c)
                .await
                .map(|rows| rows.iter().map(columns).collect()),
            Side::Sqlite(c) => sqlx::query(sql)
                .fetch_all(c)
                .await
                .map(|rows| rows.iter().map(columns).collect()),
        };
        rows.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    async fn close(self) {
        let _ = match self {
            Side::Pg(c) => c.close().await,
            Side::Sqlite(c) => c.close().await,
        };
    }
}

/// A partner of the shop before the migrations: its id, commission rate and one product.
#[derive(Clone, Copy)]
struct Partner {
    id: i64,
    rate_bps: i64,
    product: i64,
}

/// An order as the schema of version 8 stored it.
struct OldOrder<'a> {
    key: &'a str,
    status: &'a str,
    discount: i64,
    points: i64,
    /// Its parts in the order they are written (partner order ids ascend this way), each a
    /// partner and its subtotal (one unit of the partner's product at that price).
    parts: &'a [(Partner, i64)],
    /// When it was last updated: paid, confirmed, refunded or cancelled.
    at: i64,
}

/// What 0009 gives back of an order: its id and its parts' ids in the order written.
struct Written {
    id: i64,
    parts: Vec<i64>,
}

async fn partner(db: &mut Side, name: &str, rate_bps: i64) -> Partner {
    let id = db
        .int(&format!(
            "INSERT INTO partners (name, commission_rate_bps, created_at)
             VALUES ('{name}', {rate_bps}, {NOW_MS}) RETURNING id"
        ))
        .await;
    let product = db
        .int(&format!(
            "INSERT INTO products (partner_id, name, price, release_at, max_per_user,
                 created_at, updated_at)
             VALUES ({id}, 'goods of {name}', 1000, {NOW_MS}, NULL, {NOW_MS}, {NOW_MS})
             RETURNING id"
        ))
        .await;
    Partner {
        id,
        rate_bps,
        product,
    }
}

/// The order, its parts and items, its approved payment once paid, and its points hold,
/// as placement, payment and confirmation wrote them under the schema of version 8.
async fn old_order(db: &mut Side, user: i64, o: &OldOrder<'_>) -> Written {
    let total: i64 = o.parts.iter().map(|(_, subtotal)| subtotal).sum();
    let payable = total - o.discount - o.points;
    let paid = matches!(o.status, "paid" | "confirmed" | "refunded");
    let paid_at = if paid {
        o.at.to_string()
    } else {
        "NULL".into()
    };
    let delivered_at = if o.status == "confirmed" {
        o.at.to_string()
    } else {
        "NULL".into()
    };
    let id = db
        .int(&format!(
            "INSERT INTO orders (user_id, idempotency_key, request_hash, status, total,
                 discount, points_used, payable, pay_by, paid_at, cancel_reason, created_at,
                 updated_at, coupon_id, delivered_at)
             VALUES ({user}, '{key}', 'hash', '{status}', {total}, {discount}, {points},
                 {payable}, {pay_by}, {paid_at}, NULL, {NOW_MS}, {at}, NULL, {delivered_at})
             RETURNING id",
            key = o.key,
            status = o.status,
            discount = o.discount,
            points = o.points,
            pay_by = NOW_MS + HOUR_MS,
            at = o.at,
        ))
        .await;
    let mut parts = Vec::new();
    for (p, subtotal) in o.parts {
        // A part's status followed its order's; confirmation stamped delivery too.
        let part = db
            .int(&format!(
                "INSERT INTO partner_orders (order_id, partner_id, status, subtotal,
                     commission_rate_bps, delivered_at, confirmed_at)
                 VALUES ({id}, {partner}, '{status}', {subtotal}, {rate}, {delivered_at},
                     {delivered_at})
                 RETURNING id",
                partner = p.id,
                status = o.status,
                rate = p.rate_bps,
            ))
            .await;
        db.int(&format!(
            "INSERT INTO order_items (order_id, partner_order_id, user_id, product_id,
                 quantity, unit_price, line_total)
             VALUES ({id}, {part}, {user}, {product}, 1, {subtotal}, {subtotal}) RETURNING id",
            product = p.product,
        ))
        .await;
        parts.push(part);
    }
    if paid {
        db.int(&format!(
            "INSERT INTO payments (order_id, payment_key, amount, outcome, detail, created_at)
             VALUES ({id}, 'pay-{key}', {payable}, 'approved', NULL, {at}) RETURNING id",
            key = o.key,
            at = o.at,
        ))
        .await;
    }
    if o.points > 0 {
        let hold = match o.status {
            "pending_payment" => "held",
            "cancelled" => "released",
            "refunded" => "refunded",
            _ => "spent",
        };
        db.int(&format!(
            "INSERT INTO point_holds (order_id, user_id, amount, status, created_at, updated_at)
             VALUES ({id}, {user}, {points}, '{hold}', {NOW_MS}, {at}) RETURNING order_id",
            points = o.points,
            at = o.at,
        ))
        .await;
    }
    Written { id, parts }
}

/// A coupon campaign of `discount` won whose one coupon `order` used.
async fn used_coupon(db: &mut Side, user: i64, order: i64, discount: i64) {
    let campaign = db
        .int(&format!(
            "INSERT INTO coupon_campaigns (name, discount_type, discount_value, total_quantity,
                 issued, issue_starts_at, created_at)
             VALUES ('old {discount}', 'fixed', {discount}, 10, 1, {NOW_MS}, {NOW_MS})
             RETURNING id"
        ))
        .await;
    let coupon = db
        .int(&format!(
            "INSERT INTO user_coupons (campaign_id, user_id, status, order_id, issued_at,
                 updated_at)
             VALUES ({campaign}, {user}, 'used', {order}, {NOW_MS}, {NOW_MS}) RETURNING id"
        ))
        .await;
    db.int(&format!(
        "UPDATE orders SET coupon_id = {coupon} WHERE id = {order} RETURNING id"
    ))
    .await;
}

/// A statement of version 8 with its lines, each `(partner order, order, subtotal,
/// commission, confirmed_at)`; returns its id.
async fn old_statement(
    db: &mut Side,
    partner: Partner,
    date: &str,
    lines: &[(i64, i64, i64, i64, i64)],
) -> i64 {
    let gross: i64 = lines.iter().map(|l| l.2).sum();
    let commission: i64 = lines.iter().map(|l| l.3).sum();
    let id = db
        .int(&format!(
            "INSERT INTO settlements (partner_id, business_date, gross, commission, net,
                 line_count, created_at)
             VALUES ({partner}, '{date}', {gross}, {commission}, {net}, {count}, {NOW_MS})
             RETURNING id",
            partner = partner.id,
            net = gross - commission,
            count = lines.len(),
        ))
        .await;
    for (part, order, subtotal, commission, confirmed_at) in lines {
        db.int(&format!(
            "INSERT INTO settlement_lines (settlement_id, kind, partner_order_id, order_id,
                 subtotal, commission_rate_bps, commission, net, confirmed_at)
             VALUES ({id}, 'sale', {part}, {order}, {subtotal}, {rate}, {commission},
                 {net}, {confirmed_at}) RETURNING id",
            rate = partner.rate_bps,
            net = subtotal - commission,
        ))
        .await;
    }
    id
}

fn won(v: i64) -> Won {
    Won::new("won", v).unwrap()
}

/// `(partner_id, discount, points_used, payable)` of each of the order's parts, ascending
/// by partner id, as the store reads them now.
async fn shares_of(store: &dyn stampede::store::Store, order_id: i64) -> Vec<[i64; 4]> {
    let order = store.order(order_id).await.unwrap().expect("the order");
    let parts: Vec<[i64; 4]> = order
        .partner_orders
        .iter()
        .map(|p| [p.partner_id, p.discount, p.points_used, p.payable])
        .collect();
    let sums = parts
        .iter()
        .fold([0; 3], |s, p| [s[0] + p[1], s[1] + p[2], s[2] + p[3]]);
    assert_eq!(
        sums,
        [order.discount, order.points_used, order.payable],
        "the shares of order {order_id} do not add up to it"
    );
    parts
}

/// What 0009 must give: `domain::shares` over the subtotals in partner id order (the order
/// placement lists parts in), checked against the figures worked out by hand.
fn expected(partners: &[i64], subtotals: &[i64], discount: i64, points: i64) -> Vec<[i64; 4]> {
    let weights: Vec<Won> = subtotals.iter().map(|s| won(*s)).collect();
    share_benefits(&weights, won(discount), won(points))
        .iter()
        .zip(partners)
        .map(|(s, p)| [*p, s.discount.get(), s.points.get(), s.payable.get()])
        .collect()
}

store_tests!(
    backfills_run_on_existing_orders,
    unmigrated,
    |store, url| async move {
        store.migrate_to(NOW, 8).await.expect("migrations 1..=8");
        let mut db = Side::connect(store.backend(), &url).await;
        let versions = "SELECT MAX(version) FROM schema_migrations";
        assert_eq!(db.int(versions).await, 8);

        let p1 = partner(&mut db, "one", 1_000).await;
        let p2 = partner(&mut db, "two", 1_250).await;
        let p3 = partner(&mut db, "three", 333).await;
        let user = db
            .int(&format!(
                "INSERT INTO users (email, password_hash, role, partner_id, created_at)
                 VALUES ('old@example.com', 'hash', 'buyer', NULL, {NOW_MS}) RETURNING id"
            ))
            .await;
        db.int(&format!(
            "INSERT INTO point_accounts (user_id, balance, held, updated_at)
             VALUES ({user}, 0, 0, {NOW_MS}) RETURNING user_id"
        ))
        .await;
        let (at_a, at_b) = (NOW_MS + HOUR_MS, NOW_MS + 2 * HOUR_MS);
        // Three equal parts written highest partner first: the discount's remainders tie,
        // and the leftover won goes to the lowest partner id, not the first row.
        let a = OldOrder {
            key: "a",
            status: "confirmed",
            discount: 100,
            points: 200,
            parts: &[(p3, 1_004), (p2, 1_004), (p1, 1_004)],
            at: at_a,
        };
        let a = old_order(&mut db, user, &a).await;
        used_coupon(&mut db, user, a.id, 100).await;
        // 10 over 3,000:2,000:1,000 is 5, 3.33, 1.67: the largest remainder wins the won.
        let b = OldOrder {
            key: "b",
            status: "confirmed",
            discount: 10,
            points: 7,
            parts: &[(p1, 3_000), (p2, 2_000), (p3, 1_000)],
            at: at_b,
        };
        let b = old_order(&mut db, user, &b).await;
        let at_c = NOW_MS + 3 * HOUR_MS;
        let c = OldOrder {
            key: "c",
            status: "refunded",
            discount: 0,
            points: 301,
            parts: &[(p1, 1_500), (p2, 500)],
            at: at_c,
        };
        let c = old_order(&mut db, user, &c).await;
        let d = OldOrder {
            key: "d",
            status: "paid",
            discount: 77,
            points: 50,
            parts: &[(p2, 777)],
            at: at_c,
        };
        let d = old_order(&mut db, user, &d).await;
        let e = OldOrder {
            key: "e",
            status: "cancelled",
            discount: 0,
            points: 20,
            parts: &[(p3, 500)],
            at: at_c,
        };
        let e = old_order(&mut db, user, &e).await;
        // Partner one's statement of the day A and B were confirmed (their lines as 0008
        // wrote them), and an empty one of partner two.
        let lines = [
            (a.parts[2], a.id, 1_004, 100, at_a),
            (b.parts[0], b.id, 3_000, 300, at_b),
        ];
        let full = old_statement(&mut db, p1, "2023-11-15", &lines).await;
        let empty = old_statement(&mut db, p2, "2023-11-15", &[]).await;
        // The simulator approved any key, so one key may be approved for two orders.
        let twice = db
            .int(&format!(
                "INSERT INTO payments (order_id, payment_key, amount, outcome, detail, created_at)
                 VALUES ({}, 'pay-a', 1, 'approved', NULL, {at_b}) RETURNING id",
                b.id
            ))
            .await;
        db.close().await;

        store.migrate(NOW).await.expect("migrations 9 and on");
        let mut db = Side::connect(store.backend(), &url).await;
        assert_eq!(db.int(versions).await, 14);

        // 0011: one payment, one order — the first approval keeps its key, the later one
        // is renamed so that the unique index holds.
        let approved_a =
            "SELECT COUNT(*) FROM payments WHERE payment_key = 'pay-a' AND outcome = 'approved'";
        assert_eq!(db.int(approved_a).await, 1);
        let renamed = format!(
            "SELECT COUNT(*) FROM payments WHERE id = {twice} AND payment_key = 'pay-a#{twice}'"
        );
        assert_eq!(db.int(&renamed).await, 1);

        // 0009: each order's shares, by largest remainder, adding up to the order's.
        let a_shares = [
            [p1.id, 34, 66, 904],
            [p2.id, 33, 67, 904],
            [p3.id, 33, 67, 904],
        ];
        let ids = [p1.id, p2.id, p3.id];
        assert_eq!(expected(&ids, &[1_004; 3], 100, 200), a_shares);
        assert_eq!(shares_of(&*store, a.id).await, a_shares);
        let b_shares = [
            [p1.id, 5, 4, 2_991],
            [p2.id, 3, 2, 1_995],
            [p3.id, 2, 1, 997],
        ];
        assert_eq!(expected(&ids, &[3_000, 2_000, 1_000], 10, 7), b_shares);
        assert_eq!(shares_of(&*store, b.id).await, b_shares);
        let c_shares = [[p1.id, 0, 226, 1_274], [p2.id, 0, 75, 425]];
        assert_eq!(expected(&ids[..2], &[1_500, 500], 0, 301), c_shares);
        assert_eq!(shares_of(&*store, c.id).await, c_shares);
        assert_eq!(shares_of(&*store, d.id).await, [[p2.id, 77, 50, 650]]);
        assert_eq!(shares_of(&*store, e.id).await, [[p3.id, 0, 20, 480]]);

        // A refunded order's hold gave back all of it; no other hold gave back anything.
        let holds = db
            .ints("SELECT order_id, refunded FROM point_holds ORDER BY order_id")
            .await;
        let refunded = [[a.id, 0], [b.id, 0], [c.id, 301], [d.id, 0], [e.id, 0]];
        assert_eq!(holds, refunded.map(Vec::from));
        // The refunded order's money is booked back under its payment's key, when it was
        // refunded; nothing else is.
        let refunds = db
            .ints(
                "SELECT order_id, amount, created_at FROM payments WHERE outcome = 'refunded'
                 ORDER BY id",
            )
            .await;
        assert_eq!(refunds, [vec![c.id, 1_699, at_c]]);
        let keyed = format!(
            "SELECT COUNT(*) FROM payments WHERE order_id = {} AND outcome = 'refunded'
             AND payment_key = 'pay-c' AND detail = 'refund of the order (backfilled)'",
            c.id
        );
        assert_eq!(db.int(&keyed).await, 1);

        // 0010: one sale entry per confirmed part, commission rounded half up (partner
        // two's 1,004 × 12.5% = 125.5 → 126), on the day it was confirmed.
        let entries = db
            .ints(
                "SELECT partner_order_id, order_id, partner_id, subtotal, commission_rate_bps,
                     commission, net, confirmed_at, recorded_at
                 FROM settlement_entries WHERE kind = 'sale' ORDER BY partner_order_id",
            )
            .await;
        let sale = |part: i64, order: i64, p: Partner, subtotal: i64, commission: i64, at| {
            assert_eq!(commission, (subtotal * p.rate_bps + 5_000) / 10_000);
            let net = subtotal - commission;
            vec![
                part, order, p.id, subtotal, p.rate_bps, commission, net, at, at,
            ]
        };
        let mut sales = vec![
            sale(a.parts[0], a.id, p3, 1_004, 33, at_a),
            sale(a.parts[1], a.id, p2, 1_004, 126, at_a),
            sale(a.parts[2], a.id, p1, 1_004, 100, at_a),
            sale(b.parts[0], b.id, p1, 3_000, 300, at_b),
            sale(b.parts[1], b.id, p2, 2_000, 250, at_b),
            sale(b.parts[2], b.id, p3, 1_000, 33, at_b),
        ];
        sales.sort();
        assert_eq!(entries, sales);
        let all_entries = db.int("SELECT COUNT(*) FROM settlement_entries").await;
        assert_eq!(all_entries, 6, "only confirmed parts are sold, once each");

        // Statements span the lines they had: [first, last + 1); one without lines an
        // empty instant at the epoch.
        let periods = db
            .ints(
                "SELECT id, period_from, period_to, gross, commission, line_count
                 FROM settlements ORDER BY id",
            )
            .await;
        assert_eq!(
            periods,
            [
                vec![full, at_a, at_b + 1, 4_004, 400, 2],
                vec![empty, 0, 1, 0, 0, 0]
            ]
        );
        db.close().await;
    }
);
