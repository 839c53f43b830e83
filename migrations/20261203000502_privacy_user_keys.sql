-- Envelope encryption (common::crypto): one data key per user, stored only wrapped by the
-- wrapping key (Cloud KMS in production) with the wrapping key's id and version. Erasure
-- deletes the row, which makes every ciphertext of the user unreadable.
CREATE TABLE user_keys (
    user_id      uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    key_id       uuid NOT NULL UNIQUE,
    kek_id       text NOT NULL,
    kek_version  bigint NOT NULL,
    wrapped      bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    rewrapped_at timestamptz
);

-- The diary's free-text comment, encrypted with the user's data key (AAD: table, column, id).
-- `input` no longer carries the comment for entries written from now on.
ALTER TABLE diary_entries ADD COLUMN comment_ct bytea;
