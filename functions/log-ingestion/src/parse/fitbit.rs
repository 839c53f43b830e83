//! Fitbit Web API v1.2 sleep logs: the `sleep/date` and the `sleep/list` responses, both with a
//! top-level `sleep` array, each log `type: "stages"` or `type: "classic"`.

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, NaiveDateTime};
use chrono_tz::Tz;

use super::{At, clip, json, overlay, resolve_wall};
use crate::model::{ParseError, Segment, Session, SessionKind, Source, Stage};

/// Longest period or segment accepted, seconds.
const DAY_SECS: i64 = 24 * 3600;

/// Parses a Fitbit sleep response. Times carry no offset, so they are read in `zone`.
pub fn fitbit(bytes: &[u8], zone: Tz) -> Result<Vec<Session>, ParseError> {
    let value = json(bytes)?;
    let root = At::root(&value);
    let mut sessions = root
        .field("sleep")?
        .items()?
        .iter()
        .map(|log| session(log, zone))
        .collect::<Result<Vec<_>, _>>()?;
    sessions.sort_by(|a, b| (a.start, &a.record_ids).cmp(&(b.start, &b.record_ids)));
    Ok(sessions)
}

fn session(log: &At<'_>, zone: Tz) -> Result<Session, ParseError> {
    let log_id = log.field("logId")?.id()?;
    let main = log.field("isMainSleep")?.bool()?;
    let start_at = log.field("startTime")?;
    let start = resolve_wall(wall(&start_at)?, zone, None);
    let end_at = log.field("endTime")?;
    let end = resolve_wall(wall(&end_at)?, zone, Some(start));
    if end <= start {
        return Err(end_at.error("is not after startTime"));
    }
    let duration_ms = log.field("duration")?.at_most(DAY_SECS * 1000)?;
    let day_at = log.field("dateOfSleep")?;
    let day = NaiveDate::parse_from_str(day_at.str()?, "%Y-%m-%d")
        .map_err(|_| day_at.error("expected a date like 2023-04-29"))?;

    let kind_at = log.field("type")?;
    let stages = match kind_at.str()? {
        "stages" => true,
        "classic" => false,
        other => return Err(kind_at.error(format!("unknown log type {other:?}"))),
    };
    let levels = log.field("levels")?;
    let data = segments(&levels.field("data")?, zone, start, stages)?;
    let mut segments = match levels.get("shortData") {
        // shortData holds the wakes of under 3 minutes that `data` smooths over: they replace
        // the part of `data` they cover. Adding them on top counts 40 minutes twice in the
        // sleepcare sample (README fact 1: only the overlay matches the summary's wake 74).
        Some(short) => overlay(data, segments(&short, zone, start, stages)?),
        None => data,
    };
    // `duration` is the time in bed; the segments end one 30-second epoch after it (sleepcare:
    // endTime − startTime = 27150 s, duration = 27120 s = timeInBed 452 min, README fact 2),
    // and the summary's stage minutes add up to `duration`, so the overhang is cut off.
    let in_bed_secs = duration_ms / 1000;
    clip(&mut segments, start, start + Duration::seconds(in_bed_secs));

    Ok(Session {
        source: Source::Fitbit,
        device: None,
        record_ids: vec![log_id],
        kind: if main {
            SessionKind::Main
        } else {
            SessionKind::Nap
        },
        start,
        end,
        in_bed_secs: Some(in_bed_secs),
        source_day: Some(day),
        segments,
        stated: None,
    })
}

fn wall(at: &At<'_>) -> Result<NaiveDateTime, ParseError> {
    let s = at.str()?;
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").map_err(|_| {
        at.error(format!(
            "{s:?} is not a local time like 2023-04-29T03:29:00.000"
        ))
    })
}

