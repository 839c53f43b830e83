//! Pittsburgh Sleep Quality Index (Buysse et al., Psychiatry Res 1989;28:193) with the
//! canonical boundary rules of REFERENCE §1.2.6.
//!
//! Clock times may cross midnight; numbers are compared in exact integer units (milli-minutes,
//! micro-hours, seconds) so that boundaries such as HSE = 85.0 % never depend on float
//! rounding (REFERENCE §1.2.6: "compute HSE exactly, without rounding").

use crate::error::Problem;

use super::answers::{Answer, Answers};
use super::definition::{AnswerOption, Band, Definition, Instrument, Item, ItemKind, Measure};
use super::score::{FlagKind, Score};

/// Q5b–Q5i: always part of C5; Q5j follows the 2005 rule (REFERENCE §1.2.2).
const DISTURBANCES: [&str; 8] = [
    "psqi-5b", "psqi-5c", "psqi-5d", "psqi-5e", "psqi-5f", "psqi-5g", "psqi-5h", "psqi-5i",
];

const DAY_SECS: i64 = 86_400;

const fn opt(value: u8, display: &'static str) -> AnswerOption {
    AnswerOption {
        value,
        display,
        loinc: None,
    }
}

// Answer formats of REFERENCE §1.2.1.
const FREQUENCY: &[AnswerOption] = &[
    opt(0, "Not during the past month"),
    opt(1, "Less than once a week"),
    opt(2, "Once or twice a week"),
    opt(3, "Three or more times a week"),
];
const QUALITY: &[AnswerOption] = &[
    opt(0, "Very good"),
    opt(1, "Fairly good"),
    opt(2, "Fairly bad"),
    opt(3, "Very bad"),
];
const PROBLEM: &[AnswerOption] = &[
    opt(0, "No problem at all"),
    opt(1, "Only a very slight problem"),
    opt(2, "Somewhat of a problem"),
    opt(3, "A very big problem"),
];
const PARTNER: &[AnswerOption] = &[
    opt(0, "No bed partner or room mate"),
    opt(1, "Partner or room mate in other room"),
    opt(2, "Partner in same room, but not same bed"),
    opt(3, "Partner in same bed"),
];

const fn choice(
    link_id: &'static str,
    text: &'static str,
    options: &'static [AnswerOption],
    required: bool,
    scored: bool,
) -> Item {
    Item {
        link_id,
        text,
        kind: ItemKind::Choice(options),
        required,
        loinc: None,
        scored,
    }
}
const fn trouble(link_id: &'static str, text: &'static str) -> Item {
    choice(link_id, text, FREQUENCY, true, true)
}
const fn partner(link_id: &'static str, text: &'static str) -> Item {
    choice(link_id, text, FREQUENCY, false, false)
}

const fn component(code: &'static str, display: &'static str) -> Measure {
    Measure {
        code,
        display,
        loinc: None,
        min: 0.0,
        max: 3.0,
        unit: "{score}",
    }
}

/// C1–C7 (REFERENCE §1.2.2), then time in bed and habitual sleep efficiency as computed.
const COMPONENTS: &[Measure] = &[
    component("psqi-c1", "PSQI C1 subjective sleep quality"),
    component("psqi-c2", "PSQI C2 sleep latency"),
    component("psqi-c3", "PSQI C3 sleep duration"),
    component("psqi-c4", "PSQI C4 habitual sleep efficiency"),
    component("psqi-c5", "PSQI C5 sleep disturbances"),
    component("psqi-c6", "PSQI C6 use of sleeping medication"),
    component("psqi-c7", "PSQI C7 daytime dysfunction"),
    // A time in bed is under 24 h: Q1 == Q3 is rejected, not read as 24 h (REFERENCE §1.2.3).
    Measure {
        code: "psqi-tib",
        display: "PSQI time in bed (Q1 to Q3)",
        loinc: None,
        min: 0.0,
        max: 24.0,
        unit: "h",
    },
    // Q4 ÷ TIB × 100; above 100 only when Q4 > TIB, which is flagged (REFERENCE §1.2.3).
    Measure {
        code: "psqi-hse",
        display: "PSQI habitual sleep efficiency",
        loinc: None,
        min: 0.0,
        max: f64::INFINITY,
        unit: "%",
    },
];

