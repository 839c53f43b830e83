//! FHIR R4 JSON of definitions, responses and scores (REFERENCE §4.1): `Questionnaire` with
//! ordinal values on the answer options, `QuestionnaireResponse` both ways, the score as an
//! `Observation` (category `survey`, `derivedFrom` the response), and our CodeSystems.
//!
//! LOINC codes appear only where REFERENCE §4.2 confirms them (PHQ-9, GAD-7); everything else
//! is coded in our own CodeSystems under [`BASE_URL`].

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use crate::error::Problem;

use super::answers::{Answer, Answers};
use super::definition::{BASE_URL, Definition, Item, ItemKind};
use super::score::{FLAGS, Score};
use super::{DEFINITIONS, by_canonical};

pub const LOINC: &str = "http://loinc.org";
pub const UCUM: &str = "http://unitsofmeasure.org";
/// REFERENCE §4.1: category `survey`.
pub const OBSERVATION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
pub const DATA_ABSENT_REASON: &str = "http://terminology.hl7.org/CodeSystem/data-absent-reason";
/// REFERENCE §4.1: the score of an answer option.
pub const ORDINAL_VALUE: &str = "http://hl7.org/fhir/StructureDefinition/ordinalValue";
pub const MIN_VALUE: &str = "http://hl7.org/fhir/StructureDefinition/minValue";
pub const MAX_VALUE: &str = "http://hl7.org/fhir/StructureDefinition/maxValue";
pub const QUESTIONNAIRE_UNIT: &str = "http://hl7.org/fhir/StructureDefinition/questionnaire-unit";

/// Our CodeSystem of totals, components, subscales and bands.
pub fn score_codes_url() -> String {
    format!("{BASE_URL}/CodeSystem/score-codes")
}

/// Our CodeSystem of score flags (safety, cut-off, data quality).
pub fn flag_codes_url() -> String {
    format!("{BASE_URL}/CodeSystem/score-flags")
}

/// Our CodeSystem of scoring-algorithm versions (`Observation.method`).
pub fn algorithm_codes_url() -> String {
    format!("{BASE_URL}/CodeSystem/scoring-algorithms")
}

/// Our CodeSystem of an instrument's answer options without LOINC codes (code = ordinal value).
pub fn answer_codes_url(definition: &Definition) -> String {
    format!("{BASE_URL}/CodeSystem/{}-answers", definition.instrument)
}

