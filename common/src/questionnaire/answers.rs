//! Answers checked against a [`Definition`]: every key a known `linkId`, every value of the
//! item's type and inside its range. Nothing is clamped; the first bad item is a 422 naming it.

use serde_json::{Map, Value};

use crate::error::Problem;

use super::definition::{Definition, ItemKind};

/// One item's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The ordinal value of the chosen option.
    Choice(u8),
    /// A number inside the item's bounds.
    Decimal(f64),
    /// A local clock time as seconds after midnight (0 ..= 86 399).
    Time(u32),
    Text(String),
}

/// A validated set of answers for one definition; unanswered items are `None`.
#[derive(Debug, Clone)]
pub struct Answers {
    definition: &'static Definition,
    values: Vec<Option<Answer>>,
}

impl PartialEq for Answers {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.definition, other.definition) && self.values == other.values
    }
}

impl Answers {
    /// No item answered yet.
    pub fn empty(definition: &'static Definition) -> Self {
        Self {
            definition,
            values: vec![None; definition.items.len()],
        }
    }

    /// Reads a plain JSON object `{ linkId: value }`. `null` means unanswered.
    pub fn from_json(definition: &'static Definition, body: &Value) -> Result<Self, Problem> {
        let Value::Object(map) = body else {
            return Err(Problem::validation(
                "answers",
                "answers must be a JSON object of linkId to value",
            ));
        };
        let mut answers = Self::empty(definition);
        for (link_id, value) in map {
            answers.set_json(link_id, value)?;
        }
        Ok(answers)
    }

    /// Sets one item from its JSON value, validating it.
    pub fn set_json(&mut self, link_id: &str, value: &Value) -> Result<(), Problem> {
        let Some((index, item)) = self.definition.item(link_id) else {
            return Err(Problem::validation(
                link_id,
                format!("{link_id:?} is not an item of {}", self.definition.id),
            ));
        };
        self.values[index] = parse_value(link_id, &item.kind, value)?;
        Ok(())
    }

    /// Sets a choice item by its ordinal value (validated like JSON input).
    pub fn set_choice(&mut self, link_id: &str, value: u8) -> Result<(), Problem> {
        self.set_json(link_id, &Value::from(value))
    }

    pub fn definition(&self) -> &'static Definition {
        self.definition
    }

    /// The answer to the item with this `linkId`.
    pub fn get(&self, link_id: &str) -> Option<&Answer> {
        let (index, _) = self.definition.item(link_id)?;
        self.values[index].as_ref()
    }

    /// The answer at this item position.
    pub fn at(&self, index: usize) -> Option<&Answer> {
        self.values.get(index).and_then(Option::as_ref)
    }

    /// A choice item's ordinal value; `None` when unanswered.
    pub fn choice(&self, link_id: &str) -> Option<u8> {
        match self.get(link_id) {
            Some(Answer::Choice(v)) => Some(*v),
            _ => None,
        }
    }

    /// The ordinal values of the given choice items, or a 422 naming the first unanswered one.
    /// For instruments without an official missing-item rule (REFERENCE §0 finding 2).
    pub fn require_choices<const N: usize>(&self, link_ids: [&str; N]) -> Result<[u8; N], Problem> {
        let mut out = [0u8; N];
        for (slot, link_id) in out.iter_mut().zip(link_ids) {
            *slot = self.choice(link_id).ok_or_else(|| {
                Problem::validation(
                    link_id,
                    format!(
                        "{link_id} is required: {} has no official rule for missing items",
                        self.definition.title
                    ),
                )
            })?;
        }
        Ok(out)
    }

    /// The plain JSON form `{ linkId: value }` of the answered items, in item order; reading it
    /// back with [`Answers::from_json`] gives the same answers.
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        for (item, value) in self.definition.items.iter().zip(&self.values) {
            if let Some(value) = value {
                map.insert(item.link_id.to_owned(), answer_json(value));
            }
        }
        Value::Object(map)
    }

    /// Answered items with their definitions, in item order.
    pub fn answered(&self) -> impl Iterator<Item = (&'static super::definition::Item, &Answer)> {
        self.definition
            .items
            .iter()
            .zip(&self.values)
            .filter_map(|(item, value)| value.as_ref().map(|v| (item, v)))
    }
}

