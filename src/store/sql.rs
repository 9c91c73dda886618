//! SQL that both dialects run verbatim: `$n` placeholders (sqlx binds SQLite's `$n` by
//! its number, so a statement may use them in any order), `RETURNING`, `ON CONFLICT … DO
//! …`, `CAST`. Each backend keeps what differs in its own folder: PostgreSQL's row locks
//! (`FOR UPDATE`), array parameters (`ANY`, `UNNEST`) and advisory locks; SQLite's
//! `json_each` lists and its single-statement batch inserts. Columns are read by name
//! (`store::rows`), so a statement's column order is free.
//!
//! Statements are grouped by area, in the order of the area files.

use super::outbox::Backlog;

// ---------------------------------------------------------------------------------------
// Accounts
// ---------------------------------------------------------------------------------------

/// The unique constraint on `users.email` (PostgreSQL's default name; SQLite reports none).
pub(crate) const USERS_EMAIL_KEY: &str = "users_email_key";

macro_rules! user_columns {
    () => {
        "id, email, password_hash, role, partner_id, created_at"
    };
}

pub(crate) const INSERT_USER: &str = concat!(
    "INSERT INTO users (email, password_hash, role, partner_id, created_at)
     VALUES ($1, $2, $3, $4, $5) RETURNING ",
    user_columns!()
);

pub(crate) const USER_BY_EMAIL: &str =
    concat!("SELECT ", user_columns!(), " FROM users WHERE email = $1");

pub(crate) const USER_BY_ID: &str =
    concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1");

pub(crate) const INSERT_SESSION: &str =
    "INSERT INTO sessions (user_id, refresh_hash, refresh_expires_at, created_at)
     VALUES ($1, $2, $3, $4) RETURNING id";

/// Rotates only a current, unrevoked, unexpired hash (`$1` old, `$2` new).
pub(crate) const ROTATE_REFRESH: &str =
    "UPDATE sessions SET previous_hash = refresh_hash, refresh_hash = $2,
         refresh_expires_at = $3
     WHERE refresh_hash = $1 AND revoked_at IS NULL AND refresh_expires_at > $4
     RETURNING id, user_id";

/// Revokes the live session whose previous hash is `$1` (a replayed refresh token).
pub(crate) const REVOKE_REUSED_SESSION: &str = "UPDATE sessions SET revoked_at = $2
     WHERE previous_hash = $1 AND revoked_at IS NULL
     RETURNING id, user_id";

pub(crate) const REVOKE_SESSION: &str = "UPDATE sessions SET revoked_at = $3
     WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL";

pub(crate) const DENY_TOKEN: &str =
    "INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING";

pub(crate) const REVOKED_TOKENS: &str = "SELECT jti FROM revoked_tokens WHERE expires_at > $1";

/// Read once at start; a scan of `sessions`, which is bounded by the logins kept.
pub(crate) const REVOKED_SESSIONS: &str =
    "SELECT id, revoked_at FROM sessions WHERE revoked_at > $1";

pub(crate) const INSERT_SETTING: &str =
    "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING";

pub(crate) const SETTING: &str = "SELECT value FROM settings WHERE key = $1";

// ---------------------------------------------------------------------------------------
// Catalogue and stock
// ---------------------------------------------------------------------------------------

pub(crate) const INSERT_PARTNER: &str =
    "INSERT INTO partners (name, commission_rate_bps, created_at) VALUES ($1, $2, $3)
     RETURNING id, name, commission_rate_bps, created_at";

pub(crate) const PARTNER_BY_ID: &str =
    "SELECT id, name, commission_rate_bps, created_at FROM partners WHERE id = $1";

pub(crate) const INSERT_PRODUCT: &str =
    "INSERT INTO products (partner_id, name, price, release_at, max_per_user, created_at,
         updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id";

/// A product with its stock account; `p` is products, `s` is stock.
macro_rules! product_select {
    () => {
        "SELECT p.id, p.partner_id, p.name, p.price, p.release_at, p.max_per_user,
             s.on_hand, s.held, p.created_at, p.updated_at
         FROM products p JOIN stock s ON s.product_id = p.id"
    };
}

pub(crate) const PRODUCT_BY_ID: &str = concat!(product_select!(), " WHERE p.id = $1");

pub(crate) const PRODUCTS_PAGE: &str = concat!(
    product_select!(),
    " ORDER BY p.release_at, p.id LIMIT $1 OFFSET $2"
);

pub(crate) const COUNT_PRODUCTS: &str = "SELECT COUNT(*) FROM products";

/// COALESCE keeps a column when its patch field is absent; `max_per_user` is tri-state
/// (leave, set, clear), hence the flag `$5` beside its value `$6`.
pub(crate) const UPDATE_PRODUCT: &str =
    "UPDATE products SET name = COALESCE($2, name), price = COALESCE($3, price),
         release_at = COALESCE($4, release_at),
         max_per_user = CASE WHEN $5 THEN $6 ELSE max_per_user END,
         updated_at = $7
     WHERE id = $1";

/// The adjustment's guard is its own WHERE clause; `held >= 0`, so it also keeps `on_hand`
/// from going negative.
pub(crate) const ADJUST_STOCK: &str = "UPDATE stock SET on_hand = on_hand + $2
     WHERE product_id = $1 AND on_hand + $2 >= held RETURNING on_hand, held";

pub(crate) const MOVEMENTS_PAGE: &str =
    "SELECT id, product_id, kind, quantity, order_id, memo, on_hand_after, held_after,
         created_at
     FROM stock_movements WHERE product_id = $1 ORDER BY id DESC LIMIT $2 OFFSET $3";

pub(crate) const COUNT_MOVEMENTS: &str =
    "SELECT COUNT(*) FROM stock_movements WHERE product_id = $1";

// ---------------------------------------------------------------------------------------
// Orders
// ---------------------------------------------------------------------------------------

/// The columns of `orders` that `rows::order_from_row` reads; each backend selects orders
/// by id its own way (a list parameter).
macro_rules! order_columns {
    () => {
        "id, user_id, status, total, coupon_id, discount, points_used, payable, pay_by,
         paid_at, delivered_at, cancel_reason, created_at, updated_at"
    };
}
pub(crate) use order_columns;

/// Partner orders (alias `po`) with their items (alias `oi`), one row per item, as
/// `rows::partner_order_list_from_rows` reads them; each caller adds its filter and an
/// order that keeps a partner order's rows together. Items are joined on their order too,
/// so the lookup uses `order_items`' `(order_id, product_id)` key.
macro_rules! partner_order_rows {
    () => {
        "SELECT po.order_id, po.id, po.partner_id, po.status, po.subtotal, po.discount,
             po.points_used, po.payable, po.cancel_reason, po.cancelled_at, po.carrier,
             po.tracking_number, po.prepared_at, po.shipped_at, po.delivered_at,
             po.confirmed_at, po.returned_at, po.return_reason, oi.product_id, oi.quantity,
             oi.unit_price, oi.line_total
         FROM partner_orders po
         JOIN order_items oi ON oi.order_id = po.order_id AND oi.partner_order_id = po.id"
    };
}
pub(crate) use partner_order_rows;

pub(crate) const INSERT_PAYMENT: &str =
    "INSERT INTO payments (order_id, payment_key, amount, outcome, detail, created_at)
     VALUES ($1, $2, $3, $4, $5, $6)";

/// The order's transition reaches its partner orders, except those cancelled on their own
/// (they stay cancelled whatever becomes of the rest); confirming stamps `confirmed_at`
/// (`$3` is now).
pub(crate) const SET_PARTNER_ORDERS_STATUS: &str = "UPDATE partner_orders SET status = $2,
         confirmed_at = CASE WHEN $2 = 'confirmed' THEN $3 ELSE confirmed_at END
     WHERE order_id = $1 AND status <> 'cancelled'";

/// Parts of order `$1` that have left with a carrier: the buyer can no longer cancel.
pub(crate) const SHIPPED_PARTNER_ORDERS: &str = "SELECT COUNT(*) FROM partner_orders
     WHERE order_id = $1 AND status IN ('shipped', 'delivered')";

/// Parts of order `$1` not cancelled on their own.
pub(crate) const LIVE_PARTNER_ORDERS: &str =
    "SELECT COUNT(*) FROM partner_orders WHERE order_id = $1 AND status <> 'cancelled'";

