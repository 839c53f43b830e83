-- sleep-analysis keeps its own copy of the nights it analyses, filled from events
-- (event-carried state), so it never reads another function's tables.
CREATE TABLE analysis_nights (
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    night           date NOT NULL,
    source          text NOT NULL CHECK (source IN ('diary', 'device')),
    zone            text NOT NULL,
    final_awakening timestamptz NOT NULL,
    final_offset    integer NOT NULL,
    tib_min         integer NOT NULL,
    tst_min         integer NOT NULL,
    sol_min         integer,
    waso_min        integer,
    revision        timestamptz NOT NULL,
    deleted         boolean NOT NULL DEFAULT false,
    PRIMARY KEY (user_id, night, source)
);

-- One row per business fact processed; redeliveries and re-publications only count up.
CREATE TABLE processed_events (
    business_key     text PRIMARY KEY,
    first_message_id text NOT NULL,
    duplicates       integer NOT NULL DEFAULT 0,
    processed_at     timestamptz NOT NULL DEFAULT now()
);

-- The prescription derived from each analysed week (for the week after it).
CREATE TABLE sleep_windows (
    user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    week_start     date NOT NULL,
    params_version text NOT NULL,
    nights         integer NOT NULL,
    tib_mean_min   integer NOT NULL,
    tst_mean_min   integer NOT NULL,
    se_pct         double precision NOT NULL,
    sol_mean_min   integer,
    waso_mean_min  integer,
    change         text NOT NULL,
    reason         text NOT NULL,
    window_min     integer,
    bedtime        text,
    wake_time      text,
    fingerprint    text NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, week_start)
);

-- Messages acknowledged without processing (bad schema, unknown version), by reason.
CREATE TABLE undeliverable_events (
    message_id  text PRIMARY KEY,
    reason      text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
