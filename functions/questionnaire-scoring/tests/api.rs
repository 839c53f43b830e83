//! The questionnaire-scoring API against a real PostgreSQL (one fresh database per test).

use std::path::PathBuf;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::testkit;
use questionnaire_scoring::{ApiDoc, AppState, app, routes};
use serde_json::{Value, json};
use sqlx::PgPool;
use tower::ServiceExt;
use utoipa::OpenApi;
use uuid::Uuid;

fn state(pool: PgPool) -> AppState {
    AppState {
        pool,
        keys: testkit::jwt_keys(),
    }
}

async fn call(
    state: &AppState,
    method: &str,
    uri: &str,
    user: Option<Uuid>,
    body: Option<Value>,
) -> (StatusCode, String, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(u) = user {
        req = req.header(header::AUTHORIZATION, testkit::bearer(&state.keys, u));
    }
    let body = match body {
        Some(b) => {
            req = req.header(header::CONTENT_TYPE, "application/json");
            Body::from(b.to_string())
        }
        None => Body::empty(),
    };
    let res = app(state.clone(), Duration::from_secs(10))
        .oneshot(req.body(body).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let ctype = res
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, ctype, testkit::json_body(res).await)
}

/// Writes a resource for the external R4 validator when `FHIR_OUT_DIR` is set (CI).
fn emit(name: &str, resource: &Value) {
    if let Some(dir) = std::env::var_os("FHIR_OUT_DIR") {
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(format!("{name}.json")),
            serde_json::to_vec_pretty(resource).unwrap(),
        )
        .unwrap();
    }
}

fn isi(items: [u8; 7]) -> Value {
    let answers: serde_json::Map<String, Value> = items
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("isi-{}", i + 1), json!(v)))
        .collect();
    json!({ "questionnaire": "isi", "answers": answers })
}

