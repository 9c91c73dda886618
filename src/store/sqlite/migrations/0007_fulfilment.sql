-- Fulfilment (issue 10), SQLite dialect. Same schema as
-- postgres/migrations/0007_fulfilment.sql.
--
-- Partner orders move paid → preparing → shipped → delivered before the purchase is
-- confirmed; each keeps its partner's commission rate as it was at placement (what
-- settlement charges), and the order records when its last part was delivered (what the
-- automatic confirmation counts from).
--
-- SQLite cannot add a CHECK to a table, so partner_orders is rebuilt, and order_items
-- with it: dropping the old partner_orders while order_items still references it would
-- break a foreign key that this migration's transaction cannot switch off. The new
-- order_items references the new table by its temporary name, which the rename then
-- carries over.

CREATE TABLE partner_orders_new (
    id                  INTEGER PRIMARY KEY,
    order_id            INTEGER NOT NULL REFERENCES orders (id),
    partner_id          INTEGER NOT NULL REFERENCES partners (id),
    status              TEXT    NOT NULL CHECK (status IN ('pending_payment', 'paid',
        'preparing', 'shipped', 'delivered', 'confirmed', 'cancelled', 'refunded')),
    subtotal            INTEGER NOT NULL CHECK (subtotal >= 0),
    commission_rate_bps INTEGER NOT NULL CHECK (commission_rate_bps BETWEEN 0 AND 10000),
    carrier             TEXT,
    tracking_number     TEXT,
    prepared_at         INTEGER,
    shipped_at          INTEGER,
    delivered_at        INTEGER,
    confirmed_at        INTEGER,
    UNIQUE (order_id, partner_id),
    -- A shipment is a carrier and a tracking number, given together when it ships.
    CHECK ((carrier IS NULL) = (shipped_at IS NULL)
        AND (tracking_number IS NULL) = (shipped_at IS NULL)),
    -- Each step leaves its time behind; later statuses keep the earlier times.
    CHECK ((status <> 'preparing' OR prepared_at IS NOT NULL)
        AND (status <> 'shipped' OR shipped_at IS NOT NULL)
        AND (status NOT IN ('delivered', 'confirmed') OR delivered_at IS NOT NULL)
        AND (confirmed_at IS NOT NULL) = (status = 'confirmed'))
);

-- Orders placed before this migration take their partner's rate of today: the best there
-- is. Purchases confirmed before fulfilment existed: the buyer's confirmation is the
-- record of their delivery, so both take the confirmation's time (the order's last
-- update).
INSERT INTO partner_orders_new (id, order_id, partner_id, status, subtotal,
    commission_rate_bps, delivered_at, confirmed_at)
SELECT po.id, po.order_id, po.partner_id, po.status, po.subtotal, p.commission_rate_bps,
    CASE WHEN po.status = 'confirmed' THEN o.updated_at END,
    CASE WHEN po.status = 'confirmed' THEN o.updated_at END
FROM partner_orders po
JOIN partners p ON p.id = po.partner_id
JOIN orders o ON o.id = po.order_id;

CREATE TABLE order_items_new (
    id               INTEGER PRIMARY KEY,
    order_id         INTEGER NOT NULL REFERENCES orders (id),
    partner_order_id INTEGER NOT NULL REFERENCES partner_orders_new (id),
    user_id          INTEGER NOT NULL,
    product_id       INTEGER NOT NULL REFERENCES products (id),
    quantity         INTEGER NOT NULL CHECK (quantity > 0),
    unit_price       INTEGER NOT NULL CHECK (unit_price >= 0),
    line_total       INTEGER NOT NULL CHECK (line_total = quantity * unit_price),
    UNIQUE (order_id, product_id)
);
INSERT INTO order_items_new
SELECT id, order_id, partner_order_id, user_id, product_id, quantity, unit_price, line_total
FROM order_items;

DROP TABLE order_items;
DROP TABLE partner_orders;
ALTER TABLE partner_orders_new RENAME TO partner_orders;
ALTER TABLE order_items_new RENAME TO order_items;
CREATE INDEX order_items_product_user ON order_items (product_id, user_id);

-- A partner's listing, newest first: all of its orders, or those in one status.
CREATE INDEX partner_orders_partner ON partner_orders (partner_id, id);
CREATE INDEX partner_orders_partner_status ON partner_orders (partner_id, status, id);

-- When the last of the order's parts was delivered; NULL while one is left to deliver.
ALTER TABLE orders ADD COLUMN delivered_at INTEGER;
UPDATE orders SET delivered_at = updated_at WHERE status = 'confirmed';

-- The sweeper's automatic confirmation now counts from the last delivery, not payment.
DROP INDEX orders_confirm_due;
CREATE INDEX orders_confirm_due ON orders (status, delivered_at);
