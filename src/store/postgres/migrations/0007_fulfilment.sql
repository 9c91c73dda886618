-- Fulfilment (issue 10), PostgreSQL dialect. Same schema as
-- sqlite/migrations/0007_fulfilment.sql.
--
-- Partner orders move paid → preparing → shipped → delivered before the purchase is
-- confirmed; each keeps its partner's commission rate as it was at placement (what
-- settlement charges), and the order records when its last part was delivered (what the
-- automatic confirmation counts from).

ALTER TABLE partner_orders
    ADD COLUMN commission_rate_bps BIGINT,
    ADD COLUMN carrier             TEXT,
    ADD COLUMN tracking_number     TEXT,
    ADD COLUMN prepared_at         BIGINT,
    ADD COLUMN shipped_at          BIGINT,
    ADD COLUMN delivered_at        BIGINT,
    ADD COLUMN confirmed_at        BIGINT;

-- Orders placed before this migration take their partner's rate of today: the best there is.
UPDATE partner_orders po SET commission_rate_bps = p.commission_rate_bps
FROM partners p WHERE p.id = po.partner_id;

-- Purchases confirmed before fulfilment existed: the buyer's confirmation is the record of
-- their delivery, so both take the confirmation's time (the order's last update).
UPDATE partner_orders po SET delivered_at = o.updated_at, confirmed_at = o.updated_at
FROM orders o WHERE o.id = po.order_id AND po.status = 'confirmed';

ALTER TABLE partner_orders
    ALTER COLUMN commission_rate_bps SET NOT NULL,
    ADD CONSTRAINT partner_orders_commission_rate_bps
        CHECK (commission_rate_bps BETWEEN 0 AND 10000),
    ADD CONSTRAINT partner_orders_status CHECK (status IN ('pending_payment', 'paid',
        'preparing', 'shipped', 'delivered', 'confirmed', 'cancelled', 'refunded')),
    -- A shipment is a carrier and a tracking number, given together when it ships.
    ADD CONSTRAINT partner_orders_shipment CHECK (
        (carrier IS NULL) = (shipped_at IS NULL)
        AND (tracking_number IS NULL) = (shipped_at IS NULL)),
    -- Each step leaves its time behind; later statuses keep the earlier times.
    ADD CONSTRAINT partner_orders_step_times CHECK (
        (status <> 'preparing' OR prepared_at IS NOT NULL)
        AND (status <> 'shipped' OR shipped_at IS NOT NULL)
        AND (status NOT IN ('delivered', 'confirmed') OR delivered_at IS NOT NULL)
        AND (confirmed_at IS NOT NULL) = (status = 'confirmed'));

-- When the last of the order's parts was delivered; NULL while one is left to deliver.
ALTER TABLE orders ADD COLUMN delivered_at BIGINT;
UPDATE orders SET delivered_at = updated_at WHERE status = 'confirmed';

-- The sweeper's automatic confirmation now counts from the last delivery, not payment.
DROP INDEX orders_confirm_due;
CREATE INDEX orders_confirm_due ON orders (status, delivered_at);

-- A partner's listing, newest first: all of its orders, or those in one status.
CREATE INDEX partner_orders_partner ON partner_orders (partner_id, id);
CREATE INDEX partner_orders_partner_status ON partner_orders (partner_id, status, id);
