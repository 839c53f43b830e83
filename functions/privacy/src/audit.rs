//! The audit trail: append-only entries in a hash chain, and the verifier. Entries name people
//! only by their erasure pseudonym ([`crate::erasure::subject_hash`], the same value as
//! [`common::events::pseudonym`]). The privacy function appends its own entries directly; the
//! other functions publish `audit.recorded` events, appended by [`append_recorded`].

use chrono::{DateTime, SubsecRound, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One access to a user's data.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    /// Who acted (the user themself, or a staff or service id).
    pub actor: Uuid,
    /// Whose data.
    pub subject: Uuid,
    /// What was done, e.g. `consent.granted`, `export.read`, `erasure.requested`.
    pub action: &'a str,
    /// Which function did it.
    pub function: &'a str,
    /// The record concerned, if one.
    pub object: Option<Uuid>,
}

#[allow(clippy::too_many_arguments)]
fn chain_hash(
    prev: &str,
    at: DateTime<Utc>,
    actor: &str,
    subject: &str,
    action: &str,
    function: &str,
    object: Option<Uuid>,
    event_id: Option<Uuid>,
) -> String {
    let mut line = format!(
        "{prev}|{}|{actor}|{subject}|{action}|{function}|{}",
        at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        object.map(|o| o.to_string()).unwrap_or_default()
    );
    // The event id is what keeps a redelivered event out: it is covered too, so editing it
    // (which would let a replay in twice) shows as an altered entry. Entries privacy appends
    // itself have none and hash as before.
    if let Some(id) = event_id {
        line.push_str(&format!("|{id}"));
    }
    Sha256::digest(line.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Appends an entry in the caller's transaction (so it commits with the change it records);
/// appends are serialised so the chain has one head.
pub async fn append(tx: &mut sqlx::PgConnection, entry: &Entry<'_>) -> sqlx::Result<String> {
    lock(tx).await?;
    let actor = crate::erasure::subject_hash(entry.actor);
    let subject = crate::erasure::subject_hash(entry.subject);
    // PostgreSQL keeps microseconds; hash what it will give back.
    insert(
        tx,
        Utc::now().trunc_subsecs(6),
        &actor,
        &subject,
        entry.action,
        entry.function,
        entry.object,
        None,
    )
    .await
}

/// Appends a published `audit.recorded` event under its event id, in the caller's
/// transaction. A redelivered event appends nothing: `Ok(false)`.
pub async fn append_recorded(
    tx: &mut sqlx::PgConnection,
    event_id: Uuid,
    event: &common::events::AuditRecorded,
) -> sqlx::Result<bool> {
    lock(tx).await?;
    let seen: Option<i64> = sqlx::query_scalar("SELECT seq FROM audit_log WHERE event_id = $1")
        .bind(event_id)
        .fetch_optional(&mut *tx)
        .await?;
    if seen.is_some() {
        return Ok(false);
    }
    insert(
        tx,
        event.at.trunc_subsecs(6),
        &event.actor_ref,
        &event.subject_ref,
        &event.action,
        &event.function,
        event.object_id,
        Some(event_id),
    )
    .await?;
    Ok(true)
}

/// Appends are serialised so the chain has one head.
async fn lock(tx: &mut sqlx::PgConnection) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(4242)")
        .execute(&mut *tx)
        .await?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn insert(
    tx: &mut sqlx::PgConnection,
    at: DateTime<Utc>,
    actor: &str,
    subject: &str,
    action: &str,
    function: &str,
    object: Option<Uuid>,
    event_id: Option<Uuid>,
) -> sqlx::Result<String> {
    let prev: Option<String> =
        sqlx::query_scalar("SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?;
    let prev = prev.unwrap_or_else(|| GENESIS.to_owned());
    let hash = chain_hash(
        &prev, at, actor, subject, action, function, object, event_id,
    );
    sqlx::query(
        "INSERT INTO audit_log (at, actor_ref, subject_ref, action, function, object_id, prev_hash, hash, event_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(at)
    .bind(actor)
    .bind(subject)
    .bind(action)
    .bind(function)
    .bind(object)
    .bind(&prev)
    .bind(&hash)
    .bind(event_id)
    .execute(&mut *tx)
    .await?;
    Ok(hash)
}

/// What the verifier found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Break {
    /// The entry's content does not give its hash: it was altered.
    Altered { seq: i64 },
    /// The entry does not follow the one before it: entries between were removed (or
    /// reordered).
    Unlinked { seq: i64 },
    /// The newest entry is not the head recorded elsewhere (archive, event): the tail was cut.
    HeadMissing,
}

/// Recomputes the whole chain; `expected_head`, when given, is a head hash kept outside the
/// database (the last archived or published one), which also catches a cut tail.
pub async fn verify(pool: &PgPool, expected_head: Option<&str>) -> sqlx::Result<Vec<Break>> {
    type Row = (
        i64,
        DateTime<Utc>,
        String,
        String,
        String,
        String,
        Option<Uuid>,
        String,
        String,
        Option<Uuid>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT seq, at, actor_ref, subject_ref, action, function, object_id, prev_hash, hash, event_id \
         FROM audit_log ORDER BY seq",
    )
    .fetch_all(pool)
    .await?;
    let mut breaks = Vec::new();
    let mut prev = GENESIS.to_owned();
    for (seq, at, actor, subject, action, function, object, prev_hash, hash, event_id) in &rows {
        if *prev_hash != prev {
            breaks.push(Break::Unlinked { seq: *seq });
        }
        if chain_hash(
            prev_hash, *at, actor, subject, action, function, *object, *event_id,
        ) != *hash
        {
            breaks.push(Break::Altered { seq: *seq });
        }
        prev = hash.clone();
    }
    if let Some(head) = expected_head
        && !rows.iter().any(|r| r.8 == head)
    {
        breaks.push(Break::HeadMissing);
    }
    Ok(breaks)
}
