//! Validated questionnaires (ISI, PSQI, ESS, DBAS-16, PHQ-9, GAD-7, WHO-5): definitions as
//! data, pure scoring stamped with an algorithm version, and the FHIR R4 form of both
//! (REFERENCE §1, §4). No I/O: the `questionnaire-scoring` function stores and serves them.
//!
//! Flow: [`Answers::from_json`] (or [`fhir::parse_questionnaire_response`]) checks every
//! answer against its [`Definition`] → [`Definition::score`] → [`Score`] →
//! [`fhir::observation`].

#![allow(clippy::result_large_err)] // `Problem` is the API error body, built at most once per request.

mod answers;
mod definition;
pub mod fhir;
mod score;

pub mod dbas16;
pub mod ess;
pub mod gad7;
pub mod isi;
pub mod phq9;
pub mod psqi;
pub mod who5;

#[cfg(test)]
mod properties;

pub use answers::{Answer, Answers, format_time, parse_time};
pub use definition::{
    AnswerOption, BASE_URL, Band, Definition, Instrument, Item, ItemKind, Measure,
};
pub use score::{BandRef, Component, Flag, FlagKind, Score};

use crate::error::Problem;

/// Every published definition, all versions; the current one of each instrument first.
pub static DEFINITIONS: [&Definition; 7] = [
    &isi::DEFINITION,
    &psqi::DEFINITION,
    &ess::DEFINITION,
    &dbas16::DEFINITION,
    &phq9::DEFINITION,
    &gad7::DEFINITION,
    &who5::DEFINITION,
];

/// The definition with this resource id (`isi-1`).
pub fn definition(id: &str) -> Option<&'static Definition> {
    DEFINITIONS.iter().copied().find(|d| d.id == id)
}

/// The version new responses to this instrument are given for.
pub fn current(instrument: Instrument) -> &'static Definition {
    DEFINITIONS
        .iter()
        .copied()
        .find(|d| d.instrument == instrument)
        .expect("every instrument has a definition")
}

/// The definition a canonical reference (`…/Questionnaire/isi|1`, or without `|version` for
/// the current one) points to.
pub fn by_canonical(field: &str, reference: &str) -> Result<&'static Definition, Problem> {
    let (url, version) = match reference.split_once('|') {
        Some((url, version)) => (url, Some(version)),
        None => (reference, None),
    };
    let found = DEFINITIONS
        .iter()
        .copied()
        .find(|d| d.url() == url && version.is_none_or(|v| v == d.version));
    found.ok_or_else(|| {
        Problem::validation(
            field,
            format!("{reference:?} is not a questionnaire published here"),
        )
    })
}

/// Re-scores stored answers with the scoring rules now in force; the caller keeps the old
/// [`Score`] next to the new one.
pub fn rescore(answers: &Answers) -> Result<Score, Problem> {
    answers.definition().score(answers)
}

#[cfg(test)]
pub(crate) mod testing {
    use serde_json::{Map, Value};

    use super::*;

    /// Answers from parallel lists of linkIds and choice values, through the JSON parser.
    pub fn answers_of(
        definition: &'static Definition,
        link_ids: &[&str],
        values: &[u8],
    ) -> Result<Answers, Problem> {
        assert_eq!(link_ids.len(), values.len());
        let map: Map<String, Value> = link_ids
            .iter()
            .zip(values)
            .map(|(id, v)| ((*id).to_owned(), Value::from(*v)))
            .collect();
        Answers::from_json(definition, &Value::Object(map))
    }

