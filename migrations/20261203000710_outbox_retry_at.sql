-- A row whose publish failed waits before its next attempt (exponential, 1 s doubling to at most
-- 5 min), so rows that keep failing (a deleted topic, a missing permission) no longer fill
-- every batch and hold back all the rows behind them. NULL: due now.
ALTER TABLE outbox ADD COLUMN retry_at timestamptz;
-- The drainer keeps rows of one ordering key in order: a row waits while an older row of its
-- key waits.
CREATE INDEX outbox_ordering_key ON outbox (ordering_key, id) WHERE ordering_key IS NOT NULL;
