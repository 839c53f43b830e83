//! WHO-5 Well-Being Index (REFERENCE §1.7).

use crate::error::Problem;

use super::answers::Answers;
use super::definition::{AnswerOption, Band, Definition, Instrument, Item, ItemKind, Measure};
use super::score::{FlagKind, Score};

pub const ITEMS: [&str; 5] = ["who5-1", "who5-2", "who5-3", "who5-4", "who5-5"];

/// Raw < 13 = poor well-being (REFERENCE §1.7, Valant; not awell's "raw 13 / 50 %").
const POOR_BELOW: u32 = 13;

const fn opt(value: u8, display: &'static str) -> AnswerOption {
    AnswerOption {
        value,
        display,
        loinc: None,
    }
}

// 0 at no time … 5 all of the time, all items positively worded (REFERENCE §1.7).
const TIME: &[AnswerOption] = &[
    opt(5, "All of the time"),
    opt(4, "Most of the time"),
    opt(3, "More than half of the time"),
    opt(2, "Less than half of the time"),
    opt(1, "Some of the time"),
    opt(0, "At no time"),
];

const fn item(link_id: &'static str, text: &'static str) -> Item {
    Item {
        link_id,
        text,
        kind: ItemKind::Choice(TIME),
        required: true,
        loinc: None,
        scored: true,
    }
}

const PERCENTAGE: Measure = Measure {
    code: "who5-percentage",
    display: "WHO-5 percentage score",
    loinc: None,
    min: 0.0,
    max: 100.0,
    unit: "%",
};

pub static DEFINITION: Definition = Definition {
    instrument: Instrument::Who5,
    id: "who-5-1",
    version: "1",
    name: "WHO5",
    title: "WHO-5 Well-Being Index",
    recall_period: "the last 2 weeks",
    source: "WHO; Topp et al., Psychother Psychosom 2015;84:167 (REFERENCE §1.7)",
    loinc_panel: None, // REFERENCE §4.2: not found
    items: &[
        item("who5-1", "I have felt cheerful and in good spirits"),
        item("who5-2", "I have felt calm and relaxed"),
        item("who5-3", "I have felt active and vigorous"),
        item("who5-4", "I woke up feeling fresh and rested"),
        item(
            "who5-5",
            "My daily life has been filled with things that interest me",
        ),
    ],
    // Raw sum 0–25, 25 = best (REFERENCE §1.7).
    total: Measure {
        code: "who5-raw",
        display: "WHO-5 raw score",
        loinc: None,
        min: 0.0,
        max: 25.0,
        unit: "{score}",
    },
    // Percentage = raw × 4 (REFERENCE §1.7).
    components: &[PERCENTAGE],
    // raw ≤ 7 (≤ 28 %) "likely depression" [UNVERIFIED in primary, REFERENCE §1.7];
    // raw < 13 poor well-being (REFERENCE §1.7, Valant).
    bands: &[
        Band {
            code: "who5-likely-depression",
            display: "Poor well-being, likely depression",
            min: 0.0,
            max: 7.0,
        },
        Band {
            code: "who5-poor",
            display: "Poor well-being",
            min: 8.0,
            max: 12.0,
        },
        Band {
            code: "who5-not-poor",
            display: "No indication of poor well-being",
            min: 13.0,
            max: 25.0,
        },
    ],
    algorithm: "who-5@1.0.0",
    scorer: score,
};

/// Raw sum and percentage; the score cannot be determined unless every item is answered
/// (REFERENCE §1.7, Millisecond manual).
pub fn score(answers: &Answers) -> Result<Score, Problem> {
    let items = answers.require_choices(ITEMS)?;
    let raw = items.iter().map(|&v| u32::from(v)).sum::<u32>();
    let mut score = Score::new(&DEFINITION, Some(f64::from(raw)), Some(f64::from(raw)))
        .component(&PERCENTAGE, Some(f64::from(raw * 4)));
    if raw < POOR_BELOW {
        score = score.flag(
            "who5-poor-wellbeing",
            FlagKind::CutOff,
            None,
            "WHO-5 raw score below 13: poor well-being, screen for depression (REFERENCE §1.7)",
        );
    }
    Ok(score)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{answers_of, band_of};
    use super::*;

    /// REFERENCE §1.7 vectors W1–W8: (id, items, raw, percentage, poor, band).
    #[allow(clippy::type_complexity)] // one row per reference vector
    const VECTORS: &[(&str, [u8; 5], f64, f64, bool, &str)] = &[
        (
            "W1",
            [0, 0, 0, 0, 0],
            0.0,
            0.0,
            true,
            "who5-likely-depression",
        ),
        ("W2", [3, 3, 3, 3, 3], 15.0, 60.0, false, "who5-not-poor"),
        ("W3", [5, 5, 5, 5, 5], 25.0, 100.0, false, "who5-not-poor"),
        ("W4", [4, 1, 0, 2, 3], 10.0, 40.0, true, "who5-poor"),
        ("W5", [3, 3, 3, 2, 2], 13.0, 52.0, false, "who5-not-poor"),
        ("W6", [3, 3, 3, 2, 1], 12.0, 48.0, true, "who5-poor"),
        (
            "W7",
            [2, 2, 2, 1, 0],
            7.0,
            28.0,
            true,
            "who5-likely-depression",
        ),
        ("W8", [2, 2, 2, 1, 1], 8.0, 32.0, true, "who5-poor"),
    ];

    #[test]
    fn reference_vectors_give_raw_percentage_and_cut_off() {
        for (id, items, raw, pct, poor, band) in VECTORS {
            let score = DEFINITION
                .score(&answers_of(&DEFINITION, &ITEMS, items).unwrap())
                .unwrap();
            assert_eq!(score.total, Some(*raw), "{id}");
            assert_eq!(score.component_value("who5-percentage"), Some(*pct), "{id}");
            assert_eq!(score.has_flag("who5-poor-wellbeing"), *poor, "{id}");
            assert_eq!(band_of(&score), Some(*band), "{id}");
        }
    }

    #[test]
    fn an_item_of_six_is_rejected_naming_the_item() {
        let err = answers_of(&DEFINITION, &ITEMS, &[0, 0, 0, 0, 6]).unwrap_err();
        assert_eq!((err.status, err.field.as_deref()), (422, Some("who5-5")));
    }
}
