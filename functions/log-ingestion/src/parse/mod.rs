//! Parsers, one per source format. Each turns one uploaded file into [`Session`]s or rejects
//! the whole file; none of them keys nights or merges sources (that is `merge`).

mod apple;
mod fitbit;
mod oura;

pub use apple::apple_health;
pub use fitbit::fitbit;
pub use oura::oura;

use chrono::{DateTime, Duration, FixedOffset, LocalResult, NaiveDateTime, Offset, TimeZone};
use chrono_tz::Tz;
use serde_json::Value;

use crate::model::{ParseError, Segment};
#[cfg(test)]
use crate::model::{Session, Stage};

/// Wall time without an offset, resolved in the user's zone.
///
/// A repeated hour (autumn DST change) takes the earliest reading that is not before
/// `not_before`, so a series of wall times stays in order across the change. A skipped hour
/// (spring) cannot be a real reading; the device clock had not jumped yet, so it is read with
/// the offset before the change.
fn resolve_wall(
    naive: NaiveDateTime,
    zone: Tz,
    not_before: Option<DateTime<FixedOffset>>,
) -> DateTime<FixedOffset> {
    let fix = |dt: DateTime<Tz>| dt.with_timezone(&dt.offset().fix());
    match zone.from_local_datetime(&naive) {
        LocalResult::Single(dt) => fix(dt),
        LocalResult::Ambiguous(early, late) => match not_before {
            Some(floor) if early < floor => fix(late),
            _ => fix(early),
        },
        LocalResult::None => {
            let before = zone
                .offset_from_utc_datetime(&(naive - Duration::hours(12)))
                .fix();
            before
                .from_local_datetime(&naive)
                .single()
                .unwrap_or_else(|| fix(zone.from_utc_datetime(&naive)))
        }
    }
}

/// JSON access that names the path of whatever is missing or wrong.
struct At<'a> {
    value: &'a Value,
    path: String,
}

impl<'a> At<'a> {
    fn root(value: &'a Value) -> Self {
        Self {
            value,
            path: String::new(),
        }
    }

    fn error(&self, what: impl std::fmt::Display) -> ParseError {
        let path = if self.path.is_empty() {
            "$".to_owned()
        } else {
            self.path.clone()
        };
        ParseError::new(format!("{path}: {what}"), Some(path))
    }

    fn get(&self, key: &str) -> Option<At<'a>> {
        let value = self.value.get(key)?;
        if value.is_null() {
            return None;
        }
        let path = if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        };
        Some(At { value, path })
    }

    fn field(&self, key: &str) -> Result<At<'a>, ParseError> {
        if !self.value.is_object() {
            return Err(self.error("expected an object"));
        }
        self.get(key).ok_or_else(|| {
            let path = if self.path.is_empty() {
                key.to_owned()
            } else {
                format!("{}.{key}", self.path)
            };
            ParseError::new(format!("{path}: missing"), Some(path))
        })
    }

    fn items(&self) -> Result<Vec<At<'a>>, ParseError> {
        let array = self
            .value
            .as_array()
            .ok_or_else(|| self.error("expected an array"))?;
        Ok(array
            .iter()
            .enumerate()
            .map(|(i, value)| At {
                value,
                path: format!("{}[{i}]", self.path),
            })
            .collect())
    }

    fn str(&self) -> Result<&'a str, ParseError> {
        self.value
            .as_str()
            .ok_or_else(|| self.error("expected a string"))
    }

    fn i64(&self) -> Result<i64, ParseError> {
        self.value
            .as_i64()
            .ok_or_else(|| self.error("expected an integer"))
    }

    fn non_negative(&self) -> Result<i64, ParseError> {
        let n = self.i64()?;
        if n < 0 {
            return Err(self.error(format!("{n} is negative")));
        }
        Ok(n)
    }

    /// A non-negative number no larger than `max`: device periods longer than a day are not
    /// sleep, and bounding them keeps the time arithmetic in range.
    fn at_most(&self, max: i64) -> Result<i64, ParseError> {
        let n = self.non_negative()?;
        if n > max {
            return Err(self.error(format!("{n} is larger than {max}")));
        }
        Ok(n)
    }

    fn bool(&self) -> Result<bool, ParseError> {
        self.value
            .as_bool()
            .ok_or_else(|| self.error("expected true or false"))
    }

    /// An id that a source sends as a number (Fitbit `logId`) or a string (Oura `id`).
    fn id(&self) -> Result<String, ParseError> {
        match self.value {
            Value::String(s) if !s.is_empty() => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            _ => Err(self.error("expected an id")),
        }
    }
}