/// Books money given back for order `$1` (`$2` won) as a `refunded` payment row under the
/// approved payment's key.
pub(crate) const INSERT_REFUND: &str =
    "INSERT INTO payments (order_id, payment_key, amount, outcome, detail, created_at)
     SELECT $1, COALESCE((SELECT payment_key FROM payments
                          WHERE order_id = $1 AND outcome = 'approved' ORDER BY id LIMIT 1), ''),
         $2, 'refunded', $3, $4";

/// Parts of order `$1` not yet delivered nor cancelled: the purchase cannot be confirmed
/// while there is one.
pub(crate) const UNSETTLED_PARTNER_ORDERS: &str = "SELECT COUNT(*) FROM partner_orders
     WHERE order_id = $1 AND status NOT IN ('delivered', 'cancelled')";

/// Paid orders with nothing left to deliver, by their last delivery.
pub(crate) const DUE_CONFIRMATIONS: &str =
    "SELECT id FROM orders WHERE status = 'paid' AND delivered_at <= $1
     ORDER BY delivered_at, id LIMIT $2";

// ---------------------------------------------------------------------------------------
// Fulfilment
// ---------------------------------------------------------------------------------------

/// A seller's step `$3 → $4` on partner order `$1` at `$2`, only from `$3`: stamps the
/// step's time and, when shipping, the shipment (`$5`, `$6`; NULL for the other steps).
pub(crate) const ADVANCE_PARTNER_ORDER: &str = "UPDATE partner_orders SET status = $4,
         prepared_at = CASE WHEN $4 = 'preparing' THEN $2 ELSE prepared_at END,
         shipped_at = CASE WHEN $4 = 'shipped' THEN $2 ELSE shipped_at END,
         delivered_at = CASE WHEN $4 = 'delivered' THEN $2 ELSE delivered_at END,
         carrier = COALESCE($5, carrier), tracking_number = COALESCE($6, tracking_number)
     WHERE id = $1 AND status = $3
     RETURNING order_id";

/// Once none of paid order `$1`'s parts is left to deliver, the order records its last
/// delivery: the automatic confirmation counts from there. Nothing while one is left.
pub(crate) const MARK_ORDER_DELIVERED: &str = "UPDATE orders SET delivered_at =
         (SELECT MAX(delivered_at) FROM partner_orders WHERE order_id = $1)
     WHERE id = $1 AND status = 'paid' AND NOT EXISTS (
         SELECT 1 FROM partner_orders
         WHERE order_id = $1 AND status NOT IN ('delivered', 'cancelled'))";

/// A seller's cancellation of partner order `$1` before it ships (`paid` or `preparing`);
/// returns its order.
pub(crate) const CANCEL_PARTNER_ORDER: &str = "UPDATE partner_orders SET status = 'cancelled',
         cancel_reason = $2, cancelled_at = $3
     WHERE id = $1 AND status IN ('paid', 'preparing')
     RETURNING order_id";

/// A seller's return of partner order `$1` after its purchase was confirmed (`confirmed →
/// refunded`, reason `$2`, at `$3`); returns its order. It keeps `confirmed_at`: it was
/// bought, then given back.
pub(crate) const RETURN_PARTNER_ORDER: &str = "UPDATE partner_orders SET status = 'refunded',
         return_reason = $2, returned_at = $3
     WHERE id = $1 AND status = 'confirmed'
     RETURNING order_id";

/// The `refund` settlement entry of returned partner order `$1`, recorded at `$2`: its
/// `sale` entry with the amounts negated, so the statement of the day it is recorded on
/// pays the seller that much less. Inserts nothing when there is no sale entry (the caller
/// requires one row).
pub(crate) const INSERT_REFUND_ENTRY: &str = "INSERT INTO settlement_entries (partner_id,
         partner_order_id, order_id, kind, subtotal, commission_rate_bps, commission, net,
         confirmed_at, recorded_at)
     SELECT partner_id, partner_order_id, order_id, 'refund', -subtotal, commission_rate_bps,
         -commission, -net, confirmed_at, $2
     FROM settlement_entries WHERE partner_order_id = $1 AND kind = 'sale'";

pub(crate) const ORDER_OWNER: &str = "SELECT user_id FROM orders WHERE id = $1";

pub(crate) const PARTNER_ORDER_BY_ID: &str = concat!(
    partner_order_rows!(),
    " WHERE po.id = $1 ORDER BY oi.product_id"
);

// Two statement texts each for the listing, with and without a status, so that each runs
// on its own index ((partner_id, id) or (partner_id, status, id)) under a cached plan.

pub(crate) const PARTNER_ORDER_IDS: &str = "SELECT id FROM partner_orders
     WHERE partner_id = $1 ORDER BY id DESC LIMIT $2 OFFSET $3";

pub(crate) const COUNT_PARTNER_ORDERS: &str =
    "SELECT COUNT(*) FROM partner_orders WHERE partner_id = $1";

pub(crate) const PARTNER_ORDER_IDS_IN_STATUS: &str = "SELECT id FROM partner_orders
     WHERE partner_id = $1 AND status = $4 ORDER BY id DESC LIMIT $2 OFFSET $3";

pub(crate) const COUNT_PARTNER_ORDERS_IN_STATUS: &str =
    "SELECT COUNT(*) FROM partner_orders WHERE partner_id = $1 AND status = $2";

/// Per order, for `verify`: units of its parts cancelled on their own, the sums of its
/// parts' discount, points and payable shares, how many parts' payable is not their
/// subtotal less their shares, the payable of its parts cancelled on their own and of
/// those returned after confirmation, and the money booked back to the buyer (`refunded`
/// payment rows).
pub(crate) const ORDER_SHARES_AUDIT: &str = "SELECT o.id,
         CAST(COALESCE((SELECT SUM(oi.quantity) FROM order_items oi
             JOIN partner_orders po ON po.id = oi.partner_order_id
             WHERE oi.order_id = o.id AND po.cancelled_at IS NOT NULL), 0) AS BIGINT),
         CAST(COALESCE((SELECT SUM(discount) FROM partner_orders WHERE order_id = o.id), 0)
             AS BIGINT),
         CAST(COALESCE((SELECT SUM(points_used) FROM partner_orders WHERE order_id = o.id), 0)
             AS BIGINT),
         CAST(COALESCE((SELECT SUM(payable) FROM partner_orders WHERE order_id = o.id), 0)
             AS BIGINT),
         (SELECT COUNT(*) FROM partner_orders WHERE order_id = o.id
             AND payable <> subtotal - discount - points_used),
         CAST(COALESCE((SELECT SUM(payable) FROM partner_orders WHERE order_id = o.id
             AND cancelled_at IS NOT NULL), 0) AS BIGINT),
         CAST(COALESCE((SELECT SUM(payable) FROM partner_orders WHERE order_id = o.id
             AND returned_at IS NOT NULL), 0) AS BIGINT),
         CAST(COALESCE((SELECT SUM(amount) FROM payments WHERE order_id = o.id
             AND outcome = 'refunded'), 0) AS BIGINT)
     FROM orders o ORDER BY o.id";

/// Every (order status, partner order status) that occurs, with a count and one id.
pub(crate) const PARTNER_ORDER_STATES: &str =
    "SELECT o.status AS order_status, po.status, COUNT(*) AS partner_orders,
         MIN(po.id) AS first_id
     FROM partner_orders po JOIN orders o ON o.id = po.order_id
     GROUP BY o.status, po.status ORDER BY MIN(po.id)";

/// Parts returned after confirmation without exactly one `refund` entry, or whose one does
/// not mirror their `sale` entry (the same partner, order, rate and confirmation, amounts
/// negated) or was not recorded when they were returned.
pub(crate) const RETURNS_WITHOUT_REFUND_ENTRY: &str = "SELECT po.id FROM partner_orders po
     WHERE po.returned_at IS NOT NULL AND (
         (SELECT COUNT(*) FROM settlement_entries r
          WHERE r.partner_order_id = po.id AND r.kind = 'refund') <> 1
         OR (SELECT COUNT(*) FROM settlement_entries r
             JOIN settlement_entries s ON s.partner_order_id = r.partner_order_id
                 AND s.kind = 'sale'
             WHERE r.partner_order_id = po.id AND r.kind = 'refund'
                 AND r.partner_id = s.partner_id AND r.order_id = s.order_id
                 AND r.subtotal = -s.subtotal AND r.commission = -s.commission
                 AND r.net = -s.net AND r.commission_rate_bps = s.commission_rate_bps
                 AND r.confirmed_at = s.confirmed_at AND r.recorded_at = po.returned_at) <> 1)
     ORDER BY po.id";