fn segments(
    list: &At<'_>,
    zone: Tz,
    start: DateTime<FixedOffset>,
    stages: bool,
) -> Result<Vec<Segment>, ParseError> {
    let mut out = Vec::new();
    let mut previous = start;
    for item in list.items()? {
        let level_at = item.field("level")?;
        let stage = match (stages, level_at.str()?) {
            (true, "deep") => Stage::Deep,
            (true, "light") => Stage::Light,
            (true, "rem") => Stage::Rem,
            (true, "wake") => Stage::Awake,
            (false, "asleep") => Stage::Asleep,
            // Classic logs: restless and awake are both not asleep (Fitbit's own
            // minutesAsleep leaves them out: shimmer main sleep 112 of 118 min).
            (false, "restless" | "awake") => Stage::Awake,
            (_, other) => {
                return Err(level_at.error(format!(
                    "unknown level {other:?} for a {} log",
                    if stages { "stages" } else { "classic" }
                )));
            }
        };
        let at = resolve_wall(wall(&item.field("dateTime")?)?, zone, Some(previous));
        let secs = item.field("seconds")?.at_most(DAY_SECS)?;
        previous = at;
        if secs == 0 {
            continue;
        }
        out.push(Segment {
            stage,
            start: at.to_utc(),
            end: (at + Duration::seconds(secs)).to_utc(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Stage;
    use crate::parse::stage_secs;

    const SHIMMER: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/realdata/fitbit/shimmer-fitbit-sleep-date-classic-with-nap.json"
    ));
    const SLEEPCARE: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/realdata/fitbit/sleepcare-fitbit-sleep-list-v1.2-stages.json"
    ));
    const ZONE: Tz = chrono_tz::America::New_York;

    #[test]
    fn classic_nap_is_parsed_as_its_own_nap_session() {
        let sessions = fitbit(SHIMMER, ZONE).unwrap();
        assert_eq!(sessions.len(), 2);
        let main = &sessions[0];
        assert_eq!(main.kind, SessionKind::Main);
        assert_eq!(main.record_ids, vec!["13211507000"]);
        assert_eq!(main.start.to_rfc3339(), "2016-12-13T01:16:00-05:00");
        assert_eq!(main.end.to_rfc3339(), "2016-12-13T03:14:00-05:00");
        let secs = stage_secs(main);
        assert_eq!(secs[&Stage::Asleep], 112 * 60);
        assert_eq!(secs[&Stage::Awake], 6 * 60);
        let nap = &sessions[1];
        assert_eq!(nap.kind, SessionKind::Nap);
        assert_eq!(nap.record_ids, vec!["13214029456"]);
        assert_eq!(stage_secs(nap)[&Stage::Asleep], 63 * 60);
        assert_eq!(nap.source_day, NaiveDate::from_ymd_opt(2016, 12, 13));
    }

    #[test]
    fn short_wakes_replace_the_stage_they_overlap() {
        let sessions = fitbit(SLEEPCARE, ZONE).unwrap();
        assert_eq!(sessions.len(), 1);
        let s = &sessions[0];
        let secs = stage_secs(s);
        // The file's own levels.summary: deep 82, light 226, rem 70, wake 74 minutes.
        assert_eq!(secs[&Stage::Deep], 82 * 60);
        assert_eq!(secs[&Stage::Light], 226 * 60);
        assert_eq!(secs[&Stage::Rem], 70 * 60);
        assert_eq!(secs[&Stage::Awake], 74 * 60);
        assert_eq!(s.in_bed_secs, Some(452 * 60));
        assert_eq!(s.start.to_rfc3339(), "2023-04-29T03:29:00-04:00");
        let mut segs = s.segments.clone();
        segs.sort_by_key(|g| g.start);
        assert!(
            segs.windows(2).all(|w| w[0].end <= w[1].start),
            "no overlaps left"
        );
    }

    #[test]
    fn local_times_are_read_in_the_users_zone() {
        let berlin = fitbit(SLEEPCARE, chrono_tz::Europe::Berlin).unwrap();
        assert_eq!(berlin[0].start.to_rfc3339(), "2023-04-29T03:29:00+02:00");
        let ny = fitbit(SLEEPCARE, ZONE).unwrap();
        assert_eq!((ny[0].start - berlin[0].start).num_hours(), 6);
    }

    #[test]
    fn a_night_across_the_autumn_change_is_measured_from_instants() {
        // 01:30 → 01:10 wall time is 40 minutes, across the repeated 01:00 hour in New York.
        let body = br#"{"sleep":[{"logId":1,"isMainSleep":true,"type":"classic",
            "dateOfSleep":"2024-11-03","startTime":"2024-11-03T01:30:00.000",
            "endTime":"2024-11-03T01:10:00.000","duration":2400000,
            "levels":{"data":[{"dateTime":"2024-11-03T01:30:00.000","level":"asleep","seconds":2400}]}}]}"#;
        let s = &fitbit(body, ZONE).unwrap()[0];
        assert_eq!(s.start.to_rfc3339(), "2024-11-03T01:30:00-04:00");
        assert_eq!(s.end.to_rfc3339(), "2024-11-03T01:10:00-05:00");
        assert_eq!((s.end - s.start).num_minutes(), 40);
    }

    #[test]
    fn a_wrong_field_is_named_by_its_json_path() {
        let body = br#"{"sleep":[{"logId":1,"isMainSleep":true,"type":"stages",
            "dateOfSleep":"2024-01-01","startTime":"2024-01-01T01:00:00.000",
            "endTime":"2024-01-01T02:00:00.000","duration":3600000,
            "levels":{"data":[{"dateTime":"2024-01-01T01:00:00.000","level":"light","seconds":"60"}]}}]}"#;
        let err = fitbit(body, ZONE).unwrap_err();
        assert_eq!(
            err.location.as_deref(),
            Some("sleep[0].levels.data[0].seconds")
        );
        assert!(
            err.message.contains("expected an integer"),
            "{}",
            err.message
        );

        let err = fitbit(br#"{"summary":{}}"#, ZONE).unwrap_err();
        assert_eq!(err.location.as_deref(), Some("sleep"));
        let err = fitbit(b"{\"sleep\": [", ZONE).unwrap_err();
        assert!(err.message.starts_with("not valid JSON"), "{}", err.message);
    }
}
