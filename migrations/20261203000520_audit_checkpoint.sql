-- log-archiver moves audit entries past the hot window to Cloud Storage (gzip NDJSON chunks,
-- verified by reading back and recomputing their chain) and only then deletes them here, so
-- the trail does not grow in the main database forever. Each archived chunk leaves a
-- checkpoint: its last seq and hash (the prev_hash the first remaining entry must carry) and
-- the object holding it. The verifier starts from the latest checkpoint instead of the genesis
-- value. Checkpoints are append-only like the trail.
CREATE TABLE audit_checkpoint (
    seq         bigint PRIMARY KEY,
    hash        text NOT NULL,
    object      text NOT NULL,
    archived_at timestamptz NOT NULL DEFAULT now()
);

-- A checkpoint must name an entry as it is (while that entry is still here: a restore loads
-- checkpoints whose entries are long gone) and move forward.
CREATE FUNCTION audit_checkpoint_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        RAISE EXCEPTION 'audit_checkpoint is append-only';
    END IF;
    IF EXISTS (SELECT 1 FROM audit_log WHERE seq = NEW.seq AND hash <> NEW.hash) THEN
        RAISE EXCEPTION 'audit_checkpoint % does not match audit_log entry %', NEW.hash, NEW.seq;
    END IF;
    IF EXISTS (SELECT 1 FROM audit_checkpoint WHERE seq >= NEW.seq) THEN
        RAISE EXCEPTION 'audit_checkpoint % is not after the latest one', NEW.seq;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER audit_checkpoint_guard BEFORE INSERT OR UPDATE OR DELETE ON audit_checkpoint
    FOR EACH ROW EXECUTE FUNCTION audit_checkpoint_guard();
CREATE FUNCTION audit_checkpoint_no_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_checkpoint is append-only';
END $$;
CREATE TRIGGER audit_checkpoint_no_truncate BEFORE TRUNCATE ON audit_checkpoint
    FOR EACH STATEMENT EXECUTE FUNCTION audit_checkpoint_no_truncate();

-- The trail: UPDATE stays refused, and TRUNCATE; DELETE only of entries at or before the latest
-- checkpoint (log-archiver inserts the checkpoint and deletes in one transaction). The trigger
-- keeps its name (row level now), so switching it off is still one statement.
DROP TRIGGER audit_log_append_only ON audit_log;
CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE'
       AND OLD.seq <= COALESCE((SELECT max(seq) FROM audit_checkpoint), 0) THEN
        RETURN OLD;
    END IF;
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'audit_log is append-only: entry % is not archived', OLD.seq;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only';
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE FUNCTION audit_log_no_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END $$;
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_no_truncate();
