//! The resumable upload the drill's dumps go through, against a local HTTP fake of the JSON
//! API's resumable protocol: fake-gcs-server answers every status query with 200, so it cannot
//! show what a client does with a 308 that carries no `Range`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use axum::{Json, Router};
use common::storage::{Storage, StorageConfig, UPLOAD_CHUNK_BYTES};

#[derive(Default)]
struct Session {
    ranges: Vec<String>,
    data: Vec<u8>,
    failed_once: bool,
}

type Shared = Arc<Mutex<Session>>;

async fn start(State(addr): State<String>) -> Response {
    (
        StatusCode::OK,
        [(header::LOCATION, format!("http://{addr}/session/1"))],
    )
        .into_response()
}

/// The first data chunk fails with 503 and the status query that follows answers 308 without
/// `Range` (the server kept nothing); after that, the protocol as documented.
async fn chunk(State(session): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let range = headers
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let mut s = session.lock().expect("lock");
    s.ranges.push(range.clone());
    let spec = range.trim_start_matches("bytes ");
    let (span, total) = spec.split_once('/').expect("range/total");
    let total: usize = total.parse().expect("total");
    if span == "*" {
        return StatusCode::PERMANENT_REDIRECT.into_response();
    }
    if !s.failed_once {
        s.failed_once = true;
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let (first, last) = span.split_once('-').expect("first-last");
    let (first, last): (usize, usize) =
        (first.parse().expect("first"), last.parse().expect("last"));
    assert_eq!(first, s.data.len(), "chunk does not continue the upload");
    s.data.extend_from_slice(&body);
    assert_eq!(s.data.len(), last + 1);
    if s.data.len() < total {
        return (
            StatusCode::PERMANENT_REDIRECT,
            [(header::RANGE, format!("bytes=0-{last}"))],
        )
            .into_response();
    }
    Json(serde_json::json!({
        "kind": "storage#object", "name": "drill/big.dump", "bucket": "b", "id": "b/drill/big.dump/1",
        "size": total.to_string(), "generation": "1", "metageneration": "1",
        "crc32c": "AAAAAA==", "storageClass": "STANDARD", "etag": "e",
        "selfLink": "http://fake/b/o", "mediaLink": "http://fake/b/o?alt=media"
    }))
    .into_response()
}

#[tokio::test]
async fn a_308_without_range_after_a_failed_chunk_resends_the_upload_from_the_first_byte() {
    let session: Shared = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let app = Router::new()
        .route(
            "/upload/storage/v1/b/{bucket}/o",
            post(start).with_state(addr.clone()),
        )
        .route("/session/1", put(chunk).with_state(session.clone()))
        .layer(axum::extract::DefaultBodyLimit::disable());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let storage = Storage::connect(
        &StorageConfig {
            storage_emulator_host: Some(addr),
        },
        "b",
    )
    .await
    .expect("client");
    let dir = std::env::temp_dir().join(format!("upload-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("big.dump");
    let data: Vec<u8> = (0..UPLOAD_CHUNK_BYTES + 1000)
        .map(|i| (i % 253) as u8)
        .collect();
    std::fs::write(&file, &data).expect("write");

    let stored = storage
        .put_file(
            "drill/big.dump",
            &file,
            "application/octet-stream",
            HashMap::new(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}: {:?}", session.lock().expect("lock").ranges));

    let n = data.len();
    let c = UPLOAD_CHUNK_BYTES;
    let s = session.lock().expect("lock");
    assert_eq!(
        s.ranges,
        [
            format!("bytes 0-{}/{n}", c - 1),
            format!("bytes */{n}"),
            format!("bytes 0-{}/{n}", c - 1),
            format!("bytes {c}-{}/{n}", n - 1),
        ]
    );
    assert!(s.data == data, "the server holds exactly the file");
    assert_eq!(stored.size, n as u64);
    std::fs::remove_dir_all(&dir).ok();
}
