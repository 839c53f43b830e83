//! Epworth Sleepiness Scale, 1997 version (REFERENCE §1.3).

use crate::error::Problem;

use super::answers::Answers;
use super::definition::{AnswerOption, Band, Definition, Instrument, Item, ItemKind, Measure};
use super::score::{FlagKind, Score};

pub const ITEMS: [&str; 8] = [
    "ess-1", "ess-2", "ess-3", "ess-4", "ess-5", "ess-6", "ess-7", "ess-8",
];

const fn opt(value: u8, display: &'static str) -> AnswerOption {
    AnswerOption {
        value,
        display,
        loinc: None,
    }
}

// 0 would never doze … 3 high chance (REFERENCE §1.3).
const CHANCE: &[AnswerOption] = &[
    opt(0, "Would never doze"),
    opt(1, "Slight chance of dozing"),
    opt(2, "Moderate chance of dozing"),
    opt(3, "High chance of dozing"),
];

const fn item(link_id: &'static str, text: &'static str) -> Item {
    Item {
        link_id,
        text,
        kind: ItemKind::Choice(CHANCE),
        required: true,
        loinc: None,
        scored: true,
    }
}

/// ESS > 10 = excessive daytime sleepiness (REFERENCE §1.3, recommended table).
const EDS_ABOVE: f64 = 10.0;

pub static DEFINITION: Definition = Definition {
    instrument: Instrument::Ess,
    id: "ess-1",
    version: "1",
    name: "ESS",
    title: "Epworth Sleepiness Scale",
    // The ESS asks about "recent times"; it names no fixed period (REFERENCE §1.3 items).
    recall_period: "recent times",
    source: "Johns; epworthsleepinessscale.com, 1997 version, licence required (REFERENCE §1.3)",
    loinc_panel: None, // REFERENCE §4.2: not found
    // Situation labels only; the licensed wording is shown by the app.
    items: &[
        item("ess-1", "Sitting and reading"),
        item("ess-2", "Watching TV"),
        item("ess-3", "Sitting, inactive in a public place"),
        item(
            "ess-4",
            "As a passenger in a car for an hour without a break",
        ),
        item(
            "ess-5",
            "Lying down to rest in the afternoon when circumstances permit",
        ),
        item("ess-6", "Sitting and talking to someone"),
        item("ess-7", "Sitting quietly after a lunch without alcohol"),
        item(
            "ess-8",
            "In a car, while stopped for a few minutes in the traffic",
        ),
    ],
    // Sum 0–24 (REFERENCE §1.3).
    total: Measure {
        code: "ess-total",
        display: "ESS total score",
        loinc: None,
        min: 0.0,
        max: 24.0,
        unit: "{score}",
    },
    components: &[],
    // The recommended table of REFERENCE §1.3; the WashU, GPnotebook and other tables in
    // circulation differ and are not used.
    bands: &[
        Band {
            code: "ess-lower-normal",
            display: "Lower normal daytime sleepiness",
            min: 0.0,
            max: 5.0,
        },
        Band {
            code: "ess-higher-normal",
            display: "Higher normal daytime sleepiness",
            min: 6.0,
            max: 10.0,
        },
        Band {
            code: "ess-mild",
            display: "Mild excessive daytime sleepiness",
            min: 11.0,
            max: 12.0,
        },
        Band {
            code: "ess-moderate",
            display: "Moderate excessive daytime sleepiness",
            min: 13.0,
            max: 15.0,
        },
        Band {
            code: "ess-severe",
            display: "Severe excessive daytime sleepiness",
            min: 16.0,
            max: 24.0,
        },
    ],
    algorithm: "ess@1.0.0",
    scorer: score,
};

/// Sum of the eight items; any missing item makes the ESS missing (REFERENCE §1.3, NSRR).
pub fn score(answers: &Answers) -> Result<Score, Problem> {
    let items = answers.require_choices(ITEMS)?;
    let total = f64::from(items.iter().map(|&v| u32::from(v)).sum::<u32>());
    let mut score = Score::new(&DEFINITION, Some(total), Some(total));
    if total > EDS_ABOVE {
        score = score.flag(
            "ess-eds",
            FlagKind::CutOff,
            None,
            "ESS above 10: excessive daytime sleepiness (REFERENCE §1.3)",
        );
    }
    Ok(score)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{answers_of, band_of};
    use super::*;

    /// REFERENCE §1.3 vectors E1–E6: (id, items 1–8, total, band, EDS).
    const VECTORS: &[(&str, [u8; 8], f64, &str, bool)] = &[
        (
            "E1",
            [0, 0, 0, 0, 0, 0, 0, 0],
            0.0,
            "ess-lower-normal",
            false,
        ),
        ("E2", [1, 1, 1, 1, 2, 2, 2, 2], 12.0, "ess-mild", true),
        ("E3", [3, 3, 3, 3, 3, 3, 3, 3], 24.0, "ess-severe", true),
        ("E4", [3, 2, 1, 0, 0, 1, 3, 3], 13.0, "ess-moderate", true),
        (
            "E5",
            [2, 2, 1, 1, 2, 1, 1, 0],
            10.0,
            "ess-higher-normal",
            false,
        ),
        ("E6", [2, 2, 1, 1, 2, 1, 1, 1], 11.0, "ess-mild", true),
    ];

    #[test]
    fn reference_vectors_score_with_the_recommended_bands() {
        for (id, items, total, band, eds) in VECTORS {
            let score = DEFINITION
                .score(&answers_of(&DEFINITION, &ITEMS, items).unwrap())
                .unwrap();
            assert_eq!(score.total, Some(*total), "{id}");
            assert_eq!(band_of(&score), Some(*band), "{id}");
            assert_eq!(score.has_flag("ess-eds"), *eds, "{id}");
        }
    }

    #[test]
    fn an_item_of_four_is_rejected_naming_the_item() {
        let err = answers_of(&DEFINITION, &ITEMS, &[0, 0, 4, 0, 0, 0, 0, 0]).unwrap_err();
        assert_eq!((err.status, err.field.as_deref()), (422, Some("ess-3")));
    }

    #[test]
    fn a_missing_item_makes_the_ess_a_422() {
        let answers = answers_of(&DEFINITION, &ITEMS[1..], &[0; 7]).unwrap();
        let err = DEFINITION.score(&answers).unwrap_err();
        assert_eq!((err.status, err.field.as_deref()), (422, Some("ess-1")));
    }
}
