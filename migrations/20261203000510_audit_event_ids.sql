-- The audit trail also keeps the `audit.recorded` events the other functions publish. Pub/Sub
-- delivers at least once, so each event is kept under its event id and appends once however
-- often it arrives. Entries the privacy function appends itself have none. The column is not
-- part of the chain hash (existing entries keep their hashes); the append-only trigger keeps
-- it from being changed.
ALTER TABLE audit_log ADD COLUMN event_id uuid UNIQUE;
