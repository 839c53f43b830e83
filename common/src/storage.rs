//! Cloud Storage (gcloud-storage; fake-gcs-server locally).
//!
//! The client never reads `STORAGE_EMULATOR_HOST` by itself, so the endpoint is set here:
//! the emulator anonymously when the variable is set, Google with the default credentials
//! otherwise. Small objects go up in one multipart request (no resumable session); files go up
//! through a resumable session in chunks, resumed from what the server says it holds.

use std::collections::HashMap;
use std::path::Path;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use clap::Args;
use futures_util::StreamExt as _;
use gcloud_storage::client::{Client, ClientConfig};
use gcloud_storage::http::Error as GcsError;
use gcloud_storage::http::buckets::get::GetBucketRequest;
use gcloud_storage::http::buckets::insert::{BucketCreationConfig, InsertBucketRequest};
use gcloud_storage::http::objects::Object;
use gcloud_storage::http::objects::delete::DeleteObjectRequest;
use gcloud_storage::http::objects::download::Range;
use gcloud_storage::http::objects::get::GetObjectRequest;
use gcloud_storage::http::objects::list::ListObjectsRequest;
use gcloud_storage::http::objects::upload::{UploadObjectRequest, UploadType};
use gcloud_storage::http::resumable_upload_client::{ChunkSize, UploadStatus};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _, AsyncWriteExt as _};

/// Where Cloud Storage is.
#[derive(Debug, Clone, Args)]
pub struct StorageConfig {
    /// `host:port` of a local Cloud Storage emulator (fake-gcs-server); unset in production.
    #[arg(long, env = "STORAGE_EMULATOR_HOST")]
    pub storage_emulator_host: Option<String>,
}

/// A failed storage call.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The default credentials could not be loaded (production only).
    #[error("cannot load Google credentials for Cloud Storage: {0}")]
    Auth(String),
    /// The service or the connection failed.
    #[error("cloud storage {call} {name}: {source}")]
    Call {
        /// The operation.
        call: &'static str,
        /// The object or bucket.
        name: String,
        /// The client's error.
        #[source]
        source: GcsError,
    },
    /// A local file could not be read or written.
    #[error("file {0}: {1}")]
    File(String, #[source] std::io::Error),
    /// A resumable upload did not complete within the allowed restarts.
    #[error("upload of {0} did not complete after {1} attempts")]
    Incomplete(String, u32),
}

/// What the server reports about a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// Object name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// CRC32C the server computed, when it reports one.
    pub crc32c: Option<u32>,
    /// Custom metadata.
    pub metadata: HashMap<String, String>,
    /// Creation time.
    pub created: Option<DateTime<Utc>>,
    /// The generation (version) of the object's data.
    pub generation: i64,
    /// A noncurrent version (replaced or deleted in a versioned bucket; listed only by
    /// [`Storage::list_versions`]).
    pub noncurrent: bool,
}

impl StoredObject {
    fn from_object(o: Object) -> Self {
        Self {
            crc32c: o.crc32c.as_deref().and_then(crc32c_from_base64),
            size: u64::try_from(o.size).unwrap_or(0),
            metadata: o.metadata.unwrap_or_default(),
            created: o
                .time_created
                .and_then(|t| DateTime::from_timestamp(t.unix_timestamp(), 0)),
            generation: o.generation,
            noncurrent: o.time_deleted.is_some(),
            name: o.name,
        }
    }
}

/// Decodes the JSON API's CRC32C (base64 of the big-endian value).
pub fn crc32c_from_base64(value: &str) -> Option<u32> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value)
        .ok()?;
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

/// What to do after a resumable upload chunk or status query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// The object is complete.
    Done,
    /// Send again from this byte offset.
    From(u64),
}

/// Reads the server's answer to a resumable upload: a 308 with `Range: bytes=0-N` means it holds
/// N+1 bytes; a 308 without `Range` means it holds none, so the upload restarts at byte 0.
pub fn resume_point(status: &UploadStatus) -> Resume {
    match status {
        UploadStatus::Ok(_) => Resume::Done,
        UploadStatus::NotStarted => Resume::From(0),
        UploadStatus::ResumeIncomplete(range) => Resume::From(range.last_byte + 1),
    }
}

/// One bucket.
#[derive(Clone)]
pub struct Storage {
    client: Client,
    bucket: String,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("bucket", &self.bucket)
            .finish()
    }
}

fn call<'a>(call: &'static str, name: &'a str) -> impl FnOnce(GcsError) -> StorageError + 'a {
    move |source| StorageError::Call {
        call,
        name: name.to_owned(),
        source,
    }
}

