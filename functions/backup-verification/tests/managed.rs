//! The production path: the Cloud SQL Admin API client against a local HTTP fake answering
//! `instances.get`, `backupRuns.list`, `instances.restoreBackup` and `operations.get` as the
//! Admin API v1 documents them, and the checks on the restored copy against real PostgreSQL.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use backup_verification::cloudsql::{self, BackupRun, RestAdmin, RestoreSettings};
use backup_verification::drill::{self, Limits, PgTools};
use backup_verification::{Config, erasure, managed};
use chrono::Utc;
use clap::Parser as _;
use common::job::Outcome;
use serde_json::{Value, json};
use sqlx::PgPool;

/// How the fake's restore operation ends.
#[derive(Clone, Copy, PartialEq)]
enum Ending {
    Done,
    Error,
    Never,
    /// DONE, but the operation is another one (a backup, not the restore).
    NotTheRestore,
    /// `operations.get` answers 200 with a body that is not JSON.
    Garbage,
    /// `operations.get` answers 500 with an HTML page.
    ServerError,
    /// `instances.restoreBackup` answers 403 with the API's error JSON.
    Forbidden,
}

/// What the fake's restore does to the "scratch instance": drop and re-create the database from
/// a dump, as a Cloud SQL restore overwrites the whole instance. `None` restores nothing.
#[derive(Clone)]
struct Overwrite {
    server_url: String,
    database: String,
    dump: std::path::PathBuf,
}

async fn overwrite(o: &Overwrite) {
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&o.server_url)
        .await
        .expect("server");
    for sql in [
        format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", o.database),
        format!("CREATE DATABASE {}", o.database),
    ] {
        sqlx::query(&sql)
            .execute(&mut admin)
            .await
            .expect("recreate");
    }
    let status = tokio::process::Command::new(&PgTools::locate(None).pg_restore)
        .arg("--exit-on-error")
        .arg("--no-owner")
        .arg(format!(
            "--dbname={}",
            drill::with_database(&o.server_url, &o.database)
        ))
        .arg(&o.dump)
        .status()
        .await
        .expect("pg_restore");
    assert!(status.success());
}

#[derive(Default)]
struct Seen {
    restore_bodies: Vec<(String, Value)>,
    polls: Vec<String>,
}

#[derive(Clone)]
struct Fake {
    ending: Ending,
    seen: Arc<Mutex<Seen>>,
    overwrite: Option<Overwrite>,
}

fn operation(status: &str) -> Value {
    json!({
        "kind": "sql#operation", "name": "6d1f3c2a-restore", "status": status,
        "operationType": "RESTORE_VOLUME", "targetId": "scratch", "targetProject": "p",
        "user": "job@p.iam.gserviceaccount.com", "insertTime": "2026-12-03T03:30:01.000Z",
        "selfLink": "https://sqladmin.googleapis.com/v1/projects/p/operations/6d1f3c2a-restore"
    })
}

async fn restore_backup(
    State(fake): State<Fake>,
    Path(instance): Path<String>,
    Json(body): Json<Value>,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    fake.seen
        .lock()
        .expect("lock")
        .restore_bodies
        .push((instance, body));
    if fake.ending == Ending::Forbidden {
        return (
            axum::http::StatusCode::FORBIDDEN,
            Json(json!({"error": {"code": 403, "status": "PERMISSION_DENIED",
                "message": "The client is not authorized to make this request."}})),
        )
            .into_response();
    }
    if let Some(o) = &fake.overwrite {
        overwrite(o).await;
    }
    Json(operation("PENDING")).into_response()
}

