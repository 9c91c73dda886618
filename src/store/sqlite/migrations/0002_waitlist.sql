-- Waitlists of sold-out products (issue 3, item 5), SQLite dialect. Same table, checks and
-- indexes as postgres/migrations/0002_waitlist.sql.

CREATE TABLE waitlist_entries (
    id         INTEGER PRIMARY KEY,
    product_id INTEGER NOT NULL REFERENCES products (id),
    user_id    INTEGER NOT NULL REFERENCES users (id),
    quantity   INTEGER NOT NULL CHECK (quantity > 0),
    status     TEXT    NOT NULL CHECK (status IN ('waiting', 'offered', 'lapsed', 'skipped', 'left', 'fulfilled')),
    -- The offer's order: set when offered, kept when the offer lapses or is fulfilled.
    order_id   INTEGER REFERENCES orders (id),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    CHECK (order_id IS NOT NULL OR status NOT IN ('offered', 'fulfilled'))
);
-- One active entry (waiting or holding an offer) per buyer and product.
CREATE UNIQUE INDEX waitlist_entries_active ON waitlist_entries (product_id, user_id)
    WHERE status IN ('waiting', 'offered');
-- The line of a product: its first waiting entry, and positions.
CREATE INDEX waitlist_entries_line ON waitlist_entries (product_id, id)
    WHERE status = 'waiting';
-- Offers to settle once their order is paid, cancelled or expired.
CREATE INDEX waitlist_entries_offered ON waitlist_entries (order_id)
    WHERE status = 'offered';
CREATE INDEX waitlist_entries_user ON waitlist_entries (user_id, id);
