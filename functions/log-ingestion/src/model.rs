//! The normalised form every wearable parser produces, and the merged night.

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// Where a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Apple Health `export.xml`.
    AppleHealth,
    /// Fitbit Web API sleep log (v1.2, `stages` or `classic`).
    Fitbit,
    /// Oura API v2 `usercollection/sleep`.
    Oura,
}

impl Source {
    /// Stable name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::AppleHealth => "apple_health",
            Source::Fitbit => "fitbit",
            Source::Oura => "oura",
        }
    }
}

/// What a sleep period is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionKind {
    /// The night's main sleep.
    Main,
    /// A nap (Fitbit `isMainSleep: false`, Oura `type: sleep` outside the main period, …).
    Nap,
    /// Oura `rest`: resting, not sleep; never counted as sleep.
    Rest,
}

/// A labelled interval inside a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// In bed, not a statement about sleep (Apple `InBed`). Never counted as asleep.
    InBed,
    /// Asleep without a stage (Apple `Asleep` (≤ iOS 15) / `AsleepUnspecified`, Fitbit classic `asleep`).
    Asleep,
    /// Light / core sleep (Apple `AsleepCore`, Fitbit `light`, Oura 2).
    Light,
    /// Deep sleep (Apple `AsleepDeep`, Fitbit `deep`, Oura 1).
    Deep,
    /// REM sleep (Apple `AsleepREM`, Fitbit `rem`, Oura 3).
    Rem,
    /// Awake inside the period (Apple `Awake`, Fitbit `wake`/`awake`/`restless`, Oura 4).
    Awake,
}

impl Stage {
    /// Whether the interval counts as sleep.
    pub fn is_asleep(self) -> bool {
        matches!(
            self,
            Stage::Asleep | Stage::Light | Stage::Deep | Stage::Rem
        )
    }
}

/// One interval of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// Label.
    pub stage: Stage,
    /// Start instant.
    pub start: DateTime<Utc>,
    /// End instant (exclusive).
    pub end: DateTime<Utc>,
}

/// One sleep period as a source reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Session {
    /// Source.
    pub source: Source,
    /// Device or app as the source names it (`Apple Watch`, `AutoSleep`, …), if it does.
    pub device: Option<String>,
    /// The source's own ids (Fitbit `logId`, Oura `id`, Apple: a stable hash of each record).
    pub record_ids: Vec<String>,
    /// Main sleep, nap or rest.
    pub kind: SessionKind,
    /// Start of the period, with the offset the source gave (or the user's zone gave).
    pub start: DateTime<FixedOffset>,
    /// End of the period.
    pub end: DateTime<FixedOffset>,
    /// Time in bed as the source states it, in seconds, when it does (Fitbit `duration`).
    pub in_bed_secs: Option<i64>,
    /// The night or day the source files the period under, if it says (Fitbit `dateOfSleep`, Oura `day`).
    pub source_day: Option<NaiveDate>,
    /// Intervals; stages may overlap only where the source's own format does (resolved by the parser).
    pub segments: Vec<Segment>,
    /// Stage totals the source states itself, when they are finer than its segments (Oura's
    /// `*_sleep_duration` fields are summed from 30-second data, its hypnogram has 5-minute epochs).
    pub stated: Option<StageSeconds>,
}

/// Seconds per stage, as a source states them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageSeconds {
    /// Deep.
    pub deep: i64,
    /// Light / core.
    pub light: i64,
    /// REM.
    pub rem: i64,
    /// Awake inside the period.
    pub awake: i64,
    /// Asleep without a stage.
    pub unspecified: i64,
}

impl StageSeconds {
    /// Total sleep: every stage but awake.
    pub fn asleep(&self) -> i64 {
        self.deep + self.light + self.rem + self.unspecified
    }

    /// Sleep with a stage (deep, light, REM).
    pub fn staged(&self) -> i64 {
        self.deep + self.light + self.rem
    }
}

/// Minutes per stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StageMinutes {
    /// Deep.
    pub deep: i64,
    /// Light / core.
    pub light: i64,
    /// REM.
    pub rem: i64,
    /// Awake inside the period.
    pub awake: i64,
    /// Asleep without a stage.
    pub unspecified: i64,
}

/// Where a night's numbers came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Provenance {
    /// Source.
    pub source: Source,
    /// Device, if known.
    pub device: Option<String>,
    /// Record ids of that source that contributed.
    pub record_ids: Vec<String>,
}

/// The main sleep of a night, merged over sources.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MainSleep {
    /// Start of the earliest in-bed or asleep interval.
    pub start: DateTime<FixedOffset>,
    /// End of the latest interval (the final awakening / getting up).
    pub end: DateTime<FixedOffset>,
    /// Time in bed, minutes.
    pub tib_min: i64,
    /// Total sleep time, minutes: the union of asleep intervals, so overlaps count once.
    pub tst_min: i64,
    /// TST ÷ TIB × 100, one decimal.
    pub se_pct: f64,
    /// Stage minutes, from the source with stage data (see `merge`).
    pub stages: StageMinutes,
}

/// A nap or a rest period, kept apart from the main sleep.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Period {
    /// Source.
    pub source: Source,
    /// Start.
    pub start: DateTime<FixedOffset>,
    /// End.
    pub end: DateTime<FixedOffset>,
    /// Minutes asleep (0 for rest).
    pub asleep_min: i64,
}

/// A night: the local date of the final awakening, its main sleep, naps, rests, provenance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Night {
    /// Night key.
    pub date: NaiveDate,
    /// Main sleep, if any source recorded one.
    pub main: Option<MainSleep>,
    /// Naps filed under this night.
    pub naps: Vec<Period>,
    /// Oura rest periods filed under this night.
    pub rests: Vec<Period>,
    /// Every contributing source.
    pub provenance: Vec<Provenance>,
}

/// A file that cannot be imported. Nothing of it is stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    /// What is wrong, for the user.
    pub message: String,
    /// Where: a JSON path (`sleep[1].levels.data[3].seconds`) or `byte 1234`.
    pub location: Option<String>,
}

impl ParseError {
    /// A new error.
    pub fn new(message: impl Into<String>, location: Option<String>) -> Self {
        Self {
            message: message.into(),
            location,
        }
    }
}
