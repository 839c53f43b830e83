//! Insomnia Severity Index, VA item order (REFERENCE §1.1).

use crate::error::Problem;

use super::answers::Answers;
use super::definition::{AnswerOption, Band, Definition, Instrument, Item, ItemKind, Measure};
use super::score::Score;

/// Items 1–7 in the VA form's order; the JABFM 2013 primary-care version orders them
/// differently (REFERENCE §1.1 note), so the order is pinned here, with the version.
pub const ITEMS: [&str; 7] = [
    "isi-1", "isi-2", "isi-3", "isi-4", "isi-5", "isi-6", "isi-7",
];

const fn opt(value: u8, display: &'static str) -> AnswerOption {
    AnswerOption {
        value,
        display,
        loinc: None,
    }
}

// 0–4 per item, no reverse-scored items (REFERENCE §1.1, VA form).
const SEVERITY: &[AnswerOption] = &[
    opt(0, "None"),
    opt(1, "Mild"),
    opt(2, "Moderate"),
    opt(3, "Severe"),
    opt(4, "Very severe"),
];
const SATISFACTION: &[AnswerOption] = &[
    opt(0, "Very satisfied"),
    opt(1, "Satisfied"),
    opt(2, "Moderately satisfied"),
    opt(3, "Dissatisfied"),
    opt(4, "Very dissatisfied"),
];
const EXTENT: &[AnswerOption] = &[
    opt(0, "Not at all"),
    opt(1, "A little"),
    opt(2, "Somewhat"),
    opt(3, "Much"),
    opt(4, "Very much"),
];

const fn item(link_id: &'static str, text: &'static str, options: &'static [AnswerOption]) -> Item {
    Item {
        link_id,
        text,
        kind: ItemKind::Choice(options),
        required: true,
        loinc: None,
        scored: true,
    }
}

pub static DEFINITION: Definition = Definition {
    instrument: Instrument::Isi,
    id: "isi-1",
    version: "1",
    name: "ISI",
    title: "Insomnia Severity Index",
    // "current (last 2 weeks)" (REFERENCE §1.1, VA form).
    recall_period: "the last 2 weeks",
    source: "Morin; VA ISI form and PhenX protocol 640801 (REFERENCE §1.1)",
    loinc_panel: None, // REFERENCE §4.2: ISI codes conflict, not verified
    items: &[
        item("isi-1", "Difficulty falling asleep", SEVERITY),
        item("isi-2", "Difficulty staying asleep", SEVERITY),
        item("isi-3", "Problems waking up too early", SEVERITY),
        item(
            "isi-4",
            "How satisfied or dissatisfied are you with your current sleep pattern?",
            SATISFACTION,
        ),
        item(
            "isi-5",
            "How noticeable to others do you think your sleep problem is in terms of impairing the quality of your life?",
            EXTENT,
        ),
        item(
            "isi-6",
            "How worried or distressed are you about your current sleep problem?",
            EXTENT,
        ),
        item(
            "isi-7",
            "To what extent do you consider your sleep problem to interfere with your daily functioning?",
            EXTENT,
        ),
    ],
    // Sum of the 7 items, 0–28 (REFERENCE §1.1).
    total: Measure {
        code: "isi-total",
        display: "ISI total score",
        loinc: None,
        min: 0.0,
        max: 28.0,
        unit: "{score}",
    },
    components: &[],
    // Bands 0–7 / 8–14 / 15–21 / 22–28 (REFERENCE §1.1: VA form, NINDS CDE).
    bands: &[
        Band {
            code: "isi-none",
            display: "No clinically significant insomnia",
            min: 0.0,
            max: 7.0,
        },
        Band {
            code: "isi-subthreshold",
            display: "Subthreshold insomnia",
            min: 8.0,
            max: 14.0,
        },
        Band {
            code: "isi-moderate",
            display: "Clinical insomnia (moderate severity)",
            min: 15.0,
            max: 21.0,
        },
        Band {
            code: "isi-severe",
            display: "Clinical insomnia (severe)",
            min: 22.0,
            max: 28.0,
        },
    ],
    algorithm: "isi@1.0.0",
    scorer: score,
};

/// Sum of the seven items; every item required (REFERENCE §1.1: no official missing rule).
pub fn score(answers: &Answers) -> Result<Score, Problem> {
    let items = answers.require_choices(ITEMS)?;
    let total = f64::from(items.iter().map(|&v| u32::from(v)).sum::<u32>());
    Ok(Score::new(&DEFINITION, Some(total), Some(total)))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{answers_of, band_of};
    use super::*;

    /// REFERENCE §1.1 vectors I1–I9: (id, items 1–7, total, band).
    const VECTORS: &[(&str, [u8; 7], f64, &str)] = &[
        ("I1", [0, 0, 0, 0, 0, 0, 0], 0.0, "isi-none"),
        ("I2", [2, 2, 2, 2, 2, 2, 2], 14.0, "isi-subthreshold"),
        ("I3", [4, 4, 4, 4, 4, 4, 4], 28.0, "isi-severe"),
        ("I4", [1, 2, 1, 0, 0, 3, 2], 9.0, "isi-subthreshold"),
        ("I5", [1, 1, 1, 1, 1, 1, 1], 7.0, "isi-none"),
        ("I6", [2, 1, 1, 1, 1, 1, 1], 8.0, "isi-subthreshold"),
        ("I7", [3, 2, 2, 2, 2, 2, 2], 15.0, "isi-moderate"),
        ("I8", [3, 3, 3, 3, 3, 3, 3], 21.0, "isi-moderate"),
        ("I9", [4, 3, 3, 3, 3, 3, 3], 22.0, "isi-severe"),
    ];

    #[test]
    fn reference_vectors_score_as_published() {
        for (id, items, total, band) in VECTORS {
            let score = DEFINITION
                .score(&answers_of(&DEFINITION, &ITEMS, items).unwrap())
                .unwrap();
            assert_eq!(score.total, Some(*total), "{id}");
            assert_eq!(band_of(&score), Some(*band), "{id}");
            assert_eq!(score.algorithm, "isi@1.0.0", "{id}");
        }
    }

    #[test]
    fn an_item_of_five_is_rejected_naming_the_item() {
        // I10: 0,0,0,0,0,0,5 → out of range.
        let err = answers_of(&DEFINITION, &ITEMS, &[0, 0, 0, 0, 0, 0, 5]).unwrap_err();
        assert_eq!(err.status, 422);
        assert_eq!(err.field.as_deref(), Some("isi-7"));
    }

    #[test]
    fn a_missing_item_is_rejected_naming_the_item() {
        let answers = answers_of(&DEFINITION, &ITEMS[..6], &[1, 1, 1, 1, 1, 1]).unwrap();
        let err = DEFINITION.score(&answers).unwrap_err();
        assert_eq!((err.status, err.field.as_deref()), (422, Some("isi-7")));
    }
}
