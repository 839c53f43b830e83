//! The export of everything stored about the caller (GDPR Art. 15 and 20) as one FHIR R4
//! `collection` Bundle: the Patient (pseudonym and the contact address we hold), one sleep
//! Observation per diary night (every stored field) and per imported device period (time in
//! bed, asleep, efficiency, stage minutes, provenance), the QuestionnaireResponses with their
//! score Observations, and the consent decisions as Consent resources with the wording agreed
//! to; and the same Bundle rendered as a readable HTML page. Times are instants written with the
//! UTC offset the night had where it was recorded (FHIR R4 dateTime/instant allow an offset),
//! so a diary wake-up at 06:30 in Berlin reads `06:30:00+02:00`, not `04:30:00Z`.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use common::consent::Purpose;
use common::error::Problem;
use common::http::{ApiQuery, AuthUser};
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

/// The instant with the UTC offset (seconds east) stored beside it: the same instant, written
/// as the local time of the night (FHIR R4 `instant`/`dateTime`: `YYYY-MM-DDThh:mm:ss+zz:zz`).
fn local_instant(at: DateTime<Utc>, offset_secs: i32) -> String {
    match FixedOffset::east_opt(offset_secs) {
        Some(offset) => at
            .with_timezone(&offset)
            .to_rfc3339_opts(SecondsFormat::Secs, true),
        None => instant(at),
    }
}

