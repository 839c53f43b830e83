//! Erasure of one user from chunks already written (GDPR Art. 17).
//!
//! Why rewriting and not crypto-shredding: the archived documents are the Firestore analysis
//! logs and events as they are (`user_id`, `created_at`, `kind`, `payload` with the weekly sleep
//! figures and the prescribed window, and the user id in the document path), in plaintext.
//! Encrypting the payload under the user's data key before archiving would protect only chunks
//! written from then on, would leave the user id and timing of every entry readable, and would
//! make this job depend on PostgreSQL and the KMS. Rewriting reaches every chunk already
//! written and removes the whole line, id included.
//!
//! For every version (live and noncurrent) of every chunk under the prefix: a noncurrent
//! version holding a line of the user is deleted by its generation; a live chunk holding one is
//! written again without those lines (the other lines byte for byte as they were) with fresh
//! metadata, or deleted when nothing is left, and then every older generation of it is deleted,
//! so the bucket's versioning keeps no copy. The group's manifest is written again with the new
//! counts and checksums. A chunk keeps its name (the hash of the paths it was first written
//! with), so the manifest and an interrupted archive run still find it.
//!
//! Cost: every chunk of the archive is read once per call (a year of weekly chunks); deletes of
//! a named generation are permanent, but the bucket's soft-delete window (7 days) still holds
//! them until it ends.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead as _, Write as _};

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::{ArchivedDocument, Error, Manifest, Result, crc32c_base64, hex};
use common::storage::{Storage, StoredObject};

/// What [`forget_user`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forgotten {
    /// Lines of the user removed from live chunks.
    pub lines: u64,
    /// Live chunks written again without the user's lines.
    pub rewritten: u64,
    /// Live chunks deleted because they held only the user's lines.
    pub deleted: u64,
    /// Generations deleted (noncurrent copies and the replaced versions).
    pub generations: u64,
}

fn belongs_to(doc: &ArchivedDocument, user: &str) -> bool {
    let in_path = doc
        .path
        .strip_prefix("users/")
        .and_then(|rest| rest.strip_prefix(user))
        .is_some_and(|rest| rest.starts_with('/'));
    in_path || doc.fields.get("user_id") == Some(&Value::String(user.to_owned()))
}

/// The lines of a chunk, each with whether it belongs to the user.
fn split(name: &str, gzip: &[u8], user: &str) -> Result<Vec<(ArchivedDocument, String, bool)>> {
    let bad = |reason: String| Error::Verify {
        object: name.to_owned(),
        reason,
    };
    let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(gzip));
    let mut out = Vec::new();
    for line in reader.lines() {
        let line = line.map_err(|e| bad(format!("gzip: {e}")))?;
        let doc: ArchivedDocument =
            serde_json::from_str(&line).map_err(|e| bad(format!("NDJSON: {e}")))?;
        let mine = belongs_to(&doc, user);
        out.push((doc, line, mine));
    }
    Ok(out)
}

fn manifest_of(chunk: &str) -> String {
    match chunk.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/manifest.json"),
        None => "manifest.json".to_owned(),
    }
}

