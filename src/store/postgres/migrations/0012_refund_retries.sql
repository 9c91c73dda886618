-- Refunds retried without Kafka (issue 11), postgres dialect. Same schema as
-- sqlite/migrations/0012_refund_retries.sql.
--
-- The in-process refund retrier's scan of failed gateway refunds, as
-- `outbox_order_confirmed` is the earning job's: the few such events among all the others.
CREATE INDEX outbox_refund_failed ON outbox (id) WHERE event_type = 'payment.refund_failed';
