//! The versioned JSON event schemas exchanged between functions over Pub/Sub: the contract
//! between producer and consumer. Every event is an [`Envelope`] with a `type` and a `version`;
//! a consumer accepts only the versions it knows and acknowledges the rest as undeliverable.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Topic of diary and device sleep events.
pub const TOPIC_SLEEP_LOG: &str = "sleep-log";
/// Topic of questionnaire scores.
pub const TOPIC_QUESTIONNAIRE: &str = "questionnaire";
/// Topic of safety events for clinician follow-up.
pub const TOPIC_SAFETY: &str = "safety";
/// Topic of audit events (who accessed whose health data); the privacy function keeps them.
pub const TOPIC_AUDIT: &str = "audit";

/// The wrapper every event travels in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Event type, e.g. `sleep-log.recorded`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Schema version of `data` for that type.
    pub version: u32,
    /// Unique id of this event (not of the business fact; see [`Event::business_key`]).
    pub id: Uuid,
    /// When the fact happened.
    pub occurred_at: DateTime<Utc>,
    /// The payload, shaped by `kind` and `version`.
    pub data: serde_json::Value,
}

/// One night's numbers as a producer reports them (diary or merged device night).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NightSummary {
    /// Local date of the final awakening.
    pub night: NaiveDate,
    /// IANA zone of the night.
    pub zone: String,
    /// Into bed (diary) or start of the main sleep (device), with offset.
    pub start: DateTime<chrono::FixedOffset>,
    /// Out of bed (diary) or end of the main sleep (device), with offset.
    pub end: DateTime<chrono::FixedOffset>,
    /// Final awakening (diary) or end of the main sleep (device), with offset.
    pub final_awakening: DateTime<chrono::FixedOffset>,
    /// Time in bed, minutes.
    pub tib_min: i64,
    /// Total sleep time, minutes.
    pub tst_min: i64,
    /// Sleep-onset latency, minutes (diary only).
    pub sol_min: Option<i64>,
    /// Wake after sleep onset, minutes (diary only).
    pub waso_min: Option<i64>,
}

/// `sleep-log.recorded` v1: a diary entry was created, changed or deleted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SleepLogRecorded {
    /// Pseudonymous user id.
    pub user_id: Uuid,
    /// Diary entry id.
    pub entry_id: Uuid,
    /// `created`, `updated` or `deleted`.
    pub change: String,
    /// The night as stored now (absent when deleted).
    pub summary: Option<NightSummary>,
    /// The night deleted (only when deleted).
    pub night: NaiveDate,
    /// When the entry was last written; orders updates of the same entry.
    pub revision: DateTime<Utc>,
}

/// `sleep-log.ingested` v1: a wearable import added data to these nights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SleepLogIngested {
    /// Pseudonymous user id.
    pub user_id: Uuid,
    /// Import id.
    pub import_id: Uuid,
    /// Source (`fitbit`, `apple_health`, `oura`).
    pub source: String,
    /// The merged device nights the import touched, as they are now.
    pub nights: Vec<NightSummary>,
}

/// `questionnaire.scored` v1: a response was scored (ids, codes and numbers only; never answers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuestionnaireScored {
    /// Pseudonymous user id.
    pub user_id: Uuid,
    /// Stored response.
    pub response_id: Uuid,
    /// Stored score.
    pub score_id: Uuid,
    /// Instrument, e.g. `isi`.
    pub instrument: String,
    /// Scoring algorithm and version, e.g. `isi@1.0.0`.
    pub algorithm: String,
    /// Total, if the rules give one.
    pub total: Option<f64>,
    /// Band code of the total.
    pub band: Option<String>,
}

/// `safety.flagged` v1: a score needs clinician follow-up (PHQ-9 item 9 > 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SafetyFlagged {
    /// Pseudonymous user id.
    pub user_id: Uuid,
    /// Stored response.
    pub response_id: Uuid,
    /// Stored score.
    pub score_id: Uuid,
    /// Flag code, e.g. `phq9-item9-positive`.
    pub flag: String,
    /// The item, e.g. `phq9-9`.
    pub item: Option<String>,
}

/// `audit.recorded` v1: someone read or changed a user's health data. Ids only, and people only
/// as their erasure pseudonym ([`pseudonym`]), so the event names no one and carries no health
/// data (TR-03161-3 O.Data; GDPR Art. 5(2), 30). The envelope id is the event id the audit trail
/// is idempotent on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecorded {
    /// Who acted, as pseudonym (the user themself, or a staff or service id).
    pub actor_ref: String,
    /// Whose data, as pseudonym.
    pub subject_ref: String,
    /// What was done, e.g. `sleep-log.created`, `sleep-log.read`.
    pub action: String,
    /// Which function did it, e.g. `sleep-diary`.
    pub function: String,
    /// The record concerned, if one (a listing names none).
    pub object_id: Option<Uuid>,
    /// When, to the microsecond (what PostgreSQL keeps).
    pub at: DateTime<Utc>,
}

