//! DBAS-16: mean of 16 items with four subscales (Morin et al., Sleep 2007;30(11):1547;
//! REFERENCE §1.4).

use crate::error::Problem;

use super::answers::Answers;
use super::definition::{AnswerOption, Definition, Instrument, Item, ItemKind, Measure};
use super::score::{FlagKind, Score};

pub const ITEMS: [&str; 16] = [
    "dbas16-1",
    "dbas16-2",
    "dbas16-3",
    "dbas16-4",
    "dbas16-5",
    "dbas16-6",
    "dbas16-7",
    "dbas16-8",
    "dbas16-9",
    "dbas16-10",
    "dbas16-11",
    "dbas16-12",
    "dbas16-13",
    "dbas16-14",
    "dbas16-15",
    "dbas16-16",
];

/// Item numbers (1-based) per subscale: Morin 2007 factor structure (REFERENCE §1.4).
const CONSEQUENCES: &[usize] = &[5, 7, 9, 12, 16];
const WORRY: &[usize] = &[3, 4, 8, 10, 11, 14];
const EXPECTATIONS: &[usize] = &[1, 2];
const MEDICATION: &[usize] = &[6, 13, 15];

/// Mean > 3.8 = clinically significant unhelpful beliefs (Carney et al. 2010, REFERENCE §1.4),
/// compared exactly as sum × 10 > 38 × 16.
const CUT_OFF_TENTHS: u32 = 38;

const fn opt(value: u8, display: &'static str) -> AnswerOption {
    AnswerOption {
        value,
        display,
        loinc: None,
    }
}

// 0 strongly disagree … 10 strongly agree (REFERENCE §1.4, Blueprint).
const AGREEMENT: &[AnswerOption] = &[
    opt(0, "0 Strongly disagree"),
    opt(1, "1"),
    opt(2, "2"),
    opt(3, "3"),
    opt(4, "4"),
    opt(5, "5"),
    opt(6, "6"),
    opt(7, "7"),
    opt(8, "8"),
    opt(9, "9"),
    opt(10, "10 Strongly agree"),
];

const fn item(link_id: &'static str, text: &'static str) -> Item {
    Item {
        link_id,
        text,
        kind: ItemKind::Choice(AGREEMENT),
        required: true,
        loinc: None,
        scored: true,
    }
}

const fn subscale(code: &'static str, display: &'static str) -> Measure {
    Measure {
        code,
        display,
        loinc: None,
        min: 0.0,
        max: 10.0,
        unit: "{score}",
    }
}

const SUBSCALES: &[Measure] = &[
    subscale(
        "dbas16-consequences",
        "DBAS-16 consequences of insomnia (mean)",
    ),
    subscale(
        "dbas16-worry",
        "DBAS-16 worry and helplessness about sleep (mean)",
    ),
    subscale("dbas16-expectations", "DBAS-16 sleep expectations (mean)"),
    subscale("dbas16-medication", "DBAS-16 medication (mean)"),
];

pub static DEFINITION: Definition = Definition {
    instrument: Instrument::Dbas16,
    id: "dbas-16-1",
    version: "1",
    name: "DBAS16",
    title: "Dysfunctional Beliefs and Attitudes about Sleep (DBAS-16)",
    recall_period: "current beliefs (no recall period)",
    source: "Morin et al., Sleep 2007;30(11):1547; Carney et al. 2010 (REFERENCE §1.4)",
    loinc_panel: None, // REFERENCE §4.2: not found
    // Short labels of the statements; the licensed wording is shown by the app.
    items: &[
        item(
            "dbas16-1",
            "I need 8 hours of sleep to feel refreshed and function well during the day",
        ),
        item(
            "dbas16-2",
            "After a poor night I need to catch up by napping or sleeping longer the next night",
        ),
        item(
            "dbas16-3",
            "Chronic insomnia may have serious consequences on my physical health",
        ),
        item(
            "dbas16-4",
            "I am worried that I may lose control over my ability to sleep",
        ),
        item(
            "dbas16-5",
            "After a poor night's sleep, it will interfere with my activities the next day",
        ),
        item(
            "dbas16-6",
            "I would be better off taking a sleeping pill than having a poor night's sleep",
        ),
        item(
            "dbas16-7",
            "When irritable, depressed or anxious during the day, it is mostly because I slept badly",
        ),
        item(
            "dbas16-8",
            "When I sleep poorly one night, it will disturb my sleep schedule for the whole week",
        ),
        item(
            "dbas16-9",
            "Without an adequate night's sleep, I can hardly function the next day",
        ),
        item(
            "dbas16-10",
            "I can't ever predict whether I'll have a good or poor night's sleep",
        ),
        item(
            "dbas16-11",
            "I have little ability to manage the negative consequences of disturbed sleep",
        ),
        item(
            "dbas16-12",
            "When tired or not functioning well during the day, it is generally because I slept badly",
        ),
        item(
            "dbas16-13",
            "Insomnia is essentially the result of a chemical imbalance",
        ),
        item(
            "dbas16-14",
            "Insomnia is ruining my ability to enjoy life and prevents me doing what I want",
        ),
        item(
            "dbas16-15",
            "Medication is probably the only solution to sleeplessness",
        ),
        item(
            "dbas16-16",
            "I avoid or cancel obligations after a poor night's sleep",
        ),
    ],
    // Total = mean of the 16 items, 0–10, not the sum (REFERENCE §1.4).
    total: Measure {
        code: "dbas16-mean",
        display: "DBAS-16 total (mean)",
        loinc: None,
        min: 0.0,
        max: 10.0,
        unit: "{score}",
    },
    components: SUBSCALES,
    // REFERENCE §1.4 gives a cut-off, not bands.
    bands: &[],
    algorithm: "dbas-16@1.0.0",
    scorer: score,
};

