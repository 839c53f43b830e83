//! The audit trail: append-only entries in a hash chain, and the verifier. Entries name people
//! only by their erasure pseudonym ([`crate::erasure::subject_hash`], the same value as
//! [`common::events::pseudonym`]). The privacy function appends its own entries directly; the
//! other functions publish `audit.recorded` events, appended by [`append_recorded`].

use chrono::{DateTime, SubsecRound, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

/// The `prev_hash` of the first entry.
pub use common::audit_chain::GENESIS;

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
    common::audit_chain::hash(
        prev,
        &common::audit_chain::Link {
            at,
            actor,
            subject,
            action,
            function,
            object,
            event_id,
        },
    )
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
    // The head, or when log-archiver has archived every entry, the last archived one (one
    // statement, so one snapshot of both tables).
    let prev: Option<String> = sqlx::query_scalar(
        "SELECT COALESCE((SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1), \
                         (SELECT hash FROM audit_checkpoint ORDER BY seq DESC LIMIT 1))",
    )
    .fetch_one(&mut *tx)
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

/// The latest checkpoint of log-archiver: entries up to `seq` were archived to Cloud Storage
/// (chunk `object`) and deleted here; `hash` is the last archived entry's.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Checkpoint {
    /// Last archived seq.
    pub seq: i64,
    /// Its hash: the `prev_hash` the first remaining entry must carry.
    pub hash: String,
    /// The archive object holding it.
    pub object: String,
}

/// The latest checkpoint, if log-archiver has archived anything.
pub async fn checkpoint(pool: &PgPool) -> sqlx::Result<Option<Checkpoint>> {
    sqlx::query_as("SELECT seq, hash, object FROM audit_checkpoint ORDER BY seq DESC LIMIT 1")
        .fetch_optional(pool)
        .await
}

/// Recomputes the chain of the entries in the database, from the latest checkpoint's hash (the
/// archived prefix is verified by log-archiver before it is deleted) or from [`GENESIS`]; a
/// removed first entry after the checkpoint shows as the next one being unlinked.
/// `expected_head`, when given, is a head hash kept outside the database (the last published
/// one, or a checkpoint's), which also catches a cut tail.
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
    let start = checkpoint(pool).await?;
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT seq, at, actor_ref, subject_ref, action, function, object_id, prev_hash, hash, event_id \
         FROM audit_log WHERE seq > $1 ORDER BY seq",
    )
    .bind(start.as_ref().map_or(0, |c| c.seq))
    .fetch_all(pool)
    .await?;
    let mut breaks = Vec::new();
    let mut prev = start.map_or_else(|| GENESIS.to_owned(), |c| c.hash);
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
    // A head kept outside may also be the last entry of an archived chunk (a checkpoint).
    if let Some(head) = expected_head
        && !rows.iter().any(|r| r.8 == head)
        && !sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM audit_checkpoint WHERE hash = $1)",
        )
        .bind(head)
        .fetch_one(pool)
        .await?
    {
        breaks.push(Break::HeadMissing);
    }
    Ok(breaks)
}
