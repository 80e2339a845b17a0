-- GET /orders?status=PENDING&older_than=.. and the orders_pending_stale gauge: only the
-- few orders still pending are indexed.
CREATE INDEX order_summaries_pending_idx ON order_summaries (placed_at) WHERE status = 'PENDING';
