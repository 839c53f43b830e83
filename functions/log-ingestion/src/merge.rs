//! Merging sessions of several sources into nights.
//!
//! Rules:
//! - Night key: a main sleep belongs to the local date of its end (the final awakening), in the
//!   offset the source gave. A nap or rest belongs to the day its source files it under
//!   (Fitbit `dateOfSleep`, Oura `day`: Oura files a 17:39 rest under the next day), else to
//!   the local date of its end.
//! - TST is the union of the asleep intervals of every main session of the night, so a
//!   generic Asleep under stage records, or a phone and a watch measuring the same hours, count
//!   once; InBed and Awake are never asleep. Exception: a night measured by one source only
//!   takes that source's stated totals when it states them (Oura), being finer than its
//!   5-minute hypnogram.
//! - TIB runs from the earliest start to the latest end of the main sessions; a night made of
//!   one session that states its time in bed (Fitbit `duration`) takes that instead.
//! - Stage minutes come from one source, the one with the most staged (deep + light + REM)
//!   time, then the most sleep, then the first in source/device order: stages of different
//!   devices are not comparable and must not be mixed.
//! - Naps and rests are listed per session and never enter the main sleep.
//! - Minutes are rounded to the nearest minute, as the diary does.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use common::diary::efficiency;

use crate::model::{
    MainSleep, Night, Period, Provenance, Segment, Session, SessionKind, Source, Stage,
    StageMinutes, StageSeconds,
};

/// Groups sessions into nights, sorted by date. The same session given twice (the same file
/// imported again) counts once; the result does not depend on the order of `sessions`.
pub fn nights(sessions: &[Session]) -> Vec<Night> {
    let mut unique: Vec<&Session> = sessions.iter().collect();
    unique.sort_by(|a, b| order(a).cmp(&order(b)));
    unique
        .dedup_by(|a, b| a.source == b.source && a.record_ids == b.record_ids && a.kind == b.kind);

    let mut by_night: BTreeMap<NaiveDate, Vec<&Session>> = BTreeMap::new();
    for s in unique {
        by_night.entry(night_key(s)).or_default().push(s);
    }
    by_night
        .into_iter()
        .map(|(date, sessions)| night(date, &sessions))
        .collect()
}

/// The night a session is filed under (see the module rules).
pub fn night_key(s: &Session) -> NaiveDate {
    match s.kind {
        SessionKind::Main => s.end.date_naive(),
        SessionKind::Nap | SessionKind::Rest => s.source_day.unwrap_or(s.end.date_naive()),
    }
}

/// Seconds asleep in `segments`, overlaps counted once.
pub fn asleep_secs(segments: &[Segment]) -> i64 {
    timeline(segments.iter()).asleep()
}

type Order<'a> = (
    DateTime<Utc>,
    Source,
    &'a Option<String>,
    &'a [String],
    SessionKind,
);

fn order(s: &Session) -> Order<'_> {
    (s.start.to_utc(), s.source, &s.device, &s.record_ids, s.kind)
}

fn night(date: NaiveDate, sessions: &[&Session]) -> Night {
    let mains: Vec<&Session> = sessions
        .iter()
        .copied()
        .filter(|s| s.kind == SessionKind::Main)
        .collect();
    let periods = |kind| {
        sessions
            .iter()
            .filter(|s| s.kind == kind)
            .map(|s| Period {
                source: s.source,
                start: s.start,
                end: s.end,
                asleep_min: if kind == SessionKind::Rest {
                    0
                } else {
                    minutes(totals(&[s]).asleep())
                },
            })
            .collect::<Vec<_>>()
    };

    let mut provenance: BTreeMap<(Source, Option<String>), Vec<String>> = BTreeMap::new();
    for s in sessions {
        provenance
            .entry((s.source, s.device.clone()))
            .or_default()
            .extend(s.record_ids.iter().cloned());
    }

    Night {
        date,
        main: main_sleep(&mains),
        naps: periods(SessionKind::Nap),
        rests: periods(SessionKind::Rest),
        provenance: provenance
            .into_iter()
            .map(|((source, device), mut record_ids)| {
                record_ids.sort();
                record_ids.dedup();
                Provenance {
                    source,
                    device,
                    record_ids,
                }
            })
            .collect(),
    }
}

