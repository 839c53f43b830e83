//! Hostile and unlucky cases of the privacy routes against the real stores: malformed consent
//! requests, exports of empty and large accounts and of hostile free text, ciphertext moved
//! between users and rows, erasure repeated, concurrent, interrupted by an unreachable store
//! and resumed, a still-valid token after erasure, and an edited audit trail.

mod support;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::documents::{ANALYSIS_LOGS, Documents, StoredDoc};
use common::testkit;
use serde_json::{Value, json};
use sqlx::PgPool;
use tower::ServiceExt;
use uuid::Uuid;

async fn send(
    s: &privacy::AppState,
    method: &str,
    uri: &str,
    user: Uuid,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, String, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, testkit::bearer(&s.keys, user));
    if let Some(ct) = content_type {
        req = req.header(header::CONTENT_TYPE, ct);
    }
    let res = privacy::app(s.clone(), Duration::from_secs(30))
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let ct = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, ct, testkit::json_body(res).await)
}

fn problem(status: StatusCode, ct: &str, body: &Value, want: StatusCode, field: Option<&str>) {
    assert_eq!(status, want, "{body}");
    assert_eq!(ct, "application/problem+json", "{body}");
    assert_eq!(body["status"], want.as_u16(), "{body}");
    if let Some(field) = field {
        assert_eq!(body["field"], field, "{body}");
    }
}

