//! The FHIR export against the real stores. With `FHIR_OUT_DIR` set, the Bundle is written
//! there for scripts/validate-fhir.py (scripts/fhir-check.sh).

mod support;

use axum::http::StatusCode;
use common::consent::Purpose;
use common::testkit;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

async fn seed(s: &privacy::AppState, pool: &PgPool, user: Uuid) -> Uuid {
    let entry = Uuid::new_v4();
    let key = s.stores.keyring.data_key(user).await.unwrap();
    let ct = key
        .encrypt_str(
            &common::crypto::field_context("diary_entries", "comment", entry),
            "Grübeln über die Arbeit",
        )
        .unwrap();
    sqlx::query(
        "INSERT INTO diary_entries (id, user_id, night, zone, into_bed, into_bed_offset, lights_out, lights_out_offset, \
         final_awakening, final_awakening_offset, out_of_bed, out_of_bed_offset, sol_min, awakenings, waso_min, \
         tib_min, tst_min, twak_min, se_pct, input, comment_ct) VALUES ($1, $2, '2025-03-30', 'Europe/Berlin', \
         '2025-03-29T22:00Z', 3600, '2025-03-29T22:15Z', 3600, '2025-03-30T04:30Z', 7200, '2025-03-30T05:00Z', 7200, \
         20, 1, 15, 420, 340, 30, 81.0, '{}', $3)",
    )
    .bind(entry)
    .bind(user)
    .bind(ct)
    .execute(pool)
    .await
    .unwrap();

    let definition = common::questionnaire::definition("isi-1").expect("ISI");
    let answers = common::questionnaire::Answers::from_json(
        definition,
        &json!({"isi-1": 2, "isi-2": 3, "isi-3": 1, "isi-4": 3, "isi-5": 2, "isi-6": 2, "isi-7": 3}),
    )
    .unwrap();
    let score = definition.score(&answers).unwrap();
    let response = Uuid::new_v4();
    sqlx::query(
        "WITH r AS (INSERT INTO questionnaire_responses (id, user_id, instrument, questionnaire, answers, authored_at) \
           VALUES ($1, $2, 'isi', 'isi-1', $3, now()) RETURNING id) \
         INSERT INTO questionnaire_scores (id, response_id, user_id, algorithm, total_code, total, band, band_display, components, flags) \
           SELECT gen_random_uuid(), r.id, $2, $4, $5, $6, $7, $8, $9, $10 FROM r",
    )
    .bind(response)
    .bind(user)
    .bind(answers.to_json())
    .bind(&score.algorithm)
    .bind(&score.total_code)
    .bind(score.total)
    .bind(score.band.as_ref().map(|b| b.code.clone()))
    .bind(score.band.as_ref().map(|b| b.display.clone()))
    .bind(serde_json::to_value(&score.components).unwrap())
    .bind(serde_json::to_value(&score.flags).unwrap())
    .execute(pool)
    .await
    .unwrap();
    common::consent::grant_current(pool, user, Purpose::ProductImprovement)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO consent_events (user_id, purpose, version, action) VALUES ($1, 'product_improvement', 1, 'withdrawn')",
    )
    .bind(user)
    .execute(pool)
    .await
    .unwrap();
    entry
}

fn of_type<'a>(bundle: &'a Value, kind: &str) -> Vec<&'a Value> {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .filter(|r| r["resourceType"] == kind)
        .collect()
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn the_export_is_a_fhir_bundle_of_everything_stored_about_the_user(pool: PgPool) {
    let s = support::state(pool.clone()).await;
    let user = testkit::user(&pool).await;
    let other = testkit::user(&pool).await;
    let entry = seed(&s, &pool, user).await;
    seed(&s, &pool, other).await;

    let (status, bundle) = support::call(&s, "GET", "/v1/me/export", user, None).await;
    assert_eq!(status, StatusCode::OK, "{bundle}");
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "collection");

    let patients = of_type(&bundle, "Patient");
    assert_eq!(patients.len(), 1);
    assert_eq!(patients[0]["identifier"][0]["value"], user.to_string());

    let observations = of_type(&bundle, "Observation");
    let night = observations
        .iter()
        .find(|o| o["id"] == entry.to_string())
        .expect("the diary night");
    assert_eq!(night["code"]["coding"][0]["code"], "93832-4");
    assert_eq!(night["valueQuantity"]["value"], 340);
    assert_eq!(
        night["note"][0]["text"], "Grübeln über die Arbeit",
        "decrypted"
    );
    let scores: Vec<_> = observations
        .iter()
        .filter(|o| o.get("derivedFrom").is_some())
        .collect();
    assert_eq!(scores.len(), 1);
    assert_eq!(of_type(&bundle, "QuestionnaireResponse").len(), 1);

    let consents = of_type(&bundle, "Consent");
    let status_of = |p: &str| {
        consents
            .iter()
            .find(|c| c["provision"]["purpose"][0]["code"] == p)
            .map(|c| c["status"].as_str().unwrap().to_owned())
    };
    assert_eq!(status_of("intended_use").as_deref(), Some("active"));
    assert_eq!(
        status_of("product_improvement").as_deref(),
        Some("inactive")
    );

    let text = bundle.to_string();
    assert!(
        !text.contains(&other.to_string()),
        "nothing of another user"
    );

    // The read is in the audit trail, by pseudonym.
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'export.read' AND subject_ref = $1",
    )
    .bind(privacy::erasure::subject_hash(user))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(audited, 1);

    if let Ok(dir) = std::env::var("FHIR_OUT_DIR") {
        std::fs::write(
            std::path::Path::new(&dir).join("privacy-export-bundle.json"),
            serde_json::to_vec_pretty(&bundle).unwrap(),
        )
        .unwrap();
    }
}

