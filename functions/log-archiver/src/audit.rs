//! The audit trail's archive: entries of PostgreSQL's `audit_log` past the hot window move to
//! Cloud Storage so the trail does not grow in the main database (TR-03161-3 logging, GDPR
//! Art. 5(1)(e) and 5(2)).
//!
//! Layout under `{prefix}/{logical date}/`: `chunk-{first seq}-{last seq}.ndjson.gz` (20-digit
//! seqs, so names sort in chain order), one entry per line with every column, and
//! `manifest.json`, written last, naming each chunk's first and last seq, the `prev_hash` of its
//! first entry, the hash of its last, SHA-256 and CRC32C.
//!
//! Only a prefix of the chain is archived: entries in seq order up to the first one inside the
//! hot window. A chunk is uploaded, read back and checked (SHA-256, CRC32C, count) and its
//! chain recomputed: every hash from its entry's content, every entry linked to the one before,
//! the first linked to the latest checkpoint (the last archived entry) or to the genesis value.
//! Only then, in one transaction, an `audit_checkpoint` row (last seq, its hash, the object)
//! is inserted and the entries up to it are deleted; the table's trigger refuses any other
//! delete. A run stopped between upload and delete leaves a chunk past the checkpoint: the next
//! run verifies it again and checkpoints it, or drops it when it does not verify (its entries
//! are still in the database, as no checkpoint covers them). So a rerun loses nothing and
//! archives nothing twice.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead as _, Write as _};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use common::audit_chain::{GENESIS, Link, hash};
use common::storage::{Storage, StoredObject};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use crate::{Error, Fault, Result, crc32c_base64, hex};

/// Serialises checkpoint writers (two runs at once); appends use another key.
const CHECKPOINT_LOCK: i64 = 4243;

/// The clients and settings of the audit archive.
#[derive(Clone)]
pub struct AuditArchiver {
    /// The database holding `audit_log`.
    pub pool: PgPool,
    /// The archive bucket.
    pub storage: Storage,
    /// Object prefix (`AUDIT_ARCHIVE_PREFIX`).
    pub prefix: String,
    /// Hot window in days (`AUDIT_HOT_DAYS`).
    pub hot_days: u32,
    /// Entries per chunk (`AUDIT_CHUNK_ENTRIES`).
    pub chunk_entries: u32,
}

/// One archived entry: one NDJSON line, every column of `audit_log`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ArchivedEntry {
    /// Position in the chain.
    pub seq: i64,
    /// When (microseconds, as hashed).
    pub at: DateTime<Utc>,
    /// Who acted (pseudonym).
    pub actor_ref: String,
    /// Whose data (pseudonym).
    pub subject_ref: String,
    /// What was done.
    pub action: String,
    /// Which function.
    pub function: String,
    /// The record concerned.
    pub object_id: Option<Uuid>,
    /// Hash of the entry before.
    pub prev_hash: String,
    /// This entry's hash.
    pub hash: String,
    /// Event id of a published event.
    pub event_id: Option<Uuid>,
}

impl ArchivedEntry {
    fn recomputed(&self) -> String {
        hash(
            &self.prev_hash,
            &Link {
                at: self.at,
                actor: &self.actor_ref,
                subject: &self.subject_ref,
                action: &self.action,
                function: &self.function,
                object: self.object_id,
                event_id: self.event_id,
            },
        )
    }
}

/// Checks that `entries` form a chain from `prev`: each hash recomputes from its entry, each
/// entry links to the one before, seqs rise. Returns the reason of the first break.
pub fn check_chain(prev: &str, entries: &[ArchivedEntry]) -> std::result::Result<(), String> {
    let mut prev = prev;
    let mut last_seq = i64::MIN;
    for e in entries {
        if e.prev_hash != prev {
            return Err(format!("entry {} does not link to the one before", e.seq));
        }
        if e.recomputed() != e.hash {
            return Err(format!("entry {} does not give its hash", e.seq));
        }
        if e.seq <= last_seq {
            return Err(format!("entry {} is out of order", e.seq));
        }
        last_seq = e.seq;
        prev = &e.hash;
    }
    Ok(())
}

/// One chunk in the audit manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditManifestObject {
    /// Object name.
    pub name: String,
    /// Entries (NDJSON lines) in it.
    pub entries: u64,
    /// Seq of its first entry.
    pub first_seq: i64,
    /// Seq of its last entry.
    pub last_seq: i64,
    /// `prev_hash` of its first entry: the last hash of the chunk before, or the genesis value.
    pub prev_hash: String,
    /// Hash of its last entry.
    pub last_hash: String,
    /// Object size in bytes (gzip).
    pub bytes: u64,
    /// SHA-256 of the object, hex.
    pub sha256: String,
    /// CRC32C of the object, as the JSON API gives it (base64 of the big-endian value).
    pub crc32c: String,
}

