-- Partial cancellation (issue 10), PostgreSQL dialect. Same schema as
-- sqlite/migrations/0009_partial_cancel.sql.
--
-- Each partner order carries its share of the order's coupon discount and points, and what
-- is left to pay for it, so that cancelling one part refunds exactly that part
-- (`domain::shares`). Placement writes the shares; this backfills existing rows with the
-- same rule: the discount pro rata by subtotal, the points pro rata by what each subtotal
-- has left after its discount share, both by largest remainder (ties to the lowest partner
-- id, the order placement lists parts in), so each order's shares add up to its own.
-- Products are taken in NUMERIC, so the backfill is exact for any amount.

ALTER TABLE partner_orders
    ADD COLUMN discount    BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN points_used BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN payable     BIGINT NOT NULL DEFAULT 0;

UPDATE partner_orders SET discount = (
    WITH q AS (
        SELECT po.id, po.partner_id, o.discount AS amount,
            CASE WHEN o.total = 0 THEN 0
                 ELSE div(CAST(o.discount AS NUMERIC) * po.subtotal, o.total) END AS base,
            CASE WHEN o.total = 0 THEN 0
                 ELSE mod(CAST(o.discount AS NUMERIC) * po.subtotal, o.total) END AS rem
        FROM partner_orders po JOIN orders o ON o.id = po.order_id
        WHERE po.order_id = partner_orders.order_id),
    r AS (
        SELECT id, base, amount - SUM(base) OVER () AS leftover,
            ROW_NUMBER() OVER (ORDER BY rem DESC, partner_id) AS place
        FROM q)
    SELECT CAST(base + CASE WHEN place <= leftover THEN 1 ELSE 0 END AS BIGINT) FROM r
    WHERE r.id = partner_orders.id);

UPDATE partner_orders SET points_used = (
    WITH q AS (
        SELECT po.id, po.partner_id, o.points_used AS amount,
            CASE WHEN o.total - o.discount = 0 THEN 0
                 ELSE div(CAST(o.points_used AS NUMERIC) * (po.subtotal - po.discount),
                          o.total - o.discount) END AS base,
            CASE WHEN o.total - o.discount = 0 THEN 0
                 ELSE mod(CAST(o.points_used AS NUMERIC) * (po.subtotal - po.discount),
                          o.total - o.discount) END AS rem
        FROM partner_orders po JOIN orders o ON o.id = po.order_id
        WHERE po.order_id = partner_orders.order_id),
    r AS (
        SELECT id, base, amount - SUM(base) OVER () AS leftover,
            ROW_NUMBER() OVER (ORDER BY rem DESC, partner_id) AS place
        FROM q)
    SELECT CAST(base + CASE WHEN place <= leftover THEN 1 ELSE 0 END AS BIGINT) FROM r
    WHERE r.id = partner_orders.id);

UPDATE partner_orders SET payable = subtotal - discount - points_used;

-- Why and when a seller (or admin) cancelled the part before it shipped.
ALTER TABLE partner_orders ADD COLUMN cancel_reason TEXT;
ALTER TABLE partner_orders ADD COLUMN cancelled_at BIGINT;

ALTER TABLE partner_orders
    ADD CONSTRAINT partner_orders_shares CHECK (discount >= 0 AND points_used >= 0
        AND payable >= 0 AND payable = subtotal - discount - points_used);

-- Points refunded so far of an order's spent hold: a cancelled part refunds its share
-- while the hold stays `spent`; refunding the whole order refunds the rest and the hold
-- becomes `refunded` (refunded = amount).
ALTER TABLE point_holds ADD COLUMN refunded BIGINT NOT NULL DEFAULT 0;
UPDATE point_holds SET refunded = amount WHERE status = 'refunded';
ALTER TABLE point_holds ADD CONSTRAINT point_holds_refunded
    CHECK (refunded >= 0 AND refunded <= amount);

-- Money given back is booked as a `refunded` payment row in the refund's transaction
-- (what the gateway is asked to return; a failed gateway call is retried from
-- `payment.refund_failed`). Orders refunded before this migration get theirs now.
INSERT INTO payments (order_id, payment_key, amount, outcome, detail, created_at)
SELECT o.id,
    COALESCE((SELECT p.payment_key FROM payments p
              WHERE p.order_id = o.id AND p.outcome = 'approved' ORDER BY p.id LIMIT 1), ''),
    o.payable, 'refunded', 'refund of the order (backfilled)', o.updated_at
FROM orders o WHERE o.status = 'refunded';
