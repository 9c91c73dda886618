-- Seller settlement (issue 10), SQLite dialect. Same schema as
-- postgres/migrations/0008_settlement.sql.
--
-- One statement per partner and business day, with one line per partner order whose
-- purchase was confirmed that day. Running a day twice changes nothing: the statement's
-- key (partner_id, business_date) refuses the second one, and a partner order is on at
-- most one sale line. A statement is never edited.

CREATE TABLE settlements (
    id            INTEGER PRIMARY KEY,
    partner_id    INTEGER NOT NULL REFERENCES partners (id),
    -- YYYY-MM-DD in the settlement time zone: text order is date order.
    business_date TEXT    NOT NULL CHECK (length(business_date) = 10),
    gross         INTEGER NOT NULL,
    commission    INTEGER NOT NULL,
    net           INTEGER NOT NULL CHECK (net = gross - commission),
    line_count    INTEGER NOT NULL CHECK (line_count >= 0),
    created_at    INTEGER NOT NULL,
    UNIQUE (partner_id, business_date)
);
-- A partner's statements, newest day first.
CREATE INDEX settlements_partner_date ON settlements (partner_id, business_date);

-- Lines copy what they settle (the partner order's subtotal and rate), so a statement
-- reads the same whatever happens to the order later. `kind` keeps room for the negative
-- `refund` lines of partial cancellation: a refund after its statement is a line on a
-- later statement, and each partner order has at most one line of each kind. No foreign
-- key to partner_orders or orders: partner orders are never deleted, and a check per line
-- would be a lookup per row of a million-line day.
CREATE TABLE settlement_lines (
    id                  INTEGER PRIMARY KEY,
    settlement_id       INTEGER NOT NULL REFERENCES settlements (id),
    kind                TEXT    NOT NULL CHECK (kind IN ('sale', 'refund')),
    partner_order_id    INTEGER NOT NULL,
    order_id            INTEGER NOT NULL,
    subtotal            INTEGER NOT NULL,
    commission_rate_bps INTEGER NOT NULL CHECK (commission_rate_bps BETWEEN 0 AND 10000),
    commission          INTEGER NOT NULL,
    net                 INTEGER NOT NULL CHECK (net = subtotal - commission),
    confirmed_at        INTEGER NOT NULL,
    CHECK ((kind = 'sale') = (subtotal >= 0)),
    UNIQUE (partner_order_id, kind)
);
-- A statement's lines in partner order order (its page, its CSV, its sums).
CREATE INDEX settlement_lines_settlement ON settlement_lines (settlement_id, partner_order_id);

-- Each business day settled, with or without statements: where the daily job resumes.
CREATE TABLE settlement_days (
    business_date TEXT    PRIMARY KEY CHECK (length(business_date) = 10),
    statements    INTEGER NOT NULL CHECK (statements >= 0),
    settled_at    INTEGER NOT NULL
);

-- What a day's settlement reads, and only that: the confirmed partner orders by time of
-- confirmation, with every column it copies (the id is the rowid), so it is a range scan
-- of one index that never visits the table.
CREATE INDEX partner_orders_confirmed
    ON partner_orders (confirmed_at, partner_id, order_id, subtotal, commission_rate_bps)
    WHERE confirmed_at IS NOT NULL;

-- The last run of each job that runs on one node at a time under its lease (the
-- scheduler's, DESIGN §4): when it started, how long it took, how it ended and on which
-- node, for GET /api/v1/admin/jobs. One row per job, overwritten by each run.
CREATE TABLE job_runs (
    name        TEXT    PRIMARY KEY,
    holder      TEXT    NOT NULL,
    started_at  INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL CHECK (duration_ms >= 0),
    outcome     TEXT    NOT NULL CHECK (outcome IN ('ok', 'failed')),
    -- The failure, shortened; NULL when it went well.
    error       TEXT,
    CHECK ((error IS NULL) = (outcome = 'ok'))
);
