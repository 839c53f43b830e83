-- Audit trail of access to health data (TR-03161-3, GDPR Art. 5(2) and 30): who, whose data,
-- what, through which function, when. Ids only, and those as the erasure pseudonym (hash), so
-- the trail survives an erasure without naming the person. Each entry carries the hash of the
-- previous one; the verifier recomputes the chain, so a removed or altered entry shows.
CREATE TABLE audit_log (
    seq         bigserial PRIMARY KEY,
    at          timestamptz NOT NULL,
    actor_ref   text NOT NULL,
    subject_ref text NOT NULL,
    action      text NOT NULL,
    function    text NOT NULL,
    object_id   uuid,
    prev_hash   text NOT NULL,
    hash        text NOT NULL UNIQUE
);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
