//! Apple Health `export.xml`, read as a stream: only `HKCategoryTypeIdentifierSleepAnalysis`
//! records are kept, everything else is passed over without allocating, so memory does not grow
//! with the file (an export of several years is gigabytes of heart-rate and step samples).

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, NaiveDateTime};
use chrono_tz::Tz;
use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use sha2::{Digest, Sha256};

use super::resolve_wall;
use crate::merge::asleep_secs;
use crate::model::{ParseError, Segment, Session, SessionKind, Source, Stage};

const SLEEP_TYPE: &[u8] = b"HKCategoryTypeIdentifierSleepAnalysis";

/// Records of one source further apart than this are separate sessions. The gap is between
/// records, and a watch fills the night with InBed/Awake/stage records, so a gap means nobody
/// was measured in bed; two hours keep an evening nap apart from the night after it, and
/// keep the night of the sample files in one piece (hydawo: InBed until 23:00, Core from 00:00).
const SESSION_GAP: Duration = Duration::hours(2);

struct Record {
    id: String,
    source: String,
    stage: Stage,
    start: DateTime<FixedOffset>,
    end: DateTime<FixedOffset>,
}

/// Parses an Apple Health export, streamed.
///
/// Sessions: per `sourceName` (the device), records sorted by start, split where more than two
/// hours pass without a record. Of the sessions of one source that end on the same local date
/// (the night key), the one with the most sleep is the main sleep and the others are naps.
/// Timestamps carry their offset (`2026-03-05 02:00:00 -0500`); `zone` is used only for one
/// without. The file must be well formed up to `</HealthData>`: a cut-off export is rejected
/// whole, never half read.
pub fn apple_health<R: BufRead>(reader: R, zone: Tz) -> Result<Vec<Session>, ParseError> {
    let mut xml = Reader::from_reader(reader);
    let mut buf = Vec::with_capacity(4096);
    let mut depth = 0usize;
    let mut root_closed = false;
    let mut records: BTreeMap<String, Record> = BTreeMap::new();

    loop {
        let event = xml.read_event_into(&mut buf).map_err(|e| {
            ParseError::new(
                format!("not a well-formed Apple Health export: {e}"),
                Some(format!("byte {}", xml.error_position())),
            )
        })?;
        match &event {
            Event::Start(e) | Event::Empty(e) => {
                if depth == 0 {
                    root(e, &xml)?;
                }
                if matches!(event, Event::Start(_)) {
                    depth += 1;
                } else if depth == 0 {
                    root_closed = true;
                }
                if e.name().as_ref() == b"Record" {
                    let found = sleep_record(e, zone).map_err(|message| {
                        ParseError::new(message, Some(format!("byte {}", xml.buffer_position())))
                    })?;
                    if let Some(r) = found {
                        // The same record twice (exports merged by hand, a part sent again)
                        // counts once.
                        records.entry(r.id.clone()).or_insert(r);
                    }
                }
            }
            Event::End(_) => {
                // quick-xml rejects an end tag without its start, so depth never goes below 0.
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    root_closed = true;
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if !root_closed {
        return Err(ParseError::new(
            "the export ends before </HealthData>: the file is incomplete (cut off during upload or export?)",
            Some(format!("byte {}", xml.buffer_position())),
        ));
    }
    Ok(sessions(records.into_values()))
}

fn root<R>(e: &BytesStart<'_>, xml: &Reader<R>) -> Result<(), ParseError> {
    if e.name().as_ref() == b"HealthData" {
        return Ok(());
    }
    Err(ParseError::new(
        format!(
            "not an Apple Health export: the root element is <{}>, not <HealthData>",
            String::from_utf8_lossy(e.name().as_ref())
        ),
        Some(format!("byte {}", xml.buffer_position())),
    ))
}

/// The record if it is a sleep record; `Err` with a message if it is a broken one.
fn sleep_record(e: &BytesStart<'_>, zone: Tz) -> Result<Option<Record>, String> {
    let mut attrs = e.attributes();
    attrs.with_checks(false);
    let mut is_sleep = false;
    let (mut source, mut start, mut end, mut value) = (None, None, None, None);
    for attr in attrs {
        let attr = attr.map_err(|e| format!("broken attribute in <Record>: {e}"))?;
        match attr.key.as_ref() {
            // Apple writes `type` first: everything that is not sleep stops here.
            b"type" if attr.value.as_ref() != SLEEP_TYPE => return Ok(None),
            b"type" => is_sleep = true,
            b"sourceName" => source = Some(attr.unescape_value().map_err(|e| e.to_string())?),
            b"startDate" => start = Some(attr.unescape_value().map_err(|e| e.to_string())?),
            b"endDate" => end = Some(attr.unescape_value().map_err(|e| e.to_string())?),
            b"value" => value = Some(attr.unescape_value().map_err(|e| e.to_string())?),
            _ => {}
        }
    }
    if !is_sleep {
        return Ok(None);
    }
    let missing = |name| format!("sleep <Record> without {name}");
    let source = source.ok_or_else(|| missing("sourceName"))?;
    let start_raw = start.ok_or_else(|| missing("startDate"))?;
    let end_raw = end.ok_or_else(|| missing("endDate"))?;
    let value = value.ok_or_else(|| missing("value"))?;

    let stage = match value.as_ref() {
        "HKCategoryValueSleepAnalysisInBed" => Stage::InBed,
        // `Asleep` until iOS 15, `AsleepUnspecified` since iOS 16 (third-party apps such as
        // AutoSleep write it, grll sample).
        "HKCategoryValueSleepAnalysisAsleep" | "HKCategoryValueSleepAnalysisAsleepUnspecified" => {
            Stage::Asleep
        }
        "HKCategoryValueSleepAnalysisAsleepCore" => Stage::Light,
        "HKCategoryValueSleepAnalysisAsleepDeep" => Stage::Deep,
        "HKCategoryValueSleepAnalysisAsleepREM" => Stage::Rem,
        "HKCategoryValueSleepAnalysisAwake" => Stage::Awake,
        other => return Err(format!("unknown sleep value {other:?}")),
    };
    let start = timestamp(&start_raw, zone, None)?;
    let end = timestamp(&end_raw, zone, Some(start))?;
    if end < start {
        return Err(format!(
            "sleep record ends ({end_raw}) before it starts ({start_raw})"
        ));
    }
    if end == start {
        return Ok(None);
    }

    // Apple gives sleep records no id; this hash is stable across exports of the same data,
    // so importing a file again finds the same ids.
    let mut hash = Sha256::new();
    for part in [
        SLEEP_TYPE,
        source.as_bytes(),
        start_raw.as_bytes(),
        end_raw.as_bytes(),
        value.as_bytes(),
    ] {
        hash.update(part);
        hash.update([0x1f]);
    }
    let id = hash
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();

    Ok(Some(Record {
        id,
        source: source.into_owned(),
        stage,
        start,
        end,
    }))
}

fn timestamp(
    raw: &str,
    zone: Tz,
    not_before: Option<DateTime<FixedOffset>>,
) -> Result<DateTime<FixedOffset>, String> {
    if let Ok(t) = DateTime::parse_from_str(raw, "%Y-%m-%d %H:%M:%S %z") {
        return Ok(t);
    }
    NaiveDateTime::parse_from_str(raw, "%Y-%m-%d %H:%M:%S")
        .map(|naive| resolve_wall(naive, zone, not_before))
        .map_err(|_| format!("{raw:?} is not a time like 2026-03-05 02:00:00 -0500"))
}

fn sessions(records: impl Iterator<Item = Record>) -> Vec<Session> {
    let mut by_source: BTreeMap<String, Vec<Record>> = BTreeMap::new();
    for r in records {
        by_source.entry(r.source.clone()).or_default().push(r);
    }
    let mut out = Vec::new();
    for (source, mut records) in by_source {
        records.sort_by(|a, b| (a.start, a.end, &a.id).cmp(&(b.start, b.end, &b.id)));
        let mut clusters: Vec<Vec<Record>> = Vec::new();
        for r in records {
            match clusters.last_mut() {
                Some(c) if r.start <= latest_end(c) + SESSION_GAP => c.push(r),
                _ => clusters.push(vec![r]),
            }
        }
        let mut sessions: Vec<Session> =
            clusters.into_iter().map(|c| session(&source, c)).collect();

        let mut best: HashMap<NaiveDate, usize> = HashMap::new();
        for (i, s) in sessions.iter().enumerate() {
            let key = s.end.date_naive();
            let rank = |s: &Session| (asleep_secs(&s.segments), s.end - s.start);
            match best.get(&key) {
                Some(&j) if rank(&sessions[j]) >= rank(s) => {}
                _ => {
                    best.insert(key, i);
                }
            }
        }
        for (i, s) in sessions.iter_mut().enumerate() {
            if best.get(&s.end.date_naive()) != Some(&i) {
                s.kind = SessionKind::Nap;
            }
        }
        out.extend(sessions);
    }
    out.sort_by(|a, b| (a.start, &a.device).cmp(&(b.start, &b.device)));
    out
}

fn latest_end(records: &[Record]) -> DateTime<FixedOffset> {
    records
        .iter()
        .map(|r| r.end)
        .max_by_key(|t| t.to_utc())
        .expect("a cluster is never empty")
}

fn session(source: &str, records: Vec<Record>) -> Session {
    let start = records[0].start;
    let end = latest_end(&records);
    let mut record_ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
    record_ids.sort();
    let segments = records
        .into_iter()
        .map(|r| Segment {
            stage: r.stage,
            start: r.start.to_utc(),
            end: r.end.to_utc(),
        })
        .collect();
    Session {
        source: Source::AppleHealth,
        device: Some(source.to_owned()),
        record_ids,
        kind: SessionKind::Main,
        start,
        end,
        in_bed_secs: None,
        source_day: None,
        segments,
        stated: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIR: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/realdata/apple-health/"
    );
    const ZONE: Tz = chrono_tz::America::New_York;

    fn file(name: &str) -> Result<Vec<Session>, ParseError> {
        let f = std::fs::File::open(format!("{DIR}{name}")).unwrap();
        apple_health(std::io::BufReader::new(f), ZONE)
    }

    fn record(source: &str, start: &str, end: &str, value: &str) -> String {
        format!(
            r#"<Record type="HKCategoryTypeIdentifierSleepAnalysis" sourceName="{source}" startDate="{start}" endDate="{end}" value="HKCategoryValueSleepAnalysis{value}"/>"#
        )
    }

    fn export(records: &[String]) -> Vec<Session> {
        let body = format!("<HealthData>{}</HealthData>", records.concat());
        apple_health(body.as_bytes(), ZONE).unwrap()
    }

    #[test]
    fn in_bed_and_asleep_of_one_night_form_one_session() {
        let sessions = file("resilio-sleep_with_inbed.xml").unwrap();
        assert_eq!(sessions.len(), 1);
        let s = &sessions[0];
        assert_eq!(s.kind, SessionKind::Main);
        assert_eq!(s.device.as_deref(), Some("Apple Watch"));
        assert_eq!(s.record_ids.len(), 2);
        assert!(s.record_ids.iter().all(|id| id.len() == 64));
        assert_eq!(s.start.to_rfc3339(), "2026-04-14T22:00:00+00:00");
        assert_eq!(s.end.to_rfc3339(), "2026-04-15T07:00:00+00:00");
        assert_eq!(asleep_secs(&s.segments), 7 * 3600);
    }

    #[test]
    fn a_truncated_export_is_rejected_with_its_position() {
        let err = file("resilio-truncated-INVALID-on-purpose.xml").unwrap_err();
        // The file ends inside the attributes of its first <Record>, which starts at byte 68.
        assert_eq!(err.location.as_deref(), Some("byte 68"));
        assert!(err.message.contains("tag not closed"), "{}", err.message);
    }

    #[test]
    fn an_export_without_its_closing_root_is_rejected() {
        let body = format!(
            "<HealthData>{}",
            record(
                "W",
                "2026-04-14 23:00:00 +0000",
                "2026-04-15 06:00:00 +0000",
                "Asleep"
            )
        );
        let err = apple_health(body.as_bytes(), ZONE).unwrap_err();
        assert!(err.message.contains("</HealthData>"), "{}", err.message);
        assert_eq!(
            err.location.as_deref(),
            Some(format!("byte {}", body.len()).as_str())
        );

        let err = apple_health(&b"<Other></Other>"[..], ZONE).unwrap_err();
        assert!(err.message.contains("<Other>"), "{}", err.message);
        let err = apple_health(&b"<HealthData><Record></HealthData>"[..], ZONE).unwrap_err();
        assert!(err.message.contains("well-formed"), "{}", err.message);
    }

    #[test]
    fn an_unknown_sleep_value_is_rejected() {
        let body = format!(
            "<HealthData>{}</HealthData>",
            record(
                "W",
                "2026-04-14 23:00:00 +0000",
                "2026-04-15 06:00:00 +0000",
                "Dozing"
            )
        );
        let err = apple_health(body.as_bytes(), ZONE).unwrap_err();
        assert!(
            err.message.contains("HKCategoryValueSleepAnalysisDozing"),
            "{}",
            err.message
        );
    }

    #[test]
    fn a_full_v14_dtd_and_a_night_across_midnight_parse() {
        let sessions = file("hydawo-export-v14-multisource-midnight-dst.xml").unwrap();
        // hydawo README: InBed 22:30–23:00 on 03-04, then Core 2 h, Deep 45 min, REM 45 min.
        assert_eq!(sessions.len(), 1);
        let s = &sessions[0];
        assert_eq!(s.device.as_deref(), Some("Fixture Watch"));
        assert_eq!(s.start.to_rfc3339(), "2026-03-04T22:30:00-05:00");
        assert_eq!(s.end.to_rfc3339(), "2026-03-05T03:30:00-05:00");
        assert_eq!(asleep_secs(&s.segments), 3 * 3600 + 30 * 60);
        assert_eq!(s.record_ids.len(), 4);
    }

    #[test]
    fn autosleep_records_are_the_only_sleep_in_the_grll_export() {
        let sessions = file("grll-export-autosleep-multisource.xml").unwrap();
        assert_eq!(sessions.len(), 1);
        let s = &sessions[0];
        assert_eq!(s.device.as_deref(), Some("AutoSleep"));
        assert_eq!(s.start.to_rfc3339(), "2020-07-08T01:05:06+01:00");
        assert_eq!(s.end.to_rfc3339(), "2020-07-08T08:30:00+01:00");
        // AsleepUnspecified 01:15–08:30 = 435 min; the wrist temperature of the Watch is not sleep.
        assert_eq!(asleep_secs(&s.segments), 435 * 60);
    }

    #[test]
    fn a_gap_of_more_than_two_hours_starts_a_new_session_and_the_shorter_is_a_nap() {
        let sessions = export(&[
            record(
                "W",
                "2026-04-14 23:00:00 +0200",
                "2026-04-15 06:00:00 +0200",
                "AsleepCore",
            ),
            record(
                "W",
                "2026-04-15 13:00:00 +0200",
                "2026-04-15 13:40:00 +0200",
                "AsleepCore",
            ),
            record(
                "W",
                "2026-04-15 08:00:00 +0200",
                "2026-04-15 08:01:00 +0200",
                "InBed",
            ),
        ]);
        let kinds: Vec<_> = sessions
            .iter()
            .map(|s| (s.kind, s.segments.len()))
            .collect();
        // 06:00 → 08:00 is exactly two hours: still the night.
        assert_eq!(kinds, vec![(SessionKind::Main, 2), (SessionKind::Nap, 1)]);
    }

    #[test]
    fn each_source_is_its_own_session() {
        let sessions = export(&[
            record(
                "Watch",
                "2026-04-14 23:00:00 +0200",
                "2026-04-15 06:00:00 +0200",
                "AsleepCore",
            ),
            record(
                "iPhone",
                "2026-04-14 22:30:00 +0200",
                "2026-04-15 06:30:00 +0200",
                "Asleep",
            ),
            record(
                "Watch",
                "2026-04-14 23:00:00 +0200",
                "2026-04-15 06:00:00 +0200",
                "AsleepCore",
            ),
        ]);
        let devices: Vec<_> = sessions
            .iter()
            .map(|s| (s.device.clone().unwrap(), s.kind, s.record_ids.len()))
            .collect();
        assert_eq!(
            devices,
            vec![
                ("iPhone".into(), SessionKind::Main, 1),
                ("Watch".into(), SessionKind::Main, 1)
            ]
        );
    }

    #[test]
    fn record_ids_are_the_same_on_every_import() {
        let a = file("resilio-sleep_ios16.xml").unwrap();
        let b = file("resilio-sleep_ios16.xml").unwrap();
        assert_eq!(a, b);
        assert_eq!(a[0].record_ids.len(), 4);
    }

    #[test]
    fn a_time_without_an_offset_is_read_in_the_users_zone() {
        let sessions = export(&[record(
            "W",
            "2026-04-14 23:00:00",
            "2026-04-15 06:00:00",
            "Asleep",
        )]);
        assert_eq!(sessions[0].start.to_rfc3339(), "2026-04-14T23:00:00-04:00");
    }
}
