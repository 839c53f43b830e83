//! Consensus Sleep Diary entries (Carney et al., SLEEP 2012;35(2):287) and their per-night
//! metrics, computed from UTC instants, never from wall-clock differences (REFERENCE §2.2–2.5).
//!
//! A night is keyed by the local date of the final awakening (REFERENCE §2.4).

use std::str::FromStr;

use chrono::{DateTime, FixedOffset, LocalResult, NaiveDate, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::error::Problem;

/// Longest time in bed accepted (REFERENCE §2.3: TIB < 24 h).
pub const MAX_TIB_SECS: i64 = 24 * 3600;
/// Most naps one entry may list.
pub const MAX_NAPS: usize = 10;
/// Most drinks of one kind, or medications, one entry may list.
pub const MAX_INTAKES: usize = 20;

/// A diary entry as the app sends it. Times are local date-times with their UTC offset
/// (`2025-03-30T06:30:00+02:00`); without an offset they are read in `zone`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DiaryInput {
    /// Client-supplied entry id; makes `POST` idempotent. Required on create.
    #[serde(default)]
    pub id: Option<uuid::Uuid>,
    /// The user's IANA time zone for this night, e.g. `Europe/Berlin`.
    pub zone: String,
    /// CSD item 1: time got into bed.
    pub into_bed: String,
    /// CSD item 2: time tried to go to sleep (lights out).
    pub lights_out: String,
    /// CSD item 3: minutes to fall asleep (SOL).
    pub sol_min: u32,
    /// CSD item 4: awakenings, not counting the final one (NWAK).
    pub awakenings: u32,
    /// CSD item 5: total minutes of those awakenings (WASO).
    pub waso_min: u32,
    /// CSD item 6: time of the final awakening.
    pub final_awakening: String,
    /// CSD item 7: time got out of bed for the day.
    pub out_of_bed: String,
    /// CSD item 8: sleep quality, 1 very poor … 5 very good.
    #[serde(default)]
    pub quality: Option<u8>,
    /// Naps the previous day.
    #[serde(default)]
    pub naps: Vec<NapInput>,
    /// Caffeinated drinks the previous day.
    #[serde(default)]
    pub caffeine: Vec<IntakeInput>,
    /// Alcoholic drinks the previous day.
    #[serde(default)]
    pub alcohol: Vec<IntakeInput>,
    /// Sleep medication taken.
    #[serde(default)]
    pub medication: Vec<MedicationInput>,
    /// CSD item 9: free-text comment.
    #[serde(default)]
    pub comment: Option<String>,
}

/// A nap: start and end as local date-times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NapInput {
    /// Start of the nap.
    pub start: String,
    /// End of the nap.
    pub end: String,
}

/// A caffeinated or alcoholic drink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct IntakeInput {
    /// When it was taken.
    pub time: String,
    /// Number of standard drinks / cups (1–20).
    pub servings: u8,
}

/// A sleep medication intake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MedicationInput {
    /// Medication name as the user wrote it.
    pub name: String,
    /// Dose as the user wrote it, e.g. `7.5 mg`.
    #[serde(default)]
    pub dose: Option<String>,
    /// When it was taken.
    pub time: String,
}

/// An instant plus the offset the user was on, so it can be shown as the user entered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalInstant {
    /// The instant.
    pub utc: DateTime<Utc>,
    /// The UTC offset in effect in the user's zone at that instant.
    pub offset: FixedOffset,
}

impl LocalInstant {
    /// RFC 3339 with the user's offset, e.g. `2025-03-30T06:30:00+02:00`.
    pub fn to_rfc3339(&self) -> String {
        self.utc
            .with_timezone(&self.offset)
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false)
    }

    /// From a stored instant and offset in seconds east of UTC.
    pub fn from_parts(utc: DateTime<Utc>, offset_secs: i32) -> Self {
        Self {
            utc,
            offset: FixedOffset::east_opt(offset_secs).unwrap_or(Utc.fix()),
        }
    }
}

/// A validated nap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nap {
    /// Start.
    pub start: LocalInstant,
    /// End.
    pub end: LocalInstant,
}

/// A diary entry after validation: every time anchored as an instant in the user's zone.
#[derive(Debug, Clone, PartialEq)]
pub struct DiaryEntry {
    /// The zone.
    pub zone: Tz,
    /// CSD 1.
    pub into_bed: LocalInstant,
    /// CSD 2.
    pub lights_out: LocalInstant,
    /// CSD 3, minutes.
    pub sol_min: u32,
    /// CSD 4.
    pub awakenings: u32,
    /// CSD 5, minutes.
    pub waso_min: u32,
    /// CSD 6.
    pub final_awakening: LocalInstant,
    /// CSD 7.
    pub out_of_bed: LocalInstant,
    /// Naps.
    pub naps: Vec<Nap>,
}