pub static DEFINITION: Definition = Definition {
    instrument: Instrument::Psqi,
    id: "psqi-1",
    version: "1",
    name: "PSQI",
    title: "Pittsburgh Sleep Quality Index",
    recall_period: "the past month",
    source: "Buysse et al., Psychiatry Res 1989;28:193; canonical rules REFERENCE §1.2.6",
    loinc_panel: None, // REFERENCE §4.2: not found
    // Q1–Q9 self-rated; Q10 and 10a–e (partner) are not scored (REFERENCE §1.2.1).
    items: &[
        Item {
            link_id: "psqi-1",
            text: "During the past month, what time have you usually gone to bed at night?",
            kind: ItemKind::Time,
            required: true,
            loinc: None,
            scored: true,
        },
        // Up to a day; the form asks for minutes (REFERENCE §1.2.1), decimals accepted (§1.2.6).
        Item {
            link_id: "psqi-2",
            text: "During the past month, how long (in minutes) has it usually taken you to fall asleep each night?",
            kind: ItemKind::Decimal {
                min: 0.0,
                max: 1440.0,
                unit: "min",
            },
            required: true,
            loinc: None,
            scored: true,
        },
        Item {
            link_id: "psqi-3",
            text: "During the past month, what time have you usually gotten up in the morning?",
            kind: ItemKind::Time,
            required: true,
            loinc: None,
            scored: true,
        },
        Item {
            link_id: "psqi-4",
            text: "During the past month, how many hours of actual sleep did you get at night? (This may be different than the number of hours you spent in bed.)",
            kind: ItemKind::Decimal {
                min: 0.0,
                max: 24.0,
                unit: "h",
            },
            required: true,
            loinc: None,
            scored: true,
        },
        trouble("psqi-5a", "Cannot get to sleep within 30 minutes"),
        trouble(
            "psqi-5b",
            "Wake up in the middle of the night or early morning",
        ),
        trouble("psqi-5c", "Have to get up to use the bathroom"),
        trouble("psqi-5d", "Cannot breathe comfortably"),
        trouble("psqi-5e", "Cough or snore loudly"),
        trouble("psqi-5f", "Feel too cold"),
        trouble("psqi-5g", "Feel too hot"),
        trouble("psqi-5h", "Had bad dreams"),
        trouble("psqi-5i", "Have pain"),
        choice(
            "psqi-5j",
            "Other reason(s): how often during the past month have you had trouble sleeping because of this?",
            FREQUENCY,
            false,
            true,
        ),
        Item {
            link_id: "psqi-5j-comment",
            text: "Other reason(s), please describe",
            kind: ItemKind::Text,
            required: false,
            loinc: None,
            scored: true,
        },
        choice(
            "psqi-6",
            "During the past month, how would you rate your sleep quality overall?",
            QUALITY,
            true,
            true,
        ),
        choice(
            "psqi-7",
            "During the past month, how often have you taken medicine to help you sleep (prescribed or \"over the counter\")?",
            FREQUENCY,
            true,
            true,
        ),
        choice(
            "psqi-8",
            "During the past month, how often have you had trouble staying awake while driving, eating meals, or engaging in social activity?",
            FREQUENCY,
            true,
            true,
        ),
        choice(
            "psqi-9",
            "During the past month, how much of a problem has it been for you to keep up enough enthusiasm to get things done?",
            PROBLEM,
            true,
            true,
        ),
        choice(
            "psqi-10",
            "Do you have a bed partner or room mate?",
            PARTNER,
            false,
            false,
        ),
        partner("psqi-10a", "Partner reports: loud snoring"),
        partner(
            "psqi-10b",
            "Partner reports: long pauses between breaths while asleep",
        ),
        partner(
            "psqi-10c",
            "Partner reports: legs twitching or jerking while you sleep",
        ),
        partner(
            "psqi-10d",
            "Partner reports: episodes of disorientation or confusion during sleep",
        ),
        partner(
            "psqi-10e",
            "Partner reports: other restlessness while you sleep",
        ),
        Item {
            link_id: "psqi-10e-comment",
            text: "Other restlessness, please describe",
            kind: ItemKind::Text,
            required: false,
            loinc: None,
            scored: false,
        },
    ],
    // C1 + … + C7, 0–21 (REFERENCE §1.2.2).
    total: Measure {
        code: "psqi-global",
        display: "PSQI global score",
        loinc: None,
        min: 0.0,
        max: 21.0,
        unit: "{score}",
    },
    components: COMPONENTS,
    // Global > 5 = poor sleeper, as in Buysse 1989, not the "≥ 5" of secondary sources
    // (REFERENCE §1.2.2, §1.2.4).
    bands: &[
        Band {
            code: "psqi-good",
            display: "Good sleep quality",
            min: 0.0,
            max: 5.0,
        },
        Band {
            code: "psqi-poor",
            display: "Poor sleep quality (global above 5)",
            min: 6.0,
            max: 21.0,
        },
    ],
    algorithm: "psqi@1.0.0",
    scorer: score,
};