/// Mean of all 16 items and the four subscale means; every item required (REFERENCE §1.4:
/// no official missing rule). Only the total is compared with 3.8.
pub fn score(answers: &Answers) -> Result<Score, Problem> {
    let items = answers.require_choices(ITEMS)?;
    let sum: u32 = items.iter().map(|&v| u32::from(v)).sum();
    let mean_of = |numbers: &[usize]| {
        let s: u32 = numbers.iter().map(|&n| u32::from(items[n - 1])).sum();
        f64::from(s) / numbers.len() as f64
    };
    let mut score = Score::new(&DEFINITION, Some(f64::from(sum) / 16.0), None);
    for (measure, numbers) in SUBSCALES
        .iter()
        .zip([CONSEQUENCES, WORRY, EXPECTATIONS, MEDICATION])
    {
        score = score.component(measure, Some(mean_of(numbers)));
    }
    if sum * 10 > CUT_OFF_TENTHS * 16 {
        score = score.flag(
            "dbas16-above-cut-off",
            FlagKind::CutOff,
            None,
            "DBAS-16 mean above 3.8: unhelpful beliefs at the level seen in clinical insomnia (REFERENCE §1.4)",
        );
    }
    Ok(score)
}

#[cfg(test)]
mod tests {
    use super::super::testing::answers_of;
    use super::*;

    /// REFERENCE §1.4 vectors D1–D4: (id, items, mean, above 3.8, subscale means).
    #[allow(clippy::type_complexity)] // one row per reference vector
    const VECTORS: &[(&str, [u8; 16], f64, bool, [f64; 4])] = &[
        ("D1", [0; 16], 0.0, false, [0.0, 0.0, 0.0, 0.0]),
        ("D2", [10; 16], 10.0, true, [10.0, 10.0, 10.0, 10.0]),
        (
            "D3",
            [8, 8, 5, 6, 7, 2, 6, 4, 7, 5, 3, 8, 1, 6, 0, 7],
            5.1875,
            true,
            [7.0, 29.0 / 6.0, 8.0, 1.0],
        ),
        (
            "D4",
            [4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 3, 3, 3, 3],
            3.75,
            false,
            [3.8, 23.0 / 6.0, 4.0, 10.0 / 3.0],
        ),
    ];

    #[test]
    fn reference_vectors_give_mean_subscales_and_cut_off() {
        for (id, items, mean, above, subscales) in VECTORS {
            let score = DEFINITION
                .score(&answers_of(&DEFINITION, &ITEMS, items).unwrap())
                .unwrap();
            assert_eq!(score.total, Some(*mean), "{id}");
            assert_eq!(score.has_flag("dbas16-above-cut-off"), *above, "{id}");
            let got: Vec<f64> = score.components.iter().map(|c| c.value.unwrap()).collect();
            for (g, want) in got.iter().zip(subscales) {
                assert!((g - want).abs() < 1e-12, "{id}: {got:?}");
            }
            assert_eq!(score.band, None, "{id}");
        }
    }

    #[test]
    fn a_mean_just_above_3_8_is_above_the_cut_off() {
        // sum 60.8 is impossible; 61 / 16 = 3.8125 is above, 60 / 16 = 3.75 is not.
        let mut items = [4u8; 16];
        items[12..].copy_from_slice(&[3, 3, 3, 4]);
        let score = DEFINITION
            .score(&answers_of(&DEFINITION, &ITEMS, &items).unwrap())
            .unwrap();
        assert_eq!(score.total, Some(3.8125));
        assert!(score.has_flag("dbas16-above-cut-off"));
    }

    #[test]
    fn an_item_of_eleven_is_rejected_naming_the_item() {
        let mut items = [0u8; 16];
        items[15] = 11;
        let err = answers_of(&DEFINITION, &ITEMS, &items).unwrap_err();
        assert_eq!((err.status, err.field.as_deref()), (422, Some("dbas16-16")));
    }
}
