//! Firestore: the analysis logs and the per-user event stream, as
//! `users/{user_id}/analysis_logs/{id}` and `users/{user_id}/events/{id}`. Every document has
//! `user_id`, `created_at` (a Firestore timestamp), `kind` and a `payload` map; the log archiver
//! reads the same shape. Writes are upserts by a deterministic id, so recomputing the same
//! result writes the same document instead of a second one.

use chrono::{DateTime, Utc};
use firestore::FirestoreDb;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Collection of analysis logs (one per analysis result).
pub const ANALYSIS_LOGS: &str = "analysis_logs";
/// Collection of the user's event stream.
pub const EVENTS: &str = "events";
/// Parent collection.
pub const USERS: &str = "users";

/// A stored document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredDoc {
    /// Pseudonymous user id.
    pub user_id: String,
    /// When the fact was recorded (a Firestore timestamp, so range queries work).
    pub created_at: firestore::FirestoreTimestamp,
    /// What it is, e.g. `sleep-window.prescribed`.
    pub kind: String,
    /// The content (no free text, no names: ids and numbers).
    pub payload: serde_json::Value,
}

impl StoredDoc {
    /// A document stamped with `created_at`.
    pub fn new(
        user: Uuid,
        created_at: DateTime<Utc>,
        kind: &str,
        payload: serde_json::Value,
    ) -> Self {
        Self {
            user_id: user.to_string(),
            created_at: timestamp(created_at),
            kind: kind.to_owned(),
            payload,
        }
    }
}

/// A chrono instant as a Firestore timestamp (microsecond precision, as Firestore stores).
pub fn timestamp(at: DateTime<Utc>) -> firestore::FirestoreTimestamp {
    firestore::FirestoreTimestamp(
        firestore::FirestoreInstant::from_microsecond(at.timestamp_micros()).unwrap_or_default(),
    )
}

/// A Firestore failure; retrying may succeed.
#[derive(Debug, thiserror::Error)]
#[error("firestore: {0}")]
pub struct DocError(String);

/// The Firestore handle.
#[derive(Clone)]
pub struct Documents {
    db: FirestoreDb,
}

impl Documents {
    /// Connects to the project's default database; with `FIRESTORE_EMULATOR_HOST` set, the
    /// emulator without credentials.
    pub async fn connect(project: &str) -> Result<Self, DocError> {
        let db = FirestoreDb::new(project)
            .await
            .map_err(|e| DocError(e.to_string()))?;
        Ok(Self { db })
    }

    /// Writes (creates or replaces) a document under the user.
    pub async fn put(
        &self,
        user: Uuid,
        collection: &str,
        id: &str,
        doc: &StoredDoc,
    ) -> Result<(), DocError> {
        let parent = self
            .db
            .parent_path(USERS, user.to_string())
            .map_err(|e| DocError(e.to_string()))?;
        let _: StoredDoc = self
            .db
            .fluent()
            .update()
            .in_col(collection)
            .document_id(id)
            .parent(&parent)
            .object(doc)
            .execute()
            .await
            .map_err(|e| DocError(e.to_string()))?;
        Ok(())
    }

    /// Every document of a user's collection, by id.
    pub async fn list(
        &self,
        user: Uuid,
        collection: &str,
    ) -> Result<Vec<(String, StoredDoc)>, DocError> {
        use futures_util::StreamExt as _;
        let parent = self
            .db
            .parent_path(USERS, user.to_string())
            .map_err(|e| DocError(e.to_string()))?;
        let stream = self
            .db
            .fluent()
            .list()
            .from(collection)
            .parent(&parent)
            .stream_all()
            .await
            .map_err(|e| DocError(e.to_string()))?;
        let docs: Vec<firestore::FirestoreDocument> = stream.collect().await;
        docs.into_iter()
            .map(|d| {
                let id = d.name.rsplit('/').next().unwrap_or_default().to_owned();
                let obj: StoredDoc =
                    FirestoreDb::deserialize_doc_to(&d).map_err(|e| DocError(e.to_string()))?;
                Ok((id, obj))
            })
            .collect()
    }
}