/// Removes every archived line of `user` (their id as in `users/{id}/…` and `user_id`) from
/// the chunks under `prefix`; see the module documentation. Safe to run again.
pub async fn forget_user(storage: &Storage, prefix: &str, user: &str) -> Result<Forgotten> {
    let prefix = format!("{}/", prefix.trim_end_matches('/'));
    let versions: Vec<StoredObject> = storage
        .list_versions(&prefix)
        .await?
        .into_iter()
        .filter(|o| o.name.ends_with(".ndjson.gz"))
        .collect();
    let mut done = Forgotten::default();
    // Manifest name → chunk name → its new entry (None: the chunk is gone).
    let mut changed: BTreeMap<String, BTreeMap<String, Option<crate::ManifestObject>>> =
        BTreeMap::new();
    for version in versions.iter().filter(|v| v.noncurrent) {
        let bytes = storage
            .get_generation(&version.name, version.generation)
            .await?;
        if split(&version.name, &bytes, user)?
            .iter()
            .any(|(_, _, mine)| *mine)
            && storage
                .delete_generation(&version.name, version.generation)
                .await?
        {
            done.generations += 1;
        }
    }
    for live in versions.iter().filter(|v| !v.noncurrent) {
        let bytes = storage.get_generation(&live.name, live.generation).await?;
        let lines = split(&live.name, &bytes, user)?;
        let mine = lines.iter().filter(|(_, _, mine)| *mine).count() as u64;
        if mine == 0 {
            continue;
        }
        done.lines += mine;
        let kept: Vec<&(ArchivedDocument, String, bool)> =
            lines.iter().filter(|(_, _, mine)| !*mine).collect();
        let entry = if kept.is_empty() {
            storage
                .delete_generation(&live.name, live.generation)
                .await?;
            done.deleted += 1;
            None
        } else {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            for (_, line, _) in &kept {
                encoder.write_all(line.as_bytes()).expect("in-memory write");
                encoder.write_all(b"\n").expect("in-memory write");
            }
            let gzip = encoder.finish().expect("in-memory write");
            let sha256 = hex(&Sha256::digest(&gzip));
            let crc = crc32c::crc32c(&gzip);
            let mut metadata = HashMap::new();
            metadata.insert("documents".to_owned(), kept.len().to_string());
            metadata.insert("sha256".to_owned(), sha256.clone());
            metadata.insert("first".to_owned(), kept[0].0.path.clone());
            metadata.insert("rewritten".to_owned(), "erasure".to_owned());
            let size = gzip.len() as u64;
            let stored = storage
                .put(&live.name, gzip, "application/gzip", metadata)
                .await?;
            if stored.crc32c.is_some_and(|c| c != crc) {
                return Err(Error::Verify {
                    object: live.name.clone(),
                    reason: "CRC32C reported by the upload differs from the rewritten chunk's"
                        .into(),
                });
            }
            // The version just replaced still holds the user's lines.
            for old in storage.list_versions(&live.name).await? {
                if old.name == live.name
                    && old.generation != stored.generation
                    && storage.delete_generation(&old.name, old.generation).await?
                {
                    done.generations += 1;
                }
            }
            done.rewritten += 1;
            Some(crate::ManifestObject {
                name: live.name.clone(),
                documents: kept.len() as u64,
                bytes: size,
                sha256,
                crc32c: crc32c_base64(crc),
            })
        };
        changed
            .entry(manifest_of(&live.name))
            .or_default()
            .insert(live.name.clone(), entry);
    }
    for (manifest_name, chunks) in changed {
        if storage.head(&manifest_name).await?.is_none() {
            // The run that wrote the chunk has not finished; it lists the chunks again.
            continue;
        }
        let mut manifest: Manifest = serde_json::from_slice(&storage.get(&manifest_name).await?)
            .map_err(|e| Error::Verify {
                object: manifest_name.clone(),
                reason: e.to_string(),
            })?;
        manifest.objects = manifest
            .objects
            .into_iter()
            .filter_map(|o| match chunks.get(&o.name) {
                Some(new) => new.clone(),
                None => Some(o),
            })
            .collect();
        manifest.documents = manifest.objects.iter().map(|o| o.documents).sum();
        manifest.bytes = manifest.objects.iter().map(|o| o.bytes).sum();
        let body = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
        storage
            .put(&manifest_name, body, "application/json", HashMap::new())
            .await?;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(path: &str, user_id: &str) -> ArchivedDocument {
        let mut fields = serde_json::Map::new();
        fields.insert("user_id".into(), Value::String(user_id.into()));
        ArchivedDocument {
            path: path.into(),
            fields,
            update_time: None,
        }
    }

    #[test]
    fn a_line_belongs_to_the_user_of_its_path_or_its_user_id_field() {
        let u = "6f1c0000-0000-4000-8000-000000000001";
        assert!(belongs_to(&doc(&format!("users/{u}/events/e1"), "x"), u));
        assert!(belongs_to(&doc("elsewhere/d1", u), u));
        // Another user whose id begins with the same characters is not the user.
        assert!(!belongs_to(&doc(&format!("users/{u}0/events/e1"), "y"), u));
        assert!(!belongs_to(&doc("users/other/events/e1", "other"), u));
    }

    #[test]
    fn a_chunk_s_manifest_is_beside_it() {
        assert_eq!(
            manifest_of("firestore/2026-11-29/events/chunk-ab.ndjson.gz"),
            "firestore/2026-11-29/events/manifest.json"
        );
    }
}
