//! The export of everything stored about the caller (GDPR Art. 15 and 20) as one FHIR R4
//! `collection` Bundle: the Patient (pseudonym and the contact address we hold), one sleep
//! Observation per diary night and per imported night, the QuestionnaireResponses with their
//! score Observations, and the consent decisions as Consent resources.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use common::consent::Purpose;
use common::http::AuthUser;
use common::questionnaire::{self, Answers, BandRef, Instrument, Score, fhir};
use serde_json::{Value, json};
use sha2::Digest as _;
use sqlx::Row;
use uuid::Uuid;

use crate::{AppState, Error, Result};

/// Our code system for sleep metrics that have no LOINC code.
pub const SLEEP_CODES: &str = "https://dta-wide.de/fhir/CodeSystem/sleep-metrics";
/// Our code system of the DiGAV §4(2) purposes.
pub const PURPOSE_CODES: &str = "https://dta-wide.de/fhir/CodeSystem/digav-purpose";
/// Identifier system of the pseudonymous user id.
pub const PSEUDONYM_SYSTEM: &str = "https://dta-wide.de/fhir/sid/pseudonym";
const LOINC: &str = "http://loinc.org";
/// LOINC 93832-4 "Sleep duration".
const SLEEP_DURATION: &str = "93832-4";

fn instant(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn minutes(value: i64) -> Value {
    json!({ "value": value, "unit": "min", "system": "http://unitsofmeasure.org", "code": "min" })
}

fn component(code: &str, display: &str, value: Value) -> Value {
    json!({ "code": { "coding": [{ "system": SLEEP_CODES, "code": code, "display": display }] }, "valueQuantity": value })
}

fn entry(resource: Value) -> Value {
    let id = resource["id"].as_str().unwrap_or_default().to_owned();
    json!({ "fullUrl": format!("urn:uuid:{id}"), "resource": resource })
}

fn sleep_category() -> Value {
    json!([{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "activity", "display": "Activity" }] }])
}

