-- Stampede schema, SQLite dialect. Timestamps are Unix epoch milliseconds (INTEGER);
-- money is integer won; rates are basis points. Ledgers are append-only.

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE partners (
    id                  INTEGER PRIMARY KEY,
    name                TEXT    NOT NULL,
    commission_rate_bps INTEGER NOT NULL CHECK (commission_rate_bps BETWEEN 0 AND 10000),
    created_at          INTEGER NOT NULL
);

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    email         TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('buyer', 'seller', 'admin')),
    partner_id    INTEGER REFERENCES partners (id),
    created_at    INTEGER NOT NULL,
    CHECK ((role = 'seller') = (partner_id IS NOT NULL))
);

-- One row per login session; the hash of the current refresh token rotates in place
-- so a replayed old token is recognised (reuse revokes the whole session).
CREATE TABLE sessions (
    id                 INTEGER PRIMARY KEY,
    user_id            INTEGER NOT NULL REFERENCES users (id),
    refresh_hash       TEXT    NOT NULL UNIQUE,
    previous_hash      TEXT,
    refresh_expires_at INTEGER NOT NULL,
    revoked_at         INTEGER,
    created_at         INTEGER NOT NULL
);
CREATE INDEX sessions_previous_hash ON sessions (previous_hash);

CREATE TABLE revoked_tokens (
    jti        TEXT    PRIMARY KEY,
    expires_at INTEGER NOT NULL
);

CREATE TABLE products (
    id           INTEGER PRIMARY KEY,
    partner_id   INTEGER NOT NULL REFERENCES partners (id),
    name         TEXT    NOT NULL,
    price        INTEGER NOT NULL CHECK (price >= 0),
    release_at   INTEGER NOT NULL,
    max_per_user INTEGER CHECK (max_per_user IS NULL OR max_per_user > 0),
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX products_release_at ON products (release_at, id);

-- The stock account: available = on_hand - held.
CREATE TABLE stock (
    product_id INTEGER PRIMARY KEY REFERENCES products (id),
    on_hand    INTEGER NOT NULL CHECK (on_hand >= 0),
    held       INTEGER NOT NULL CHECK (held >= 0 AND held <= on_hand)
);

CREATE TABLE stock_movements (
    id            INTEGER PRIMARY KEY,
    product_id    INTEGER NOT NULL REFERENCES products (id),
    kind          TEXT    NOT NULL CHECK (kind IN ('inbound', 'hold', 'release', 'commit', 'return', 'adjust')),
    quantity      INTEGER NOT NULL,
    order_id      INTEGER,
    memo          TEXT,
    on_hand_after INTEGER NOT NULL,
    held_after    INTEGER NOT NULL,
    created_at    INTEGER NOT NULL
);
CREATE INDEX stock_movements_product ON stock_movements (product_id, id);
CREATE INDEX stock_movements_order ON stock_movements (order_id);

CREATE TABLE orders (
    id              INTEGER PRIMARY KEY,
    user_id         INTEGER NOT NULL REFERENCES users (id),
    idempotency_key TEXT    NOT NULL,
    request_hash    TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('pending_payment', 'paid', 'confirmed', 'cancelled', 'refunded')),
    total           INTEGER NOT NULL CHECK (total >= 0),
    discount        INTEGER NOT NULL CHECK (discount >= 0),
    points_used     INTEGER NOT NULL CHECK (points_used >= 0),
    payable         INTEGER NOT NULL CHECK (payable >= 0),
    pay_by          INTEGER NOT NULL,
    -- When the payment was accepted; NULL until paid. Purchase confirmation is due
    -- `auto_confirm_after_secs` later.
    paid_at         INTEGER,
    cancel_reason   TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    UNIQUE (user_id, idempotency_key),
    CHECK (payable = total - discount - points_used),
    CHECK ((paid_at IS NOT NULL) = (status IN ('paid', 'confirmed', 'refunded')))
);
CREATE INDEX orders_user ON orders (user_id, id);
CREATE INDEX orders_due ON orders (status, pay_by);
CREATE INDEX orders_confirm_due ON orders (status, paid_at);

CREATE TABLE partner_orders (
    id         INTEGER PRIMARY KEY,
    order_id   INTEGER NOT NULL REFERENCES orders (id),
    partner_id INTEGER NOT NULL REFERENCES partners (id),
    status     TEXT    NOT NULL,
    subtotal   INTEGER NOT NULL CHECK (subtotal >= 0),
    UNIQUE (order_id, partner_id)
);

CREATE TABLE order_items (
    id               INTEGER PRIMARY KEY,
    order_id         INTEGER NOT NULL REFERENCES orders (id),
    partner_order_id INTEGER NOT NULL REFERENCES partner_orders (id),
    user_id          INTEGER NOT NULL,
    product_id       INTEGER NOT NULL REFERENCES products (id),
    quantity         INTEGER NOT NULL CHECK (quantity > 0),
    unit_price       INTEGER NOT NULL CHECK (unit_price >= 0),
    line_total       INTEGER NOT NULL CHECK (line_total = quantity * unit_price),
    UNIQUE (order_id, product_id)
);
CREATE INDEX order_items_product_user ON order_items (product_id, user_id);

CREATE TABLE payments (
    id          INTEGER PRIMARY KEY,
    order_id    INTEGER NOT NULL REFERENCES orders (id),
    payment_key TEXT    NOT NULL,
    amount      INTEGER NOT NULL,
    outcome     TEXT    NOT NULL CHECK (outcome IN ('approved', 'declined', 'amount_mismatch', 'refunded', 'voided')),
    detail      TEXT,
    created_at  INTEGER NOT NULL
);
CREATE INDEX payments_order ON payments (order_id);

CREATE TABLE outbox (
    id             INTEGER PRIMARY KEY,
    aggregate_type TEXT    NOT NULL,
    aggregate_id   INTEGER NOT NULL,
    event_type     TEXT    NOT NULL,
    payload        TEXT    NOT NULL,
    created_at     INTEGER NOT NULL
);