fn json(bytes: &[u8]) -> Result<Value, ParseError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ParseError::new(
            format!("not valid JSON: {e}"),
            Some(format!("line {} column {}", e.line(), e.column())),
        )
    })
}

/// Cuts every segment to `[start, end)` and drops what is left empty.
fn clip(segments: &mut Vec<Segment>, start: DateTime<FixedOffset>, end: DateTime<FixedOffset>) {
    let (start, end) = (start.to_utc(), end.to_utc());
    segments.retain_mut(|s| {
        s.start = s.start.max(start);
        s.end = s.end.min(end);
        s.start < s.end
    });
}

/// Lays `over` on `under`: where they overlap, `over` replaces `under` (nothing is counted
/// twice). Both must be free of overlaps among themselves.
fn overlay(under: Vec<Segment>, over: Vec<Segment>) -> Vec<Segment> {
    let mut out = Vec::with_capacity(under.len() + 2 * over.len());
    for seg in under {
        let mut pieces = vec![seg];
        for cut in &over {
            pieces = pieces
                .into_iter()
                .flat_map(|p| {
                    if cut.end <= p.start || cut.start >= p.end {
                        return vec![p];
                    }
                    let mut rest = Vec::with_capacity(2);
                    if p.start < cut.start {
                        rest.push(Segment {
                            end: cut.start,
                            ..p
                        });
                    }
                    if cut.end < p.end {
                        rest.push(Segment {
                            start: cut.end,
                            ..p
                        });
                    }
                    rest
                })
                .collect();
        }
        out.extend(pieces);
    }
    out.extend(over);
    out.sort_by_key(|s| (s.start, s.end, s.stage));
    out
}

/// Seconds per stage of segments that do not overlap.
#[cfg(test)]
fn stage_secs(session: &Session) -> std::collections::BTreeMap<Stage, i64> {
    let mut out = std::collections::BTreeMap::new();
    for s in &session.segments {
        *out.entry(s.stage).or_insert(0) += (s.end - s.start).num_seconds();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn wall(d: u32, h: u32, m: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(2024, 10, d)
            .unwrap()
            .and_hms_opt(h, m, 0)
            .unwrap()
    }

    #[test]
    fn a_repeated_hour_is_read_in_order() {
        let zone = chrono_tz::Europe::Berlin;
        let first = resolve_wall(wall(27, 2, 30), zone, None);
        assert_eq!(first.to_rfc3339(), "2024-10-27T02:30:00+02:00");
        let second = resolve_wall(wall(27, 2, 10), zone, Some(first));
        assert_eq!(second.to_rfc3339(), "2024-10-27T02:10:00+01:00");
    }

    #[test]
    fn a_skipped_hour_is_read_with_the_offset_before_the_change() {
        let zone = chrono_tz::Europe::Berlin;
        let t = NaiveDate::from_ymd_opt(2025, 3, 30)
            .unwrap()
            .and_hms_opt(2, 30, 0)
            .unwrap();
        assert_eq!(
            resolve_wall(t, zone, None).to_rfc3339(),
            "2025-03-30T02:30:00+01:00"
        );
    }

    #[test]
    fn an_overlay_replaces_the_part_it_covers() {
        let t = |m: i64| DateTime::UNIX_EPOCH + Duration::minutes(m);
        let under = vec![Segment {
            stage: Stage::Light,
            start: t(0),
            end: t(60),
        }];
        let over = vec![Segment {
            stage: Stage::Awake,
            start: t(10),
            end: t(15),
        }];
        let got = overlay(under, over);
        let spans: Vec<_> = got
            .iter()
            .map(|s| {
                (
                    s.stage,
                    (s.start - t(0)).num_minutes(),
                    (s.end - t(0)).num_minutes(),
                )
            })
            .collect();
        assert_eq!(
            spans,
            vec![
                (Stage::Light, 0, 10),
                (Stage::Awake, 10, 15),
                (Stage::Light, 15, 60)
            ]
        );
    }
}
