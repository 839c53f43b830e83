-- Accounts, diary entries and wearable imports.
-- Every time is an instant (timestamptz) plus the offset the user was on (seconds east of UTC)
-- and the IANA zone, so durations come from instants and the local view can be rebuilt.

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    email         text NOT NULL,
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE diary_entries (
    id                     uuid PRIMARY KEY,            -- client-supplied, makes create idempotent
    user_id                uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    night                  date NOT NULL,               -- local date of the final awakening
    zone                   text NOT NULL,
    into_bed               timestamptz NOT NULL,
    into_bed_offset        integer NOT NULL,
    lights_out             timestamptz NOT NULL,
    lights_out_offset      integer NOT NULL,
    final_awakening        timestamptz NOT NULL,
    final_awakening_offset integer NOT NULL,
    out_of_bed             timestamptz NOT NULL,
    out_of_bed_offset      integer NOT NULL,
    sol_min                integer NOT NULL CHECK (sol_min >= 0),
    awakenings             integer NOT NULL CHECK (awakenings >= 0),
    waso_min               integer NOT NULL CHECK (waso_min >= 0),
    tib_min                integer NOT NULL,
    tst_min                integer NOT NULL,
    twak_min               integer NOT NULL,
    se_pct                 double precision NOT NULL,
    nap_min                integer NOT NULL DEFAULT 0,
    input                  jsonb NOT NULL,              -- the entry as sent (quality, naps, intake, comment)
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    CHECK (into_bed <= lights_out AND lights_out < final_awakening AND final_awakening <= out_of_bed)
);
CREATE INDEX diary_entries_user_night ON diary_entries (user_id, night);

CREATE TABLE imports (
    id             uuid PRIMARY KEY,
    user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    source         text NOT NULL,
    content_sha256 bytea NOT NULL,
    zone           text NOT NULL,
    sessions       integer NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, source, content_sha256)
);

-- One row per sleep period a source reported, keyed by the source's own ids so that
-- re-importing the same data (in the same or another file) changes nothing.
CREATE TABLE sleep_sessions (
    id           uuid PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    import_id    uuid NOT NULL REFERENCES imports (id) ON DELETE CASCADE,
    source       text NOT NULL,
    source_key   text NOT NULL,                          -- stable key of the period within the source
    device       text,
    record_ids   text[] NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('main', 'nap', 'rest')),
    night        date NOT NULL,
    start_at     timestamptz NOT NULL,
    start_offset integer NOT NULL,
    end_at       timestamptz NOT NULL,
    end_offset   integer NOT NULL,
    in_bed_secs  bigint,
    segments     jsonb NOT NULL,                         -- [{stage, start, end}]
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, source, source_key),
    CHECK (start_at <= end_at)
);
CREATE INDEX sleep_sessions_user_night ON sleep_sessions (user_id, night);