fn answer_json(answer: &Answer) -> Value {
    match answer {
        Answer::Choice(v) => Value::from(*v),
        Answer::Decimal(v) => Value::from(*v),
        Answer::Time(secs) => Value::from(format_time(*secs)),
        Answer::Text(s) => Value::from(s.as_str()),
    }
}

/// `HH:MM`, or `HH:MM:SS` when there are seconds.
pub fn format_time(secs: u32) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if s == 0 {
        format!("{h:02}:{m:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

/// Reads `HH:MM` or `HH:MM:SS` (00:00 ..= 23:59:59).
pub fn parse_time(text: &str) -> Option<u32> {
    let parts: Vec<&str> = text.split(':').collect();
    if !(2..=3).contains(&parts.len())
        || parts
            .iter()
            .any(|p| p.len() != 2 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let num = |i: usize| parts.get(i).map_or(Some(0), |p| p.parse::<u32>().ok());
    let (h, m, s) = (num(0)?, num(1)?, num(2)?);
    (h < 24 && m < 60 && s < 60).then_some(h * 3600 + m * 60 + s)
}

fn parse_value(link_id: &str, kind: &ItemKind, value: &Value) -> Result<Option<Answer>, Problem> {
    if value.is_null() {
        return Ok(None);
    }
    let invalid = |detail: String| Err(Problem::validation(link_id, detail));
    match kind {
        ItemKind::Choice(options) => {
            let allowed = || {
                let values: Vec<String> = options.iter().map(|o| o.value.to_string()).collect();
                values.join(", ")
            };
            let Some(number) = value.as_i64().or_else(|| value.as_u64().map(|_| i64::MAX)) else {
                return invalid(format!(
                    "{link_id} must be an integer, one of {}",
                    allowed()
                ));
            };
            match options.iter().find(|o| i64::from(o.value) == number) {
                Some(option) => Ok(Some(Answer::Choice(option.value))),
                None => invalid(format!(
                    "{link_id} = {number} is out of range; allowed: {}",
                    allowed()
                )),
            }
        }
        ItemKind::Decimal { min, max, unit } => {
            let Some(number) = value.as_f64() else {
                return invalid(format!("{link_id} must be a number ({unit})"));
            };
            if !number.is_finite() || number < *min || number > *max {
                return invalid(format!(
                    "{link_id} = {number} is out of range {min}–{max} {unit}"
                ));
            }
            Ok(Some(Answer::Decimal(number)))
        }
        ItemKind::Time => match value.as_str().and_then(parse_time) {
            Some(secs) => Ok(Some(Answer::Time(secs))),
            None => invalid(format!(
                "{link_id} must be a local clock time \"HH:MM\" between 00:00 and 23:59"
            )),
        },
        ItemKind::Text => match value.as_str() {
            Some(text) if text.chars().count() <= 1000 => Ok(Some(Answer::Text(text.to_owned()))),
            Some(_) => invalid(format!("{link_id} is longer than 1000 characters")),
            None => invalid(format!("{link_id} must be a string")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_with_and_without_seconds() {
        assert_eq!(parse_time("00:00"), Some(0));
        assert_eq!(parse_time("23:30"), Some(84_600));
        assert_eq!(parse_time("06:45:30"), Some(24_330));
        for bad in [
            "24:00",
            "7:00",
            "07:60",
            "07",
            "07:00:00:00",
            "ab:cd",
            "",
            "07:00 ",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
        assert_eq!(format_time(84_600), "23:30");
        assert_eq!(format_time(24_330), "06:45:30");
    }
}
