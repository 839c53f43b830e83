//! Weekly aggregation of nights (REFERENCE §2.6) and the chain of prescriptions.

use chrono::{Datelike, NaiveDate, NaiveTime, Timelike};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::titration::{self, Change, Params};

/// One night as the analysis sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NightRow {
    /// Night key.
    pub night: NaiveDate,
    /// `diary` or `device`.
    pub source: String,
    /// Local clock time of the final awakening.
    pub final_local: NaiveTime,
    /// Time in bed, minutes (from instants, as the producer computed it).
    pub tib_min: i64,
    /// Total sleep time, minutes.
    pub tst_min: i64,
    /// SOL, diary only.
    pub sol_min: Option<i64>,
    /// WASO, diary only.
    pub waso_min: Option<i64>,
}

/// The analysis of one week and the window it prescribes for the next.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WeekResult {
    /// Monday of the ISO week the nights fall in.
    pub week_start: NaiveDate,
    /// Parameter set used.
    pub params_version: &'static str,
    /// Nights logged.
    pub nights: usize,
    /// Mean TIB, minutes.
    pub tib_mean_min: i64,
    /// Mean TST, minutes.
    pub tst_mean_min: i64,
    /// SE as ratio of sums ΣTST ÷ ΣTIB × 100 (weights nights by length), one decimal.
    pub se_pct: f64,
    /// Mean SOL over diary nights.
    pub sol_mean_min: Option<i64>,
    /// Mean WASO over diary nights.
    pub waso_mean_min: Option<i64>,
    /// What titration decided.
    pub change: Change,
    /// Why.
    pub reason: String,
    /// The prescribed window, once there is one.
    pub window_min: Option<i64>,
    /// Prescribed bedtime (wake time − window), local clock.
    pub bedtime: Option<String>,
    /// Fixed wake time, from the baseline week.
    pub wake_time: Option<String>,
    /// Hash of everything the result depends on; equal inputs give equal fingerprints.
    pub fingerprint: String,
}

/// Monday of the ISO week of `d`.
pub fn week_of(d: NaiveDate) -> NaiveDate {
    d - chrono::Duration::days(i64::from(d.weekday().num_days_from_monday()))
}

fn round_to_quarter(t: NaiveTime) -> NaiveTime {
    let mins = (t.hour() * 60 + t.minute()) as i64;
    let q = ((mins + 7) / 15 * 15) % (24 * 60);
    NaiveTime::from_hms_opt((q / 60) as u32, (q % 60) as u32, 0).unwrap_or_default()
}

fn minus_minutes(t: NaiveTime, m: i64) -> NaiveTime {
    let total = (i64::from(t.hour()) * 60 + i64::from(t.minute()) - m).rem_euclid(24 * 60);
    NaiveTime::from_hms_opt((total / 60) as u32, (total % 60) as u32, 0).unwrap_or_default()
}