fn is_not_found(e: &GcsError) -> bool {
    matches!(e, GcsError::Response(r) if r.code == 404)
}

/// Resumable chunks must be multiples of 256 KiB; 8 MiB keeps a retry cheap.
pub const UPLOAD_CHUNK_BYTES: usize = 32 * 256 * 1024;
const MAX_UPLOAD_RESTARTS: u32 = 5;

impl Storage {
    /// A client for `bucket`: the emulator when configured, Google otherwise.
    pub async fn connect(config: &StorageConfig, bucket: &str) -> Result<Self, StorageError> {
        let client_config = match &config.storage_emulator_host {
            Some(host) => {
                let endpoint = if host.starts_with("http") {
                    host.clone()
                } else {
                    format!("http://{host}")
                };
                ClientConfig {
                    storage_endpoint: endpoint,
                    ..ClientConfig::default()
                }
                .anonymous()
            }
            None => ClientConfig::default()
                .with_auth()
                .await
                .map_err(|e| StorageError::Auth(e.to_string()))?,
        };
        Ok(Self {
            client: Client::new(client_config),
            bucket: bucket.to_owned(),
        })
    }

    /// The bucket name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Creates the bucket when it does not exist (local runs and tests; Terraform owns the
    /// production buckets).
    pub async fn ensure_bucket(&self, project: &str) -> Result<(), StorageError> {
        let get = GetBucketRequest {
            bucket: self.bucket.clone(),
            ..Default::default()
        };
        match self.client.get_bucket(&get).await {
            Ok(_) => return Ok(()),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(call("get_bucket", &self.bucket)(e)),
        }
        let insert = InsertBucketRequest {
            name: self.bucket.clone(),
            param: gcloud_storage::http::buckets::insert::InsertBucketParam {
                project: project.to_owned(),
                ..Default::default()
            },
            bucket: BucketCreationConfig::default(),
        };
        match self.client.insert_bucket(&insert).await {
            Ok(_) => Ok(()),
            Err(GcsError::Response(r)) if r.code == 409 => Ok(()),
            Err(e) => Err(call("insert_bucket", &self.bucket)(e)),
        }
    }

    /// Writes a small object in one request (multipart: data and metadata together).
    pub async fn put(
        &self,
        name: &str,
        data: Vec<u8>,
        content_type: &str,
        metadata: HashMap<String, String>,
    ) -> Result<StoredObject, StorageError> {
        let request = UploadObjectRequest {
            bucket: self.bucket.clone(),
            ..Default::default()
        };
        let upload = UploadType::Multipart(Box::new(Object {
            name: name.to_owned(),
            content_type: Some(content_type.to_owned()),
            metadata: Some(metadata),
            ..Default::default()
        }));
        self.client
            .upload_object(&request, data, &upload)
            .await
            .map(StoredObject::from_object)
            .map_err(call("upload_object", name))
    }

    /// Writes a small object only when no object of that name exists (`ifGenerationMatch=0`,
    /// cloud.google.com/storage/docs/request-preconditions); `None` when one does (412).
    pub async fn put_if_absent(
        &self,
        name: &str,
        data: Vec<u8>,
        content_type: &str,
        metadata: HashMap<String, String>,
    ) -> Result<Option<StoredObject>, StorageError> {
        let request = UploadObjectRequest {
            bucket: self.bucket.clone(),
            if_generation_match: Some(0),
            ..Default::default()
        };
        let upload = UploadType::Multipart(Box::new(Object {
            name: name.to_owned(),
            content_type: Some(content_type.to_owned()),
            metadata: Some(metadata),
            ..Default::default()
        }));
        match self.client.upload_object(&request, data, &upload).await {
            Ok(o) => Ok(Some(StoredObject::from_object(o))),
            Err(GcsError::Response(r)) if r.code == 412 => Ok(None),
            Err(e) => Err(call("upload_object", name)(e)),
        }
    }

    /// Deletes an object only while its live generation is `generation`
    /// (`ifGenerationMatch`); `false` when it is gone or was replaced (404, 412).
    pub async fn delete_if_generation(
        &self,
        name: &str,
        generation: i64,
    ) -> Result<bool, StorageError> {
        let request = DeleteObjectRequest {
            bucket: self.bucket.clone(),
            object: name.to_owned(),
            if_generation_match: Some(generation),
            ..Default::default()
        };
        match self.client.delete_object(&request).await {
            Ok(()) => Ok(true),
            Err(GcsError::Response(r)) if r.code == 404 || r.code == 412 => Ok(false),
            Err(e) => Err(call("delete_object", name)(e)),
        }
    }