/// The erasure pseudonym of a person: hex SHA-256 of `dta-wide-erasure:{id}`. The same value the
/// privacy function's erasure ledger and audit trail key people by, so an audit entry survives
/// the erasure of the person without naming them.
pub fn pseudonym(id: Uuid) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(format!("dta-wide-erasure:{id}").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl AuditRecorded {
    /// An access by `actor` to `subject`'s data, now.
    pub fn new(
        actor: Uuid,
        subject: Uuid,
        action: &str,
        function: &str,
        object_id: Option<Uuid>,
    ) -> Self {
        use chrono::SubsecRound;
        Self {
            actor_ref: pseudonym(actor),
            subject_ref: pseudonym(subject),
            action: action.to_owned(),
            function: function.to_owned(),
            object_id,
            at: Utc::now().trunc_subsecs(6),
        }
    }

    /// A user acting on their own data (every patient route).
    pub fn own(user: Uuid, action: &str, function: &str, object_id: Option<Uuid>) -> Self {
        Self::new(user, user, action, function, object_id)
    }
}

/// An event this code base knows.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `sleep-log.recorded` v1.
    SleepLogRecorded(SleepLogRecorded),
    /// `sleep-log.ingested` v1.
    SleepLogIngested(SleepLogIngested),
    /// `questionnaire.scored` v1.
    QuestionnaireScored(QuestionnaireScored),
    /// `safety.flagged` v1.
    SafetyFlagged(SafetyFlagged),
    /// `audit.recorded` v1.
    AuditRecorded(AuditRecorded),
}

/// Why an event cannot be processed. None of these get better with a retry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    /// Not an envelope at all.
    #[error("not an event envelope: {0}")]
    NotAnEnvelope(String),
    /// A type this consumer does not know.
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    /// A version of a known type this consumer does not know.
    #[error("unknown version {version} of {kind:?}")]
    UnknownVersion {
        /// Type.
        kind: String,
        /// Version.
        version: u32,
    },
    /// The data does not match the schema of its type and version.
    #[error("invalid {kind:?} v{version}: {reason}")]
    Invalid {
        /// Type.
        kind: String,
        /// Version.
        version: u32,
        /// What is wrong.
        reason: String,
    },
}

