//! CBT-I sleep-restriction titration (REFERENCE §2.7) as versioned, clinically signed-off
//! parameter sets, not constants: the sources disagree on thresholds and floors.

use serde::Serialize;

/// One parameter set. Its `version` is stored with every prescription it produced.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Params {
    /// Name and version, e.g. `S-2026-12`.
    pub version: &'static str,
    /// Shortest window in minutes (AASM 2021: 5 h; Spielman 1987: 4.5 h).
    pub floor_min: i64,
    /// Longest window in minutes.
    pub max_min: i64,
    /// Weekly SE (ratio of sums) at or above which the window grows.
    pub increase_if_se_gte: f64,
    /// Weekly SE below which the window shrinks; in between it holds.
    pub decrease_if_se_lt: f64,
    /// Step in minutes (15 in every source of §2.7).
    pub step_min: i64,
    /// Fewest nights with data in a week before any change (§2.6: 5 of 7); a night counts once,
    /// from the diary or, without a diary entry, from a device.
    pub min_nights: usize,
}

/// Profile S: floor 300, ≥ 90 % up, 85–< 90 % hold, < 85 % down (REFERENCE §2.7 vectors).
pub const PROFILE_S: Params = Params {
    version: "S-2026-12",
    floor_min: 300,
    max_min: 540,
    increase_if_se_gte: 90.0,
    decrease_if_se_lt: 85.0,
    step_min: 15,
    min_nights: 5,
};

/// Profile A (AASM-style): floor 300, ≥ 85 % up, 80–< 85 % hold, < 80 % down.
pub const PROFILE_A: Params = Params {
    version: "A-2026-12",
    floor_min: 300,
    max_min: 540,
    increase_if_se_gte: 85.0,
    decrease_if_se_lt: 80.0,
    step_min: 15,
    min_nights: 5,
};

/// The profile with this name (`S` or `A`).
pub fn profile(name: &str) -> Option<Params> {
    match name {
        "S" | "s" => Some(PROFILE_S),
        "A" | "a" => Some(PROFILE_A),
        _ => None,
    }
}

/// What a week's titration decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// First prescription, from the baseline's mean TST.
    Initial,
    /// Window grows by a step.
    Increase,
    /// Window stays.
    Hold,
    /// Window shrinks by a step.
    Decrease,
    /// Too few nights: no change.
    InsufficientData,
}

/// A decision with its reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The window for the coming week, minutes.
    pub window_min: i64,
    /// The change.
    pub change: Change,
    /// Why, in words a clinician reads.
    pub reason: String,
}

/// "1 night", "4 nights": the count with its noun for the reason texts.
pub fn nights_text(n: usize) -> String {
    if n == 1 {
        "1 night".to_owned()
    } else {
        format!("{n} nights")
    }
}

/// The first window: the baseline's mean TST, no shorter than the floor (T1, T2). Not rounded:
/// whether to round to 15 min is unverified (REFERENCE §2.7).
pub fn initial(mean_tst_min: i64, nights: usize, p: &Params) -> Option<Decision> {
    if nights < p.min_nights {
        return None;
    }
    let window = mean_tst_min.clamp(p.floor_min, p.max_min);
    let reason = if window == p.floor_min && mean_tst_min < p.floor_min {
        format!(
            "baseline mean TST {mean_tst_min} min is below the floor; window set to {} min",
            p.floor_min
        )
    } else {
        format!(
            "baseline mean TST {mean_tst_min} min over {}",
            nights_text(nights)
        )
    };
    Some(Decision {
        window_min: window,
        change: Change::Initial,
        reason,
    })
}

/// One weekly step from `window` given the week's SE (T3–T10).
pub fn titrate(window: i64, se_pct: f64, nights: usize, p: &Params) -> Decision {
    if nights < p.min_nights {
        return Decision {
            window_min: window,
            change: Change::InsufficientData,
            reason: format!(
                "only {} with sleep data (diary or device) this week; at least {} are needed before a change",
                nights_text(nights),
                p.min_nights
            ),
        };
    }
    if se_pct >= p.increase_if_se_gte {
        let next = (window + p.step_min).min(p.max_min);
        return Decision {
            window_min: next,
            change: if next > window {
                Change::Increase
            } else {
                Change::Hold
            },
            reason: format!("weekly SE {se_pct:.1} % ≥ {} %", p.increase_if_se_gte),
        };
    }
    if se_pct < p.decrease_if_se_lt {
        let next = (window - p.step_min).max(p.floor_min);
        return Decision {
            window_min: next,
            change: if next < window {
                Change::Decrease
            } else {
                Change::Hold
            },
            reason: if next < window {
                format!("weekly SE {se_pct:.1} % < {} %", p.decrease_if_se_lt)
            } else {
                format!(
                    "weekly SE {se_pct:.1} % < {} %, but the window is at the floor",
                    p.decrease_if_se_lt
                )
            },
        };
    }
    Decision {
        window_min: window,
        change: Change::Hold,
        reason: format!(
            "weekly SE {se_pct:.1} % between {} % and {} %",
            p.decrease_if_se_lt, p.increase_if_se_gte
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// REFERENCE §2.7 vectors T1–T10, both profiles.
    #[test]
    fn titration_vectors_hold_for_both_profiles() {
        for p in [PROFILE_S, PROFILE_A] {
            assert_eq!(initial(278, 7, &p).unwrap().window_min, 300, "T1");
            assert_eq!(initial(352, 7, &p).unwrap().window_min, 352, "T2");
        }
        let cases: [(&str, i64, f64, i64, i64); 7] = [
            ("T3", 330, 91.2, 345, 345),
            ("T4", 330, 90.0, 345, 345),
            ("T5", 330, 87.0, 330, 345),
            ("T6", 330, 85.0, 330, 345),
            ("T7", 330, 82.0, 315, 330),
            ("T8", 330, 78.0, 315, 315),
            ("T9", 300, 70.0, 300, 300),
        ];
        for (id, window, se, s, a) in cases {
            assert_eq!(
                titrate(window, se, 7, &PROFILE_S).window_min,
                s,
                "{id} profile S"
            );
            assert_eq!(
                titrate(window, se, 7, &PROFILE_A).window_min,
                a,
                "{id} profile A"
            );
        }
        let t10 = titrate(330, 95.0, 4, &PROFILE_S);
        assert_eq!(
            (t10.window_min, t10.change),
            (330, Change::InsufficientData),
            "T10"
        );
        assert_eq!(
            t10.reason,
            "only 4 nights with sleep data (diary or device) this week; at least 5 are needed before a change"
        );
        assert_eq!(
            titrate(330, 95.0, 1, &PROFILE_S).reason,
            "only 1 night with sleep data (diary or device) this week; at least 5 are needed before a change"
        );
        assert_eq!(
            initial(352, 7, &PROFILE_S).unwrap().reason,
            "baseline mean TST 352 min over 7 nights"
        );
        assert!(initial(352, 4, &PROFILE_S).is_none());
    }
}
