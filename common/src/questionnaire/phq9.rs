//! PHQ-9 with the NHS rule for missing items and the item-9 safety flag (REFERENCE §1.5).

use crate::error::Problem;

use super::answers::Answers;
use super::definition::{AnswerOption, Band, Definition, Instrument, Item, ItemKind, Measure};
use super::score::{FlagKind, Score};

/// The nine scored items; item 10 (`phq9-10`, functional difficulty) is asked but not scored.
pub const ITEMS: [&str; 9] = [
    "phq9-1", "phq9-2", "phq9-3", "phq9-4", "phq9-5", "phq9-6", "phq9-7", "phq9-8", "phq9-9",
];

/// The NHS rule substitutes at most 2 missing items (REFERENCE §1.5, NHS Data Dictionary).
const MAX_MISSING: usize = 2;
/// ≥ 10 clinically significant (REFERENCE §1.5, NHS DD "cut off 9, so 10 or above").
const SIGNIFICANT_AT: f64 = 10.0;

/// 0–3 frequency over the last 2 weeks, LOINC answer list LL358-3 (REFERENCE §4.1, §4.2).
pub const FREQUENCY: &[AnswerOption] = &[
    AnswerOption {
        value: 0,
        display: "Not at all",
        loinc: Some("LA6568-5"),
    },
    AnswerOption {
        value: 1,
        display: "Several days",
        loinc: Some("LA6569-3"),
    },
    AnswerOption {
        value: 2,
        display: "More than half the days",
        loinc: Some("LA6570-1"),
    },
    AnswerOption {
        value: 3,
        display: "Nearly every day",
        loinc: Some("LA6571-9"),
    },
];

/// LOINC answer list LL359-1 for item 10 (REFERENCE §4.2); the values only order the options.
const DIFFICULTY: &[AnswerOption] = &[
    AnswerOption {
        value: 0,
        display: "Not difficult at all",
        loinc: Some("LA6572-7"),
    },
    AnswerOption {
        value: 1,
        display: "Somewhat difficult",
        loinc: Some("LA6573-5"),
    },
    AnswerOption {
        value: 2,
        display: "Very difficult",
        loinc: Some("LA6575-0"),
    },
    AnswerOption {
        value: 3,
        display: "Extremely difficult",
        loinc: Some("LA6574-3"),
    },
];

const fn item(link_id: &'static str, text: &'static str, loinc: &'static str) -> Item {
    Item {
        link_id,
        text,
        kind: ItemKind::Choice(FREQUENCY),
        // The NHS rule lets up to 2 items be missing (REFERENCE §1.5).
        required: false,
        loinc: Some(loinc),
        scored: true,
    }
}

pub static DEFINITION: Definition = Definition {
    instrument: Instrument::Phq9,
    id: "phq-9-1",
    version: "1",
    name: "PHQ9",
    title: "Patient Health Questionnaire-9 (PHQ-9)",
    recall_period: "the last 2 weeks",
    source: "Kroenke, Spitzer, Williams 2001; NHS Data Dictionary; MII PROMs IG (REFERENCE §1.5, §4.2)",
    // Panel and item codes confirmed in REFERENCE §4.2.
    loinc_panel: Some("44249-1"),
    items: &[
        item(
            "phq9-1",
            "Little interest or pleasure in doing things",
            "44250-9",
        ),
        item("phq9-2", "Feeling down, depressed, or hopeless", "44255-8"),
        item(
            "phq9-3",
            "Trouble falling or staying asleep, or sleeping too much",
            "44259-0",
        ),
        item("phq9-4", "Feeling tired or having little energy", "44254-1"),
        item("phq9-5", "Poor appetite or overeating", "44251-7"),
        item(
            "phq9-6",
            "Feeling bad about yourself, or that you are a failure or have let yourself or your family down",
            "44258-2",
        ),
        item(
            "phq9-7",
            "Trouble concentrating on things, such as reading the newspaper or watching television",
            "44252-5",
        ),
        item(
            "phq9-8",
            "Moving or speaking so slowly that other people could have noticed, or the opposite: being so fidgety or restless that you have been moving around a lot more than usual",
            "44253-3",
        ),
        item(
            "phq9-9",
            "Thoughts that you would be better off dead, or of hurting yourself in some way",
            "44260-8",
        ),
        Item {
            link_id: "phq9-10",
            text: "If you checked off any problems, how difficult have these problems made it for you to do your work, take care of things at home, or get along with other people?",
            kind: ItemKind::Choice(DIFFICULTY),
            required: false,
            loinc: Some("69722-7"),
            scored: false,
        },
    ],
    // Sum 0–27 (REFERENCE §1.5); total-score LOINC 44261-6, not the panel code (REFERENCE §4.1).
    total: Measure {
        code: "phq9-total",
        display: "PHQ-9 total score",
        loinc: Some("44261-6"),
        min: 0.0,
        max: 27.0,
        unit: "{score}",
    },
    components: &[],
    // REFERENCE §1.5 (NHS DD).
    bands: &[
        Band {
            code: "phq9-minimal",
            display: "None or minimal depression",
            min: 0.0,
            max: 4.0,
        },
        Band {
            code: "phq9-mild",
            display: "Mild depression",
            min: 5.0,
            max: 9.0,
        },
        Band {
            code: "phq9-moderate",
            display: "Moderate depression",
            min: 10.0,
            max: 14.0,
        },
        Band {
            code: "phq9-moderately-severe",
            display: "Moderately severe depression",
            min: 15.0,
            max: 19.0,
        },
        Band {
            code: "phq9-severe",
            display: "Severe depression",
            min: 20.0,
            max: 27.0,
        },
    ],
    algorithm: "phq-9@1.0.0",
    scorer: score,
};

