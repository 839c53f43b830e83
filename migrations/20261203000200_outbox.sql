-- Transactional outbox: an event is written in the same transaction as the change it reports
-- and published to Pub/Sub after the commit by the function's drainer; a Pub/Sub outage only
-- delays it. Rows are deleted once published.
CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    event_id     uuid NOT NULL UNIQUE,
    topic        text NOT NULL,
    payload      jsonb NOT NULL,
    ordering_key text,
    attempts     integer NOT NULL DEFAULT 0,
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now()
);
