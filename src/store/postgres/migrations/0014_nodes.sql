-- Each serving node's heartbeat (issue 13), postgres dialect. Same schema as
-- sqlite/migrations/0014_nodes.sql.
--
-- Every node writes its row every second: the operations page lists the nodes seen, and sums
-- the counters each node publishes in `stats` (a JSON list of metric samples, written and
-- read by `app::operations`). Rows of nodes gone for a day are deleted by the beats.
CREATE TABLE nodes (
    id         TEXT    PRIMARY KEY,
    started_at BIGINT  NOT NULL,
    seen_at    BIGINT  NOT NULL,
    draining   BOOLEAN NOT NULL DEFAULT FALSE,
    stats      TEXT    NOT NULL
);
CREATE INDEX nodes_seen ON nodes (seen_at);
