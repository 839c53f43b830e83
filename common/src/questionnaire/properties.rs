//! Properties over all answer combinations (small instruments) or seeded random samples:
//! every total stays in its published range and never falls when one item rises, where the
//! instrument is monotone (all of them, item-wise; PSQI in Q2, Q5a–j, Q6–Q9 and inversely
//! in Q4).

use serde_json::{Map, Value, json};

use super::answers::Answers;
use super::definition::{Definition, ItemKind};
use super::score::{FLAGS, Score};
use super::{DEFINITIONS, dbas16, ess, gad7, isi, phq9, psqi, who5};

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn max_value(definition: &Definition, link_id: &str) -> u8 {
    let (_, item) = definition.item(link_id).unwrap();
    match item.kind {
        ItemKind::Choice(options) => options.iter().map(|o| o.value).max().unwrap(),
        _ => unreachable!("choice item"),
    }
}

fn choice_answers(definition: &'static Definition, ids: &[&str], values: &[Option<u8>]) -> Answers {
    let mut answers = Answers::empty(definition);
    for (id, v) in ids.iter().zip(values) {
        if let Some(v) = v {
            answers.set_choice(id, *v).unwrap();
        }
    }
    answers
}

fn check_invariants(definition: &Definition, score: &Score) {
    if let Some(total) = score.total {
        assert!(
            definition.total.min <= total && total <= definition.total.max,
            "{}: total {total} outside {}–{}",
            definition.id,
            definition.total.min,
            definition.total.max
        );
    }
    for (c, m) in score.components.iter().zip(definition.components) {
        assert_eq!(c.code, m.code);
        if let Some(v) = c.value {
            assert!(
                m.min <= v && v <= m.max,
                "{}: {} = {v}",
                definition.id,
                c.code
            );
        }
    }
    assert_eq!(
        score.band.is_some(),
        score.total.is_some() && !definition.bands.is_empty(),
        "{}",
        definition.id
    );
    for flag in &score.flags {
        assert!(
            FLAGS.iter().any(|(c, _)| *c == flag.code),
            "unpublished flag {}",
            flag.code
        );
    }
}

/// Scores, checks the range, then raises each item by one and checks the total does not fall.
fn check_monotone(definition: &'static Definition, ids: &[&str], values: &[Option<u8>]) {
    let score = definition
        .score(&choice_answers(definition, ids, values))
        .unwrap();
    check_invariants(definition, &score);
    let total = score.total.unwrap();
    let mut raised = values.to_vec();
    for (i, id) in ids.iter().enumerate() {
        let Some(v) = values[i] else { continue };
        if v == max_value(definition, id) {
            continue;
        }
        raised[i] = Some(v + 1);
        let higher = definition
            .score(&choice_answers(definition, ids, &raised))
            .unwrap();
        assert!(
            higher.total.unwrap() >= total,
            "{}: raising {id} lowered {total}",
            definition.id
        );
        raised[i] = values[i];
    }
}

/// Every combination of item values, by counting in mixed radix.
fn exhaustive(definition: &'static Definition, ids: &[&str]) -> usize {
    let radix: Vec<u8> = ids.iter().map(|id| max_value(definition, id) + 1).collect();
    let mut values = vec![0u8; ids.len()];
    let mut count = 0;
    loop {
        let as_options: Vec<Option<u8>> = values.iter().copied().map(Some).collect();
        check_monotone(definition, ids, &as_options);
        count += 1;
        let mut i = 0;
        loop {
            if i == values.len() {
                return count;
            }
            values[i] += 1;
            if values[i] < radix[i] {
                break;
            }
            values[i] = 0;
            i += 1;
        }
    }
}

#[test]
fn every_isi_ess_gad7_and_who5_combination_stays_in_range_and_is_monotone() {
    assert_eq!(exhaustive(&isi::DEFINITION, &isi::ITEMS), 5usize.pow(7));
    assert_eq!(exhaustive(&ess::DEFINITION, &ess::ITEMS), 4usize.pow(8));
    assert_eq!(exhaustive(&gad7::DEFINITION, &gad7::ITEMS), 4usize.pow(7));
    assert_eq!(exhaustive(&who5::DEFINITION, &who5::ITEMS), 6usize.pow(5));
}

#[test]
fn sampled_phq9_and_dbas16_answers_stay_in_range_and_are_monotone() {
    let mut rng = Rng(0x5EED_D7A0_0000_0001);
    for _ in 0..20_000 {
        let values: Vec<Option<u8>> = dbas16::ITEMS
            .iter()
            .map(|_| Some(rng.below(11) as u8))
            .collect();
        check_monotone(&dbas16::DEFINITION, &dbas16::ITEMS, &values);
    }
    for _ in 0..20_000 {
        let mut values: Vec<Option<u8>> = phq9::ITEMS
            .iter()
            .map(|_| Some(rng.below(4) as u8))
            .collect();
        // Up to 2 missing items, which the NHS rule prorates.
        for _ in 0..rng.below(3) {
            values[rng.below(9) as usize] = None;
        }
        check_monotone(&phq9::DEFINITION, &phq9::ITEMS, &values);
    }
}

