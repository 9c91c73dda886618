-- Stampede schema, PostgreSQL dialect. Same tables, columns, checks and indexes as
-- sqlite/migrations/0001_init.sql: timestamps are Unix epoch milliseconds (BIGINT), money is
-- integer won, rates are basis points. Ledgers are append-only.

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE partners (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                TEXT   NOT NULL,
    commission_rate_bps BIGINT NOT NULL CHECK (commission_rate_bps BETWEEN 0 AND 10000),
    created_at          BIGINT NOT NULL
);

-- The unique constraint keeps PostgreSQL's default name, users_email_key: the store maps a
-- violation of exactly that constraint to Conflict("email_taken").
CREATE TABLE users (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email         TEXT   NOT NULL UNIQUE,
    password_hash TEXT   NOT NULL,
    role          TEXT   NOT NULL CHECK (role IN ('buyer', 'seller', 'admin')),
    partner_id    BIGINT REFERENCES partners (id),
    created_at    BIGINT NOT NULL,
    CHECK ((role = 'seller') = (partner_id IS NOT NULL))
);

-- One row per login session; the hash of the current refresh token rotates in place
-- so a replayed old token is recognised (reuse revokes the whole session).
CREATE TABLE sessions (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id            BIGINT NOT NULL REFERENCES users (id),
    refresh_hash       TEXT   NOT NULL UNIQUE,
    previous_hash      TEXT,
    refresh_expires_at BIGINT NOT NULL,
    revoked_at         BIGINT,
    created_at         BIGINT NOT NULL
);
CREATE INDEX sessions_previous_hash ON sessions (previous_hash);

CREATE TABLE revoked_tokens (
    jti        TEXT   PRIMARY KEY,
    expires_at BIGINT NOT NULL
);

CREATE TABLE products (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    partner_id   BIGINT NOT NULL REFERENCES partners (id),
    name         TEXT   NOT NULL,
    price        BIGINT NOT NULL CHECK (price >= 0),
    release_at   BIGINT NOT NULL,
    max_per_user BIGINT CHECK (max_per_user IS NULL OR max_per_user > 0),
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX products_release_at ON products (release_at, id);

-- The stock account: available = on_hand - held.
CREATE TABLE stock (
    product_id BIGINT PRIMARY KEY REFERENCES products (id),
    on_hand    BIGINT NOT NULL CHECK (on_hand >= 0),
    held       BIGINT NOT NULL CHECK (held >= 0 AND held <= on_hand)
);

CREATE TABLE stock_movements (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    product_id    BIGINT NOT NULL REFERENCES products (id),
    kind          TEXT   NOT NULL CHECK (kind IN ('inbound', 'hold', 'release', 'commit', 'return', 'adjust')),
    quantity      BIGINT NOT NULL,
    order_id      BIGINT,
    memo          TEXT,
    on_hand_after BIGINT NOT NULL,
    held_after    BIGINT NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX stock_movements_product ON stock_movements (product_id, id);
CREATE INDEX stock_movements_order ON stock_movements (order_id);

CREATE TABLE orders (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id         BIGINT NOT NULL REFERENCES users (id),
    idempotency_key TEXT   NOT NULL,
    request_hash    TEXT   NOT NULL,
    status          TEXT   NOT NULL CHECK (status IN ('pending_payment', 'paid', 'confirmed', 'cancelled', 'refunded')),
    total           BIGINT NOT NULL CHECK (total >= 0),
    discount        BIGINT NOT NULL CHECK (discount >= 0),
    points_used     BIGINT NOT NULL CHECK (points_used >= 0),
    payable         BIGINT NOT NULL CHECK (payable >= 0),
    pay_by          BIGINT NOT NULL,
    -- When the payment was accepted; NULL until paid. Purchase confirmation is due
    -- `auto_confirm_after_secs` later.
    paid_at         BIGINT,
    cancel_reason   TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    UNIQUE (user_id, idempotency_key),
    CHECK (payable = total - discount - points_used),
    CHECK ((paid_at IS NOT NULL) = (status IN ('paid', 'confirmed', 'refunded')))
);
CREATE INDEX orders_user ON orders (user_id, id);
CREATE INDEX orders_due ON orders (status, pay_by);
CREATE INDEX orders_confirm_due ON orders (status, paid_at);

CREATE TABLE partner_orders (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id   BIGINT NOT NULL REFERENCES orders (id),
    partner_id BIGINT NOT NULL REFERENCES partners (id),
    status     TEXT   NOT NULL,
    subtotal   BIGINT NOT NULL CHECK (subtotal >= 0),
    UNIQUE (order_id, partner_id)
);

CREATE TABLE order_items (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id         BIGINT NOT NULL REFERENCES orders (id),
    partner_order_id BIGINT NOT NULL REFERENCES partner_orders (id),
    user_id          BIGINT NOT NULL,
    product_id       BIGINT NOT NULL REFERENCES products (id),
    quantity         BIGINT NOT NULL CHECK (quantity > 0),
    unit_price       BIGINT NOT NULL CHECK (unit_price >= 0),
    line_total       BIGINT NOT NULL CHECK (line_total = quantity * unit_price),
    UNIQUE (order_id, product_id)
);
CREATE INDEX order_items_product_user ON order_items (product_id, user_id);

CREATE TABLE payments (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id    BIGINT NOT NULL REFERENCES orders (id),
    payment_key TEXT   NOT NULL,
    amount      BIGINT NOT NULL,
    outcome     TEXT   NOT NULL CHECK (outcome IN ('approved', 'declined', 'amount_mismatch', 'refunded', 'voided')),
    detail      TEXT,
    created_at  BIGINT NOT NULL
);
CREATE INDEX payments_order ON payments (order_id);

CREATE TABLE outbox (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    aggregate_type TEXT   NOT NULL,
    aggregate_id   BIGINT NOT NULL,
    event_type     TEXT   NOT NULL,
    payload        TEXT   NOT NULL,
    created_at     BIGINT NOT NULL
);
