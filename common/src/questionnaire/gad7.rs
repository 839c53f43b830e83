//! GAD-7 (Spitzer et al., Arch Intern Med 2006;166:1092; REFERENCE §1.6).

use crate::error::Problem;

use super::answers::Answers;
use super::definition::{Band, Definition, Instrument, Item, ItemKind, Measure};
// Same 0–3 anchors and LOINC answer codes as the PHQ (REFERENCE §1.6, HL7 PHR IG example).
use super::phq9::FREQUENCY;
use super::score::{FlagKind, Score};

pub const ITEMS: [&str; 7] = [
    "gad7-1", "gad7-2", "gad7-3", "gad7-4", "gad7-5", "gad7-6", "gad7-7",
];

/// ≥ 10 → refer for assessment (REFERENCE §1.6, World Rugby; Spitzer 2006).
const REFER_AT: f64 = 10.0;

const fn item(link_id: &'static str, text: &'static str, loinc: &'static str) -> Item {
    Item {
        link_id,
        text,
        kind: ItemKind::Choice(FREQUENCY),
        required: true,
        loinc: Some(loinc),
        scored: true,
    }
}

pub static DEFINITION: Definition = Definition {
    instrument: Instrument::Gad7,
    id: "gad-7-1",
    version: "1",
    name: "GAD7",
    title: "Generalized Anxiety Disorder 7-item scale (GAD-7)",
    recall_period: "the last 2 weeks",
    source: "Spitzer et al. 2006; HL7 PHR IG GAD-7 example (REFERENCE §1.6, §4.2)",
    // Panel and item codes confirmed in REFERENCE §4.2.
    loinc_panel: Some("69737-5"),
    items: &[
        item("gad7-1", "Feeling nervous, anxious, or on edge", "69725-0"),
        item(
            "gad7-2",
            "Not being able to stop or control worrying",
            "68509-9",
        ),
        item(
            "gad7-3",
            "Worrying too much about different things",
            "69733-4",
        ),
        item("gad7-4", "Trouble relaxing", "69734-2"),
        item(
            "gad7-5",
            "Being so restless that it is hard to sit still",
            "69735-9",
        ),
        item("gad7-6", "Becoming easily annoyed or irritable", "69689-8"),
        item(
            "gad7-7",
            "Feeling afraid, as if something awful might happen",
            "69736-7",
        ),
    ],
    // Sum 0–21 (REFERENCE §1.6); total-score LOINC 70274-6 (REFERENCE §4.2).
    total: Measure {
        code: "gad7-total",
        display: "GAD-7 total score",
        loinc: Some("70274-6"),
        min: 0.0,
        max: 21.0,
        unit: "{score}",
    },
    components: &[],
    // Cut points 5/10/15 (REFERENCE §1.6); the 0–4 label is "minimal", not awell's "no anxiety".
    bands: &[
        Band {
            code: "gad7-minimal",
            display: "Minimal anxiety",
            min: 0.0,
            max: 4.0,
        },
        Band {
            code: "gad7-mild",
            display: "Mild anxiety",
            min: 5.0,
            max: 9.0,
        },
        Band {
            code: "gad7-moderate",
            display: "Moderate anxiety",
            min: 10.0,
            max: 14.0,
        },
        Band {
            code: "gad7-severe",
            display: "Severe anxiety",
            min: 15.0,
            max: 21.0,
        },
    ],
    algorithm: "gad-7@1.0.0",
    scorer: score,
};

/// Sum of the seven items; every item required (REFERENCE §1.6: no official missing rule).
pub fn score(answers: &Answers) -> Result<Score, Problem> {
    let items = answers.require_choices(ITEMS)?;
    let total = f64::from(items.iter().map(|&v| u32::from(v)).sum::<u32>());
    let mut score = Score::new(&DEFINITION, Some(total), Some(total));
    if total >= REFER_AT {
        score = score.flag(
            "gad7-refer",
            FlagKind::CutOff,
            None,
            "GAD-7 of 10 or more: refer for assessment (REFERENCE §1.6)",
        );
    }
    Ok(score)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{answers_of, band_of};
    use super::*;

    /// REFERENCE §1.6 vectors G1–G9: (id, items 1–7, total, band).
    const VECTORS: &[(&str, [u8; 7], f64, &str)] = &[
        ("G1", [0, 0, 0, 0, 0, 0, 0], 0.0, "gad7-minimal"),
        ("G2", [3, 3, 3, 3, 3, 3, 3], 21.0, "gad7-severe"),
        ("G3", [3, 0, 1, 2, 0, 0, 1], 7.0, "gad7-mild"),
        ("G4", [2, 2, 0, 0, 0, 0, 0], 4.0, "gad7-minimal"),
        ("G5", [2, 2, 1, 0, 0, 0, 0], 5.0, "gad7-mild"),
        ("G6", [2, 2, 2, 2, 1, 0, 0], 9.0, "gad7-mild"),
        ("G7", [2, 2, 2, 2, 2, 0, 0], 10.0, "gad7-moderate"),
        ("G8", [2, 2, 2, 2, 2, 2, 2], 14.0, "gad7-moderate"),
        ("G9", [3, 2, 2, 2, 2, 2, 2], 15.0, "gad7-severe"),
    ];

    #[test]
    fn reference_vectors_score_as_published() {
        for (id, items, total, band) in VECTORS {
            let score = DEFINITION
                .score(&answers_of(&DEFINITION, &ITEMS, items).unwrap())
                .unwrap();
            assert_eq!(score.total, Some(*total), "{id}");
            assert_eq!(band_of(&score), Some(*band), "{id}");
            assert_eq!(score.has_flag("gad7-refer"), *total >= 10.0, "{id}");
        }
    }

    #[test]
    fn an_item_of_four_is_rejected_naming_the_item() {
        let err = answers_of(&DEFINITION, &ITEMS, &[0, 4, 0, 0, 0, 0, 0]).unwrap_err();
        assert_eq!((err.status, err.field.as_deref()), (422, Some("gad7-2")));
    }

    #[test]
    fn a_missing_item_is_a_422_naming_it() {
        let answers = answers_of(&DEFINITION, &ITEMS[..6], &[1; 6]).unwrap();
        let err = DEFINITION.score(&answers).unwrap_err();
        assert_eq!((err.status, err.field.as_deref()), (422, Some("gad7-7")));
    }
}