async fn diary_night(
    s: &privacy::AppState,
    pool: &PgPool,
    user: Uuid,
    night: &str,
    comment: &str,
) -> Uuid {
    let entry = Uuid::new_v4();
    let key = s.stores.keyring.data_key(user).await.unwrap();
    let ct = key
        .encrypt_str(
            &common::crypto::field_context("diary_entries", "comment", entry),
            comment,
        )
        .unwrap();
    sqlx::query(
        "INSERT INTO diary_entries (id, user_id, night, zone, into_bed, into_bed_offset, lights_out, lights_out_offset, \
         final_awakening, final_awakening_offset, out_of_bed, out_of_bed_offset, sol_min, awakenings, waso_min, \
         tib_min, tst_min, twak_min, se_pct, input, comment_ct) VALUES ($1, $2, $3::date, 'Europe/Berlin', \
         $3::date - interval '2 hours', 3600, $3::date - interval '105 minutes', 3600, $3::date + interval '4 hours 30 minutes', 7200, \
         $3::date + interval '5 hours', 7200, 20, 2, 25, 420, 330, 30, 78.6, '{}', $4)",
    )
    .bind(entry)
    .bind(user)
    .bind(night)
    .bind(ct)
    .execute(pool)
    .await
    .unwrap();
    entry
}

async fn raw(
    s: &privacy::AppState,
    uri: &str,
    user: Uuid,
    accept: Option<&str>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    use tower::ServiceExt as _;
    let mut req = axum::http::Request::builder()
        .uri(uri)
        .header("authorization", testkit::bearer(&s.keys, user));
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let res = privacy::app(s.clone(), std::time::Duration::from_secs(30))
        .oneshot(req.body(axum::body::Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

/// The `data-id`s of the rows of the section whose heading starts with `heading`.
fn row_ids(html: &str, heading: &str) -> Vec<String> {
    let start = html.find(&format!("<h2>{heading}")).expect("section");
    let section = &html[start + 4..];
    let section = &section[..section.find("<h2>").unwrap_or(section.len())];
    section
        .split("<tr data-id=\"")
        .skip(1)
        .map(|r| r.split('"').next().unwrap().to_owned())
        .collect()
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn the_readable_export_shows_the_bundle_s_nights_with_every_value_escaped(pool: PgPool) {
    let s = support::state(pool.clone()).await;
    let user = testkit::user(&pool).await;
    let other = testkit::user(&pool).await;
    let first = seed(&s, &pool, user).await;
    let hostile = "<script>alert('x')</script> & \"mehr\"";
    let second = diary_night(&s, &pool, user, "2025-04-02", hostile).await;
    seed(&s, &pool, other).await;

    let (status, headers, html) = raw(&s, "/v1/me/export?format=html", user, None).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(
        headers["content-security-policy"],
        "default-src 'none'; style-src 'unsafe-inline'"
    );
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("Schlaftagebuch / Sleep diary"));
    assert!(html.contains(&format!("<dd>{user}</dd>")), "the pseudonym");
    assert!(html.contains(&format!("<dd>{user}@example.test</dd>")));

    // The comment is shown as text, never as markup.
    assert!(!html.contains("<script"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;mehr&quot;")
    );
    assert!(html.contains("Grübeln über die Arbeit"));

    // The same nights as the Bundle, with their values.
    let (_, bundle) = support::call(&s, "GET", "/v1/me/export", user, None).await;
    let mut nights: Vec<String> = of_type(&bundle, "Observation")
        .iter()
        .filter(|o| o["code"]["coding"][0]["code"] == "93832-4")
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect();
    nights.sort();
    let mut shown = row_ids(&html, "Schlaftagebuch");
    shown.sort();
    assert_eq!(shown, nights);
    let mut expected = vec![first.to_string(), second.to_string()];
    expected.sort();
    assert_eq!(shown, expected);
    let row_of = |id: Uuid| {
        let start = html.find(&format!("<tr data-id=\"{id}\">")).unwrap();
        html[start..start + html[start..].find("</tr>").unwrap()].to_owned()
    };
    let night = row_of(first);
    assert!(night.contains("<td>340 min</td>"), "{night}");
    assert!(night.contains("<td>420 min</td>"), "TIB: {night}");
    assert!(night.contains("<td>81.0 %</td>"), "{night}");
    assert!(night.contains("<td>2025-03-30T04:30:00Z</td>"), "{night}");
    assert!(row_of(second).contains("<td>330 min</td>"));

    // Scores and consents are there too; nothing of the other user.
    assert_eq!(row_ids(&html, "Fragebogen-Ergebnisse").len(), 1);
    assert_eq!(row_ids(&html, "Einwilligungen").len(), 2);
    assert!(html.contains("widerrufen / withdrawn"));
    assert!(!html.contains(&other.to_string()));

    // Accept chooses when `format` is absent; the query wins; anything else is refused.
    let (_, headers, page) = raw(
        &s,
        "/v1/me/export",
        user,
        Some("text/html,application/xhtml+xml"),
    )
    .await;
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert!(page.contains("Schlaftagebuch"));
    let (_, headers, json) = raw(&s, "/v1/me/export", user, Some("application/fhir+json")).await;
    assert_eq!(headers["content-type"], "application/fhir+json");
    assert_eq!(
        serde_json::from_str::<Value>(&json).unwrap()["resourceType"],
        "Bundle"
    );
    let (_, headers, _) = raw(&s, "/v1/me/export?format=fhir", user, Some("text/html")).await;
    assert_eq!(headers["content-type"], "application/fhir+json");
    let (status, _, problem) = raw(&s, "/v1/me/export?format=pdf", user, None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = serde_json::from_str(&problem).unwrap();
    assert_eq!(problem["field"], "format");
}
