-- Accounts for TR-03161-3 O.Auth/O.Pass: e-mail verification, TOTP second factor with
-- single-use recovery codes, and single-use e-mailed tokens (verification, password reset).
-- Sessions and refresh tokens live in Redis, not here.

ALTER TABLE users ADD COLUMN email_verified_at timestamptz;
ALTER TABLE users ADD COLUMN password_changed_at timestamptz;
-- RFC 6238 shared secret (base32). Pending until the first valid code activates it.
ALTER TABLE users ADD COLUMN totp_secret text;
ALTER TABLE users ADD COLUMN totp_enabled_at timestamptz;
-- Last accepted time step, so a code is accepted at most once (RFC 6238 §5.2).
ALTER TABLE users ADD COLUMN totp_last_step bigint;

CREATE TABLE auth_recovery_codes (
    user_id   uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash text NOT NULL,                       -- SHA-256 hex of the code
    used_at   timestamptz,
    PRIMARY KEY (user_id, code_hash)
);

CREATE TABLE auth_tokens (
    token_hash text PRIMARY KEY,                   -- SHA-256 hex; the token is only in the e-mail
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    text NOT NULL CHECK (purpose IN ('verify_email', 'reset_password')),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX auth_tokens_user ON auth_tokens (user_id, purpose);