/// Partner orders with a `refund` entry that were never returned (or do not exist).
pub(crate) const REFUND_ENTRIES_WITHOUT_RETURN: &str = "SELECT r.partner_order_id
     FROM settlement_entries r LEFT JOIN partner_orders po ON po.id = r.partner_order_id
     WHERE r.kind = 'refund' AND po.returned_at IS NULL
     ORDER BY r.partner_order_id";

/// Paid orders whose `delivered_at` is set while a part is left to deliver, or missing
/// although none is and one was delivered (`MARK_ORDER_DELIVERED`'s rule).
pub(crate) const DELIVERY_MISMATCHES: &str = "SELECT o.id FROM orders o
     WHERE o.status = 'paid' AND (o.delivered_at IS NOT NULL) <> (
         NOT EXISTS (SELECT 1 FROM partner_orders po
                     WHERE po.order_id = o.id AND po.status NOT IN ('delivered', 'cancelled'))
         AND EXISTS (SELECT 1 FROM partner_orders po
                     WHERE po.order_id = o.id AND po.status = 'delivered'))
     ORDER BY o.id";

// ---------------------------------------------------------------------------------------
// Outbox
// ---------------------------------------------------------------------------------------

pub(crate) const LAST_EVENT_ID: &str = "SELECT COALESCE(MAX(id), 0) FROM outbox";

pub(crate) const EVENTS_AFTER: &str =
    "SELECT id, aggregate_type, aggregate_id, event_type, payload, created_at
     FROM outbox WHERE id > $1 ORDER BY id LIMIT $2";

// ---------------------------------------------------------------------------------------
// Waitlists
// ---------------------------------------------------------------------------------------

macro_rules! entry_columns {
    () => {
        "id, product_id, user_id, quantity, status, order_id, created_at, updated_at"
    };
}

/// The entry's columns (table alias `e`) and, for a waiting entry, its place in line.
macro_rules! entry_with_position {
    () => {
        "SELECT e.id, e.product_id, e.user_id, e.quantity, e.status, e.order_id,
             e.created_at, e.updated_at,
             CASE WHEN e.status = 'waiting' THEN
                 (SELECT COUNT(*) FROM waitlist_entries w
                  WHERE w.product_id = e.product_id AND w.status = 'waiting' AND w.id <= e.id)
             END AS position
         FROM waitlist_entries e"
    };
}

pub(crate) const ENTRY_BY_ID: &str = concat!(entry_with_position!(), " WHERE e.id = $1");

pub(crate) const USER_WAITLIST_PAGE: &str = concat!(
    entry_with_position!(),
    " WHERE e.user_id = $1 ORDER BY e.id DESC LIMIT $2 OFFSET $3"
);

pub(crate) const COUNT_USER_WAITLIST: &str =
    "SELECT COUNT(*) FROM waitlist_entries WHERE user_id = $1";

/// `from → to` (`$2 → $3`); `order_id` is set when given, else kept.
pub(crate) const CHANGE_ENTRY_STATUS: &str = concat!(
    "UPDATE waitlist_entries SET status = $3, order_id = COALESCE($4, order_id),
         updated_at = $5
     WHERE id = $1 AND status = $2 RETURNING ",
    entry_columns!()
);

pub(crate) const WAITING_ENTRY_OF: &str = "SELECT id FROM waitlist_entries
     WHERE product_id = $1 AND user_id = $2 AND status = 'waiting'";

pub(crate) const NEXT_WAITING: &str = concat!(
    "SELECT ",
    entry_columns!(),
    " FROM waitlist_entries
     WHERE product_id = $1 AND status = 'waiting' ORDER BY id LIMIT 1"
);

pub(crate) const PRODUCTS_TO_OFFER: &str = "SELECT DISTINCT e.product_id FROM waitlist_entries e
     JOIN stock s ON s.product_id = e.product_id
     JOIN products p ON p.id = e.product_id
     WHERE e.status = 'waiting' AND s.on_hand > s.held AND p.release_at <= $2
     ORDER BY e.product_id LIMIT $1";

/// Offered entries whose order has left `pending_payment`, with that order's status.
pub(crate) const OFFERS_TO_SETTLE: &str =
    "SELECT e.id, o.status FROM waitlist_entries e JOIN orders o ON o.id = e.order_id
     WHERE e.status = 'offered' AND o.status <> 'pending_payment'
     ORDER BY e.id LIMIT $1";

/// Entries that reference an order (or must: offered, fulfilled) which is not that buyer's
/// order of exactly that product and quantity.
pub(crate) const WAITLIST_AUDIT: &str = "SELECT e.id, e.user_id, e.status, e.order_id
     FROM waitlist_entries e
     LEFT JOIN orders o ON o.id = e.order_id AND o.user_id = e.user_id
     LEFT JOIN order_items oi ON oi.order_id = o.id AND oi.product_id = e.product_id
         AND oi.quantity = e.quantity
     WHERE (e.order_id IS NOT NULL OR e.status IN ('offered', 'fulfilled')) AND oi.id IS NULL
     ORDER BY e.id";

// ---------------------------------------------------------------------------------------
// Coupons
// ---------------------------------------------------------------------------------------

macro_rules! campaign_columns {
    () => {
        "id, name, discount_type, discount_value, max_discount, min_order_amount,
         total_quantity, issued, issue_starts_at, issue_ends_at, valid_days, created_at"
    };
}

/// A user coupon (alias `u`) with its campaign's name and terms (alias `c`).
macro_rules! select_coupon {
    () => {
        "SELECT u.id, u.campaign_id, u.user_id, u.status, u.order_id,
             u.issued_at, u.expires_at, c.name, c.discount_type, c.discount_value,
             c.max_discount, c.min_order_amount
         FROM user_coupons u JOIN coupon_campaigns c ON c.id = u.campaign_id"
    };
}

/// For backends that add their own filter (a list of ids, a lock).
pub(crate) use select_coupon;

pub(crate) const INSERT_CAMPAIGN: &str = concat!(
    "INSERT INTO coupon_campaigns
         (name, discount_type, discount_value, max_discount, min_order_amount,
          total_quantity, issued, issue_starts_at, issue_ends_at, valid_days, created_at)
     VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8, $9, $10)
     RETURNING ",
    campaign_columns!()
);

pub(crate) const CAMPAIGN_BY_ID: &str = concat!(
    "SELECT ",
    campaign_columns!(),
    " FROM coupon_campaigns WHERE id = $1"
);

/// The claim's guard: counts only inside the window and below the total.
pub(crate) const COUNT_CLAIM: &str = "UPDATE coupon_campaigns SET issued = issued + 1
     WHERE id = $1 AND issued < total_quantity AND issue_starts_at <= $2
       AND (issue_ends_at IS NULL OR issue_ends_at > $2)
     RETURNING issued, total_quantity";

/// PostgreSQL's batch claim: the campaign's count and row lock, when it is in its window.
pub(crate) const LOCK_CLAIMABLE_CAMPAIGN: &str = "SELECT issued, total_quantity
     FROM coupon_campaigns
     WHERE id = $1 AND issue_starts_at <= $2 AND (issue_ends_at IS NULL OR issue_ends_at > $2)
     FOR UPDATE";

/// Which of the buyers `$2` already hold a coupon of campaign `$1`.
pub(crate) const HOLDERS_AMONG: &str =
    "SELECT user_id FROM user_coupons WHERE campaign_id = $1 AND user_id = ANY($2)";

/// A coupon of campaign `$1` for each buyer of `$2`, expiring at `$4` (by position): `(id,
/// user_id)` of each inserted; none for a buyer who holds one.
pub(crate) const INSERT_USER_COUPONS: &str = "INSERT INTO user_coupons
         (campaign_id, user_id, status, issued_at, expires_at, updated_at)
     SELECT $1, t.user_id, 'issued', $3, t.expires_at, $3
     FROM UNNEST($2::bigint[], $4::bigint[]) AS t(user_id, expires_at)
     ON CONFLICT (campaign_id, user_id) DO NOTHING
     RETURNING id, user_id";

/// Counts `$2` claims inserted under the row lock of `LOCK_CLAIMABLE_CAMPAIGN` (the CHECK
/// `issued <= total_quantity` stays the last word).
pub(crate) const COUNT_CLAIMS: &str =
    "UPDATE coupon_campaigns SET issued = issued + $2 WHERE id = $1";

