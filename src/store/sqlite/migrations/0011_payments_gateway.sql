-- A real payment gateway (issue 11), sqlite dialect. Same schema as
-- postgres/migrations/0011_payments_gateway.sql.
--
-- A checkout is the attempt to pay an order, recorded before the gateway is asked: the
-- payment id the buyer pays under at the gateway, bound to one order for good. It stays
-- `open` until the order is paid with it (`paid`), the captured money is given back
-- because the order could not be paid any more or the amounts differed (`voided`), or
-- the order stopped being payable with nothing captured (`abandoned`). The reconciler
-- resolves what a crash, a timeout or a lost answer left open. An order has at most one
-- open checkout: asking for one again returns it.
CREATE TABLE checkouts (
    id          INTEGER PRIMARY KEY,
    order_id    INTEGER NOT NULL REFERENCES orders (id),
    payment_id  TEXT   NOT NULL UNIQUE,
    amount      INTEGER NOT NULL CHECK (amount >= 0),
    status      TEXT   NOT NULL CHECK (status IN ('open', 'paid', 'voided', 'abandoned')),
    created_at  INTEGER NOT NULL,
    resolved_at INTEGER,
    CHECK ((resolved_at IS NULL) = (status = 'open'))
);
CREATE UNIQUE INDEX checkouts_one_open ON checkouts (order_id) WHERE status = 'open';
CREATE INDEX checkouts_open_age ON checkouts (created_at) WHERE status = 'open';

-- One payment, one order. The simulator approved any key, so an older database may hold
-- the same key approved for several orders: those keys meant nothing, and all but the
-- first are renamed so that the rule can hold from here on.
UPDATE payments SET payment_key = payment_key || '#' || id
WHERE outcome = 'approved' AND id > (
    SELECT MIN(earlier.id) FROM payments earlier
    WHERE earlier.outcome = 'approved' AND earlier.payment_key = payments.payment_key
);
CREATE UNIQUE INDEX payments_one_approved_key ON payments (payment_key) WHERE outcome = 'approved';

-- Webhooks already processed, by their `webhook-id` (Standard Webhooks): a redelivery
-- changes nothing.
CREATE TABLE webhook_receipts (
    webhook_id  TEXT   PRIMARY KEY,
    event_type  TEXT   NOT NULL,
    received_at INTEGER NOT NULL
);