/// What the audit archive of one logical date holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditManifest {
    /// Logical date of the run(s) that wrote the chunks.
    pub logical_date: NaiveDate,
    /// Entries in all chunks.
    pub entries: u64,
    /// Bytes of all chunks.
    pub bytes: u64,
    /// Every chunk, in chain order.
    pub objects: Vec<AuditManifestObject>,
}

/// Figures of one audit archive run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuditSummary {
    /// Entries archived and deleted by this run.
    pub audit_archived: u64,
    /// Entries deleted because an earlier run had uploaded their chunk.
    pub audit_recovered: u64,
    /// Chunks written by this run.
    pub audit_chunks: u64,
    /// Gzip bytes written by this run.
    pub audit_bytes: u64,
    /// Uncompressed NDJSON bytes written by this run.
    pub audit_raw_bytes: u64,
    /// Entries left in the database.
    pub audit_remaining: u64,
    /// Seq of the latest checkpoint after the run (0: none).
    pub audit_checkpoint_seq: i64,
}

#[derive(Debug, Clone)]
struct Start {
    seq: i64,
    hash: String,
}

impl AuditArchiver {
    /// Entries before this instant leave the database on `date`.
    pub fn cutoff(&self, date: NaiveDate) -> DateTime<Utc> {
        date.and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc()
            - Duration::days(i64::from(self.hot_days))
    }

    fn date_prefix(&self, date: NaiveDate) -> String {
        format!("{}/{date}/", self.prefix)
    }

    fn manifest_name(&self, date: NaiveDate) -> String {
        format!("{}manifest.json", self.date_prefix(date))
    }