/// Sum of items 1–9. With 1–2 items missing each is replaced by the mean of the answered
/// ones (NHS rule); the total is kept unrounded and its band read from the total rounded half
/// up (REFERENCE §1.5: rounding not specified, suggestion). Item 9 > 0 raises a safety flag
/// whatever the total.
pub fn score(answers: &Answers) -> Result<Score, Problem> {
    let values = ITEMS.map(|id| answers.choice(id));
    let missing: Vec<&str> = ITEMS
        .iter()
        .zip(&values)
        .filter(|(_, v)| v.is_none())
        .map(|(id, _)| *id)
        .collect();
    if missing.len() > MAX_MISSING {
        return Err(Problem::validation(
            missing[0],
            format!(
                "{} of 9 PHQ-9 items are missing ({}); the NHS rule allows at most {MAX_MISSING}",
                missing.len(),
                missing.join(", ")
            ),
        ));
    }
    let answered = values.iter().flatten().count() as u32;
    let sum: u32 = values.iter().flatten().map(|&v| u32::from(v)).sum();
    // mean × 9 == sum × 9 / answered: one division keeps it exact where it can be.
    let total = f64::from(sum * 9) / f64::from(answered);
    let shown = (total + 0.5).floor();
    let mut score = Score::new(&DEFINITION, Some(total), Some(shown));
    if !missing.is_empty() {
        score = score.flag(
            "phq9-prorated",
            FlagKind::DataQuality,
            Some(missing[0]),
            format!(
                "{} replaced by the mean of the answered items (NHS rule, REFERENCE §1.5)",
                missing.join(", ")
            ),
        );
    }
    match values[8] {
        Some(v) if v > 0 => {
            score = score.flag(
                "phq9-item9-positive",
                FlagKind::Safety,
                Some("phq9-9"),
                format!("item 9 (thoughts of death or self-harm) answered {v}: clinician follow-up required"),
            );
        }
        None => {
            score = score.flag(
                "phq9-item9-missing",
                FlagKind::DataQuality,
                Some("phq9-9"),
                "item 9 (thoughts of death or self-harm) was not answered",
            );
        }
        Some(_) => {}
    }
    if shown >= SIGNIFICANT_AT {
        score = score.flag(
            "phq9-significant",
            FlagKind::CutOff,
            None,
            "PHQ-9 of 10 or more: clinically significant depression (REFERENCE §1.5)",
        );
    }
    Ok(score)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{answers_of, band_of};
    use super::*;

    /// REFERENCE §1.5 vectors Q1–Q10; `None` = missing: (id, items 1–9, total, band, item-9 flag).
    #[allow(clippy::type_complexity)] // one row per reference vector
    const VECTORS: &[(&str, [Option<u8>; 9], f64, &str, bool)] = &[
        ("Q1", [Some(0); 9], 0.0, "phq9-minimal", false),
        ("Q2", [Some(3); 9], 27.0, "phq9-severe", true),
        (
            "Q3",
            [
                Some(3),
                Some(0),
                Some(1),
                Some(2),
                Some(0),
                Some(0),
                Some(1),
                Some(0),
                Some(3),
            ],
            10.0,
            "phq9-moderate",
            true,
        ),
        (
            "Q4",
            [
                Some(2),
                Some(2),
                Some(0),
                Some(0),
                Some(0),
                Some(0),
                Some(0),
                Some(0),
                Some(0),
            ],
            4.0,
            "phq9-minimal",
            false,
        ),
        (
            "Q5",
            [
                Some(2),
                Some(3),
                Some(0),
                Some(0),
                Some(0),
                Some(0),
                Some(0),
                Some(0),
                Some(0),
            ],
            5.0,
            "phq9-mild",
            false,
        ),
        (
            "Q6",
            [
                Some(3),
                Some(3),
                Some(3),
                Some(1),
                Some(0),
                Some(0),
                Some(0),
                Some(0),
                Some(0),
            ],
            10.0,
            "phq9-moderate",
            false,
        ),
        (
            "Q7",
            [
                Some(3),
                Some(3),
                Some(3),
                Some(3),
                Some(3),
                Some(0),
                Some(0),
                Some(0),
                Some(0),
            ],
            15.0,
            "phq9-moderately-severe",
            false,
        ),
        (
            "Q8",
            [
                Some(3),
                Some(3),
                Some(3),
                Some(3),
                Some(3),
                Some(3),
                Some(1),
                Some(0),
                Some(0),
            ],
            19.0,
            "phq9-moderately-severe",
            false,
        ),
        (
            "Q9",
            [
                Some(0),
                Some(0),
                Some(0),
                Some(0),
                Some(0),
                Some(0),
                Some(0),
                Some(0),
                Some(1),
            ],
            1.0,
            "phq9-minimal",
            true,
        ),
        (
            "Q10",
            [
                Some(2),
                Some(2),
                Some(2),
                Some(2),
                Some(2),
                Some(2),
                Some(2),
                None,
                None,
            ],
            18.0,
            "phq9-moderately-severe",
            false,
        ),
    ];

    fn answers(items: &[Option<u8>; 9]) -> Answers {
        let (ids, values): (Vec<&str>, Vec<u8>) = ITEMS
            .iter()
            .zip(items)
            .filter_map(|(id, v)| v.map(|v| (*id, v)))
            .unzip();
        answers_of(&DEFINITION, &ids, &values).unwrap()
    }

    #[test]
    fn reference_vectors_score_as_published() {
        for (id, items, total, band, item9) in VECTORS {
            let score = DEFINITION.score(&answers(items)).unwrap();
            assert_eq!(score.total, Some(*total), "{id}");
            assert_eq!(band_of(&score), Some(*band), "{id}");
            assert_eq!(score.has_flag("phq9-item9-positive"), *item9, "{id}");
            assert_eq!(score.needs_safety_follow_up(), *item9, "{id}");
            assert_eq!(score.has_flag("phq9-significant"), *total >= 10.0, "{id}");
        }
    }

    #[test]
    fn two_missing_items_are_prorated_and_flagged() {
        let score = DEFINITION.score(&answers(&VECTORS[9].1)).unwrap();
        let flag = score
            .flags
            .iter()
            .find(|f| f.code == "phq9-prorated")
            .unwrap();
        assert_eq!(flag.kind, FlagKind::DataQuality);
        assert!(flag.detail.contains("phq9-8, phq9-9"), "{}", flag.detail);
        assert!(score.has_flag("phq9-item9-missing"));
    }

    #[test]
    fn three_missing_items_are_a_422_naming_the_first() {
        // Q11: 3 items missing → invalid.
        let items = [
            Some(1),
            None,
            Some(1),
            None,
            Some(1),
            Some(1),
            None,
            Some(1),
            Some(1),
        ];
        let err = DEFINITION.score(&answers(&items)).unwrap_err();
        assert_eq!((err.status, err.field.as_deref()), (422, Some("phq9-2")));
        assert!(
            err.detail.contains("phq9-2, phq9-4, phq9-7"),
            "{}",
            err.detail
        );
    }

    #[test]
    fn a_prorated_fraction_is_kept_and_banded_rounded_half_up() {
        // 8 answered summing to 12: 12 × 9 / 8 = 13.5 → shown 14, still moderate.
        let items = [
            Some(3),
            Some(3),
            Some(3),
            Some(3),
            None,
            Some(0),
            Some(0),
            Some(0),
            Some(0),
        ];
        let score = DEFINITION.score(&answers(&items)).unwrap();
        assert_eq!(score.total, Some(13.5));
        assert_eq!(band_of(&score), Some("phq9-moderate"));
        // 8 answered summing to 13: 14.625 → 15, moderately severe.
        let items = [
            Some(3),
            Some(3),
            Some(3),
            Some(3),
            None,
            Some(1),
            Some(0),
            Some(0),
            Some(0),
        ];
        let score = DEFINITION.score(&answers(&items)).unwrap();
        assert_eq!(score.total, Some(14.625));
        assert_eq!(band_of(&score), Some("phq9-moderately-severe"));
    }

    #[test]
    fn item_nine_raises_the_safety_flag_even_when_prorated() {
        let items = [
            None,
            None,
            Some(0),
            Some(0),
            Some(0),
            Some(0),
            Some(0),
            Some(0),
            Some(2),
        ];
        let score = DEFINITION.score(&answers(&items)).unwrap();
        assert!(score.needs_safety_follow_up());
        assert_eq!(band_of(&score), Some("phq9-minimal"));
    }

    #[test]
    fn item_ten_is_accepted_but_not_scored() {
        let mut a = answers(&[Some(1); 9]);
        a.set_choice("phq9-10", 3).unwrap();
        assert_eq!(DEFINITION.score(&a).unwrap().total, Some(9.0));
        let err = a.set_choice("phq9-10", 4).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("phq9-10"));
    }

    #[test]
    fn an_item_of_four_is_rejected_naming_the_item() {
        let err = answers_of(&DEFINITION, &["phq9-3"], &[4]).unwrap_err();
        assert_eq!((err.status, err.field.as_deref()), (422, Some("phq9-3")));
    }
}
