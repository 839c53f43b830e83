//! The hash chain of the audit trail (TR-03161-3 logging, GDPR Art. 5(2)): each entry's hash
//! covers the previous entry's hash and its own content, so a removed, reordered or altered
//! entry shows when the chain is recomputed. Shared by the privacy function (which appends and
//! verifies) and log-archiver (which recomputes a chunk's chain before it deletes the entries).

use chrono::{DateTime, Utc};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

/// The `prev_hash` of the first entry ever appended.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The content of one entry, as hashed.
#[derive(Debug, Clone, Copy)]
pub struct Link<'a> {
    /// When (PostgreSQL keeps microseconds; the hash covers exactly those).
    pub at: DateTime<Utc>,
    /// Who acted (pseudonym).
    pub actor: &'a str,
    /// Whose data (pseudonym).
    pub subject: &'a str,
    /// What was done.
    pub action: &'a str,
    /// Which function did it.
    pub function: &'a str,
    /// The record concerned, if one.
    pub object: Option<Uuid>,
    /// The event id of a published `audit.recorded` event, if one.
    pub event_id: Option<Uuid>,
}

/// The hash of an entry following `prev`: SHA-256, hex, of
/// `prev|at|actor|subject|action|function|object[|event_id]`.
pub fn hash(prev: &str, link: &Link<'_>) -> String {
    let mut line = format!(
        "{prev}|{}|{}|{}|{}|{}|{}",
        link.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        link.actor,
        link.subject,
        link.action,
        link.function,
        link.object.map(|o| o.to_string()).unwrap_or_default()
    );
    // The event id is what keeps a redelivered event out: it is covered too, so editing it
    // (which would let a replay in twice) shows as an altered entry. Entries privacy appends
    // itself have none and hash as before.
    if let Some(id) = link.event_id {
        line.push_str(&format!("|{id}"));
    }
    Sha256::digest(line.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_sha256_of_the_pipe_joined_fields() {
        let at: DateTime<Utc> = "2026-01-02T03:04:05.123456Z".parse().unwrap();
        let link = Link {
            at,
            actor: "a",
            subject: "s",
            action: "export.read",
            function: "privacy",
            object: None,
            event_id: None,
        };
        // `printf '%s' '0…0|2026-01-02T03:04:05.123456Z|a|s|export.read|privacy|' | sha256sum`
        let expected = "a048f8854285623e539b9f0d5ccec202a5137123658c331cd17d763dde61bbde";
        assert_eq!(hash(GENESIS, &link), expected);
        let id = Uuid::nil();
        let with_id = hash(
            GENESIS,
            &Link {
                event_id: Some(id),
                ..link
            },
        );
        assert_ne!(with_id, expected, "the event id is covered");
    }
}