fn instant(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn coding(system: &str, code: &str, display: &str) -> Value {
    json!({ "system": system, "code": code, "display": display })
}

/// The FHIR `Questionnaire` of a definition.
pub fn questionnaire(definition: &Definition) -> Value {
    let items: Vec<Value> = definition
        .items
        .iter()
        .map(|item| {
            let mut out = Map::new();
            out.insert("linkId".into(), json!(item.link_id));
            if let Some(code) = item.loinc {
                out.insert("code".into(), json!([{ "system": LOINC, "code": code }]));
            }
            out.insert("text".into(), json!(item.text));
            let kind = match &item.kind {
                ItemKind::Choice(options) => {
                    let system = answer_codes_url(definition);
                    let options: Vec<Value> = options
                        .iter()
                        .map(|o| {
                            let system = if o.loinc.is_some() { LOINC } else { system.as_str() };
                            json!({
                                "extension": [{ "url": ORDINAL_VALUE, "valueDecimal": o.value }],
                                "valueCoding": coding(system, &item.option_code(o), o.display),
                            })
                        })
                        .collect();
                    out.insert("answerOption".into(), Value::Array(options));
                    "choice"
                }
                ItemKind::Decimal { min, max, unit } => {
                    out.insert(
                        "extension".into(),
                        json!([
                            { "url": MIN_VALUE, "valueDecimal": min },
                            { "url": MAX_VALUE, "valueDecimal": max },
                            { "url": QUESTIONNAIRE_UNIT, "valueCoding": { "system": UCUM, "code": unit } },
                        ]),
                    );
                    "decimal"
                }
                ItemKind::Time => "time",
                ItemKind::Text => "string",
            };
            out.insert("type".into(), json!(kind));
            out.insert("required".into(), json!(item.required));
            Value::Object(out)
        })
        .collect();
    let mut out = json!({
        "resourceType": "Questionnaire",
        "id": definition.id,
        "url": definition.url(),
        "version": definition.version,
        "name": definition.name,
        "title": definition.title,
        "status": "active",
        "subjectType": ["Patient"],
        "publisher": "dta-wide",
        "description": format!(
            "{}. Recall period: {}. Scored with {}. Source: {}.",
            definition.title, definition.recall_period, definition.algorithm, definition.source
        ),
        "item": items,
    });
    if let Some(panel) = definition.loinc_panel {
        out["code"] = json!([{ "system": LOINC, "code": panel }]);
    }
    out
}

/// A `QuestionnaireResponse` carrying these answers, in item order.
pub fn questionnaire_response(
    answers: &Answers,
    id: &str,
    subject: &str,
    authored: DateTime<Utc>,
) -> Value {
    let definition = answers.definition();
    let items: Vec<Value> = answers
        .answered()
        .map(|(item, answer)| {
            let value = match (answer, &item.kind) {
                (Answer::Choice(v), ItemKind::Choice(options)) => {
                    let option = options.iter().find(|o| o.value == *v).expect("validated choice");
                    let system = if option.loinc.is_some() { LOINC.to_owned() } else { answer_codes_url(definition) };
                    json!({ "valueCoding": coding(&system, &item.option_code(option), option.display) })
                }
                (Answer::Decimal(v), _) => json!({ "valueDecimal": v }),
                (Answer::Time(secs), _) => {
                    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
                    json!({ "valueTime": format!("{h:02}:{m:02}:{s:02}") })
                }
                (Answer::Text(text), _) => json!({ "valueString": text }),
                (Answer::Choice(v), _) => json!({ "valueInteger": v }),
            };
            json!({ "linkId": item.link_id, "text": item.text, "answer": [value] })
        })
        .collect();
    json!({
        "resourceType": "QuestionnaireResponse",
        "id": id,
        "questionnaire": definition.canonical(),
        "status": "completed",
        "subject": { "reference": subject },
        "authored": instant(authored),
        "item": items,
    })
}

/// Reads a `QuestionnaireResponse` into validated answers. The `questionnaire` canonical picks
/// the definition; every `linkId` must be one of its items (REFERENCE §4.1 caveat: the MII
/// example's linkIds do not match its Questionnaire).
pub fn parse_questionnaire_response(body: &Value) -> Result<Answers, Problem> {
    if body.get("resourceType").and_then(Value::as_str) != Some("QuestionnaireResponse") {
        return Err(Problem::validation(
            "resourceType",
            "resourceType must be \"QuestionnaireResponse\"",
        ));
    }
    let reference = body
        .get("questionnaire")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            Problem::validation(
                "questionnaire",
                "questionnaire must be the canonical URL of the questionnaire answered",
            )
        })?;
    let definition = by_canonical("questionnaire", reference)?;
    match body.get("status").and_then(Value::as_str) {
        Some("completed" | "amended") => {}
        _ => {
            return Err(Problem::validation(
                "status",
                "status must be \"completed\" or \"amended\" to be scored",
            ));
        }
    }
    let mut flat = Vec::new();
    if let Some(items) = body.get("item") {
        flatten(items, "item", &mut flat)?;
    }
    let mut answers = Answers::empty(definition);
    let mut seen = std::collections::HashSet::new();
    for (path, item) in flat {
        let link_id = item.get("linkId").and_then(Value::as_str).ok_or_else(|| {
            Problem::validation(format!("{path}.linkId"), "every item needs a linkId")
        })?;
        let Some((_, def_item)) = definition.item(link_id) else {
            return Err(Problem::validation(
                link_id,
                format!("{link_id:?} is not an item of {}", definition.id),
            ));
        };
        if !seen.insert(link_id) {
            return Err(Problem::validation(
                link_id,
                format!("{link_id} is answered more than once"),
            ));
        }
        let values = match item.get("answer") {
            None => continue,
            Some(Value::Array(values)) => values,
            Some(_) => {
                return Err(Problem::validation(
                    link_id,
                    format!("{link_id}: answer must be an array"),
                ));
            }
        };
        let value = match values.as_slice() {
            [] => continue,
            [one] => one,
            _ => {
                return Err(Problem::validation(
                    link_id,
                    format!("{link_id} takes exactly one answer"),
                ));
            }
        };
        let plain = plain_value(definition, def_item, value)?;
        answers.set_json(link_id, &plain)?;
    }
    Ok(answers)
}

