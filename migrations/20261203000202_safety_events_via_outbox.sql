-- safety.flagged now leaves through the shared outbox in the same statement as the score, so
-- safety_events is the clinician follow-up record only.
DROP INDEX IF EXISTS safety_events_unpublished;
ALTER TABLE safety_events DROP COLUMN published_at;