async fn count(pool: &PgPool, sql: &str, user: Uuid) -> i64 {
    sqlx::query_scalar(sql)
        .bind(user)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn malformed_consent_requests_are_one_problem_shape_and_record_nothing(pool: PgPool) {
    let s = support::state(pool.clone()).await;
    let user = testkit::user_without_consent(&pool).await;
    let json = Some("application/json");
    let post = |body: Value| {
        let s = s.clone();
        async move {
            send(
                &s,
                "POST",
                "/v1/me/consents",
                user,
                json,
                body.to_string().into_bytes(),
            )
            .await
        }
    };

    let (st, ct, b) = post(json!({"purpose": "advertising", "version": 1})).await;
    problem(
        st,
        &ct,
        &b,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("purpose"),
    );
    let (st, ct, b) = post(json!({"purpose": "Intended_Use", "version": 1})).await;
    problem(
        st,
        &ct,
        &b,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("purpose"),
    );
    // An old or future text version: the consent must name the wording in force.
    // (Version 1 of intended_use is superseded by version 2.)
    for v in [0, 1, 3, -1, i32::MAX] {
        let (st, ct, b) = post(json!({"purpose": "intended_use", "version": v})).await;
        problem(st, &ct, &b, StatusCode::CONFLICT, Some("version"));
    }
    let (st, ct, b) = post(json!({"purpose": "intended_use", "version": 1.5})).await;
    problem(
        st,
        &ct,
        &b,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("version"),
    );
    let (st, ct, b) = post(json!({"purpose": "intended_use", "version": 4294967296u64})).await;
    problem(
        st,
        &ct,
        &b,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("version"),
    );
    let (st, ct, b) =
        post(json!({"purpose": "intended_use", "version": 1, "user_id": Uuid::new_v4()})).await;
    problem(st, &ct, &b, StatusCode::UNPROCESSABLE_ENTITY, None);
    let (st, ct, b) = post(json!({"purpose": "intended_use"})).await;
    problem(st, &ct, &b, StatusCode::UNPROCESSABLE_ENTITY, None);
    let (st, ct, b) = send(
        &s,
        "POST",
        "/v1/me/consents",
        user,
        json,
        b"{\"purpose\":".to_vec(),
    )
    .await;
    problem(st, &ct, &b, StatusCode::BAD_REQUEST, None);
    let (st, ct, b) = send(
        &s,
        "POST",
        "/v1/me/consents",
        user,
        Some("text/plain"),
        b"{}".to_vec(),
    )
    .await;
    problem(st, &ct, &b, StatusCode::UNSUPPORTED_MEDIA_TYPE, None);
    // A huge body is refused before it is parsed.
    let huge = format!(
        "{{\"purpose\":\"intended_use\",\"version\":1,\"pad\":\"{}\"}}",
        "x".repeat(4 << 20)
    );
    let (st, ct, b) = send(&s, "POST", "/v1/me/consents", user, json, huge.into_bytes()).await;
    problem(st, &ct, &b, StatusCode::PAYLOAD_TOO_LARGE, None);

    // Withdrawing what was never granted, twice, or a purpose that is no purpose.
    for path in [
        "/v1/me/consents/product_improvement",
        "/v1/me/consents/advertising",
        "/v1/me/consents/%00",
        "/v1/me/consents/intended_use%2F..%2Fx",
        &format!("/v1/me/consents/{}", "a".repeat(10_000)),
    ] {
        let (st, ct, b) = send(&s, "DELETE", path, user, None, Vec::new()).await;
        problem(st, &ct, &b, StatusCode::NOT_FOUND, None);
    }
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM consent_events WHERE user_id = $1",
            user
        )
        .await,
        0
    );

    let (st, _, _) = post(json!({"purpose": "product_improvement", "version": 1})).await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, _, _) = send(
        &s,
        "DELETE",
        "/v1/me/consents/product_improvement",
        user,
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (st, ct, b) = send(
        &s,
        "DELETE",
        "/v1/me/consents/product_improvement",
        user,
        None,
        Vec::new(),
    )
    .await;
    problem(st, &ct, &b, StatusCode::NOT_FOUND, None);
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM consent_events WHERE user_id = $1",
            user
        )
        .await,
        2
    );
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn an_account_without_data_exports_only_its_patient_and_empty_sections(pool: PgPool) {
    let s = support::state(pool.clone()).await;
    let user = testkit::user_without_consent(&pool).await;
    let (st, bundle) = support::call(&s, "GET", "/v1/me/export", user, None).await;
    assert_eq!(st, StatusCode::OK, "{bundle}");
    let entries = bundle["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{bundle}");
    assert_eq!(entries[0]["resource"]["resourceType"], "Patient");
    // Naming another account in the query changes nothing: the export is the caller's.
    let other = testkit::user(&pool).await;
    let (st, bundle) = support::call(
        &s,
        "GET",
        &format!("/v1/me/export?user_id={other}&subject=Patient/{other}"),
        user,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{bundle}");
    assert_eq!(bundle["entry"][0]["resource"]["id"], user.to_string());
    assert!(!bundle.to_string().contains(&other.to_string()));
    let (st, ct, _) = send(
        &s,
        "GET",
        "/v1/me/export?format=html",
        user,
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(ct, "text/html; charset=utf-8");
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn hostile_device_names_and_sources_are_escaped_in_the_readable_export(pool: PgPool) {
    let s = support::state(pool.clone()).await;
    let user = testkit::user(&pool).await;
    let hostile = "<img src=x onerror=alert(1)>\"'&";
    sqlx::query(
        "WITH i AS (INSERT INTO imports (id, user_id, source, content_sha256, zone, sessions) \
           VALUES (gen_random_uuid(), $1, 'oura', '\\x01', 'Europe/Berlin', 1) RETURNING id) \
         INSERT INTO sleep_sessions (id, user_id, import_id, source, source_key, record_ids, kind, night, start_at, \
           start_offset, end_at, end_offset, segments, device, in_bed_secs) SELECT gen_random_uuid(), $1, i.id, 'oura', 'k', '{}', 'main', \
           '2025-03-30', '2025-03-29T22:00Z', 3600, '2025-03-30T05:00Z', 7200, '[]', $2, 25200 FROM i",
    )
    .bind(user)
    .bind(hostile)
    .execute(&pool)
    .await
    .unwrap();
    let res = privacy::app(s.clone(), Duration::from_secs(30))
        .oneshot(
            Request::builder()
                .uri("/v1/me/export?format=html")
                .header(header::AUTHORIZATION, testkit::bearer(&s.keys, user))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let html = String::from_utf8(
        axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert!(!html.contains("<img"), "{html}");
    assert!(
        html.contains("oura (&lt;img src=x onerror=alert(1)&gt;&quot;&#x27;&amp;)"),
        "{html}"
    );
    assert!(html.contains("<td>420 min</td>"), "{html}");
}

async fn diary_row(pool: &PgPool, user: Uuid, night: &str, ct: Option<Vec<u8>>) -> Uuid {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO diary_entries (id, user_id, night, zone, into_bed, into_bed_offset, lights_out, lights_out_offset, \
         final_awakening, final_awakening_offset, out_of_bed, out_of_bed_offset, sol_min, awakenings, waso_min, \
         tib_min, tst_min, twak_min, se_pct, input, comment_ct) VALUES ($1, $2, $3::date, 'Europe/Berlin', \
         $3::date - interval '2 hours', 3600, $3::date - interval '105 minutes', 3600, $3::date + interval '270 minutes', 7200, \
         $3::date + interval '5 hours', 7200, 20, 1, 15, 420, 340, 30, 81.0, '{}', $4)",
    )
    .bind(id)
    .bind(user)
    .bind(night)
    .bind(ct)
    .execute(pool)
    .await
    .unwrap();
    id
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn an_account_with_many_nights_exports_each_once(pool: PgPool) {
    let s = support::state(pool.clone()).await;
    let user = testkit::user(&pool).await;
    let key = s.stores.keyring.data_key(user).await.unwrap();
    let start = chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
    for d in 0..400 {
        let night = (start + chrono::Days::new(d)).to_string();
        let id = Uuid::new_v4();
        let ct = key
            .encrypt_str(
                &common::crypto::field_context("diary_entries", "comment", id),
                &format!("Nacht {d}"),
            )
            .unwrap();
        sqlx::query(
            "INSERT INTO diary_entries (id, user_id, night, zone, into_bed, into_bed_offset, lights_out, lights_out_offset, \
             final_awakening, final_awakening_offset, out_of_bed, out_of_bed_offset, sol_min, awakenings, waso_min, \
             tib_min, tst_min, twak_min, se_pct, input, comment_ct) VALUES ($1, $2, $3::date, 'Europe/Berlin', \
             $3::date - interval '2 hours', 3600, $3::date - interval '105 minutes', 3600, $3::date + interval '270 minutes', 7200, \
             $3::date + interval '5 hours', 7200, 20, 1, 15, 420, 340, 30, 81.0, '{}', $4)",
        )
        .bind(id)
        .bind(user)
        .bind(&night)
        .bind(ct)
        .execute(&pool)
        .await
        .unwrap();
    }
    let started = std::time::Instant::now();
    let (st, bundle) = support::call(&s, "GET", "/v1/me/export", user, None).await;
    let took = started.elapsed();
    assert_eq!(st, StatusCode::OK);
    let notes: Vec<&str> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["resource"]["note"][0]["text"].as_str())
        .collect();
    assert_eq!(notes.len(), 400);
    assert_eq!(notes[0], "Nacht 0");
    assert_eq!(notes[399], "Nacht 399");
    eprintln!("export of 400 nights: {took:?}");
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn ciphertext_moved_to_another_user_or_row_never_decrypts(pool: PgPool) {
    let s = support::state(pool.clone()).await;
    let alice = testkit::user(&pool).await;
    let mallory = testkit::user(&pool).await;
    let secret = "Alptraum über die Trennung";
    let alice_key = s.stores.keyring.data_key(alice).await.unwrap();
    s.stores.keyring.data_key(mallory).await.unwrap();
    let row = Uuid::new_v4();
    let ct = alice_key
        .encrypt_str(
            &common::crypto::field_context("diary_entries", "comment", row),
            secret,
        )
        .unwrap();
    // Into Mallory's row: her key is another key; into another of Alice's rows: another AAD.
    diary_row(&pool, mallory, "2025-03-30", Some(ct.clone())).await;
    let other_row = diary_row(&pool, alice, "2025-03-31", Some(ct.clone())).await;
    assert!(
        alice_key
            .decrypt_str(
                &common::crypto::field_context("diary_entries", "comment", other_row),
                &ct
            )
            .is_err()
    );
    for user in [mallory, alice] {
        let (st, ct_header, body) = send(&s, "GET", "/v1/me/export", user, None, Vec::new()).await;
        assert!(!body.to_string().contains(secret), "{body}");
        eprintln!("export with a moved ciphertext: {st} {ct_header} {body}");
        assert_eq!(ct_header, "application/problem+json");
    }
}

async fn seed_account(s: &privacy::AppState, pool: &PgPool, docs: &Documents, user: Uuid) {
    let key = s.stores.keyring.data_key(user).await.unwrap();
    let id = Uuid::new_v4();
    let ct = key
        .encrypt_str(
            &common::crypto::field_context("diary_entries", "comment", id),
            "x",
        )
        .unwrap();
    diary_row(pool, user, "2025-03-30", Some(ct)).await;
    docs.put(
        user,
        ANALYSIS_LOGS,
        "2025-03-24",
        &StoredDoc::new(
            user,
            chrono::Utc::now(),
            "sleep-window.prescribed",
            json!({"window_min": 360}),
        ),
    )
    .await
    .unwrap();
    let redis = &s.stores.redis;
    let sessions = common::cache::Sessions::new(
        redis.clone(),
        common::cache::SessionConfig {
            session_idle_timeout_secs: 600,
            session_absolute_timeout_secs: 3600,
        },
    );
    sessions.create(user).await.unwrap();
    // The per-account login limit, keyed by the e-mail blind index (the auth function's key).
    let lookup = common::testkit::email_lookup().of(&common::testkit::email(user));
    let _: () = redis::cmd("SET")
        .arg(redis.key(&["rl", "login", "acct", &lookup]))
        .arg(1)
        .arg("EX")
        .arg(600)
        .query_async(&mut redis.conn())
        .await
        .unwrap();
    s.stores.buckets[0]
        .put(
            &format!("users/{user}/export.json"),
            b"{}".to_vec(),
            "application/json",
            Default::default(),
        )
        .await
        .unwrap();
}

async fn redis_keys_left(s: &privacy::AppState) -> Vec<String> {
    redis::cmd("KEYS")
        .arg(format!("{}:*", s.stores.redis.prefix()))
        .query_async(&mut s.stores.redis.conn())
        .await
        .unwrap()
}

async fn nothing_left(s: &privacy::AppState, pool: &PgPool, docs: &Documents, user: Uuid) {
    for sql in [
        "SELECT count(*) FROM users WHERE id = $1",
        "SELECT count(*) FROM diary_entries WHERE user_id = $1",
        "SELECT count(*) FROM user_keys WHERE user_id = $1",
        "SELECT count(*) FROM consent_events WHERE user_id = $1",
        "SELECT count(*) FROM erasure_pending WHERE user_id = $1",
    ] {
        assert_eq!(count(pool, sql, user).await, 0, "{sql}");
    }
    assert!(docs.list(user, ANALYSIS_LOGS).await.unwrap().is_empty());
    assert_eq!(redis_keys_left(s).await, Vec::<String>::new());
    let completed: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT completed_at FROM erasure_ledger WHERE subject_hash = $1")
            .bind(privacy::erasure::subject_hash(user))
            .fetch_one(pool)
            .await
            .unwrap();
    assert!(completed.is_some());
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn erasure_run_twice_and_a_still_valid_token_afterwards_resurrect_nothing(pool: PgPool) {
    let s = support::state(pool.clone()).await;
    let docs = Documents::connect(support::PROJECT).await.unwrap();
    let user = testkit::user(&pool).await;
    seed_account(&s, &pool, &docs, user).await;

    let (st, first) = support::call(&s, "DELETE", "/v1/me", user, None).await;
    assert_eq!(st, StatusCode::OK, "{first}");
    assert_eq!(first["status"], "done");
    let (st, second) = support::call(&s, "DELETE", "/v1/me", user, None).await;
    assert_eq!(st, StatusCode::OK, "{second}");
    assert_eq!(second["status"], "done");
    nothing_left(&s, &pool, &docs, user).await;

    // The access token lives on for its minutes: nothing it sends brings the account back.
    let (st, ct, b) = send(
        &s,
        "POST",
        "/v1/me/consents",
        user,
        Some("application/json"),
        json!({"purpose": "intended_use", "version": 2})
            .to_string()
            .into_bytes(),
    )
    .await;
    problem(st, &ct, &b, StatusCode::UNAUTHORIZED, None);
    for (method, uri) in [
        ("GET", "/v1/me/export"),
        ("GET", "/v1/me/export?format=html"),
        ("DELETE", "/v1/me/consents/intended_use"),
    ] {
        let (st, ct, b) = send(&s, method, uri, user, None, Vec::new()).await;
        assert!(
            st == StatusCode::UNAUTHORIZED || st == StatusCode::NOT_FOUND,
            "{method} {uri}: {st} {b}"
        );
        assert_eq!(ct, "application/problem+json", "{method} {uri}");
    }
    for (method, uri) in [
        ("GET", "/v1/me/consents"),
        ("GET", "/v1/me/consents/history"),
    ] {
        let (st, _, b) = send(&s, method, uri, user, None, Vec::new()).await;
        assert!(
            st == StatusCode::UNAUTHORIZED || st == StatusCode::OK,
            "{uri}: {st} {b}"
        );
        assert!(!b.to_string().contains("\"granted\":true"), "{b}");
    }
    // A write path that creates the data key first must not create one for a gone account.
    assert!(s.stores.keyring.data_key(user).await.is_err());
    assert!(
        common::consent::require(&pool, user, common::consent::Purpose::IntendedUse)
            .await
            .unwrap()
            .is_err()
    );
    nothing_left(&s, &pool, &docs, user).await;
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn concurrent_erasures_of_one_user_end_done_and_empty(pool: PgPool) {
    let s = support::state(pool.clone()).await;
    let docs = Documents::connect(support::PROJECT).await.unwrap();
    let user = testkit::user(&pool).await;
    seed_account(&s, &pool, &docs, user).await;
    let (a, b, c) = tokio::join!(
        privacy::erasure::erase(&s.stores, user),
        privacy::erasure::erase(&s.stores, user),
        privacy::erasure::erase(&s.stores, user),
    );
    let outcomes = [a.unwrap(), b.unwrap(), c.unwrap()];
    for o in &outcomes {
        eprintln!(
            "{}: {:?}",
            o.status,
            o.stores
                .iter()
                .filter(|x| x.status != "erased")
                .collect::<Vec<_>>()
        );
    }
    // Whatever one of them reports, running again finishes it.
    let last = privacy::erasure::erase(&s.stores, user).await.unwrap();
    assert!(last.done(), "{:?}", last.stores);
    nothing_left(&s, &pool, &docs, user).await;
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn an_erasure_interrupted_by_an_unreachable_redis_is_pending_and_finished_on_resume(
    pool: PgPool,
) {
    let s = support::state(pool.clone()).await;
    let docs = Documents::connect(support::PROJECT).await.unwrap();
    let user = testkit::user(&pool).await;
    let other = testkit::user(&pool).await;
    seed_account(&s, &pool, &docs, user).await;

    // Redis behind a closed port (a wrong REDIS_URL, or Redis down for the night).
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut broken = s.stores.clone();
    broken.redis = common::cache::Redis::connect(&common::cache::RedisConfig {
        redis_url: format!("redis://127.0.0.1:{closed}").into(),
        redis_key_prefix: s.stores.redis.prefix().to_owned(),
        redis_timeout_ms: 500,
    })
    .unwrap();
    let first = privacy::erasure::erase(&broken, user).await.unwrap();
    assert!(!first.done());
    let pending: Vec<&str> = first
        .stores
        .iter()
        .filter(|o| o.status == "pending")
        .map(|o| o.store.as_str())
        .collect();
    assert!(pending.contains(&"redis"), "{:?}", first.stores);
    for o in &first.stores {
        if let Some(reason) = &o.reason {
            assert!(
                !reason.contains("example.test"),
                "no address in reasons: {reason}"
            );
        }
    }
    // Everything but the account row is gone; the row stays, because the resumed Redis pass
    // finds the per-account login limits through its address.
    let postgres = first.stores.iter().find(|o| o.store == "postgres").unwrap();
    assert_eq!(postgres.status, "pending");
    assert_eq!(
        postgres.reason.as_deref(),
        Some("the account row is kept until every other store is erased")
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM diary_entries WHERE user_id = $1",
            user
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM consent_events WHERE user_id = $1",
            user
        )
        .await,
        0
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM users WHERE id = $1", user).await,
        1
    );
    // Without its consent the kept account stores no health data meanwhile.
    assert!(
        common::consent::require(&pool, user, common::consent::Purpose::IntendedUse)
            .await
            .unwrap()
            .is_err()
    );
    let queued: i64 = count(
        &pool,
        "SELECT count(*) FROM erasure_pending WHERE user_id = $1",
        user,
    )
    .await;
    assert_eq!(queued, 1, "the unfinished erasure is queued");

    // The night is over: the stores answer again and the retention job resumes.
    assert_eq!(privacy::erasure::resume(&s.stores).await.unwrap(), 1);
    nothing_left(&s, &pool, &docs, user).await;
    assert_eq!(
        count(&pool, "SELECT count(*) FROM users WHERE id = $1", other).await,
        1
    );
}

async fn append(pool: &PgPool, n: usize) {
    for _ in 0..n {
        let mut tx = pool.begin().await.unwrap();
        let u = Uuid::new_v4();
        privacy::audit::append(
            &mut tx,
            &privacy::audit::Entry {
                actor: u,
                subject: u,
                action: "export.read",
                function: "privacy",
                object: None,
            },
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
}

async fn swap(pool: &PgPool, a: i64, b: i64) {
    for (from, to) in [(a, -1), (b, a), (-1, b)] {
        sqlx::query("UPDATE audit_log SET seq = $2 WHERE seq = $1")
            .bind(from)
            .bind(to)
            .execute(pool)
            .await
            .unwrap();
    }
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn the_verifier_names_a_removed_first_entry_a_reordering_and_a_cut_tail(pool: PgPool) {
    use privacy::audit::{Break, verify};
    append(&pool, 5).await;
    let head: String = sqlx::query_scalar("SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(verify(&pool, Some(&head)).await.unwrap(), vec![]);
    sqlx::query("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        .execute(&pool)
        .await
        .unwrap();
    let seqs: Vec<i64> = sqlx::query_scalar("SELECT seq FROM audit_log ORDER BY seq")
        .fetch_all(&pool)
        .await
        .unwrap();
    // Reorder: the 2nd and 3rd entries swap places.
    swap(&pool, seqs[1], seqs[2]).await;
    let breaks = verify(&pool, Some(&head)).await.unwrap();
    assert!(
        breaks.contains(&Break::Unlinked { seq: seqs[1] }),
        "{breaks:?}"
    );
    // Swap back, then remove the first and cut the last.
    swap(&pool, seqs[1], seqs[2]).await;
    assert_eq!(verify(&pool, Some(&head)).await.unwrap(), vec![]);
    sqlx::query("DELETE FROM audit_log WHERE seq IN ($1, $2)")
        .bind(seqs[0])
        .bind(seqs[4])
        .execute(&pool)
        .await
        .unwrap();
    let breaks = verify(&pool, Some(&head)).await.unwrap();
    assert_eq!(
        breaks,
        vec![Break::Unlinked { seq: seqs[1] }, Break::HeadMissing]
    );
    // Without the head kept elsewhere a cut tail cannot show: only the first removal does.
    assert_eq!(
        verify(&pool, None).await.unwrap(),
        vec![Break::Unlinked { seq: seqs[1] }]
    );
}

/// An analysis that passed its consent check before the erasure began, still running: it holds
/// its night row (and so the account row) until it commits, and writes its Firestore documents
/// before that commit, as sleep-analysis does. The erasure must not say done with them left.
#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_late_analysis_write_during_erasure_does_not_survive_it(pool: PgPool) {
    let s = support::state(pool.clone()).await;
    let docs = Documents::connect(support::PROJECT).await.unwrap();
    let user = testkit::user(&pool).await;

    let mut analysis = pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO analysis_nights (user_id, night, source, zone, final_awakening, final_offset, tib_min, tst_min, revision) \
         VALUES ($1, '2025-03-30', 'diary', 'Europe/Berlin', '2025-03-30T04:30Z', 7200, 420, 360, now())",
    )
    .bind(user)
    .execute(&mut *analysis)
    .await
    .unwrap();

    let stores = s.stores.clone();
    let erasure = tokio::spawn(async move { privacy::erasure::erase(&stores, user).await });
    // Wait until the erasure waits for the analysis' lock on the account row.
    let mut waited = 0;
    loop {
        let blocked: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock' AND query LIKE 'DELETE FROM users%'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if blocked > 0 {
            break;
        }
        waited += 1;
        assert!(waited < 200, "the erasure never reached the account row");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    docs.put(
        user,
        ANALYSIS_LOGS,
        "2025-03-24-late",
        &StoredDoc::new(
            user,
            chrono::Utc::now(),
            "sleep-analysis.week",
            json!({"window_min": 360}),
        ),
    )
    .await
    .unwrap();
    analysis.commit().await.unwrap();

    let outcome = erasure.await.unwrap().unwrap();
    let left = docs.list(user, ANALYSIS_LOGS).await.unwrap();
    assert!(
        !outcome.done() || left.is_empty(),
        "done with {} documents left: {:?}",
        left.len(),
        outcome.stores
    );
    let outcome = if outcome.done() {
        outcome
    } else {
        privacy::erasure::erase(&s.stores, user).await.unwrap()
    };
    assert!(outcome.done(), "{:?}", outcome.stores);
    assert!(docs.list(user, ANALYSIS_LOGS).await.unwrap().is_empty());
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM analysis_nights WHERE user_id = $1",
            user
        )
        .await,
        0
    );
}

async fn audit_event(pool: &PgPool, user: Uuid, action: &str) -> Vec<u8> {
    let event = common::events::AuditRecorded::own(user, action, "sleep-diary", None);
    let id = common::pubsub::enqueue_audit(pool, &event).await.unwrap();
    let payload: Value = sqlx::query_scalar("SELECT payload FROM outbox WHERE event_id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap();
    serde_json::to_vec(&payload).unwrap()
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn reordered_and_replayed_audit_events_enter_the_chain_once_each_and_it_verifies(
    pool: PgPool,
) {
    use privacy::push::{Outcome, handle};
    let user = testkit::user(&pool).await;
    let earlier = audit_event(&pool, user, "sleep-log.created").await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let later = audit_event(&pool, user, "sleep-log.read").await;
    // The later event arrives first, then the earlier, then both again under new message ids.
    assert_eq!(
        handle(&pool, "m-2", &later).await.unwrap(),
        Outcome::Appended
    );
    assert_eq!(
        handle(&pool, "m-1", &earlier).await.unwrap(),
        Outcome::Appended
    );
    assert_eq!(
        handle(&pool, "m-3", &later).await.unwrap(),
        Outcome::Duplicate
    );
    assert_eq!(
        handle(&pool, "m-4", &earlier).await.unwrap(),
        Outcome::Duplicate
    );
    let actions: Vec<String> = sqlx::query_scalar("SELECT action FROM audit_log ORDER BY seq")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(actions, ["sleep-log.read", "sleep-log.created"]);
    assert_eq!(privacy::audit::verify(&pool, None).await.unwrap(), vec![]);
    // No raw id in the trail.
    let raw: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE actor_ref = $1 OR subject_ref = $1",
    )
    .bind(user.to_string())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(raw, 0);
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn an_edited_event_id_shows_as_an_altered_entry(pool: PgPool) {
    use privacy::audit::{Break, verify};
    use privacy::push::{Outcome, handle};
    let user = testkit::user(&pool).await;
    append(&pool, 1).await;
    let event = audit_event(&pool, user, "sleep-log.created").await;
    assert_eq!(
        handle(&pool, "m-1", &event).await.unwrap(),
        Outcome::Appended
    );
    append(&pool, 1).await;
    assert_eq!(verify(&pool, None).await.unwrap(), vec![]);
    let seq: i64 = sqlx::query_scalar("SELECT seq FROM audit_log WHERE event_id IS NOT NULL")
        .fetch_one(&pool)
        .await
        .unwrap();
    // Someone with owner rights changes the event id, so that a replay would be let in again.
    sqlx::query("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE audit_log SET event_id = gen_random_uuid() WHERE seq = $1")
        .bind(seq)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        verify(&pool, None).await.unwrap(),
        vec![Break::Altered { seq }]
    );
}