/// Per-night metrics (REFERENCE §2.2, recommended definitions).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub struct NightMetrics {
    /// Time in bed, into bed → out of bed, minutes.
    pub tib_min: i64,
    /// Total sleep time, (final awakening − lights out) − SOL − WASO, minutes.
    pub tst_min: i64,
    /// Sleep-onset latency, minutes.
    pub sol_min: i64,
    /// Wake after sleep onset, excluding the final awakening, minutes.
    pub waso_min: i64,
    /// Number of awakenings, excluding the final one.
    pub nwak: i64,
    /// Terminal wakefulness, final awakening → out of bed, minutes.
    pub twak_min: i64,
    /// Sleep efficiency TST ÷ TIB × 100, one decimal.
    pub se_pct: f64,
    /// Total nap minutes the day before.
    pub nap_min: i64,
}

impl DiaryEntry {
    /// Validates an input (REFERENCE §2.3) and anchors its times in the zone.
    pub fn parse(input: &DiaryInput) -> Result<Self, Problem> {
        let zone = parse_zone("zone", &input.zone)?;
        if input.naps.len() > MAX_NAPS {
            return Err(Problem::validation(
                "naps",
                format!("at most {MAX_NAPS} naps"),
            ));
        }
        for (list, name) in [
            (input.caffeine.len(), "caffeine"),
            (input.alcohol.len(), "alcohol"),
            (input.medication.len(), "medication"),
        ] {
            if list > MAX_INTAKES {
                return Err(Problem::validation(
                    name,
                    format!("at most {MAX_INTAKES} items"),
                ));
            }
        }
        let into_bed = resolve_local("into_bed", &input.into_bed, zone)?;
        let lights_out = resolve_local("lights_out", &input.lights_out, zone)?;
        let final_awakening = resolve_local("final_awakening", &input.final_awakening, zone)?;
        let out_of_bed = resolve_local("out_of_bed", &input.out_of_bed, zone)?;
        if lights_out.utc < into_bed.utc {
            return Err(Problem::validation(
                "lights_out",
                "lights_out is before into_bed",
            ));
        }
        if final_awakening.utc <= lights_out.utc {
            return Err(Problem::validation(
                "final_awakening",
                "final_awakening must be after lights_out",
            ));
        }
        if out_of_bed.utc < final_awakening.utc {
            return Err(Problem::validation(
                "out_of_bed",
                "out_of_bed is before final_awakening",
            ));
        }
        let tib = (out_of_bed.utc - into_bed.utc).num_seconds();
        if tib >= MAX_TIB_SECS {
            return Err(Problem::validation(
                "out_of_bed",
                "time in bed must be shorter than 24 hours",
            ));
        }
        let period_min = (final_awakening.utc - lights_out.utc).num_seconds() / 60;
        let awake = i64::from(input.sol_min) + i64::from(input.waso_min);
        if awake > period_min {
            let field = if i64::from(input.sol_min) > period_min {
                "sol_min"
            } else {
                "waso_min"
            };
            return Err(Problem::validation(
                field,
                format!(
                    "sol_min + waso_min ({awake} min) is longer than the sleep period from lights_out to final_awakening ({period_min} min)"
                ),
            ));
        }
        if input.awakenings == 0 && input.waso_min > 0 {
            return Err(Problem::validation(
                "waso_min",
                "waso_min must be 0 when awakenings is 0",
            ));
        }
        if input.awakenings > 100 {
            return Err(Problem::validation(
                "awakenings",
                "awakenings must be at most 100",
            ));
        }
        if input.quality.is_some_and(|q| !(1..=5).contains(&q)) {
            return Err(Problem::validation("quality", "quality must be 1 to 5"));
        }
        let mut naps = Vec::with_capacity(input.naps.len());
        for (i, nap) in input.naps.iter().enumerate() {
            let start = resolve_local(&format!("naps[{i}].start"), &nap.start, zone)?;
            let end = resolve_local(&format!("naps[{i}].end"), &nap.end, zone)?;
            if end.utc <= start.utc {
                return Err(Problem::validation(
                    format!("naps[{i}].end"),
                    "a nap must end after it starts",
                ));
            }
            if (end.utc - start.utc).num_hours() >= 12 {
                return Err(Problem::validation(
                    format!("naps[{i}].end"),
                    "a nap must be shorter than 12 hours",
                ));
            }
            if start.utc < out_of_bed.utc && end.utc > into_bed.utc {
                return Err(Problem::validation(
                    format!("naps[{i}].start"),
                    "a nap must not overlap the night's time in bed",
                ));
            }
            naps.push(Nap { start, end });
        }
        for (list, name) in [(&input.caffeine, "caffeine"), (&input.alcohol, "alcohol")] {
            for (i, intake) in list.iter().enumerate() {
                resolve_local(&format!("{name}[{i}].time"), &intake.time, zone)?;
                if !(1..=20).contains(&intake.servings) {
                    return Err(Problem::validation(
                        format!("{name}[{i}].servings"),
                        "servings must be 1 to 20",
                    ));
                }
            }
        }
        for (i, med) in input.medication.iter().enumerate() {
            resolve_local(&format!("medication[{i}].time"), &med.time, zone)?;
            if med.dose.as_ref().is_some_and(|d| d.chars().count() > 100) {
                return Err(Problem::validation(
                    format!("medication[{i}].dose"),
                    "dose must be at most 100 characters",
                ));
            }
            if med.name.trim().is_empty() || med.name.len() > 200 {
                return Err(Problem::validation(
                    format!("medication[{i}].name"),
                    "name must be 1 to 200 characters",
                ));
            }
        }
        if input
            .comment
            .as_ref()
            .is_some_and(|c| c.chars().count() > 2000)
        {
            return Err(Problem::validation(
                "comment",
                "comment must be at most 2000 characters",
            ));
        }
        Ok(Self {
            zone,
            into_bed,
            lights_out,
            sol_min: input.sol_min,
            awakenings: input.awakenings,
            waso_min: input.waso_min,
            final_awakening,
            out_of_bed,
            naps,
        })
    }

