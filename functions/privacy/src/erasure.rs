//! Erasure of a user across every store (GDPR Art. 17, TR-03161-3 O.Data_7): a declared map of
//! what each store holds about a user, one pass that deletes it, and a verification pass that
//! looks again. Done means every pass succeeded and nothing was found afterwards; otherwise the
//! stores still pending are named, kept in `erasure_pending` and retried.

use std::collections::BTreeMap;

use common::cache::Redis;
use firestore::FirestoreDb;
use firestore::gcloud_sdk::google::firestore::v1::{DeleteDocumentRequest, ListDocumentsRequest};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

/// What erasure does with a PostgreSQL table's rows of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Deleted.
    Delete,
    /// Kept, for the statutory reason given (e.g. invoices, 8 years under §147 AO).
    Keep(&'static str),
}

/// Every PostgreSQL table with a `user_id` column and what erasure does with it. A test reads
/// `information_schema`, so a new table without an entry here fails the build.
pub const POSTGRES: &[(&str, Rule)] = &[
    ("safety_events", Rule::Delete),
    ("questionnaire_scores", Rule::Delete),
    ("questionnaire_responses", Rule::Delete),
    ("sleep_sessions", Rule::Delete),
    ("imports", Rule::Delete),
    ("diary_entries", Rule::Delete),
    ("analysis_nights", Rule::Delete),
    ("sleep_windows", Rule::Delete),
    ("auth_recovery_codes", Rule::Delete),
    ("auth_tokens", Rule::Delete),
    ("consent_events", Rule::Delete),
    // The wrapped data key; the data_key store destroys it first (crypto-shredding).
    ("user_keys", Rule::Delete),
    // The queue of unfinished erasures: its row goes when the erasure completes.
    ("erasure_pending", Rule::Delete),
];

/// The stores of the map, in the order they are cleaned.
/// - The account row goes only when every store before postgres was erased: some keys are found
///   through the account (the per-account login limits in Redis are keyed by the hashed e-mail
///   address), so a resumed erasure needs it. Until then the postgres pass removes everything
///   else and stays pending.
/// - Firestore comes after postgres: sleep-analysis writes a user's documents inside a
///   transaction that holds the user's night rows (and so a lock on the account row) and checked
///   the consent first. Deleting the account row waits for such an analysis to commit, and
///   after it no analysis finds the consent any more, so the Firestore pass that follows sees
///   every document a late analysis wrote. Firestore needs only the id to be resumed.
pub const STORES: &[&str] = &[
    "data_key",
    "cloud_storage",
    "archive",
    "redis",
    "postgres",
    "firestore",
];

/// The log archive: log-archiver's gzip NDJSON chunks of Firestore documents past the hot
/// window. Erasure removes the user's lines from chunks already written and every older
/// generation of them (`log_archiver::erase`, which says why rewriting and not shredding).
#[derive(Clone, Debug)]
pub struct Archive {
    pub storage: common::storage::Storage,
    /// Object prefix of the chunks (log-archiver's `ARCHIVE_PREFIX`).
    pub prefix: String,
}

/// Where the log archive is, for erasure (the same variables log-archiver reads).
#[derive(Debug, Clone, clap::Args)]
pub struct ArchiveConfig {
    /// The log archive bucket; unset where no archive exists (local runs without it).
    #[arg(long = "archive-bucket", env = "ARCHIVE_BUCKET")]
    pub archive_bucket: Option<String>,
    /// Object prefix of the archived chunks.
    #[arg(
        long = "archive-prefix",
        env = "ARCHIVE_PREFIX",
        default_value = "firestore"
    )]
    pub archive_prefix: String,
}

impl ArchiveConfig {
    /// The archive, when configured.
    pub async fn connect(
        &self,
        storage: &common::storage::StorageConfig,
    ) -> Result<Option<Archive>, common::storage::StorageError> {
        match self.archive_bucket.as_deref().filter(|b| !b.is_empty()) {
            Some(bucket) => Ok(Some(Archive {
                storage: common::storage::Storage::connect(storage, bucket).await?,
                prefix: self.archive_prefix.clone(),
            })),
            None => Ok(None),
        }
    }
}

/// The stores erasure reaches.
#[derive(Clone)]
pub struct Stores {
    pub pool: PgPool,
    pub redis: Redis,
    pub firestore: FirestoreDb,
    /// Buckets holding objects under `users/{id}/` (exports); none locally unless configured.
    pub buckets: Vec<common::storage::Storage>,
    /// The users' data keys.
    pub keyring: common::crypto::Keyring,
    /// The log archive, when there is one.
    pub archive: Option<Archive>,
}