fn decimal(answers: &Answers, link_id: &str) -> Option<f64> {
    match answers.get(link_id) {
        Some(Answer::Decimal(v)) => Some(*v),
        _ => None,
    }
}

fn time(answers: &Answers, link_id: &str) -> Option<i64> {
    match answers.get(link_id) {
        Some(Answer::Time(secs)) => Some(i64::from(*secs)),
        _ => None,
    }
}

/// Sums of 0–6 → 0 / 1–2 → 1 / 3–4 → 2 / 5–6 → 3 (C2 and C7, REFERENCE §1.2.2).
fn pair_band(sum: u8) -> u8 {
    sum.div_ceil(2)
}

/// Q2 in milli-minutes → 0–3: `m ≤ 15 → 0; ≤ 30 → 1; ≤ 60 → 2; > 60 → 3` (REFERENCE §1.2.6;
/// LCBC puts exactly 15 in 1).
fn latency_band(milli_min: i64) -> u8 {
    if milli_min <= 15_000 {
        0
    } else if milli_min <= 30_000 {
        1
    } else if milli_min <= 60_000 {
        2
    } else {
        3
    }
}

/// Q4 in micro-hours → C3: `h > 7 → 0; 6 ≤ h ≤ 7 → 1; 5 ≤ h < 6 → 2; h < 5 → 3`
/// (REFERENCE §1.2.6: 7.0 → 1 and 6.0 → 1).
fn duration_band(micro_h: i64) -> u8 {
    match micro_h {
        7_000_001.. => 0,
        6_000_000.. => 1,
        5_000_000.. => 2,
        _ => 3,
    }
}

/// C4 from sleep (micro-hours) and time in bed (seconds), half-open bands
/// `[85, ∞) → 0; [75, 85) → 1; [65, 75) → 2; [0, 65) → 3` (REFERENCE §1.2.6), compared as
/// sleep × 3600 × 100 ≥ p × TIB × 10⁶.
fn efficiency_band(sleep_micro_h: i64, tib_secs: i64) -> u8 {
    let sleep = sleep_micro_h * 3600 * 100;
    let at = |percent: i64| percent * tib_secs * 1_000_000;
    if sleep >= at(85) {
        0
    } else if sleep >= at(75) {
        1
    } else if sleep >= at(65) {
        2
    } else {
        3
    }
}