    /// The night this entry belongs to: the local date of the final awakening.
    pub fn night(&self) -> NaiveDate {
        night_of(self.final_awakening.utc, self.zone)
    }

    /// The night's metrics, from instants.
    pub fn metrics(&self) -> NightMetrics {
        let secs = |a: &LocalInstant, b: &LocalInstant| (b.utc - a.utc).num_seconds();
        let tib_s = secs(&self.into_bed, &self.out_of_bed);
        let period_s = secs(&self.lights_out, &self.final_awakening);
        let tst_s = period_s - 60 * i64::from(self.sol_min) - 60 * i64::from(self.waso_min);
        let nap_s: i64 = self.naps.iter().map(|n| secs(&n.start, &n.end)).sum();
        NightMetrics {
            tib_min: round_min(tib_s),
            tst_min: round_min(tst_s),
            sol_min: i64::from(self.sol_min),
            waso_min: i64::from(self.waso_min),
            nwak: i64::from(self.awakenings),
            twak_min: round_min(secs(&self.final_awakening, &self.out_of_bed)),
            se_pct: efficiency(tst_s, tib_s),
            nap_min: round_min(nap_s),
        }
    }
}

/// Sleep efficiency in percent with one decimal; 0 when `tib` is 0.
pub fn efficiency(tst_secs: i64, tib_secs: i64) -> f64 {
    if tib_secs <= 0 {
        return 0.0;
    }
    (tst_secs as f64 / tib_secs as f64 * 1000.0).round() / 10.0
}

fn round_min(secs: i64) -> i64 {
    (secs as f64 / 60.0).round() as i64
}

/// The local date of `instant` in `zone`.
pub fn night_of(instant: DateTime<Utc>, zone: Tz) -> NaiveDate {
    instant.with_timezone(&zone).date_naive()
}

/// Parses an IANA zone name; 422 naming `field` otherwise.
pub fn parse_zone(field: &str, name: &str) -> Result<Tz, Problem> {
    Tz::from_str(name).map_err(|_| {
        let shown: String = name.chars().take(64).collect();
        Problem::validation(field, format!("{shown:?} is not an IANA time zone"))
    })
}

