-- The scale-out event path (issue 9), SQLite dialect. Same tables as
-- postgres/migrations/0006_event_stream.sql.

-- How far a relay has published the outbox: the last event id the broker acknowledged,
-- with every event before it. Only ever moves forward (a conditional upsert), so a relay that lost its
-- lease cannot move it back.
CREATE TABLE relay_progress (
    name          TEXT   PRIMARY KEY,
    last_event_id BIGINT NOT NULL CHECK (last_event_id >= 0),
    updated_at    BIGINT NOT NULL
);

-- Messages a consumer gave up on after its retries, kept for operators (list, replay,
-- discard) and for the dead-letter retry job. One row per message and handler: a message
-- that fails again after a replay updates its row.
CREATE TABLE dead_letters (
    id              INTEGER PRIMARY KEY,
    handler         TEXT    NOT NULL,
    topic           TEXT    NOT NULL,
    kafka_partition INTEGER NOT NULL,
    kafka_offset    BIGINT  NOT NULL,
    message_key     TEXT,
    message         TEXT    NOT NULL,
    -- The outbox id, when the message was a readable event.
    event_id        BIGINT,
    error           TEXT    NOT NULL,
    -- Tries before it was dead-lettered, then one more per automatic retry or replay.
    attempts        INTEGER NOT NULL CHECK (attempts >= 1),
    -- Automatic retries by the dead-letter job (it stops at its maximum).
    retries         INTEGER NOT NULL DEFAULT 0 CHECK (retries >= 0),
    status          TEXT    NOT NULL CHECK (status IN ('open', 'replayed', 'discarded')),
    first_failed_at BIGINT  NOT NULL,
    last_failed_at  BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    UNIQUE (handler, topic, kafka_partition, kafka_offset)
);
-- The retry job's and the operators' view: open letters, oldest first.
CREATE INDEX dead_letters_open ON dead_letters (id) WHERE status = 'open';