/// Builds the caller's Bundle.
pub async fn bundle(state: &AppState, user: Uuid) -> Result<Value> {
    let subject = format!("Patient/{user}");
    let email: Option<String> = sqlx::query_scalar("SELECT email FROM users WHERE id = $1")
        .bind(user)
        .fetch_optional(&state.pool)
        .await?;
    let email = email.ok_or_else(common::error::Problem::unauthorized)?;
    let mut entries = vec![entry(json!({
        "resourceType": "Patient",
        "id": user.to_string(),
        "identifier": [{ "system": PSEUDONYM_SYSTEM, "value": user.to_string() }],
        "telecom": [{ "system": "email", "value": email }],
    }))];

    let key = state.stores.keyring.existing(user).await?;
    let diary = sqlx::query(
        "SELECT id, night, lights_out, final_awakening, into_bed, out_of_bed, tib_min, tst_min, sol_min, waso_min, \
         awakenings, se_pct, comment_ct, input->>'comment' AS legacy_comment FROM diary_entries WHERE user_id = $1 ORDER BY night",
    )
    .bind(user)
    .fetch_all(&state.pool)
    .await?;
    for row in diary {
        let id: Uuid = row.try_get("id")?;
        let ct: Option<Vec<u8>> = row.try_get("comment_ct")?;
        let comment = match (ct, &key) {
            (Some(ct), Some(key)) => Some(key.decrypt_str(
                &common::crypto::field_context("diary_entries", "comment", id),
                &ct,
            )?),
            (Some(_), None) => None,
            (None, _) => row.try_get("legacy_comment")?,
        };
        let mut obs = json!({
            "resourceType": "Observation",
            "id": id.to_string(),
            "status": "final",
            "category": sleep_category(),
            "code": { "coding": [{ "system": LOINC, "code": SLEEP_DURATION, "display": "Sleep duration" }], "text": "Sleep diary night" },
            "subject": { "reference": subject },
            "effectivePeriod": { "start": instant(row.try_get("into_bed")?), "end": instant(row.try_get("out_of_bed")?) },
            "issued": instant(row.try_get("final_awakening")?),
            "valueQuantity": minutes(i64::from(row.try_get::<i32, _>("tst_min")?)),
            "method": { "text": "Consensus Sleep Diary" },
            "component": [
                component("tib", "Time in bed", minutes(i64::from(row.try_get::<i32, _>("tib_min")?))),
                component("sol", "Sleep onset latency", minutes(i64::from(row.try_get::<i32, _>("sol_min")?))),
                component("waso", "Wake after sleep onset", minutes(i64::from(row.try_get::<i32, _>("waso_min")?))),
                component("nwak", "Number of awakenings", json!({ "value": row.try_get::<i32, _>("awakenings")?, "unit": "{awakenings}", "system": "http://unitsofmeasure.org", "code": "1" })),
                component("se", "Sleep efficiency", json!({ "value": row.try_get::<f64, _>("se_pct")?, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%" })),
            ],
        });
        if let Some(text) = comment {
            obs["note"] = json!([{ "text": text }]);
        }
        entries.push(entry(obs));
    }

    let sessions = sqlx::query(
        "SELECT id, source, device, kind, start_at, end_at, in_bed_secs FROM sleep_sessions WHERE user_id = $1 ORDER BY start_at",
    )
    .bind(user)
    .fetch_all(&state.pool)
    .await?;
    for row in sessions {
        let id: Uuid = row.try_get("id")?;
        let source: String = row.try_get("source")?;
        let device: Option<String> = row.try_get("device")?;
        let kind: String = row.try_get("kind")?;
        let start: DateTime<Utc> = row.try_get("start_at")?;
        let end: DateTime<Utc> = row.try_get("end_at")?;
        let in_bed: Option<i64> = row.try_get("in_bed_secs")?;
        let mut obs = json!({
            "resourceType": "Observation",
            "id": id.to_string(),
            "status": "final",
            "category": sleep_category(),
            "code": { "coding": [{ "system": SLEEP_CODES, "code": format!("device-{kind}"), "display": format!("Device-recorded sleep period ({kind})") }] },
            "subject": { "reference": subject },
            "effectivePeriod": { "start": instant(start), "end": instant(end) },
            "method": { "text": match &device { Some(d) => format!("{source} ({d})"), None => source.clone() } },
        });
        if let Some(secs) = in_bed {
            obs["valueQuantity"] = minutes(secs / 60);
        }
        entries.push(entry(obs));
    }

    let responses = sqlx::query(
        "SELECT r.id, r.instrument, r.questionnaire, r.answers, r.authored_at, s.id AS score_id, s.algorithm, \
         s.total_code, s.total, s.band, s.band_display, s.components, s.flags, s.scored_at \
         FROM questionnaire_responses r JOIN questionnaire_scores s ON s.response_id = r.id AND s.current \
         WHERE r.user_id = $1 ORDER BY r.authored_at",
    )
    .bind(user)
    .fetch_all(&state.pool)
    .await?;
    for row in responses {
        let id: Uuid = row.try_get("id")?;
        let qid: String = row.try_get("questionnaire")?;
        let Some(definition) = questionnaire::definition(&qid) else {
            continue;
        };
        let stored = |e: String| Error::Stored(e);
        let answers = Answers::from_json(definition, &row.try_get::<Value, _>("answers")?)
            .map_err(|p| stored(p.to_string()))?;
        let instrument: String = row.try_get("instrument")?;
        let instrument = Instrument::ALL
            .into_iter()
            .find(|i| i.as_str() == instrument)
            .ok_or_else(|| stored(format!("instrument {instrument}")))?;
        let band: Option<String> = row.try_get("band")?;
        let band_display: Option<String> = row.try_get("band_display")?;
        let score = Score {
            instrument,
            questionnaire: qid.clone(),
            algorithm: row.try_get("algorithm")?,
            total_code: row.try_get("total_code")?,
            total: row.try_get("total")?,
            band: band.map(|code| BandRef {
                code,
                display: band_display.unwrap_or_default(),
            }),
            components: serde_json::from_value(row.try_get("components")?)
                .map_err(|e| stored(e.to_string()))?,
            flags: serde_json::from_value(row.try_get("flags")?)
                .map_err(|e| stored(e.to_string()))?,
        };
        let authored: DateTime<Utc> = row.try_get("authored_at")?;
        let score_id: Uuid = row.try_get("score_id")?;
        entries.push(entry(fhir::questionnaire_response(
            &answers,
            &id.to_string(),
            &subject,
            authored,
        )));
        entries.push(entry(fhir::observation(
            &score,
            &score_id.to_string(),
            &id.to_string(),
            &subject,
            row.try_get("scored_at")?,
        )));
    }

    let consents = sqlx::query(
        "SELECT DISTINCT ON (purpose) purpose, version, action, at FROM consent_events \
         WHERE user_id = $1 ORDER BY purpose, id DESC",
    )
    .bind(user)
    .fetch_all(&state.pool)
    .await?;
    for row in consents {
        let purpose: String = row.try_get("purpose")?;
        let Some(purpose) = Purpose::parse(&purpose) else {
            continue;
        };
        let version: i32 = row.try_get("version")?;
        let granted = row.try_get::<String, _>("action")? == "granted";
        let at: DateTime<Utc> = row.try_get("at")?;
        // A stable id per user and purpose, so two exports name the same decision alike.
        let digest = sha2::Sha256::digest(format!("{user}:{}", purpose.as_str()).as_bytes());
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        let id = uuid::Builder::from_random_bytes(bytes).into_uuid();
        entries.push(entry(json!({
            "resourceType": "Consent",
            "id": id.to_string(),
            "status": if granted { "active" } else { "inactive" },
            "scope": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy", "display": "Privacy Consent" }] },
            "category": [{ "coding": [{ "system": LOINC, "code": "59284-0", "display": "Patient Consent" }] }],
            "patient": { "reference": subject },
            "dateTime": instant(at),
            "policy": [{ "uri": format!("https://dta-wide.de/consent/{}/v{version}", purpose.as_str()) }],
            "provision": {
                "type": if granted { "permit" } else { "deny" },
                "purpose": [{ "system": PURPOSE_CODES, "code": purpose.as_str() }],
            },
        })));
    }

    Ok(json!({
        "resourceType": "Bundle",
        "id": Uuid::new_v4().to_string(),
        "type": "collection",
        "timestamp": instant(Utc::now()),
        "entry": entries,
    }))
}

/// Everything stored about the caller as a FHIR R4 `collection` Bundle.
#[utoipa::path(get, path = "/v1/me/export",
    responses((status = 200, description = "FHIR R4 Bundle", content_type = "application/fhir+json")),
    security(("bearer" = [])))]
pub async fn export(State(state): State<AppState>, user: AuthUser) -> Result<Response> {
    let bundle = bundle(&state, user.user_id).await?;
    let mut tx = state.pool.begin().await?;
    crate::audit::append(
        &mut tx,
        &crate::audit::Entry {
            actor: user.user_id,
            subject: user.user_id,
            action: "export.read",
            function: "privacy",
            object: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/fhir+json")],
        serde_json::to_vec(&bundle).unwrap_or_default(),
    )
        .into_response())
}