/// The outcome of one store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct StoreOutcome {
    pub store: String,
    /// `erased`; `pending` when the pass or its verification failed; `not_configured` when this
    /// deployment has no such store (no `ERASURE_BUCKETS`, no `ARCHIVE_BUCKET`), so there was
    /// nothing to erase or look at.
    pub status: String,
    /// How many items the erasure pass removed.
    pub removed: u64,
    /// Why it is pending (no health data, no internals beyond the store's own error kind).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The answer of an erasure.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Erasure {
    /// `done` when every store was erased and verified empty, else `pending`.
    pub status: String,
    /// The hash the ledger keeps instead of the user id.
    pub subject_hash: String,
    pub stores: Vec<StoreOutcome>,
}

impl Erasure {
    /// Whether every pass succeeded.
    pub fn done(&self) -> bool {
        self.status == "done"
    }
}

/// The ledger's pseudonym of a user: SHA-256 of a fixed label and the id, hex. PostgreSQL
/// computes the same value (`encode(sha256(...), 'hex')`), so a restored backup is re-cleaned
/// in SQL.
pub fn subject_hash(user: Uuid) -> String {
    let digest = Sha256::digest(format!("dta-wide-erasure:{user}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

type Failure = String;

/// Erases `user` from every store, then verifies. Safe to run again for the same user.
pub async fn erase(stores: &Stores, user: Uuid) -> Result<Erasure, sqlx::Error> {
    let hash = subject_hash(user);
    // The e-mail blind index keys the per-account login limits (the address is encrypted).
    let lookup: Option<String> = sqlx::query_scalar("SELECT email_lookup FROM users WHERE id = $1")
        .bind(user)
        .fetch_optional(&stores.pool)
        .await?;
    sqlx::query(
        "INSERT INTO erasure_ledger (subject_hash, stores) VALUES ($1, $2) \
         ON CONFLICT (subject_hash) DO UPDATE SET requested_at = now()",
    )
    .bind(&hash)
    .bind(serde_json::json!(STORES))
    .execute(&stores.pool)
    .await?;
    sqlx::query(
        "INSERT INTO erasure_pending (user_id, stores) VALUES ($1, $2) \
         ON CONFLICT (user_id) DO UPDATE SET attempts = erasure_pending.attempts + 1, updated_at = now()",
    )
    .bind(user)
    .bind(serde_json::json!(STORES))
    .execute(&stores.pool)
    .await?;

    let mut outcomes = Vec::new();
    for store in STORES {
        let absent = match *store {
            "cloud_storage" => stores.buckets.is_empty(),
            "archive" => stores.archive.is_none(),
            _ => false,
        };
        if absent {
            outcomes.push(StoreOutcome {
                store: (*store).to_owned(),
                status: NOT_CONFIGURED.into(),
                removed: 0,
                reason: None,
            });
            continue;
        }
        let pass = match *store {
            "data_key" => stores
                .keyring
                .destroy(&stores.pool, user)
                .await
                .map(u64::from)
                .map_err(|e| format!("data key: {e}")),
            "firestore" => erase_firestore(&stores.firestore, user).await,
            "cloud_storage" => erase_storage(&stores.buckets, user).await,
            "archive" => erase_archive(stores.archive.as_ref(), user).await,
            "redis" => erase_redis(&stores.redis, user, lookup.as_deref()).await,
            _ => erase_postgres(&stores.pool, user, keep_account(&outcomes)).await,
        };
        let verified = match &pass {
            Ok(_) => match *store {
                "data_key" => match stores.keyring.existing(user).await {
                    Ok(None) => Ok(()),
                    Ok(Some(_)) => Err("the data key still exists".to_owned()),
                    Err(e) => Err(format!("data key: {e}")),
                },
                "firestore" => verify_firestore(&stores.firestore, user).await,
                "cloud_storage" => verify_storage(&stores.buckets, user).await,
                "archive" => erase_archive(stores.archive.as_ref(), user)
                    .await
                    .and_then(|found| match found {
                        0 => Ok(()),
                        n => Err(format!("{n} archived lines or versions left")),
                    }),
                "redis" => verify_redis(&stores.redis, user, lookup.as_deref()).await,
                _ => match verify_postgres(&stores.pool, user, keep_account(&outcomes)).await {
                    Ok(()) if keep_account(&outcomes) => Err(ACCOUNT_KEPT.to_owned()),
                    other => other,
                },
            },
            Err(e) => Err(e.clone()),
        };
        outcomes.push(match (pass, verified) {
            (Ok(removed), Ok(())) => StoreOutcome {
                store: (*store).to_owned(),
                status: "erased".into(),
                removed,
                reason: None,
            },
            (pass, verified) => {
                let reason = verified.err().unwrap_or_default();
                tracing::warn!(store, %reason, "erasure pass pending");
                StoreOutcome {
                    store: (*store).to_owned(),
                    status: PENDING.into(),
                    removed: pass.unwrap_or_default(),
                    reason: Some(reason),
                }
            }
        });
    }
    let pending: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.status == PENDING)
        .map(|o| o.store.as_str())
        .collect();
    if pending.is_empty() {
        sqlx::query("DELETE FROM erasure_pending WHERE user_id = $1")
            .bind(user)
            .execute(&stores.pool)
            .await?;
        sqlx::query(
            "UPDATE erasure_ledger SET completed_at = now(), pending = '[]' WHERE subject_hash = $1",
        )
        .bind(&hash)
        .execute(&stores.pool)
        .await?;
    } else {
        sqlx::query("UPDATE erasure_pending SET stores = $2 WHERE user_id = $1")
            .bind(user)
            .bind(serde_json::json!(pending))
            .execute(&stores.pool)
            .await?;
        sqlx::query("UPDATE erasure_ledger SET pending = $2 WHERE subject_hash = $1")
            .bind(&hash)
            .bind(serde_json::json!(pending))
            .execute(&stores.pool)
            .await?;
    }
    tracing::info!(target: "audit", event = "erasure", subject_hash = %hash, pending = pending.len(), "user erased");
    Ok(Erasure {
        status: if pending.is_empty() {
            "done"
        } else {
            "pending"
        }
        .into(),
        subject_hash: hash,
        stores: outcomes,
    })
}

/// Status of a store whose pass or verification failed.
const PENDING: &str = "pending";
/// Status of a store this deployment does not have.
const NOT_CONFIGURED: &str = "not_configured";

/// Why the postgres pass is pending while an earlier store is.
const ACCOUNT_KEPT: &str = "the account row is kept until every other store is erased";

/// Whether the account row must stay: a store before postgres is still pending.
fn keep_account(outcomes: &[StoreOutcome]) -> bool {
    outcomes.iter().any(|o| o.status == PENDING)
}

/// Finishes every unfinished erasure (the retention job calls this); returns how many are
/// done now.
pub async fn resume(stores: &Stores) -> Result<usize, sqlx::Error> {
    let users: Vec<Uuid> = sqlx::query_scalar("SELECT user_id FROM erasure_pending")
        .fetch_all(&stores.pool)
        .await?;
    let mut done = 0;
    for user in users {
        if erase(stores, user).await?.done() {
            done += 1;
        }
    }
    Ok(done)
}

/// After a backup restore: erases again, in PostgreSQL, every restored user the ledger names.
/// Returns how many accounts were removed.
pub async fn reclean(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let users: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM users WHERE encode(sha256(convert_to('dta-wide-erasure:' || id::text, 'UTF8')), 'hex') \
         IN (SELECT subject_hash FROM erasure_ledger)",
    )
    .fetch_all(pool)
    .await?;
    for user in &users {
        erase_postgres(pool, *user, false)
            .await
            .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
    }
    Ok(users.len() as u64)
}

async fn erase_postgres(pool: &PgPool, user: Uuid, keep_account: bool) -> Result<u64, Failure> {
    let fail = |e: sqlx::Error| format!("postgres: {e}");
    let mut tx = pool.begin().await.map_err(fail)?;
    let mut removed = 0;
    for (table, rule) in POSTGRES {
        if *rule != Rule::Delete || *table == "erasure_pending" {
            continue;
        }
        removed += sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
            .bind(user)
            .execute(&mut *tx)
            .await
            .map_err(fail)?
            .rows_affected();
    }
    // Events not yet published carry the user id in their payload.
    removed += sqlx::query("DELETE FROM outbox WHERE payload->'data'->>'user_id' = $1")
        .bind(user.to_string())
        .execute(&mut *tx)
        .await
        .map_err(fail)?
        .rows_affected();
    if !keep_account {
        removed += sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(user)
            .execute(&mut *tx)
            .await
            .map_err(fail)?
            .rows_affected();
    }
    tx.commit().await.map_err(fail)?;
    Ok(removed)
}

async fn verify_postgres(pool: &PgPool, user: Uuid, keep_account: bool) -> Result<(), Failure> {
    let fail = |e: sqlx::Error| format!("postgres: {e}");
    let mut left = BTreeMap::new();
    for (table, rule) in POSTGRES {
        if *rule != Rule::Delete || *table == "erasure_pending" {
            continue;
        }
        let n: i64 =
            sqlx::query_scalar(&format!("SELECT count(*) FROM {table} WHERE user_id = $1"))
                .bind(user)
                .fetch_one(pool)
                .await
                .map_err(fail)?;
        if n > 0 {
            left.insert(*table, n);
        }
    }
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE id = $1")
        .bind(user)
        .fetch_one(pool)
        .await
        .map_err(fail)?;
    if users > 0 && !keep_account {
        left.insert("users", users);
    }
    if left.is_empty() {
        Ok(())
    } else {
        Err(format!("rows left in {left:?}"))
    }
}

fn user_doc_path(db: &FirestoreDb, user: Uuid) -> String {
    format!(
        "{}/{}/{user}",
        db.get_documents_path(),
        common::documents::USERS
    )
}

/// Every document at or under `users/{id}`, deepest first, including documents that do not
/// exist themselves but hold subcollections (`show_missing`).
async fn firestore_tree(db: &FirestoreDb, user: Uuid) -> Result<Vec<String>, Failure> {
    use futures_util::StreamExt as _;
    let fail = |e: String| format!("firestore: {e}");
    let root = user_doc_path(db, user);
    let mut found = Vec::new();
    let mut parents = vec![root.clone()];
    while let Some(parent) = parents.pop() {
        let collections: Vec<String> = db
            .fluent()
            .list()
            .collections()
            .parent(&parent)
            .stream_all()
            .await
            .map_err(|e| fail(e.to_string()))?
            .collect()
            .await;
        for collection in collections {
            let mut page_token = String::new();
            loop {
                let response = db
                    .client()
                    .get()
                    .list_documents(ListDocumentsRequest {
                        parent: parent.clone(),
                        collection_id: collection.clone(),
                        page_size: 300,
                        page_token: page_token.clone(),
                        show_missing: true,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| fail(e.message().to_owned()))?
                    .into_inner();
                for doc in response.documents {
                    parents.push(doc.name.clone());
                    found.push(doc.name);
                }
                if response.next_page_token.is_empty() {
                    break;
                }
                page_token = response.next_page_token;
            }
        }
    }
    // Children were found after their parents; delete them first.
    found.reverse();
    found.push(root);
    Ok(found)
}

async fn erase_firestore(db: &FirestoreDb, user: Uuid) -> Result<u64, Failure> {
    let docs = firestore_tree(db, user).await?;
    let mut removed: u64 = 0;
    for name in docs {
        db.client()
            .get()
            .delete_document(DeleteDocumentRequest {
                name,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("firestore: {}", e.message()))?;
        removed += 1;
    }
    // The root document is in the list whether or not it existed.
    Ok(removed.saturating_sub(1))
}

async fn verify_firestore(db: &FirestoreDb, user: Uuid) -> Result<(), Failure> {
    let docs = firestore_tree(db, user).await?;
    let left = docs.len().saturating_sub(1);
    if left == 0 {
        Ok(())
    } else {
        Err(format!("{left} documents left under users/{{id}}"))
    }
}

fn user_prefix(user: Uuid) -> String {
    format!("users/{user}/")
}

/// Deletes every generation under `users/{id}/`: production buckets keep Object Versioning, so
/// a plain delete would only turn the live version into a noncurrent one that still holds the
/// data. Each listed version (`versions=true`) is deleted by its generation, which removes it
/// for good (cloud.google.com/storage/docs/object-versioning).
async fn erase_storage(buckets: &[common::storage::Storage], user: Uuid) -> Result<u64, Failure> {
    let mut removed = 0;
    for bucket in buckets {
        let versions = bucket
            .list_versions(&user_prefix(user))
            .await
            .map_err(|e| e.to_string())?;
        for version in versions {
            if bucket
                .delete_generation(&version.name, version.generation)
                .await
                .map_err(|e| e.to_string())?
            {
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// Looks again at every version, live and noncurrent.
async fn verify_storage(buckets: &[common::storage::Storage], user: Uuid) -> Result<(), Failure> {
    for bucket in buckets {
        let left = bucket
            .list_versions(&user_prefix(user))
            .await
            .map_err(|e| e.to_string())?;
        if !left.is_empty() {
            let noncurrent = left.iter().filter(|o| o.noncurrent).count();
            return Err(format!(
                "{} object versions left in {} ({noncurrent} noncurrent)",
                left.len(),
                bucket.bucket()
            ));
        }
    }
    Ok(())
}

/// Removes the user's lines from the archive's chunks; returns lines plus generations removed
/// (a second run finds nothing, which is the verification).
async fn erase_archive(archive: Option<&Archive>, user: Uuid) -> Result<u64, Failure> {
    let Some(archive) = archive else {
        return Ok(0);
    };
    let done =
        log_archiver::erase::forget_user(&archive.storage, &archive.prefix, &user.to_string())
            .await
            .map_err(|e| format!("archive: {e}"))?;
    Ok(done.lines + done.generations)
}

/// The user's Redis keys: the session set and each session with its refresh-token pointer, the
/// data rate limit, the per-account login limits (keyed by the e-mail blind index), pending
/// second-factor challenges, and any other key naming the id.
async fn redis_keys(
    redis: &Redis,
    user: Uuid,
    lookup: Option<&str>,
) -> Result<Vec<String>, Failure> {
    let fail = |e: redis::RedisError| format!("redis: {e}");
    let mut conn = redis.conn();
    let id = user.to_string();
    let mut keys = Vec::new();
    let set = redis.key(&["us", &id]);
    let sids: Vec<String> = redis::cmd("SMEMBERS")
        .arg(&set)
        .query_async(&mut conn)
        .await
        .map_err(fail)?;
    for sid in sids {
        let session = redis.key(&["sess", &sid]);
        let rt: Option<String> = redis::cmd("HGET")
            .arg(&session)
            .arg("rt")
            .query_async(&mut conn)
            .await
            .map_err(fail)?;
        if let Some(rt) = rt {
            keys.push(redis.key(&["rt", &rt]));
        }
        keys.push(session);
    }
    let mut patterns = vec![format!("{}:*{id}*", redis.prefix())];
    if let Some(lookup) = lookup {
        patterns.push(redis.key(&["rl", "*", "acct", lookup]));
    }
    for pattern in patterns {
        keys.extend(scan(&mut conn, &pattern).await.map_err(fail)?);
    }
    for challenge in scan(&mut conn, &redis.key(&["mfa", "*"]))
        .await
        .map_err(fail)?
    {
        let owner: Option<String> = redis::cmd("HGET")
            .arg(&challenge)
            .arg("u")
            .query_async(&mut conn)
            .await
            .unwrap_or(None);
        if owner.as_deref() == Some(id.as_str()) {
            keys.push(challenge);
        }
    }
    keys.sort();
    keys.dedup();
    Ok(keys)
}

async fn scan(
    conn: &mut redis::aio::ConnectionManager,
    pattern: &str,
) -> redis::RedisResult<Vec<String>> {
    let mut cursor: u64 = 0;
    let mut out = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await?;
        out.extend(batch);
        if next == 0 {
            return Ok(out);
        }
        cursor = next;
    }
}

async fn erase_redis(redis: &Redis, user: Uuid, lookup: Option<&str>) -> Result<u64, Failure> {
    let keys = redis_keys(redis, user, lookup).await?;
    if keys.is_empty() {
        return Ok(0);
    }
    let removed: u64 = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut redis.conn())
        .await
        .map_err(|e| format!("redis: {e}"))?;
    Ok(removed)
}

async fn verify_redis(redis: &Redis, user: Uuid, lookup: Option<&str>) -> Result<(), Failure> {
    let left = redis_keys(redis, user, lookup).await?;
    if left.is_empty() {
        Ok(())
    } else {
        Err(format!("{} keys left", left.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subject_hash_is_stable_hex_and_hides_the_id() {
        let user = Uuid::parse_str("6f1c0000-0000-4000-8000-000000000001").unwrap();
        let h = subject_hash(user);
        assert_eq!(h.len(), 64);
        assert_eq!(h, subject_hash(user));
        assert!(!h.contains("6f1c"));
    }
}
