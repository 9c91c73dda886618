-- Loyalty points (issue 4, item 3), SQLite dialect. Same tables, checks and indexes as
-- postgres/migrations/0004_points.sql. The rules are in src/domain/points.rs.

-- The account: available = balance - held. Locked before its lots by every writer.
CREATE TABLE point_accounts (
    user_id    INTEGER PRIMARY KEY REFERENCES users (id),
    balance    INTEGER NOT NULL CHECK (balance >= 0),
    held       INTEGER NOT NULL CHECK (held >= 0 AND held <= balance),
    updated_at INTEGER NOT NULL
);

-- Every point lives in a lot (an earn, a grant or a positive adjustment). Holds, spends and
-- expiry take from lots; balance = SUM(remaining) and held = SUM(held) of the user's lots.
CREATE TABLE point_lots (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES point_accounts (user_id),
    amount     INTEGER NOT NULL CHECK (amount > 0),
    remaining  INTEGER NOT NULL CHECK (remaining >= 0 AND remaining <= amount),
    held       INTEGER NOT NULL CHECK (held >= 0 AND held <= remaining),
    -- NULL never expires.
    expires_at INTEGER,
    source     TEXT   NOT NULL CHECK (source IN ('earn', 'grant', 'adjust')),
    -- The confirmed order that earned it.
    order_id   INTEGER REFERENCES orders (id),
    created_at INTEGER NOT NULL
);
-- A buyer's lots with points left, soonest expiry first (holds, negative adjustments).
CREATE INDEX point_lots_user ON point_lots (user_id, expires_at, id) WHERE remaining > 0;
-- A confirmed purchase earns once, whatever events announce it.
CREATE UNIQUE INDEX point_lots_earned_order ON point_lots (order_id) WHERE source = 'earn';
-- The expiry job's scan.
CREATE INDEX point_lots_due ON point_lots (expires_at)
    WHERE remaining > 0 AND expires_at IS NOT NULL;

-- Append-only. Amounts are positive except a negative `adjust`; the effect of each kind on
-- the account and its lot is `PointsKind::effect`.
CREATE TABLE point_ledger (
    id              INTEGER PRIMARY KEY,
    user_id         INTEGER NOT NULL REFERENCES point_accounts (user_id),
    kind            TEXT   NOT NULL CHECK (kind IN ('earn', 'hold', 'release', 'spend', 'expire', 'adjust', 'refund')),
    amount          INTEGER NOT NULL CHECK (amount <> 0 AND (amount > 0 OR kind = 'adjust')),
    lot_id          INTEGER REFERENCES point_lots (id),
    order_id        INTEGER REFERENCES orders (id),
    reason          TEXT,
    -- The admin operation's key (grant, adjust); unique per admin in point_operations,
    -- since one negative adjustment writes a row per lot it takes from.
    idempotency_key TEXT,
    created_at      INTEGER NOT NULL
);
CREATE INDEX point_ledger_user ON point_ledger (user_id, id);
CREATE INDEX point_ledger_order ON point_ledger (order_id, kind) WHERE order_id IS NOT NULL;

-- The points of one order: held → released, or held → spent → refunded.
CREATE TABLE point_holds (
    order_id   INTEGER PRIMARY KEY REFERENCES orders (id),
    user_id    INTEGER NOT NULL REFERENCES point_accounts (user_id),
    amount     INTEGER NOT NULL CHECK (amount > 0),
    status     TEXT   NOT NULL CHECK (status IN ('held', 'released', 'spent', 'refunded')),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- An admin's grant or adjustment, once per (admin, Idempotency-Key): a replay with the same
-- request hash answers the stored result, another request is refused.
CREATE TABLE point_operations (
    id              INTEGER PRIMARY KEY,
    admin_id        INTEGER NOT NULL REFERENCES users (id),
    idempotency_key TEXT   NOT NULL,
    request_hash    TEXT   NOT NULL,
    -- Not a foreign key: an unknown user is refused after the key is claimed, in the same
    -- (rolled back) transaction.
    user_id         INTEGER NOT NULL,
    kind            TEXT   NOT NULL CHECK (kind IN ('grant', 'adjust')),
    amount          INTEGER NOT NULL CHECK (amount <> 0),
    reason          TEXT   NOT NULL,
    expires_at      INTEGER,
    balance_after   INTEGER NOT NULL,
    held_after      INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    UNIQUE (admin_id, idempotency_key)
);

-- Events a consumer has handled, written in the same transaction as their effect: a
-- redelivered event, or one seen by several nodes, does nothing the second time.
CREATE TABLE processed_events (
    consumer     TEXT   NOT NULL,
    event_id     INTEGER NOT NULL,
    processed_at INTEGER NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
-- The earning consumer's catch-up scan of confirmed purchases.
CREATE INDEX outbox_order_confirmed ON outbox (id) WHERE event_type = 'order.confirmed';

-- Jobs that one node runs at a time (the points expiry): a conditional upsert takes a lease
-- that is free, expired, or already the caller's.
CREATE TABLE leases (
    name       TEXT   PRIMARY KEY,
    holder     TEXT   NOT NULL,
    expires_at INTEGER NOT NULL
);