/// Takes back a count of `COUNT_CLAIM` whose user coupon was not inserted, inside the same
/// transaction (a claim of a batch cannot roll back alone).
pub(crate) const UNCOUNT_CLAIM: &str =
    "UPDATE coupon_campaigns SET issued = issued - 1 WHERE id = $1";

/// Nothing when the buyer already holds one (`UNIQUE (campaign_id, user_id)`).
pub(crate) const INSERT_USER_COUPON: &str = "INSERT INTO user_coupons
         (campaign_id, user_id, status, issued_at, expires_at, updated_at)
     VALUES ($1, $2, 'issued', $3, $4, $3)
     ON CONFLICT (campaign_id, user_id) DO NOTHING
     RETURNING id";

pub(crate) const USER_COUPON_BY_ID: &str = concat!(select_coupon!(), " WHERE u.id = $1");

pub(crate) const USER_COUPONS_BY_IDS: &str =
    concat!(select_coupon!(), " WHERE u.id = ANY($1) ORDER BY u.id");

pub(crate) const USER_COUPONS_PAGE: &str = concat!(
    select_coupon!(),
    " WHERE u.user_id = $1 ORDER BY u.id DESC LIMIT $2 OFFSET $3"
);

pub(crate) const COUNT_USER_COUPONS: &str = "SELECT COUNT(*) FROM user_coupons WHERE user_id = $1";

pub(crate) const COUPON_HOLDERS: &str =
    "SELECT user_id FROM user_coupons WHERE campaign_id = $1 ORDER BY user_id";

/// One statement, so the count and the rows come from one snapshot.
pub(crate) const COUPON_AUDIT: &str = "SELECT c.id, c.total_quantity, c.issued,
         (SELECT COUNT(*) FROM user_coupons u WHERE u.campaign_id = c.id),
         (SELECT COUNT(*) - COUNT(DISTINCT u.user_id) FROM user_coupons u
          WHERE u.campaign_id = c.id)
     FROM coupon_campaigns c ORDER BY c.id";

/// `$2 → $3` on a user coupon, naming order `$4` (or none once issued again); `$5` is the
/// owner when holding for a new order, the order when the order moves on.
macro_rules! move_coupon {
    ($filter:literal) => {
        concat!(
            "UPDATE user_coupons SET status = $3, order_id = $4, updated_at = $6
             WHERE ",
            $filter,
            " AND status = $2
             RETURNING campaign_id, user_id"
        )
    };
}

pub(crate) const HOLD_COUPON: &str = move_coupon!("id = $1 AND user_id = $5");

/// SQLite, placement: `issued → held` on each `[coupon id, owner, order id]` of the JSON
/// array `$1`, naming the order; `(id, campaign_id, user_id, order_id)` of each moved.
pub(crate) const HOLD_COUPONS: &str = "UPDATE user_coupons SET status = 'held',
         order_id = h.order_id, updated_at = $2
     FROM (SELECT value ->> 0 AS id, value ->> 1 AS user_id, value ->> 2 AS order_id
           FROM json_each($1)) AS h
     WHERE user_coupons.id = h.id AND user_coupons.user_id = h.user_id
       AND user_coupons.status = 'issued'
     RETURNING user_coupons.id, user_coupons.campaign_id, user_coupons.user_id,
         user_coupons.order_id";

pub(crate) const STEP_ORDER_COUPON: &str = move_coupon!("id = $1 AND order_id = $5");

// ---------------------------------------------------------------------------------------
// Points
// ---------------------------------------------------------------------------------------

pub(crate) const APPEND_POINTS_LEDGER: &str = "INSERT INTO point_ledger
         (user_id, kind, amount, lot_id, order_id, reason, idempotency_key, created_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// Adds `$2` (> 0) to the balance, opening the account if needed.
pub(crate) const CREDIT_POINTS: &str =
    "INSERT INTO point_accounts (user_id, balance, held, updated_at) VALUES ($1, $2, 0, $3)
     ON CONFLICT (user_id) DO UPDATE SET balance = point_accounts.balance + excluded.balance,
         updated_at = excluded.updated_at
     RETURNING balance, held";

/// `(Δbalance, Δheld)` = `($2, $3)` while the unheld balance stays `>= 0`.
pub(crate) const MOVE_POINTS: &str =
    "UPDATE point_accounts SET balance = balance + $2, held = held + $3, updated_at = $4
     WHERE user_id = $1 AND (balance + $2) - (held + $3) >= 0
     RETURNING balance, held";

pub(crate) const MOVE_LOT: &str =
    "UPDATE point_lots SET remaining = remaining + $2, held = held + $3 WHERE id = $1";

pub(crate) const INSERT_LOT: &str =
    "INSERT INTO point_lots (user_id, amount, remaining, held, expires_at, source, order_id,
         created_at)
     VALUES ($1, $2, $2, 0, $3, $4, $5, $6) RETURNING id";

/// The buyer of confirmed order `$1` and what they paid for its confirmed parts: parts
/// cancelled on their own were refunded their `payable`, so it earns nothing.
pub(crate) const CONFIRMED_ORDER_PAYABLE: &str = "SELECT o.user_id,
         CAST(COALESCE((SELECT SUM(po.payable) FROM partner_orders po
             WHERE po.order_id = o.id AND po.status = 'confirmed'), 0) AS BIGINT)
     FROM orders o WHERE o.id = $1 AND o.status = 'confirmed'";

pub(crate) const EARNED_BEFORE: &str =
    "SELECT EXISTS (SELECT 1 FROM point_lots WHERE order_id = $1 AND source = 'earn')";

/// The lot order `$1` earned: `(id, amount, remaining - held, created_at)`.
pub(crate) const EARNED_LOT: &str = "SELECT id, amount, remaining - held, created_at
     FROM point_lots WHERE order_id = $1 AND source = 'earn'";

/// What the parts of order `$1` that were confirmed purchases when it earned (at `$2`) cost
/// the buyer, those returned since included: the whole its earned points are shared over.
/// A part returned before the earn was not earned on, so it is not in the whole either.
pub(crate) const EARNED_ON_PAYABLES: &str =
    "SELECT CAST(COALESCE(SUM(payable), 0) AS BIGINT) FROM partner_orders
     WHERE order_id = $1 AND confirmed_at IS NOT NULL
         AND (returned_at IS NULL OR returned_at >= $2)";

/// Nothing when `(consumer, event_id)` was processed before.
pub(crate) const CLAIM_EVENT: &str =
    "INSERT INTO processed_events (consumer, event_id, processed_at) VALUES ($1, $2, $3)
     ON CONFLICT (consumer, event_id) DO NOTHING";

pub(crate) const USER_ROLE: &str = "SELECT role FROM users WHERE id = $1";

macro_rules! operation_columns {
    () => {
        "id, admin_id, user_id, kind, amount, reason, expires_at, balance_after, held_after,
         created_at"
    };
}

/// Claims `(admin_id, idempotency_key)`; nothing when it was used before.
pub(crate) const CLAIM_OPERATION: &str =
    "INSERT INTO point_operations (admin_id, idempotency_key, request_hash, user_id, kind,
         amount, reason, expires_at, balance_after, held_after, created_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, 0, $9)
     ON CONFLICT (admin_id, idempotency_key) DO NOTHING RETURNING id";

pub(crate) const EARLIER_OPERATION: &str = concat!(
    "SELECT ",
    operation_columns!(),
    ", request_hash FROM point_operations
     WHERE admin_id = $1 AND idempotency_key = $2"
);

pub(crate) const FINISH_OPERATION: &str = concat!(
    "UPDATE point_operations SET balance_after = $2, held_after = $3 WHERE id = $1
     RETURNING ",
    operation_columns!()
);

pub(crate) const INSERT_POINTS_HOLD: &str =
    "INSERT INTO point_holds (order_id, user_id, amount, status, created_at, updated_at)
     VALUES ($1, $2, $3, 'held', $4, $4)";

/// SQLite, placement: a hold row for each `[order id, user id, amount]` of the JSON array
/// `$1`.
pub(crate) const INSERT_POINTS_HOLDS: &str =
    "INSERT INTO point_holds (order_id, user_id, amount, status, created_at, updated_at)
     SELECT value ->> 0, value ->> 1, value ->> 2, 'held', $2, $2 FROM json_each($1)
     ORDER BY key";