impl Event {
    /// Type name.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::SleepLogRecorded(_) => "sleep-log.recorded",
            Event::SleepLogIngested(_) => "sleep-log.ingested",
            Event::QuestionnaireScored(_) => "questionnaire.scored",
            Event::SafetyFlagged(_) => "safety.flagged",
            Event::AuditRecorded(_) => "audit.recorded",
        }
    }

    /// Topic the event is published on.
    pub fn topic(&self) -> &'static str {
        match self {
            Event::SleepLogRecorded(_) | Event::SleepLogIngested(_) => TOPIC_SLEEP_LOG,
            Event::QuestionnaireScored(_) => TOPIC_QUESTIONNAIRE,
            Event::SafetyFlagged(_) => TOPIC_SAFETY,
            Event::AuditRecorded(_) => TOPIC_AUDIT,
        }
    }

    /// Wraps the event for publishing.
    pub fn to_envelope(&self, id: Uuid, occurred_at: DateTime<Utc>) -> Envelope {
        let data = match self {
            Event::SleepLogRecorded(e) => serde_json::to_value(e),
            Event::SleepLogIngested(e) => serde_json::to_value(e),
            Event::QuestionnaireScored(e) => serde_json::to_value(e),
            Event::SafetyFlagged(e) => serde_json::to_value(e),
            Event::AuditRecorded(e) => serde_json::to_value(e),
        }
        .unwrap_or_default();
        Envelope {
            kind: self.kind().to_owned(),
            version: 1,
            id,
            occurred_at,
            data,
        }
    }

    /// Reads an event from a message body.
    pub fn from_json(bytes: &[u8]) -> Result<(Envelope, Event), EventError> {
        let env: Envelope =
            serde_json::from_slice(bytes).map_err(|e| EventError::NotAnEnvelope(e.to_string()))?;
        let invalid = |e: serde_json::Error| EventError::Invalid {
            kind: env.kind.clone(),
            version: env.version,
            reason: e.to_string(),
        };
        let event = match (env.kind.as_str(), env.version) {
            ("sleep-log.recorded", 1) => {
                Event::SleepLogRecorded(serde_json::from_value(env.data.clone()).map_err(invalid)?)
            }
            ("sleep-log.ingested", 1) => {
                Event::SleepLogIngested(serde_json::from_value(env.data.clone()).map_err(invalid)?)
            }
            ("questionnaire.scored", 1) => Event::QuestionnaireScored(
                serde_json::from_value(env.data.clone()).map_err(invalid)?,
            ),
            ("safety.flagged", 1) => {
                Event::SafetyFlagged(serde_json::from_value(env.data.clone()).map_err(invalid)?)
            }
            ("audit.recorded", 1) => {
                Event::AuditRecorded(serde_json::from_value(env.data.clone()).map_err(invalid)?)
            }
            (
                "sleep-log.recorded"
                | "sleep-log.ingested"
                | "questionnaire.scored"
                | "safety.flagged"
                | "audit.recorded",
                v,
            ) => {
                return Err(EventError::UnknownVersion {
                    kind: env.kind.clone(),
                    version: v,
                });
            }
            (other, _) => return Err(EventError::UnknownType(other.to_owned())),
        };
        Ok((env, event))
    }

    /// The business fact this event reports, independent of message and event ids: a
    /// re-publication of the same fact has the same key.
    pub fn business_key(&self) -> String {
        match self {
            Event::SleepLogRecorded(e) => {
                format!("diary:{}:{}", e.entry_id, e.revision.timestamp_micros())
            }
            Event::SleepLogIngested(e) => {
                let nights: Vec<String> = e
                    .nights
                    .iter()
                    .map(|n| format!("{}:{}:{}", n.night, n.tib_min, n.tst_min))
                    .collect();
                format!("device:{}:{}:{}", e.user_id, e.source, nights.join(","))
            }
            Event::QuestionnaireScored(e) => format!("score:{}", e.score_id),
            Event::SafetyFlagged(e) => format!("safety:{}:{}", e.response_id, e.flag),
            Event::AuditRecorded(e) => format!(
                "audit:{}:{}:{}:{}:{}:{}",
                e.actor_ref,
                e.subject_ref,
                e.action,
                e.function,
                e.object_id.map(|o| o.to_string()).unwrap_or_default(),
                e.at.timestamp_micros()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> NightSummary {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap();
        NightSummary {
            night: NaiveDate::from_ymd_opt(2025, 3, 30).unwrap(),
            zone: "Europe/Berlin".into(),
            start: t("2025-03-29T23:00:00+01:00"),
            end: t("2025-03-30T07:00:00+02:00"),
            final_awakening: t("2025-03-30T06:30:00+02:00"),
            tib_min: 420,
            tst_min: 340,
            sol_min: Some(20),
            waso_min: Some(15),
        }
    }

    #[test]
    fn an_event_round_trips_through_its_envelope() {
        let e = Event::SleepLogRecorded(SleepLogRecorded {
            user_id: Uuid::new_v4(),
            entry_id: Uuid::new_v4(),
            change: "created".into(),
            summary: Some(summary()),
            night: summary().night,
            revision: Utc::now(),
        });
        let env = e.to_envelope(Uuid::new_v4(), Utc::now());
        let bytes = serde_json::to_vec(&env).unwrap();
        let (back_env, back) = Event::from_json(&bytes).unwrap();
        assert_eq!(back, e);
        assert_eq!(back_env, env);
    }

    #[test]
    fn unknown_types_versions_and_shapes_are_permanent_errors() {
        let id = Uuid::new_v4();
        let mk = |kind: &str, version: u32, data: serde_json::Value| {
            serde_json::to_vec(&serde_json::json!({"type": kind, "version": version, "id": id, "occurred_at": "2025-01-01T00:00:00Z", "data": data})).unwrap()
        };
        assert_eq!(
            Event::from_json(&mk("x.y", 1, serde_json::json!({}))).unwrap_err(),
            EventError::UnknownType("x.y".into())
        );
        assert!(matches!(
            Event::from_json(&mk("sleep-log.recorded", 2, serde_json::json!({}))),
            Err(EventError::UnknownVersion { version: 2, .. })
        ));
        assert!(matches!(
            Event::from_json(&mk(
                "sleep-log.recorded",
                1,
                serde_json::json!({"user_id": 1})
            )),
            Err(EventError::Invalid { .. })
        ));
        assert!(matches!(
            Event::from_json(b"dasfdsafdasf"),
            Err(EventError::NotAnEnvelope(_))
        ));
    }

    #[test]
    fn an_audit_event_names_people_only_by_pseudonym_and_round_trips() {
        let user = Uuid::new_v4();
        let object = Uuid::new_v4();
        let e = AuditRecorded::own(user, "sleep-log.read", "sleep-diary", Some(object));
        let env = Event::AuditRecorded(e.clone()).to_envelope(Uuid::new_v4(), e.at);
        let text = serde_json::to_string(&env).unwrap();
        assert!(!text.contains(&user.to_string()), "{text}");
        assert_eq!(env.kind, "audit.recorded");
        assert_eq!(e.subject_ref.len(), 64);
        assert_eq!(e.actor_ref, e.subject_ref);
        // SHA-256 of "dta-wide-erasure:00000000-0000-0000-0000-000000000000".
        assert_eq!(
            pseudonym(Uuid::nil()),
            "a041a6bac8028eb7074f728f2e9c07b5df73290f1604a426c8ec38fbe2c77df5"
        );
        let (_, back) = Event::from_json(text.as_bytes()).unwrap();
        assert_eq!(back, Event::AuditRecorded(e));
        assert_eq!(back.topic(), TOPIC_AUDIT);
    }

    #[test]
    fn a_republished_fact_keeps_its_business_key() {
        let user = Uuid::new_v4();
        let mk = |import: Uuid| {
            Event::SleepLogIngested(SleepLogIngested {
                user_id: user,
                import_id: import,
                source: "fitbit".into(),
                nights: vec![summary()],
            })
        };
        assert_eq!(
            mk(Uuid::new_v4()).business_key(),
            mk(Uuid::new_v4()).business_key()
        );
    }
}
