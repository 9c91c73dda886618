-- First-come coupon campaigns (issue 4, item 1), PostgreSQL dialect. Same tables, checks and
-- indexes as sqlite/migrations/0003_coupons.sql.

-- The campaign account: `issued` of `total_quantity`. Terms never change after creation.
CREATE TABLE coupon_campaigns (
    id               BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name             TEXT    NOT NULL,
    discount_type    TEXT    NOT NULL CHECK (discount_type IN ('fixed', 'percent')),
    discount_value   BIGINT  NOT NULL CHECK (discount_value > 0),
    max_discount     BIGINT  CHECK (max_discount IS NULL OR max_discount > 0),
    min_order_amount BIGINT  CHECK (min_order_amount IS NULL OR min_order_amount >= 0),
    total_quantity   BIGINT  NOT NULL CHECK (total_quantity > 0),
    issued           BIGINT  NOT NULL DEFAULT 0 CHECK (issued >= 0 AND issued <= total_quantity),
    issue_starts_at  BIGINT  NOT NULL,
    issue_ends_at    BIGINT,
    valid_days       BIGINT  CHECK (valid_days IS NULL OR valid_days BETWEEN 1 AND 3650),
    created_at       BIGINT  NOT NULL,
    CHECK (discount_type = 'fixed' OR discount_value <= 100),
    CHECK (discount_type = 'percent' OR max_discount IS NULL),
    CHECK (issue_ends_at IS NULL OR issue_ends_at > issue_starts_at)
);

-- The campaign's ledger: one row per issued coupon, never two per buyer. `expired` is not
-- stored: it is derived from `expires_at` when read.
CREATE TABLE user_coupons (
    id          BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campaign_id BIGINT  NOT NULL REFERENCES coupon_campaigns (id),
    user_id     BIGINT  NOT NULL REFERENCES users (id),
    status      TEXT    NOT NULL CHECK (status IN ('issued', 'held', 'used')),
    -- The order holding or having used the coupon (orders take coupons in a later step).
    order_id    BIGINT  REFERENCES orders (id),
    issued_at   BIGINT  NOT NULL,
    expires_at  BIGINT,
    updated_at  BIGINT  NOT NULL,
    UNIQUE (campaign_id, user_id),
    CHECK (order_id IS NOT NULL OR status = 'issued')
);
CREATE INDEX user_coupons_user ON user_coupons (user_id, id);