/// SQLite, placement: `held += amount` on each `[user id, amount]` of `$1` whose account
/// keeps `balance - held >= 0`; `(user_id, balance, held)` of each moved.
pub(crate) const HOLD_ON_ACCOUNTS: &str = "UPDATE point_accounts
     SET held = point_accounts.held + h.amount, updated_at = $2
     FROM (SELECT value ->> 0 AS user_id, value ->> 1 AS amount FROM json_each($1)) AS h
     WHERE point_accounts.user_id = h.user_id
       AND point_accounts.balance - (point_accounts.held + h.amount) >= 0
     RETURNING point_accounts.user_id, point_accounts.balance, point_accounts.held";

/// SQLite, placement: `held += amount` on each `[lot id, amount]` of `$1` (the lots' CHECKs
/// refuse anything out of range).
pub(crate) const HOLD_ON_LOTS: &str = "UPDATE point_lots SET held = point_lots.held + h.amount
     FROM (SELECT value ->> 0 AS id, value ->> 1 AS amount FROM json_each($1)) AS h
     WHERE point_lots.id = h.id";

/// SQLite, placement: a ledger row of kind `$2` for each `[user id, amount, lot id, order
/// id]` of `$1`, in order.
pub(crate) const APPEND_HOLD_LEDGER: &str = "INSERT INTO point_ledger
         (user_id, kind, amount, lot_id, order_id, reason, idempotency_key, created_at)
     SELECT value ->> 0, $2, value ->> 1, value ->> 2, value ->> 3, NULL, NULL, $3
     FROM json_each($1) ORDER BY key";

/// `(user_id, id, remaining - held, expires_at)` of the lots with points free to hold of
/// the users in the JSON array `$1`.
pub(crate) const FREE_LOTS_OF_USERS: &str =
    "SELECT user_id, id, remaining - held, expires_at FROM point_lots
     WHERE user_id IN (SELECT value FROM json_each($1)) AND remaining > 0 AND remaining > held";

/// `$2 → $3` on the order's hold; entering `refunded` refunds what cancelled parts had not
/// (`refunded` becomes the whole amount).
pub(crate) const STEP_POINTS_HOLD: &str = "UPDATE point_holds SET status = $3, updated_at = $4,
         refunded = CASE WHEN $3 = 'refunded' THEN amount ELSE refunded END
     WHERE order_id = $1 AND status = $2 RETURNING user_id, amount";

/// A cancelled part's share `$2` of order `$1`'s spent points, while the hold stays spent
/// and never beyond its amount.
pub(crate) const REFUND_POINTS_SHARE: &str =
    "UPDATE point_holds SET refunded = refunded + $2, updated_at = $3
     WHERE order_id = $1 AND status = 'spent' AND refunded + $2 <= amount
     RETURNING user_id";

/// Per lot, what the order's `$2` rows took less what its `$3` rows already gave back, in
/// the order they took it; only lots with something left.
pub(crate) const NET_TAKEN_PER_LOT: &str = "SELECT lot_id,
         CAST(SUM(CASE WHEN kind = $2 THEN amount ELSE -amount END) AS BIGINT) AS net
     FROM point_ledger
     WHERE order_id = $1 AND kind IN ($2, $3) AND lot_id IS NOT NULL
     GROUP BY lot_id
     HAVING SUM(CASE WHEN kind = $2 THEN amount ELSE -amount END) > 0
     ORDER BY MIN(id)";

pub(crate) const POINTS_ACCOUNT: &str =
    "SELECT balance, held FROM point_accounts WHERE user_id = $1";

pub(crate) const POINTS_HISTORY_PAGE: &str =
    "SELECT id, user_id, kind, amount, lot_id, order_id, reason, created_at
     FROM point_ledger WHERE user_id = $1 ORDER BY id DESC LIMIT $2 OFFSET $3";

pub(crate) const COUNT_POINTS_HISTORY: &str =
    "SELECT COUNT(*) FROM point_ledger WHERE user_id = $1";

pub(crate) const USERS_WITH_EXPIRED_POINTS: &str = "SELECT DISTINCT user_id FROM point_lots
     WHERE remaining > 0 AND expires_at IS NOT NULL AND expires_at <= $1
         AND remaining > held
     ORDER BY user_id LIMIT $2";

/// Up to `$2` events of one type, oldest first, that consumer `$1` has neither processed
/// nor given up on (a dead letter of that consumer names the event). The type is written
/// into the statement, not bound, so that its partial index on the outbox serves the scan
/// (neither SQLite nor a generic PostgreSQL plan matches a partial index to a parameter).
macro_rules! unprocessed_events {
    ($event_type:literal) => {
        concat!(
            "SELECT o.id, o.aggregate_type, o.aggregate_id, o.event_type, o.payload, o.created_at
     FROM outbox o
     WHERE o.event_type = '",
            $event_type,
            "' AND NOT EXISTS (
         SELECT 1 FROM processed_events p WHERE p.consumer = $1 AND p.event_id = o.id)
     AND NOT EXISTS (
         SELECT 1 FROM dead_letters d WHERE d.handler = $1 AND d.event_id = o.id)
     ORDER BY o.id LIMIT $2"
        )
    };
}

/// [`unprocessed_events!`] of each [`Backlog`], over its partial index
/// (`outbox_order_confirmed`, `outbox_refund_failed`).
pub(crate) fn unprocessed_events(backlog: Backlog) -> &'static str {
    match backlog {
        Backlog::OrderConfirmed => unprocessed_events!("order.confirmed"),
        Backlog::PaymentRefundFailed => unprocessed_events!("payment.refund_failed"),
    }
}

// Sums are cast to BIGINT: PostgreSQL's SUM of BIGINTs is a NUMERIC, SQLite's is already
// an integer (the cast changes nothing there).

/// Unheld remainders of the buyer's lots expiring by `$2`, per instant.
pub(crate) const EXPIRING_POINTS: &str =
    "SELECT expires_at, CAST(SUM(remaining - held) AS BIGINT) FROM point_lots
     WHERE user_id = $1 AND remaining > 0 AND expires_at <= $2 AND remaining > held
     GROUP BY expires_at ORDER BY expires_at";

pub(crate) const AUDIT_POINTS_LEDGER_BY_USER: &str =
    "SELECT user_id, kind, CAST(SUM(amount) AS BIGINT) FROM point_ledger
     GROUP BY user_id, kind";

pub(crate) const AUDIT_POINTS_LOT_SUMS: &str =
    "SELECT user_id, CAST(SUM(remaining) AS BIGINT), CAST(SUM(held) AS BIGINT) FROM point_lots
     GROUP BY user_id";

pub(crate) const AUDIT_POINTS_LEDGER_BY_LOT: &str =
    "SELECT lot_id, kind, CAST(SUM(amount) AS BIGINT) FROM point_ledger
     WHERE lot_id IS NOT NULL GROUP BY lot_id, kind";

/// The hold, release, spend and refund rows of each order.
pub(crate) const AUDIT_POINTS_LEDGER_BY_ORDER: &str =
    "SELECT order_id, kind, CAST(SUM(amount) AS BIGINT) FROM point_ledger
     WHERE order_id IS NOT NULL AND kind IN ('hold', 'release', 'spend', 'refund')
     GROUP BY order_id, kind";

pub(crate) const AUDIT_POINTS_ACCOUNTS: &str = "SELECT user_id, balance, held FROM point_accounts";

pub(crate) const AUDIT_POINTS_LOTS: &str =
    "SELECT id, user_id, amount, remaining, held FROM point_lots ORDER BY id";

/// Each order's hold, with the points of its parts cancelled on their own or returned after
/// confirmation (what a spent hold has refunded).
pub(crate) const AUDIT_POINTS_HOLDS: &str = "SELECT h.order_id, h.user_id, h.amount, h.status,
         h.refunded,
         CAST(COALESCE((SELECT SUM(po.points_used) FROM partner_orders po
             WHERE po.order_id = h.order_id
                 AND (po.cancelled_at IS NOT NULL OR po.returned_at IS NOT NULL)), 0) AS BIGINT)
     FROM point_holds h ORDER BY h.order_id";

// ---------------------------------------------------------------------------------------
// Leases
// ---------------------------------------------------------------------------------------

/// Takes the lease when it is free, expired (`$4` is now) or already this holder's.
pub(crate) const TRY_LEASE: &str =
    "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3)
     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,
         expires_at = excluded.expires_at
     WHERE leases.expires_at < $4 OR leases.holder = excluded.holder";