fn main_sleep(mains: &[&Session]) -> Option<MainSleep> {
    let start = mains.iter().map(|s| s.start).min_by_key(|t| t.to_utc())?;
    let end = mains.iter().map(|s| s.end).max_by_key(|t| t.to_utc())?;

    let mut by_device: BTreeMap<(Source, &Option<String>), Vec<&Session>> = BTreeMap::new();
    for s in mains {
        by_device.entry((s.source, &s.device)).or_default().push(s);
    }
    let per_device: Vec<StageSeconds> = by_device.values().map(|v| totals(v)).collect();
    // `max_by_key` keeps the last of equal keys; walking in reverse makes ties go to the first.
    let stages = per_device
        .iter()
        .rev()
        .max_by_key(|t| (t.staged(), t.asleep()))
        .copied()
        .unwrap_or_default();

    let tib_secs = match mains {
        [only] => only.in_bed_secs.unwrap_or((end - start).num_seconds()),
        _ => (end - start).num_seconds(),
    };
    let tst_secs = match per_device.as_slice() {
        [only] => only.asleep(),
        _ => asleep_secs(
            &mains
                .iter()
                .flat_map(|s| s.segments.iter().cloned())
                .collect::<Vec<_>>(),
        ),
    }
    // A source that says more sleep than time in bed would give SE > 100 %.
    .min(tib_secs);

    Some(MainSleep {
        start,
        end,
        tib_min: minutes(tib_secs),
        tst_min: minutes(tst_secs),
        se_pct: efficiency(tst_secs, tib_secs),
        stages: StageMinutes {
            deep: minutes(stages.deep),
            light: minutes(stages.light),
            rem: minutes(stages.rem),
            awake: minutes(stages.awake),
            unspecified: minutes(stages.unspecified),
        },
    })
}

/// Stage seconds of the sessions of one device: their stated totals when all state them,
/// else read from their segments.
fn totals(sessions: &[&Session]) -> StageSeconds {
    let stated: Option<Vec<StageSeconds>> = sessions.iter().map(|s| s.stated).collect();
    match stated {
        Some(all) if !all.is_empty() => {
            all.iter()
                .fold(StageSeconds::default(), |a, t| StageSeconds {
                    deep: a.deep + t.deep,
                    light: a.light + t.light,
                    rem: a.rem + t.rem,
                    awake: a.awake + t.awake,
                    unspecified: a.unspecified + t.unspecified,
                })
        }
        _ => timeline(sessions.iter().flat_map(|s| s.segments.iter())),
    }
}

/// Seconds per stage where each instant takes one label: a stage over generic Asleep over
/// Awake over InBed. Apple nests Asleep inside InBed (iOS 15) and may lay stage records over a
/// generic Asleep of another app, so overlaps are the norm, not an error.
fn timeline<'a>(segments: impl Iterator<Item = &'a Segment>) -> StageSeconds {
    fn rank(stage: Stage) -> usize {
        match stage {
            Stage::Deep => 0,
            Stage::Rem => 1,
            Stage::Light => 2,
            Stage::Asleep => 3,
            Stage::Awake => 4,
            Stage::InBed => 5,
        }
    }
    let mut edges: Vec<(DateTime<Utc>, usize, i32)> = Vec::new();
    for s in segments.filter(|s| s.start < s.end) {
        edges.push((s.start, rank(s.stage), 1));
        edges.push((s.end, rank(s.stage), -1));
    }
    edges.sort();
    let mut open = [0i32; 6];
    let mut out = StageSeconds::default();
    let mut since: Option<DateTime<Utc>> = None;
    for (at, rank, delta) in edges {
        if let (Some(from), Some(top)) = (since, open.iter().position(|&n| n > 0)) {
            let secs = (at - from).num_seconds();
            match top {
                0 => out.deep += secs,
                1 => out.rem += secs,
                2 => out.light += secs,
                3 => out.unspecified += secs,
                4 => out.awake += secs,
                _ => {}
            }
        }
        open[rank] += delta;
        since = Some(at);
    }
    out
}

