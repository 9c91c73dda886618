-- Partial cancellation (issue 10), SQLite dialect. Same schema as
-- postgres/migrations/0009_partial_cancel.sql.
--
-- Each partner order carries its share of the order's coupon discount and points, and what
-- is left to pay for it, so that cancelling one part refunds exactly that part
-- (`domain::shares`). Placement writes the shares; this backfills existing rows with the
-- same rule: the discount pro rata by subtotal, the points pro rata by what each subtotal
-- has left after its discount share, both by largest remainder (ties to the lowest partner
-- id, the order placement lists parts in), so each order's shares add up to its own.
--
-- SQLite multiplies in 64-bit integers: the backfill is exact while discount × subtotal
-- stays below 2^63 (a 9,000,000,000-won subtotal with a 1,000,000,000-won discount);
-- `stampede verify` reports any order whose shares do not add up.

ALTER TABLE partner_orders ADD COLUMN discount INTEGER NOT NULL DEFAULT 0
    CHECK (discount >= 0);
ALTER TABLE partner_orders ADD COLUMN points_used INTEGER NOT NULL DEFAULT 0
    CHECK (points_used >= 0);
ALTER TABLE partner_orders ADD COLUMN payable INTEGER NOT NULL DEFAULT 0
    CHECK (payable >= 0);

UPDATE partner_orders SET discount = (
    WITH q AS (
        SELECT po.id, po.order_id, po.partner_id, o.discount AS amount,
            CASE WHEN o.total = 0 THEN 0 ELSE o.discount * po.subtotal / o.total END AS base,
            CASE WHEN o.total = 0 THEN 0 ELSE o.discount * po.subtotal % o.total END AS rem
        FROM partner_orders po JOIN orders o ON o.id = po.order_id
        WHERE po.order_id = partner_orders.order_id),
    r AS (
        SELECT id, base, amount - SUM(base) OVER () AS leftover,
            ROW_NUMBER() OVER (ORDER BY rem DESC, partner_id) AS place
        FROM q)
    SELECT base + CASE WHEN place <= leftover THEN 1 ELSE 0 END FROM r
    WHERE r.id = partner_orders.id);

UPDATE partner_orders SET points_used = (
    WITH q AS (
        SELECT po.id, po.partner_id, o.points_used AS amount,
            CASE WHEN o.total - o.discount = 0 THEN 0
                 ELSE o.points_used * (po.subtotal - po.discount) / (o.total - o.discount)
            END AS base,
            CASE WHEN o.total - o.discount = 0 THEN 0
                 ELSE o.points_used * (po.subtotal - po.discount) % (o.total - o.discount)
            END AS rem
        FROM partner_orders po JOIN orders o ON o.id = po.order_id
        WHERE po.order_id = partner_orders.order_id),
    r AS (
        SELECT id, base, amount - SUM(base) OVER () AS leftover,
            ROW_NUMBER() OVER (ORDER BY rem DESC, partner_id) AS place
        FROM q)
    SELECT base + CASE WHEN place <= leftover THEN 1 ELSE 0 END FROM r
    WHERE r.id = partner_orders.id);

UPDATE partner_orders SET payable = subtotal - discount - points_used;

-- Why and when a seller (or admin) cancelled the part before it shipped.
ALTER TABLE partner_orders ADD COLUMN cancel_reason TEXT;
ALTER TABLE partner_orders ADD COLUMN cancelled_at INTEGER;

-- Points refunded so far of an order's spent hold: a cancelled part refunds its share
-- while the hold stays `spent`; refunding the whole order refunds the rest and the hold
-- becomes `refunded` (refunded = amount).
ALTER TABLE point_holds ADD COLUMN refunded INTEGER NOT NULL DEFAULT 0
    CHECK (refunded >= 0 AND refunded <= amount);
UPDATE point_holds SET refunded = amount WHERE status = 'refunded';

-- Money given back is booked as a `refunded` payment row in the refund's transaction
-- (what the gateway is asked to return; a failed gateway call is retried from
-- `payment.refund_failed`). Orders refunded before this migration get theirs now.
INSERT INTO payments (order_id, payment_key, amount, outcome, detail, created_at)
SELECT o.id,
    COALESCE((SELECT p.payment_key FROM payments p
              WHERE p.order_id = o.id AND p.outcome = 'approved' ORDER BY p.id LIMIT 1), ''),
    o.payable, 'refunded', 'refund of the order (backfilled)', o.updated_at
FROM orders o WHERE o.status = 'refunded';