/// Items in document order, groups opened.
fn flatten<'a>(
    items: &'a Value,
    path: &str,
    out: &mut Vec<(String, &'a Value)>,
) -> Result<(), Problem> {
    let Value::Array(items) = items else {
        return Err(Problem::validation(
            path,
            format!("{path} must be an array"),
        ));
    };
    for (i, item) in items.iter().enumerate() {
        let here = format!("{path}[{i}]");
        match item.get("item") {
            Some(children) => flatten(children, &format!("{here}.item"), out)?,
            None => out.push((here, item)),
        }
    }
    Ok(())
}

/// The plain JSON value (as in `{ linkId: value }`) of one FHIR answer.
fn plain_value(definition: &Definition, item: &Item, answer: &Value) -> Result<Value, Problem> {
    let link_id = item.link_id;
    let Value::Object(answer) = answer else {
        return Err(Problem::validation(
            link_id,
            format!("{link_id}: an answer must be an object"),
        ));
    };
    let mut values = answer.iter().filter(|(k, _)| k.starts_with("value"));
    let (Some((key, value)), None) = (values.next(), values.next()) else {
        return Err(Problem::validation(
            link_id,
            format!("{link_id}: an answer needs exactly one value[x]"),
        ));
    };
    let wrong = |expected: &str| {
        Err(Problem::validation(
            link_id,
            format!("{link_id}: expected {expected}, got {key}"),
        ))
    };
    match (&item.kind, key.as_str()) {
        (ItemKind::Choice(options), "valueCoding") => {
            let code = value
                .get("code")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let system = value.get("system").and_then(Value::as_str);
            let ours = answer_codes_url(definition);
            let option = options.iter().find(|o| {
                let expected = if o.loinc.is_some() {
                    LOINC
                } else {
                    ours.as_str()
                };
                item.option_code(o) == code && system.is_none_or(|s| s == expected)
            });
            match option {
                Some(option) => Ok(Value::from(option.value)),
                None => Err(Problem::validation(
                    link_id,
                    format!("{link_id}: {code:?} is not one of its answer options"),
                )),
            }
        }
        (ItemKind::Choice(_), "valueInteger") => Ok(value.clone()),
        (ItemKind::Choice(_), _) => wrong("valueCoding or valueInteger"),
        (ItemKind::Decimal { .. }, "valueDecimal" | "valueInteger") => Ok(value.clone()),
        (ItemKind::Decimal { .. }, _) => wrong("valueDecimal"),
        (ItemKind::Time, "valueTime") => Ok(value.clone()),
        (ItemKind::Time, _) => wrong("valueTime"),
        (ItemKind::Text, "valueString") => Ok(value.clone()),
        (ItemKind::Text, _) => wrong("valueString"),
    }
}

fn quantity(value: f64, unit: &str) -> Value {
    json!({ "value": value, "unit": unit, "system": UCUM, "code": unit })
}

