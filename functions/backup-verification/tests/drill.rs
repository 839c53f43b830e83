//! The restore drill against real PostgreSQL (a fresh database per test) and fake-gcs-server
//! (`scripts/emulators.sh start gcs`).

use backup_verification::drill::{self, Limits, LocalBackup, PgTools, Verification};
use backup_verification::{Config, cloudsql, erasure};
use chrono::{Duration, Utc};
use clap::Parser as _;
use common::job::Outcome;
use common::storage::{Storage, StorageConfig};
use sqlx::PgPool;

fn storage_host() -> String {
    std::env::var("STORAGE_EMULATOR_HOST").expect(
        "STORAGE_EMULATOR_HOST is not set: run scripts/emulators.sh start gcs and eval \"$(scripts/emulators.sh env)\"",
    )
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// The URL of the test's own database (the server's from DATABASE_URL).
fn url_of(pool: &PgPool) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    drill::with_database(
        &base,
        pool.connect_options().get_database().expect("database"),
    )
}

async fn storage() -> Storage {
    let storage = Storage::connect(
        &StorageConfig {
            storage_emulator_host: Some(storage_host()),
        },
        &unique("drill"),
    )
    .await
    .expect("storage");
    storage.ensure_bucket("drill").await.expect("bucket");
    storage
}

/// 3 users, 60 diary nights, one import with 2 sessions.
async fn seed(pool: &PgPool) {
    sqlx::query(
        "INSERT INTO users (id, email_lookup, password_hash)
         SELECT ('00000000-0000-0000-0000-' || lpad(g::text, 12, '0'))::uuid, encode(sha256(convert_to('u' || g || '@example.org', 'UTF8')), 'hex'), 'x'
         FROM generate_series(1, 3) g",
    )
    .execute(pool)
    .await
    .expect("users");
    sqlx::query(
        "INSERT INTO diary_entries (id, user_id, night, zone, into_bed, into_bed_offset, lights_out,
             lights_out_offset, final_awakening, final_awakening_offset, out_of_bed, out_of_bed_offset,
             sol_min, awakenings, waso_min, tib_min, tst_min, twak_min, se_pct, input)
         SELECT gen_random_uuid(), ('00000000-0000-0000-0000-' || lpad((1 + g % 3)::text, 12, '0'))::uuid,
                date '2026-01-01' + g / 3, 'Europe/Berlin', t, 3600, t + interval '15 min', 3600,
                t + interval '7 hours', 3600, t + interval '7 hours 20 min', 3600, 15, 2, 30, 440, 375, 20, 85.2,
                jsonb_build_object('quality', 3, 'comment', 'night ' || g)
         FROM generate_series(1, 60) g,
              LATERAL (SELECT timestamptz '2025-12-31 22:00+00' + (g / 3) * interval '1 day' AS t) x",
    )
    .execute(pool)
    .await
    .expect("diary");
    sqlx::query(
        "WITH i AS (
             INSERT INTO imports (id, user_id, source, content_sha256, zone, sessions)
             VALUES (gen_random_uuid(), '00000000-0000-0000-0000-000000000001', 'oura', '\\x01', 'Europe/Berlin', 2)
             RETURNING id, user_id)
         INSERT INTO sleep_sessions (id, user_id, import_id, source, source_key, record_ids, kind, night,
                                     start_at, start_offset, end_at, end_offset, segments)
         SELECT gen_random_uuid(), i.user_id, i.id, 'oura', 'k' || g, ARRAY['r' || g], 'main',
                date '2026-01-01' + g, timestamptz '2026-01-01 22:00+00' + g * interval '1 day', 3600,
                timestamptz '2026-01-02 06:00+00' + g * interval '1 day', 3600, '[]'::jsonb
         FROM i, generate_series(1, 2) g",
    )
    .execute(pool)
    .await
    .expect("sessions");
}