/// RUNNING on the first two polls, then as the ending says.
async fn get_operation(
    State(fake): State<Fake>,
    Path(name): Path<String>,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let polls = {
        let mut seen = fake.seen.lock().expect("lock");
        seen.polls.push(name);
        seen.polls.len()
    };
    match fake.ending {
        Ending::Garbage => return "<<not json>>".into_response(),
        Ending::ServerError => {
            return (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                [("content-type", "text/html")],
                "<html><body>Error 500</body></html>",
            )
                .into_response();
        }
        _ => {}
    }
    if polls <= 2 || fake.ending == Ending::Never {
        return Json(operation("RUNNING")).into_response();
    }
    let mut op = operation("DONE");
    if fake.ending == Ending::Error {
        op["error"] = json!({"kind": "sql#operationErrors", "errors": [{
            "kind": "sql#operationError", "code": "INTERNAL_ERROR",
            "message": "Backup run 1733191200000 is not restorable"}]});
    }
    if fake.ending == Ending::NotTheRestore {
        op["operationType"] = json!("BACKUP_VOLUME");
        op["targetId"] = json!("main");
    }
    Json(op).into_response()
}

/// Serves the fake; the newest successful backup run ended an hour ago.
async fn serve(ending: Ending) -> (String, Arc<Mutex<Seen>>) {
    serve_with(ending, None).await
}

async fn serve_with(ending: Ending, overwrite: Option<Overwrite>) -> (String, Arc<Mutex<Seen>>) {
    let fake = Fake {
        ending,
        seen: Arc::default(),
        overwrite,
    };
    let seen = fake.seen.clone();
    let app = Router::new()
        .route(
            "/v1/projects/p/instances/main",
            get(|| async {
                Json(json!({"kind": "sql#instance", "name": "main", "settings": {"backupConfiguration": {
                    "enabled": true, "pointInTimeRecoveryEnabled": true,
                    "transactionLogRetentionDays": 7,
                    "backupRetentionSettings": {"retentionUnit": "COUNT", "retainedBackups": 30}}}}))
            }),
        )
        .route(
            "/v1/projects/p/instances/main/backupRuns",
            get(|| async {
                let end = (Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
                Json(json!({"kind": "sql#backupRunsList", "items": [
                    {"kind": "sql#backupRun", "id": "1733191200000", "status": "SUCCESSFUL",
                     "type": "AUTOMATED", "instance": "main", "endTime": end}]}))
            }),
        )
        .route(
            "/v1/projects/p/instances/{instance}/restoreBackup",
            post(restore_backup),
        )
        .route("/v1/projects/p/operations/{name}", get(get_operation))
        .with_state(fake);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), seen)
}

fn admin(endpoint: &str) -> RestAdmin {
    RestAdmin {
        endpoint: endpoint.to_owned(),
        project: "p".into(),
        instance: "main".into(),
        token_url: None,
        http: reqwest::Client::new(),
    }
}

fn settings(deadline: Duration) -> RestoreSettings {
    RestoreSettings {
        scratch_instance: "scratch".into(),
        deadline,
        poll: Duration::from_millis(50),
    }
}

fn run() -> BackupRun {
    BackupRun {
        id: "1733191200000".into(),
        status: "SUCCESSFUL".into(),
        end_time: Some(Utc::now()),
    }
}

#[tokio::test]
async fn a_restore_is_requested_into_the_scratch_instance_and_followed_until_done() {
    let (endpoint, seen) = serve(Ending::Done).await;

    let restored = cloudsql::restore(
        &admin(&endpoint),
        &run(),
        &settings(Duration::from_secs(10)),
    )
    .await
    .expect("restored");

    assert_eq!(restored.operation, "6d1f3c2a-restore");
    // PENDING from the POST, then RUNNING, RUNNING, DONE: three polls 50 ms apart.
    assert!(
        restored.elapsed >= Duration::from_millis(150),
        "{restored:?}"
    );
    let seen = seen.lock().expect("lock");
    assert_eq!(
        seen.restore_bodies,
        [(
            "scratch".to_owned(),
            json!({"restoreBackupContext": {"kind": "sql#restoreBackupContext",
                   "backupRunId": "1733191200000", "project": "p", "instanceId": "main"}})
        )]
    );
    assert_eq!(seen.polls, ["6d1f3c2a-restore"; 3]);
}

