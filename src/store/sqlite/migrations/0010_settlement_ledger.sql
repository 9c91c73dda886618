-- Settlement as a ledger, and returns after confirmation (issue 10), SQLite dialect.
-- Same schema as postgres/migrations/0010_settlement_ledger.sql, which says why.
--
-- SQLite cannot change a table's CHECK, so settlements and partner_orders are rebuilt,
-- order_items with the latter (as in 0007: it references the new table by its temporary
-- name, which the rename carries over).

CREATE TABLE settlement_entries (
    id                  INTEGER PRIMARY KEY,
    partner_id          INTEGER NOT NULL,
    partner_order_id    INTEGER NOT NULL,
    order_id            INTEGER NOT NULL,
    kind                TEXT    NOT NULL CHECK (kind IN ('sale', 'refund')),
    subtotal            INTEGER NOT NULL,
    commission_rate_bps INTEGER NOT NULL CHECK (commission_rate_bps BETWEEN 0 AND 10000),
    commission          INTEGER NOT NULL,
    net                 INTEGER NOT NULL CHECK (net = subtotal - commission),
    -- When the purchase was confirmed (the same on its sale and its refund).
    confirmed_at        INTEGER NOT NULL,
    -- When the entry was written: which business day's statement it is on.
    recorded_at         INTEGER NOT NULL,
    CHECK ((kind = 'sale') = (subtotal >= 0)),
    CHECK (kind = 'refund' OR recorded_at = confirmed_at),
    UNIQUE (partner_order_id, kind)
);
-- A day's statements: a range scan of this index alone.
CREATE INDEX settlement_entries_day
    ON settlement_entries (recorded_at, partner_id, subtotal, commission);
-- A statement's lines: one partner's entries over its day, in the order they were written.
CREATE INDEX settlement_entries_partner ON settlement_entries (partner_id, recorded_at, id);

INSERT INTO settlement_entries (partner_id, partner_order_id, order_id, kind, subtotal,
    commission_rate_bps, commission, net, confirmed_at, recorded_at)
SELECT partner_id, id, order_id, 'sale', subtotal, commission_rate_bps,
    (subtotal * commission_rate_bps + 5000) / 10000,
    subtotal - (subtotal * commission_rate_bps + 5000) / 10000, confirmed_at, confirmed_at
FROM partner_orders WHERE confirmed_at IS NOT NULL
ORDER BY confirmed_at, id;

CREATE TABLE settlements_new (
    id            INTEGER PRIMARY KEY,
    partner_id    INTEGER NOT NULL REFERENCES partners (id),
    -- YYYY-MM-DD in the settlement time zone: text order is date order.
    business_date TEXT    NOT NULL CHECK (length(business_date) = 10),
    -- The instants it covers, [period_from, period_to): its lines are its partner's
    -- entries recorded in between.
    period_from   INTEGER NOT NULL,
    period_to     INTEGER NOT NULL,
    gross         INTEGER NOT NULL,
    commission    INTEGER NOT NULL,
    net           INTEGER NOT NULL CHECK (net = gross - commission),
    line_count    INTEGER NOT NULL CHECK (line_count >= 0),
    created_at    INTEGER NOT NULL,
    CHECK (period_from < period_to),
    UNIQUE (partner_id, business_date)
);
-- Statements made before this migration take the span of the lines they had, which holds
-- exactly those lines.
INSERT INTO settlements_new (id, partner_id, business_date, period_from, period_to, gross,
    commission, net, line_count, created_at)
SELECT s.id, s.partner_id, s.business_date, COALESCE(l.first, 0), COALESCE(l.last + 1, 1),
    s.gross, s.commission, s.net, s.line_count, s.created_at
FROM settlements s
LEFT JOIN (SELECT settlement_id, MIN(confirmed_at) AS first, MAX(confirmed_at) AS last
           FROM settlement_lines GROUP BY settlement_id) l ON l.settlement_id = s.id;
DROP TABLE settlement_lines;
DROP TABLE settlements;
ALTER TABLE settlements_new RENAME TO settlements;
CREATE INDEX settlements_partner_date ON settlements (partner_id, business_date);

-- A settled day's bounds, for `stampede verify` to find entries no statement covers.
-- NULL on days settled before this migration.
ALTER TABLE settlement_days ADD COLUMN period_from INTEGER;
ALTER TABLE settlement_days ADD COLUMN period_to INTEGER;