fn limits() -> Limits {
    Limits {
        max_age: Duration::hours(26),
        rto: std::time::Duration::from_secs(4 * 3600),
        stale_scratch: Duration::minutes(10),
    }
}

fn work_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(unique("drill"));
    std::fs::create_dir_all(&dir).expect("work dir");
    dir
}

async fn verify(storage: &Storage, pool: &PgPool, backup: &LocalBackup) -> Verification {
    let stored = drill::store_backup(storage, "t", backup)
        .await
        .expect("store");
    let ledger = erasure::ledger(pool).await.expect("ledger");
    drill::verify_backup(
        storage,
        &stored,
        &PgTools::locate(None),
        &url_of(pool),
        &work_dir(),
        &limits(),
        &ledger,
        Utc::now(),
    )
    .await
    .expect("verification ran")
}

async fn scratch_databases(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE datname LIKE 'restore_check_%'")
        .fetch_all(pool)
        .await
        .expect("databases")
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_good_backup_restores_with_every_table_matching_its_snapshot(pool: PgPool) {
    seed(&pool).await;
    let storage = storage().await;
    let backup = drill::take_backup(&url_of(&pool), &PgTools::locate(None), &work_dir(), &[])
        .await
        .expect("backup");
    let d = &backup.description;
    assert_eq!(d.tables["public.diary_entries"].rows, 60);
    assert_eq!(d.tables["public.users"].rows, 3);
    assert_eq!(d.tables["public.sleep_sessions"].rows, 2);
    assert_eq!(d.tables["public.diary_entries"].checksum.len(), 32);
    let source_tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    )
    .fetch_one(&pool)
    .await
    .expect("tables");
    let fks: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_constraint WHERE contype = 'f'")
        .fetch_one(&pool)
        .await
        .expect("fks");
    assert_eq!(d.tables.len() as i64, source_tables);
    assert_eq!(d.foreign_keys, fks);

    let v = verify(&storage, &pool, &backup).await;

    assert_eq!(v.failures, Vec::<String>::new());
    assert!(v.passed());
    assert_eq!(v.tables as i64, source_tables);
    let rows: i64 = d.tables.values().map(|t| t.rows).sum();
    assert_eq!(v.rows, rows);
    assert_eq!(v.bytes, d.bytes);
    assert!(v.restore_secs.expect("restored") > 0.0);
    assert!(v.age_hours < 0.1);
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn the_figures_are_those_of_the_snapshot_not_of_writes_after_it(pool: PgPool) {
    seed(&pool).await;
    let storage = storage().await;
    let backup = drill::take_backup(&url_of(&pool), &PgTools::locate(None), &work_dir(), &[])
        .await
        .expect("backup");
    sqlx::query("DELETE FROM diary_entries WHERE night > date '2026-01-10'")
        .execute(&pool)
        .await
        .expect("later write");

    let v = verify(&storage, &pool, &backup).await;

    assert_eq!(backup.description.tables["public.diary_entries"].rows, 60);
    assert!(v.passed(), "{:?}", v.failures);
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_truncated_dump_fails_the_restore_with_the_reason(pool: PgPool) {
    seed(&pool).await;
    let storage = storage().await;
    let mut backup = drill::take_backup(&url_of(&pool), &PgTools::locate(None), &work_dir(), &[])
        .await
        .expect("backup");
    // Cut the file before it is described, as a dump cut short on disk would be: only the
    // restore can tell.
    let bytes = std::fs::read(&backup.path).expect("dump");
    std::fs::write(&backup.path, &bytes[..bytes.len() * 2 / 3]).expect("truncate");
    backup.description.bytes = (bytes.len() * 2 / 3) as u64;
    backup.description.sha256 = sha256_hex(&bytes[..bytes.len() * 2 / 3]);
    let before = scratch_databases(&pool).await;

    let v = verify(&storage, &pool, &backup).await;

    assert!(!v.passed());
    assert!(
        v.failures.iter().any(|f| f.starts_with("restore failed:")),
        "{:?}",
        v.failures
    );
    // Tests run in parallel and other drills make scratch databases of their own for a few
    // seconds; one left behind by this drill is still there once theirs are gone.
    let mut after = scratch_databases(&pool).await;
    for _ in 0..100 {
        if after.iter().all(|d| before.contains(d)) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        after = scratch_databases(&pool).await;
    }
    assert!(
        after.iter().all(|d| before.contains(d)),
        "scratch database left behind: {after:?}"
    );
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_dump_cut_short_in_the_bucket_fails_its_recorded_checksum(pool: PgPool) {
    seed(&pool).await;
    let storage = storage().await;
    let backup = drill::take_backup(&url_of(&pool), &PgTools::locate(None), &work_dir(), &[])
        .await
        .expect("backup");
    let stored = drill::store_backup(&storage, "t", &backup)
        .await
        .expect("store");
    let bytes = storage.get(&stored.dump_object).await.expect("dump");
    storage
        .put(
            &stored.dump_object,
            bytes[..bytes.len() / 2].to_vec(),
            "application/octet-stream",
            Default::default(),
        )
        .await
        .expect("overwrite");

    let v = drill::verify_backup(
        &storage,
        &stored,
        &PgTools::locate(None),
        &url_of(&pool),
        &work_dir(),
        &limits(),
        &[],
        Utc::now(),
    )
    .await
    .expect("verification ran");

    assert!(
        v.failures
            .iter()
            .any(|f| f.contains("truncated or altered")),
        "{:?}",
        v.failures
    );
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_dump_missing_a_table_fails_with_that_table_named(pool: PgPool) {
    seed(&pool).await;
    let storage = storage().await;
    let backup = drill::take_backup(
        &url_of(&pool),
        &PgTools::locate(None),
        &work_dir(),
        &["--exclude-table=public.job_runs".to_owned()],
    )
    .await
    .expect("backup");

    let v = verify(&storage, &pool, &backup).await;

    assert_eq!(
        v.failures,
        ["table public.job_runs missing from the restored database"]
    );
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_backup_older_than_26_hours_fails_as_stale(pool: PgPool) {
    seed(&pool).await;
    let storage = storage().await;
    let mut backup = drill::take_backup(&url_of(&pool), &PgTools::locate(None), &work_dir(), &[])
        .await
        .expect("backup");
    backup.description.taken_at -= Duration::hours(27);

    let v = verify(&storage, &pool, &backup).await;

    assert_eq!(v.failures.len(), 1, "{:?}", v.failures);
    assert!(
        v.failures[0].starts_with("backup is stale: taken 27.0 h ago, the limit is 26 h"),
        "{:?}",
        v.failures
    );
}

fn config(pool: &PgPool, bucket: &str, extra: &[&str]) -> Config {
    let url = url_of(pool);
    let host = storage_host();
    let work = work_dir();
    let mut args = vec![
        "backup-verification",
        "--database-url",
        &url,
        "--bucket",
        bucket,
        "--storage-emulator-host",
        &host,
        "--create-bucket",
        "--logical-date",
        "2026-12-03",
        "--work-dir",
        work.to_str().expect("utf-8"),
        "--log-format",
        "text",
    ];
    args.extend_from_slice(extra);
    Config::try_parse_from(args).expect("config")
}

async fn records(pool: &PgPool) -> Vec<(String, bool)> {
    sqlx::query_as("SELECT logical_date::text, passed FROM backup_verifications ORDER BY 1")
        .fetch_all(pool)
        .await
        .expect("records")
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn two_triggers_for_the_same_date_make_one_verification_record(pool: PgPool) {
    seed(&pool).await;
    let bucket = unique("job");

    // At the same time: the advisory lock makes one wait for the other, which then finds
    // the record.
    let (a, b) = tokio::join!(
        backup_verification::run(config(&pool, &bucket, &[])),
        backup_verification::run(config(&pool, &bucket, &[])),
    );
    let (first, second) = if a.outcome == Outcome::Skipped {
        (b, a)
    } else {
        (a, b)
    };

    assert_eq!(first.outcome, Outcome::Succeeded, "{:?}", first.failures);
    assert_eq!(first.exit_code(), std::process::ExitCode::SUCCESS);
    assert_eq!(second.outcome, Outcome::Skipped);
    assert_eq!(second.figures["backup_id"], first.figures["backup_id"]);
    assert_eq!(records(&pool).await, [("2026-12-03".to_owned(), true)]);
    let runs: Vec<(String,)> = sqlx::query_as(
        "SELECT outcome FROM job_runs WHERE job = 'backup-verification' ORDER BY outcome",
    )
    .fetch_all(&pool)
    .await
    .expect("runs");
    assert_eq!(runs, [("skipped".to_owned(),), ("succeeded".to_owned(),)]);
    assert!(
        first.figures["restore_secs"]
            .as_f64()
            .expect("restore_secs")
            > 0.0
    );
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_restore_slower_than_the_rto_fails_the_run_and_a_rerun_replaces_the_record(pool: PgPool) {
    seed(&pool).await;
    let bucket = unique("job");

    let failed = backup_verification::run(config(&pool, &bucket, &["--rto-seconds", "0"])).await;

    assert_eq!(failed.outcome, Outcome::Failed);
    assert_eq!(failed.exit_code(), std::process::ExitCode::FAILURE);
    assert!(
        failed
            .failures
            .iter()
            .any(|f| f.contains("more than the RTO of 0 s")),
        "{:?}",
        failed.failures
    );
    assert_eq!(records(&pool).await, [("2026-12-03".to_owned(), false)]);

    let retried = backup_verification::run(config(&pool, &bucket, &[])).await;

    assert_eq!(
        retried.outcome,
        Outcome::Succeeded,
        "{:?}",
        retried.failures
    );
    assert_eq!(records(&pool).await, [("2026-12-03".to_owned(), true)]);
}

#[tokio::test]
async fn the_rest_admin_client_reads_the_instance_and_its_backup_runs() {
    use axum::{Json, Router, routing::get};
    let app = Router::new()
        .route(
            "/v1/projects/p/instances/main",
            get(|| async {
                Json(serde_json::json!({"name": "main", "settings": {"backupConfiguration": {
                    "enabled": true, "pointInTimeRecoveryEnabled": true,
                    "transactionLogRetentionDays": 7,
                    "backupRetentionSettings": {"retentionUnit": "COUNT", "retainedBackups": 30}}}}))
            }),
        )
        .route(
            "/v1/projects/p/instances/main/backupRuns",
            get(|| async {
                Json(serde_json::json!({"items": [
                    {"id": "2", "status": "SUCCESSFUL", "endTime": "2026-12-01T02:10:00Z"},
                    {"id": "1", "status": "FAILED", "endTime": "2026-12-02T02:10:00Z"}]}))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let admin = cloudsql::RestAdmin {
        endpoint: format!("http://{addr}"),
        project: "p".into(),
        instance: "main".into(),
        token_url: None,
        http: reqwest::Client::new(),
    };

    let now = "2026-12-02T03:30:00Z".parse().expect("time");
    let found = cloudsql::verify(&admin, now, Duration::hours(26))
        .await
        .expect("api");

    assert_eq!(found.newest.map(|r| r.id), Some("2".to_owned()));
    assert_eq!(found.failures, Vec::<String>::new());
    let later = "2026-12-02T05:00:00Z".parse().expect("time");
    let stale = cloudsql::verify(&admin, later, Duration::hours(26))
        .await
        .expect("api");
    assert_eq!(
        stale.failures,
        ["newest successful backup 2 is stale: 26.8 h old, the limit is 26 h"]
    );
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn user(n: u32) -> uuid::Uuid {
    format!("00000000-0000-0000-0000-{n:012}")
        .parse()
        .expect("uuid")
}

/// What privacy's erasure leaves behind in the live database: the ledger row (pseudonym only)
/// and none of the person's rows.
async fn erase_live(pool: &PgPool, n: u32) {
    sqlx::query(
        "INSERT INTO erasure_ledger (subject_hash, stores, completed_at) VALUES ($1, '[]', now())",
    )
    .bind(erasure::pseudonym(user(n)))
    .execute(pool)
    .await
    .expect("ledger");
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(user(n))
        .execute(pool)
        .await
        .expect("erase");
}

async fn pending_event(pool: &PgPool, n: u32) {
    sqlx::query(
        "INSERT INTO outbox (event_id, topic, payload) VALUES (gen_random_uuid(), 'sleep-log', $1)",
    )
    .bind(serde_json::json!({"type": "sleep-log.recorded", "data": {"user_id": user(n)}}))
    .execute(pool)
    .await
    .expect("outbox");
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_user_erased_after_the_backup_is_recleaned_in_the_restore_and_reported(pool: PgPool) {
    seed(&pool).await;
    pending_event(&pool, 2).await;
    // Erased before the backup: in the ledger, not in the dump.
    erase_live(&pool, 3).await;
    let storage = storage().await;
    let backup = drill::take_backup(&url_of(&pool), &PgTools::locate(None), &work_dir(), &[])
        .await
        .expect("backup");
    assert_eq!(backup.description.tables["public.users"].rows, 2);
    // Erased after it: the dump still holds user 2 with 20 nights and a pending event.
    erase_live(&pool, 2).await;

    let v = verify(&storage, &pool, &backup).await;

    assert_eq!(v.failures, Vec::<String>::new());
    assert_eq!(v.ledger_subjects, 2);
    assert_eq!(v.erased_found, 1);
    // 20 diary nights + the account + the pending outbox event.
    assert_eq!(v.erased_rows_removed, 22);
    assert_eq!(v.erased_remaining, 0);
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn an_erased_subject_the_reclean_cannot_remove_fails_the_drill(pool: PgPool) {
    seed(&pool).await;
    // A table whose rows survive a DELETE: the re-clean runs, the look afterwards finds them.
    sqlx::query("CREATE TABLE kept_notes (user_id uuid NOT NULL, note text NOT NULL)")
        .execute(&pool)
        .await
        .expect("table");
    sqlx::query("CREATE RULE kept_notes_keep AS ON DELETE TO kept_notes DO INSTEAD NOTHING")
        .execute(&pool)
        .await
        .expect("rule");
    sqlx::query("INSERT INTO kept_notes VALUES ($1, 'n')")
        .bind(user(2))
        .execute(&pool)
        .await
        .expect("note");
    let storage = storage().await;
    let backup = drill::take_backup(&url_of(&pool), &PgTools::locate(None), &work_dir(), &[])
        .await
        .expect("backup");
    erase_live(&pool, 2).await;

    let v = verify(&storage, &pool, &backup).await;

    assert_eq!(
        v.failures,
        [
            r#"1 erased subject(s) still present in the restore after re-cleaning (rows left in {"public.kept_notes": 1})"#
        ]
    );
    assert_eq!(
        (v.ledger_subjects, v.erased_found, v.erased_remaining),
        (1, 1, 1)
    );
    assert_eq!(v.erased_rows_removed, 21);
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn the_run_report_and_record_state_the_erased_subjects_checked(pool: PgPool) {
    seed(&pool).await;
    // An erasure still pending in the live database (the ledger row comes first): the backup
    // the run takes holds the person, and the drill removes them from the restored copy.
    sqlx::query("INSERT INTO erasure_ledger (subject_hash, stores) VALUES ($1, '[\"postgres\"]')")
        .bind(erasure::pseudonym(user(1)))
        .execute(&pool)
        .await
        .expect("ledger");
    sqlx::query("INSERT INTO erasure_ledger (subject_hash, stores) VALUES ($1, '[]')")
        .bind(erasure::pseudonym(uuid::Uuid::new_v4()))
        .execute(&pool)
        .await
        .expect("ledger");

    let report = backup_verification::run(config(&pool, &unique("job"), &[])).await;

    assert_eq!(report.outcome, Outcome::Succeeded, "{:?}", report.failures);
    assert_eq!(report.figures["erasure_ledger_subjects"], 2);
    assert_eq!(report.figures["erased_subjects_recleaned"], 1);
    // User 1: 20 nights, the import, its 2 sessions and the account.
    assert_eq!(report.figures["erased_rows_removed"], 24);
    assert_eq!(report.figures["erased_subjects_remaining"], 0);
    let stored: serde_json::Value = sqlx::query_scalar(
        "SELECT figures FROM backup_verifications WHERE logical_date = '2026-12-03'",
    )
    .fetch_one(&pool)
    .await
    .expect("record");
    assert_eq!(stored["erased_subjects_recleaned"], 1);
    assert_eq!(stored["erased_subjects_remaining"], 0);
    // The live database is untouched: the drill re-cleans only the restored copy.
    let still: i64 = sqlx::query_scalar("SELECT count(*) FROM diary_entries WHERE user_id = $1")
        .bind(user(1))
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(still, 20);
}

async fn stored_and_replaced(pool: &PgPool, storage: &Storage, body: Vec<u8>) -> Verification {
    let backup = drill::take_backup(&url_of(pool), &PgTools::locate(None), &work_dir(), &[])
        .await
        .expect("backup");
    let stored = drill::store_backup(storage, "t", &backup)
        .await
        .expect("store");
    storage
        .put(
            &stored.dump_object,
            body,
            "application/octet-stream",
            Default::default(),
        )
        .await
        .expect("overwrite");
    drill::verify_backup(
        storage,
        &stored,
        &PgTools::locate(None),
        &url_of(pool),
        &work_dir(),
        &limits(),
        &[],
        Utc::now(),
    )
    .await
    .expect("verification ran")
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn an_empty_or_foreign_format_dump_object_fails_with_the_reason(pool: PgPool) {
    seed(&pool).await;
    let storage = storage().await;
    for body in [
        Vec::new(),
        b"--\n-- PostgreSQL database dump\n--\nCREATE TABLE users (id uuid);\n".to_vec(),
    ] {
        let size = body.len();
        let v = stored_and_replaced(&pool, &storage, body).await;
        assert!(
            v.failures[0].starts_with(&format!(
                "dump differs from the one recorded at backup time ({size} of "
            )),
            "{:?}",
            v.failures
        );
        assert!(
            v.failures[1].starts_with("restore failed: pg_restore: error: "),
            "{:?}",
            v.failures
        );
        assert_eq!(v.failures.len(), 2, "{:?}", v.failures);
        assert_eq!(v.tables, 0);
    }
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_dbname_parameter_in_the_server_url_cannot_send_the_restore_into_the_source(
    pool: PgPool,
) {
    seed(&pool).await;
    let storage = storage().await;
    let backup = drill::take_backup(&url_of(&pool), &PgTools::locate(None), &work_dir(), &[])
        .await
        .expect("backup");
    let stored = drill::store_backup(&storage, "t", &backup)
        .await
        .expect("store");
    let source = pool
        .connect_options()
        .get_database()
        .expect("database")
        .to_owned();
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    // libpq and sqlx both let ?dbname= win over the path.
    let server = format!(
        "{}?dbname={source}",
        drill::with_database(&base, "postgres")
    );

    let v = drill::verify_backup(
        &storage,
        &stored,
        &PgTools::locate(None),
        &server,
        &work_dir(),
        &limits(),
        &[],
        Utc::now(),
    )
    .await
    .expect("verification ran");

    assert_eq!(v.failures, Vec::<String>::new());
    assert_eq!(
        v.rows,
        backup
            .description
            .tables
            .values()
            .map(|t| t.rows)
            .sum::<i64>()
    );
}

/// `%XX` for every byte but ASCII letters and digits.
fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_source_database_with_a_63_byte_odd_name_is_backed_up_and_verified(pool: PgPool) {
    // Spaces, quotes, a slash, a question mark, umlauts: 63 bytes, PostgreSQL's limit.
    let mut name = "bv ödd \"näme\" 'x'/?&=%".to_owned();
    while name.len() < 63 {
        name.push('z');
    }
    assert_eq!(name.len(), 63);
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    sqlx::query(&format!("CREATE DATABASE {quoted}"))
        .execute(&pool)
        .await
        .expect("create");
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let url = drill::with_database(&base, &percent(&name));
    let odd = sqlx::PgPool::connect(&url).await.expect("connect");
    common::db::MIGRATOR.run(&odd).await.expect("migrate");
    seed(&odd).await;
    let storage = storage().await;

    let backup = drill::take_backup(&url, &PgTools::locate(None), &work_dir(), &[]).await;
    let v = match &backup {
        Ok(backup) => {
            let stored = drill::store_backup(&storage, "t", backup)
                .await
                .expect("store");
            Some(
                drill::verify_backup(
                    &storage,
                    &stored,
                    &PgTools::locate(None),
                    &url,
                    &work_dir(),
                    &limits(),
                    &[],
                    Utc::now(),
                )
                .await,
            )
        }
        Err(_) => None,
    };
    odd.close().await;
    sqlx::query(&format!("DROP DATABASE {quoted} WITH (FORCE)"))
        .execute(&pool)
        .await
        .expect("drop");

    let backup = backup.expect("backup of the odd name");
    assert_eq!(backup.description.tables["public.diary_entries"].rows, 60);
    let v = v.expect("verified").expect("verification ran");
    assert_eq!(v.failures, Vec::<String>::new());
    assert_eq!(
        v.rows,
        backup
            .description
            .tables
            .values()
            .map(|t| t.rows)
            .sum::<i64>()
    );
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_malformed_or_future_trigger_fails_the_run_is_stored_and_records_nothing(pool: PgPool) {
    let bucket = unique("job");
    let tomorrow = (Utc::now() + Duration::days(1)).date_naive().to_string();
    let in_a_day = (Utc::now() + Duration::days(1)).to_rfc3339();
    let cases: [(Vec<&str>, &str); 3] = [
        (
            vec![
                "--schedule-time",
                "2026-13-45T03:30:00Z",
                "--execution",
                "e-bad",
            ],
            "JOB_SCHEDULE_TIME is not an RFC 3339 time: \"2026-13-45T03:30:00Z\"",
        ),
        (
            vec!["--schedule-time", &in_a_day, "--execution", "e-ahead"],
            "JOB_SCHEDULE_TIME",
        ),
        (vec!["--execution", "e-tomorrow"], "JOB_LOGICAL_DATE"),
    ];
    for (args, reason) in cases {
        let mut config = config(&pool, &bucket, &args);
        if args.len() == 2 {
            config.job.logical_date = Some(tomorrow.parse().expect("date"));
        } else {
            config.job.logical_date = None;
        }
        let report = backup_verification::run(config).await;
        assert_eq!(report.outcome, Outcome::Failed);
        assert_eq!(report.exit_code(), std::process::ExitCode::FAILURE);
        assert!(
            report.failures[0].starts_with(reason),
            "{:?}",
            report.failures
        );
        let stored: Vec<String> = sqlx::query_scalar(
            "SELECT outcome FROM job_runs WHERE job = 'backup-verification' AND execution = $1",
        )
        .bind(args[args.len() - 1])
        .fetch_all(&pool)
        .await
        .expect("runs");
        assert_eq!(stored, ["failed"]);
    }
    assert_eq!(records(&pool).await, Vec::<(String, bool)>::new());
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn two_processes_for_the_same_date_at_once_make_one_record(pool: PgPool) {
    seed(&pool).await;
    let bucket = unique("procs");
    let url = url_of(&pool);
    let work = work_dir();
    let spawn = |execution: &str| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_backup-verification"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", &url)
            .env("BACKUP_BUCKET", &bucket)
            .env("BACKUP_CREATE_BUCKET", "true")
            .env("STORAGE_EMULATOR_HOST", storage_host())
            .env("BACKUP_WORK_DIR", &work)
            .env("CLOUD_RUN_JOB", "backup-verification")
            .env("CLOUD_RUN_EXECUTION", execution)
            .env("JOB_SCHEDULE_TIME", "2026-12-03T03:30:00Z")
            .env("LOG_FORMAT", "json")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .output()
    };
    let (a, b) = tokio::join!(spawn("exec-a"), spawn("exec-b"));
    let (a, b) = (a.expect("a"), b.expect("b"));

    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stdout));
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stdout));
    assert_eq!(records(&pool).await, [("2026-12-03".to_owned(), true)]);
    let runs: Vec<String> = sqlx::query_scalar(
        "SELECT outcome FROM job_runs WHERE job = 'backup-verification' ORDER BY outcome",
    )
    .fetch_all(&pool)
    .await
    .expect("runs");
    assert_eq!(runs, ["skipped", "succeeded"]);
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_drill_killed_mid_restore_leaves_no_scratch_copy_after_the_next_run(pool: PgPool) {
    seed(&pool).await;
    // Enough rows that the restore takes a moment to be caught in.
    sqlx::query(
        "INSERT INTO users (id, email_lookup, password_hash)
         SELECT gen_random_uuid(), encode(sha256(convert_to('bulk' || g || '@example.org', 'UTF8')), 'hex'), repeat('x', 200)
         FROM generate_series(1, 200000) g",
    )
    .execute(&pool)
    .await
    .expect("bulk");
    let bucket = unique("killed");
    let tag = unique("killed");
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    // Every connection of the doomed run carries the tag, its scratch database among them.
    let server = format!(
        "{}?application_name={tag}",
        drill::with_database(&base, "postgres")
    );
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_backup-verification"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", url_of(&pool))
        .env("RESTORE_DATABASE_URL", &server)
        .env("BACKUP_BUCKET", &bucket)
        .env("BACKUP_CREATE_BUCKET", "true")
        .env("STORAGE_EMULATOR_HOST", storage_host())
        .env("BACKUP_WORK_DIR", work_dir())
        .env("JOB_LOGICAL_DATE", "2026-12-03")
        .env("LOG_FORMAT", "json")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let mut scratch: Option<String> = None;
    for _ in 0..2000 {
        scratch = sqlx::query_scalar(
            "SELECT datname::text FROM pg_stat_activity
             WHERE application_name = $1 AND datname LIKE 'restore\\_check\\_%' LIMIT 1",
        )
        .bind(&tag)
        .fetch_optional(&pool)
        .await
        .expect("activity");
        if scratch.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let scratch = scratch.expect("the run reached its restore");
    child.kill().await.expect("kill");
    // pg_restore, its child, may outlive it for a moment; it cannot finish the run.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(scratch_databases(&pool).await.contains(&scratch));

    // Past the grace period (two seconds here, ten minutes by default).
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let report =
        backup_verification::run(config(&pool, &bucket, &["--stale-scratch-seconds", "2"])).await;

    assert_eq!(report.outcome, Outcome::Succeeded, "{:?}", report.failures);
    assert!(
        !scratch_databases(&pool).await.contains(&scratch),
        "the killed run's scratch copy is still there"
    );
    assert!(
        report.figures["stale_scratch_dropped"]
            .as_u64()
            .expect("figure")
            >= 1
    );
}
