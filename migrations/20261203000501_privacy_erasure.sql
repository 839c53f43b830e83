-- Erasure (GDPR Art. 17, TR-03161-3 O.Data_7). The ledger holds no health data and no user
-- id: only a hash of the id, when, and which stores were cleaned. A restored backup is
-- re-cleaned by hashing each restored user id and erasing those the ledger names again.
CREATE TABLE erasure_ledger (
    subject_hash text PRIMARY KEY,
    requested_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    stores       jsonb NOT NULL,
    pending      jsonb NOT NULL DEFAULT '[]'
);

-- Only while an erasure is not complete: the id needed to finish it. Deleted when the
-- verification pass succeeds; no foreign key, because the account row is gone by then.
CREATE TABLE erasure_pending (
    user_id    uuid PRIMARY KEY,
    stores     jsonb NOT NULL,
    attempts   integer NOT NULL DEFAULT 1,
    updated_at timestamptz NOT NULL DEFAULT now()
);