/// Analyses every week in order. Per night the diary wins over device data (CBT-I titration is
/// defined on the sleep diary); device nights fill nights without a diary entry.
pub fn analyse(rows: &[NightRow], p: &Params) -> Vec<WeekResult> {
    let mut by_night: std::collections::BTreeMap<NaiveDate, &NightRow> =
        std::collections::BTreeMap::new();
    for r in rows {
        match by_night.get(&r.night) {
            Some(existing) if existing.source == "diary" => {}
            _ => {
                by_night.insert(r.night, r);
            }
        }
    }
    let mut weeks: std::collections::BTreeMap<NaiveDate, Vec<&NightRow>> =
        std::collections::BTreeMap::new();
    for (night, r) in by_night {
        weeks.entry(week_of(night)).or_default().push(r);
    }
    let mut out = Vec::new();
    let mut window: Option<i64> = None;
    let mut wake: Option<NaiveTime> = None;
    for (week_start, nights) in weeks {
        let n = nights.len();
        let tib: i64 = nights.iter().map(|r| r.tib_min).sum();
        let tst: i64 = nights.iter().map(|r| r.tst_min).sum();
        let se = if tib > 0 {
            (tst as f64 / tib as f64 * 1000.0).round() / 10.0
        } else {
            0.0
        };
        let mean = |v: Vec<i64>| {
            if v.is_empty() {
                None
            } else {
                Some((v.iter().sum::<i64>() as f64 / v.len() as f64).round() as i64)
            }
        };
        let sol = mean(nights.iter().filter_map(|r| r.sol_min).collect());
        let waso = mean(nights.iter().filter_map(|r| r.waso_min).collect());
        let tst_mean = (tst as f64 / n as f64).round() as i64;
        let previous = window;
        let decision = match window {
            None => titration::initial(tst_mean, n, p).inspect(|_| {
                let mut times: Vec<NaiveTime> = nights.iter().map(|r| r.final_local).collect();
                times.sort();
                wake = Some(round_to_quarter(times[times.len() / 2]));
            }),
            Some(w) => Some(titration::titrate(w, se, n, p)),
        };
        let (change, reason) = match &decision {
            Some(d) => {
                window = Some(d.window_min);
                (d.change, d.reason.clone())
            }
            None => (
                Change::InsufficientData,
                format!(
                    "only {} in the baseline week; at least {} are needed",
                    titration::nights_text(n),
                    p.min_nights
                ),
            ),
        };
        let mut h = Sha256::new();
        h.update(p.version);
        h.update(format!("{previous:?}"));
        for r in &nights {
            h.update(format!(
                "{}|{}|{}|{}|{:?}|{:?}|{}",
                r.night, r.source, r.tib_min, r.tst_min, r.sol_min, r.waso_min, r.final_local
            ));
        }
        let fingerprint: String = h
            .finalize()
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect();
        out.push(WeekResult {
            week_start,
            params_version: p.version,
            nights: n,
            tib_mean_min: (tib as f64 / n as f64).round() as i64,
            tst_mean_min: tst_mean,
            se_pct: se,
            sol_mean_min: sol,
            waso_mean_min: waso,
            change,
            reason,
            window_min: window,
            bedtime: window
                .zip(wake)
                .map(|(w, t)| minus_minutes(t, w).format("%H:%M").to_string()),
            wake_time: window.and(wake).map(|t| t.format("%H:%M").to_string()),
            fingerprint,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::titration::PROFILE_S;

    fn night(d: &str, tib: i64, tst: i64) -> NightRow {
        NightRow {
            night: d.parse().unwrap(),
            source: "diary".into(),
            final_local: NaiveTime::from_hms_opt(6, 28, 0).unwrap(),
            tib_min: tib,
            tst_min: tst,
            sol_min: Some(20),
            waso_min: Some(15),
        }
    }

    #[test]
    fn weekly_se_is_the_ratio_of_sums() {
        // REFERENCE §2.6: (480, 240) and (360, 350) → 70.2 % (the mean of SEs would say 73.6 %).
        let r = analyse(
            &[night("2025-03-03", 480, 240), night("2025-03-04", 360, 350)],
            &PROFILE_S,
        );
        assert_eq!(r[0].se_pct, 70.2);
        assert_eq!(r[0].change, Change::InsufficientData);
    }

    #[test]
    fn a_baseline_week_prescribes_then_the_next_week_titrates() {
        let mut rows: Vec<NightRow> = (3..=9)
            .map(|d| night(&format!("2025-03-{d:02}"), 420, 340))
            .collect();
        // The DST week: the diary's numbers come from instants (N2: TIB 420, TST 340 on 03-30).
        rows.extend((24..=30).map(|d| night(&format!("2025-03-{d:02}"), 420, 400)));
        let r = analyse(&rows, &PROFILE_S);
        assert_eq!(r[0].window_min, Some(340));
        assert_eq!(r[0].wake_time.as_deref(), Some("06:30"));
        assert_eq!(r[0].bedtime.as_deref(), Some("00:50"));
        assert_eq!(r[1].se_pct, 95.2);
        assert_eq!(
            (r[1].change, r[1].window_min),
            (Change::Increase, Some(355))
        );
        assert_eq!(r[1].week_start, "2025-03-24".parse::<NaiveDate>().unwrap());
        // Same input, same fingerprints.
        assert_eq!(analyse(&rows, &PROFILE_S), r);
    }

    #[test]
    fn the_diary_wins_over_device_data_for_the_same_night() {
        let mut device = night("2025-03-03", 500, 480);
        device.source = "device".into();
        let r = analyse(&[device, night("2025-03-03", 420, 340)], &PROFILE_S);
        assert_eq!((r[0].nights, r[0].tst_mean_min), (1, 340));
    }
}
