-- The durable waiting room (issue 12), sqlite dialect. Same schema as
-- postgres/migrations/0013_waiting_room.sql.
--
-- A ticket is an order attempt that waits for a placement writer. It is kept here so a
-- node's restart or crash loses none: the one node holding the `waiting-room` lease admits
-- tickets in `seq` order (first in, first out across the cluster) and writes each outcome
-- back. `status`: waiting → admitted (handed to a writer) → done; a takeover puts admitted
-- tickets back to waiting, and placing them again is idempotent (same buyer and key).
CREATE TABLE waiting_tickets (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT    NOT NULL UNIQUE,
    user_id         INTEGER NOT NULL REFERENCES users (id),
    idempotency_key TEXT    NOT NULL,
    -- The validated order request (`store::waiting_room` encodes it).
    request         TEXT    NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'waiting'
                    CHECK (status IN ('waiting', 'admitted', 'done')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    -- Once done: placed, replayed, rejected (with `rejection`) or failed.
    outcome         TEXT    CHECK (outcome IN ('placed', 'replayed', 'rejected', 'failed')),
    order_id        INTEGER REFERENCES orders (id),
    rejection       TEXT,
    created_at      INTEGER NOT NULL,
    finished_at     INTEGER,
    CHECK ((status = 'done') = (outcome IS NOT NULL))
);
-- A retry of a waiting attempt (same buyer and key) gets the same ticket back.
CREATE UNIQUE INDEX waiting_tickets_open ON waiting_tickets (user_id, idempotency_key)
    WHERE status <> 'done';
-- The head of the line, and the admission scan.
CREATE INDEX waiting_tickets_line ON waiting_tickets (status, seq);
-- Pruning finished tickets.
CREATE INDEX waiting_tickets_finished ON waiting_tickets (finished_at) WHERE status = 'done';