fn minutes(secs: i64) -> i64 {
    (secs + 30).div_euclid(60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;
    use chrono::{FixedOffset, TimeZone};
    use chrono_tz::Tz;

    const REAL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/realdata/");
    const BERLIN: Tz = chrono_tz::Europe::Berlin;

    fn bytes(path: &str) -> Vec<u8> {
        std::fs::read(format!("{REAL}{path}")).unwrap()
    }

    fn apple(name: &str) -> Vec<Session> {
        parse::apple_health(&bytes(&format!("apple-health/{name}"))[..], BERLIN).unwrap()
    }

    fn fitbit(name: &str) -> Vec<Session> {
        parse::fitbit(&bytes(&format!("fitbit/{name}")), BERLIN).unwrap()
    }

    fn oura() -> Vec<Session> {
        parse::oura(
            &bytes("oura/exoura-v2-usercollection-sleep-slice-naps-rest-dst.json"),
            BERLIN,
        )
        .unwrap()
    }

    fn only_main(nights: &[Night]) -> &MainSleep {
        assert_eq!(nights.len(), 1, "{nights:#?}");
        nights[0].main.as_ref().unwrap()
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn hm(t: DateTime<FixedOffset>) -> String {
        t.format("%H:%M").to_string()
    }

    #[test]
    fn classic_nap_is_kept_apart_from_the_main_sleep() {
        let nights = nights(&fitbit("shimmer-fitbit-sleep-date-classic-with-nap.json"));
        let main = only_main(&nights);
        assert_eq!(nights[0].date, date(2016, 12, 13));
        // Never the 175 min of the file's top-level summary, which adds the nap.
        assert_eq!(main.tst_min, 112);
        assert_eq!(
            (hm(main.start).as_str(), hm(main.end).as_str()),
            ("01:16", "03:14")
        );
        assert_eq!(main.tib_min, 118);
        assert_eq!(main.se_pct, 94.9);
        assert_eq!(main.stages.unspecified, 112);
        assert_eq!(main.stages.awake, 6);
        let naps = &nights[0].naps;
        assert_eq!(naps.len(), 1);
        assert_eq!(naps[0].asleep_min, 63);
        assert_eq!(
            (hm(naps[0].start).as_str(), hm(naps[0].end).as_str()),
            ("09:59", "11:02")
        );
        assert_eq!(nights[0].provenance.len(), 1);
        assert_eq!(
            nights[0].provenance[0].record_ids,
            vec!["13211507000", "13214029456"]
        );
    }

    #[test]
    fn short_wakes_laid_over_stages_give_fitbits_summary_and_the_stated_time_in_bed() {
        let nights = nights(&fitbit("sleepcare-fitbit-sleep-list-v1.2-stages.json"));
        let main = only_main(&nights);
        assert_eq!(nights[0].date, date(2023, 4, 29));
        assert_eq!(
            main.stages,
            StageMinutes {
                deep: 82,
                light: 226,
                rem: 70,
                awake: 74,
                unspecified: 0
            }
        );
        // `duration` 27120000 ms, not endTime − startTime (452.5 min).
        assert_eq!(main.tib_min, 452);
        assert_eq!(main.tst_min, 378);
        assert_eq!(main.se_pct, 83.6);
    }

    #[test]
    fn in_bed_is_never_added_to_asleep() {
        let main = only_main(&nights(&apple("resilio-sleep_with_inbed.xml"))).clone();
        assert_eq!(main.tst_min, 7 * 60);
        assert_eq!(main.tib_min, 9 * 60);
        assert_eq!(main.se_pct, 77.8);
    }

    #[test]
    fn ios16_stages_sum_to_the_sleep_and_awake_is_left_out() {
        let nights = nights(&apple("resilio-sleep_ios16.xml"));
        let main = only_main(&nights);
        assert_eq!(nights[0].date, date(2026, 4, 15));
        assert_eq!(main.tst_min, 330);
        assert_eq!(
            main.stages,
            StageMinutes {
                deep: 90,
                light: 120,
                rem: 120,
                awake: 30,
                unspecified: 0
            }
        );
        // No InBed record: in bed from the first record to the last, 23:00–05:00.
        assert_eq!(main.tib_min, 360);
        assert_eq!(main.se_pct, 91.7);
    }

    #[test]
    fn ios15_asleep_nested_in_in_bed_counts_once() {
        let main = only_main(&nights(&apple("resilio-sleep_ios15.xml"))).clone();
        assert_eq!(main.tst_min, 450);
        assert_eq!(main.tib_min, 540);
        assert_eq!(main.se_pct, 83.3);
        assert_eq!(main.stages.unspecified, 450);
    }

    #[test]
    fn a_night_across_midnight_is_filed_under_the_morning() {
        let nights = nights(&apple("hydawo-export-v14-multisource-midnight-dst.xml"));
        let main = only_main(&nights);
        assert_eq!(nights[0].date, date(2026, 3, 5));
        // InBed 22:30–23:00, Core 00:00–02:00, Deep 02:00–02:45, REM 02:45–03:30 (−0500).
        assert_eq!(main.start.to_rfc3339(), "2026-03-04T22:30:00-05:00");
        assert_eq!(main.end.to_rfc3339(), "2026-03-05T03:30:00-05:00");
        assert_eq!(main.tst_min, 210);
        assert_eq!(main.tib_min, 300);
        assert_eq!(main.se_pct, 70.0);
        assert_eq!(
            (main.stages.light, main.stages.deep, main.stages.rem),
            (120, 45, 45)
        );
        assert_eq!(
            nights[0].provenance[0].device.as_deref(),
            Some("Fixture Watch")
        );
    }

    #[test]
    fn autosleep_generic_sleep_is_unstaged_and_its_in_bed_keeps_the_seconds() {
        let nights = nights(&apple("grll-export-autosleep-multisource.xml"));
        let main = only_main(&nights);
        assert_eq!(nights[0].date, date(2020, 7, 8));
        // InBed 01:05:06–08:30 = 26694 s = 444.9 min; AsleepUnspecified 01:15–08:30 = 435 min.
        assert_eq!(main.tib_min, 445);
        assert_eq!(main.tst_min, 435);
        assert_eq!(main.se_pct, 97.8);
        assert_eq!(main.stages.unspecified, 435);
        assert_eq!(main.stages.deep + main.stages.light + main.stages.rem, 0);
        assert_eq!(nights[0].provenance[0].device.as_deref(), Some("AutoSleep"));
    }

    #[test]
    fn oura_naps_and_rest_stay_apart_from_the_main_sleep() {
        let nights = nights(&oura());
        let dates: Vec<_> = nights.iter().map(|n| n.date).collect();
        assert_eq!(
            dates,
            vec![
                date(2024, 10, 13),
                date(2024, 10, 14),
                date(2024, 10, 25),
                date(2024, 10, 28)
            ]
        );

        // 2024-10-13: long_sleep 02:25:01–11:02:23, total_sleep_duration 27660 s,
        // time_in_bed 31042 s, deep 5430, light 16890, REM 5340, awake 3382.
        let n13 = &nights[0];
        let main = n13.main.as_ref().unwrap();
        assert_eq!(main.tst_min, 461);
        assert_eq!(main.tib_min, 517);
        assert_eq!(main.se_pct, 89.1);
        assert_eq!(
            main.stages,
            StageMinutes {
                deep: 91,
                light: 282,
                rem: 89,
                awake: 56,
                unspecified: 0
            }
        );
        // The 00:53 `sleep` period, 300 s asleep.
        assert_eq!(
            n13.naps.iter().map(|p| p.asleep_min).collect::<Vec<_>>(),
            vec![5]
        );
        assert!(n13.rests.is_empty());

        // 2024-10-14: the 17:39 rest of the 13th is filed by Oura under the 14th, never asleep;
        // four `sleep` periods are naps; the main sleep is the long_sleep alone (24030 s).
        let n14 = &nights[1];
        let main = n14.main.as_ref().unwrap();
        assert_eq!(main.tst_min, 401);
        assert_eq!(main.tib_min, 442);
        assert_eq!(n14.rests.len(), 1);
        assert_eq!(n14.rests[0].asleep_min, 0);
        assert_eq!(hm(n14.rests[0].start), "17:39");
        assert_eq!(
            n14.naps.iter().map(|p| p.asleep_min).collect::<Vec<_>>(),
            vec![8, 1, 16, 4]
        );
        assert_eq!(n14.provenance[0].record_ids.len(), 6);
    }

    #[test]
    fn oura_nights_after_the_dst_change_are_measured_from_instants() {
        let nights = nights(&oura());
        let before = nights[2].main.as_ref().unwrap();
        let after = nights[3].main.as_ref().unwrap();
        assert_eq!(before.start.to_rfc3339(), "2024-10-25T02:31:00+02:00");
        assert_eq!(after.start.to_rfc3339(), "2024-10-28T01:35:33+01:00");
        assert_eq!(after.end.to_rfc3339(), "2024-10-28T09:39:21+01:00");
        // 29028 s between the instants = time_in_bed; the wall clocks also say 8 h 03 min 48 s
        // here, but only because both ends are after the change.
        assert_eq!(after.tib_min, 484);
        assert_eq!(after.tst_min, 439);
        assert_eq!(before.tib_min, 492);
        assert_eq!(before.tst_min, 436);
    }

    fn segment(stage: Stage, from: (u32, u32, u32), to: (u32, u32, u32)) -> Segment {
        let at = |(d, h, m)| {
            BERLIN
                .with_ymd_and_hms(2026, 4, d, h, m, 0)
                .unwrap()
                .to_utc()
        };
        Segment {
            stage,
            start: at(from),
            end: at(to),
        }
    }

    fn apple_session(device: &str, segments: Vec<Segment>) -> Session {
        let offset = FixedOffset::east_opt(2 * 3600).unwrap();
        Session {
            source: Source::AppleHealth,
            device: Some(device.into()),
            record_ids: (0..segments.len())
                .map(|i| format!("{device}-{i}"))
                .collect(),
            kind: SessionKind::Main,
            start: segments
                .iter()
                .map(|s| s.start)
                .min()
                .unwrap()
                .with_timezone(&offset),
            end: segments
                .iter()
                .map(|s| s.end)
                .max()
                .unwrap()
                .with_timezone(&offset),
            in_bed_secs: None,
            source_day: None,
            segments,
            stated: None,
        }
    }

    fn watch_and_phone() -> Vec<Session> {
        let watch = apple_session(
            "Apple Watch",
            vec![
                segment(Stage::Light, (14, 23, 0), (15, 1, 0)),
                segment(Stage::Deep, (15, 1, 0), (15, 2, 0)),
                segment(Stage::Rem, (15, 2, 0), (15, 3, 0)),
                segment(Stage::Light, (15, 3, 0), (15, 6, 30)),
                segment(Stage::Awake, (15, 6, 30), (15, 6, 45)),
            ],
        );
        let phone = apple_session(
            "iPhone",
            vec![
                segment(Stage::InBed, (14, 22, 40), (15, 6, 50)),
                segment(Stage::Asleep, (14, 23, 15), (15, 6, 20)),
            ],
        );
        vec![watch, phone]
    }

    #[test]
    fn a_watch_stage_night_and_an_overlapping_phone_asleep_night_count_once() {
        let nights = nights(&watch_and_phone());
        let main = only_main(&nights);
        assert_eq!(nights[0].date, date(2026, 4, 15));
        // Watch asleep 23:00–06:30 = 450 min; the phone's 23:15–06:20 lies inside it
        // (added up it would be 875 min).
        assert_eq!(main.tst_min, 450);
        // In bed from the phone's 22:40 to its 06:50.
        assert_eq!(main.tib_min, 490);
        assert_eq!(main.se_pct, 91.8);
        // Stages from the watch alone; the phone's generic sleep is not mixed in.
        assert_eq!(
            main.stages,
            StageMinutes {
                deep: 60,
                light: 330,
                rem: 60,
                awake: 15,
                unspecified: 0
            }
        );
        let devices: Vec<_> = nights[0]
            .provenance
            .iter()
            .map(|p| (p.device.as_deref().unwrap(), p.record_ids.len()))
            .collect();
        assert_eq!(devices, vec![("Apple Watch", 5), ("iPhone", 2)]);
    }

    #[test]
    fn a_stated_time_in_bed_gives_way_to_the_span_when_two_sources_measured_the_night() {
        let mut sessions = watch_and_phone();
        let mut fitbit = sessions[0].clone();
        fitbit.source = Source::Fitbit;
        fitbit.device = None;
        fitbit.in_bed_secs = Some(60);
        sessions.push(fitbit);
        let main = only_main(&nights(&sessions)).clone();
        assert_eq!(main.tib_min, 490);
        assert_eq!(main.tst_min, 450);
    }

    fn everything() -> Vec<Session> {
        let mut all = oura();
        all.extend(fitbit("shimmer-fitbit-sleep-date-classic-with-nap.json"));
        all.extend(fitbit("sleepcare-fitbit-sleep-list-v1.2-stages.json"));
        for name in [
            "resilio-sleep_with_inbed.xml",
            "hydawo-export-v14-multisource-midnight-dst.xml",
            "grll-export-autosleep-multisource.xml",
        ] {
            all.extend(apple(name));
        }
        all
    }

    #[test]
    fn parsing_and_merging_again_gives_the_same_nights() {
        let first = nights(&everything());
        assert_eq!(first, nights(&everything()));
        let dates: Vec<_> = first.iter().map(|n| n.date).collect();
        let mut sorted = dates.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(dates, sorted);
        assert_eq!(dates.len(), 9);
    }

    #[test]
    fn importing_the_same_sessions_twice_or_in_another_order_changes_nothing() {
        let once = nights(&everything());
        let mut twice = everything();
        twice.extend(everything());
        assert_eq!(nights(&twice), once);
        let mut reversed = everything();
        reversed.reverse();
        assert_eq!(nights(&reversed), once);
    }
}