#[tokio::test]
async fn the_source_instance_is_never_a_restore_target() {
    let (endpoint, seen) = serve(Ending::Done).await;
    let mut into_source = settings(Duration::from_secs(10));
    into_source.scratch_instance = "main".into();

    let err = cloudsql::restore(&admin(&endpoint), &run(), &into_source)
        .await
        .expect_err("refused");

    assert_eq!(
        err.to_string(),
        "cloud sql admin api: refusing to restore into the source instance main"
    );
    assert!(seen.lock().expect("lock").restore_bodies.is_empty());
}

fn limits() -> Limits {
    Limits {
        max_age: chrono::Duration::hours(26),
        rto: Duration::from_secs(4 * 3600),
        stale_scratch: chrono::Duration::minutes(10),
    }
}

#[tokio::test]
async fn a_restore_operation_ending_with_an_error_fails_the_drill_with_its_reason() {
    let (endpoint, _) = serve(Ending::Error).await;
    let restore = settings(Duration::from_secs(10));
    let limits = limits();
    // The drill stops at the failed restore, before any database is opened.
    let drill = managed::ManagedDrill {
        source_url: "postgres://nowhere.invalid/db",
        scratch_url: "postgres://nowhere.invalid/db",
        restore: &restore,
        limits: &limits,
        ledger: &[],
    };

    let v = managed::verify(&admin(&endpoint), &drill, Utc::now())
        .await
        .expect("drill ran");

    assert_eq!(
        v.failures,
        [
            "cloud sql admin api: restore of backup run 1733191200000 into scratch failed (operation 6d1f3c2a-restore): INTERNAL_ERROR: Backup run 1733191200000 is not restorable"
        ]
    );
    assert_eq!(v.backup_id, "1733191200000");
    assert_eq!(v.restore_secs, None);
}

#[tokio::test]
async fn a_restore_operation_that_never_finishes_fails_at_the_deadline() {
    let (endpoint, seen) = serve(Ending::Never).await;
    let restore = settings(Duration::from_secs(1));
    let limits = limits();
    let drill = managed::ManagedDrill {
        source_url: "postgres://nowhere.invalid/db",
        scratch_url: "postgres://nowhere.invalid/db",
        restore: &restore,
        limits: &limits,
        ledger: &[],
    };
    let clock = std::time::Instant::now();

    let v = managed::verify(&admin(&endpoint), &drill, Utc::now())
        .await
        .expect("drill ran");

    assert_eq!(
        v.failures,
        [
            "cloud sql admin api: restore of backup run 1733191200000 into scratch not done within the deadline of 1 s (operation 6d1f3c2a-restore)"
        ]
    );
    let waited = clock.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    assert!(seen.lock().expect("lock").polls.len() >= 10);
}

fn user(n: u32) -> uuid::Uuid {
    format!("00000000-0000-0000-0000-{n:012}")
        .parse()
        .expect("uuid")
}

fn url_of(pool: &PgPool) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    drill::with_database(
        &base,
        pool.connect_options().get_database().expect("database"),
    )
}

