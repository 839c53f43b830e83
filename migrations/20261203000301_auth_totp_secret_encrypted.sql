-- TOTP secrets encrypted with the user's data key (AES-256-GCM, common::crypto), so erasure
-- shreds them with the rest. `totp_secret` stays readable for rows enrolled before this
-- migration; every new enrolment writes only `totp_secret_enc` and clears it.
ALTER TABLE users ADD COLUMN totp_secret_enc bytea;
