-- Scheduled jobs: one row per task attempt (the run report), and the backup verification of
-- each logical date. A second trigger for the same date finds its row and does no more work.

CREATE TABLE job_runs (
    job          text NOT NULL,
    execution    text NOT NULL,
    task_index   integer NOT NULL,
    attempt      integer NOT NULL,
    task_count   integer NOT NULL,
    logical_date date NOT NULL,
    outcome      text NOT NULL CHECK (outcome IN ('succeeded', 'skipped', 'failed')),
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz NOT NULL,
    figures      jsonb NOT NULL,
    failures     jsonb NOT NULL,
    PRIMARY KEY (job, execution, task_index, attempt)
);
CREATE INDEX job_runs_job_date ON job_runs (job, logical_date);

CREATE TABLE backup_verifications (
    logical_date   date PRIMARY KEY,
    backup_id      text NOT NULL,
    passed         boolean NOT NULL,
    backup_taken_at timestamptz NOT NULL,
    restore_secs   double precision,
    figures        jsonb NOT NULL,
    failures       jsonb NOT NULL,
    execution      text NOT NULL,
    verified_at    timestamptz NOT NULL DEFAULT now()
);
