//! An instrument version as plain data: items with stable `linkId`s, answer options with their
//! ordinal values, the recall period, score codes and bands. The FHIR `Questionnaire` and the
//! scoring both read these tables, so a published form and its scoring cannot drift apart.

use serde::{Deserialize, Serialize};

use crate::error::Problem;

use super::answers::Answers;
use super::score::Score;

/// The instruments we score (REFERENCE §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub enum Instrument {
    /// Insomnia Severity Index (REFERENCE §1.1).
    #[serde(rename = "isi")]
    Isi,
    /// Pittsburgh Sleep Quality Index (REFERENCE §1.2).
    #[serde(rename = "psqi")]
    Psqi,
    /// Epworth Sleepiness Scale (REFERENCE §1.3).
    #[serde(rename = "ess")]
    Ess,
    /// Dysfunctional Beliefs and Attitudes about Sleep, 16 items (REFERENCE §1.4).
    #[serde(rename = "dbas-16")]
    Dbas16,
    /// Patient Health Questionnaire, 9 items (REFERENCE §1.5).
    #[serde(rename = "phq-9")]
    Phq9,
    /// Generalized Anxiety Disorder, 7 items (REFERENCE §1.6).
    #[serde(rename = "gad-7")]
    Gad7,
    /// WHO-5 Well-Being Index (REFERENCE §1.7).
    #[serde(rename = "who-5")]
    Who5,
}

impl Instrument {
    /// Every instrument, in a stable order.
    pub const ALL: [Instrument; 7] = [
        Instrument::Isi,
        Instrument::Psqi,
        Instrument::Ess,
        Instrument::Dbas16,
        Instrument::Phq9,
        Instrument::Gad7,
        Instrument::Who5,
    ];

    /// The wire name (`isi`, `dbas-16`, `phq-9`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Instrument::Isi => "isi",
            Instrument::Psqi => "psqi",
            Instrument::Ess => "ess",
            Instrument::Dbas16 => "dbas-16",
            Instrument::Phq9 => "phq-9",
            Instrument::Gad7 => "gad-7",
            Instrument::Who5 => "who-5",
        }
    }

    /// Reads a wire name; `field` names the request field for the 422.
    pub fn parse(field: &str, value: &str) -> Result<Self, Problem> {
        Instrument::ALL
            .into_iter()
            .find(|i| i.as_str() == value)
            .ok_or_else(|| {
                Problem::validation(
                    field,
                    format!(
                        "unknown instrument {value:?}; expected one of isi, psqi, ess, dbas-16, phq-9, gad-7, who-5"
                    ),
                )
            })
    }
}

impl std::fmt::Display for Instrument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One published version of an instrument.
#[derive(Debug)]
pub struct Definition {
    pub instrument: Instrument,
    /// Resource id, unique per instrument and version (`isi-1`); also the path segment of
    /// `GET /v1/questionnaires/{id}`.
    pub id: &'static str,
    /// Version of the form (items, wording, options). Scoring has its own [`Definition::algorithm`].
    pub version: &'static str,
    /// Computer-friendly name (FHIR `Questionnaire.name`).
    pub name: &'static str,
    pub title: &'static str,
    /// Recall period the items refer to, as shown to the patient.
    pub recall_period: &'static str,
    /// Where the items, options and rules come from.
    pub source: &'static str,
    /// LOINC panel code, only where REFERENCE §4.2 confirms one.
    pub loinc_panel: Option<&'static str>,
    pub items: &'static [Item],
    /// The total score's code, range and unit.
    pub total: Measure,
    /// Subscales / components reported next to the total, in this order.
    pub components: &'static [Measure],
    /// Interpretation bands of the total, ascending, inclusive bounds.
    pub bands: &'static [Band],
    /// Scoring-algorithm version stamped on every [`Score`]; bump it when a rule changes.
    pub algorithm: &'static str,
    pub(super) scorer: fn(&Answers) -> Result<Score, Problem>,
}

/// A question.
#[derive(Debug)]
pub struct Item {
    /// Stable identifier, never reused for another meaning.
    pub link_id: &'static str,
    pub text: &'static str,
    pub kind: ItemKind,
    /// Whether the form asks for it; whether scoring can do without it is the scorer's business.
    pub required: bool,
    /// LOINC item code, only where REFERENCE §4.2 confirms one.
    pub loinc: Option<&'static str>,
    /// `false` for items that are asked but not scored (PHQ-9 item 10, PSQI partner items).
    pub scored: bool,
}

/// The answer an item takes.
#[derive(Debug)]
pub enum ItemKind {
    /// One of the listed options; the answer is the option's ordinal value.
    Choice(&'static [AnswerOption]),
    /// A number with inclusive bounds.
    Decimal {
        min: f64,
        max: f64,
        /// UCUM unit (`min`, `h`).
        unit: &'static str,
    },
    /// A local clock time `HH:MM` (or `HH:MM:SS`).
    Time,
    /// Free text.
    Text,
}

/// An answer option.
#[derive(Debug)]
pub struct AnswerOption {
    /// Ordinal value that enters the score.
    pub value: u8,
    pub display: &'static str,
    /// LOINC answer code (`LA…`), only where REFERENCE §4.2 confirms one.
    pub loinc: Option<&'static str>,
}

/// A reported number: total, component or subscale.
#[derive(Debug)]
pub struct Measure {
    /// Code in our score CodeSystem.
    pub code: &'static str,
    pub display: &'static str,
    /// LOINC code, only where REFERENCE §4.2 confirms one.
    pub loinc: Option<&'static str>,
    pub min: f64,
    pub max: f64,
    /// UCUM unit; `{score}` for scores.
    pub unit: &'static str,
}

/// An interpretation band of the total, with inclusive bounds.
#[derive(Debug)]
pub struct Band {
    pub code: &'static str,
    pub display: &'static str,
    pub min: f64,
    pub max: f64,
}

/// Base of our canonical URLs.
pub const BASE_URL: &str = "https://dta-wide.de/fhir";

impl Definition {
    /// Canonical URL of the Questionnaire (without version).
    pub fn url(&self) -> String {
        format!("{BASE_URL}/Questionnaire/{}", self.instrument.as_str())
    }

    /// Versioned canonical reference, as a QuestionnaireResponse should carry it.
    pub fn canonical(&self) -> String {
        format!("{}|{}", self.url(), self.version)
    }

    /// The item with this `linkId` and its position.
    pub fn item(&self, link_id: &str) -> Option<(usize, &'static Item)> {
        self.items
            .iter()
            .enumerate()
            .find(|(_, item)| item.link_id == link_id)
    }

    /// The band the (rounded) total falls in.
    pub fn band_for(&self, total: f64) -> Option<&'static Band> {
        self.bands.iter().find(|b| b.min <= total && total <= b.max)
    }

    /// Scores answers given for this definition.
    pub fn score(&self, answers: &Answers) -> Result<Score, Problem> {
        if !std::ptr::eq(answers.definition(), self) {
            return Err(Problem::validation(
                "questionnaire",
                format!(
                    "answers were given for {}, not for {}",
                    answers.definition().id,
                    self.id
                ),
            ));
        }
        (self.scorer)(answers)
    }
}

impl Item {
    /// Code of one of this item's options: its LOINC answer code where REFERENCE §4.2 confirms
    /// one, else `{linkId}-{value}` in our answer CodeSystem (one concept per item and option,
    /// so every code has exactly one display).
    pub fn option_code(&self, option: &AnswerOption) -> String {
        match option.loinc {
            Some(code) => code.to_owned(),
            None => format!("{}-{}", self.link_id, option.value),
        }
    }
}