    /// Writes a file through a resumable session, chunk by chunk. After a failed chunk the
    /// session's status says where to go on; a 308 without `Range` means from the start.
    pub async fn put_file(
        &self,
        name: &str,
        path: &Path,
        content_type: &str,
        metadata: HashMap<String, String>,
    ) -> Result<StoredObject, StorageError> {
        let file_err = |e| StorageError::File(path.display().to_string(), e);
        let mut file = tokio::fs::File::open(path).await.map_err(file_err)?;
        let total = file.metadata().await.map_err(file_err)?.len();
        let request = UploadObjectRequest {
            bucket: self.bucket.clone(),
            ..Default::default()
        };
        let upload = UploadType::Multipart(Box::new(Object {
            name: name.to_owned(),
            content_type: Some(content_type.to_owned()),
            metadata: Some(metadata),
            ..Default::default()
        }));
        let session = self
            .client
            .prepare_resumable_upload(&request, &upload)
            .await
            .map_err(call("prepare_resumable_upload", name))?;
        if total == 0 {
            session
                .upload_single_chunk(Vec::new(), 0)
                .await
                .map_err(call("upload_single_chunk", name))?;
            return self
                .head(name)
                .await?
                .ok_or_else(|| StorageError::Incomplete(name.to_owned(), 1));
        }
        let mut offset = 0u64;
        let mut failures = 0u32;
        let mut buffer = vec![0u8; UPLOAD_CHUNK_BYTES];
        loop {
            let len = usize::try_from((total - offset).min(UPLOAD_CHUNK_BYTES as u64))
                .unwrap_or(UPLOAD_CHUNK_BYTES);
            file.seek(std::io::SeekFrom::Start(offset))
                .await
                .map_err(file_err)?;
            file.read_exact(&mut buffer[..len])
                .await
                .map_err(file_err)?;
            let range = ChunkSize::new(offset, offset + len as u64 - 1, Some(total));
            let answer = match session
                .upload_multiple_chunk(buffer[..len].to_vec(), &range)
                .await
            {
                Ok(status) => Ok(status),
                Err(e) => {
                    failures += 1;
                    tracing::warn!(object = name, offset, error = %e, "upload chunk failed; asking the session where to resume");
                    session.status(Some(total)).await
                }
            };
            match answer {
                Ok(UploadStatus::Ok(object)) => return Ok(StoredObject::from_object(object)),
                Ok(status) => match resume_point(&status) {
                    Resume::Done => unreachable!("Ok handled above"),
                    Resume::From(next) => offset = next,
                },
                Err(e) => {
                    failures += 1;
                    if failures > MAX_UPLOAD_RESTARTS {
                        return Err(call("upload_multiple_chunk", name)(e));
                    }
                }
            }
            if failures > MAX_UPLOAD_RESTARTS {
                return Err(StorageError::Incomplete(name.to_owned(), failures));
            }
        }
    }

    /// Reads a whole object.
    pub async fn get(&self, name: &str) -> Result<Vec<u8>, StorageError> {
        let request = GetObjectRequest {
            bucket: self.bucket.clone(),
            object: name.to_owned(),
            ..Default::default()
        };
        self.client
            .download_object(&request, &Range::default())
            .await
            .map_err(call("download_object", name))
    }

    /// Reads one generation of an object, live or noncurrent.
    pub async fn get_generation(
        &self,
        name: &str,
        generation: i64,
    ) -> Result<Vec<u8>, StorageError> {
        let request = GetObjectRequest {
            bucket: self.bucket.clone(),
            object: name.to_owned(),
            generation: Some(generation),
            ..Default::default()
        };
        self.client
            .download_object(&request, &Range::default())
            .await
            .map_err(call("download_object", name))
    }

    /// Streams an object into a file; returns the bytes written.
    pub async fn get_to_file(&self, name: &str, path: &Path) -> Result<u64, StorageError> {
        let request = GetObjectRequest {
            bucket: self.bucket.clone(),
            object: name.to_owned(),
            ..Default::default()
        };
        let mut stream = self
            .client
            .download_streamed_object(&request, &Range::default())
            .await
            .map_err(call("download_streamed_object", name))?;
        let file_err = |e| StorageError::File(path.display().to_string(), e);
        let mut file = tokio::fs::File::create(path).await.map_err(file_err)?;
        let mut written = 0u64;
        while let Some(bytes) = stream.next().await {
            let bytes = bytes.map_err(call("download_streamed_object", name))?;
            file.write_all(&bytes).await.map_err(file_err)?;
            written += bytes.len() as u64;
        }
        file.flush().await.map_err(file_err)?;
        Ok(written)
    }