pub(crate) const RECORD_JOB_RUN: &str =
    "INSERT INTO job_runs (name, holder, started_at, duration_ms, outcome, error)
     VALUES ($1, $2, $3, $4, CASE WHEN $5 IS NULL THEN 'ok' ELSE 'failed' END, $5)
     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,
         started_at = excluded.started_at, duration_ms = excluded.duration_ms,
         outcome = excluded.outcome, error = excluded.error";

pub(crate) const JOB_RUNS: &str =
    "SELECT name, holder, started_at, duration_ms, error FROM job_runs ORDER BY name";

// ---------------------------------------------------------------------------------------
// The event stream: relay progress and dead letters
// ---------------------------------------------------------------------------------------

pub(crate) const RELAY_POSITION: &str = "SELECT last_event_id FROM relay_progress WHERE name = $1";

/// Forward only: an older position (a relay that lost its lease) updates nothing.
pub(crate) const ADVANCE_RELAY: &str =
    "INSERT INTO relay_progress (name, last_event_id, updated_at) VALUES ($1, $2, $3)
     ON CONFLICT (name) DO UPDATE SET last_event_id = excluded.last_event_id,
         updated_at = excluded.updated_at
     WHERE relay_progress.last_event_id < excluded.last_event_id";

macro_rules! dead_letter_columns {
    () => {
        "id, handler, topic, kafka_partition, kafka_offset, message_key, message, event_id,
         error, attempts, retries, status, first_failed_at, last_failed_at, updated_at"
    };
}

/// The same message of the same handler again: the row reopens with the new error.
pub(crate) const INSERT_DEAD_LETTER: &str = concat!(
    "INSERT INTO dead_letters (handler, topic, kafka_partition, kafka_offset, message_key,
         message, event_id, error, attempts, retries, status, first_failed_at,
         last_failed_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, 'open', $10, $11, $11)
     ON CONFLICT (handler, topic, kafka_partition, kafka_offset) DO UPDATE SET
         error = excluded.error, attempts = dead_letters.attempts + excluded.attempts,
         status = 'open', last_failed_at = excluded.last_failed_at,
         updated_at = excluded.updated_at
     RETURNING ",
    dead_letter_columns!()
);

pub(crate) const DEAD_LETTER_BY_ID: &str = concat!(
    "SELECT ",
    dead_letter_columns!(),
    " FROM dead_letters WHERE id = $1"
);

/// `$1` NULL lists every status.
pub(crate) const DEAD_LETTERS_PAGE: &str = concat!(
    "SELECT ",
    dead_letter_columns!(),
    " FROM dead_letters WHERE status = COALESCE($1, status)
     ORDER BY id DESC LIMIT $2 OFFSET $3"
);

pub(crate) const COUNT_DEAD_LETTERS: &str =
    "SELECT COUNT(*) FROM dead_letters WHERE status = COALESCE($1, status)";

pub(crate) const SETTLE_DEAD_LETTER: &str =
    "UPDATE dead_letters SET status = $2, updated_at = $3 WHERE id = $1 AND status = 'open'";

pub(crate) const DEAD_LETTER_FAILED: &str =
    "UPDATE dead_letters SET attempts = attempts + 1, retries = retries + $3, error = $2,
         last_failed_at = $4, updated_at = $4
     WHERE id = $1 AND status = 'open'";

pub(crate) const RETRYABLE_DEAD_LETTERS: &str = concat!(
    "SELECT ",
    dead_letter_columns!(),
    " FROM dead_letters WHERE status = 'open' AND retries < $1 ORDER BY id LIMIT $2"
);

// ---------------------------------------------------------------------------------------
// Settlement
// ---------------------------------------------------------------------------------------

// The sellers' books are `settlement_entries` (migration 0010): a `sale` entry per partner
// order when its purchase is confirmed, a `refund` entry when a confirmed part is returned.
// A statement sums one partner's entries recorded in its business day; its lines are those
// entries, read back through the period it stores.

/// One partner order's commission, rounded half up in integer arithmetic
/// (`domain::settlement::commission`); `po` is the partner order, its subtotal never
/// negative.
macro_rules! line_commission {
    () => {
        "(po.subtotal * po.commission_rate_bps + 5000) / 10000"
    };
}

/// The sale entries of order `$1`'s parts confirmed at `$2` (the confirmation's
/// transaction, right after it stamps them).
pub(crate) const INSERT_SALE_ENTRIES: &str = concat!(
    "INSERT INTO settlement_entries (partner_id, partner_order_id, order_id, kind, subtotal,
         commission_rate_bps, commission, net, confirmed_at, recorded_at)
     SELECT po.partner_id, po.id, po.order_id, 'sale', po.subtotal, po.commission_rate_bps, ",
    line_commission!(),
    ", po.subtotal - ",
    line_commission!(),
    ", $2, $2
     FROM partner_orders po WHERE po.order_id = $1 AND po.status = 'confirmed'
     ORDER BY po.id"
);

macro_rules! settlement_columns {
    () => {
        "id, partner_id, business_date, gross, commission, net, line_count, created_at"
    };
}

macro_rules! settlement_line_columns {
    () => {
        "e.kind, e.partner_order_id, e.order_id, e.subtotal, e.commission_rate_bps,
         e.commission, e.net, e.confirmed_at, e.recorded_at"
    };
}

/// A day's statements: one per partner with entries recorded in `[$2, $3)`, in partner
/// order (two nodes settling one day at once then meet on the unique key in the same
/// order, and the second one waits, then skips). One range scan of the entries' day index,
/// and a row per partner: nothing is written per line. `$1` the business date, `$4` now.
/// Both dialects take `INSERT … SELECT … ON CONFLICT` given the `WHERE` before it.
pub(crate) const INSERT_DAY_STATEMENTS: &str = concat!(
    "INSERT INTO settlements (partner_id, business_date, period_from, period_to, gross,
         commission, net, line_count, created_at)
     SELECT e.partner_id, $1, $2, $3, SUM(e.subtotal), SUM(e.commission),
         SUM(e.subtotal) - SUM(e.commission), COUNT(*), $4
     FROM settlement_entries e
     WHERE e.recorded_at >= $2 AND e.recorded_at < $3
     GROUP BY e.partner_id
     ORDER BY e.partner_id
     ON CONFLICT (partner_id, business_date) DO NOTHING
     RETURNING ",
    settlement_columns!()
);

/// Marks a day settled, with its bounds (`$4`, `$5`) for `stampede verify`.
pub(crate) const MARK_DAY_SETTLED: &str =
    "INSERT INTO settlement_days (business_date, statements, settled_at, period_from, period_to)
     VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (business_date) DO NOTHING";

pub(crate) const LAST_SETTLED_DAY: &str = "SELECT MAX(business_date) FROM settlement_days";

/// Where the daily job starts on a store never settled: the first entry.
pub(crate) const FIRST_ENTRY: &str = "SELECT MIN(recorded_at) FROM settlement_entries";

pub(crate) const SETTLEMENT_BY_ID: &str = concat!(
    "SELECT ",
    settlement_columns!(),
    " FROM settlements WHERE id = $1"
);

pub(crate) const PARTNER_SETTLEMENTS: &str = concat!(
    "SELECT ",
    settlement_columns!(),
    " FROM settlements WHERE partner_id = $1
     ORDER BY business_date DESC LIMIT $2 OFFSET $3"
);

pub(crate) const COUNT_PARTNER_SETTLEMENTS: &str =
    "SELECT COUNT(*) FROM settlements WHERE partner_id = $1";

/// Statement `s`'s lines: its partner's entries over its period, in the order they were
/// written (a range of `settlement_entries_partner`).
macro_rules! statement_entries {
    () => {
        " FROM settlements s JOIN settlement_entries e ON e.partner_id = s.partner_id
              AND e.recorded_at >= s.period_from AND e.recorded_at < s.period_to
          WHERE s.id = $1"
    };
}

pub(crate) const SETTLEMENT_LINES_PAGE: &str = concat!(
    "SELECT ",
    settlement_line_columns!(),
    statement_entries!(),
    " ORDER BY e.recorded_at, e.id LIMIT $2 OFFSET $3"
);

pub(crate) const COUNT_SETTLEMENT_LINES: &str = concat!("SELECT COUNT(*)", statement_entries!());

pub(crate) const ALL_SETTLEMENT_LINES: &str = concat!(
    "SELECT ",
    settlement_line_columns!(),
    statement_entries!(),
    " ORDER BY e.recorded_at, e.id"
);