    async fn start(&self) -> Result<Start> {
        let row: Option<(i64, String)> =
            sqlx::query_as("SELECT seq, hash FROM audit_checkpoint ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map_or_else(
            || Start {
                seq: 0,
                hash: GENESIS.to_owned(),
            },
            |(seq, hash)| Start { seq, hash },
        ))
    }

    /// Archives the entries past the hot window for `date`'s run.
    pub async fn archive(&self, date: NaiveDate, fault: Fault) -> Result<AuditSummary> {
        let mut summary = AuditSummary::default();
        let mut start = self.start().await?;
        let mut dates = BTreeSet::from([date]);
        // Chunks an earlier run uploaded past the checkpoint, in chain order.
        let mut pending: Vec<StoredObject> = self
            .storage
            .list(&format!("{}/", self.prefix))
            .await?
            .into_iter()
            .filter(|o| o.name.ends_with(".ndjson.gz"))
            .filter(|o| meta_seq(o, "first_seq").is_some_and(|s| s > start.seq))
            .collect();
        pending.sort_by_key(|o| meta_seq(o, "first_seq"));
        for object in pending {
            if meta_seq(&object, "first_seq").is_none_or(|s| s <= start.seq) {
                continue;
            }
            match self.read_back(&object, &start.hash).await {
                Ok(entries) => {
                    let n = self.checkpoint(&object.name, &start, &entries).await?;
                    summary.audit_recovered += n;
                    start = last_of(&entries);
                    if let Some(d) = object_date(&self.prefix, &object.name) {
                        dates.insert(d);
                    }
                }
                Err(Error::Verify {
                    object: name,
                    reason,
                }) => {
                    // No checkpoint covers its entries, so they are all still in the database.
                    tracing::warn!(object = %name, %reason, "dropping an audit chunk that does not verify");
                    self.storage.delete(&name).await?;
                    if let Some(d) = object_date(&self.prefix, &name) {
                        dates.insert(d);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        let cutoff = self.cutoff(date);
        let mut chunk_number = 0usize;
        loop {
            let entries: Vec<ArchivedEntry> = sqlx::query_as(
                "SELECT seq, at, actor_ref, subject_ref, action, function, object_id, prev_hash, hash, event_id \
                 FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2",
            )
            .bind(start.seq)
            .bind(i64::from(self.chunk_entries.max(1)))
            .fetch_all(&self.pool)
            .await?;
            // Only a prefix of the chain leaves: up to the first entry inside the hot window
            // (published events carry their own time, so `at` need not rise with seq).
            let entries: Vec<ArchivedEntry> =
                entries.into_iter().take_while(|e| e.at < cutoff).collect();
            if entries.is_empty() {
                break;
            }
            chunk_number += 1;
            let (first, last) = (entries[0].seq, entries[entries.len() - 1].seq);
            let name = format!(
                "{}chunk-{first:020}-{last:020}.ndjson.gz",
                self.date_prefix(date)
            );
            // A trail already broken is not archived (and its break not hidden): the verifier
            // reports it, people decide.
            check_chain(&start.hash, &entries).map_err(|reason| Error::Verify {
                object: name.clone(),
                reason: format!("the database's chain: {reason}"),
            })?;
            let chunk = encode(&entries);
            let mut metadata = HashMap::new();
            metadata.insert("entries".to_owned(), entries.len().to_string());
            metadata.insert("sha256".to_owned(), chunk.sha256.clone());
            metadata.insert("first_seq".to_owned(), first.to_string());
            metadata.insert("last_seq".to_owned(), last.to_string());
            metadata.insert("prev_hash".to_owned(), entries[0].prev_hash.clone());
            metadata.insert(
                "last_hash".to_owned(),
                entries[entries.len() - 1].hash.clone(),
            );
            let stored = self
                .storage
                .put(&name, chunk.gzip.clone(), "application/gzip", metadata)
                .await?;
            if fault == Fault::AfterUpload(chunk_number) {
                return Err(Error::Interrupted("after upload"));
            }
            if stored.crc32c.is_some_and(|c| c != chunk.crc32c) {
                return Err(Error::Verify {
                    object: name,
                    reason: "CRC32C reported by the upload differs from the chunk's".into(),
                });
            }
            let read = self.read_back(&stored, &start.hash).await?;
            if read != entries {
                return Err(Error::Verify {
                    object: name,
                    reason: "entries read back differ from those written".into(),
                });
            }
            summary.audit_archived += self.checkpoint(&name, &start, &entries).await?;
            summary.audit_chunks += 1;
            summary.audit_bytes += chunk.gzip.len() as u64;
            summary.audit_raw_bytes += chunk.raw_bytes;
            start = last_of(&entries);
        }
        for d in dates {
            self.write_manifest(d).await?;
        }
        summary.audit_checkpoint_seq = start.seq;
        let remaining: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log")
            .fetch_one(&self.pool)
            .await?;
        summary.audit_remaining = remaining.max(0) as u64;
        Ok(summary)
    }

    /// Downloads a chunk, checks it against its metadata (SHA-256, CRC32C, count, seqs,
    /// hashes) and recomputes its chain from `prev` (the latest checkpoint's hash).
    pub async fn read_back(&self, object: &StoredObject, prev: &str) -> Result<Vec<ArchivedEntry>> {
        let bad = |reason: String| Error::Verify {
            object: object.name.clone(),
            reason,
        };
        let bytes = self.storage.get(&object.name).await?;
        if object.metadata.get("sha256") != Some(&hex(&Sha256::digest(&bytes))) {
            return Err(bad("SHA-256 differs from the recorded one".into()));
        }
        if let Some(crc) = object.crc32c
            && crc != crc32c::crc32c(&bytes)
        {
            return Err(bad("CRC32C differs from the stored object's".into()));
        }
        let mut entries = Vec::new();
        let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(&bytes[..]));
        for line in reader.lines() {
            let line = line.map_err(|e| bad(format!("gzip: {e}")))?;
            entries.push(
                serde_json::from_str::<ArchivedEntry>(&line)
                    .map_err(|e| bad(format!("NDJSON: {e}")))?,
            );
        }
        let count: Option<usize> = object.metadata.get("entries").and_then(|n| n.parse().ok());
        if entries.is_empty() || count != Some(entries.len()) {
            return Err(bad(format!(
                "{} lines, metadata says {count:?}",
                entries.len()
            )));
        }
        let (first, last) = (&entries[0], &entries[entries.len() - 1]);
        if meta_seq(object, "first_seq") != Some(first.seq)
            || meta_seq(object, "last_seq") != Some(last.seq)
            || object.metadata.get("prev_hash") != Some(&first.prev_hash)
            || object.metadata.get("last_hash") != Some(&last.hash)
        {
            return Err(bad("first/last seq or hash differ from the metadata".into()));
        }
        check_chain(prev, &entries).map_err(bad)?;
        Ok(entries)
    }

    /// Inserts the checkpoint and deletes the archived entries in one transaction; returns how
    /// many were deleted. Refuses when another run moved the checkpoint meanwhile, or when the
    /// database holds other entries in the range than the chunk (so nothing unarchived goes).
    async fn checkpoint(
        &self,
        object: &str,
        start: &Start,
        entries: &[ArchivedEntry],
    ) -> Result<u64> {
        let last = &entries[entries.len() - 1];
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(CHECKPOINT_LOCK)
            .execute(&mut *tx)
            .await?;
        let now: Option<i64> = sqlx::query_scalar("SELECT max(seq) FROM audit_checkpoint")
            .fetch_one(&mut *tx)
            .await?;
        if now.unwrap_or(0) != start.seq {
            return Err(Error::Conflict(format!(
                "{object}: the checkpoint moved from {} to {} during the run",
                start.seq,
                now.unwrap_or(0)
            )));
        }
        sqlx::query("INSERT INTO audit_checkpoint (seq, hash, object) VALUES ($1, $2, $3)")
            .bind(last.seq)
            .bind(&last.hash)
            .bind(object)
            .execute(&mut *tx)
            .await?;
        let deleted: Vec<String> =
            sqlx::query_scalar("DELETE FROM audit_log WHERE seq > $1 AND seq <= $2 RETURNING hash")
                .bind(start.seq)
                .bind(last.seq)
                .fetch_all(&mut *tx)
                .await?;
        let archived: BTreeSet<&str> = entries.iter().map(|e| e.hash.as_str()).collect();
        if deleted.len() != entries.len() || deleted.iter().any(|h| !archived.contains(h.as_str()))
        {
            // Rolled back on drop: nothing deleted, no checkpoint. The chunk stays (it may be
            // the only copy of entries someone removed from the database).
            return Err(Error::Conflict(format!(
                "{object}: the database holds {} other entries in {}..={} than the chunk's {}",
                deleted.len(),
                start.seq + 1,
                last.seq,
                entries.len()
            )));
        }
        tx.commit().await?;
        Ok(deleted.len() as u64)
    }

    async fn write_manifest(&self, date: NaiveDate) -> Result<AuditManifest> {
        let mut objects = Vec::new();
        for o in self.storage.list(&self.date_prefix(date)).await? {
            if !o.name.ends_with(".ndjson.gz") {
                continue;
            }
            let m = |k: &str| o.metadata.get(k).cloned().unwrap_or_default();
            objects.push(AuditManifestObject {
                entries: m("entries").parse().unwrap_or(0),
                first_seq: meta_seq(&o, "first_seq").unwrap_or(0),
                last_seq: meta_seq(&o, "last_seq").unwrap_or(0),
                prev_hash: m("prev_hash"),
                last_hash: m("last_hash"),
                bytes: o.size,
                sha256: m("sha256"),
                crc32c: o.crc32c.map(crc32c_base64).unwrap_or_default(),
                name: o.name,
            });
        }
        objects.sort_by_key(|o| o.first_seq);
        let manifest = AuditManifest {
            logical_date: date,
            entries: objects.iter().map(|o| o.entries).sum(),
            bytes: objects.iter().map(|o| o.bytes).sum(),
            objects,
        };
        let body = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
        self.storage
            .put(
                &self.manifest_name(date),
                body,
                "application/json",
                HashMap::new(),
            )
            .await?;
        Ok(manifest)
    }

    /// Reads the audit manifest of a date.
    pub async fn manifest(&self, date: NaiveDate) -> Result<Option<AuditManifest>> {
        let name = self.manifest_name(date);
        if self.storage.head(&name).await?.is_none() {
            return Ok(None);
        }
        serde_json::from_slice(&self.storage.get(&name).await?)
            .map(Some)
            .map_err(|e| Error::Verify {
                object: name,
                reason: e.to_string(),
            })
    }
}

fn meta_seq(o: &StoredObject, key: &str) -> Option<i64> {
    o.metadata.get(key).and_then(|s| s.parse().ok())
}

fn last_of(entries: &[ArchivedEntry]) -> Start {
    let last = &entries[entries.len() - 1];
    Start {
        seq: last.seq,
        hash: last.hash.clone(),
    }
}

/// `audit/2026-11-29/chunk-….ndjson.gz` → 2026-11-29.
fn object_date(prefix: &str, name: &str) -> Option<NaiveDate> {
    name.strip_prefix(prefix)?
        .trim_start_matches('/')
        .split('/')
        .next()?
        .parse()
        .ok()
}

struct Encoded {
    gzip: Vec<u8>,
    raw_bytes: u64,
    sha256: String,
    crc32c: u32,
}

fn encode(entries: &[ArchivedEntry]) -> Encoded {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut raw_bytes = 0u64;
    for e in entries {
        let mut line = serde_json::to_vec(e).expect("entry serialises");
        line.push(b'\n');
        raw_bytes += line.len() as u64;
        encoder.write_all(&line).expect("in-memory write");
    }
    let gzip = encoder.finish().expect("in-memory write");
    Encoded {
        sha256: hex(&Sha256::digest(&gzip)),
        crc32c: crc32c::crc32c(&gzip),
        gzip,
        raw_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_date_of_an_object_is_its_folder() {
        assert_eq!(
            object_date("audit", "audit/2026-11-29/chunk-1-2.ndjson.gz"),
            "2026-11-29".parse().ok()
        );
        assert_eq!(object_date("audit", "other/2026-11-29/x"), None);
    }
}
