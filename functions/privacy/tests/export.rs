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
    import_apple(pool, user, "resilio-sleep_with_inbed.xml").await;
    entry
}

const REAL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/realdata/");

/// Imports a real Apple Health file for `user` as log-ingestion stores it: its parser, then
/// one `imports` row and one `sleep_sessions` row per period with the offsets the file gave.
async fn import_apple(pool: &PgPool, user: Uuid, file: &str) {
    use log_ingestion::model::SessionKind;
    let bytes = std::fs::read(format!("{REAL}apple-health/{file}")).unwrap();
    let sessions =
        log_ingestion::parse::apple_health(&bytes[..], chrono_tz::Europe::Berlin).unwrap();
    let import = Uuid::new_v4();
    sqlx::query("INSERT INTO imports (id, user_id, source, content_sha256, zone, sessions) VALUES ($1, $2, 'apple_health', $3, 'Europe/Berlin', $4)")
        .bind(import)
        .bind(user)
        .bind(file.as_bytes())
        .bind(sessions.len() as i32)
        .execute(pool)
        .await
        .unwrap();
    for (i, s) in sessions.iter().enumerate() {
        let kind = match s.kind {
            SessionKind::Main => "main",
            SessionKind::Nap => "nap",
            SessionKind::Rest => "rest",
        };
        sqlx::query(
            "INSERT INTO sleep_sessions (id, user_id, import_id, source, source_key, device, record_ids, kind, night, \
             start_at, start_offset, end_at, end_offset, in_bed_secs, segments, source_day, stated) \
             VALUES ($1,$2,$3,'apple_health',$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16)",
        )
        .bind(Uuid::new_v4())
        .bind(user)
        .bind(import)
        .bind(format!("{file}:{i}"))
        .bind(&s.device)
        .bind(&s.record_ids)
        .bind(kind)
        .bind(log_ingestion::merge::night_key(s))
        .bind(s.start.to_utc())
        .bind(s.start.offset().local_minus_utc())
        .bind(s.end.to_utc())
        .bind(s.end.offset().local_minus_utc())
        .bind(s.in_bed_secs)
        .bind(serde_json::to_value(&s.segments).unwrap())
        .bind(s.source_day)
        .bind(s.stated.map(|st| serde_json::to_value(st).unwrap()))
        .execute(pool)
        .await
        .unwrap();
    }
}

/// The value of the component coded `code`.
fn component<'a>(obs: &'a Value, code: &str) -> &'a Value {
    obs["component"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["code"]["coding"][0]["code"] == code)
        .unwrap_or_else(|| panic!("component {code} in {obs}"))
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
    // Instants in the local time of the Berlin night: into bed 23:00 CET before the spring
    // change, final awakening 06:30 CEST after it (stored as 22:00Z and 04:30Z).
    assert_eq!(
        night["effectivePeriod"]["start"],
        "2025-03-29T23:00:00+01:00"
    );
    assert_eq!(night["effectivePeriod"]["end"], "2025-03-30T07:00:00+02:00");
    assert_eq!(night["issued"], "2025-03-30T06:30:00+02:00");
    assert_eq!(
        component(night, "lights-out")["valueDateTime"],
        "2025-03-29T23:15:00+01:00"
    );
    assert_eq!(component(night, "tib")["valueQuantity"]["value"], 420);
    assert_eq!(component(night, "twak")["valueQuantity"]["value"], 30);
    assert_eq!(component(night, "zone")["valueString"], "Europe/Berlin");

    // The Apple Health period (InBed 22:00-07:00 with Asleep 23:00-06:00, realdata/README.md):
    // 420 min asleep as its value, 540 min in bed, InBed never counted as sleep; provenance.
    let devices: Vec<_> = observations
        .iter()
        .filter(|o| o["code"]["coding"][0]["code"] == "device-main")
        .collect();
    assert_eq!(devices.len(), 1, "{devices:?}");
    let apple = devices[0];
    assert_eq!(apple["valueQuantity"]["value"], 420, "{apple}");
    assert_eq!(apple["valueQuantity"]["unit"], "min");
    assert_eq!(component(apple, "tib")["valueQuantity"]["value"], 540);
    assert_eq!(component(apple, "se")["valueQuantity"]["value"], 77.8);
    assert_eq!(apple["effectivePeriod"]["start"], "2026-04-14T22:00:00Z");
    assert_eq!(apple["effectivePeriod"]["end"], "2026-04-15T07:00:00Z");
    assert_eq!(apple["device"]["display"], "Apple Watch");
    assert_eq!(apple["method"]["text"], "apple_health (Apple Watch)");
    let stored_ids: Vec<String> =
        sqlx::query_scalar("SELECT unnest(record_ids) FROM sleep_sessions WHERE user_id = $1")
            .bind(user)
            .fetch_all(&pool)
            .await
            .unwrap();
    let exported: Vec<String> = apple["identifier"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            assert_eq!(
                i["system"],
                "https://dta-wide.de/fhir/sid/apple_health-record"
            );
            i["value"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(exported, stored_ids);
    assert!(!exported.is_empty());
    assert_eq!(
        component(apple, "night")["valueDateTime"],
        "2026-04-15",
        "the night it is filed under"
    );
    // Only InBed and unstaged Asleep were recorded: no stage minutes are invented.
    assert!(
        apple["component"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["code"]["coding"][0]["code"] != "deep"),
        "{apple}"
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
    // Every purpose the user decided on, with the wording of the version decided on.
    assert_eq!(consents.len(), 2, "{consents:?}");
    let intended = consents
        .iter()
        .find(|c| c["provision"]["purpose"][0]["code"] == "intended_use")
        .unwrap();
    let (title, body): (String, String) = sqlx::query_as(
        "SELECT title, body FROM consent_texts WHERE purpose = 'intended_use' ORDER BY version DESC LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(intended["sourceAttachment"]["title"], title.as_str());
    {
        use base64::Engine as _;
        let data = intended["sourceAttachment"]["data"].as_str().unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap();
        assert_eq!(String::from_utf8(decoded).unwrap(), body);
    }
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
    testkit::store_email(&pool, &s.stores.keyring, user).await;
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
    assert!(
        night.contains("<td>2025-03-30T06:30:00+02:00</td>"),
        "the wake-up in the night's local time: {night}"
    );
    assert!(row_of(second).contains("<td>330 min</td>"));

    // Scores and consents are there too; nothing of the other user.
    assert_eq!(row_ids(&html, "Fragebogen-Ergebnisse").len(), 1);
    assert_eq!(row_ids(&html, "Einwilligungen").len(), 2);
    assert!(html.contains("widerrufen / withdrawn"));
    // The consent rows show the wording agreed to, not a policy address.
    let title: String = sqlx::query_scalar(
        "SELECT title FROM consent_texts WHERE purpose = 'product_improvement' AND version = 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        html.contains(&format!(
            "<strong>{}</strong>",
            privacy::export::escape(&title)
        )),
        "{html}"
    );
    assert!(!html.contains("https://dta-wide.de/consent/"), "{html}");
    // The device period with its minutes asleep and in bed.
    let devices = row_ids(&html, "Geräte");
    assert_eq!(devices.len(), 1);
    let device = row_of(devices[0].parse().unwrap());
    assert!(
        device.contains("<td>540 min</td><td>420 min</td>"),
        "{device}"
    );
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