/// Statements whose totals are not the sums of their lines: an entry written into their
/// period after they were made (a statement is never edited, so it was never paid).
pub(crate) const STATEMENT_MISMATCHES: &str =
    "SELECT s.id, s.gross, s.commission, s.net, s.line_count,
         CAST(COALESCE(SUM(e.subtotal), 0) AS BIGINT) AS line_gross,
         CAST(COALESCE(SUM(e.commission), 0) AS BIGINT) AS line_commission,
         CAST(COALESCE(SUM(e.net), 0) AS BIGINT) AS line_net,
         CAST(COUNT(e.id) AS BIGINT) AS line_lines
     FROM settlements s
     LEFT JOIN settlement_entries e ON e.partner_id = s.partner_id
         AND e.recorded_at >= s.period_from AND e.recorded_at < s.period_to
     GROUP BY s.id, s.gross, s.commission, s.net, s.line_count
     HAVING s.gross <> COALESCE(SUM(e.subtotal), 0)
         OR s.commission <> COALESCE(SUM(e.commission), 0)
         OR s.net <> COALESCE(SUM(e.net), 0) OR s.line_count <> COUNT(e.id)
     ORDER BY s.id";

/// Partner orders whose sale is on more than one statement (overlapping periods of one
/// partner), or has more than one sale entry: settled twice.
pub(crate) const SETTLED_TWICE: &str = "SELECT partner_order_id FROM (
         SELECT e.partner_order_id FROM settlement_entries e
         JOIN settlements s ON s.partner_id = e.partner_id
             AND e.recorded_at >= s.period_from AND e.recorded_at < s.period_to
         WHERE e.kind = 'sale'
         GROUP BY e.id, e.partner_order_id HAVING COUNT(*) > 1
         UNION
         SELECT partner_order_id FROM settlement_entries WHERE kind = 'sale'
         GROUP BY partner_order_id HAVING COUNT(*) > 1) twice
     ORDER BY partner_order_id";

/// Entries recorded in a day settled (with its bounds) for a partner that has no
/// statement that day: written after the day was settled, so never paid out.
pub(crate) const UNSETTLED_ENTRIES: &str = "SELECT e.id FROM settlement_entries e
     JOIN settlement_days d ON e.recorded_at >= d.period_from AND e.recorded_at < d.period_to
     WHERE NOT EXISTS (SELECT 1 FROM settlements s
                       WHERE s.partner_id = e.partner_id AND s.business_date = d.business_date)
     ORDER BY e.id LIMIT 100";

/// Purchases confirmed without their sale entry, or whose entry disagrees with them (the
/// ledger must be the partner orders' own amounts), and sale entries whose partner order
/// was never confirmed.
pub(crate) const SALE_ENTRY_MISMATCHES: &str = concat!(
    "SELECT po.id FROM partner_orders po
     LEFT JOIN settlement_entries e ON e.partner_order_id = po.id AND e.kind = 'sale'
     WHERE po.confirmed_at IS NOT NULL AND (e.id IS NULL OR e.partner_id <> po.partner_id
         OR e.subtotal <> po.subtotal OR e.commission_rate_bps <> po.commission_rate_bps
         OR e.commission <> ",
    line_commission!(),
    " OR e.confirmed_at <> po.confirmed_at)
     UNION
     SELECT e.partner_order_id FROM settlement_entries e
     LEFT JOIN partner_orders po ON po.id = e.partner_order_id
     WHERE e.kind = 'sale' AND (po.id IS NULL OR po.confirmed_at IS NULL)
     ORDER BY 1 LIMIT 100"
);

// ---------------------------------------------------------------------------------------
// Benchmark fill (`stampede loadgen settlement`)
// ---------------------------------------------------------------------------------------

/// `$1` partners from a series `g(i)` the backend provides; rates 500..=2500 bps.
macro_rules! bench_partners {
    ($series:expr) => {
        concat!(
            "INSERT INTO partners (name, commission_rate_bps, created_at)
             SELECT $2 || ' partner ' || i, 500 + (i * 37) % 2001, $3 FROM ",
            $series,
            " RETURNING id"
        )
    };
}
pub(crate) use bench_partners;

/// One confirmed order per line `i` of the series, for buyer `$2`; its subtotal varies
/// from 1,000 to 100,999 won. `$3` the key prefix, `$4` now.
macro_rules! bench_orders {
    ($series:expr) => {
        concat!(
            "INSERT INTO orders (user_id, idempotency_key, request_hash, status, total,
                 discount, points_used, payable, pay_by, paid_at, delivered_at, created_at,
                 updated_at)
             SELECT $2, $3 || i, '', 'confirmed', 1000 + (i * 7919) % 100000, 0, 0,
                 1000 + (i * 7919) % 100000, $4, $4, $4, $4, $4 FROM ",
            $series
        )
    };
}
pub(crate) use bench_orders;

/// The part of each of buyer `$1`'s orders: partner `$2 + id mod $3` (partner ids are
/// consecutive), confirmed at `$4 + (id − $5) × $6 / $7` — evenly over the day.
pub(crate) const BENCH_PARTNER_ORDERS: &str =
    "INSERT INTO partner_orders (order_id, partner_id, status, subtotal, discount, points_used,
         payable, commission_rate_bps, delivered_at, confirmed_at)
     SELECT o.id, p.id, 'confirmed', o.total, 0, 0, o.total, p.commission_rate_bps,
         o.delivered_at, $4 + ((o.id - $5) * $6) / $7
     FROM orders o JOIN partners p ON p.id = $2 + o.id % $3
     WHERE o.user_id = $1";

/// Their sale entries, as each confirmation writes them (`INSERT_SALE_ENTRIES`), in the
/// order they were confirmed. `$1` the buyer.
pub(crate) const BENCH_SALE_ENTRIES: &str = concat!(
    "INSERT INTO settlement_entries (partner_id, partner_order_id, order_id, kind, subtotal,
         commission_rate_bps, commission, net, confirmed_at, recorded_at)
     SELECT po.partner_id, po.id, po.order_id, 'sale', po.subtotal, po.commission_rate_bps, ",
    line_commission!(),
    ", po.subtotal - ",
    line_commission!(),
    ", po.confirmed_at, po.confirmed_at
     FROM partner_orders po JOIN orders o ON o.id = po.order_id
     WHERE o.user_id = $1
     ORDER BY po.confirmed_at, po.id"
);

pub(crate) const BENCH_BUYER: &str = "INSERT INTO users (email, password_hash, role, created_at)
     VALUES ($1, '!', 'buyer', $2) RETURNING id";

pub(crate) const BENCH_SCRATCH: &str =
    "CREATE TEMPORARY TABLE bench_settlement_scratch (partner_id BIGINT, gross BIGINT,
         commission BIGINT, net BIGINT, line_count BIGINT)";

/// The bare aggregate settlement is built on: `INSERT_DAY_STATEMENTS`'s read and sums, into a
/// scratch table without keys, and nothing else.
pub(crate) const BENCH_BARE_AGGREGATE: &str =
    "INSERT INTO bench_settlement_scratch (partner_id, gross, commission, net, line_count)
     SELECT e.partner_id, SUM(e.subtotal), SUM(e.commission), SUM(e.subtotal) - SUM(e.commission),
         COUNT(*)
     FROM settlement_entries e
     WHERE e.recorded_at >= $1 AND e.recorded_at < $2
     GROUP BY e.partner_id";

pub(crate) const BENCH_DROP_SCRATCH: &str = "DROP TABLE bench_settlement_scratch";

/// The columns `rows::checkout_from_row` reads.
macro_rules! checkout_columns {
    () => {
        "order_id, payment_id, amount, status, created_at, resolved_at"
    };
}

pub(crate) const OPEN_CHECKOUT_OF_ORDER: &str = concat!(
    "SELECT ",
    checkout_columns!(),
    " FROM checkouts WHERE order_id = $1 AND status = 'open'"
);

pub(crate) const CHECKOUT_BY_PAYMENT_ID: &str = concat!(
    "SELECT ",
    checkout_columns!(),
    " FROM checkouts WHERE payment_id = $1"
);

/// Nothing when the payment id is taken or the order has an open checkout already
/// (`checkouts_one_open`): the caller reads what is there.
pub(crate) const INSERT_CHECKOUT: &str =
    "INSERT INTO checkouts (order_id, payment_id, amount, status, created_at)
     VALUES ($1, $2, $3, 'open', $4) ON CONFLICT DO NOTHING";

