//! The result of scoring: total, band, components, flags, and the algorithm that produced them.

use serde::{Deserialize, Serialize};

use super::definition::{Definition, Instrument, Measure};

/// Every flag code a scorer can raise, with its display (our score-flags CodeSystem).
pub const FLAGS: &[(&str, &str)] = &[
    ("ess-eds", "ESS above 10: excessive daytime sleepiness"),
    ("gad7-refer", "GAD-7 of 10 or more: refer for assessment"),
    (
        "who5-poor-wellbeing",
        "WHO-5 raw score below 13: poor well-being",
    ),
    ("dbas16-above-cut-off", "DBAS-16 mean above 3.8"),
    (
        "phq9-item9-positive",
        "PHQ-9 item 9 above 0: clinician follow-up",
    ),
    ("phq9-item9-missing", "PHQ-9 item 9 not answered"),
    (
        "phq9-prorated",
        "PHQ-9 missing items replaced by the mean (NHS rule)",
    ),
    (
        "phq9-significant",
        "PHQ-9 of 10 or more: clinically significant",
    ),
    ("psqi-tib-zero", "PSQI time in bed of 0"),
    (
        "psqi-hse-over-100",
        "PSQI hours of sleep exceed time in bed",
    ),
    (
        "psqi-q5j-not-counted",
        "PSQI Q5j without description counted as 0",
    ),
    (
        "psqi-global-missing",
        "PSQI component missing: no global score",
    ),
    ("psqi-poor-sleeper", "PSQI global above 5: poor sleeper"),
];

/// A scored response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub struct Score {
    pub instrument: Instrument,
    /// Id of the questionnaire version that was answered (`isi-1`).
    pub questionnaire: String,
    /// Scoring-algorithm version (`psqi@1.0.0`): which rules produced these numbers.
    pub algorithm: String,
    /// Code of the total in our score CodeSystem.
    pub total_code: String,
    /// Total score; `None` when the rules give none (PSQI with a missing component).
    /// Not rounded (PHQ-9 prorating can give a fraction; DBAS-16 is a mean).
    pub total: Option<f64>,
    /// Interpretation band of the total.
    pub band: Option<BandRef>,
    pub components: Vec<Component>,
    pub flags: Vec<Flag>,
}

/// The band a total falls in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub struct BandRef {
    pub code: String,
    pub display: String,
}

/// A component, subscale or derived measure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub struct Component {
    pub code: String,
    pub display: String,
    /// `None` when an item it needs is missing or unusable.
    pub value: Option<f64>,
    /// UCUM unit.
    pub unit: String,
}

/// Something the reader of a score must know about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub struct Flag {
    /// Stable code, e.g. `phq9-item9-positive`.
    pub code: String,
    pub kind: FlagKind,
    /// The item the flag is about, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
    pub detail: String,
}

/// What a flag asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum FlagKind {
    /// Clinician follow-up needed whatever the total (PHQ-9 item 9).
    Safety,
    /// A published cut-off was crossed.
    CutOff,
    /// The answers were implausible, incomplete or adjusted by a rule.
    DataQuality,
}

impl Score {
    /// A score with the definition's stamp and no components yet.
    pub(super) fn new(
        definition: &Definition,
        total: Option<f64>,
        band_total: Option<f64>,
    ) -> Self {
        Self {
            instrument: definition.instrument,
            questionnaire: definition.id.to_owned(),
            algorithm: definition.algorithm.to_owned(),
            total_code: definition.total.code.to_owned(),
            total,
            band: band_total
                .and_then(|t| definition.band_for(t))
                .map(|b| BandRef {
                    code: b.code.to_owned(),
                    display: b.display.to_owned(),
                }),
            components: Vec::new(),
            flags: Vec::new(),
        }
    }

    pub(super) fn component(mut self, measure: &Measure, value: Option<f64>) -> Self {
        self.components.push(Component {
            code: measure.code.to_owned(),
            display: measure.display.to_owned(),
            value,
            unit: measure.unit.to_owned(),
        });
        self
    }

    pub(super) fn flag(
        mut self,
        code: &str,
        kind: FlagKind,
        item: Option<&str>,
        detail: impl Into<String>,
    ) -> Self {
        debug_assert!(
            FLAGS.iter().any(|(c, _)| *c == code),
            "unpublished flag {code}"
        );
        self.flags.push(Flag {
            code: code.to_owned(),
            kind,
            item: item.map(str::to_owned),
            detail: detail.into(),
        });
        self
    }

    /// The component with this code.
    pub fn component_value(&self, code: &str) -> Option<f64> {
        self.components
            .iter()
            .find(|c| c.code == code)
            .and_then(|c| c.value)
    }

    /// Whether a flag with this code was raised.
    pub fn has_flag(&self, code: &str) -> bool {
        self.flags.iter().any(|f| f.code == code)
    }

    /// Whether any flag asks for clinician follow-up.
    pub fn needs_safety_follow_up(&self) -> bool {
        self.flags.iter().any(|f| f.kind == FlagKind::Safety)
    }
}