#[test]
fn every_phq9_with_a_positive_item_nine_raises_the_safety_flag() {
    let mut rng = Rng(0x5EED_D7A0_0000_0002);
    for _ in 0..5_000 {
        let mut values: Vec<Option<u8>> = phq9::ITEMS
            .iter()
            .map(|_| Some(rng.below(4) as u8))
            .collect();
        values[rng.below(8) as usize] = None;
        let score = phq9::DEFINITION
            .score(&choice_answers(&phq9::DEFINITION, &phq9::ITEMS, &values))
            .unwrap();
        assert_eq!(
            score.needs_safety_follow_up(),
            values[8].unwrap() > 0,
            "{values:?}"
        );
    }
}

const PSQI_CHOICES: [&str; 14] = [
    "psqi-5a", "psqi-5b", "psqi-5c", "psqi-5d", "psqi-5e", "psqi-5f", "psqi-5g", "psqi-5h",
    "psqi-5i", "psqi-5j", "psqi-6", "psqi-7", "psqi-8", "psqi-9",
];

fn psqi_score(map: &Map<String, Value>) -> Score {
    let answers = Answers::from_json(&psqi::DEFINITION, &Value::Object(map.clone())).unwrap();
    psqi::DEFINITION.score(&answers).unwrap()
}

#[test]
fn sampled_psqi_answers_stay_in_range_and_are_monotone() {
    let mut rng = Rng(0x5EED_D7A0_0000_0003);
    for _ in 0..5_000 {
        let mut map = Map::new();
        let clock = |rng: &mut Rng| {
            let m = rng.below(24 * 60);
            format!("{:02}:{:02}", m / 60, m % 60)
        };
        map.insert("psqi-1".into(), json!(clock(&mut rng)));
        map.insert("psqi-3".into(), json!(clock(&mut rng)));
        map.insert("psqi-2".into(), json!(rng.below(2 * 180) as f64 / 2.0));
        map.insert(
            "psqi-4".into(),
            json!(rng.below(24 * 100 + 1) as f64 / 100.0),
        );
        for id in PSQI_CHOICES {
            map.insert(id.into(), json!(rng.below(4)));
        }
        map.insert("psqi-5j-comment".into(), json!("other"));
        let score = psqi_score(&map);
        check_invariants(&psqi::DEFINITION, &score);
        let Some(global) = score.total else {
            assert!(score.has_flag("psqi-tib-zero"));
            continue;
        };
        for id in PSQI_CHOICES {
            let v = map[id].as_u64().unwrap();
            if v < 3 {
                let mut raised = map.clone();
                raised.insert(id.into(), json!(v + 1));
                assert!(
                    psqi_score(&raised).total.unwrap() >= global,
                    "raising {id}: {map:?}"
                );
            }
        }
        let mut later = map.clone();
        later.insert(
            "psqi-2".into(),
            json!(map["psqi-2"].as_f64().unwrap() + 7.5),
        );
        assert!(
            psqi_score(&later).total.unwrap() >= global,
            "longer latency: {map:?}"
        );
        let sleep = map["psqi-4"].as_f64().unwrap();
        if sleep <= 23.5 {
            let mut more = map.clone();
            more.insert("psqi-4".into(), json!(sleep + 0.5));
            assert!(
                psqi_score(&more).total.unwrap() <= global,
                "more sleep: {map:?}"
            );
        }
        // Dropping any scored item drops the global score, never prorates it.
        let mut partial = map.clone();
        let all: Vec<String> = map
            .keys()
            .filter(|k| *k != "psqi-5j" && *k != "psqi-5j-comment")
            .cloned()
            .collect();
        partial.remove(&all[rng.below(all.len() as u64) as usize]);
        assert_eq!(psqi_score(&partial).total, None, "{partial:?}");
    }
}

#[test]
fn every_definition_is_covered_by_a_property() {
    let covered = [
        isi::DEFINITION.id,
        ess::DEFINITION.id,
        gad7::DEFINITION.id,
        who5::DEFINITION.id,
        phq9::DEFINITION.id,
        dbas16::DEFINITION.id,
        psqi::DEFINITION.id,
    ];
    for d in DEFINITIONS {
        assert!(covered.contains(&d.id), "{}", d.id);
    }
}