/// Scores the seven components and the global score.
///
/// A component whose items are missing is missing, and then so is the global score (official
/// rule, no prorating: REFERENCE §1.2.2, §1.2.6). Q5j counts only with both its frequency and
/// its description, else as 0 (Buysse 2005 instruction, REFERENCE §1.2.2). Bed time == rise
/// time makes C4 missing; sleep longer than time in bed scores C4 0 with a warning
/// (REFERENCE §1.2.3).
pub fn score(answers: &Answers) -> Result<Score, Problem> {
    let q = |id: &str| answers.choice(id);
    // Input resolution: 1/1000 min and 1/10⁶ h (3.6 ms); finer digits carry no information.
    let latency = decimal(answers, "psqi-2").map(|m| (m * 1000.0).round() as i64);
    let sleep = decimal(answers, "psqi-4").map(|h| (h * 1_000_000.0).round() as i64);
    let mut flags: Vec<(&str, &str, String)> = Vec::new();

    let c1 = q("psqi-6");
    let c2 = match (latency, q("psqi-5a")) {
        (Some(m), Some(a)) => Some(pair_band(latency_band(m) + a)),
        _ => None,
    };
    let c3 = sleep.map(duration_band);

    let tib = match (time(answers, "psqi-1"), time(answers, "psqi-3")) {
        // Getting up "before" going to bed on the clock means the next day (REFERENCE §1.2.3).
        (Some(bed), Some(rise)) => Some((rise - bed).rem_euclid(DAY_SECS)),
        _ => None,
    };
    let mut hse = None;
    let c4 = match (sleep, tib) {
        (_, Some(0)) => {
            flags.push((
                "psqi-tib-zero",
                "psqi-3",
                "getting-up time equals bedtime: a time in bed of 0 cannot be scored, C4 and the global score are missing (REFERENCE §1.2.3)".into(),
            ));
            None
        }
        (Some(sleep), Some(tib)) => {
            let percent = sleep as f64 / 1e6 * 3600.0 / tib as f64 * 100.0;
            hse = Some(percent);
            if sleep * 3600 > tib * 1_000_000 {
                flags.push((
                    "psqi-hse-over-100",
                    "psqi-4",
                    format!(
                        "hours of sleep exceed the time in bed (efficiency {percent:.1} %): C4 scored 0, please check Q1, Q3 and Q4 (REFERENCE §1.2.3)"
                    ),
                ));
                Some(0)
            } else {
                Some(efficiency_band(sleep, tib))
            }
        }
        _ => None,
    };

    let c5 = {
        let items: Option<Vec<u8>> = DISTURBANCES.iter().map(|id| q(id)).collect();
        let described =
            matches!(answers.get("psqi-5j-comment"), Some(Answer::Text(t)) if !t.trim().is_empty());
        let q5j = match q("psqi-5j") {
            Some(v) if described => v,
            Some(v) => {
                if v > 0 {
                    flags.push((
                        "psqi-q5j-not-counted",
                        "psqi-5j",
                        format!("Q5j answered {v} without a description: counted as 0 (Buysse 2005 rule, REFERENCE §1.2.2)"),
                    ));
                }
                0
            }
            None => 0,
        };
        items.map(|items| {
            let sum: u8 = items.iter().sum::<u8>() + q5j;
            // 0 → 0, 1–9 → 1, 10–18 → 2, 19–27 → 3 (REFERENCE §1.2.2).
            sum.div_ceil(9)
        })
    };
    let c6 = q("psqi-7");
    let c7 = match (q("psqi-8"), q("psqi-9")) {
        (Some(a), Some(b)) => Some(pair_band(a + b)),
        _ => None,
    };

    let components = [c1, c2, c3, c4, c5, c6, c7];
    let global: Option<u8> = components.iter().copied().sum();
    if global.is_none() {
        let missing: Vec<String> = components
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_none())
            .map(|(i, _)| format!("C{}", i + 1))
            .collect();
        let first_item = first_missing_item(answers, &components);
        flags.push((
            "psqi-global-missing",
            first_item,
            format!(
                "{} missing: no global score (official rule, no prorating; REFERENCE §1.2.2)",
                missing.join(", ")
            ),
        ));
    }

    let global_f = global.map(f64::from);
    let mut score = Score::new(&DEFINITION, global_f, global_f);
    for (measure, value) in COMPONENTS.iter().zip(components) {
        score = score.component(measure, value.map(f64::from));
    }
    score = score
        .component(&COMPONENTS[7], tib.map(|s| s as f64 / 3600.0))
        .component(&COMPONENTS[8], hse);
    for (code, item, detail) in flags {
        score = score.flag(code, FlagKind::DataQuality, Some(item), detail);
    }
    if global.is_some_and(|g| g > 5) {
        score = score.flag(
            "psqi-poor-sleeper",
            FlagKind::CutOff,
            None,
            "PSQI global above 5: poor sleeper (Buysse 1989, REFERENCE §1.2.4)",
        );
    }
    Ok(score)
}

