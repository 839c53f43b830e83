//! Oura API v2 `usercollection/sleep`: a `data` array of sleep periods.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, FixedOffset, NaiveDate};
use chrono_tz::Tz;

use super::{At, clip, json};
use crate::model::{ParseError, Segment, Session, SessionKind, Source, Stage, StageSeconds};

/// `sleep_phase_5_min` epoch length.
const EPOCH_SECS: i64 = 300;

/// Parses an Oura sleep response.
///
/// `long_sleep` is the main sleep; when one `day` has several, the one with the most sleep is
/// the main and the others are naps (Oura itself shows one main sleep a day). `sleep` and
/// `late_nap` are naps, `rest` is rest and never asleep; `deleted` is skipped. Every time
/// carries its offset, so `zone` is not needed: the +02:00 → +01:00 change in the sample is
/// taken from the file.
///
/// Stages: the hypnogram (`sleep_phase_5_min`, 1 deep, 2 light, 3 REM, 4 awake, epochs from
/// `bedtime_start`) gives the segments; it does not agree with the duration fields (night of
/// 2024-10-13: 6000 s of deep epochs, `deep_sleep_duration` 5430 s) because those are summed
/// from 30-second data. The fields go to [`Session::stated`] and are what a single-source
/// night reports; the segments only serve the union with other sources.
pub fn oura(bytes: &[u8], _zone: Tz) -> Result<Vec<Session>, ParseError> {
    let value = json(bytes)?;
    let root = At::root(&value);
    let mut sessions = Vec::new();
    for item in root.field("data")?.items()? {
        if let Some(s) = session(&item)? {
            sessions.push(s);
        }
    }

    let mut long_by_day: BTreeMap<NaiveDate, Vec<usize>> = BTreeMap::new();
    for (i, s) in sessions.iter().enumerate() {
        if s.kind == SessionKind::Main {
            long_by_day
                .entry(s.source_day.unwrap_or_default())
                .or_default()
                .push(i);
        }
    }
    for indices in long_by_day.values() {
        let main = indices
            .iter()
            .copied()
            .max_by_key(|&i| {
                let s = &sessions[i];
                let asleep = s.stated.map_or(0, |t| t.asleep());
                // Ties go to the earlier id, so the choice does not depend on file order.
                (
                    asleep,
                    s.in_bed_secs,
                    std::cmp::Reverse(s.record_ids.clone()),
                )
            })
            .unwrap_or_default();
        for &i in indices {
            if i != main {
                sessions[i].kind = SessionKind::Nap;
            }
        }
    }
    sessions.sort_by(|a, b| (a.start, &a.record_ids).cmp(&(b.start, &b.record_ids)));
    Ok(sessions)
}

fn session(item: &At<'_>) -> Result<Option<Session>, ParseError> {
    let type_at = item.field("type")?;
    let kind = match type_at.str()? {
        "long_sleep" => SessionKind::Main,
        "sleep" | "late_nap" => SessionKind::Nap,
        "rest" => SessionKind::Rest,
        "deleted" => return Ok(None),
        other => return Err(type_at.error(format!("unknown sleep type {other:?}"))),
    };
    let id = item.field("id")?.id()?;
    let day_at = item.field("day")?;
    let day = NaiveDate::parse_from_str(day_at.str()?, "%Y-%m-%d")
        .map_err(|_| day_at.error("expected a date like 2024-10-13"))?;
    let start = instant(&item.field("bedtime_start")?)?;
    let end_at = item.field("bedtime_end")?;
    let end = instant(&end_at)?;
    if end <= start {
        return Err(end_at.error("is not after bedtime_start"));
    }
    let in_bed_secs = item.field("time_in_bed")?.non_negative()?;

    let (segments, stated) = if kind == SessionKind::Rest {
        // A rest period has a hypnogram too, but it is rest, not sleep: one in-bed interval.
        let whole = Segment {
            stage: Stage::InBed,
            start: start.to_utc(),
            end: end.to_utc(),
        };
        (vec![whole], None)
    } else {
        let stated = StageSeconds {
            deep: item.field("deep_sleep_duration")?.non_negative()?,
            light: item.field("light_sleep_duration")?.non_negative()?,
            rem: item.field("rem_sleep_duration")?.non_negative()?,
            awake: item.field("awake_time")?.non_negative()?,
            unspecified: 0,
        };
        let segments = match item.get("sleep_phase_5_min") {
            Some(phases) => hypnogram(&phases, start, end)?,
            None => Vec::new(),
        };
        (segments, Some(stated))
    };

    Ok(Some(Session {
        source: Source::Oura,
        device: None,
        record_ids: vec![id],
        kind,
        start,
        end,
        in_bed_secs: Some(in_bed_secs),
        source_day: Some(day),
        segments,
        stated,
    }))
}

fn instant(at: &At<'_>) -> Result<DateTime<FixedOffset>, ParseError> {
    let s = at.str()?;
    DateTime::parse_from_rfc3339(s).map_err(|_| {
        at.error(format!(
            "{s:?} is not a time like 2024-10-13T02:25:01+02:00"
        ))
    })
}