    /// The object's metadata, `None` when it does not exist.
    pub async fn head(&self, name: &str) -> Result<Option<StoredObject>, StorageError> {
        let request = GetObjectRequest {
            bucket: self.bucket.clone(),
            object: name.to_owned(),
            ..Default::default()
        };
        match self.client.get_object(&request).await {
            Ok(o) => Ok(Some(StoredObject::from_object(o))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(call("get_object", name)(e)),
        }
    }

    /// Every object under `prefix`, in name order, following the pages.
    pub async fn list(&self, prefix: &str) -> Result<Vec<StoredObject>, StorageError> {
        self.list_objects(prefix, false).await
    }

    /// Every version under `prefix`, live and noncurrent (`versions=true`), in name and then
    /// generation order. In a bucket with Object Versioning a delete or overwrite without a
    /// generation keeps the old data as a noncurrent version
    /// (cloud.google.com/storage/docs/object-versioning), so erasure must see these.
    pub async fn list_versions(&self, prefix: &str) -> Result<Vec<StoredObject>, StorageError> {
        self.list_objects(prefix, true).await
    }

    async fn list_objects(
        &self,
        prefix: &str,
        versions: bool,
    ) -> Result<Vec<StoredObject>, StorageError> {
        let mut out = Vec::new();
        let mut page_token = None;
        loop {
            let request = ListObjectsRequest {
                bucket: self.bucket.clone(),
                prefix: Some(prefix.to_owned()),
                page_token,
                max_results: Some(1000),
                versions: versions.then_some(true),
                ..Default::default()
            };
            let page = self
                .client
                .list_objects(&request)
                .await
                .map_err(call("list_objects", prefix))?;
            out.extend(
                page.items
                    .unwrap_or_default()
                    .into_iter()
                    .map(StoredObject::from_object),
            );
            match page.next_page_token {
                Some(t) if !t.is_empty() => page_token = Some(t),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name).then(a.generation.cmp(&b.generation)));
        Ok(out)
    }

    /// Deletes an object; `false` when it was already gone (so a rerun can delete again).
    pub async fn delete(&self, name: &str) -> Result<bool, StorageError> {
        let request = DeleteObjectRequest {
            bucket: self.bucket.clone(),
            object: name.to_owned(),
            ..Default::default()
        };
        match self.client.delete_object(&request).await {
            Ok(()) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(call("delete_object", name)(e)),
        }
    }

    /// Deletes one generation for good, live or noncurrent ("specifying the generation number
    /// in a deletion request permanently deletes the version, even if the version is live",
    /// cloud.google.com/storage/docs/object-versioning); `false` when it was already gone.
    pub async fn delete_generation(
        &self,
        name: &str,
        generation: i64,
    ) -> Result<bool, StorageError> {
        let request = DeleteObjectRequest {
            bucket: self.bucket.clone(),
            object: name.to_owned(),
            generation: Some(generation),
            ..Default::default()
        };
        match self.client.delete_object(&request).await {
            Ok(()) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(call("delete_object", name)(e)),
        }
    }

    /// Creates the bucket with Object Versioning on, as the production buckets are (tests and
    /// local runs).
    pub async fn ensure_versioned_bucket(&self, project: &str) -> Result<(), StorageError> {
        let insert = InsertBucketRequest {
            name: self.bucket.clone(),
            param: gcloud_storage::http::buckets::insert::InsertBucketParam {
                project: project.to_owned(),
                ..Default::default()
            },
            bucket: BucketCreationConfig {
                versioning: Some(gcloud_storage::http::buckets::Versioning { enabled: true }),
                ..BucketCreationConfig::default()
            },
        };
        match self.client.insert_bucket(&insert).await {
            Ok(_) => Ok(()),
            Err(GcsError::Response(r)) if r.code == 409 => Ok(()),
            Err(e) => Err(call("insert_bucket", &self.bucket)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gcloud_storage::http::resumable_upload_client::UploadedRange;

    #[test]
    fn a_308_without_range_restarts_the_upload_from_the_first_byte() {
        assert_eq!(resume_point(&UploadStatus::NotStarted), Resume::From(0));
    }

    #[test]
    fn a_308_with_range_resumes_after_the_last_byte_the_server_holds() {
        let status = UploadStatus::ResumeIncomplete(UploadedRange {
            first_byte: 0,
            last_byte: 262_143,
        });
        assert_eq!(resume_point(&status), Resume::From(262_144));
    }

    #[test]
    fn the_json_api_crc32c_is_base64_of_the_big_endian_value() {
        // CRC32C("hello world") = 0xc99465aa
        assert_eq!(crc32c_from_base64("yZRlqg=="), Some(0xc994_65aa));
        assert_eq!(crc32c_from_base64("not base64!"), None);
    }
}