fn absent() -> Value {
    json!({ "coding": [{ "system": DATA_ABSENT_REASON, "code": "unknown", "display": "Unknown" }] })
}

/// The score as an `Observation`: total in `valueQuantity` (or a `dataAbsentReason`),
/// components, band and flags in `interpretation`, the algorithm in `method`, and
/// `derivedFrom` the `QuestionnaireResponse` (REFERENCE §4.1).
pub fn observation(
    score: &Score,
    id: &str,
    response_id: &str,
    subject: &str,
    effective: DateTime<Utc>,
) -> Value {
    let definition = super::definition(&score.questionnaire);
    let total = definition.map(|d| &d.total);
    let mut codes = Vec::new();
    if let Some(loinc) = total.and_then(|t| t.loinc) {
        codes.push(json!({ "system": LOINC, "code": loinc, "display": total.map(|t| t.display) }));
    }
    let display = total.map_or(score.total_code.as_str(), |t| t.display);
    codes.push(coding(&score_codes_url(), &score.total_code, display));
    let unit = total.map_or("{score}", |t| t.unit);

    let mut interpretation = Vec::new();
    if let Some(band) = &score.band {
        interpretation.push(json!({ "coding": [coding(&score_codes_url(), &band.code, &band.display)], "text": band.display }));
    }
    for flag in &score.flags {
        let display = FLAGS
            .iter()
            .find(|(c, _)| *c == flag.code)
            .map_or(flag.code.as_str(), |(_, d)| d);
        interpretation.push(json!({ "coding": [coding(&flag_codes_url(), &flag.code, display)], "text": flag.detail }));
    }
    let components: Vec<Value> = score
        .components
        .iter()
        .map(|c| {
            let mut out =
                json!({ "code": { "coding": [coding(&score_codes_url(), &c.code, &c.display)] } });
            match c.value {
                Some(v) => out["valueQuantity"] = quantity(v, &c.unit),
                None => out["dataAbsentReason"] = absent(),
            }
            out
        })
        .collect();

    let mut out = json!({
        "resourceType": "Observation",
        "id": id,
        "status": "final",
        "category": [{ "coding": [coding(OBSERVATION_CATEGORY, "survey", "Survey")] }],
        "code": { "coding": codes, "text": display },
        "subject": { "reference": subject },
        "effectiveDateTime": instant(effective),
        "method": { "coding": [coding(&algorithm_codes_url(), &score.algorithm, &score.algorithm)] },
        "derivedFrom": [{ "reference": format!("QuestionnaireResponse/{response_id}") }],
    });
    match score.total {
        Some(t) => out["valueQuantity"] = quantity(t, unit),
        None => out["dataAbsentReason"] = absent(),
    }
    if !interpretation.is_empty() {
        out["interpretation"] = Value::Array(interpretation);
    }
    if !components.is_empty() {
        out["component"] = Value::Array(components);
    }
    out
}

fn concept(code: &str, display: &str) -> Value {
    json!({ "code": code, "display": display })
}

fn code_system(id: &str, url: String, title: &str, concepts: Vec<Value>) -> Value {
    json!({
        "resourceType": "CodeSystem",
        "id": id,
        "url": url,
        "version": "1",
        "name": id.replace('-', "_"),
        "title": title,
        "status": "active",
        "publisher": "dta-wide",
        "caseSensitive": true,
        "content": "complete",
        "count": concepts.len(),
        "concept": concepts,
    })
}

/// The CodeSystem of every total, component and band code we publish.
pub fn score_code_system() -> Value {
    let mut concepts = Vec::new();
    for d in DEFINITIONS {
        concepts.push(concept(d.total.code, d.total.display));
        concepts.extend(d.components.iter().map(|m| concept(m.code, m.display)));
        concepts.extend(d.bands.iter().map(|b| concept(b.code, b.display)));
    }
    code_system(
        "score-codes",
        score_codes_url(),
        "dta-wide questionnaire score codes",
        concepts,
    )
}

