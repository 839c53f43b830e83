//! Scoring cost per instrument: validating a plain JSON answer map and scoring it, and
//! scoring already validated answers. Run with `cargo bench -p common --bench scoring`.

use std::hint::black_box;

use common::questionnaire::{Answers, Definition, dbas16, ess, gad7, isi, phq9, psqi, who5};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};

fn choices(ids: &[&str], values: &[u8]) -> Value {
    Value::Object(
        ids.iter()
            .zip(values)
            .map(|(id, v)| ((*id).to_owned(), json!(v)))
            .collect(),
    )
}

fn cases() -> Vec<(&'static Definition, Value)> {
    vec![
        // REFERENCE §1 vectors I4, E4, D3, Q3, G3, W4 and LCBC row 5.
        (
            &isi::DEFINITION,
            choices(&isi::ITEMS, &[1, 2, 1, 0, 0, 3, 2]),
        ),
        (
            &ess::DEFINITION,
            choices(&ess::ITEMS, &[3, 2, 1, 0, 0, 1, 3, 3]),
        ),
        (
            &dbas16::DEFINITION,
            choices(
                &dbas16::ITEMS,
                &[8, 8, 5, 6, 7, 2, 6, 4, 7, 5, 3, 8, 1, 6, 0, 7],
            ),
        ),
        (
            &phq9::DEFINITION,
            choices(&phq9::ITEMS, &[3, 0, 1, 2, 0, 0, 1, 0, 3]),
        ),
        (
            &gad7::DEFINITION,
            choices(&gad7::ITEMS, &[3, 0, 1, 2, 0, 0, 1]),
        ),
        (&who5::DEFINITION, choices(&who5::ITEMS, &[4, 1, 0, 2, 3])),
        (
            &psqi::DEFINITION,
            json!({
                "psqi-1": "23:30", "psqi-2": 30, "psqi-3": "06:45", "psqi-4": 6,
                "psqi-5a": 2, "psqi-5b": 2, "psqi-5c": 2, "psqi-5d": 0, "psqi-5e": 0, "psqi-5f": 1,
                "psqi-5g": 3, "psqi-5h": 0, "psqi-5i": 0, "psqi-6": 1, "psqi-7": 0, "psqi-8": 0, "psqi-9": 1
            }),
        ),
    ]
}

fn scoring(c: &mut Criterion) {
    for (definition, body) in cases() {
        let answers = Answers::from_json(definition, &body).unwrap();
        let mut group = c.benchmark_group(definition.instrument.as_str());
        group.bench_function("score", |b| {
            b.iter(|| definition.score(black_box(&answers)).unwrap())
        });
        group.bench_function("parse+score", |b| {
            b.iter(|| {
                let answers = Answers::from_json(definition, black_box(&body)).unwrap();
                definition.score(&answers).unwrap()
            })
        });
        group.finish();
    }
}

criterion_group!(benches, scoring);
criterion_main!(benches);