fn offset_instant(at: DateTime<FixedOffset>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A component with a value of another type than Quantity (`valueDateTime`, `valueInteger`,
/// `valuePeriod`, `valueString`, …).
fn component_as(code: &str, display: &str, key: &str, value: Value) -> Value {
    json!({ "code": { "coding": [{ "system": SLEEP_CODES, "code": code, "display": display }] }, key: value })
}

/// Identifier system of a source's own record ids (`apple_health`, `fitbit`, `oura`).
pub fn record_system(source: &str) -> String {
    format!("https://dta-wide.de/fhir/sid/{source}-record")
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

/// One imported device period as an Observation: the period with the offsets the source gave,
/// the minutes asleep as the value (the rules of `GET /v1/imports/nights` applied to this period
/// alone: union of asleep intervals or the source's stated totals, InBed never asleep), time in
/// bed, efficiency and stage minutes as components, and the provenance: source, device, the
/// source's record ids, the night it is filed under and the zone of the import.
fn device_period(row: &sqlx::postgres::PgRow, subject: &str) -> Result<Value> {
    use log_ingestion::model::SessionKind;
    let id: Uuid = row.try_get("id")?;
    let session = log_ingestion::api::session_from_row(row)?;
    let source = session.source.as_str();
    let kind = match session.kind {
        SessionKind::Main => "main",
        SessionKind::Nap => "nap",
        SessionKind::Rest => "rest",
    };
    let night: chrono::NaiveDate = row.try_get("night")?;
    let zone: String = row.try_get("zone")?;
    let mut components = vec![
        component_as(
            "night",
            "Night the period is filed under",
            "valueDateTime",
            json!(night.to_string()),
        ),
        component_as(
            "zone",
            "Time zone of the import",
            "valueString",
            json!(zone),
        ),
    ];
    let merged = log_ingestion::merge::nights(std::slice::from_ref(&session));
    let mut value = None;
    if let Some(main) = merged.first().and_then(|n| n.main.as_ref()) {
        value = Some(main.tst_min);
        components.push(component("tib", "Time in bed", minutes(main.tib_min)));
        components.push(component("se", "Sleep efficiency", json!({ "value": main.se_pct, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%" })));
        let st = main.stages;
        // Stage minutes only where the source recorded stages (or stated them).
        if st.deep + st.light + st.rem + st.awake > 0 || session.stated.is_some() {
            for (code, display, min) in [
                ("deep", "Deep sleep", st.deep),
                ("light", "Light / core sleep", st.light),
                ("rem", "REM sleep", st.rem),
                ("awake", "Awake in the period", st.awake),
                ("unspecified", "Asleep without a stage", st.unspecified),
            ] {
                components.push(component(code, display, minutes(min)));
            }
        }
    } else if let Some(nap) = merged.first().and_then(|n| n.naps.first()) {
        value = Some(nap.asleep_min);
    }
    if let Some(secs) = session.in_bed_secs {
        components.push(component(
            "in-bed-stated",
            "Time in bed as the source states it",
            minutes((secs + 30).div_euclid(60)),
        ));
    }
    let mut obs = json!({
        "resourceType": "Observation",
        "id": id.to_string(),
        "meta": { "lastUpdated": instant(row.try_get("imported_at")?) },
        "identifier": session.record_ids.iter().map(|r| json!({ "system": record_system(source), "value": r })).collect::<Vec<_>>(),
        "status": "final",
        "category": sleep_category(),
        "code": { "coding": [{ "system": SLEEP_CODES, "code": format!("device-{kind}"), "display": format!("Device-recorded sleep period ({kind})") }] },
        "subject": { "reference": subject },
        "effectivePeriod": { "start": offset_instant(session.start), "end": offset_instant(session.end) },
        "method": { "text": match &session.device { Some(d) => format!("{source} ({d})"), None => source.to_owned() } },
        "component": components,
    });
    if let Some(device) = &session.device {
        obs["device"] = json!({ "display": device });
    }
    match value {
        Some(min) => obs["valueQuantity"] = minutes(min),
        // A rest period is not sleep; it has no minutes asleep.
        None => {
            obs["dataAbsentReason"] = json!({ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/data-absent-reason", "code": "not-applicable", "display": "Not Applicable" }] })
        }
    }
    Ok(obs)
}

/// Builds the caller's Bundle.
pub async fn bundle(state: &AppState, user: Uuid) -> Result<Value> {
    let subject = format!("Patient/{user}");
    let email_ct: Option<Option<Vec<u8>>> =
        sqlx::query_scalar("SELECT email_ct FROM users WHERE id = $1")
            .bind(user)
            .fetch_optional(&state.pool)
            .await?;
    let email_ct = email_ct.ok_or_else(common::error::Problem::unauthorized)?;
    let key = state.stores.keyring.existing(user).await?;
    // The address is stored encrypted under the data key (AAD `users.email:<id>`).
    let telecom = match (email_ct, &key) {
        (Some(ct), Some(key)) => vec![json!({ "system": "email", "value": key.decrypt_str(
            &common::crypto::field_context("users", "email", user),
            &ct,
        )? })],
        _ => Vec::new(),
    };
    let mut patient = json!({
        "resourceType": "Patient",
        "id": user.to_string(),
        "identifier": [{ "system": PSEUDONYM_SYSTEM, "value": user.to_string() }],
    });
    if !telecom.is_empty() {
        patient["telecom"] = json!(telecom);
    }
    let mut entries = vec![entry(patient)];

    let diary = sqlx::query(
        "SELECT id, night, lights_out, final_awakening, into_bed, out_of_bed, tib_min, tst_min, sol_min, waso_min, \
         awakenings, se_pct, comment_ct, input->>'comment' AS legacy_comment, zone, into_bed_offset, lights_out_offset, \
         final_awakening_offset, out_of_bed_offset, twak_min, nap_min, input, created_at, updated_at \
         FROM diary_entries WHERE user_id = $1 ORDER BY night",
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
        let at = |column: &str| -> Result<String> {
            Ok(local_instant(
                row.try_get(column)?,
                row.try_get(format!("{column}_offset").as_str())?,
            ))
        };
        let int = |column: &str| -> Result<i64> { Ok(i64::from(row.try_get::<i32, _>(column)?)) };
        let zone: String = row.try_get("zone")?;
        let night: chrono::NaiveDate = row.try_get("night")?;
        let mut components = vec![
            component_as(
                "night",
                "Night (local date of the final awakening)",
                "valueDateTime",
                json!(night.to_string()),
            ),
            component_as("zone", "Time zone", "valueString", json!(zone)),
            component("tib", "Time in bed", minutes(int("tib_min")?)),
            component_as(
                "lights-out",
                "Lights out",
                "valueDateTime",
                json!(at("lights_out")?),
            ),
            component_as(
                "final-awakening",
                "Final awakening",
                "valueDateTime",
                json!(at("final_awakening")?),
            ),
            component("sol", "Sleep onset latency", minutes(int("sol_min")?)),
            component("waso", "Wake after sleep onset", minutes(int("waso_min")?)),
            component(
                "nwak",
                "Number of awakenings",
                json!({ "value": row.try_get::<i32, _>("awakenings")?, "unit": "{awakenings}", "system": "http://unitsofmeasure.org", "code": "1" }),
            ),
            component("twak", "Terminal wakefulness", minutes(int("twak_min")?)),
            component(
                "se",
                "Sleep efficiency",
                json!({ "value": row.try_get::<f64, _>("se_pct")?, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%" }),
            ),
            component("nap", "Naps", minutes(int("nap_min")?)),
        ];
        // What the entry said beyond the times, as the user sent it (times keep their offset).
        let input: Value = row.try_get("input")?;
        if let Some(q) = input["quality"].as_i64() {
            components.push(component_as(
                "quality",
                "Sleep quality (1-5)",
                "valueInteger",
                json!(q),
            ));
        }
        for nap in input["naps"].as_array().into_iter().flatten() {
            components.push(component_as(
                "nap-period",
                "Nap",
                "valuePeriod",
                json!({ "start": nap["start"], "end": nap["end"] }),
            ));
        }
        for (kind, display) in [("caffeine", "Caffeine"), ("alcohol", "Alcohol")] {
            for intake in input[kind].as_array().into_iter().flatten() {
                components.push(component_as(
                    kind,
                    display,
                    "valueString",
                    json!(format!(
                        "{} serving(s) at {}",
                        intake["servings"],
                        intake["time"].as_str().unwrap_or_default()
                    )),
                ));
            }
        }
        for m in input["medication"].as_array().into_iter().flatten() {
            let mut text = m["name"].as_str().unwrap_or_default().to_owned();
            if let Some(dose) = m["dose"].as_str() {
                text.push_str(&format!(", {dose}"));
            }
            if let Some(time) = m["time"].as_str() {
                text.push_str(&format!(" at {time}"));
            }
            components.push(component_as(
                "medication",
                "Sleep medication",
                "valueString",
                json!(text),
            ));
        }
        let mut obs = json!({
            "resourceType": "Observation",
            "id": id.to_string(),
            "meta": { "lastUpdated": instant(row.try_get("updated_at")?) },
            "status": "final",
            "category": sleep_category(),
            "code": { "coding": [{ "system": LOINC, "code": SLEEP_DURATION, "display": "Sleep duration" }], "text": "Sleep diary night" },
            "subject": { "reference": subject },
            "effectivePeriod": { "start": at("into_bed")?, "end": at("out_of_bed")? },
            "issued": at("final_awakening")?,
            "valueQuantity": minutes(int("tst_min")?),
            "method": { "text": "Consensus Sleep Diary" },
            "component": components,
        });
        if let Some(text) = comment {
            obs["note"] = json!([{ "text": text }]);
        }
        entries.push(entry(obs));
    }

    let sessions = sqlx::query(
        "SELECT s.id, s.night, s.source, s.device, s.record_ids, s.kind, s.start_at, s.start_offset, s.end_at, s.end_offset, \
         s.in_bed_secs, s.segments, s.source_day, s.stated, i.zone, i.created_at AS imported_at \
         FROM sleep_sessions s JOIN imports i ON i.id = s.import_id WHERE s.user_id = $1 ORDER BY s.start_at, s.source",
    )
    .bind(user)
    .fetch_all(&state.pool)
    .await?;
    for row in sessions {
        entries.push(entry(device_period(&row, &subject)?));
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

    // The newest decision per purpose the user ever decided (granted or withdrawn), with the
    // text of the version decided on; a purpose never decided has no record to export.
    let consents = sqlx::query(
        "SELECT DISTINCT ON (e.purpose) e.purpose, e.version, e.action, e.at, t.title, t.body FROM consent_events e \
         LEFT JOIN consent_texts t ON t.purpose = e.purpose AND t.version = e.version \
         WHERE e.user_id = $1 ORDER BY e.purpose, e.id DESC",
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
        let title: Option<String> = row.try_get("title")?;
        let body: Option<String> = row.try_get("body")?;
        // A stable id per user and purpose, so two exports name the same decision alike.
        let digest = sha2::Sha256::digest(format!("{user}:{}", purpose.as_str()).as_bytes());
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        let id = uuid::Builder::from_random_bytes(bytes).into_uuid();
        let mut consent = json!({
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
        });
        // The wording decided on (consent_texts, never edited), as the source of the decision.
        if let (Some(title), Some(body)) = (title, body) {
            use base64::Engine as _;
            consent["sourceAttachment"] = json!({
                "contentType": "text/plain; charset=utf-8",
                "language": "de",
                "title": title,
                "data": base64::engine::general_purpose::STANDARD.encode(body.as_bytes()),
            });
        }
        entries.push(entry(consent));
    }

    Ok(json!({
        "resourceType": "Bundle",
        "id": Uuid::new_v4().to_string(),
        "type": "collection",
        "timestamp": instant(Utc::now()),
        "entry": entries,
    }))
}

/// Everything stored about the caller: the FHIR R4 `collection` Bundle, or the same data as an
/// HTML page a person can read (`?format=html`, or `Accept: text/html` without `format`).
#[utoipa::path(get, path = "/v1/me/export",
    params(ExportQuery),
    responses(
        (status = 200, description = "The FHIR R4 Bundle, or the same data as a readable HTML page (German, English labels)",
            content(("application/fhir+json"), ("text/html"))),
        (status = 422, description = "`format` is neither `fhir` nor `html`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn export(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(query): ApiQuery<ExportQuery>,
    headers: HeaderMap,
) -> Result<Response> {
    let format = negotiate(
        query.format,
        headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()),
    );
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
    let (content_type, body) = match format {
        Format::Fhir => (
            "application/fhir+json",
            serde_json::to_vec(&bundle).unwrap_or_default(),
        ),
        Format::Html => (
            "text/html; charset=utf-8",
            render_html(&bundle).into_bytes(),
        ),
    };
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            (header::VARY, "Accept"),
            // The page needs no script, image or request of its own.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'",
            ),
        ],
        body,
    )
        .into_response())
}

/// The output formats of the export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The FHIR R4 Bundle (`application/fhir+json`).
    Fhir,
    /// The same data as a page a person can read (`text/html`).
    Html,
}

/// Query of the export.
#[derive(Debug, Clone, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `fhir` (default) or `html`; without it, `Accept: text/html` asks for the page.
    #[param(inline)]
    pub format: Option<Format>,
}

/// The format asked for: the query wins; otherwise `text/html` in `Accept` before any FHIR or
/// JSON type; otherwise the Bundle.
pub fn negotiate(query: Option<Format>, accept: Option<&str>) -> Format {
    if let Some(format) = query {
        return format;
    }
    let Some(accept) = accept else {
        return Format::Fhir;
    };
    let html = accept.find("text/html");
    let json = ["application/fhir+json", "application/json"]
        .iter()
        .filter_map(|t| accept.find(t))
        .min();
    match (html, json) {
        (Some(h), Some(j)) if h < j => Format::Html,
        (Some(_), None) => Format::Html,
        _ => Format::Fhir,
    }
}

/// Escapes text for HTML element content and quoted attribute values (OWASP XSS prevention
/// rule 1 and 2: `& < > " '`).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// A JSON value as display text (strings as they are, numbers as written), escaped.
fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => escape(s),
        other => escape(&other.to_string()),
    }
}

fn quantity(value: &Value) -> String {
    if value.is_null() {
        return String::new();
    }
    let unit = match value["unit"].as_str() {
        Some("min") => " min",
        Some("%") => " %",
        _ => "",
    };
    format!("{}{unit}", text(&value["value"]))
}

fn component_value<'a>(obs: &'a Value, code: &str) -> &'a Value {
    obs["component"]
        .as_array()
        .and_then(|cs| {
            cs.iter()
                .find(|c| c["code"]["coding"][0]["code"] == code)
                .map(|c| &c["valueQuantity"])
        })
        .unwrap_or(&Value::Null)
}

/// Stage minutes of a device period, where stored ("deep 80 min, light 200 min, …").
fn stage_text(obs: &Value) -> String {
    [
        ("deep", "Tief / deep"),
        ("light", "Leicht / light"),
        ("rem", "REM"),
        ("awake", "Wach / awake"),
        ("unspecified", "ohne Phase / unstaged"),
    ]
    .iter()
    .filter(|(code, _)| !component_value(obs, code).is_null())
    .map(|(code, label)| format!("{label} {}", quantity(component_value(obs, code))))
    .collect::<Vec<_>>()
    .join(", ")
}

fn row(cells: &[String], id: &Value) -> String {
    let mut out = format!("<tr data-id=\"{}\">", text(id));
    for cell in cells {
        out.push_str("<td>");
        out.push_str(cell);
        out.push_str("</td>");
    }
    out.push_str("</tr>\n");
    out
}

fn table(caption: &str, headers: &[&str], rows: &[String]) -> String {
    let mut out = format!("<h2>{caption}</h2>\n");
    if rows.is_empty() {
        out.push_str("<p>Keine Einträge / No entries</p>\n");
        return out;
    }
    out.push_str("<table>\n<thead><tr>");
    for h in headers {
        out.push_str(&format!("<th scope=\"col\">{h}</th>"));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for r in rows {
        out.push_str(r);
    }
    out.push_str("</tbody>\n</table>\n");
    out
}

/// The Bundle as one self-contained HTML page (GDPR Art. 15(3) with Art. 12(1): the copy in an
/// intelligible form), German with English labels. It is rendered from the Bundle itself, so
/// both show the same data; every value from the data is escaped.
pub fn render_html(bundle: &Value) -> String {
    let resources: Vec<&Value> = bundle["entry"]
        .as_array()
        .map(|es| es.iter().map(|e| &e["resource"]).collect())
        .unwrap_or_default();
    let of = |kind: &str| -> Vec<&Value> {
        resources
            .iter()
            .copied()
            .filter(|r| r["resourceType"] == kind)
            .collect()
    };
    let observations = of("Observation");
    let is_diary = |o: &Value| o["code"]["coding"][0]["code"] == SLEEP_DURATION;
    let is_score = |o: &Value| o.get("derivedFrom").is_some();

    let mut diary = Vec::new();
    for o in observations.iter().copied().filter(|o| is_diary(o)) {
        diary.push(row(
            &[
                text(&o["issued"]),
                text(&o["effectivePeriod"]["start"]),
                text(&o["effectivePeriod"]["end"]),
                quantity(component_value(o, "tib")),
                quantity(&o["valueQuantity"]),
                quantity(component_value(o, "sol")),
                quantity(component_value(o, "waso")),
                text(&component_value(o, "nwak")["value"]),
                quantity(component_value(o, "se")),
                text(&o["note"][0]["text"]),
            ],
            &o["id"],
        ));
    }
    let mut devices = Vec::new();
    for o in observations
        .iter()
        .copied()
        .filter(|o| !is_diary(o) && !is_score(o))
    {
        devices.push(row(
            &[
                text(&o["code"]["coding"][0]["display"]),
                text(&o["method"]["text"]),
                text(&o["effectivePeriod"]["start"]),
                text(&o["effectivePeriod"]["end"]),
                quantity(component_value(o, "tib")),
                quantity(&o["valueQuantity"]),
                stage_text(o),
                o["identifier"]
                    .as_array()
                    .map(|ids| {
                        ids.iter()
                            .map(|i| text(&i["value"]))
                            .collect::<Vec<_>>()
                            .join("<br>")
                    })
                    .unwrap_or_default(),
            ],
            &o["id"],
        ));
    }
    let mut scores = Vec::new();
    for o in observations.iter().copied().filter(|o| is_score(o)) {
        let interpretation: Vec<String> = o["interpretation"]
            .as_array()
            .map(|is| is.iter().map(|i| text(&i["text"])).collect())
            .unwrap_or_default();
        scores.push(row(
            &[
                text(&o["code"]["text"]),
                text(&o["effectiveDateTime"]),
                text(&o["valueQuantity"]["value"]),
                interpretation.join("; "),
            ],
            &o["id"],
        ));
    }
    let mut answers = Vec::new();
    for r in of("QuestionnaireResponse") {
        let items: Vec<String> = r["item"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|i| {
                        let answer = &i["answer"][0];
                        let value = answer
                            .as_object()
                            .and_then(|a| a.iter().find(|(k, _)| k.starts_with("value")))
                            .map(|(_, v)| match v.get("display").or_else(|| v.get("code")) {
                                Some(d) => text(d),
                                None => text(v),
                            })
                            .unwrap_or_default();
                        let label = match &i["text"] {
                            Value::Null => text(&i["linkId"]),
                            t => text(t),
                        };
                        format!("{label}: {value}")
                    })
                    .collect()
            })
            .unwrap_or_default();
        answers.push(row(
            &[
                text(&r["questionnaire"]),
                text(&r["authored"]),
                items.join("<br>"),
            ],
            &r["id"],
        ));
    }
    let mut consents = Vec::new();
    for c in of("Consent") {
        let wording = {
            use base64::Engine as _;
            let attachment = &c["sourceAttachment"];
            let body = attachment["data"]
                .as_str()
                .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
                .and_then(|b| String::from_utf8(b).ok());
            match (attachment["title"].as_str(), body) {
                (Some(title), Some(body)) => {
                    format!("<strong>{}</strong><br>{}", escape(title), escape(&body))
                }
                (Some(title), None) => escape(title),
                _ => text(&c["policy"][0]["uri"]),
            }
        };
        consents.push(row(
            &[
                text(&c["provision"]["purpose"][0]["code"]),
                if c["status"] == "active" {
                    "erteilt / granted".to_owned()
                } else {
                    "widerrufen / withdrawn".to_owned()
                },
                text(&c["dateTime"]),
                wording,
            ],
            &c["id"],
        ));
    }
    let patient = of("Patient")
        .first()
        .copied()
        .cloned()
        .unwrap_or(Value::Null);

    let mut page = String::from(
        "<!DOCTYPE html>\n<html lang=\"de\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>Ihre Daten / Your data</title>\n<style>body{font-family:sans-serif;margin:2em}\
         table{border-collapse:collapse;margin-bottom:1.5em}th,td{border:1px solid #999;padding:.3em .5em;\
         text-align:left;vertical-align:top}</style>\n</head>\n<body>\n\
         <h1>Ihre gespeicherten Daten / Your stored data</h1>\n",
    );
    page.push_str(&format!(
        "<p>Erstellt / Created: {}. Zeiten in der Ortszeit der Nacht, mit ihrem Abstand zu UTC / Times in the local time of the night, with its UTC offset. Dieselben Daten als FHIR-R4-Bundle / The same data as a \
         FHIR R4 Bundle: <code>GET /v1/me/export</code>.</p>\n<dl>\n\
         <dt>Pseudonym</dt><dd>{}</dd>\n<dt>E-Mail</dt><dd>{}</dd>\n</dl>\n",
        text(&bundle["timestamp"]),
        text(&patient["identifier"][0]["value"]),
        text(&patient["telecom"][0]["value"]),
    ));
    page.push_str(&table(
        "Schlaftagebuch / Sleep diary",
        &[
            "Aufgewacht / Final awakening",
            "Ins Bett / Into bed",
            "Aufgestanden / Out of bed",
            "Zeit im Bett / Time in bed",
            "Schlafdauer / Total sleep time",
            "Einschlafdauer / Sleep onset latency",
            "Wachzeit / Wake after sleep onset",
            "Aufwachen / Awakenings",
            "Schlafeffizienz / Sleep efficiency",
            "Kommentar / Comment",
        ],
        &diary,
    ));
    page.push_str(&table(
        "Geräte / Devices",
        &[
            "Art / Kind",
            "Quelle / Source",
            "Beginn / Start",
            "Ende / End",
            "Im Bett / In bed",
            "Geschlafen / Asleep",
            "Schlafphasen / Stages",
            "Datensätze / Records",
        ],
        &devices,
    ));
    page.push_str(&table(
        "Fragebogen-Ergebnisse / Questionnaire scores",
        &[
            "Fragebogen / Questionnaire",
            "Datum / Date",
            "Punkte / Score",
            "Einordnung / Interpretation",
        ],
        &scores,
    ));
    page.push_str(&table(
        "Fragebogen-Antworten / Questionnaire answers",
        &[
            "Fragebogen / Questionnaire",
            "Ausgefüllt / Authored",
            "Antworten / Answers",
        ],
        &answers,
    ));
    page.push_str(&table(
        "Einwilligungen / Consents",
        &[
            "Zweck / Purpose",
            "Stand / State",
            "Zeitpunkt / Time",
            "Text",
        ],
        &consents,
    ));
    page.push_str("</body>\n</html>\n");
    page
}
