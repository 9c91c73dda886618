-- Settlement as a ledger, and returns after confirmation (issue 10), PostgreSQL dialect.
-- Same schema as sqlite/migrations/0010_settlement_ledger.sql.
--
-- A partner order enters the sellers' books when its purchase is confirmed: a `sale`
-- entry, written by the confirmation's transaction. A confirmed part the seller takes back
-- leaves them with a `refund` entry, written by the return's transaction: the sale's
-- amounts negated. Entries are never changed nor deleted. A business day's statement for a
-- partner is the sum of the partner's entries recorded that day, and its lines are those
-- entries: settlement writes one row per partner, not one per purchase, and a statement
-- reads the same whatever happens later, since what happens later is a new entry on a
-- later day (a refund after a statement is a negative line on the next one).

CREATE TABLE settlement_entries (
    id                  BIGSERIAL PRIMARY KEY,
    partner_id          BIGINT NOT NULL,
    partner_order_id    BIGINT NOT NULL,
    order_id            BIGINT NOT NULL,
    kind                TEXT   NOT NULL CHECK (kind IN ('sale', 'refund')),
    subtotal            BIGINT NOT NULL,
    commission_rate_bps BIGINT NOT NULL CHECK (commission_rate_bps BETWEEN 0 AND 10000),
    commission          BIGINT NOT NULL,
    net                 BIGINT NOT NULL CHECK (net = subtotal - commission),
    -- When the purchase was confirmed (the same on its sale and its refund).
    confirmed_at        BIGINT NOT NULL,
    -- When the entry was written: which business day's statement it is on.
    recorded_at         BIGINT NOT NULL,
    CHECK ((kind = 'sale') = (subtotal >= 0)),
    CHECK (kind = 'refund' OR recorded_at = confirmed_at),
    UNIQUE (partner_order_id, kind)
);
-- A day's statements: a range scan of this index alone.
CREATE INDEX settlement_entries_day ON settlement_entries (recorded_at)
    INCLUDE (partner_id, subtotal, commission);
-- A statement's lines: one partner's entries over its day, in the order they were written.
CREATE INDEX settlement_entries_partner ON settlement_entries (partner_id, recorded_at, id);

-- Every purchase confirmed so far has its sale entry, whether or not a statement has
-- covered it (the lines of the statements made before are exactly these).
INSERT INTO settlement_entries (partner_id, partner_order_id, order_id, kind, subtotal,
    commission_rate_bps, commission, net, confirmed_at, recorded_at)
SELECT partner_id, id, order_id, 'sale', subtotal, commission_rate_bps,
    (subtotal * commission_rate_bps + 5000) / 10000,
    subtotal - (subtotal * commission_rate_bps + 5000) / 10000, confirmed_at, confirmed_at
FROM partner_orders WHERE confirmed_at IS NOT NULL
ORDER BY confirmed_at, id;

-- The instants a statement (and a settled day) covers, [period_from, period_to): its
-- lines are its partner's entries recorded in between. Statements made before this
-- migration take the span of the lines they had, which holds exactly those lines.
ALTER TABLE settlements ADD COLUMN period_from BIGINT, ADD COLUMN period_to BIGINT;
UPDATE settlements s SET period_from = l.first, period_to = l.last + 1
FROM (SELECT settlement_id, MIN(confirmed_at) AS first, MAX(confirmed_at) AS last
      FROM settlement_lines GROUP BY settlement_id) l
WHERE l.settlement_id = s.id;
UPDATE settlements SET period_from = 0, period_to = 1 WHERE period_from IS NULL;
ALTER TABLE settlements
    ALTER COLUMN period_from SET NOT NULL,
    ALTER COLUMN period_to SET NOT NULL,
    ADD CONSTRAINT settlements_period CHECK (period_from < period_to);

-- A settled day's bounds, for `stampede verify` to find entries no statement covers.
-- NULL on days settled before this migration.
ALTER TABLE settlement_days ADD COLUMN period_from BIGINT, ADD COLUMN period_to BIGINT;

DROP TABLE settlement_lines;
DROP INDEX partner_orders_confirmed;

-- A confirmed part the seller takes back: when and why. It becomes `refunded` and keeps
-- its confirmation time.
ALTER TABLE partner_orders ADD COLUMN returned_at BIGINT, ADD COLUMN return_reason TEXT;
ALTER TABLE partner_orders
    DROP CONSTRAINT partner_orders_step_times,
    ADD CONSTRAINT partner_orders_step_times CHECK (
        (status <> 'preparing' OR prepared_at IS NOT NULL)
        AND (status <> 'shipped' OR shipped_at IS NOT NULL)
        AND (status NOT IN ('delivered', 'confirmed') OR delivered_at IS NOT NULL)
        AND (status <> 'confirmed' OR confirmed_at IS NOT NULL)
        AND (confirmed_at IS NULL OR status IN ('confirmed', 'refunded'))
        AND (returned_at IS NOT NULL) = (status = 'refunded' AND confirmed_at IS NOT NULL)
        AND (return_reason IS NULL) = (returned_at IS NULL));