pub(crate) const ABANDON_OTHER_OPEN_CHECKOUTS: &str =
    "UPDATE checkouts SET status = 'abandoned', resolved_at = $3
     WHERE order_id = $1 AND status = 'open' AND payment_id <> $2";

/// `$2` is `voided` or `abandoned`; see `CheckoutStore::resolve_checkout`.
pub(crate) const RESOLVE_CHECKOUT: &str = "UPDATE checkouts SET status = $2, resolved_at = $3
     WHERE payment_id = $1 AND status <> $2
       AND (status = 'open' OR (status = 'abandoned' AND $2 = 'voided'))";

/// Inside `mark_paid`: the checkout the order was paid with (none for a payment made
/// before checkouts existed). An abandoned one too: its money arrived after all.
pub(crate) const PAY_CHECKOUT: &str = "UPDATE checkouts SET status = 'paid', resolved_at = $2
     WHERE payment_id = $1 AND status IN ('open', 'abandoned')";

pub(crate) const STALE_CHECKOUTS: &str = concat!(
    "SELECT ",
    checkout_columns!(),
    " FROM checkouts WHERE status = 'open' AND created_at <= $1 ORDER BY created_at, id LIMIT $2"
);

pub(crate) const APPROVED_PAYMENT_ID: &str = "SELECT payment_key FROM payments
     WHERE order_id = $1 AND outcome = 'approved' ORDER BY id LIMIT 1";

pub(crate) const WEBHOOK_SEEN: &str =
    "SELECT EXISTS (SELECT 1 FROM webhook_receipts WHERE webhook_id = $1)";

/// Nothing when the webhook was recorded before.
pub(crate) const RECORD_WEBHOOK: &str =
    "INSERT INTO webhook_receipts (webhook_id, event_type, received_at) VALUES ($1, $2, $3)
     ON CONFLICT (webhook_id) DO NOTHING";

// ---------------------------------------------------------------------------------------
// Waiting room
// ---------------------------------------------------------------------------------------

macro_rules! ticket_columns {
    () => {
        "seq, id, user_id, idempotency_key, request, status, attempts, outcome, order_id,
         rejection, created_at"
    };
}

/// Queues a ticket unless the room is full or the buyer's key already has an open ticket
/// (then nothing is returned). The room's size is the line's span, first waiting ticket to
/// last ticket: two index lookups, where counting would read every waiting row.
pub(crate) const ENQUEUE_TICKET: &str = concat!(
    "INSERT INTO waiting_tickets (id, user_id, idempotency_key, request, created_at)
     SELECT $1, $2, $3, $4, $5
     WHERE COALESCE((SELECT MAX(seq) FROM waiting_tickets)
             - (SELECT MIN(seq) FROM waiting_tickets WHERE status = 'waiting') + 1, 0) < $6
     ON CONFLICT (user_id, idempotency_key) WHERE status <> 'done' DO NOTHING
     RETURNING ",
    ticket_columns!()
);

pub(crate) const OPEN_TICKET_OF_KEY: &str = concat!(
    "SELECT ",
    ticket_columns!(),
    " FROM waiting_tickets WHERE user_id = $1 AND idempotency_key = $2 AND status <> 'done'"
);

pub(crate) const TICKET_BY_ID: &str = concat!(
    "SELECT ",
    ticket_columns!(),
    " FROM waiting_tickets WHERE id = $1"
);

/// Four lookups at the ends of indexes (`waiting_tickets_line` by status, the key).
pub(crate) const WAITING_LINE: &str =
    "SELECT (SELECT MIN(seq) FROM waiting_tickets WHERE status = 'waiting') AS head,
            (SELECT MAX(seq) FROM waiting_tickets) AS tail,
            (SELECT MAX(seq) FROM waiting_tickets WHERE status = 'admitted') AS last_admitted,
            (SELECT MAX(seq) FROM waiting_tickets WHERE status = 'done') AS last_done";

/// The outer `status = 'waiting'` is checked again on a row another holder changed while
/// this statement waited for it (PostgreSQL), so a ticket finished meanwhile is left out.
pub(crate) const ADMIT_TICKETS: &str = concat!(
    "UPDATE waiting_tickets SET status = 'admitted', attempts = attempts + 1
     WHERE status = 'waiting'
       AND seq IN (SELECT seq FROM waiting_tickets WHERE status = 'waiting'
                   ORDER BY seq LIMIT $1)
     RETURNING ",
    ticket_columns!()
);

pub(crate) const READMIT_ALL_TICKETS: &str =
    "UPDATE waiting_tickets SET status = 'waiting' WHERE status = 'admitted'";

pub(crate) const READMIT_TICKET: &str =
    "UPDATE waiting_tickets SET status = 'waiting' WHERE seq = $1 AND status = 'admitted'";

/// Only the admission the ticket is in may write its outcome (`attempts` fences out a
/// holder that lost the room while the ticket was admitted again).
pub(crate) const FINISH_TICKET: &str =
    "UPDATE waiting_tickets SET status = 'done', outcome = $2, order_id = $3, rejection = $4,
         finished_at = $5
     WHERE seq = $1 AND status = 'admitted' AND attempts = $6";

pub(crate) const PRUNE_TICKETS: &str = "DELETE FROM waiting_tickets WHERE seq IN (
         SELECT seq FROM waiting_tickets WHERE status = 'done' AND finished_at < $1
         ORDER BY finished_at LIMIT $2)";

// ---------------------------------------------------------------------------------------
// Operations (`store::operations`)
// ---------------------------------------------------------------------------------------

pub(crate) const BEAT_NODE: &str =
    "INSERT INTO nodes (id, started_at, seen_at, draining, stats) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at, draining = excluded.draining,
         stats = excluded.stats";

pub(crate) const FORGET_NODES: &str = "DELETE FROM nodes WHERE seen_at < $1";

pub(crate) const FORGET_NODE: &str = "DELETE FROM nodes WHERE id = $1";

pub(crate) const NODES: &str =
    "SELECT id, started_at, seen_at, draining, stats FROM nodes ORDER BY started_at, id";

/// A range of the primary key from the newest movement back: a bounded scan whatever the
/// ledger's size (there is no index on `created_at`, and the hot path should not pay for one).
pub(crate) const PRODUCTS_MOVED_RECENTLY: &str =
    "SELECT product_id, MAX(id) AS last_move FROM stock_movements
     WHERE id > (SELECT COALESCE(MAX(id), 0) FROM stock_movements) - $1 AND created_at >= $2
     GROUP BY product_id ORDER BY last_move DESC LIMIT $3";

pub(crate) const PRODUCTS_RELEASED_BETWEEN: &str =
    "SELECT id FROM products WHERE release_at >= $1 AND release_at <= $2
     ORDER BY release_at DESC, id DESC LIMIT $3";

/// `sold` reads the product's movements (index `stock_movements_product`).
pub(crate) const PRODUCT_IN_PLAY: &str =
    "SELECT p.id, p.name, p.price, p.release_at, s.on_hand, s.held,
         CAST(COALESCE((SELECT SUM(CASE m.kind WHEN 'hold' THEN m.quantity
                                               WHEN 'release' THEN -m.quantity
                                               WHEN 'return' THEN -m.quantity
                                               ELSE 0 END)
                        FROM stock_movements m WHERE m.product_id = p.id), 0) AS BIGINT) AS sold
     FROM products p JOIN stock s ON s.product_id = p.id WHERE p.id = $1";

pub(crate) const CAMPAIGNS_IN_PLAY: &str =
    "SELECT id, name, issued, total_quantity FROM coupon_campaigns
     WHERE issue_starts_at <= $2 AND (issue_ends_at IS NULL OR issue_ends_at >= $1)
     ORDER BY id DESC LIMIT $3";

pub(crate) const OPEN_DEAD_LETTERS: &str =
    "SELECT COUNT(*) FROM dead_letters WHERE status = 'open'";

// ---------------------------------------------------------------------------------------
// Attempts (the availability gate's memory, `cluster::gate`)
// ---------------------------------------------------------------------------------------

pub(crate) const ORDER_OF_ATTEMPT: &str =
    "SELECT id FROM orders WHERE user_id = $1 AND idempotency_key = $2";

/// Newest first from the primary key, so the scan stops at `$2` rows whatever the table's size.
pub(crate) const RECENT_ATTEMPTS: &str = "SELECT user_id, idempotency_key FROM (
         SELECT user_id, idempotency_key, created_at FROM orders ORDER BY id DESC LIMIT $2
     ) AS newest WHERE created_at >= $1";
