-- Questionnaire responses and their scores. The raw answers are kept with every score's
-- components, band, flags and algorithm version, so a response can be re-scored when a rule
-- changes while the earlier result stays (REFERENCE §1.2.6).

CREATE TABLE questionnaire_responses (
    id            uuid PRIMARY KEY,                 -- client-supplied or generated; makes submit idempotent
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    instrument    text NOT NULL CHECK (instrument IN ('isi', 'psqi', 'ess', 'dbas-16', 'phq-9', 'gad-7', 'who-5')),
    questionnaire text NOT NULL,                    -- definition id and version answered, e.g. isi-1
    answers       jsonb NOT NULL,                   -- validated { linkId: value }
    authored_at   timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX questionnaire_responses_history ON questionnaire_responses (user_id, instrument, authored_at DESC);

CREATE TABLE questionnaire_scores (
    id           uuid PRIMARY KEY,
    response_id  uuid NOT NULL REFERENCES questionnaire_responses (id) ON DELETE CASCADE,
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    algorithm    text NOT NULL,                     -- e.g. psqi@1.0.0
    total_code   text NOT NULL,
    total        double precision,                  -- NULL when the rules give none (PSQI)
    band         text,
    band_display text,
    components   jsonb NOT NULL,
    flags        jsonb NOT NULL,
    current      boolean NOT NULL DEFAULT true,     -- false once superseded by a re-score
    scored_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX questionnaire_scores_one_current ON questionnaire_scores (response_id) WHERE current;
CREATE INDEX questionnaire_scores_response ON questionnaire_scores (response_id, scored_at DESC);

-- Answers that need clinician follow-up whatever the total (PHQ-9 item 9 > 0, REFERENCE §1.5).
-- An outbox: a publisher sends unpublished rows on and sets published_at.
CREATE TABLE safety_events (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    response_id     uuid NOT NULL REFERENCES questionnaire_responses (id) ON DELETE CASCADE,
    score_id        uuid NOT NULL REFERENCES questionnaire_scores (id) ON DELETE CASCADE,
    flag            text NOT NULL,
    item            text,
    detail          text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    published_at    timestamptz,
    acknowledged_at timestamptz,
    UNIQUE (response_id, flag)
);
CREATE INDEX safety_events_unpublished ON safety_events (created_at) WHERE published_at IS NULL;