/// The first unanswered item behind the first missing component, to name in the flag.
fn first_missing_item(answers: &Answers, components: &[Option<u8>; 7]) -> &'static str {
    const ITEMS_OF: [&[&str]; 7] = [
        &["psqi-6"],
        &["psqi-2", "psqi-5a"],
        &["psqi-4"],
        &["psqi-1", "psqi-3", "psqi-4"],
        &DISTURBANCES,
        &["psqi-7"],
        &["psqi-8", "psqi-9"],
    ];
    components
        .iter()
        .zip(ITEMS_OF)
        .filter(|(c, _)| c.is_none())
        .flat_map(|(_, items)| items.iter())
        .find(|id| answers.get(id).is_none())
        .copied()
        // Every item answered: C4 is missing because TIB is 0.
        .unwrap_or("psqi-3")
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    /// One PSQI response: Q1, Q2, Q3, Q4, Q5a–Q5j, Q5j description, Q6–Q9.
    struct Row {
        id: &'static str,
        q1: Option<&'static str>,
        q2: f64,
        q3: Option<&'static str>,
        q4: f64,
        q5: [Option<u8>; 10],
        q5j_text: Option<&'static str>,
        q6_9: [u8; 4],
    }

    impl Row {
        fn answers(&self) -> Answers {
            let mut map = serde_json::Map::new();
            map.insert("psqi-1".into(), self.q1.map_or(Value::Null, Value::from));
            map.insert("psqi-2".into(), json!(self.q2));
            map.insert("psqi-3".into(), self.q3.map_or(Value::Null, Value::from));
            map.insert("psqi-4".into(), json!(self.q4));
            for (letter, v) in "abcdefghij".chars().zip(self.q5) {
                map.insert(
                    format!("psqi-5{letter}"),
                    v.map_or(Value::Null, Value::from),
                );
            }
            if let Some(text) = self.q5j_text {
                map.insert("psqi-5j-comment".into(), json!(text));
            }
            for (n, v) in (6..=9).zip(self.q6_9) {
                map.insert(format!("psqi-{n}"), json!(v));
            }
            Answers::from_json(&DEFINITION, &Value::Object(map)).unwrap()
        }
    }

    const fn s(v: u8) -> Option<u8> {
        Some(v)
    }

    /// LCBC-UiO/questionnaires `tests/testthat/data/psqi.tsv` rows 1–12, items as in the file
    /// (`psqi_05j` read as the Q5j frequency, `psqi_05j_coded` as its description), with the
    /// components C1–C7 and global expected under REFERENCE §1.2.6.
    #[allow(clippy::type_complexity)] // one row per reference vector
    const LCBC: &[(Row, [Option<u8>; 7], Option<u8>)] = &[
        (
            Row {
                id: "LCBC 1",
                q1: Some("22:30"),
                q2: 5.0,
                q3: Some("05:50"),
                q4: 7.0,
                q5: [s(0), s(0), s(0), s(0), s(0), s(0), s(0), s(0), s(0), s(0)],
                q5j_text: None,
                q6_9: [0, 0, 0, 0],
            },
            // 7.0 h → C3 1 (REFERENCE §1.2.5 note on rows 1 and 6).
            [s(0), s(0), s(1), s(0), s(0), s(0), s(0)],
            s(1),
        ),
        (
            Row {
                id: "LCBC 2",
                q1: Some("07:00"),
                q2: 10.0,
                q3: Some("17:00"),
                q4: 9.75,
                q5: [s(0), s(0), s(0), s(0), s(3), s(0), s(0), s(0), s(0), s(0)],
                q5j_text: None,
                q6_9: [1, 0, 0, 0],
            },
            [s(1), s(0), s(0), s(0), s(1), s(0), s(0)],
            s(2),
        ),
        // Q5j frequency missing with a description: counts 0 either way.
        (
            Row {
                id: "LCBC 3",
                q1: Some("22:30"),
                q2: 30.0,
                q3: Some("06:30"),
                q4: 8.0,
                q5: [s(1), s(2), s(3), s(0), s(1), s(1), s(1), s(0), s(0), None],
                q5j_text: Some("No"),
                q6_9: [2, 0, 0, 1],
            },
            [s(2), s(1), s(0), s(0), s(1), s(0), s(1)],
            s(5),
        ),
        // Row 4: clock times missing → C4 and the global score missing, as in LCBC.
        (
            Row {
                id: "LCBC 4",
                q1: None,
                q2: 20.0,
                q3: None,
                q4: 9.0,
                q5: [s(2), s(0), s(1), s(0), s(0), s(0), s(1), s(0), s(0), None],
                q5j_text: None,
                q6_9: [1, 0, 1, 0],
            },
            [s(1), s(2), s(0), None, s(1), s(0), s(1)],
            None,
        ),
        (
            Row {
                id: "LCBC 5",
                q1: Some("23:30"),
                q2: 30.0,
                q3: Some("06:45"),
                q4: 6.0,
                q5: [s(2), s(2), s(2), s(0), s(0), s(1), s(3), s(0), s(0), None],
                q5j_text: None,
                q6_9: [1, 0, 0, 1],
            },
            [s(1), s(2), s(1), s(1), s(1), s(0), s(1)],
            s(7),
        ),
        (
            Row {
                id: "LCBC 6",
                q1: Some("23:00"),
                q2: 23.0,
                q3: Some("07:00"),
                q4: 7.0,
                q5: [s(1), s(1), s(1), s(0), s(0), s(0), s(0), s(0), s(0), s(1)],
                q5j_text: Some("1"),
                q6_9: [1, 0, 0, 0],
            },
            [s(1), s(1), s(1), s(0), s(1), s(0), s(0)],
            s(4),
        ),
        (
            Row {
                id: "LCBC 7",
                q1: Some("23:00"),
                q2: 1.0,
                q3: Some("07:00"),
                q4: 8.0,
                q5: [s(0), s(1), s(0), s(0), s(0), s(0), s(0), s(0), s(0), None],
                q5j_text: None,
                q6_9: [0, 0, 0, 0],
            },
            [s(0), s(0), s(0), s(0), s(1), s(0), s(0)],
            s(1),
        ),
        // Latency 15 min: band 0 here, 1 in LCBC; C2 is 1 both ways because Q5a = 1. Q5j = 3
        // without a description counts 0 here (LCBC adds it); C5 is 2 both ways.
        (
            Row {
                id: "LCBC 8",
                q1: Some("22:45"),
                q2: 15.0,
                q3: Some("06:00"),
                q4: 6.5,
                q5: [s(1), s(3), s(1), s(0), s(1), s(1), s(1), s(0), s(3), s(3)],
                q5j_text: None,
                q6_9: [2, 3, 1, 1],
            },
            [s(2), s(1), s(1), s(0), s(2), s(3), s(1)],
            s(10),
        ),
        (
            Row {
                id: "LCBC 9",
                q1: Some("21:45"),
                q2: 20.0,
                q3: Some("05:30"),
                q4: 6.0,
                q5: [s(0), s(2), s(1), s(0), s(0), s(0), s(2), s(0), s(0), s(2)],
                q5j_text: Some("Yes"),
                q6_9: [2, 0, 0, 0],
            },
            [s(2), s(1), s(1), s(1), s(1), s(0), s(0)],
            s(6),
        ),
        (
            Row {
                id: "LCBC 10",
                q1: Some("23:45"),
                q2: 10.0,
                q3: Some("08:30"),
                q4: 8.0,
                q5: [s(0), s(0), s(3), s(0), s(2), s(0), s(0), s(0), s(1), None],
                q5j_text: Some("No"),
                q6_9: [3, 0, 0, 0],
            },
            [s(3), s(0), s(0), s(0), s(1), s(0), s(0)],
            s(4),
        ),
        // Q5d missing: LCBC sums the other items (C5 1, global 7); the official rule used here
        // makes C5 and the global score missing (REFERENCE §1.2.5 note on row 11).
        (
            Row {
                id: "LCBC 11",
                q1: Some("23:30"),
                q2: 5.0,
                q3: Some("09:00"),
                q4: 6.0,
                q5: [s(0), s(3), s(3), None, s(1), s(0), s(0), s(0), s(2), s(0)],
                q5j_text: None,
                q6_9: [1, 0, 1, 1],
            },
            [s(1), s(0), s(1), s(3), None, s(0), s(1)],
            None,
        ),
        (
            Row {
                id: "LCBC 12",
                q1: Some("23:30"),
                q2: 95.0,
                q3: Some("08:45"),
                q4: 6.5,
                q5: [s(0), s(1), s(1), s(0), s(0), s(0), s(0), s(0), s(2), s(0)],
                q5j_text: None,
                q6_9: [0, 0, 0, 0],
            },
            [s(0), s(2), s(1), s(2), s(1), s(0), s(0)],
            s(6),
        ),
    ];

    const BASE_Q5: [Option<u8>; 10] = [s(0); 10];

    const fn edge(id: &'static str, q1: &'static str, q3: &'static str, q4: f64, q2: f64) -> Row {
        Row {
            id,
            q1: Some(q1),
            q2,
            q3: Some(q3),
            q4,
            q5: BASE_Q5,
            q5j_text: None,
            q6_9: [0, 0, 0, 0],
        }
    }

    /// REFERENCE §1.2.8 P1–P10 (base: Q5 all 0, Q6–Q9 0, Q2 10 min): (row, C2, C3, HSE %, C4, global).
    #[allow(clippy::type_complexity)] // one row per reference vector
    const EDGES: &[(Row, u8, u8, f64, Option<u8>, Option<u8>)] = &[
        (
            edge("P1", "23:00", "07:00", 7.0, 10.0),
            0,
            1,
            87.5,
            s(0),
            s(1),
        ),
        (
            edge("P2", "00:00", "06:00", 6.0, 10.0),
            0,
            1,
            100.0,
            s(0),
            s(1),
        ),
        (
            edge("P3", "23:00", "07:00", 6.8, 10.0),
            0,
            1,
            85.0,
            s(0),
            s(1),
        ),
        (
            edge("P4", "22:00", "06:00", 6.76, 10.0),
            0,
            1,
            84.5,
            s(1),
            s(2),
        ),
        (
            edge("P5", "22:00", "06:00", 5.968, 10.0),
            0,
            2,
            74.6,
            s(2),
            s(4),
        ),
        (
            edge("P6", "23:00", "23:00", 6.0, 10.0),
            0,
            1,
            f64::NAN,
            None,
            None,
        ),
        (
            edge("P7", "23:00", "06:00", 8.0, 10.0),
            0,
            0,
            800.0 / 7.0,
            s(0),
            s(0),
        ),
        (
            edge("P8", "23:00", "07:00", 8.0, 15.0),
            0,
            0,
            100.0,
            s(0),
            s(0),
        ),
        (
            edge("P9", "23:00", "07:00", 8.0, 0.0),
            0,
            0,
            100.0,
            s(0),
            s(0),
        ),
        (
            edge("P10", "07:00", "15:00", 7.5, 10.0),
            0,
            0,
            93.75,
            s(0),
            s(0),
        ),
    ];

    fn components(score: &Score) -> Vec<Option<u8>> {
        score.components[..7]
            .iter()
            .map(|c| c.value.map(|v| v as u8))
            .collect()
    }

    #[test]
    fn lcbc_rows_score_under_the_canonical_rules() {
        for (row, comps, global) in LCBC {
            let score = DEFINITION.score(&row.answers()).unwrap();
            assert_eq!(components(&score), comps.to_vec(), "{}", row.id);
            assert_eq!(score.total.map(|g| g as u8), *global, "{}", row.id);
            assert_eq!(
                score.has_flag("psqi-global-missing"),
                global.is_none(),
                "{}",
                row.id
            );
            assert_eq!(score.algorithm, "psqi@1.0.0");
        }
    }

    #[test]
    fn lcbc_habitual_sleep_efficiencies_match_the_reference_table() {
        // REFERENCE §1.2.5 HSE column, one decimal.
        let hse = [
            95.5,
            97.5,
            100.0,
            f64::NAN,
            82.8,
            87.5,
            100.0,
            89.7,
            77.4,
            91.4,
            63.2,
            70.3,
        ];
        for ((row, _, _), want) in LCBC.iter().zip(hse) {
            let got = DEFINITION
                .score(&row.answers())
                .unwrap()
                .component_value("psqi-hse");
            match got {
                Some(got) => assert!((got - want).abs() < 0.05, "{}: {got}", row.id),
                None => assert!(want.is_nan(), "{}", row.id),
            }
        }
    }

    #[test]
    fn edge_cases_score_under_the_canonical_rules() {
        for (row, c2, c3, hse, c4, global) in EDGES {
            let score = DEFINITION.score(&row.answers()).unwrap();
            let comps = components(&score);
            assert_eq!(comps[1], Some(*c2), "{} C2", row.id);
            assert_eq!(comps[2], Some(*c3), "{} C3", row.id);
            assert_eq!(comps[3], *c4, "{} C4", row.id);
            assert_eq!(score.total.map(|g| g as u8), *global, "{} global", row.id);
            match score.component_value("psqi-hse") {
                Some(got) => assert!((got - hse).abs() < 1e-9, "{}: HSE {got}", row.id),
                None => assert!(hse.is_nan(), "{}", row.id),
            }
        }
    }

    #[test]
    fn time_in_bed_of_zero_leaves_c4_and_global_missing_with_a_flag() {
        // P6.
        let score = DEFINITION.score(&EDGES[5].0.answers()).unwrap();
        let flag = score
            .flags
            .iter()
            .find(|f| f.code == "psqi-tib-zero")
            .unwrap();
        assert_eq!(
            (flag.kind, flag.item.as_deref()),
            (FlagKind::DataQuality, Some("psqi-3"))
        );
        let missing = score
            .flags
            .iter()
            .find(|f| f.code == "psqi-global-missing")
            .unwrap();
        assert!(
            missing.detail.starts_with("C4 missing"),
            "{}",
            missing.detail
        );
        assert_eq!(score.component_value("psqi-tib"), Some(0.0));
    }

    #[test]
    fn sleep_longer_than_time_in_bed_scores_c4_zero_with_a_warning() {
        // P7: 8 h asleep in 7 h in bed.
        let score = DEFINITION.score(&EDGES[6].0.answers()).unwrap();
        let flag = score
            .flags
            .iter()
            .find(|f| f.code == "psqi-hse-over-100")
            .unwrap();
        assert_eq!(
            (flag.kind, flag.item.as_deref()),
            (FlagKind::DataQuality, Some("psqi-4"))
        );
        assert_eq!(score.component_value("psqi-c4"), Some(0.0));
    }

    #[test]
    fn q5j_without_a_description_counts_zero() {
        // P11: as P1 with Q5j = 2 and no description → C5 0, global 1.
        let mut row = edge("P11", "23:00", "07:00", 7.0, 10.0);
        row.q5[9] = s(2);
        let score = DEFINITION.score(&row.answers()).unwrap();
        assert_eq!(score.component_value("psqi-c5"), Some(0.0));
        assert_eq!(score.total, Some(1.0));
        assert!(score.has_flag("psqi-q5j-not-counted"));
        // With a description it counts: 2 → C5 1, global 2.
        row.q5j_text = Some("noise");
        let score = DEFINITION.score(&row.answers()).unwrap();
        assert_eq!(
            (score.component_value("psqi-c5"), score.total),
            (Some(1.0), Some(2.0))
        );
        // A blank description is no description.
        row.q5j_text = Some("  ");
        assert_eq!(DEFINITION.score(&row.answers()).unwrap().total, Some(1.0));
    }

    #[test]
    fn a_missing_disturbance_item_leaves_c5_and_global_missing() {
        // P12: as P1 with Q5c missing.
        let mut row = edge("P12", "23:00", "07:00", 7.0, 10.0);
        row.q5[2] = None;
        let score = DEFINITION.score(&row.answers()).unwrap();
        assert_eq!(score.component_value("psqi-c5"), None);
        assert_eq!((score.total, score.band.as_ref()), (None, None));
        let flag = score
            .flags
            .iter()
            .find(|f| f.code == "psqi-global-missing")
            .unwrap();
        assert_eq!(flag.item.as_deref(), Some("psqi-5c"));
    }

    #[test]
    fn decimal_latencies_fall_on_the_canonical_side_of_each_boundary() {
        for (minutes, band) in [
            (0.0, 0),
            (15.0, 0),
            (15.5, 1),
            (30.0, 1),
            (30.5, 2),
            (60.0, 2),
            (60.001, 3),
        ] {
            assert_eq!(
                latency_band((minutes * 1000.0_f64).round() as i64),
                band,
                "{minutes}"
            );
        }
        for (hours, band) in [
            (8.0, 0),
            (7.5, 0),
            (7.0, 1),
            (6.5, 1),
            (6.0, 1),
            (5.0, 2),
            (4.95, 3),
            (0.0, 3),
        ] {
            assert_eq!(
                duration_band((hours * 1e6_f64).round() as i64),
                band,
                "{hours}"
            );
        }
    }

    #[test]
    fn the_global_score_is_banded_at_above_five() {
        let mut row = edge("poor", "23:00", "07:00", 8.0, 10.0);
        row.q6_9 = [3, 2, 0, 0];
        let score = DEFINITION.score(&row.answers()).unwrap();
        assert_eq!(score.total, Some(5.0));
        assert_eq!(
            score.band.as_ref().map(|b| b.code.as_str()),
            Some("psqi-good")
        );
        row.q6_9 = [3, 3, 0, 0];
        let score = DEFINITION.score(&row.answers()).unwrap();
        assert_eq!(
            score.band.as_ref().map(|b| b.code.as_str()),
            Some("psqi-poor")
        );
        assert!(score.has_flag("psqi-poor-sleeper"));
    }

    #[test]
    fn out_of_range_and_mistyped_answers_are_422_naming_the_item() {
        let cases = [
            ("psqi-4", json!(24.5)),
            ("psqi-4", json!(-0.5)),
            ("psqi-4", json!("7")),
            ("psqi-2", json!(-1)),
            ("psqi-2", json!(1441)),
            ("psqi-1", json!("24:00")),
            ("psqi-1", json!(2300)),
            ("psqi-3", json!("7:00")),
            ("psqi-5a", json!(4)),
            ("psqi-6", json!(1.5)),
            ("psqi-9", json!(true)),
            ("psqi-5j-comment", json!(3)),
            ("psqi-11", json!(0)),
        ];
        for (link_id, value) in cases {
            let err = Answers::from_json(&DEFINITION, &json!({ link_id: value })).unwrap_err();
            assert_eq!(
                (err.status, err.field.as_deref()),
                (422, Some(link_id)),
                "{link_id} = {value}"
            );
        }
    }
}