/// Stands in for the scratch instance after an earlier night's restore: a database on the same
/// server holding a copy of the source, made with pg_dump/pg_restore. Also returns what the
/// fake's restore re-creates it from (the backup run: the source as of now).
async fn scratch_copy(pool: &PgPool) -> (String, Overwrite) {
    let name = format!("scratch_instance_{}", uuid::Uuid::new_v4().simple());
    let tools = PgTools::locate(None);
    let backup = drill::take_backup(&url_of(pool), &tools, &std::env::temp_dir(), &[])
        .await
        .expect("dump");
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let o = Overwrite {
        server_url: base,
        database: name.clone(),
        dump: backup.path,
    };
    overwrite(&o).await;
    (name, o)
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_production_run_checks_restores_and_reports_erased_users_absent(pool: PgPool) {
    // Two users with three nights each and a pending event of the second.
    for n in [1, 2] {
        sqlx::query("INSERT INTO users (id, email_lookup, password_hash) VALUES ($1, encode(sha256(convert_to($2, 'UTF8')), 'hex'), 'x')")
            .bind(user(n))
            .bind(format!("u{n}@example.org"))
            .execute(&pool)
            .await
            .expect("user");
        sqlx::query(
            "INSERT INTO diary_entries (id, user_id, night, zone, into_bed, into_bed_offset, lights_out,
                 lights_out_offset, final_awakening, final_awakening_offset, out_of_bed, out_of_bed_offset,
                 sol_min, awakenings, waso_min, tib_min, tst_min, twak_min, se_pct, input)
             SELECT gen_random_uuid(), $1, date '2026-01-01' + g, 'Europe/Berlin', t, 3600,
                    t + interval '15 min', 3600, t + interval '7 hours', 3600,
                    t + interval '7 hours 20 min', 3600, 15, 2, 30, 440, 375, 20, 85.2, '{}'::jsonb
             FROM generate_series(1, 3) g,
                  LATERAL (SELECT timestamptz '2025-12-31 22:00+00' + g * interval '1 day' AS t) x",
        )
        .bind(user(n))
        .execute(&pool)
        .await
        .expect("diary");
    }
    sqlx::query(
        "INSERT INTO outbox (event_id, topic, payload) VALUES (gen_random_uuid(), 'sleep-log', $1)",
    )
    .bind(json!({"type": "sleep-log.recorded", "data": {"user_id": user(2)}}))
    .execute(&pool)
    .await
    .expect("outbox");
    // The managed backup holds both users; user 2 is erased after it.
    let (scratch, restore_from) = scratch_copy(&pool).await;
    sqlx::query(
        "INSERT INTO erasure_ledger (subject_hash, stores, completed_at) VALUES ($1, '[]', now())",
    )
    .bind(erasure::pseudonym(user(2)))
    .execute(&pool)
    .await
    .expect("ledger");
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(user(2))
        .execute(&pool)
        .await
        .expect("erase");
    let (endpoint, seen) = serve_with(Ending::Done, Some(restore_from.clone())).await;
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let source_url = url_of(&pool);
    let scratch_url = drill::with_database(&base, &scratch);
    let config = Config::try_parse_from([
        "backup-verification",
        "--database-url",
        &source_url,
        "--project",
        "p",
        "--logical-date",
        "2026-12-03",
        "--log-format",
        "text",
        "--sql-instance",
        "main",
        "--sqladmin-endpoint",
        &endpoint,
        "--sqladmin-token-url=",
        "--restore-check-instance",
        "scratch",
        "--restore-check-database-url",
        &scratch_url,
        "--restore-poll-seconds",
        "0.05",
    ])
    .expect("config");

    let report = backup_verification::run(config).await;

    let left: i64 = {
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&scratch_url)
            .await
            .expect("scratch");
        sqlx::query_scalar("SELECT count(*) FROM diary_entries WHERE user_id = $1")
            .bind(user(2))
            .fetch_one(&mut conn)
            .await
            .expect("count")
    };
    sqlx::query(&format!("DROP DATABASE {scratch} WITH (FORCE)"))
        .execute(&pool)
        .await
        .expect("drop");
    let _ = std::fs::remove_file(&restore_from.dump);
    assert_eq!(report.outcome, Outcome::Succeeded, "{:?}", report.failures);
    assert_eq!(report.figures["backup_id"], "1733191200000");
    assert_eq!(report.figures["restore_operation"], "6d1f3c2a-restore");
    assert!(report.figures["restore_secs"].as_f64().expect("secs") > 0.0);
    assert_eq!(report.figures["rto_secs"], 14400);
    assert_eq!(report.figures["dump_object"], Value::Null);
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    )
    .fetch_one(&pool)
    .await
    .expect("tables");
    assert_eq!(report.figures["tables"], tables);
    assert_eq!(report.figures["erasure_ledger_subjects"], 1);
    assert_eq!(report.figures["erased_subjects_recleaned"], 1);
    // Three nights, the account and the pending event.
    assert_eq!(report.figures["erased_rows_removed"], 5);
    assert_eq!(report.figures["erased_subjects_remaining"], 0);
    assert_eq!(left, 0);
    assert_eq!(seen.lock().expect("lock").restore_bodies.len(), 1);
    let passed: bool = sqlx::query_scalar(
        "SELECT passed FROM backup_verifications WHERE logical_date = '2026-12-03' AND backup_id = '1733191200000'",
    )
    .fetch_one(&pool)
    .await
    .expect("record");
    assert!(passed);
}