/// REFERENCE §1.5 Q3 as a FHIR QuestionnaireResponse with LOINC answer codes.
fn phq9_q3_fhir() -> Value {
    let codes = ["LA6568-5", "LA6569-3", "LA6570-1", "LA6571-9"];
    let items: Vec<Value> = [3, 0, 1, 2, 0, 0, 1, 0, 3]
        .iter()
        .enumerate()
        .map(|(i, v)| json!({ "linkId": format!("phq9-{}", i + 1), "answer": [{ "valueCoding": { "system": "http://loinc.org", "code": codes[*v] } }] }))
        .collect();
    json!({
        "resourceType": "QuestionnaireResponse",
        "questionnaire": "https://dta-wide.de/fhir/Questionnaire/phq-9|1",
        "status": "completed",
        "authored": "2026-11-30T08:00:00+01:00",
        "item": items,
    })
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn questionnaires_are_served_as_fhir(pool: PgPool) {
    let s = state(pool.clone());
    let user = testkit::user(&pool).await;
    let (status, ctype, bundle) = call(&s, "GET", "/v1/questionnaires", Some(user), None).await;
    assert_eq!(
        (status, ctype.as_str()),
        (StatusCode::OK, "application/fhir+json")
    );
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["total"], 7);
    let (status, _, q) = call(&s, "GET", "/v1/questionnaires/phq-9-1", Some(user), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(q["code"][0]["code"], "44249-1");
    assert_eq!(q["item"].as_array().unwrap().len(), 10);
    let (status, _, _) = call(&s, "GET", "/v1/questionnaires/isi-9", Some(user), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = call(&s, "GET", "/v1/questionnaires", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for id in ["score-codes", "score-flags", "psqi-answers"] {
        let (status, _, cs) = call(
            &s,
            "GET",
            &format!("/v1/questionnaires/code-systems/{id}"),
            Some(user),
            None,
        )
        .await;
        assert_eq!(
            (status, cs["resourceType"].as_str()),
            (StatusCode::OK, Some("CodeSystem")),
            "{id}"
        );
        emit(&format!("api-CodeSystem-{id}"), &cs);
    }
    let (status, _, _) = call(
        &s,
        "GET",
        "/v1/questionnaires/code-systems/loinc",
        Some(user),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    emit("api-Questionnaire-phq-9-1", &q);
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn plain_answers_are_scored_and_stored_with_the_algorithm(pool: PgPool) {
    let s = state(pool.clone());
    let user = testkit::user(&pool).await;
    // REFERENCE §1.1 I4.
    let (status, _, body) = call(
        &s,
        "POST",
        "/v1/questionnaire-responses",
        Some(user),
        Some(isi([1, 2, 1, 0, 0, 3, 2])),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["score"]["score"]["total"], 9.0);
    assert_eq!(body["score"]["score"]["band"]["code"], "isi-subthreshold");
    assert_eq!(body["score"]["score"]["algorithm"], "isi@1.0.0");
    assert_eq!(body["questionnaire"], "isi-1");
    let row: (String, Value, Option<f64>, Option<String>) = sqlx::query_as(
        "SELECT s.algorithm, r.answers, s.total, s.band FROM questionnaire_responses r JOIN questionnaire_scores s ON s.response_id = r.id WHERE r.id = $1",
    )
    .bind(Uuid::parse_str(body["id"].as_str().unwrap()).unwrap())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(row.0, "isi@1.0.0");
    assert_eq!(row.1["isi-6"], 3);
    assert_eq!(
        (row.2, row.3.as_deref()),
        (Some(9.0), Some("isi-subthreshold"))
    );
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_fhir_phq9_with_item_nine_records_a_safety_event(pool: PgPool) {
    let s = state(pool.clone());
    let user = testkit::user(&pool).await;
    let (status, _, body) = call(
        &s,
        "POST",
        "/v1/questionnaire-responses",
        Some(user),
        Some(phq9_q3_fhir()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["score"]["score"]["total"], 10.0);
    assert_eq!(body["authored"], "2026-11-30T07:00:00Z");
    let flags: Vec<&str> = body["score"]["score"]["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert!(flags.contains(&"phq9-item9-positive"), "{flags:?}");
    let events: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT flag, item FROM safety_events WHERE user_id = $1")
            .bind(user)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        events,
        [("phq9-item9-positive".to_owned(), Some("phq9-9".to_owned()))]
    );
    // Both facts leave through the outbox with the score, ids and codes only.
    let outbox: Vec<(String, Value)> = sqlx::query_as(
        "SELECT topic, payload FROM outbox WHERE topic <> 'audit' ORDER BY payload->>'type'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(outbox.len(), 2);
    assert_eq!(
        (outbox[0].0.as_str(), outbox[0].1["type"].as_str()),
        ("questionnaire", Some("questionnaire.scored"))
    );
    assert_eq!(outbox[0].1["data"]["total"], 10.0);
    assert_eq!(
        (outbox[1].0.as_str(), outbox[1].1["type"].as_str()),
        ("safety", Some("safety.flagged"))
    );
    assert_eq!(outbox[1].1["data"]["item"], "phq9-9");
    assert!(outbox[0].1["data"].get("answers").is_none());

    // The response and its Observation, as FHIR.
    let id = body["id"].as_str().unwrap();
    let (status, ctype, qr) = call(
        &s,
        "GET",
        &format!("/v1/questionnaire-responses/{id}/fhir"),
        Some(user),
        None,
    )
    .await;
    assert_eq!(
        (status, ctype.as_str()),
        (StatusCode::OK, "application/fhir+json")
    );
    assert_eq!(qr["id"], id);
    let (status, _, obs) = call(
        &s,
        "GET",
        &format!("/v1/questionnaire-responses/{id}/observation"),
        Some(user),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(obs["code"]["coding"][0]["code"], "44261-6");
    assert_eq!(
        obs["derivedFrom"][0]["reference"],
        format!("QuestionnaireResponse/{id}")
    );
    assert_eq!(obs["subject"]["reference"], format!("Patient/{user}"));
    emit("api-QuestionnaireResponse-phq-9", &qr);
    emit("api-Observation-phq-9", &obs);
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_psqi_with_a_missing_component_is_stored_without_global_score(pool: PgPool) {
    let s = state(pool.clone());
    let user = testkit::user(&pool).await;
    // REFERENCE §1.2.8 P12: Q5c missing.
    let body = json!({ "questionnaire": "psqi-1", "answers": {
        "psqi-1": "23:00", "psqi-2": 10, "psqi-3": "07:00", "psqi-4": 7.0,
        "psqi-5a": 0, "psqi-5b": 0, "psqi-5d": 0, "psqi-5e": 0, "psqi-5f": 0, "psqi-5g": 0, "psqi-5h": 0, "psqi-5i": 0,
        "psqi-6": 0, "psqi-7": 0, "psqi-8": 0, "psqi-9": 0 } });
    let (status, _, body) = call(
        &s,
        "POST",
        "/v1/questionnaire-responses",
        Some(user),
        Some(body),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["score"]["score"]["total"], Value::Null);
    let id = body["id"].as_str().unwrap();
    let (_, _, obs) = call(
        &s,
        "GET",
        &format!("/v1/questionnaire-responses/{id}/observation"),
        Some(user),
        None,
    )
    .await;
    assert_eq!(obs["dataAbsentReason"]["coding"][0]["code"], "unknown");
    let (_, _, qr) = call(
        &s,
        "GET",
        &format!("/v1/questionnaire-responses/{id}/fhir"),
        Some(user),
        None,
    )
    .await;
    emit("api-QuestionnaireResponse-psqi", &qr);
    emit("api-Observation-psqi", &obs);
    let (_, _, q) = call(&s, "GET", "/v1/questionnaires/psqi-1", Some(user), None).await;
    emit("api-Questionnaire-psqi-1", &q);
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn invalid_answers_are_422_naming_the_item(pool: PgPool) {
    let s = state(pool.clone());
    let user = testkit::user(&pool).await;
    let cases = [
        // REFERENCE §1.1 I10.
        (isi([0, 0, 0, 0, 0, 0, 5]), "isi-7"),
        (
            isi([0, 0, 0, 0, 0, 0, 0])
                .as_object()
                .cloned()
                .map(|mut m| {
                    m["answers"]["isi-8"] = json!(1);
                    Value::Object(m)
                })
                .unwrap(),
            "isi-8",
        ),
        (
            json!({ "questionnaire": "isi", "answers": { "isi-1": "two" } }),
            "isi-1",
        ),
        (
            json!({ "questionnaire": "isi", "answers": { "isi-1": 1 } }),
            "isi-2",
        ),
        (
            json!({ "questionnaire": "bdi", "answers": {} }),
            "questionnaire",
        ),
        (json!({ "answers": {} }), "questionnaire"),
        (json!({ "questionnaire": "isi" }), "answers"),
        (json!({ "questionnaire": "isi", "answers": [] }), "answers"),
        (
            json!({ "questionnaire": "isi", "answers": {}, "score": 3 }),
            "score",
        ),
        (
            json!({ "id": "nope", "questionnaire": "isi", "answers": {} }),
            "id",
        ),
        (
            json!({ "questionnaire": "isi", "authored": "2999-01-01T00:00:00Z", "answers": {} }),
            "authored",
        ),
        // REFERENCE §1.5 Q11: 3 PHQ-9 items missing.
        (
            json!({ "questionnaire": "phq-9", "answers": { "phq9-1": 1, "phq9-2": 1, "phq9-3": 1, "phq9-4": 1, "phq9-5": 1, "phq9-6": 1 } }),
            "phq9-7",
        ),
        (
            json!({ "resourceType": "QuestionnaireResponse", "questionnaire": "https://dta-wide.de/fhir/Questionnaire/gad-7", "status": "in-progress" }),
            "status",
        ),
    ];
    for (body, field) in cases {
        let (status, ctype, p) = call(
            &s,
            "POST",
            "/v1/questionnaire-responses",
            Some(user),
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body} → {p}");
        assert_eq!(ctype, "application/problem+json");
        assert_eq!(p["field"], field, "{body} → {p}");
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM questionnaire_responses")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn submit_is_idempotent_on_the_client_id(pool: PgPool) {
    let s = state(pool.clone());
    let user = testkit::user(&pool).await;
    let id = Uuid::new_v4();
    let mut body = isi([2; 7]);
    body["id"] = json!(id);
    let (first, _, a) = call(
        &s,
        "POST",
        "/v1/questionnaire-responses",
        Some(user),
        Some(body.clone()),
    )
    .await;
    let (again, _, b) = call(
        &s,
        "POST",
        "/v1/questionnaire-responses",
        Some(user),
        Some(body.clone()),
    )
    .await;
    assert_eq!((first, again), (StatusCode::CREATED, StatusCode::OK));
    assert_eq!(a["score"]["id"], b["score"]["id"]);
    body["answers"]["isi-1"] = json!(3);
    let (status, _, p) = call(
        &s,
        "POST",
        "/v1/questionnaire-responses",
        Some(user),
        Some(body.clone()),
    )
    .await;
    assert_eq!(
        (status, p["code"].as_str()),
        (StatusCode::CONFLICT, Some("conflict"))
    );
    // Another user cannot reuse or see the id either.
    let other = testkit::user(&pool).await;
    let (status, _, _) = call(
        &s,
        "POST",
        "/v1/questionnaire-responses",
        Some(other),
        Some(body),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn history_lists_only_the_callers_responses_newest_first(pool: PgPool) {
    let s = state(pool.clone());
    let user = testkit::user(&pool).await;
    let other = testkit::user(&pool).await;
    for (day, items) in [
        ("2026-11-01", [4; 7]),
        ("2026-11-15", [2; 7]),
        ("2026-11-29", [1; 7]),
    ] {
        let mut body = isi(items);
        body["authored"] = json!(format!("{day}T20:00:00+01:00"));
        let (status, _, _) = call(
            &s,
            "POST",
            "/v1/questionnaire-responses",
            Some(user),
            Some(body),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    call(
        &s,
        "POST",
        "/v1/questionnaire-responses",
        Some(user),
        Some(phq9_q3_fhir()),
    )
    .await;
    call(
        &s,
        "POST",
        "/v1/questionnaire-responses",
        Some(other),
        Some(isi([0; 7])),
    )
    .await;
    let (status, _, list) = call(
        &s,
        "GET",
        "/v1/questionnaire-responses?instrument=isi",
        Some(user),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let totals: Vec<f64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["score"]["score"]["total"].as_f64().unwrap())
        .collect();
    assert_eq!(totals, [7.0, 14.0, 28.0]);
    let (_, _, all) = call(&s, "GET", "/v1/questionnaire-responses", Some(user), None).await;
    assert_eq!(all.as_array().unwrap().len(), 4);
    let (_, _, one) = call(
        &s,
        "GET",
        "/v1/questionnaire-responses?limit=1",
        Some(user),
        None,
    )
    .await;
    assert_eq!(one.as_array().unwrap().len(), 1);
    for bad in [
        "?instrument=bdi",
        "?limit=0",
        "?limit=x",
        "?since=2026-01-01",
    ] {
        let (status, _, p) = call(
            &s,
            "GET",
            &format!("/v1/questionnaire-responses{bad}"),
            Some(user),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {p}");
    }
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn another_users_response_is_not_found(pool: PgPool) {
    let s = state(pool.clone());
    let owner = testkit::user(&pool).await;
    let other = testkit::user(&pool).await;
    let (_, _, body) = call(
        &s,
        "POST",
        "/v1/questionnaire-responses",
        Some(owner),
        Some(isi([1; 7])),
    )
    .await;
    let id = body["id"].as_str().unwrap();
    for (method, path) in [
        ("GET", format!("/v1/questionnaire-responses/{id}")),
        ("GET", format!("/v1/questionnaire-responses/{id}/fhir")),
        (
            "GET",
            format!("/v1/questionnaire-responses/{id}/observation"),
        ),
        ("POST", format!("/v1/questionnaire-responses/{id}/rescore")),
        ("GET", "/v1/questionnaire-responses/not-a-uuid".to_owned()),
    ] {
        let (status, _, _) = call(&s, method, &path, Some(other), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
    }
    let (status, _, _) = call(
        &s,
        "GET",
        &format!("/v1/questionnaire-responses/{id}"),
        Some(owner),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn rescore_keeps_the_earlier_result(pool: PgPool) {
    let s = state(pool.clone());
    let user = testkit::user(&pool).await;
    let (_, _, body) = call(
        &s,
        "POST",
        "/v1/questionnaire-responses",
        Some(user),
        Some(isi([3; 7])),
    )
    .await;
    let id = body["id"].as_str().unwrap();
    // Same algorithm: nothing to do.
    let (status, _, same) = call(
        &s,
        "POST",
        &format!("/v1/questionnaire-responses/{id}/rescore"),
        Some(user),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(same["score"]["id"], body["score"]["id"]);
    // As if it had been scored by an older rule set.
    sqlx::query("UPDATE questionnaire_scores SET algorithm = 'isi@0.9.0', total = 20 WHERE response_id = $1")
        .bind(Uuid::parse_str(id).unwrap())
        .execute(&pool)
        .await
        .unwrap();
    let (status, _, after) = call(
        &s,
        "POST",
        &format!("/v1/questionnaire-responses/{id}/rescore"),
        Some(user),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{after}");
    assert_eq!(after["score"]["score"]["algorithm"], "isi@1.0.0");
    assert_eq!(after["score"]["score"]["total"], 21.0);
    assert_eq!(
        after["previous_scores"][0]["score"]["algorithm"],
        "isi@0.9.0"
    );
    assert_eq!(after["previous_scores"][0]["score"]["total"], 20.0);
    assert_eq!(after["previous_scores"][0]["current"], false);
    let (_, _, again) = call(
        &s,
        "GET",
        &format!("/v1/questionnaire-responses/{id}"),
        Some(user),
        None,
    )
    .await;
    assert_eq!(again["previous_scores"].as_array().unwrap().len(), 1);
    let (_, _, list) = call(&s, "GET", "/v1/questionnaire-responses", Some(user), None).await;
    assert_eq!(
        list.as_array().unwrap().len(),
        1,
        "history shows the current score once"
    );
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn deleting_a_user_deletes_their_responses_scores_and_events(pool: PgPool) {
    let s = state(pool.clone());
    let user = testkit::user(&pool).await;
    call(
        &s,
        "POST",
        "/v1/questionnaire-responses",
        Some(user),
        Some(phq9_q3_fhir()),
    )
    .await;
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(user)
        .execute(&pool)
        .await
        .unwrap();
    for table in [
        "questionnaire_responses",
        "questionnaire_scores",
        "safety_events",
    ] {
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(n, 0, "{table}");
    }
}

#[test]
fn every_served_route_is_in_the_openapi_document() {
    let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let (missing, extra) = common::openapi::route_diff(&routes().routes(), &doc);
    assert!(missing.is_empty(), "served but undocumented: {missing:?}");
    assert!(extra.is_empty(), "documented but not served: {extra:?}");
}

/// The (action, object id) of the audit events in the outbox, oldest first.
async fn audit_events(pool: &PgPool, user: Uuid) -> Vec<(String, Option<String>)> {
    let rows: Vec<Value> =
        sqlx::query_scalar("SELECT payload FROM outbox WHERE topic = 'audit' ORDER BY id")
            .fetch_all(pool)
            .await
            .unwrap();
    rows.iter()
        .map(|p| {
            assert_eq!(p["type"], "audit.recorded");
            assert_eq!(p["data"]["function"], "questionnaire-scoring");
            assert_eq!(
                p["data"]["subject_ref"],
                common::events::pseudonym(user).as_str()
            );
            (
                p["data"]["action"].as_str().unwrap().to_owned(),
                p["data"]["object_id"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_submission_and_each_read_leave_one_audit_event(pool: PgPool) {
    let s = state(pool.clone());
    let user = testkit::user(&pool).await;
    let (status, _, body) = call(
        &s,
        "POST",
        "/v1/questionnaire-responses",
        Some(user),
        Some(isi([1, 2, 1, 0, 0, 3, 2])),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    for uri in [
        format!("/v1/questionnaire-responses/{id}"),
        format!("/v1/questionnaire-responses/{id}/fhir"),
        "/v1/questionnaire-responses".to_owned(),
    ] {
        assert_eq!(
            call(&s, "GET", &uri, Some(user), None).await.0,
            StatusCode::OK,
            "{uri}"
        );
    }
    let read = "questionnaire-response.read".to_owned();
    assert_eq!(
        audit_events(&pool, user).await,
        vec![
            (
                "questionnaire-response.created".to_owned(),
                Some(id.clone())
            ),
            (read.clone(), Some(id.clone())),
            (read.clone(), Some(id)),
            (read, None),
        ]
    );
    let text: String = sqlx::query_scalar(
        "SELECT string_agg(payload::text, ' ') FROM outbox WHERE topic = 'audit'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(!text.contains("isi-6") && !text.contains(&user.to_string()));
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn after_the_consent_is_withdrawn_nothing_is_stored(pool: PgPool) {
    let s = state(pool.clone());
    let user = testkit::user(&pool).await;
    sqlx::query(
        "INSERT INTO consent_events (user_id, purpose, version, action) \
         SELECT $1, purpose, max(version), 'withdrawn' FROM consent_texts WHERE purpose = 'intended_use' GROUP BY purpose",
    )
    .bind(user)
    .execute(&pool)
    .await
    .unwrap();
    let (status, ctype, p) = call(
        &s,
        "POST",
        "/v1/questionnaire-responses",
        Some(user),
        Some(isi([1, 2, 1, 0, 0, 3, 2])),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{p}");
    assert_eq!(ctype, "application/problem+json");
    assert_eq!(
        (p["code"].as_str(), p["field"].as_str()),
        (Some("consent_required"), Some("intended_use"))
    );
    let stored: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM questionnaire_responses) + (SELECT count(*) FROM questionnaire_scores) + (SELECT count(*) FROM outbox)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(stored, 0);
}