fn hypnogram(
    phases: &At<'_>,
    start: DateTime<FixedOffset>,
    end: DateTime<FixedOffset>,
) -> Result<Vec<Segment>, ParseError> {
    let mut out: Vec<Segment> = Vec::new();
    for (i, c) in phases.str()?.bytes().enumerate() {
        let stage = match c {
            b'1' => Stage::Deep,
            b'2' => Stage::Light,
            b'3' => Stage::Rem,
            b'4' => Stage::Awake,
            other => {
                return Err(phases.error(format!(
                    "epoch {i} is {:?}, expected 1 to 4",
                    char::from(other)
                )));
            }
        };
        let from = (start + Duration::seconds(i as i64 * EPOCH_SECS)).to_utc();
        let to = from + Duration::seconds(EPOCH_SECS);
        match out.last_mut() {
            Some(last) if last.stage == stage && last.end == from => last.end = to,
            _ => out.push(Segment {
                stage,
                start: from,
                end: to,
            }),
        }
    }
    // The last epoch runs past bedtime_end (night of 2024-10-13: 104 epochs = 31200 s for a
    // 31042 s period).
    clip(&mut out, start, end);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::stage_secs;

    const EXOURA: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/realdata/oura/exoura-v2-usercollection-sleep-slice-naps-rest-dst.json"
    ));
    const ZONE: Tz = chrono_tz::Europe::Berlin;

    fn by_id(sessions: &[Session], n: u32) -> &Session {
        let id = format!("00000000-0000-4000-8000-0000000000{n:02}");
        sessions
            .iter()
            .find(|s| s.record_ids == [id.clone()])
            .unwrap()
    }

    #[test]
    fn every_period_is_kept_with_its_kind() {
        let sessions = oura(EXOURA, ZONE).unwrap();
        assert_eq!(sessions.len(), 12);
        let count = |k| sessions.iter().filter(|s| s.kind == k).count();
        assert_eq!(count(SessionKind::Main), 4);
        assert_eq!(count(SessionKind::Nap), 7);
        assert_eq!(count(SessionKind::Rest), 1);
        let rest = by_id(&sessions, 3);
        assert_eq!(rest.kind, SessionKind::Rest);
        assert!(rest.segments.iter().all(|s| !s.stage.is_asleep()));
        assert_eq!(rest.source_day, NaiveDate::from_ymd_opt(2024, 10, 14));
    }

    #[test]
    fn stated_durations_are_kept_and_the_hypnogram_stops_at_bedtime_end() {
        let sessions = oura(EXOURA, ZONE).unwrap();
        let night = by_id(&sessions, 2);
        assert_eq!(
            night.stated,
            Some(StageSeconds {
                deep: 5430,
                light: 16890,
                rem: 5340,
                awake: 3382,
                unspecified: 0
            })
        );
        assert_eq!(night.in_bed_secs, Some(31042));
        let first = night.segments.first().unwrap();
        let last = night.segments.last().unwrap();
        assert_eq!(first.start, night.start.to_utc());
        assert_eq!(last.end, night.end.to_utc());
        // 104 epochs: 20 deep, 55 light, 19 REM, 10 awake; the last (awake) one is cut by 158 s.
        let secs = stage_secs(night);
        assert_eq!(secs[&Stage::Deep], 20 * 300);
        assert_eq!(secs[&Stage::Light], 55 * 300);
        assert_eq!(secs[&Stage::Rem], 19 * 300);
        assert_eq!(secs[&Stage::Awake], 10 * 300 - 158);
    }

    #[test]
    fn offsets_come_from_the_file_across_the_autumn_change() {
        let sessions = oura(EXOURA, ZONE).unwrap();
        let before = by_id(&sessions, 9);
        let after = by_id(&sessions, 11);
        assert_eq!(before.start.offset().local_minus_utc(), 2 * 3600);
        assert_eq!(after.start.offset().local_minus_utc(), 3600);
        assert_eq!((after.end - after.start).num_seconds(), 29028);
        // The user's zone plays no part when the file gives offsets.
        assert_eq!(oura(EXOURA, chrono_tz::UTC).unwrap(), sessions);
    }

    #[test]
    fn a_second_long_sleep_on_a_day_becomes_a_nap() {
        let period = |id: &str, start: &str, end: &str, deep: i64| {
            format!(
                r#"{{"id":"{id}","type":"long_sleep","day":"2024-10-14","bedtime_start":"{start}",
                "bedtime_end":"{end}","time_in_bed":3600,"deep_sleep_duration":{deep},
                "light_sleep_duration":0,"rem_sleep_duration":0,"awake_time":0,
                "sleep_phase_5_min":"1"}}"#
            )
        };
        let body = format!(
            r#"{{"data":[{},{}]}}"#,
            period(
                "a",
                "2024-10-14T01:00:00+02:00",
                "2024-10-14T02:00:00+02:00",
                600
            ),
            period(
                "b",
                "2024-10-14T03:00:00+02:00",
                "2024-10-14T04:00:00+02:00",
                1200
            )
        );
        let sessions = oura(body.as_bytes(), ZONE).unwrap();
        assert_eq!(sessions[0].kind, SessionKind::Nap);
        assert_eq!(sessions[1].kind, SessionKind::Main);
    }

    #[test]
    fn an_unknown_phase_is_named_by_its_json_path() {
        let body = br#"{"data":[{"id":"a","type":"sleep","day":"2024-10-14",
            "bedtime_start":"2024-10-14T01:00:00+02:00","bedtime_end":"2024-10-14T02:00:00+02:00",
            "time_in_bed":3600,"deep_sleep_duration":0,"light_sleep_duration":0,
            "rem_sleep_duration":0,"awake_time":0,"sleep_phase_5_min":"129"}]}"#;
        let err = oura(body, ZONE).unwrap_err();
        assert_eq!(err.location.as_deref(), Some("data[0].sleep_phase_5_min"));
        assert!(err.message.contains("epoch 2"), "{}", err.message);
    }
}