    pub fn band_of(score: &Score) -> Option<&str> {
        score.band.as_ref().map(|b| b.code.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use serde_json::json;

    use super::testing::answers_of;
    use super::*;

    #[test]
    fn every_instrument_has_exactly_one_current_definition() {
        for instrument in Instrument::ALL {
            assert_eq!(current(instrument).instrument, instrument);
        }
        let ids: HashSet<&str> = DEFINITIONS.iter().map(|d| d.id).collect();
        assert_eq!(ids.len(), DEFINITIONS.len());
    }

    #[test]
    fn link_ids_and_codes_are_unique_across_all_instruments() {
        let mut link_ids = HashSet::new();
        let mut codes = HashSet::new();
        for d in DEFINITIONS {
            for item in d.items {
                assert!(
                    link_ids.insert(item.link_id),
                    "duplicate linkId {}",
                    item.link_id
                );
            }
            for code in std::iter::once(d.total.code)
                .chain(d.components.iter().map(|m| m.code))
                .chain(d.bands.iter().map(|b| b.code))
            {
                assert!(codes.insert(code), "duplicate code {code}");
            }
        }
    }

    #[test]
    fn bands_cover_the_total_range_without_gaps_or_overlaps() {
        for d in DEFINITIONS.iter().filter(|d| !d.bands.is_empty()) {
            assert_eq!(d.bands[0].min, d.total.min, "{}", d.id);
            assert_eq!(d.bands.last().unwrap().max, d.total.max, "{}", d.id);
            for pair in d.bands.windows(2) {
                assert_eq!(pair[0].max + 1.0, pair[1].min, "{}", d.id);
            }
        }
    }

    #[test]
    fn scored_item_lists_match_the_definitions() {
        let lists: [(&Definition, &[&str]); 6] = [
            (&isi::DEFINITION, &isi::ITEMS),
            (&ess::DEFINITION, &ess::ITEMS),
            (&dbas16::DEFINITION, &dbas16::ITEMS),
            (&phq9::DEFINITION, &phq9::ITEMS),
            (&gad7::DEFINITION, &gad7::ITEMS),
            (&who5::DEFINITION, &who5::ITEMS),
        ];
        for (d, ids) in lists {
            let scored: Vec<&str> = d
                .items
                .iter()
                .filter(|i| i.scored)
                .map(|i| i.link_id)
                .collect();
            assert_eq!(scored, ids, "{}", d.id);
        }
    }

    #[test]
    fn canonical_references_resolve_with_and_without_version() {
        let url = "https://dta-wide.de/fhir/Questionnaire/phq-9";
        assert_eq!(by_canonical("questionnaire", url).unwrap().id, "phq-9-1");
        assert_eq!(
            by_canonical("questionnaire", &format!("{url}|1"))
                .unwrap()
                .id,
            "phq-9-1"
        );
        let err = by_canonical("questionnaire", &format!("{url}|9")).unwrap_err();
        assert_eq!(
            (err.status, err.field.as_deref()),
            (422, Some("questionnaire"))
        );
    }

    #[test]
    fn answers_round_trip_through_their_plain_json() {
        let answers = Answers::from_json(
            &psqi::DEFINITION,
            &json!({"psqi-1": "23:30", "psqi-2": 12.5, "psqi-4": 6.25, "psqi-5j-comment": "noise", "psqi-6": 2}),
        )
        .unwrap();
        let again = Answers::from_json(&psqi::DEFINITION, &answers.to_json()).unwrap();
        assert_eq!(again, answers);
    }

    #[test]
    fn a_body_that_is_not_an_object_is_a_422() {
        let err = Answers::from_json(&isi::DEFINITION, &json!([1, 2, 3])).unwrap_err();
        assert_eq!((err.status, err.field.as_deref()), (422, Some("answers")));
    }

    #[test]
    fn an_unknown_link_id_is_a_422_naming_it() {
        let err = answers_of(&isi::DEFINITION, &["isi-8"], &[0]).unwrap_err();
        assert_eq!((err.status, err.field.as_deref()), (422, Some("isi-8")));
        // Another instrument's item is unknown too.
        let err = answers_of(&isi::DEFINITION, &["gad7-1"], &[0]).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("gad7-1"));
    }

    #[test]
    fn wrong_types_are_a_422_naming_the_item() {
        for value in [
            json!("2"),
            json!(2.0),
            json!(true),
            json!([2]),
            json!({"value": 2}),
            json!(-1),
            json!(u64::MAX),
        ] {
            let err =
                Answers::from_json(&gad7::DEFINITION, &json!({ "gad7-3": value })).unwrap_err();
            assert_eq!(
                (err.status, err.field.as_deref()),
                (422, Some("gad7-3")),
                "{value}"
            );
        }
    }

    #[test]
    fn answers_for_one_definition_are_refused_by_another() {
        let answers = answers_of(&isi::DEFINITION, &isi::ITEMS, &[0; 7]).unwrap();
        let err = gad7::DEFINITION.score(&answers).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("questionnaire"));
        assert_eq!(rescore(&answers).unwrap().total, Some(0.0));
    }

    #[test]
    fn instrument_names_parse_and_print() {
        for i in Instrument::ALL {
            assert_eq!(Instrument::parse("instrument", i.as_str()).unwrap(), i);
            assert_eq!(serde_json::to_value(i).unwrap(), json!(i.as_str()));
        }
        assert_eq!(
            Instrument::parse("instrument", "PHQ9")
                .unwrap_err()
                .field
                .as_deref(),
            Some("instrument")
        );
    }
}
