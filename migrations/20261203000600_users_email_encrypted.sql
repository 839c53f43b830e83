-- The e-mail address is contact data (TR-03161-3 O.Data_1): it is stored only encrypted under
-- the user's data key (`email_ct`, AAD `users.email:<id>`, so erasure's crypto-shredding makes
-- it unreadable), and found through a keyed blind index (`email_lookup`: HMAC-SHA256 of the
-- trimmed, lower-cased address with the server secret EMAIL_LOOKUP_KEY, 64 hex digits), which
-- also keeps addresses unique. `email_ct` is NULL only for rows made without an address
-- (fixtures, synthetic load users); the auth function always sets it.
--
-- Existing rows: SQL holds neither the data keys nor the index secret, so a plaintext address
-- cannot be converted here. There is no production data; a database that already holds
-- accounts is refused with this message instead of losing their addresses silently. Locally:
-- `scripts/run-local.sh --fresh`; elsewhere recreate the database (the accounts re-register).

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM users) THEN
        RAISE EXCEPTION 'users holds plaintext e-mail addresses that this migration cannot encrypt; recreate the database (locally: scripts/run-local.sh --fresh)';
    END IF;
END
$$;

ALTER TABLE users
    ADD COLUMN email_ct bytea,
    ADD COLUMN email_lookup text NOT NULL CHECK (email_lookup ~ '^[0-9a-f]{64}$');
CREATE UNIQUE INDEX users_email_lookup_key ON users (email_lookup);
DROP INDEX users_email_key;
ALTER TABLE users DROP COLUMN email;