/// The CodeSystem of score flags.
pub fn flag_code_system() -> Value {
    let concepts = FLAGS.iter().map(|(c, d)| concept(c, d)).collect();
    code_system(
        "score-flags",
        flag_codes_url(),
        "dta-wide questionnaire score flags",
        concepts,
    )
}

/// The CodeSystem of an instrument's own answer codes.
pub fn answer_code_system(definition: &Definition) -> Value {
    let mut concepts: Vec<Value> = Vec::new();
    for item in definition.items {
        if let ItemKind::Choice(options) = item.kind {
            for o in options.iter().filter(|o| o.loinc.is_none()) {
                concepts.push(concept(&item.option_code(o), o.display));
            }
        }
    }
    code_system(
        &format!("{}-answers", definition.instrument),
        answer_codes_url(definition),
        &format!("{} answer values", definition.title),
        concepts,
    )
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use chrono::TimeZone;

    use super::super::{current, isi, phq9, psqi};
    use super::*;
    use crate::questionnaire::Instrument;

    fn authored() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 3, 7, 30, 0).unwrap()
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

    /// A response built only from the published Questionnaire JSON: the `pick`-th option of
    /// every choice item, and plausible numbers and times for the others.
    fn response_from(questionnaire: &Value, pick: usize) -> Value {
        let items: Vec<Value> = questionnaire["item"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|item| {
                let answer = match item["type"].as_str().unwrap() {
                    "choice" => {
                        let options = item["answerOption"].as_array().unwrap();
                        json!({ "valueCoding": options[pick % options.len()]["valueCoding"] })
                    }
                    "decimal" if item["linkId"] == "psqi-2" => json!({ "valueDecimal": 25 }),
                    "decimal" => json!({ "valueDecimal": 6.5 }),
                    "time" if item["linkId"] == "psqi-1" => json!({ "valueTime": "23:15:00" }),
                    "time" => json!({ "valueTime": "06:45:00" }),
                    "string" if item["linkId"] == "psqi-5j-comment" => {
                        json!({ "valueString": "noise" })
                    }
                    _ => return None,
                };
                Some(json!({ "linkId": item["linkId"], "answer": [answer] }))
            })
            .collect();
        json!({
            "resourceType": "QuestionnaireResponse",
            "id": format!("rt-{}-{pick}", questionnaire["id"].as_str().unwrap()),
            "questionnaire": format!("{}|{}", questionnaire["url"].as_str().unwrap(), questionnaire["version"].as_str().unwrap()),
            "status": "completed",
            "subject": { "reference": "Patient/example" },
            "authored": "2026-12-03T07:30:00Z",
            "item": items,
        })
    }

    #[test]
    fn questionnaire_to_response_to_score_to_observation_round_trips() {
        for d in DEFINITIONS {
            let q = questionnaire(d);
            emit(&format!("Questionnaire-{}", d.id), &q);
            for pick in [0, 1, 2] {
                let qr = response_from(&q, pick);
                let answers = parse_questionnaire_response(&qr).unwrap();
                let score = d.score(&answers).unwrap();
                // Our own QuestionnaireResponse of the same answers parses back to them.
                let ours = questionnaire_response(
                    &answers,
                    qr["id"].as_str().unwrap(),
                    "Patient/example",
                    authored(),
                );
                assert_eq!(
                    parse_questionnaire_response(&ours).unwrap(),
                    answers,
                    "{}",
                    d.id
                );
                let obs = observation(
                    &score,
                    &format!("obs-{}-{pick}", d.id),
                    qr["id"].as_str().unwrap(),
                    "Patient/example",
                    authored(),
                );
                assert_eq!(
                    obs["derivedFrom"][0]["reference"],
                    json!(format!(
                        "QuestionnaireResponse/{}",
                        qr["id"].as_str().unwrap()
                    ))
                );
                assert_eq!(obs["category"][0]["coding"][0]["code"], "survey");
                assert_eq!(obs["method"]["coding"][0]["code"], json!(d.algorithm));
                assert_eq!(
                    obs["valueQuantity"]["value"].as_f64(),
                    score.total,
                    "{}",
                    d.id
                );
                emit(&format!("QuestionnaireResponse-{}-{pick}", d.id), &qr);
                emit(
                    &format!("QuestionnaireResponse-{}-{pick}-ours", d.id),
                    &ours,
                );
                emit(&format!("Observation-{}-{pick}", d.id), &obs);
            }
        }
        emit("CodeSystem-score-codes", &score_code_system());
        emit("CodeSystem-score-flags", &flag_code_system());
        for d in DEFINITIONS {
            emit(
                &format!("CodeSystem-{}-answers", d.instrument),
                &answer_code_system(d),
            );
        }
    }

    #[test]
    fn loinc_is_used_only_for_the_confirmed_totals() {
        for d in DEFINITIONS {
            let expected = match d.instrument {
                Instrument::Phq9 => Some("44261-6"),
                Instrument::Gad7 => Some("70274-6"),
                _ => None,
            };
            assert_eq!(d.total.loinc, expected, "{}", d.id);
            assert!(d.components.iter().all(|m| m.loinc.is_none()));
        }
        let q = questionnaire(&phq9::DEFINITION);
        assert_eq!(q["code"][0]["code"], "44249-1");
        assert_eq!(q["item"][8]["code"][0]["code"], "44260-8");
        assert_eq!(
            q["item"][0]["answerOption"][3]["valueCoding"]["code"],
            "LA6571-9"
        );
        assert_eq!(
            q["item"][0]["answerOption"][3]["extension"][0]["valueDecimal"],
            3
        );
        let q = questionnaire(&isi::DEFINITION);
        assert!(q.get("code").is_none());
        assert!(q["item"][0].get("code").is_none());
        assert_eq!(
            q["item"][0]["answerOption"][4]["valueCoding"],
            json!({ "system": "https://dta-wide.de/fhir/CodeSystem/isi-answers", "code": "isi-1-4", "display": "Very severe" })
        );
    }

    #[test]
    fn a_phq9_observation_carries_the_total_score_code_and_the_safety_flag() {
        let answers = super::super::testing::answers_of(
            &phq9::DEFINITION,
            &phq9::ITEMS,
            &[3, 0, 1, 2, 0, 0, 1, 0, 3],
        )
        .unwrap();
        let score = phq9::DEFINITION.score(&answers).unwrap();
        let obs = observation(&score, "o1", "r1", "Patient/p1", authored());
        assert_eq!(
            obs["code"]["coding"][0],
            json!({ "system": LOINC, "code": "44261-6", "display": "PHQ-9 total score" })
        );
        assert_eq!(
            obs["valueQuantity"],
            json!({ "value": 10.0, "unit": "{score}", "system": UCUM, "code": "{score}" })
        );
        let codes: Vec<&str> = obs["interpretation"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["coding"][0]["code"].as_str().unwrap())
            .collect();
        assert_eq!(
            codes,
            ["phq9-moderate", "phq9-item9-positive", "phq9-significant"]
        );
        assert_eq!(obs["effectiveDateTime"], "2026-12-03T07:30:00Z");
    }

    #[test]
    fn a_psqi_without_global_score_says_why_the_value_is_absent() {
        let answers = super::super::Answers::from_json(
            &psqi::DEFINITION,
            &json!({"psqi-1": "23:00", "psqi-3": "23:00", "psqi-2": 10, "psqi-4": 6}),
        )
        .unwrap();
        let score = psqi::DEFINITION.score(&answers).unwrap();
        let obs = observation(&score, "o2", "r2", "Patient/p1", authored());
        assert!(obs.get("valueQuantity").is_none());
        assert_eq!(obs["dataAbsentReason"]["coding"][0]["code"], "unknown");
        assert_eq!(
            obs["component"][3]["dataAbsentReason"]["coding"][0]["code"],
            "unknown"
        );
        emit("Observation-psqi-missing", &obs);
        emit(
            "QuestionnaireResponse-psqi-missing",
            &questionnaire_response(&answers, "r2", "Patient/p1", authored()),
        );
    }

    #[test]
    fn response_errors_name_the_offending_element() {
        let d = current(Instrument::Gad7);
        let good = response_from(&questionnaire(d), 1);
        #[allow(clippy::type_complexity)] // one row per reference vector
        let cases: Vec<(Box<dyn Fn(&mut Value)>, &str)> = vec![
            (
                Box::new(|r| r["resourceType"] = json!("Observation")),
                "resourceType",
            ),
            (
                Box::new(|r| r["questionnaire"] = json!("https://example.org/Questionnaire/gad-7")),
                "questionnaire",
            ),
            (Box::new(|r| r["status"] = json!("in-progress")), "status"),
            (
                Box::new(|r| r["item"][0]["linkId"] = json!("gad7-8")),
                "gad7-8",
            ),
            (
                Box::new(|r| r["item"][1]["linkId"] = json!("gad7-1")),
                "gad7-1",
            ),
            (
                Box::new(|r| {
                    r["item"][2]["answer"][0] =
                        json!({ "valueCoding": { "system": LOINC, "code": "LA9999-9" } })
                }),
                "gad7-3",
            ),
            (
                Box::new(
                    |r| r["item"][2]["answer"][0] = json!({ "valueCoding": { "system": "http://example.org", "code": "LA6571-9" } }),
                ),
                "gad7-3",
            ),
            (
                Box::new(|r| r["item"][3]["answer"][0] = json!({ "valueString": "2" })),
                "gad7-4",
            ),
            (
                Box::new(|r| r["item"][4]["answer"][0] = json!({ "valueInteger": 4 })),
                "gad7-5",
            ),
            (
                Box::new(|r| {
                    r["item"][5]["answer"] = json!([{ "valueInteger": 1 }, { "valueInteger": 2 }])
                }),
                "gad7-6",
            ),
            (
                Box::new(|r| {
                    r["item"][6]
                        .as_object_mut()
                        .unwrap()
                        .remove("linkId")
                        .map(|_| ())
                        .unwrap()
                }),
                "item[6].linkId",
            ),
        ];
        for (mutate, field) in cases {
            let mut r = good.clone();
            mutate(&mut r);
            let err = parse_questionnaire_response(&r).unwrap_err();
            assert_eq!(
                (err.status, err.field.as_deref()),
                (422, Some(field)),
                "{}",
                err.detail
            );
        }
    }

    #[test]
    fn grouped_items_and_integer_answers_are_read() {
        let r = json!({
            "resourceType": "QuestionnaireResponse",
            "questionnaire": "https://dta-wide.de/fhir/Questionnaire/isi",
            "status": "completed",
            "item": [
                { "linkId": "g1", "item": [
                    { "linkId": "isi-1", "answer": [{ "valueInteger": 2 }] },
                    { "linkId": "isi-2", "answer": [{ "valueCoding": { "code": "isi-2-3" } }] },
                ] },
                { "linkId": "isi-3", "answer": [] },
            ],
        });
        let answers = parse_questionnaire_response(&r).unwrap();
        assert_eq!(
            (
                answers.choice("isi-1"),
                answers.choice("isi-2"),
                answers.choice("isi-3")
            ),
            (Some(2), Some(3), None)
        );
        // Missing items are left to the scorer: ISI requires them all.
        assert_eq!(
            isi::DEFINITION
                .score(&answers)
                .unwrap_err()
                .field
                .as_deref(),
            Some("isi-3")
        );
    }
}