-- A confirmed part the seller takes back: when and why (`returned_at`, `return_reason`).
-- It becomes `refunded` and keeps its confirmation time.
CREATE TABLE partner_orders_new (
    id                  INTEGER PRIMARY KEY,
    order_id            INTEGER NOT NULL REFERENCES orders (id),
    partner_id          INTEGER NOT NULL REFERENCES partners (id),
    status              TEXT    NOT NULL CHECK (status IN ('pending_payment', 'paid',
        'preparing', 'shipped', 'delivered', 'confirmed', 'cancelled', 'refunded')),
    subtotal            INTEGER NOT NULL CHECK (subtotal >= 0),
    commission_rate_bps INTEGER NOT NULL CHECK (commission_rate_bps BETWEEN 0 AND 10000),
    carrier             TEXT,
    tracking_number     TEXT,
    prepared_at         INTEGER,
    shipped_at          INTEGER,
    delivered_at        INTEGER,
    confirmed_at        INTEGER,
    discount            INTEGER NOT NULL DEFAULT 0 CHECK (discount >= 0),
    points_used         INTEGER NOT NULL DEFAULT 0 CHECK (points_used >= 0),
    payable             INTEGER NOT NULL DEFAULT 0 CHECK (payable >= 0),
    cancel_reason       TEXT,
    cancelled_at        INTEGER,
    returned_at         INTEGER,
    return_reason       TEXT,
    UNIQUE (order_id, partner_id),
    CHECK (payable = subtotal - discount - points_used),
    -- A shipment is a carrier and a tracking number, given together when it ships.
    CHECK ((carrier IS NULL) = (shipped_at IS NULL)
        AND (tracking_number IS NULL) = (shipped_at IS NULL)),
    -- Each step leaves its time behind; later statuses keep the earlier times.
    CHECK ((status <> 'preparing' OR prepared_at IS NOT NULL)
        AND (status <> 'shipped' OR shipped_at IS NOT NULL)
        AND (status NOT IN ('delivered', 'confirmed') OR delivered_at IS NOT NULL)
        AND (status <> 'confirmed' OR confirmed_at IS NOT NULL)
        AND (confirmed_at IS NULL OR status IN ('confirmed', 'refunded'))
        AND (returned_at IS NOT NULL) = (status = 'refunded' AND confirmed_at IS NOT NULL)
        AND (return_reason IS NULL) = (returned_at IS NULL))
);
INSERT INTO partner_orders_new (id, order_id, partner_id, status, subtotal,
    commission_rate_bps, carrier, tracking_number, prepared_at, shipped_at, delivered_at,
    confirmed_at, discount, points_used, payable, cancel_reason, cancelled_at)
SELECT id, order_id, partner_id, status, subtotal, commission_rate_bps, carrier,
    tracking_number, prepared_at, shipped_at, delivered_at, confirmed_at, discount,
    points_used, payable, cancel_reason, cancelled_at
FROM partner_orders;

CREATE TABLE order_items_new (
    id               INTEGER PRIMARY KEY,
    order_id         INTEGER NOT NULL REFERENCES orders (id),
    partner_order_id INTEGER NOT NULL REFERENCES partner_orders_new (id),
    user_id          INTEGER NOT NULL,
    product_id       INTEGER NOT NULL REFERENCES products (id),
    quantity         INTEGER NOT NULL CHECK (quantity > 0),
    unit_price       INTEGER NOT NULL CHECK (unit_price >= 0),
    line_total       INTEGER NOT NULL CHECK (line_total = quantity * unit_price),
    UNIQUE (order_id, product_id)
);
INSERT INTO order_items_new
SELECT id, order_id, partner_order_id, user_id, product_id, quantity, unit_price, line_total
FROM order_items;

DROP TABLE order_items;
DROP TABLE partner_orders;
ALTER TABLE partner_orders_new RENAME TO partner_orders;
ALTER TABLE order_items_new RENAME TO order_items;
CREATE INDEX order_items_product_user ON order_items (product_id, user_id);
CREATE INDEX partner_orders_partner ON partner_orders (partner_id, id);
CREATE INDEX partner_orders_partner_status ON partner_orders (partner_id, status, id);