/// Reads a local date-time in `zone`.
///
/// With an offset, the offset must be the one `zone` has at that instant. Without one, the
/// wall time must exist exactly once in `zone`: times skipped by a DST change do not exist,
/// and times repeated by one are ambiguous, so both are refused (REFERENCE §2.5).
pub fn resolve_local(field: &str, value: &str, zone: Tz) -> Result<LocalInstant, Problem> {
    if let Ok(dt) = DateTime::parse_from_rfc3339(value) {
        let utc = dt.with_timezone(&Utc);
        let zone_offset = utc.with_timezone(&zone).offset().fix();
        if zone_offset != *dt.offset() {
            return Err(Problem::validation(
                field,
                format!(
                    "offset {} does not match {} at that time ({})",
                    dt.offset(),
                    zone.name(),
                    zone_offset
                ),
            ));
        }
        return Ok(LocalInstant {
            utc,
            offset: zone_offset,
        });
    }
    let naive = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(value, f).ok())
        .ok_or_else(|| {
            Problem::validation(
                field,
                format!("{value:?} is not a local date-time like 2025-03-30T06:30:00+02:00"),
            )
        })?;
    match zone.from_local_datetime(&naive) {
        LocalResult::Single(dt) => Ok(LocalInstant {
            utc: dt.with_timezone(&Utc),
            offset: dt.offset().fix(),
        }),
        LocalResult::None => Err(Problem::validation(
            field,
            format!(
                "{value} does not exist in {} (skipped by a daylight-saving change)",
                zone.name()
            ),
        )),
        LocalResult::Ambiguous(a, b) => Err(Problem::validation(
            field,
            format!(
                "{value} occurs twice in {} (daylight-saving change); send the offset ({} or {})",
                zone.name(),
                a.offset().fix(),
                b.offset().fix()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::too_many_arguments)]
    fn input(
        zone: &str,
        t1: &str,
        t2: &str,
        sol: u32,
        nwak: u32,
        waso: u32,
        t6: &str,
        t7: &str,
    ) -> DiaryInput {
        DiaryInput {
            id: None,
            zone: zone.into(),
            into_bed: t1.into(),
            lights_out: t2.into(),
            sol_min: sol,
            awakenings: nwak,
            waso_min: waso,
            final_awakening: t6.into(),
            out_of_bed: t7.into(),
            quality: Some(3),
            naps: vec![],
            caffeine: vec![],
            alcohol: vec![],
            medication: vec![],
            comment: None,
        }
    }

    /// REFERENCE §2.5 vector N2 (spring forward): TIB 420, TST 340, SE 81.0 % (wall clock: 480, 83.3 %).
    #[test]
    fn spring_dst_night_is_computed_from_instants() {
        let e = DiaryEntry::parse(&input(
            "Europe/Berlin",
            "2025-03-29T23:00:00+01:00",
            "2025-03-29T23:15:00+01:00",
            20,
            1,
            15,
            "2025-03-30T06:30:00+02:00",
            "2025-03-30T07:00:00+02:00",
        ))
        .unwrap();
        let m = e.metrics();
        assert_eq!((m.tib_min, m.tst_min, m.se_pct), (420, 340, 81.0));
        assert_eq!(m.twak_min, 30);
        assert_eq!(e.night(), NaiveDate::from_ymd_opt(2025, 3, 30).unwrap());
    }

    /// Same night without offsets: the zone resolves them, with the same result.
    #[test]
    fn local_times_without_offset_are_read_in_the_zone() {
        let e = DiaryEntry::parse(&input(
            "Europe/Berlin",
            "2025-03-29T23:00",
            "2025-03-29T23:15",
            20,
            1,
            15,
            "2025-03-30T06:30",
            "2025-03-30T07:00",
        ))
        .unwrap();
        assert_eq!(e.metrics().tib_min, 420);
        assert_eq!(e.out_of_bed.to_rfc3339(), "2025-03-30T07:00:00+02:00");
    }

    /// REFERENCE §2.5 vector N3 (fall back): TIB 540, TST 460, SE 85.2 %.
    #[test]
    fn autumn_dst_night_is_computed_from_instants() {
        let m = DiaryEntry::parse(&input(
            "Europe/Berlin",
            "2025-10-25T23:00:00+02:00",
            "2025-10-25T23:15:00+02:00",
            20,
            2,
            15,
            "2025-10-26T06:30:00+01:00",
            "2025-10-26T07:00:00+01:00",
        ))
        .unwrap()
        .metrics();
        assert_eq!((m.tib_min, m.tst_min, m.se_pct), (540, 460, 85.2));
    }

    /// REFERENCE §2.5 vector N4 (day sleeper) and §2.2 worked example.
    #[test]
    fn day_sleeper_and_worked_example() {
        let m = DiaryEntry::parse(&input(
            "Europe/Berlin",
            "2025-02-03T08:00",
            "2025-02-03T08:10",
            10,
            0,
            0,
            "2025-02-03T15:40",
            "2025-02-03T16:00",
        ))
        .unwrap()
        .metrics();
        assert_eq!((m.tib_min, m.tst_min, m.se_pct), (480, 440, 91.7));
        let m = DiaryEntry::parse(&input(
            "Europe/Berlin",
            "2025-02-03T22:45",
            "2025-02-03T23:00",
            30,
            2,
            40,
            "2025-02-04T06:00",
            "2025-02-04T06:30",
        ))
        .unwrap()
        .metrics();
        assert_eq!(
            (m.tib_min, m.tst_min, m.twak_min, m.se_pct),
            (465, 350, 30, 75.3)
        );
    }

    fn field_of(r: Result<DiaryEntry, Problem>) -> String {
        let p = r.unwrap_err();
        assert_eq!(p.status, 422);
        p.field.unwrap()
    }

    #[test]
    fn nonexistent_and_ambiguous_local_times_are_refused_naming_the_field() {
        let base = |t6: &str, t7: &str| {
            input(
                "Europe/Berlin",
                "2025-03-30T01:00",
                "2025-03-30T01:10",
                5,
                0,
                0,
                t6,
                t7,
            )
        };
        assert_eq!(
            field_of(DiaryEntry::parse(&base(
                "2025-03-30T02:30",
                "2025-03-30T06:00"
            ))),
            "final_awakening"
        );
        let fold = input(
            "Europe/Berlin",
            "2025-10-26T00:00",
            "2025-10-26T00:10",
            5,
            0,
            0,
            "2025-10-26T05:00",
            "2025-10-26T02:30",
        );
        // out_of_bed before final awakening is caught only after all times resolve; the fold comes first
        assert_eq!(field_of(DiaryEntry::parse(&fold)), "out_of_bed");
        let p = resolve_local("out_of_bed", "2025-10-26T02:30", Tz::Europe__Berlin).unwrap_err();
        assert!(p.detail.contains("occurs twice"), "{}", p.detail);
        // with the offset the folded time is fine
        assert!(resolve_local("x", "2025-10-26T02:30:00+01:00", Tz::Europe__Berlin).is_ok());
        assert!(resolve_local("x", "2025-10-26T02:30:00+02:00", Tz::Europe__Berlin).is_ok());
    }

    #[test]
    fn an_offset_that_the_zone_does_not_have_is_refused() {
        let p =
            resolve_local("into_bed", "2025-07-01T23:00:00+01:00", Tz::Europe__Berlin).unwrap_err();
        assert_eq!(p.field.as_deref(), Some("into_bed"));
    }

    #[test]
    fn wrong_order_and_too_much_wake_are_refused() {
        let ok = input(
            "Europe/Berlin",
            "2025-02-03T22:45",
            "2025-02-03T23:00",
            30,
            2,
            40,
            "2025-02-04T06:00",
            "2025-02-04T06:30",
        );
        assert!(DiaryEntry::parse(&ok).is_ok());
        let mut bad = ok.clone();
        bad.lights_out = "2025-02-03T22:30".into();
        assert_eq!(field_of(DiaryEntry::parse(&bad)), "lights_out");
        let mut bad = ok.clone();
        bad.out_of_bed = "2025-02-04T05:59".into();
        assert_eq!(field_of(DiaryEntry::parse(&bad)), "out_of_bed");
        let mut bad = ok.clone();
        bad.final_awakening = "2025-02-03T23:00".into();
        assert_eq!(field_of(DiaryEntry::parse(&bad)), "final_awakening");
        let mut bad = ok.clone();
        bad.waso_min = 400;
        assert_eq!(field_of(DiaryEntry::parse(&bad)), "waso_min");
        let mut bad = ok.clone();
        bad.sol_min = 500;
        assert_eq!(field_of(DiaryEntry::parse(&bad)), "sol_min");
        let mut bad = ok.clone();
        bad.awakenings = 0;
        assert_eq!(field_of(DiaryEntry::parse(&bad)), "waso_min");
        let mut bad = ok.clone();
        bad.zone = "Mars/Olympus".into();
        assert_eq!(field_of(DiaryEntry::parse(&bad)), "zone");
        let mut bad = ok.clone();
        bad.out_of_bed = "2025-02-05T06:30".into();
        assert_eq!(field_of(DiaryEntry::parse(&bad)), "out_of_bed");
        let mut bad = ok;
        bad.naps = vec![NapInput {
            start: "2025-02-04T05:00".into(),
            end: "2025-02-04T05:30".into(),
        }];
        assert_eq!(field_of(DiaryEntry::parse(&bad)), "naps[0].start");
    }
}