#[tokio::test]
async fn a_failed_managed_backup_check_restores_nothing() {
    let (endpoint, seen) = serve(Ending::Done).await;
    let restore = settings(Duration::from_secs(10));
    let limits = limits();
    let drill = managed::ManagedDrill {
        source_url: "postgres://nowhere.invalid/db",
        scratch_url: "postgres://nowhere.invalid/db",
        restore: &restore,
        limits: &limits,
        ledger: &[],
    };
    // 30 h later the run that ended an hour before now is 31 h old.
    let later = Utc::now() + chrono::Duration::hours(30);

    let v = managed::verify(&admin(&endpoint), &drill, later)
        .await
        .expect("drill ran");

    assert_eq!(v.failures.len(), 2, "{:?}", v.failures);
    assert!(
        v.failures[0].starts_with("newest successful backup 1733191200000 is stale: 31.0 h old"),
        "{:?}",
        v.failures
    );
    assert_eq!(
        v.failures[1],
        "restore drill not run: the managed-backup check failed"
    );
    assert!(seen.lock().expect("lock").restore_bodies.is_empty());
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_production_run_without_a_scratch_instance_fails_naming_the_variables(pool: PgPool) {
    let source_url = url_of(&pool);
    let config = Config::try_parse_from([
        "backup-verification",
        "--database-url",
        &source_url,
        "--logical-date",
        "2026-12-03",
        "--log-format",
        "text",
        "--sql-instance",
        "main",
        "--sqladmin-token-url=",
    ])
    .expect("config");

    let report = backup_verification::run(config).await;

    assert_eq!(report.outcome, Outcome::Failed);
    assert_eq!(
        report.failures,
        ["RESTORE_CHECK_INSTANCE and RESTORE_CHECK_DATABASE_URL are required with SQL_INSTANCE"]
    );
}

fn managed_config(source_url: &str, endpoint: &str, scratch_url: &str) -> Config {
    Config::try_parse_from([
        "backup-verification",
        "--database-url",
        source_url,
        "--project",
        "p",
        "--logical-date",
        "2026-12-03",
        "--log-format",
        "text",
        "--sql-instance",
        "main",
        "--sqladmin-endpoint",
        endpoint,
        "--sqladmin-token-url=",
        "--restore-check-instance",
        "scratch",
        "--restore-check-database-url",
        scratch_url,
        "--restore-poll-seconds",
        "0.05",
    ])
    .expect("config")
}

async fn user_with_nights(pool: &PgPool, n: u32) {
    sqlx::query("INSERT INTO users (id, email_lookup, password_hash) VALUES ($1, encode(sha256(convert_to($2, 'UTF8')), 'hex'), 'x')")
        .bind(user(n))
        .bind(format!("u{n}@example.org"))
        .execute(pool)
        .await
        .expect("user");
    sqlx::query(
        "INSERT INTO diary_entries (id, user_id, night, zone, into_bed, into_bed_offset, lights_out,
             lights_out_offset, final_awakening, final_awakening_offset, out_of_bed, out_of_bed_offset,
             sol_min, awakenings, waso_min, tib_min, tst_min, twak_min, se_pct, input)
         SELECT gen_random_uuid(), $1, date '2026-01-01' + g, 'Europe/Berlin', t, 3600,
                t + interval '15 min', 3600, t + interval '7 hours', 3600,
                t + interval '7 hours 20 min', 3600, 15, 2, 30, 440, 375, 20, 85.2, '{}'::jsonb
         FROM generate_series(1, 3) g,
              LATERAL (SELECT timestamptz '2025-12-31 22:00+00' + g * interval '1 day' AS t) x",
    )
    .bind(user(n))
    .execute(pool)
    .await
    .expect("diary");
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_scratch_url_reaching_the_source_database_is_refused_and_the_source_left_alone(
    pool: PgPool,
) {
    user_with_nights(&pool, 1).await;
    // An erasure still pending in the live database: its rows are there, the ledger names them.
    sqlx::query("INSERT INTO erasure_ledger (subject_hash, stores) VALUES ($1, '[\"postgres\"]')")
        .bind(erasure::pseudonym(user(1)))
        .execute(&pool)
        .await
        .expect("ledger");
    let (endpoint, seen) = serve(Ending::Done).await;
    let source_url = url_of(&pool);
    // The same database, spelt differently.
    let scratch_url = format!("{source_url}?application_name=restore-check");

    let report =
        backup_verification::run(managed_config(&source_url, &endpoint, &scratch_url)).await;

    assert_eq!(report.outcome, Outcome::Failed);
    assert_eq!(
        report.failures,
        [
            "RESTORE_CHECK_DATABASE_URL reaches the source database itself: refusing to check and re-clean it as the restored copy"
        ]
    );
    assert!(seen.lock().expect("lock").restore_bodies.is_empty());
    let nights: i64 = sqlx::query_scalar("SELECT count(*) FROM diary_entries WHERE user_id = $1")
        .bind(user(1))
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(nights, 3, "the drill deleted live rows");
    let marker: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('public.backup_verification_marker')::text")
            .fetch_one(&pool)
            .await
            .expect("regclass");
    assert_eq!(marker, None);
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn an_operation_done_without_restoring_anything_fails_the_drill(pool: PgPool) {
    user_with_nights(&pool, 1).await;
    // Last night's restore is still in the scratch database; tonight's "restore" does nothing.
    let (scratch, restore_from) = scratch_copy(&pool).await;
    let _ = std::fs::remove_file(&restore_from.dump);
    let (endpoint, seen) = serve_with(Ending::Done, None).await;
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let scratch_url = drill::with_database(&base, &scratch);

    let report =
        backup_verification::run(managed_config(&url_of(&pool), &endpoint, &scratch_url)).await;

    sqlx::query(&format!("DROP DATABASE {scratch} WITH (FORCE)"))
        .execute(&pool)
        .await
        .expect("drop");
    assert_eq!(report.outcome, Outcome::Failed);
    assert_eq!(
        report.failures,
        [
            "restore operation 6d1f3c2a-restore reported DONE, but the scratch database still holds the marker written before the restore: nothing was restored"
        ]
    );
    assert_eq!(seen.lock().expect("lock").restore_bodies.len(), 1);
    let passed: bool = sqlx::query_scalar(
        "SELECT passed FROM backup_verifications WHERE logical_date = '2026-12-03'",
    )
    .fetch_one(&pool)
    .await
    .expect("record");
    assert!(!passed);
}

#[tokio::test]
async fn a_done_operation_that_is_not_the_restore_fails() {
    let (endpoint, _) = serve(Ending::NotTheRestore).await;

    let err = cloudsql::restore(
        &admin(&endpoint),
        &run(),
        &settings(Duration::from_secs(10)),
    )
    .await
    .expect_err("not the restore");

    assert_eq!(
        err.to_string(),
        "cloud sql admin api: restore of backup run 1733191200000 into scratch: operation 6d1f3c2a-restore is DONE but is not that restore (operationType \"BACKUP_VOLUME\", targetId \"main\")"
    );
}

#[tokio::test]
async fn garbage_403_and_500_from_the_admin_api_fail_the_restore_with_the_status() {
    let cases = [
        (
            Ending::Garbage,
            "cloud sql admin api: GET /operations/6d1f3c2a-restore: 200 OK: error decoding response body",
        ),
        (
            Ending::ServerError,
            "cloud sql admin api: GET /operations/6d1f3c2a-restore: 500 Internal Server Error: error decoding response body",
        ),
        (
            Ending::Forbidden,
            "cloud sql admin api: POST /instances/scratch/restoreBackup: 403 Forbidden: The client is not authorized to make this request.",
        ),
    ];
    for (ending, expected) in cases {
        let (endpoint, _) = serve(ending).await;
        let err = cloudsql::restore(
            &admin(&endpoint),
            &run(),
            &settings(Duration::from_secs(10)),
        )
        .await
        .expect_err("fails");
        assert!(err.to_string().starts_with(expected), "{err}");
    }
}
